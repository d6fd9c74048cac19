/* wrap_write.c — wrappers: data writes (write, pwrite, sendfile, fallocate,
 * AIO, fds received). */
#include "track/adopt.h"

/* A write at the file position (or appended): record where it landed.
 * before: the position (or, appending, the size) before the call. */
static void note_seq(int fd, struct ent *e, off_t before, ssize_t n, int append)
{
	off_t after = lseek(fd, 0, SEEK_CUR);
	if (after < 0 || n <= 0)
		return;
	if (MULTI(e))
		multi_scan();
	off_t s = after - n;
	if (append) {
		/* appenders sharing the file may have moved the end meanwhile */
		off_t lo = before >= 0 && before < s ? before : s;
		rec_write(e->path, e->len, (uint64_t)lo, (uint64_t)(after - lo));
		return;
	}
	if (before >= 0 && before != s) {
		/* Someone sharing the position (another process with the same
		 * open file) wrote meanwhile: ours landed somewhere between the
		 * position before and the one after. */
		off_t lo = before < s ? before : s, hi = before + n > after ? before + n : after;
		rec_write(e->path, e->len, (uint64_t)lo, (uint64_t)(hi - lo));
		return;
	}
	rec_write(e->path, e->len, (uint64_t)s, (uint64_t)n);
}

static off_t pos_before(int fd, int append)
{
	if (append) {
		struct stat st;
		return fstat(fd, &st) == 0 ? st.st_size : -1;
	}
	return lseek(fd, 0, SEEK_CUR);
}

/* Wrapper body for a call writing at the position of tracked fd. */
#define SEQ_WRITE(e, fd, call, append_expr)               \
	do {                                              \
		WRAP_ENTER(call);                         \
		int app_ = (append_expr);                 \
		off_t before_ = in_ ? pos_before(fd, app_) : -1; \
		ssize_t r_ = call;                        \
		int err_ = errno;                         \
		if (in_ && r_ > 0)                        \
			note_seq(fd, e, before_, r_, app_); \
		WRAP_LEAVE();                             \
		return r_;                                \
	} while (0)

/* Wrapper body for a call writing at offset off of tracked fd (pwrite). On
 * Linux, pwrite on an O_APPEND fd appends. */
#define POS_WRITE(e, fd, call, off, append)                                   \
	do {                                                                  \
		WRAP_ENTER(call);                                             \
		off_t before_ = in_ && (append) ? pos_before(fd, 1) : -1;    \
		ssize_t r_ = call;                                            \
		int err_ = errno;                                             \
		if (in_) {                                                    \
			if (r_ > 0 && (append)) {                             \
				struct stat st_;                              \
				if (fstat(fd, &st_) == 0) {                   \
					off_t lo_ = st_.st_size - r_;         \
					if (before_ >= 0 && before_ < lo_)    \
						lo_ = before_;                \
					rec_write(e->path, e->len, (uint64_t)lo_, \
					          (uint64_t)(st_.st_size - lo_)); \
				}                                             \
			} else if (r_ > 0) {                                  \
				rec_write(e->path, e->len, (uint64_t)(off), (uint64_t)r_); \
			}                                                     \
			if (r_ > 0 && MULTI(e))                               \
				multi_scan();                                 \
		}                                                             \
		WRAP_LEAVE();                                                 \
		return r_;                                                    \
	} while (0)

#define IS_APPEND(e) ((LOAD(&(e)->flags) & O_APPEND) != 0)

/* The writes (calls.def): a position-less write at the file position (or
 * the end, O_APPEND), a positioned one at off; pwritev2 takes -1 for the
 * position, and RWF_APPEND for O_APPEND. */
#define W_SEQ_WRITE(ret, name, params, args, fd)                   \
	ret name params                                             \
	{                                                           \
		struct ent *e = fd_get_w(fd);                       \
		if (LIKELY(!e))                                     \
			UNTRACKED_CALL(fd, REAL(name) args);        \
		SEQ_WRITE(e, fd, REAL(name) args, IS_APPEND(e));    \
	}
#define W_POS_WRITE(ret, name, params, args, fd, off)                   \
	ret name params                                                  \
	{                                                                \
		struct ent *e = fd_get_w(fd);                            \
		if (LIKELY(!e))                                          \
			UNTRACKED_CALL(fd, REAL(name) args);             \
		POS_WRITE(e, fd, REAL(name) args, off, IS_APPEND(e));    \
	}
#define W_POS_WRITE2(ret, name, params, args, fd, off, flags)                                   \
	ret name params                                                                          \
	{                                                                                        \
		struct ent *e = fd_get_w(fd);                                                    \
		if (LIKELY(!e))                                                                  \
			UNTRACKED_CALL(fd, REAL(name) args);                                     \
		if (off == -1)                                                                   \
			SEQ_WRITE(e, fd, REAL(name) args, IS_APPEND(e) || (flags & RWF_APPEND));      \
		POS_WRITE(e, fd, REAL(name) args, off, IS_APPEND(e) || (flags & RWF_APPEND));         \
	}
#include "track/calls.def"

/* copy_file_range, splice: an explicit output offset, else the position. */
ssize_t copy_file_range(int in, off64_t *inoff, int out, off64_t *outoff, size_t n, unsigned int flags)
{
	struct ent *e = fd_get_w(out);
	if (LIKELY(!e))
		UNTRACKED_CALL(out, REAL(copy_file_range)(in, inoff, out, outoff, n, flags));
	if (!outoff)
		SEQ_WRITE(e, out, REAL(copy_file_range)(in, inoff, out, outoff, n, flags), 0);
	off64_t o = *outoff;
	POS_WRITE(e, out, REAL(copy_file_range)(in, inoff, out, outoff, n, flags), o, 0);
}

/* Input from a pipe or a socket may take for ever to come: wait for it
 * outside the region, so a checkpoint is not held meanwhile. */
static void wait_input(int in)
{
	struct stat st;
	if (fstat(in, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode))) {
		struct pollfd p = {in, POLLIN, 0};
		int saved = errno;
		poll(&p, 1, -1);
		errno = saved;
	}
}

ssize_t splice(int in, off64_t *inoff, int out, off64_t *outoff, size_t n, unsigned int flags)
{
	struct ent *e = fd_get_w(out);
	if (LIKELY(!e))
		UNTRACKED_CALL(out, REAL(splice)(in, inoff, out, outoff, n, flags));
	if (!(flags & SPLICE_F_NONBLOCK))
		wait_input(in);
	if (!outoff)
		SEQ_WRITE(e, out, REAL(splice)(in, inoff, out, outoff, n, flags), IS_APPEND(e));
	off64_t o = *outoff;
	POS_WRITE(e, out, REAL(splice)(in, inoff, out, outoff, n, flags), o, 0);
}

/* sendfile (calls.def): its input is waited for outside the region. */
#define W_SENDFILE(ret, name, params, args, out, in)                \
	ret name params                                              \
	{                                                            \
		struct ent *e = fd_get_w(out);                       \
		if (LIKELY(!e))                                      \
			UNTRACKED_CALL(out, REAL(name) args);        \
		wait_input(in);                                      \
		SEQ_WRITE(e, out, REAL(name) args, IS_APPEND(e));    \
	}
#include "track/calls.def"

/* Calls on a tracked fd that succeed with 0 and leave one record. */
#define FD_REC(e, call, type, a, b)         \
	do {                                \
		WRAP_ENTER(call);           \
		int r_ = call;              \
		int err_ = errno;           \
		if (in_ && r_ == 0)         \
			rec_e(type, a, b, e); \
		WRAP_LEAVE();               \
		return r_;                  \
	} while (0)

#define SHIFTS(mode) ((mode) & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE))

#define W_FD_REC(ret, name, params, args, fd, type, a, b)    \
	ret name params                                       \
	{                                                     \
		struct ent *e = fd_get_w(fd);                 \
		if (LIKELY(!e))                               \
			UNTRACKED_CALL(fd, REAL(name) args);  \
		FD_REC(e, REAL(name) args, type, a, b);       \
	}
#include "track/calls.def"

/* Reflinks rewrite a file's content without a write(): cp --reflink, the
 * default of coreutils' cp on btrfs and xfs. */
int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	struct ent *e = fd_get(fd);
	if (LIKELY(!e))
		return REAL(ioctl)(fd, req, arg);
	if (req == FICLONERANGE && arg) {
		const struct file_clone_range *cr = arg;
		if (cr->src_length)
			FD_REC(e, REAL(ioctl)(fd, req, arg), MTM_REC_WRITE, cr->dest_offset, cr->src_length);
		FD_REC(e, REAL(ioctl)(fd, req, arg), MTM_REC_WHOLE, 0, 0);
	}
	if (req == FICLONE)
		FD_REC(e, REAL(ioctl)(fd, req, arg), MTM_REC_WHOLE, 0, 0);
	if (req == FS_IOC_SETFLAGS || req == FS_IOC_FSSETXATTR)
		FD_REC(e, REAL(ioctl)(fd, req, arg), MTM_REC_META, 0, 0);
	return REAL(ioctl)(fd, req, arg);
}

/* POSIX AIO writes land whenever a libc thread gets to them, maybe after a
 * barrier: the file is compared at every checkpoint from now on. */
static int aio_note(int fd)
{
	struct ent *e = fd_get(fd);
	if (!e || t_guard)
		return 0;
	t_guard++;
	if (enter()) {
		int known = 0;
		if (lock(&g_st_lock)) {
			known = sticky_path_used(e);
			unlock(&g_st_lock);
		}
		if (!known) /* never released: a request may still be queued */
			sticky_add(SK_AIO, (uintptr_t)e, 0, 1, e->path, e->len);
		leave();
	}
	t_guard--;
	return 0;
}

#define W_LIO_LISTIO(ret, name, params, args, list, nent)                 \
	ret name params                                                   \
	{                                                                 \
		for (int i = 0; i < nent; i++)                            \
			if (list[i] && list[i]->aio_lio_opcode == LIO_WRITE) \
				aio_note(list[i]->aio_fildes);            \
		return REAL(name) args;                                   \
	}
#include "track/calls.def"

/* libaio: the kernel does the writes, complete when io_getevents says (a
 * direct write may land after a barrier): compared like POSIX AIO. */
int io_submit(aio_context_t ctx, long nr, struct iocb **ios)
{
	for (long i = 0; ios && i < nr; i++)
		if (ios[i] && (ios[i]->aio_lio_opcode == IOCB_CMD_PWRITE || ios[i]->aio_lio_opcode == IOCB_CMD_PWRITEV))
			aio_note((int)ios[i]->aio_fildes);
	return REAL(io_submit)(ctx, nr, ios);
}

static void adopt_rights(const struct msghdr *m)
{
	if (!m || !m->msg_control)
		return;
	for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)m); c; c = CMSG_NXTHDR((struct msghdr *)m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
			adopt_fd(fd);
		}
	}
}

ssize_t recvmsg(int s, struct msghdr *m, int flags)
{
	ssize_t r = REAL(recvmsg)(s, m, flags);
	if (r >= 0)
		adopt_rights(m);
	return r;
}

int recvmmsg(int s, struct mmsghdr *v, unsigned int n, int flags, struct timespec *t)
{
	int r = REAL(recvmmsg)(s, v, n, flags, t);
	for (int i = 0; i < r; i++)
		adopt_rights(&v[i].msg_hdr);
	return r;
}

int pidfd_getfd(int pidfd, int target, unsigned int flags)
{
	int fd = REAL(pidfd_getfd)(pidfd, target, flags);
	adopt_fd(fd);
	return fd;
}

#define W_AIO_WRITE(ret, name, params, args, cb) \
	ret name params                           \
	{                                         \
		aio_note(cb->aio_fildes);         \
		return REAL(name) args;           \
	}
#include "track/calls.def"

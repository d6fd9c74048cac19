/* io.c — system calls with fault injection; see io.h for the contract. */
#include <errno.h>
#include <stdatomic.h>
#include <limits.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include "io/io.h"
#include "util/error.h"

/* Read from the environment once (pthread_once): the pack writer's flusher
 * thread and separate store handles consult it concurrently. */
static struct {
	int op;            /* -1: any */
	uint64_t nth;      /* 0: no fault */
	int err;           /* errno, or -1 for a short transfer */
	int always;
	uint64_t crash_at; /* 0: never */
	int crash_op;      /* -1: crash_at counts the data mutations; else only this op (METAMORI_CRASH_OP) */
	uint64_t seen[IO_NOPS + 1];
	uint64_t mutations;
	char count_file[512];
	int trace_fd;      /* -1: not tracing */
} plan = {.trace_fd = -1, .crash_op = -1};

static const char *op_names[IO_NOPS] = {"open", "read", "write", "fsync", "rename", "truncate", "unlink", "mkdir",
                                        "meta", "clone"};

static void write_count(void)
{
	FILE *f = fopen(plan.count_file, "w");
	if (f) {
		fprintf(f, "%llu\n", (unsigned long long)plan.mutations);
		fclose(f);
	}
}

static void read_plan(void)
{
	/* never in setuid/setgid/capability programs: these knobs are for tests */
	if (getauxval(AT_SECURE))
		return;
	const char *f = secure_getenv("METAMORI_FAULT");
	if (f && *f) {
		char op[16] = "", err[16] = "", mode[16] = "";
		unsigned long long n = 0;
		if (sscanf(f, "%15[a-z]:%llu:%15[A-Za-z]:%15s", op, &n, err, mode) >= 3) {
			plan.op = -2;
			if (!strcmp(op, "any"))
				plan.op = -1;
			for (int i = 0; i < IO_NOPS; i++)
				if (!strcmp(op, op_names[i]))
					plan.op = i;
			plan.nth = plan.op == -2 ? 0 : n;
			plan.err = !strcmp(err, "ENOSPC") ? ENOSPC : !strcmp(err, "EINTR") ? EINTR
			         : !strcmp(err, "EDQUOT") ? EDQUOT : !strcmp(err, "short") ? -1 : EIO;
			plan.always = !strcmp(mode, "always");
		}
	}
	const char *c = secure_getenv("METAMORI_CRASH_AT");
	if (c && *c)
		plan.crash_at = strtoull(c, NULL, 10);
	const char *co = secure_getenv("METAMORI_CRASH_OP");
	for (int i = 0; co && *co && i < IO_NOPS; i++)
		if (!strcmp(co, op_names[i]))
			plan.crash_op = i;
	const char *tf = secure_getenv("METAMORI_IO_TRACE");
	if (tf && *tf)
		plan.trace_fd = open(tf, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	const char *cf = secure_getenv("METAMORI_IO_COUNT");
	if (cf && *cf && strlen(cf) < sizeof plan.count_file) {
		strcpy(plan.count_file, cf);
		atexit(write_count);
	}
}

static void load_plan(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, read_plan);
}

uint64_t io_mutations(void) { return __atomic_load_n(&plan.mutations, __ATOMIC_RELAXED); }

int io_fault_plan_active(void)
{
	load_plan();
	/* a fault at the nth operation, a count of them (METAMORI_IO_COUNT: the
	 * tests number the faults they inject from it), a kill at the nth read */
	return plan.nth != 0 || plan.count_file[0] || plan.crash_op == IO_READ;
}

/* Set by mtm_set_mapped_reads (tree/reader.c): this process may read its
 * store's index through a mapping (io_sqlite_map_size). */
static atomic_int index_map;

void io_set_index_map(int on) { atomic_store(&index_map, on != 0); }

int io_index_map(void) { return atomic_load(&index_map) && !io_fault_plan_active(); }

/* --- tracing (tests only) --- */
enum { TR_WRITE = 'W', TR_SYNC = 'S', TR_RENAME = 'R', TR_TRUNCATE = 'T', TR_UNLINK = 'U', TR_RMDIR = 'D',
       TR_MKDIR = 'M', TR_CREATE = 'C', TR_SYMLINK = 'L', TR_PUNCH = 'P' };

static int tracing(void)
{
	load_plan();
	return plan.trace_fd >= 0;
}

static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }

static void trace(int op, const char *path, const char *path2, int64_t off, int64_t len, const void *data)
{
	size_t l1 = strlen(path), l2 = path2 ? strlen(path2) : 0;
	size_t n = 1 + 4 + l1 + 4 + l2 + 16;
	unsigned char *rec = malloc(n);
	if (!rec)
		abort();
	unsigned char *p = rec;
	*p++ = (unsigned char)op;
	put_u32(p, (uint32_t)l1); p += 4;
	memcpy(p, path, l1); p += l1;
	put_u32(p, (uint32_t)l2); p += 4;
	if (l2)
		memcpy(p, path2, l2);
	p += l2;
	put_u64(p, (uint64_t)off); p += 8;
	put_u64(p, (uint64_t)len);
	struct iovec iov[2] = {{rec, n}, {(void *)data, data ? (size_t)len : 0}};
	/* one writev with O_APPEND: records never interleave */
	if (writev(plan.trace_fd, iov, data ? 2 : 1) < 0)
		abort();
	free(rec);
}

/* Absolute path of dirfd/rel (or of fd itself when rel is NULL). */
static void fd_path(int fd, const char *rel, char *out, size_t len)
{
	char link[64], dir[4096];
	if (fd == AT_FDCWD) {
		if (!getcwd(dir, sizeof dir))
			dir[0] = 0;
	} else {
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, dir, sizeof dir - 1);
		dir[n > 0 ? n : 0] = 0;
	}
	if (!rel)
		snprintf(out, len, "%s", dir);
	else if (rel[0] == '/')
		snprintf(out, len, "%s", rel);
	else
		snprintf(out, len, "%s/%s", dir, rel);
}

void io_trace_write(const char *path, const void *buf, size_t len, int64_t off)
{
	if (tracing() && path)
		trace(TR_WRITE, path, NULL, off, (int64_t)len, buf);
}
void io_trace_truncate(const char *path, int64_t len) { if (tracing() && path) trace(TR_TRUNCATE, path, NULL, 0, len, NULL); }
void io_trace_sync(const char *path) { if (tracing() && path) trace(TR_SYNC, path, NULL, 0, 0, NULL); }
void io_trace_create(const char *path) { if (tracing() && path) trace(TR_CREATE, path, NULL, 0, 0, NULL); }
void io_trace_unlink(const char *path) { if (tracing() && path) trace(TR_UNLINK, path, NULL, 0, 0, NULL); }

static void trace_fd_op(int op, int fd, const char *rel, int64_t off, int64_t len, const void *data)
{
	if (!tracing())
		return;
	char path[8192];
	fd_path(fd, rel, path, sizeof path);
	trace(op, path, NULL, off, len, data);
}

/* The operations METAMORI_CRASH_AT counts by default (io.h). */
static int io_counts_as_mutation(enum io_op op)
{
	return op != IO_OPEN && op != IO_READ && op != IO_META && op != IO_CLONE;
}

int io_fault(enum io_op op)
{
	load_plan();
	/* atomic: a pack writer's thread counts its writes too (store/flusher.c) */
	if (plan.crash_op >= 0 ? (int)op == plan.crash_op : io_counts_as_mutation(op)) {
		uint64_t m = __atomic_add_fetch(&plan.mutations, 1, __ATOMIC_RELAXED);
		if (plan.crash_at && m == plan.crash_at) {
			if (plan.count_file[0])
				write_count();
			kill(getpid(), SIGKILL);
		}
	}
	if (!plan.nth)
		return 0;
	uint64_t n = __atomic_add_fetch(&plan.seen[op], 1, __ATOMIC_RELAXED);
	uint64_t any = __atomic_add_fetch(&plan.seen[IO_NOPS], 1, __ATOMIC_RELAXED);
	uint64_t k = plan.op == -1 ? any : (plan.op == (int)op ? n : 0);
	if (k && (k == plan.nth || (plan.always && k > plan.nth)))
		return plan.err;
	return 0;
}

int io_openat(int dirfd, const char *path, int flags, mode_t mode, int *fd_out)
{
	int f = io_fault(IO_OPEN);
	if (f > 0 && f != EINTR) /* an injected EINTR is retried, as a real one */
		return f;
	int fd;
	do
		fd = openat(dirfd, path, flags | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return errno;
	if ((flags & (O_CREAT | O_TRUNC)) && tracing()) {
		if (flags & O_CREAT)
			trace_fd_op(TR_CREATE, fd, NULL, 0, 0, NULL);
		if (flags & O_TRUNC)
			trace_fd_op(TR_TRUNCATE, fd, NULL, 0, 0, NULL);
	}
	*fd_out = fd;
	return 0;
}

int io_open_plain(int dirfd, const char *path, int flags, int *fd_out, struct stat *st)
{
	struct stat own;
	if (!st)
		st = &own;
	*fd_out = -1;
	int fd, rc = io_openat(dirfd, path, flags | O_NONBLOCK | O_NOCTTY, 0, &fd);
	if (rc)
		return rc;
	if (fstat(fd, st))
		rc = errno;
	else if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode))
		rc = ENOTPLAIN;
	if (rc) {
		close(fd);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

int io_open_regular(int dirfd, const char *path, int flags, int *fd_out)
{
	struct stat st;
	int rc = io_open_plain(dirfd, path, flags, fd_out, &st);
	if (!rc && !S_ISREG(st.st_mode)) {
		close(*fd_out);
		*fd_out = -1;
		rc = ENOTPLAIN;
	}
	return rc;
}

int io_close(int fd) { return close(fd) ? errno : 0; }

int io_opendirat(int dirfd, const char *path, DIR **out)
{
	*out = NULL;
	int fd, rc = io_openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, &fd);
	if (rc)
		return rc;
	if (!(*out = fdopendir(fd))) {
		rc = errno;
		close(fd);
	}
	return rc;
}

int io_readdir(DIR *d, struct dirent **out)
{
	int f = io_fault(IO_READ);
	if (f > 0 && f != EINTR)
		return f;
	errno = 0;
	*out = readdir(d);
	return *out || !errno ? 0 : errno;
}

int io_pread(int fd, void *buf, size_t len, off_t off, size_t *got)
{
	size_t done = 0;
	while (done < len) {
		int f = io_fault(IO_READ);
		if (f > 0 && f != EINTR)
			return f;
		size_t want = len - done;
		if (f == -1 && want > 1)
			want /= 2; /* injected short read: the loop must carry on */
		ssize_t r;
		do /* an injected EINTR is retried as a real one would be (once: ":always" must not loop) */
			r = pread(fd, (char *)buf + done, want, off + (off_t)done);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return errno;
		if (r == 0)
			break;
		done += (size_t)r;
	}
	*got = done;
	return 0;
}

/* Writes len bytes at off, retrying short writes and EINTR, through the
 * fault points; *done says how far it got (also on an error). trace: one
 * record per piece written (io_pwrite), or none (the caller records). */
static int pwrite_all(int fd, const void *buf, size_t len, off_t off, size_t *done, int trace)
{
	*done = 0;
	while (*done < len) {
		int f = io_fault(IO_WRITE);
		if (f > 0 && f != EINTR)
			return f;
		size_t want = len - *done;
		if (f == -1 && want > 1)
			want /= 2; /* injected short write */
		ssize_t r;
		do
			r = pwrite(fd, (const char *)buf + *done, want, off + (off_t)*done);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return errno;
		if (r == 0)
			return EIO;
		if (trace)
			trace_fd_op(TR_WRITE, fd, NULL, off + (off_t)*done, r, (const char *)buf + *done);
		*done += (size_t)r;
	}
	return 0;
}

int io_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	size_t done;
	return pwrite_all(fd, buf, len, off, &done, 1);
}

int io_pwritev(int fd, struct iovec *iov, int cnt, off_t off)
{
	while (cnt > 0) {
		if (!iov->iov_len) {
			iov++, cnt--;
			continue;
		}
		int f = io_fault(IO_WRITE);
		if (f > 0 && f != EINTR)
			return f;
		ssize_t r;
		do /* an injected short write: half of the first iovec */
			r = f == -1 && iov->iov_len > 1 ? pwrite(fd, iov->iov_base, iov->iov_len / 2, off)
			                                : pwritev(fd, iov, cnt < IOV_MAX ? cnt : IOV_MAX, off);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return errno;
		if (r == 0)
			return EIO;
		for (size_t left = (size_t)r; left;) {
			size_t k = left < iov->iov_len ? left : iov->iov_len;
			trace_fd_op(TR_WRITE, fd, NULL, off, (int64_t)k, iov->iov_base);
			off += (off_t)k;
			left -= k;
			iov->iov_base = (char *)iov->iov_base + k;
			if (!(iov->iov_len -= k))
				iov++, cnt--;
		}
	}
	return 0;
}

/* A failed fsync is reported, never retried: the kernel may already have
 * marked the failed pages clean, so a second fsync could "succeed" while
 * the data is gone. EINTR cannot happen for fsync on Linux. */
int io_fsync(int fd)
{
	int f = io_fault(IO_FSYNC);
	if (f > 0)
		return f == EINTR ? EIO : f;
	if (fsync(fd))
		return errno;
	trace_fd_op(TR_SYNC, fd, NULL, 0, 0, NULL);
	return 0;
}

typedef struct {
	const int *fds;
	int *errs;
	size_t n, next; /* next: taken with an atomic add */
} fsync_batch;

static void *fsync_worker(void *arg)
{
	fsync_batch *b = arg;
	for (;;) {
		size_t i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
		if (i >= b->n)
			return NULL;
		b->errs[i] = io_fsync(b->fds[i]);
	}
}

int io_fsync_many(const int *fds, size_t n, int *errs)
{
	fsync_batch b = {fds, errs, n, 0};
	pthread_t th[IO_FSYNC_THREADS - 1];
	size_t started = 0;
	/* one thread per fsync beyond the caller's, up to the bound; a thread
	 * that cannot start leaves its share to the others */
	while (started + 1 < n && started < IO_FSYNC_THREADS - 1 && !pthread_create(&th[started], NULL, fsync_worker, &b))
		started++;
	fsync_worker(&b);
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	for (size_t i = 0; i < n; i++)
		if (errs[i])
			return errs[i];
	return 0;
}

int io_fdatasync(int fd)
{
	int f = io_fault(IO_FSYNC);
	if (f > 0)
		return f == EINTR ? EIO : f;
	if (fdatasync(fd))
		return errno;
	trace_fd_op(TR_SYNC, fd, NULL, 0, 0, NULL);
	return 0;
}

int io_extend_zeros(int fd, off_t from, off_t to)
{
	static const unsigned char zeros[64 << 10];
	off_t off = from;
	int rc = 0;
	while (!rc && off < to) {
		size_t want = to - off < (off_t)sizeof zeros ? (size_t)(to - off) : sizeof zeros, done;
		rc = pwrite_all(fd, zeros, want, off, &done, 0);
		off += (off_t)done;
	}
	/* one record, not the zeros themselves (a trace read while it is
	 * written: see io_sqlite_wal_reserve) */
	if (off > from)
		trace_fd_op(TR_TRUNCATE, fd, NULL, 0, off, NULL);
	return rc;
}

int io_renameat(int olddir, const char *oldpath, int newdir, const char *newpath)
{
	int f = io_fault(IO_RENAME);
	if (f > 0 && f != EINTR)
		return f;
	int r;
	do
		r = renameat(olddir, oldpath, newdir, newpath);
	while (r && errno == EINTR);
	if (r)
		return errno;
	if (tracing()) {
		char a[8192], b[8192];
		fd_path(olddir, oldpath, a, sizeof a);
		fd_path(newdir, newpath, b, sizeof b);
		trace(TR_RENAME, a, b, 0, 0, NULL);
	}
	return 0;
}

int io_ftruncate(int fd, off_t len)
{
	int f = io_fault(IO_TRUNCATE);
	if (f > 0 && f != EINTR)
		return f;
	int r;
	do
		r = ftruncate(fd, len);
	while (r && errno == EINTR);
	if (r)
		return errno;
	trace_fd_op(TR_TRUNCATE, fd, NULL, 0, len, NULL);
	return 0;
}

int io_unlinkat(int dirfd, const char *path, int flags)
{
	int f = io_fault(IO_UNLINK);
	if (f > 0 && f != EINTR)
		return f;
	if (tracing()) { /* resolve before the name is gone */
		char p[8192];
		fd_path(dirfd, path, p, sizeof p);
		if (unlinkat(dirfd, path, flags))
			return errno;
		trace(flags & AT_REMOVEDIR ? TR_RMDIR : TR_UNLINK, p, NULL, 0, 0, NULL);
		return 0;
	}
	return unlinkat(dirfd, path, flags) ? errno : 0;
}

int io_mkdirat(int dirfd, const char *path, mode_t mode)
{
	int f = io_fault(IO_MKDIR);
	if (f > 0 && f != EINTR)
		return f;
	if (mkdirat(dirfd, path, mode))
		return errno;
	trace_fd_op(TR_MKDIR, dirfd, path, 0, 0, NULL);
	return 0;
}

int io_symlinkat(const char *target, int dirfd, const char *path)
{
	int f = io_fault(IO_MKDIR);
	if (f > 0 && f != EINTR)
		return f;
	if (symlinkat(target, dirfd, path))
		return errno;
	if (tracing()) {
		char p[8192];
		fd_path(dirfd, path, p, sizeof p);
		trace(TR_SYMLINK, p, target, 0, 0, NULL);
	}
	return 0;
}

int io_linkat(int olddir, const char *oldpath, int newdir, const char *newpath)
{
	int f = io_fault(IO_MKDIR);
	if (f > 0 && f != EINTR)
		return f;
	if (linkat(olddir, oldpath, newdir, newpath, 0))
		return errno;
	trace_fd_op(TR_CREATE, newdir, newpath, 0, 0, NULL); /* (the power-loss model sees a new file) */
	return 0;
}

int io_mknodat(int dirfd, const char *path, mode_t mode, dev_t dev)
{
	int f = io_fault(IO_MKDIR);
	if (f > 0 && f != EINTR)
		return f;
	if (mknodat(dirfd, path, mode, dev))
		return errno;
	trace_fd_op(TR_CREATE, dirfd, path, 0, 0, NULL); /* (the power-loss model sees an empty file) */
	return 0;
}

int io_punch_hole(int fd, off_t off, off_t len)
{
	int f = io_fault(IO_WRITE);
	if (f > 0 && f != EINTR && f != -1)
		return f;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0) {
		trace_fd_op(TR_PUNCH, fd, NULL, off, len, NULL);
		return 0;
	}
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return errno;
	static const char zeros[65536];
	while (len > 0) {
		size_t n = len > (off_t)sizeof zeros ? sizeof zeros : (size_t)len;
		int rc = io_pwrite(fd, zeros, n, off);
		if (rc)
			return rc;
		off += (off_t)n;
		len -= (off_t)n;
	}
	return 0;
}

int io_fsync_dirat(int dirfd, const char *path)
{
	int fd, rc = io_openat(dirfd, path, O_RDONLY | O_DIRECTORY, 0, &fd);
	if (rc)
		return rc;
	rc = io_fsync(fd);
	close(fd);
	return rc;
}

/* The metadata calls: an injected EINTR is retried (invisible), as on the
 * other operations; a short transfer means nothing to them. */
static int meta_fault(enum io_op op)
{
	int f = io_fault(op);
	return f > 0 && f != EINTR ? f : 0;
}

#define META_CALL(op, call)                   \
	do {                                  \
		int f_ = meta_fault(op);      \
		if (f_)                       \
			return f_;            \
		int r_;                       \
		do                            \
			r_ = (call);          \
		while (r_ && errno == EINTR); \
		return r_ ? errno : 0;        \
	} while (0)

int io_fchown(int fd, uid_t uid, gid_t gid) { META_CALL(IO_META, fchown(fd, uid, gid)); }
int io_fchmod(int fd, mode_t mode) { META_CALL(IO_META, fchmod(fd, mode)); }
int io_futimens(int fd, const struct timespec ts[2]) { META_CALL(IO_META, futimens(fd, ts)); }
int io_fchownat(int dirfd, const char *path, uid_t uid, gid_t gid, int flags)
{
	META_CALL(IO_META, fchownat(dirfd, path, uid, gid, flags));
}
int io_fchmodat(int dirfd, const char *path, mode_t mode, int flags)
{
	META_CALL(IO_META, fchmodat(dirfd, path, mode, flags));
}
int io_utimensat(int dirfd, const char *path, const struct timespec ts[2], int flags)
{
	META_CALL(IO_META, utimensat(dirfd, path, ts, flags));
}
int io_clone(int dst, int src) { META_CALL(IO_CLONE, ioctl(dst, FICLONE, src)); }

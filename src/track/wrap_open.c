/* wrap_open.c — wrappers: opening, closing and duplicating fds. */
#include "track/init.h"

static void stdio_retarget(int fd, int in);
#define STDIO_FD(fd) UNLIKELY((unsigned)(fd)-1u < 2u)

static int open_impl(int dirfd, const char *path, int flags, mode_t mode)
{
	if (!active() || t_guard)
		return REAL(openat)(dirfd, path, flags, mode);
	t_guard++;
	int tmpf = (flags & O_TMPFILE) == O_TMPFILE;
	int modifying = (flags & (O_CREAT | O_TRUNC)) && !tmpf;
	int wr = (flags & O_ACCMODE) != O_RDONLY;
	char abs[PATH_MAX];
	size_t lrl;
	const char *lrel = NULL;
	int la = lex_abs(dirfd, path, abs);
	if (la >= 0 && quick_outside(abs) && !fd_link(abs))
		wr = modifying = 0; /* /dev/null and the like: nothing to look at */
	else if (la >= 0)
		lrel = in_root(abs, &lrl);
	int in = 0, existed = 1;
	if (modifying && lrel) {
		struct stat st;
		if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
			existed = 0;
		else if (fstatat(dirfd, path, &st, 0) == 0)
			existed = 1;
		else
			existed = 0;
		/* opening a FIFO can block until a reader comes: never inside
		 * the region (it changes no file anyway) */
		if (!existed || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
			in = enter();
		else
			modifying = 0;
	}
	int fd = REAL(openat)(dirfd, path, flags, mode);
	int err = errno;
	if (fd >= 0) {
		char *canon = abs; /* the lexical path is done with (lrel is a flag now) */
		const char *rel = NULL;
		size_t rl = 0;
		/* A file open only for reading cannot change through its fd
		 * (fchmod & co look the path up themselves): only directories,
		 * the bases of *at calls, are worth an entry then. */
		if (!tmpf && (wr || modifying || (lrel && (flags & (O_DIRECTORY | O_PATH)))) &&
		    fdpath(fd, canon) > 0)
			rel = in_root(canon, &rl);
		if (rel) {
			int tk = trackable(fd);
			if (tk)
				fd_set_path(fd, rel, rl, (uint32_t)flags | (tk == 2 ? ENT_MULTI : 0));
			else
				fd_clear(fd);
			if (tk == 2 && (flags & O_TRUNC) && in)
				multi_scan();
			if (modifying) {
				if (!in && !lrel) {
					in = enter(); /* reached the tree through a symlink */
					existed = !(flags & O_CREAT);
				}
				if (in && (flags & O_CREAT) && !existed)
					rec(MTM_REC_NS, 0, 0, rel, rl);
				if (in && (flags & O_TRUNC) && existed)
					rec(MTM_REC_TRUNC, 0, 0, rel, rl);
			}
		} else {
			fd_clear(fd);
		}
		if (STDIO_FD(fd))
			stdio_retarget(fd, in);
	}
	if (in)
		leave();
	t_guard--;
	errno = err;
	return fd;
}

#define OPEN_MODE(flags, last)                                              \
	mode_t mode = 0;                                                        \
	if (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE) {        \
		va_list ap;                                                     \
		va_start(ap, last);                                             \
		mode = (mode_t)va_arg(ap, int);                                 \
		va_end(ap);                                                     \
	}

/* The opens (calls.def): path, flags (and dirfd) are the rows' parameter names. */
#define W_OPEN(ret, name, params, dirfd)                \
	ret name params                                  \
	{                                                \
		OPEN_MODE(flags, flags);                 \
		return open_impl(dirfd, path, flags, mode); \
	}
#define W_OPEN_AS(ret, name, params, dirfd, flags, mode) \
	ret name params { return open_impl(dirfd, path, flags, mode); }
#include "track/calls.def"

int close(int fd)
{
	if (UNLIKELY(fd == g_logfd && fd >= 0))
		return 0; /* our log's lock tells the session we live: keep it */
	fd_clear(fd);
	return REAL(close)(fd);
}

int close_range(unsigned first, unsigned last, int flags)
{
	int lf = g_logfd;
	if (lf >= 0 && (unsigned)lf >= first && (unsigned)lf <= last && !(flags & 4 /* CLOSE_RANGE_CLOEXEC */)) {
		int r = 0;
		if ((unsigned)lf > first)
			r = close_range(first, (unsigned)lf - 1, flags);
		if (r == 0 && (unsigned)lf < last)
			r = close_range((unsigned)lf + 1, last, flags);
		return r;
	}
	int r = REAL(close_range)(first, last, flags);
	if (r == 0 && !(flags & 4) && g_nfds) {
		int max = LOAD(&g_maxfd);
		for (unsigned fd = first; fd <= last && (int)fd <= max; fd++)
			fd_clear((int)fd);
	}
	return r;
}

void closefrom(int lowfd)
{
	if (lowfd < 0)
		lowfd = 0;
	close_range((unsigned)lowfd, ~0u, 0);
}

/* Keep our log fd out of the way of dup2/dup3 onto its number. */
static void log_fd_dodge(int newfd)
{
	if (newfd != g_logfd || newfd < 0)
		return;
	int n = REAL(fcntl)(g_logfd, F_DUPFD_CLOEXEC, 3);
	if (n >= 0)
		g_logfd = n; /* same open file description: the lock stays */
}

/* fd 1 or 2 now refers to another file (dup2 onto it, or close then open or
 * dup): stdout/stderr write there through libc, unseen. in: already inside
 * the region. */
static void stdio_retarget(int fd, int in)
{
	FILE *f = fd == 1 ? stdout : stderr;
	struct ent *e = fd_get(fd);
	int w = e && (LOAD(&e->flags) & O_ACCMODE) != O_RDONLY;
	int found;
	struct ent *gone = stream_forget(f, &found);
	if (!w && !found)
		return;
	int mine = 0;
	if (!in)
		in = mine = enter();
	if (gone)
		release(gone, in);
	if (w && in)
		sticky_add(SK_STREAM, (uintptr_t)f, 0, 1, e->path, e->len);
	if (mine)
		leave();
}

static void fd_dup_done(int fd, int r)
{
	if (fd_get(fd) || fd_get(r))
		fd_copy(fd, r);
	if (STDIO_FD(r) && g_nfds && !t_guard) {
		int err = errno;
		t_guard++;
		stdio_retarget(r, 0);
		t_guard--;
		errno = err;
	}
}

int dup(int fd)
{
	int r = REAL(dup)(fd);
	if (r >= 0)
		fd_dup_done(fd, r);
	return r;
}

int dup2(int fd, int fd2)
{
	log_fd_dodge(fd2);
	int r = REAL(dup2)(fd, fd2);
	if (r >= 0 && fd != fd2)
		fd_dup_done(fd, r);
	return r;
}

int dup3(int fd, int fd2, int flags)
{
	log_fd_dodge(fd2);
	int r = REAL(dup3)(fd, fd2, flags);
	if (r >= 0)
		fd_dup_done(fd, r);
	return r;
}

static int fcntl_after(int fd, int cmd, long arg, int r)
{
	if (r < 0)
		return r;
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) {
		fd_dup_done(fd, r);
	} else if (cmd == F_SETFL) {
		struct ent *e = fd_get(fd);
		if (e)
			__atomic_store_n(&e->flags, (e->flags & ~(uint32_t)O_APPEND) | ((uint32_t)arg & O_APPEND),
			                 __ATOMIC_RELEASE);
	}
	return r;
}

#define W_FCNTL(ret, name, params, args, fd, cmd)                            \
	ret name params                                                       \
	{                                                                     \
		va_list ap;                                                   \
		va_start(ap, cmd);                                            \
		void *arg = va_arg(ap, void *);                               \
		va_end(ap);                                                   \
		if (cmd == F_SETFD && fd == g_logfd && fd >= 0)               \
			return 0; /* keep FD_CLOEXEC as we set it */          \
		return fcntl_after(fd, cmd, (long)arg, REAL(name) args);      \
	}
#include "track/calls.def"

int chdir(const char *path)
{
	int r = REAL(chdir)(path);
	if (r == 0)
		cwd_forget();
	return r;
}

int fchdir(int fd)
{
	int r = REAL(fchdir)(fd);
	if (r == 0)
		cwd_forget();
	return r;
}

DIR *opendir(const char *path)
{
	DIR *d = REAL(opendir)(path);
	if (d && g_nfds)
		fd_clear(dirfd(d)); /* opened inside libc: whatever we had is stale */
	return d;
}

int closedir(DIR *d)
{
	if (g_nfds)
		fd_clear(dirfd(d));
	return REAL(closedir)(d);
}

/* wrap_path.c — wrappers: calls that change the tree through a path (create,
 * remove, rename, link, metadata). */
#include "track/init.h"
#include "track/adopt.h"

/* Wrapper body: resolve, enter, call, record on success (r == 0). */
#define PATH_REC(call, dirfd, path, follow, type, a, b)                       \
	do {                                                                  \
		if (!active() || t_guard)                                     \
			return call;                                          \
		t_guard++;                                                    \
		char rel_[PATH_MAX];                                          \
		int rl_ = resolve_at(dirfd, path, follow, rel_);              \
		int in_ = rl_ >= 0 ? enter() : 0;                             \
		int r_ = call;                                                \
		int err_ = errno;                                             \
		if (in_) {                                                    \
			if (r_ == 0) {                                        \
				rec(type, a, b, rel_, (size_t)rl_);           \
				if ((type) != MTM_REC_NS)                     \
					multi_check_at(dirfd, path, follow);  \
			}                                                     \
		}                                                             \
		WRAP_LEAVE();                                                 \
		return r_;                                                    \
	} while (0)

#define W_NS(ret, name, params, args, dirfd, path) \
	ret name params { PATH_REC(REAL(name) args, dirfd, path, 0, MTM_REC_NS, 0, 0); }
#define W_META(ret, name, params, args, dirfd, path, follow) \
	ret name params { PATH_REC(REAL(name) args, dirfd, path, follow, MTM_REC_META, 0, 0); }
#define W_PATH_REC(ret, name, params, args, path, type, a) \
	ret name params { PATH_REC(REAL(name) args, AT_FDCWD, path, 1, type, a, 0); }
#include "track/calls.def"

/* Metadata through an fd: the rarer calls may use fds we did not open. */
#define FD_META(call, fd)                                                     \
	do {                                                                  \
		if (!g_nfds || t_guard)                                       \
			return call;                                          \
		t_guard++;                                                    \
		char rel_[PATH_MAX];                                          \
		int rl_ = fd_rel(fd, rel_);                                   \
		int in_ = rl_ >= 0 ? enter() : 0;                             \
		int r_ = call;                                                \
		int err_ = errno;                                             \
		if (in_) {                                                    \
			if (r_ == 0) {                                        \
				rec(MTM_REC_META, 0, 0, rel_, (size_t)rl_);   \
				multi_check_fd(fd);                           \
			}                                                     \
		}                                                             \
		WRAP_LEAVE();                                                 \
		return r_;                                                    \
	} while (0)

#define W_FDMETA(ret, name, params, args, fd) \
	ret name params { FD_META(REAL(name) args, fd); }
#include "track/calls.def"

int utimensat(int dirfd, const char *path_, const struct timespec t[2], int flags)
{
	const char *path = path_;
	__asm__("" : "+r"(path)); /* glibc declares it nonnull; Linux takes NULL (the fd itself) */
	if (!path || (!*path && (flags & AT_EMPTY_PATH)))
		FD_META(REAL(utimensat)(dirfd, path, t, flags), dirfd);
	PATH_REC(REAL(utimensat)(dirfd, path, t, flags), dirfd, path, !(flags & AT_SYMLINK_NOFOLLOW),
	         MTM_REC_META, 0, 0);
}

static int rename_impl(int od, const char *o, int nd, const char *n, unsigned flags, int how)
{
#define RENAME_CALL                                                                         \
	(how == 0 ? REAL(rename)(o, n) : how == 1 ? REAL(renameat)(od, o, nd, n) \
	                                          : REAL(renameat2)(od, o, nd, n, flags))
	if (!active() || t_guard)
		return RENAME_CALL;
	t_guard++;
	char ro[PATH_MAX], rn[PATH_MAX];
	int lo = resolve_at(od, o, 0, ro);
	int ln = resolve_at(nd, n, 0, rn);
	int in = lo >= 0 || ln >= 0 ? enter() : 0;
	int r = RENAME_CALL;
	int err = errno;
	if (in && r == 0) {
		if (lo >= 0)
			rec(MTM_REC_NS, 0, 0, ro, (size_t)lo);
		if (ln >= 0)
			rec(MTM_REC_NS, 0, 0, rn, (size_t)ln);
	}
	if (r == 0 && lo >= 0 && !(flags & RENAME_EXCHANGE))
		paths_moved(ro, (size_t)lo, ln >= 0 ? rn : NULL, ln >= 0 ? (size_t)ln : 0, in);
	/* moved in from outside (or swapped with something outside): an fd
	 * opened on it there wrote unrecorded, and a write through it beside
	 * recorded ones to the same file would have been taken as explained by
	 * them (tests/session test_file_moved_in_while_open); and so may
	 * another traced process's fds: told through ctl->moved_in, bumped
	 * while still in the region, so before any barrier after the move
	 * (test_file_moved_in_by_another_process) */
	if (r == 0 && (lo < 0) != (ln < 0) && (ln >= 0 || (flags & RENAME_EXCHANGE))) {
		if (LOAD(&g_ctl))
			__atomic_fetch_add(&g_ctl->moved_in, 1, __ATOMIC_SEQ_CST);
		adopt_moved_in();
	}
	if (in)
		leave();
	t_guard--;
	errno = err;
	return r;
#undef RENAME_CALL
}

int renameat2(int od, const char *o, int nd, const char *n, unsigned int flags)
{
	return rename_impl(od, o, nd, n, flags, 2);
}

static int link_impl(int od, const char *o, int nd, const char *n, int flags, int how)
{
#define LINK_CALL (how == 0 ? REAL(link)(o, n) : REAL(linkat)(od, o, nd, n, flags))
	if (!active() || t_guard)
		return LINK_CALL;
	t_guard++;
	char ro[PATH_MAX], rn[PATH_MAX];
	int srcfd = -1, lo;
	if (o && !*o && (flags & AT_EMPTY_PATH))
		srcfd = od;
	else if (o && strncmp(o, "/proc/self/fd/", 14) == 0)
		srcfd = atoi(o + 14); /* an O_TMPFILE file given a name */
	lo = srcfd >= 0 ? -1 : resolve_at(od, o, (flags & AT_SYMLINK_FOLLOW) != 0, ro);
	int ln = resolve_at(nd, n, 0, rn);
	int in = lo >= 0 || ln >= 0 ? enter() : 0;
	int r = LINK_CALL;
	int err = errno;
	if (in && r == 0) {
		if (ln >= 0)
			rec(MTM_REC_NS, 0, 0, rn, (size_t)ln);
		if (lo >= 0)
			rec(MTM_REC_META, 0, 0, ro, (size_t)lo); /* link count, ctime */
	}
	if (r == 0 && lo >= 0) {
		/* fds open on it now write to a file with several names */
		int max = LOAD(&g_maxfd);
		for (int fd = 0; fd <= max && fd < g_nfds; fd++) {
			struct ent *e = fd_get(fd);
			if (e && e->len == (size_t)lo && memcmp(e->path, ro, (size_t)lo) == 0)
				__atomic_fetch_or(&e->flags, ENT_MULTI, __ATOMIC_ACQ_REL);
		}
	}
	if (r == 0 && srcfd >= 0 && ln >= 0 && !fd_get(srcfd)) {
		int fl = REAL(fcntl)(srcfd, F_GETFL);
		if (fl >= 0)
			fd_set_path(srcfd, rn, (size_t)ln, (uint32_t)fl);
	}
	if (in)
		leave();
	t_guard--;
	errno = err;
	return r;
#undef LINK_CALL
}


/* mkstemp and friends create the file inside libc: seen here only
 * (calls.def's W_MKSTEMP rows; oflags: the open flags the call was given). */
#define MKSTEMP_REC(call, tmpl, oflags)                                                       \
	do {                                                                                  \
		if (!active() || t_guard)                                                     \
			return call;                                                          \
		t_guard++;                                                                    \
		char rel_[PATH_MAX], canon_[PATH_MAX];                                        \
		int in_ = resolve_at(AT_FDCWD, tmpl, 0, rel_) >= 0 ? enter() : 0;             \
		int fd_ = call;                                                               \
		int err_ = errno;                                                             \
		if (fd_ >= 0 && fdpath(fd_, canon_) > 0) {                                    \
			size_t rl_;                                                           \
			const char *r_ = in_root(canon_, &rl_);                               \
			if (r_) {                                                             \
				fd_set_path(fd_, r_, rl_, O_RDWR | (uint32_t)(oflags));       \
				if (!in_)                                                     \
					in_ = enter();                                        \
				if (in_)                                                      \
					rec(MTM_REC_NS, 0, 0, r_, rl_);                       \
			} else {                                                              \
				fd_clear(fd_);                                                \
			}                                                                     \
		}                                                                             \
		if (in_)                                                                      \
			leave();                                                              \
		t_guard--;                                                                    \
		errno = err_;                                                                 \
		return fd_;                                                                   \
	} while (0)

#define W_MKSTEMP(ret, name, params, args, tmpl, oflags) \
	ret name params { MKSTEMP_REC(REAL(name) args, tmpl, oflags); }
#include "track/calls.def"

char *mkdtemp(char *tmpl)
{
	if (!active() || t_guard)
		return REAL(mkdtemp)(tmpl);
	t_guard++;
	char rel[PATH_MAX];
	int in = resolve_at(AT_FDCWD, tmpl, 0, rel) >= 0 ? enter() : 0;
	char *r = REAL(mkdtemp)(tmpl);
	int err = errno;
	if (in) {
		int rl;
		if (r && (rl = resolve_at(AT_FDCWD, r, 0, rel)) >= 0)
			rec(MTM_REC_NS, 0, 0, rel, (size_t)rl);
		leave();
	}
	t_guard--;
	errno = err;
	return r;
}

/* rename, renameat, link and linkat: rename_impl's and link_impl's faces
 * (calls.def's W_FORWARD_PATH rows). */
#define W_FORWARD_PATH(ret, name, params, call) \
	ret name params { return call; }
#include "track/calls.def"

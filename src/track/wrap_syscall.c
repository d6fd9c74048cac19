/* wrap_syscall.c — wrappers: syscall(), io_uring, and calls without a libc
 * wrapper. */
#include "track/adopt.h"

struct open_how_ { uint64_t flags, mode, resolve; };

/* An fd opened by a call whose path cannot be checked before it (openat2's
 * RESOLVE_* rules, open_by_handle_at's handle): tracked if it is the
 * tree's, recorded as made or truncated if flags say so. */
static long opened(long fd, uint64_t flags)
{
	int err = errno;
	char canon[PATH_MAX];
	size_t rl;
	const char *rel;
	if (fd >= 0 && LOAD(&g_state) == ST_ON && !t_guard && fdpath((int)fd, canon) > 0 &&
	    (rel = in_root(canon, &rl)) && trackable((int)fd)) {
		t_guard++;
		fd_set_path((int)fd, rel, rl, (uint32_t)flags);
		if ((flags & (O_CREAT | O_TRUNC)) && enter()) {
			rec(MTM_REC_NS, 0, 0, rel, rl); /* created or truncated: rescan */
			leave();
		}
		t_guard--;
	} else if (fd >= 0) {
		fd_clear((int)fd);
	}
	errno = err;
	return fd;
}

/* A file opened by its handle (name_to_handle_at's): the fd is the tree's
 * if the file is (tests/session test_gap_alive_handle). */
int open_by_handle_at(int mfd, struct file_handle *h, int flags)
{
	return (int)opened(REAL(open_by_handle_at)(mfd, h, flags), (uint64_t)flags);
}

long syscall(long n, ...)
{
	va_list ap;
	va_start(ap, n);
	long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
	long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
	va_end(ap);
	return preload_traced_syscall(n, a1, a2, a3, a4, a5, a6);
}

/* What syscall() does for a call, also for a call trapped by dispatch.c. */
long preload_traced_syscall(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
	if (LOAD(&g_state) != ST_ON || t_guard)
		return REAL(syscall)(n, a1, a2, a3, a4, a5, a6);
	switch (n) {
#ifdef SYS_io_uring_setup
	case SYS_io_uring_setup: {
		long r = REAL(syscall)(n, a1, a2, a3, a4, a5, a6);
		if (r >= 0) {
			int err = errno;
			t_guard++;
			sticky_scan(); /* the ring writes files without us */
			t_guard--;
			errno = err;
		}
		return r;
	}
#endif
	/* through the wrappers of their libc functions: an fd opened or a
	 * mapping made here is tracked as open()'s and mmap()'s are (a trusted
	 * writer's untracked fd beside a tracked one on the same file made its
	 * writes through it look explained: tests/session test_gap_alive_*) */
#ifdef SYS_open
	case SYS_open: return open((const char *)a1, (int)a2, (mode_t)a3);
	case SYS_creat: return creat((const char *)a1, (mode_t)a2);
	case SYS_rename: return rename((const char *)a1, (const char *)a2);
	case SYS_unlink: return unlink((const char *)a1);
	case SYS_mkdir: return mkdir((const char *)a1, (mode_t)a2);
	case SYS_rmdir: return rmdir((const char *)a1);
	case SYS_dup2: return dup2((int)a1, (int)a2);
#endif
	case SYS_openat: return openat((int)a1, (const char *)a2, (int)a3, (mode_t)a4);
	case SYS_truncate: return truncate((const char *)a1, (off_t)a2);
	case SYS_mmap: return (long)mmap((void *)a1, (size_t)a2, (int)a3, (int)a4, (int)a5, (off_t)a6);
	case SYS_munmap: return munmap((void *)a1, (size_t)a2);
	case SYS_mprotect: return mprotect((void *)a1, (size_t)a2, (int)a3);
	case SYS_msync: return msync((void *)a1, (size_t)a2, (int)a3);
	case SYS_dup: return dup((int)a1);
	case SYS_dup3: return dup3((int)a1, (int)a2, (int)a3);
	case SYS_fcntl: return fcntl((int)a1, (int)a2, a3);
	case SYS_execve: return execve((const char *)a1, (char *const *)a2, (char *const *)a3);
	case SYS_renameat2:
		return renameat2((int)a1, (const char *)a2, (int)a3, (const char *)a4, (unsigned)a5);
	case SYS_renameat:
		return renameat((int)a1, (const char *)a2, (int)a3, (const char *)a4);
	case SYS_unlinkat:
		return unlinkat((int)a1, (const char *)a2, (int)a3);
	case SYS_mkdirat:
		return mkdirat((int)a1, (const char *)a2, (mode_t)a3);
	case SYS_write:
		return write((int)a1, (const void *)a2, (size_t)a3);
	case SYS_pwrite64:
		return pwrite((int)a1, (const void *)a2, (size_t)a3, (off_t)a4);
	case SYS_writev:
		return writev((int)a1, (const struct iovec *)a2, (int)a3);
	case SYS_pwritev: /* the offset comes split in two longs: low, high */
		return pwritev((int)a1, (const struct iovec *)a2, (int)a3,
		               (off_t)(((unsigned long)a4) | ((unsigned long)a5 << 32 << 32)));
#ifdef SYS_pwritev2
	case SYS_pwritev2:
		return pwritev2((int)a1, (const struct iovec *)a2, (int)a3,
		                (off_t)(((unsigned long)a4) | ((unsigned long)a5 << 32 << 32)), (int)a6);
#endif
#ifdef SYS_pidfd_getfd
	case SYS_pidfd_getfd: {
		long fd = REAL(syscall)(n, a1, a2, a3, a4, a5, a6);
		adopt_fd((int)fd);
		return fd;
	}
#endif
	case SYS_ftruncate:
		return ftruncate((int)a1, (off_t)a2);
	case SYS_fallocate:
		return fallocate((int)a1, (int)a2, (off_t)a3, (off_t)a4);
	case SYS_close:
		return close((int)a1);
#ifdef SYS_openat2
	case SYS_openat2: {
		/* RESOLVE_* semantics cannot be pre-checked: record after */
		const struct open_how_ *how = (const void *)a3;
		long fd = REAL(syscall)(n, a1, a2, a3, a4, a5, a6);
		return how ? opened(fd, how->flags) : fd;
	}
#endif
	case SYS_open_by_handle_at:
		return open_by_handle_at((int)a1, (struct file_handle *)a2, (int)a3);
	default:
		return REAL(syscall)(n, a1, a2, a3, a4, a5, a6);
	}
}

/* liburing issues its system calls itself (not through syscall()); its
 * entry points that make a ring are what we can see. */
static int uring_made(int r)
{
	if (r >= 0 && LOAD(&g_state) == ST_ON && !t_guard) {
		int err = errno;
		t_guard++;
		sticky_scan();
		t_guard--;
		errno = err;
	}
	return r;
}

int io_uring_setup(unsigned entries, void *p) { return uring_made(REAL(io_uring_setup)(entries, p)); }
int io_uring_queue_init(unsigned entries, void *ring, unsigned flags)
{
	return uring_made(REAL(io_uring_queue_init)(entries, ring, flags));
}
int io_uring_queue_init_params(unsigned entries, void *ring, void *p)
{
	return uring_made(REAL(io_uring_queue_init_params)(entries, ring, p));
}

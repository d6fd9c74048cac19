/* adopt.c — fds taken into the table that no wrapper of ours opened:
 * received from another process, or open on what moved into the tree. */
#include "track/adopt.h"

/* An fd that came from another process (SCM_RIGHTS, pidfd_getfd): into the
 * table as an open of its file would have put it. */
/* adopt_fd's look at fd (t_guard held). */
static void adopt_one(int fd)
{
	char canon[PATH_MAX];
	size_t rl;
	const char *rel = NULL;
	int fl = REAL(fcntl)(fd, F_GETFL), tk = 0;
	if (fl >= 0 && fdpath(fd, canon) > 0)
		rel = in_root(canon, &rl);
	if (rel && (tk = trackable(fd)) && ((fl & O_ACCMODE) != O_RDONLY || tk == 1))
		fd_set_path(fd, rel, rl, (uint32_t)fl | (tk == 2 ? ENT_MULTI : 0));
	else
		fd_clear(fd);
}

void adopt_fd(int fd)
{
	if (fd < 0 || LOAD(&g_state) != ST_ON || t_guard)
		return;
	int err = errno;
	t_guard++;
	adopt_one(fd);
	t_guard--;
	errno = err;
}

/* Every fd not in the table looked at again: /proc/self/fd read with
 * getdents64 into a buffer on the stack (no opendir: this runs in write()
 * and the like, which a signal handler may call). */
void adopt_moved_in(void)
{
	int d = REAL(open)("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d < 0)
		return;
	char buf[4096] __attribute__((aligned(8)));
	long n;
	while ((n = REAL(syscall)(SYS_getdents64, d, buf, sizeof buf)) > 0)
		for (long off = 0; off < n;) {
			const struct dirent64 *de = (const void *)(buf + off);
			off += de->d_reclen;
			int fd = 0;
			const char *c = de->d_name;
			for (; *c >= '0' && *c <= '9' && fd < (1 << 24); c++)
				fd = fd * 10 + (*c - '0');
			if (c != de->d_name && !*c && fd != d && !fd_get(fd))
				adopt_one(fd);
		}
	REAL(close)(d);
}

uint32_t g_moved_seen;

void moved_in_catch_up(uint32_t gen)
{
	if (LOAD(&g_state) != ST_ON || LOAD(&g_detached) || t_guard)
		return;
	int err = errno;
	t_guard++;
	/* (seen first: a move made while we look is looked at again) */
	__atomic_store_n(&g_moved_seen, gen, __ATOMIC_SEQ_CST);
	adopt_moved_in();
	t_guard--;
	errno = err;
}

void moved_in_during(int fd)
{
	int err = errno;
	moved_in_catch_up(moved_gen());
	struct ent *e = fd_get(fd);
	if (e && !t_guard) {
		t_guard++;
		if (enter()) {
			rec_e(MTM_REC_WHOLE, 0, 0, e);
			leave();
		}
		t_guard--;
	}
	errno = err;
}

/*
 * adopt.h — fds this process did not open through a wrapper, taken into the
 * fd table (adopt.c): fds received from another process, and fds opened
 * outside the tree on what was later moved into it. The wrappers that change
 * a file through an fd reach the table through fd_get_w and UNTRACKED_CALL
 * here, so the catch-up with moves sits below them (and below preload.h,
 * which every file of the interposer includes). Inline, as before: an
 * untracked write costs one array lookup and two loads.
 */
#ifndef MTM_TRACK_ADOPT_H
#define MTM_TRACK_ADOPT_H
#include "track/preload.h"

/* An fd received from elsewhere (SCM_RIGHTS, pidfd_getfd), tracked if it is
 * ours. */
PRELOAD_HIDDEN void adopt_fd(int fd);
/* After this process moved something from outside the tree into it: its fds
 * open on what moved (not in the table: they were opened outside) are
 * tracked from now on, under their new paths (t_guard held). Another
 * process's fds on it are not: see docs/TRACKING.md. */
PRELOAD_HIDDEN void adopt_moved_in(void);

/* Something was moved into the tree from outside (by any traced process:
 * ctl->moved_in): an fd not in the table may be open on it now, and its
 * writes, unrecorded, beside recorded ones to the same file would be taken
 * as explained by them. So a call that changes a file through an fd not in
 * the table compares ctl->moved_in (one load) with the generation this
 * process last caught up with, and on news looks at its fds again
 * (moved_in_catch_up; async-signal-safe). */
PRELOAD_HIDDEN extern uint32_t g_moved_seen;
PRELOAD_HIDDEN void moved_in_catch_up(uint32_t gen);
/* The call through an fd not in the table saw ctl->moved_in change while
 * it ran (a barrier may have come between): if fd is in the table now, its
 * file is compared whole at the next checkpoint. */
PRELOAD_HIDDEN void moved_in_during(int fd);
static inline uint32_t moved_gen(void)
{
	struct mtm_ctl *c = LOAD(&g_ctl);
	return c ? LOAD(&c->moved_in) : 0;
}
/* fd_get for a call that changes the file: on a miss, caught up with the
 * moves into the tree first. */
static inline struct ent *fd_get_w(int fd)
{
	struct ent *e = fd_get(fd);
	if (LIKELY(e))
		return e;
	uint32_t g = moved_gen();
	if (LIKELY(g == LOAD(&g_moved_seen)))
		return NULL;
	moved_in_catch_up(g);
	return fd_get(fd);
}
/* The body of a wrapper for an fd not in the table: the real call, and a
 * look at moved_in around it. */
#define UNTRACKED_CALL(fd, call)                       \
	do {                                           \
		uint32_t g_ = moved_gen();              \
		__typeof__(call) r_ = call;             \
		if (UNLIKELY(moved_gen() != g_))        \
			moved_in_during(fd);            \
		return r_;                              \
	} while (0)

#endif

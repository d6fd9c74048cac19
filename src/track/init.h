/*
 * init.h — the interposer's start, for the wrappers that may be its first
 * call (before our constructor ran: another library's constructor, the
 * loader) and for trap.c's constructor.
 */
#ifndef MTM_TRACK_INIT_H
#define MTM_TRACK_INIT_H
#include "track/preload.h"

/* Reads the environment and the session's files once (init.c). */
PRELOAD_HIDDEN void do_init(void);
static inline int active(void)
{
	int s = LOAD(&g_state);
	if (LIKELY(s == ST_ON))
		return 1;
	if (s == ST_NEW) {
		int expect = ST_NEW;
		if (__atomic_compare_exchange_n(&g_state, &expect, ST_INIT, 0, __ATOMIC_ACQ_REL,
		                                __ATOMIC_ACQUIRE))
			do_init();
		return LOAD(&g_state) == ST_ON;
	}
	return 0;
}
#endif

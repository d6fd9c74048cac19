/*
 * lowprio.h — work handed to a thread of lower priority, the caller waiting.
 *
 * Under `metamori run --every N` the session's record and commit run while
 * the program runs; on a machine the program keeps busy, every millisecond
 * of them at the program's own priority is taken from it. On a thread at a
 * higher nice value (or SCHED_IDLE) they take what the program leaves idle
 * first. The caller waits for the work, so nothing runs beside it: the
 * handoff is the only synchronization needed (a mutex and a condition).
 * A thread cannot lower its nice value again without CAP_SYS_NICE, hence a
 * thread of its own rather than the caller changing its priority.
 */
#ifndef MTM_UTIL_LOWPRIO_H
#define MTM_UTIL_LOWPRIO_H

typedef struct lowprio lowprio;

/* The priority: nice increments 1..19 (added to the caller's, capped at
 * 19), or LOWPRIO_IDLE (SCHED_IDLE). */
#define LOWPRIO_IDLE (-1)

/* A thread waiting for work at that priority; ENOMEM, or what
 * pthread_create said (EAGAIN). */
int lowprio_start(lowprio **out, int prio);

/* fn(arg) on the thread, the caller waiting; its return value. A non-zero
 * return's last error (util/error.h, per thread) is the caller's after it.
 * With lp NULL, fn runs here. Not to be called from two threads at once. */
int lowprio_call(lowprio *lp, int (*fn)(void *), void *arg);
/* The same, tick(tick_arg) called here every ms milliseconds while the
 * caller waits (none with lp NULL): work of the caller's own that must not
 * wait for fn (a session's watcher queue read on). tick must not touch what
 * fn does. */
int lowprio_call_tick(lowprio *lp, int (*fn)(void *), void *arg, void (*tick)(void *), void *tick_arg, int ms);

/* The thread's nice value (after it applied its priority), for tests. */
int lowprio_nice(const lowprio *lp);

/* The thread ended and joined, everything freed; NULL is fine. */
void lowprio_stop(lowprio *lp);

/* The priority METAMORI_SESSION_NICE asks for: 0 for "0" or "off" (no
 * thread: the work runs on the caller's), LOWPRIO_IDLE for "idle", 1..19;
 * dflt when unset or not understood. */
int lowprio_from_env(const char *value, int dflt);
#endif

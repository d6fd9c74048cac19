/*
 * dispatch.h — syscall user dispatch in a traced process (dispatch.c), for
 * the interposer's start (init.c, trap.c). While it is on, every thread of the process traps the system
 * calls it makes outside the C library's code to the interposer, which
 * records them as its wrappers do: the session then trusts the process's
 * log without looking at its code (docs/TRACKING.md).
 */
#ifndef MTM_TRACK_DISPATCH_H
#define MTM_TRACK_DISPATCH_H
#include <signal.h>
#include <stdint.h>

#define DISPATCH_HIDDEN __attribute__((visibility("hidden")))

/* Turns it on in the calling (only) thread, with handler taking the traps
 * (trap.c's constructor). */
DISPATCH_HIDDEN void dispatch_start(void (*handler)(int, siginfo_t *, void *));
/* Turns it on again in a fork child (clone clears it). */
DISPATCH_HIDDEN void dispatch_fork_child(void);
/* Off for good (from now on nothing traps; the log's flag is cleared and
 * MTM_REC_CODE recorded for the interval). */
DISPATCH_HIDDEN void dispatch_lose(void);
/* A SIGSYS not of ours: what SIGSYS does by default. */
DISPATCH_HIDDEN void dispatch_sigsys_default(int sig);
/* (Whether it is on, and since when: dispatch_on and dispatch_since, in
 * preload.h, read by the log too; what dispatch.c asks of the interposer is
 * declared there as well, so this header sits above the core and the
 * wrappers, not under them.) */

#endif

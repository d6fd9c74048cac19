/*
 * dispatch.h — syscall user dispatch in a traced process (dispatch.c), for
 * the interposer (preload.h). While it is on, every thread of the process traps the system
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
 * preload.h, read by the log too.) */

/* The interposer's side. */
/* our syscall() (which records what it changes): wrap_syscall.c */
DISPATCH_HIDDEN long preload_traced_syscall(long n, long a1, long a2, long a3, long a4, long a5, long a6);
/* ctl->epoch, or 0 without a session: notes.c */
DISPATCH_HIDDEN uint64_t preload_epoch(void);
/* Dispatch was lost: the log's flag cleared, then MTM_REC_CODE for this
 * interval (what ran without it cannot be vouched for): notes.c */
DISPATCH_HIDDEN void preload_dispatch_lost(void);
#endif

/*
 * run.h — the parts of mtm_run (run.c), private to src/session/:
 *
 *   run.c     options, starting (or joining) the session, its setup, the end
 *   child.c   the program: the interposer found, its environment, fork + exec
 *   loop.c    one poll loop until the program (and every member) has ended
 */
#ifndef MTM_SESSION_RUN_H
#define MTM_SESSION_RUN_H
#include <signal.h>
#include <sys/types.h>
#include "metamori.h"
#include "session/session.h"

/* The signals the session takes from the program's way (read from a
 * signalfd while it runs; the program gets them back at its exec). */
#define RUN_SIGNALS {SIGUSR1, SIGCHLD, SIGTERM, SIGHUP, SIGINT, SIGQUIT}
typedef struct {
	sigset_t mask, old;           /* RUN_SIGNALS; the mask we were given */
	struct sigaction old_pipe;    /* SIGPIPE as we were given it (ignored while we run) */
} run_signals;

/* child.c */
/* The interposer: opts->preload, $METAMORI_PRELOAD, or next to the running
 * executable (the build directory, or an install's bin/../lib). */
int run_find_preload(const mtm_run_opts *opts, char **out);
/* Starts argv with env and the signal state we were given: *out its pid;
 * an exec failure is the error (and *exit_status what a shell says, 126/127). */
int run_spawn(char *const argv[], char **env, const run_signals *rs, pid_t *out, int *exit_status);

/* loop.c */
typedef struct {
	mtm_session *ss;
	int sfd, tfd;              /* signalfd; --every's timerfd or -1 */
	pid_t pid;                 /* the program */
	session_members members;   /* joined `metamori run`s (join.c) */
	int status, child_done;    /* the program's wait status, once it ended */
	int keep_empty;            /* --every's ticks record even when nothing changed */
} run_loop;
/* Serves requests, signals and timers until the program and every member
 * have ended. 0, or the error that stopped the loop. */
int run_serve(run_loop *l);
/* A checkpoint the session makes itself (SIGUSR1, --every, the final one);
 * only_if_changed: the timer's ticks and the last checkpoint at exit record
 * nothing when nothing changed (unless mtm_run_opts.keep_empty); periodic:
 * no one waits for it (SIGUSR1, --every), its record and commit at a lower
 * priority (session_tracked_checkpoint_periodic). */
void run_local_checkpoint(mtm_session *ss, const char *why, int only_if_changed, int periodic);
#endif

/*
 * run.c — mtm_run: start the program under the interposer and serve
 * checkpoints until it exits (or join the tree's live session, join.c).
 *
 * The parts (run.h): this file starts the session and ends it; child.c
 * starts the program; loop.c serves the session while it runs.
 */
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "session/run.h"
#include "session/session.h"
#include "session/watch.h"
#include "util/error.h"
#include "util/human.h"
#include "util/log.h"

#define RUN_START_TRIES 150 /* x 20 ms: how long a start waits for a busy writer lock */

/* 1 if the tree differs from the head (or there is no head): the logs only
 * know what happens from now on, so the first checkpoint must scan. */
typedef struct { int any; } dirty_arg;
static int note_change(void *arg, const mtm_change *c)
{
	(void)c;
	((dirty_arg *)arg)->any = 1;
	return 1; /* stop at the first */
}

static int baseline_dirty(mtm_store *s, const mtm_run_opts *opts, int *dirty)
{
	mtm_id head;
	MTM_TRY(mtm_head(s, &head));
	if (!head) {
		*dirty = 1;
		return 0;
	}
	mtm_diff_opts d = MTM_DIFF_OPTS_INIT;
	d.excludes = opts->excludes;
	d.n_excludes = opts->n_excludes;
	dirty_arg a = {0};
	int rc = mtm_diff(s, head, MTM_LIVE, &d, note_change, &a);
	if (rc && rc != 1)
		return rc;
	*dirty = a.any;
	return 0;
}

/* opts as this version reads them (version 1 ends before no_final,
 * version 2 before keep_empty), checked. */
static int run_opts(const mtm_run_opts *opts, char *const argv[], mtm_run_opts *o)
{
	*o = (mtm_run_opts)MTM_RUN_OPTS_INIT;
	if (opts && opts->version == 1)
		memcpy(o, opts, offsetof(mtm_run_opts, no_final));
	else if (opts && opts->version == 2)
		memcpy(o, opts, offsetof(mtm_run_opts, keep_empty));
	else if (opts && opts->version == MTM_RUN_OPTS_VERSION)
		*o = *opts;
	else if (opts)
		return mtm_set_error(MTM_EINVAL, "run: unsupported options version %d", opts->version);
	o->version = MTM_RUN_OPTS_VERSION;
	if (!argv || !argv[0] || !*argv[0])
		return mtm_set_error(MTM_EINVAL, "run: no command given");
	MTM_NEED_LIST(o->excludes, o->n_excludes, "run", "opts->excludes");
	if (o->every_seconds < 0 || o->every_seconds > 1e9)
		return mtm_set_error(MTM_EINVAL, "run: --every must be a positive number of seconds");
	return 0;
}

/* A live session on this tree (another rank's `metamori run`, under
 * mpirun): join it (join.c; *joined, rc its result). Otherwise start one,
 * with the writer lock while it starts: an in-place restore running now
 * either finished or sees the session (it checks with the lock held); one
 * interrupted earlier stays pending (issue 16) for `restore --continue`
 * after it. The lock is busy while a session starts or checkpoints, and a
 * session may be ending: try again for a few seconds. */
static int start_or_join(mtm_store *s, const mtm_run_opts *opts, const char *preload, char *const argv[],
                         int *exit_status, mtm_session **ss, int *joined)
{
	int rc;
	*joined = 0;
	for (int attempt = 0;; attempt++) {
		if (session_alive(s)) {
			rc = session_join_run(s, preload, argv, opts->quiet, exit_status);
			if (rc != MTM_ENOSESSION) {
				*joined = 1;
				return rc;
			}
		}
		rc = store_lock(s);
		if (!rc) {
			rc = session_start(s, opts->excludes, opts->n_excludes, ss);
			store_unlock(s);
		}
		if (rc != MTM_EBUSY || attempt == RUN_START_TRIES)
			return rc;
		usleep(20000);
	}
}

/* The watcher, then the baseline: a change made after the baseline is seen
 * by the watcher, one made before by the baseline (the first checkpoint
 * scans if the tree differs from the head). */
static int prepare(mtm_session *ss, const mtm_run_opts *opts, const char *argv0)
{
	ss->verbose = !opts->quiet;
	int64_t tw = now_ns();
	int rc = watch_start(ss, &ss->watch_why);
	if (rc)
		return rc;
	ss->watch_off = !ss->watch && ss->watch_why && !strcmp(ss->watch_why, "METAMORI_WATCH=off");
	if (ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: watcher: %s, set up in %.1f ms",
		        ss->watch ? watch_kind(ss->watch) : "none", (double)(now_ns() - tw) / 1e6);
	if (!ss->watch && !ss->watch_off && !opts->quiet)
		log_msg(MTM_LOG_WARNING, "run: %s: every checkpoint will scan", ss->watch_why);
	/* if the tree cannot be compared now (an unreadable file, say), the first
	 * checkpoint scans and says why; the program runs all the same */
	int dirty = 1;
	if (baseline_dirty(ss->s, opts, &dirty))
		dirty = 1;
	ss->force_scan = dirty;
	ss->force_why = "the tree had changed before the session";
	if (run_is_untraceable_cmd(argv0)) {
		ss->always_scan = 1;
		if (!opts->quiet)
			log_msg(MTM_LOG_WARNING, "run: %s is statically linked: every checkpoint will scan", argv0);
	}
	return 0;
}

/* RUN_SIGNALS blocked (read from a signalfd instead: *sfd), and SIGPIPE
 * ignored: a closed stderr (run ... 2>&1 | head) must not kill the session. */
static void signals_take(run_signals *rs, int *sfd)
{
	const int sigs[] = RUN_SIGNALS;
	sigemptyset(&rs->mask);
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaddset(&rs->mask, sigs[i]);
	pthread_sigmask(SIG_BLOCK, &rs->mask, &rs->old);
	struct sigaction ign;
	memset(&ign, 0, sizeof ign);
	ign.sa_handler = SIG_IGN;
	sigemptyset(&ign.sa_mask);
	sigaction(SIGPIPE, &ign, &rs->old_pipe);
	*sfd = signalfd(-1, &rs->mask, SFD_CLOEXEC | SFD_NONBLOCK);
}

static void signals_give_back(run_signals *rs, int sfd)
{
	if (sfd >= 0) {
		close(sfd);
		/* drop what arrived for us (a late SIGUSR1 must not kill the caller) */
		struct timespec zero = {0, 0};
		siginfo_t si;
		while (sigtimedwait(&rs->mask, &si, &zero) > 0)
			;
	}
	pthread_sigmask(SIG_SETMASK, &rs->old, NULL);
	sigaction(SIGPIPE, &rs->old_pipe, NULL);
}

/* --every's timer: *tfd, or -1 when not asked for. */
static int every_timer(double seconds, int *tfd)
{
	*tfd = -1;
	if (seconds <= 0)
		return 0;
	*tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	struct itimerspec its = {0};
	its.it_value.tv_sec = (time_t)seconds;
	its.it_value.tv_nsec = (long)((seconds - (double)its.it_value.tv_sec) * 1e9);
	if (!its.it_value.tv_sec && its.it_value.tv_nsec < 1000000)
		its.it_value.tv_nsec = 1000000;
	its.it_interval = its.it_value;
	if (*tfd < 0 || timerfd_settime(*tfd, 0, &its, NULL))
		return mtm_set_errno(errno, "run: timer");
	return 0;
}

/* The program started, served until it (and every member) ended, and the
 * final checkpoint of --every. */
static int run_program(mtm_session *ss, const mtm_run_opts *opts, const char *preload, char *const argv[],
                       int *exit_status)
{
	run_signals rs;
	run_loop l = {.ss = ss, .sfd = -1, .tfd = -1, .pid = -1, .keep_empty = opts->keep_empty};
	signals_take(&rs, &l.sfd);
	char **env = run_child_env(preload, ss->dir, ss->s->root);
	int rc = 0;
	if (l.sfd < 0 || !env)
		rc = mtm_set_errno(env ? errno : ENOMEM, "run");
	if (!rc)
		rc = every_timer(opts->every_seconds, &l.tfd);
	if (!rc && !(rc = run_spawn(argv, env, &rs, &l.pid, exit_status))) {
		rc = run_serve(&l);
		if (!rc && exit_status)
			*exit_status = WIFEXITED(l.status) ? WEXITSTATUS(l.status)
			             : WIFSIGNALED(l.status) ? 128 + WTERMSIG(l.status) : 1;
		/* periodic checkpoints end with one of the program's final state
		 * (what it wrote after the last tick would otherwise be in none) */
		if (opts->every_seconds > 0 && !opts->no_final)
			run_local_checkpoint(ss, "exit", !opts->keep_empty, 0);
	}
	run_child_env_free(env);
	members_free(&l.members);
	if (l.tfd >= 0)
		close(l.tfd);
	signals_give_back(&rs, l.sfd);
	return rc;
}

int mtm_run(mtm_store *s, const mtm_run_opts *opts, char *const argv[], int *exit_status)
{
	mtm_run_opts o;
	MTM_NEED(s, "run");
	MTM_TRY(run_opts(opts, argv, &o));
	if (exit_status)
		*exit_status = 0;
	char *preload = NULL;
	MTM_TRY(run_find_preload(&o, &preload));
	mtm_session *ss = NULL;
	int joined, rc = start_or_join(s, &o, preload, argv, exit_status, &ss, &joined);
	if (!rc && !joined && !(rc = prepare(ss, &o, argv[0])))
		rc = run_program(ss, &o, preload, argv, exit_status);
	if (ss)
		session_stop(ss);
	free(preload);
	return rc;
}

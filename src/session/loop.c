/*
 * loop.c — the session's one thread while the program runs: one poll loop
 * over the listening socket (requests from any process), a signalfd
 * (SIGUSR1: checkpoint; SIGCHLD: the program ended; SIGTERM/SIGHUP: passed
 * on to the program; SIGINT/SIGQUIT: ignored here, the terminal delivers
 * them to the program, which decides), a timerfd for --every, the
 * watcher's queue and the joined members. Checkpoints are made one at a
 * time, in this thread; between them, the pre-copy's passes and the idle
 * work (block_log and entry_log merge, WAL copy).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "session/run.h"
#include "session/session.h"
#include "session/watch.h"
#include "util/error.h"
#include "util/human.h"
#include "util/log.h"
#include "util/lowprio.h"

/* The watcher's queue is read at most this often while the program runs,
 * and not this long after a pre-copy pass read it (each pass does, after
 * its peek). A program that writes all the time makes the queue readable
 * at once, so every read is a wakeup, and on a busy machine one that takes
 * a CPU from the program: at 5 ms, a writer of 3 files under inotify woke
 * the session ~230 times a second (100-150 ms of CPU in 10 s); at 20 ms,
 * aligned with the passes, ~50 (40-50 ms). Under pgbench the wakeups were
 * the session's whole cost between checkpoints, a third of it switching
 * in (P16). Nothing waits on a read: the mark and the barrier read the
 * queue themselves, and 20 ms of events is far from what the kernel
 * queues (16,384: 800,000 events a second). */
#define WATCH_READ_MS 20

/* A checkpoint's line on stderr; a failure is said even under -q (which
 * drops only the lines of the checkpoints made): a SIGUSR1 or --every
 * checkpoint has no one else to tell. */
static void report(mtm_session *ss, int rc, const mtm_checkpoint_info *ci)
{
	char line[512];
	if (rc)
		log_msg(MTM_LOG_ERROR, "%s", mtm_last_error());
	else if (ss->verbose && ci->id) /* (nothing changed: nothing recorded, nothing to say) */
		log_msg(MTM_LOG_INFO, "%s", session_describe(line, sizeof line, ci, ss->scan_why));
}

void run_local_checkpoint(mtm_session *ss, const char *why, int only_if_changed, int periodic)
{
	mtm_checkpoint_opts o = MTM_CHECKPOINT_OPTS_INIT;
	o.message = why;
	mtm_checkpoint_info ci = {0};
	int rc = periodic          ? session_tracked_checkpoint_periodic(ss, &o, &ci, only_if_changed)
	         : only_if_changed ? session_tracked_checkpoint_if_changed(ss, &o, &ci)
	                           : session_tracked_checkpoint(ss, &o, &ci);
	report(ss, rc, &ci);
	free(ci.message);
}

/* The idle work: the block_log and entry_log merge, the WAL copied */
static int idle_work(void *arg)
{
	mtm_session *ss = arg;
	session_wal_maintain(ss, 1);
	session_wal_restart(ss);
	return 0;
}

/* The loop's clocks */
typedef struct {
	int idle_ms;        /* idle work after this long without a request */
	int64_t last_busy;  /* the last request, signal or timer: idle counts from it */
	int64_t watch_next; /* the watcher's queue is read at most every WATCH_READ_MS */
	int64_t pass_seen;  /* the pre-copy's last pass that loop_clock knows of (it read the queue) */
} loop_clock;

/* The poll timeout (ms, -1: none) and pf[3] (the watcher's fd when its
 * queue is due); 1 if the idle work ran instead (poll again). */
static int poll_timeout(run_loop *l, loop_clock *c, struct pollfd *pf, int *timeout)
{
	mtm_session *ss = l->ss;
	/* two clocks: the pre-copy's passes while the program writes, and the
	 * idle work (block_log and entry_log merge, WAL copy) once nothing was asked for a while */
	*timeout = session_precopy_tick(ss);
	if (ss->bg_last_ns != c->pass_seen) { /* a pass read the queue: the next read is due from there */
		c->pass_seen = ss->bg_last_ns;
		if (c->watch_next < c->pass_seen + (int64_t)WATCH_READ_MS * 1000000)
			c->watch_next = c->pass_seen + (int64_t)WATCH_READ_MS * 1000000;
	}
	/* a program writing all the time would wake us at every write: the
	 * queue is read in batches (the kernel merges a file's events meanwhile) */
	int64_t wait_watch = (c->watch_next - now_ns()) / 1000000;
	if (ss->watch && wait_watch <= 0)
		pf[3].fd = watch_fd(ss->watch);
	else if (ss->watch && (*timeout < 0 || wait_watch + 1 < *timeout))
		*timeout = (int)wait_watch + 1;
	if (ss->wal_frames > 0 || ss->s->log_rows > 0 || ss->sc_kept.n) {
		int64_t left = (int64_t)c->idle_ms - (now_ns() - c->last_busy) / 1000000;
		if (left <= 0) {
			/* on the periodic checkpoints' thread, once they made one */
			lowprio_call(ss->low, idle_work, ss);
			c->last_busy = now_ns();
			return 1;
		}
		if (*timeout < 0 || left < *timeout)
			*timeout = (int)left;
	}
	return 0;
}

/* The signals that came: 1 if a checkpoint was asked for (SIGUSR1). */
static int read_signals(run_loop *l)
{
	int want_ckpt = 0;
	struct signalfd_siginfo si;
	while (read(l->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGUSR1)
			want_ckpt = 1;
		else if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGHUP) && !l->child_done)
			kill(l->pid, (int)si.ssi_signo);
	}
	if (!l->child_done && waitpid(l->pid, &l->status, WNOHANG) == l->pid)
		l->child_done = 1;
	return want_ckpt;
}

/* Every connection waiting: a request served, or a joiner kept as a member. */
static void accept_requests(run_loop *l)
{
	int c;
	while ((c = accept4(l->ss->listenfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		if (session_serve(l->ss, c) != 1 || members_add(&l->members, c))
			close(c);
	}
}

int run_serve(run_loop *l)
{
	mtm_session *ss = l->ss;
	const char *idle_knob = secure_getenv("METAMORI_TEST_IDLE_MS"); /* tests: read rows before the merge */
	loop_clock c = {idle_knob && *idle_knob ? atoi(idle_knob) : SESSION_IDLE_MS, now_ns(), 0, ss->bg_last_ns};
	/* The loop ends when the program has ended and no joined `metamori run`
	 * is still running one (members, join.c, polled after the 4 fixed fds). */
	for (;;) {
		if (l->child_done && !l->members.n)
			return 0;
		struct pollfd pf[4 + l->members.n];
		pf[0] = (struct pollfd){l->sfd, POLLIN, 0};
		pf[1] = (struct pollfd){ss->listenfd, POLLIN, 0};
		pf[2] = (struct pollfd){l->tfd, POLLIN, 0};
		pf[3] = (struct pollfd){-1, POLLIN, 0};
		size_t npf = 4 + members_pollfds(&l->members, pf + 4);
		int timeout;
		if (poll_timeout(l, &c, pf, &timeout))
			continue;
		if (l->tfd < 0) { /* (keep the array dense for poll) */
			pf[2] = pf[3];
			pf[3].fd = -1;
		}
		int ready = poll(pf, npf, timeout);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			return mtm_set_errno(errno, "run: poll");
		}
		int wi = l->tfd < 0 ? 2 : 3;
		if (pf[wi].fd >= 0 && (pf[wi].revents & POLLIN)) {
			watch_drain(ss->watch);
			c.watch_next = now_ns() + (int64_t)WATCH_READ_MS * 1000000;
			if (ready == 1)
				continue; /* the program's own writes: not a request (idle goes on) */
		}
		if (ready == 0)
			continue;
		c.last_busy = now_ns();
		int want_ckpt = (pf[0].revents & POLLIN) && read_signals(l);
		members_reap(&l->members, pf + 4);
		if (l->child_done && !l->members.n)
			return 0;
		if (want_ckpt)
			run_local_checkpoint(ss, "SIGUSR1", 0, 1);
		if (l->tfd >= 0 && pf[2].fd == l->tfd && (pf[2].revents & POLLIN)) {
			uint64_t ticks;
			if (read(l->tfd, &ticks, sizeof ticks) == (ssize_t)sizeof ticks)
				run_local_checkpoint(ss, "every", !l->keep_empty, 1);
		}
		if (pf[1].revents & POLLIN)
			accept_requests(l);
		session_wal_maintain(ss, 0);
		/* SIGCHLD may have come while a checkpoint ran */
		if (!l->child_done && waitpid(l->pid, &l->status, WNOHANG) == l->pid)
			l->child_done = 1;
	}
}

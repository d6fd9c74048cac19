/*
 * tracked.c — a session's checkpoint: consistent, and O(what changed).
 *
 *   ckpt_begin (writer lock, transaction, head)      the program runs on
 *   barrier_close: the logs become a change set      modifying calls held
 *   collect: stat the touched paths, walk the subtrees of namespace changes,
 *     look up the parent's entries for exactly those paths (point lookups),
 *     copy the dirty blocks of touched files out of the page cache (capture)
 *   barrier_open                                     the program runs on
 *   ckpt_record / ckpt_commit: hash, compress, write, fsync
 *
 * The live side and the parent side hold the same set of paths (whatever
 * exists of it on each side), so ckpt_record's merge sees additions,
 * removals and changes among them, and leaves every other path as it was.
 *
 * A file's dirty blocks are enough only if the file is the one the parent
 * recorded at that path: the stat cache row written with the parent's
 * version names its inode, and no entry was created, removed or renamed at
 * the path or above it (an inode freed there may be reused at once by a
 * file written under another name). Otherwise (created, replaced, renamed,
 * no history) the whole file is copied; a renamed file still keeps its
 * history, matched by inode in ckpt_record, so only what differs is stored.
 *
 * When the logs cannot be trusted to name every change (overflow, a SCAN
 * record, a process that died inside a call, hard links, a symlink in a
 * recorded path, the ignore file changed), the checkpoint scans, still
 * inside the barrier: the walk and the copy of the files the stat cache
 * cannot vouch for happen while calls are held (or, past the capture
 * budget, the whole record does), so it is consistent too.
 *
 * The pause would be mostly a system call per scattered block read. So the
 * blocks the records name are read before the gate closes (the pre-copy,
 * as in live migration: records after the peek say which to read again),
 * in the barrier the rest are only read into memory (or by reference past
 * the budget); ckpt_record reads the captures where they were read into.
 * docs/SESSION.md has the measurements.
 *
 * The parts: tctx.h names them (collect.c, live.c, capture.c,
 * capture_read.c, hashes.c, describe.c); this file holds their order.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "checkpoint/checkpoint.h"
#include "session/session.h"
#include "session/slots.h"
#include "session/tctx.h"
#include "session/watch.h"
#include "util/error.h"
#include "util/human.h"
#include "util/log.h"
#include "util/lowprio.h"

/* Before the barrier: a last pass over the records since the session's
 * passes (precopy.c), whose copies this checkpoint takes over. Best effort:
 * after an error, what the pre-copy holds is still right. */
static int precopy_phase(tctx *t)
{
	uint64_t read = 0; /* its own budget, as much as the barrier may copy */
	int rc = precopy_pass(t->ss, t->cs, &t->pre, &t->ss->bg_held, &read, t->budget / 2, NULL, NULL);
	return rc == ENOMEM ? mtm_set_error(ENOMEM, "checkpoint") : 0;
}

static int same_excludes(const mtm_session *ss, const mtm_checkpoint_opts *opts)
{
	if (!opts || !opts->n_excludes)
		return 1;
	if (opts->n_excludes != ss->n_excludes)
		return 0;
	for (size_t i = 0; i < ss->n_excludes; i++)
		if (strcmp(opts->excludes[i], ss->excludes[i]))
			return 0;
	return 1;
}

/* The engine's options: the session's excludes, the caller's message and
 * progress callback. */
static mtm_checkpoint_opts session_opts(const mtm_session *ss, const mtm_checkpoint_opts *opts)
{
	mtm_checkpoint_opts o = MTM_CHECKPOINT_OPTS_INIT;
	o.message = opts ? opts->message : NULL;
	o.excludes = ss->excludes;
	o.n_excludes = ss->n_excludes;
	if (opts) {
		o.progress = opts->progress;
		o.progress_arg = opts->progress_arg;
	}
	return o;
}

/* The logs were not enough (NEED_SCAN): what collect_tracked gathered is
 * dropped, and the scan starts afresh with a whole budget. */
static void restart_as_scan(tctx *t)
{
	t->hold = 0;
	t->budget = capture_budget();
	filefds_close(t); /* (their stats are the tracked side's) */
	pathmap_free(&t->pending, pending_free);
	deferred_free(t);
	t->deferred = (vec)VEC_INIT(deferred_copy);
	live_free(t->live);
	entries_free(t->parent);
	t->cap_max_path = NULL; /* (a live item's) */
	t->col_checks = t->cap_max_ns = 0;
	*t->live = (vec)VEC_INIT(live_item);
	*t->parent = (vec)VEC_INIT(entry);
}

/* With the gate closed: the touched paths (or the whole tree, *scan) and
 * the reads of their blocks. */
static int collect(tctx *t, mtm_id parent, int *scan, tracked_times *tm)
{
	mtm_session *ss = t->ss;
	change_set *cs = t->cs;
	int rc = 0;
	*scan = cs->scan || ss->force_scan || ss->always_scan;
	if (!cs->scan && *scan)
		cs->scan_why = ss->always_scan ? "the program cannot be tracked" : ss->force_why;
	if (!*scan) {
		rc = collect_tracked(t);
		if (rc == NEED_SCAN) {
			*scan = 1;
			cs->scan_why = t->why;
			restart_as_scan(t);
		}
	}
	if (*scan)
		rc = collect_scan(t, parent);
	tm->tcol = now_ns();
	if (!rc)
		rc = read_deferred(t);
	tm->tdef = now_ns();
	return rc;
}

/* The record, on the low-priority thread when there is one (t->low). */
struct record_job {
	tctx *t;
	ckpt_run *r;
	int scan;
};

static int record_job_run(void *arg)
{
	struct record_job *j = arg;
	/* tests: the record waits while the file METAMORI_TEST_RECORD_GATE
	 * names exists (a long record, events coming meanwhile) */
	const char *gate = secure_getenv("METAMORI_TEST_RECORD_GATE");
	if (gate && *gate && !access(gate, F_OK) && j->t->ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: the record waits at METAMORI_TEST_RECORD_GATE");
	while (gate && *gate && !access(gate, F_OK))
		usleep(1000);
	int rc = materialize(j->t);
	if (!rc)
		rc = j->scan ? ckpt_record_scanned(j->r, j->t->parent, j->t->live, &j->t->rest)
		             : ckpt_record(j->r, j->t->parent, j->t->live);
	return rc;
}

/* While the session's thread waits for the record or the commit on the
 * low-priority thread (hundreds of ms under pgbench, seconds for a big
 * tree): the watcher's queue read on into its stash, as a scan's walk
 * does (collect.c): a busy file system overflowed fanotify's queue (16,384
 * events, file-system wide) meanwhile, and the next checkpoint scanned. */
#define READ_ON_MS 5
static void read_on(void *arg)
{
	mtm_session *ss = arg;
	if (ss->watch)
		watch_read_on_if_filling(ss->watch);
}

/* The commit, the same way */
struct commit_job {
	ckpt_run *r;
	int tracked;
	uint64_t pause_ns;
	mtm_checkpoint_info *ci;
};

static int commit_job_run(void *arg)
{
	struct commit_job *j = arg;
	ckpt_note_session(j->r, j->tracked, j->pause_ns);
	return ckpt_commit(j->r, j->ci);
}

/* The session's low-priority thread, started at its first use (after the
 * program was forked: no thread of ours in the child between its fork and
 * exec); NULL when METAMORI_SESSION_NICE says none or it could not start
 * (then the work runs on the session's thread, as it always may). */
static lowprio *session_low(mtm_session *ss)
{
	if (!ss->low_tried) {
		ss->low_tried = 1;
		ss->low_prio = lowprio_from_env(secure_getenv("METAMORI_SESSION_NICE"), SESSION_LOW_NICE);
		if (ss->low_prio && lowprio_start(&ss->low, ss->low_prio))
			ss->low = NULL;
	}
	return ss->low;
}

/* The pre-copy's last pass, the barrier, and the record: the gate opens as
 * soon as the captures are read (or, when they are read in place, t->hold,
 * once the record is made). tm gets the phases' times. */
static int barrier_and_record(tctx *t, ckpt_run *r, tracked_times *tm, int *scan)
{
	mtm_session *ss = t->ss;
	int rc = 0, opened = 0;
	tm->t0 = now_ns();
	ss->gate_ns = 0;
	if (!ss->force_scan && !ss->always_scan && !secure_getenv("METAMORI_NO_PRECOPY"))
		rc = precopy_phase(t);
	tm->tpc = now_ns();
	/* the files compared whole, compared while the program runs (ahead.c) */
	if (!rc && !ss->force_scan && !ss->always_scan && !t->cs->scan && !secure_getenv("METAMORI_NO_AHEAD"))
		rc = compare_ahead(t);
	if (!rc)
		rc = barrier_close(ss, t->cs, &t->post);
	const char *hold_ms = secure_getenv("METAMORI_TEST_HOLD_GATE_MS"); /* tests: die with the gate closed */
	if (!rc && hold_ms && *hold_ms)
		usleep((useconds_t)atoi(hold_ms) * 1000);
	tm->tl = now_ns();
	tm->tpre = tm->t0;
	if (ss->gate_ns)
		tm->t0 = ss->gate_ns; /* dead processes' logs were read before: not part of the pause */
	if (!rc)
		rc = collect(t, ckpt_parent(r), scan, tm);
	if (!t->hold || rc) {
		barrier_open(ss);
		tm->t1 = now_ns();
		opened = 1;
		if (ss->debug)
			thread_usage(&tm->cpu1, &tm->nvcsw1, &tm->nivcsw1, &tm->minflt1);
	}
	if (!rc) {
		struct record_job job = {t, r, *scan};
		/* with the gate held (t->hold) the program waits for the record:
		 * at the session's own priority */
		rc = lowprio_call_tick(opened ? t->low : NULL, record_job_run, &job, read_on, ss, READ_ON_MS);
	}
	if (!opened) {
		barrier_open(ss);
		tm->t1 = now_ns();
		if (ss->debug)
			thread_usage(&tm->cpu1, &tm->nvcsw1, &tm->nivcsw1, &tm->minflt1);
	}
	return rc;
}

/* The store let go: the statements, the transaction (rolled back unless
 * committed), the pack writer, the writer lock. Before the caller is
 * answered: a command it runs next may take the lock at once. */
static void tracked_release(tctx *t, ckpt_run *r)
{
	pathmap_free(&t->pending, pending_free);
	ckpt_end(r);
}

/* Everything else the checkpoint held, and the session's state for the
 * next interval: after the caller was answered (~0.7 ms for W2's 200
 * files: the captures, the pre-copy's copies, the change sets), and before
 * the session does anything else. */
static void tracked_end(tctx *t, change_set *cs, int rc)
{
	mtm_session *ss = t->ss;
	prewrite_reset(ss); /* (after the pack writer: what it adopted is committed or rolled back) */
	live_free(t->live);
	deferred_free(t); /* the captures' bytes (after live_free: nothing points at them now) */
	pathmap_free(&t->ahead, ahead_free); /* (the same) */
	entries_free(t->parent);
	pathmap_free(&t->nsdirs, NULL);
	pathmap_free(&t->points, NULL);
	dirfds_close(t);
	pathmap_free(&t->pre, precopy_free);
	ss->bg_held = ss->bg_read = ss->bg_limit = 0; /* a new interval */
	change_set_free(&t->post);
	change_set_free(cs);
	slot_pool_trim(0); /* (the slots the next interval will likely take again stay pooled) */
	/* the logs were reset: if this checkpoint failed, only a scan knows
	 * what they said */
	ss->force_scan = rc != 0;
	for (size_t i = 0; rc && i < ss->logs.n; i++)
		VEC_AT(&ss->logs, log_slot, i).peek_tail = 0; /* the next checkpoint scans: start afresh */
	ss->force_why = "the previous checkpoint failed";
	session_reap_logs(ss);
}

/* SESSION_SC_KEPT_MAX, or METAMORI_TEST_SC_KEPT_MAX (tests: a small bound) */
static size_t sc_kept_max(void)
{
	const char *knob = secure_getenv("METAMORI_TEST_SC_KEPT_MAX");
	return knob && *knob ? (size_t)atol(knob) : SESSION_SC_KEPT_MAX;
}

/* only_if_changed: when nothing differs from the head, nothing is recorded
 * (out->id 0, out->parent the head). */
static int tracked_checkpoint(mtm_session *ss, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out,
                              int only_if_changed, int low, session_answer_fn answer, void *arg)
{
	if (out)
		memset(out, 0, sizeof *out);
	if (!same_excludes(ss, opts)) {
		int rc = mtm_set_error(MTM_EINVAL, "checkpoint: --exclude cannot change while 'metamori run' tracks the "
		                                   "tree (give the patterns to 'metamori run')");
		if (answer)
			answer(arg, rc, NULL);
		return rc;
	}
	mtm_checkpoint_opts o = session_opts(ss, opts);
	ckpt_run *r;
	tracked_times tm = {.tb = now_ns()}; /* phases, for METAMORI_DEBUG_SESSION */
	ckpt_hooks hooks = session_ckpt_hooks(ss);
	int rc = ckpt_begin(ss->s, &o, &hooks, &r);
	if (rc) {
		ckpt_end(r);
		prewrite_reset(ss); /* (what was written ahead may have been cut by now) */
		if (answer)
			answer(arg, rc, NULL);
		return rc;
	}
	vec live = VEC_INIT(live_item), parent = VEC_INIT(entry);
	tctx t = {.ss = ss, .s = ss->s, .run = r, .lin = ckpt_lineage(r), .ign = ckpt_ignore(r), .live = &live,
	          .parent = &parent, .budget = capture_budget(), .parent_id = ckpt_parent(r),
	          .deferred = VEC_INIT(deferred_copy), .slabs = VEC_INIT(unsigned char *), .slab_at = ss->cap_slab,
	          .slab_left = ss->cap_slab ? CAP_SLAB_BYTES : 0, .low = low ? session_low(ss) : NULL};
	/* what the session's passes peeked and copied while the program ran is
	 * this checkpoint's now (the logs' peek offsets match it) */
	change_set cs = ss->bg_cs;
	t.pre = ss->bg_pre;
	memset(&ss->bg_cs, 0, sizeof ss->bg_cs);
	memset(&ss->bg_pre, 0, sizeof ss->bg_pre);
	t.cs = &cs;
	int scan = 0;
	/* too many stat cache rows kept (no idle time between checkpoints):
	 * this commit writes them */
	rc = ss->sc_kept.n >= sc_kept_max() ? session_sc_write(ss) : 0;
	if (!rc)
		rc = barrier_and_record(&t, r, &tm, &scan);
	tm.tr = now_ns();
	tm.wait_rec = ckpt_pack(r)->waited_ns;
	mtm_checkpoint_info ci = {0};
	const char *cs_why = cs.scan_why;
	/* nothing differs: ckpt_end rolls the transaction back (what the
	 * interval's logs said is consumed all the same: it changed nothing) */
	int skipped = !rc && only_if_changed && ckpt_unchanged(r);
	if (!rc && !skipped) {
		struct commit_job job = {r, !scan, (uint64_t)(tm.t1 - tm.t0), &ci};
		rc = lowprio_call_tick(t.low, commit_job_run, &job, read_on, ss, READ_ON_MS);
	}
	tm.tc = now_ns();
	if (ss->debug)
		tracked_report(ss, r, &t, &tm, scan, cs.scan_why, live.n, parent.n);
	if (!rc) /* (skipped: the files' hashes are the parent's) */
		keep_hashes(&t, skipped ? t.parent_id : ci.id);
	else
		pathmap_free(&ss->hashes, block_hashes_free);
	tracked_release(&t, r);
	ss->sc_in_tx = 0; /* (rolled back, if the commit did not empty sc_kept) */
	if (!rc) {
		ci.tracked = !scan;
		ci.pause_ns = (uint64_t)(tm.t1 - tm.t0);
		if (skipped)
			ci.parent = t.parent_id;
		ss->scan_why = scan ? cs_why : NULL;
	}
	/* committed (the pack, then the index commit naming it, durable) or
	 * rolled back, and the lock let go: the caller may be told */
	if (answer)
		answer(arg, rc, rc ? NULL : &ci);
	int64_t te = now_ns();
	tracked_end(&t, &cs, rc);
	if (!rc)
		session_wal_reserve(ss);
	if (ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: after the answer: %.2f ms", (double)(now_ns() - te) / 1e6);
	if (rc)
		return rc;
	if (out)
		*out = ci;
	else
		free(ci.message);
	return 0;
}

int session_tracked_checkpoint(mtm_session *ss, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out)
{
	return tracked_checkpoint(ss, opts, out, 0, 0, NULL, NULL);
}

int session_tracked_checkpoint_if_changed(mtm_session *ss, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out)
{
	return tracked_checkpoint(ss, opts, out, 1, 0, NULL, NULL);
}

int session_tracked_checkpoint_answer(mtm_session *ss, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out,
                                      session_answer_fn answer, void *arg)
{
	return tracked_checkpoint(ss, opts, out, 0, 0, answer, arg);
}

int session_tracked_checkpoint_periodic(mtm_session *ss, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out,
                                        int only_if_changed)
{
	return tracked_checkpoint(ss, opts, out, only_if_changed, 1, NULL, NULL);
}

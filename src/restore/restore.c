/*
 * restore.c — making the tree (or an empty directory) exactly what it was at
 * checkpoint k.
 *
 * In place, in two phases:
 *   plan and verify (the tree is not touched): compare the live tree with k;
 *     a file whose stat shows it still holds the head's version is diffed
 *     through the index (no read of the live file), any other is hashed;
 *     every chunk the restore will need is read and verified. A damaged
 *     store therefore fails here, with the tree as it was.
 *   apply, under a restore intent fsynced first: remove what k lacks
 *     (deepest first), make directories, rewrite small or mostly-changed
 *     files whole (temporary name, O_EXCL|O_NOFOLLOW, metadata through the
 *     fd; a batch's fsyncs together, then each renamed in; directory
 *     fsyncs: each file is old or new), patch
 *     large files extent by extent (the intent makes a rerun finish them),
 *     create symlinks, then set directory metadata last. The index records
 *     the new head and stat cache; the intent is removed.
 * Every path is opened beneath the root with no symlink followed.
 *
 * This file holds the entry points (the request, the lock, the live tree
 * saved first); the parts are named in rctx.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "restore/browse.h"
#include "restore/preflight.h"
#include "restore/rctx.h"
#include "tree/root.h"
#include "restore/restore.h"
#include "checkpoint/checkpoint.h"
#include "io/beneath.h"
#include "store/intent.h"
#include "util/error.h"

static int rctx_init(rctx *c, mtm_store *s, const rreq *rq)
{
	memset(c, 0, sizeof *c);
	c->s = s;
	c->rq = rq;
	c->rootfd = s->rootfd;
	c->in_place = 1;
	c->unsynced = (vec)VEC_INIT(unsynced_file);
	c->unrenamed = (vec)VEC_INIT(unrenamed_file);
	return pack_reader_init(&c->pr, s);
}

static void rctx_free(rctx *c)
{
	pack_reader_free(&c->pr);
	pathmap_free(&c->dirs, NULL);
	vec_free(&c->between);
	vec_free(&c->unsynced);
	vec_free(&c->unrenamed);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void rreq_free(rreq *rq)
{
	for (size_t i = 0; i < rq->n_paths; i++)
		free(rq->paths[i]);
	free(rq->paths);
	rq->paths = NULL;
	rq->n_paths = 0;
}

/* The request's paths, normalized and sorted ("" for the whole tree:
 * then as if none was given). */
static int rreq_paths(rreq *rq, const char *const *paths, size_t n)
{
	rq->paths = calloc(n ? n : 1, sizeof *rq->paths);
	if (!rq->paths)
		return mtm_set_error(ENOMEM, "restore");
	int whole = 0;
	for (size_t i = 0; i < n; i++) {
		MTM_TRY(browse_norm_path(paths[i], &rq->paths[rq->n_paths]));
		whole |= !*rq->paths[rq->n_paths++];
	}
	if (whole) {
		rreq_free(rq);
		return 0;
	}
	qsort(rq->paths, rq->n_paths, sizeof *rq->paths, cmp_str);
	return 0;
}

/* Options of either version as the current version; the caller's outputs
 * (*o->saved, *out) cleared before anything can fail. */
static int opts_begin(const mtm_restore_opts *opts, mtm_restore_opts *o, mtm_restore_stats *out)
{
	mtm_restore_opts def = MTM_RESTORE_OPTS_INIT;
	*o = def;
	if (out)
		memset(out, 0, sizeof *out);
	if (opts && opts->version == MTM_RESTORE_OPTS_VERSION && opts->saved)
		*opts->saved = 0;
	if (!opts)
		return 0;
	if (opts->version == 1) { /* the fields up to progress_arg */
		o->to_dir = opts->to_dir;
		o->excludes = opts->excludes;
		o->n_excludes = opts->n_excludes;
		o->progress = opts->progress;
		o->progress_arg = opts->progress_arg;
		MTM_NEED_LIST(o->excludes, o->n_excludes, "restore", "opts->excludes");
		return 0;
	}
	if (opts->version != MTM_RESTORE_OPTS_VERSION)
		return mtm_set_error(MTM_EINVAL, "restore: unsupported options version %d", opts->version);
	*o = *opts;
	MTM_NEED_LIST(o->excludes, o->n_excludes, "restore", "opts->excludes");
	MTM_NEED_LIST(o->paths, o->n_paths, "restore", "opts->paths");
	return 0;
}

#define DIFF_STOP (-1) /* not an error code: the first difference was found */

static int stop_at_first(void *arg, const mtm_change *ch)
{
	(void)ch;
	*(int *)arg = 1;
	return DIFF_STOP;
}

/* Whether the live tree differs from the head, as `status` sees it: a read
 * only (no transaction, nothing written) that stops at the first
 * difference, so that a restore of a tree that is its head's costs no
 * checkpoint's writes. */
static int live_differs(mtm_store *s, int *differs)
{
	mtm_id head;
	*differs = 0;
	MTM_TRY(mtm_head(s, &head));
	if (!head)
		return 0;
	int rc = mtm_diff(s, head, MTM_LIVE, NULL, stop_at_first, differs);
	return rc == DIFF_STOP ? 0 : rc;
}

/* A whole-tree restore of k sets the root's metadata k recorded; when the
 * head recorded less of it (made before format 9 or 10), status cannot
 * see the root's change, yet the restore would overwrite it: saved first
 * if the live root differs from what k would set. */
static int root_unsaved(mtm_store *s, mtm_id k, int *unsaved)
{
	mtm_id head;
	root_meta h = {0}, t = {0}, live = {0};
	*unsaved = 0;
	int rc = mtm_head(s, &head);
	if (!rc && head && !(rc = root_meta_of(s, head, &h)) && !(rc = root_meta_of(s, k, &t)) &&
	    ((t.have_mode && !h.have_mode) || (t.have_rest && !h.have_rest))) {
		if ((rc = root_meta_live(s->rootfd, &live)))
			rc = mtm_set_errno(rc, "the tree's root");
		else
			*unsaved = root_meta_changed(&t, &live);
	}
	root_meta_free(&h);
	root_meta_free(&t);
	root_meta_free(&live);
	return rc;
}

/* 1 if path is an entry of the live tree (its parents no symlinks). */
static int live_has(int rootfd, const char *path)
{
	int dfd;
	const char *leaf;
	struct stat st;
	if (beneath_open_parent(rootfd, path, &dfd, &leaf))
		return 0;
	int there = !fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW);
	close(dfd);
	return there;
}

/* A path asked for that neither checkpoint k nor the tree has is refused
 * before the tree is saved, not after (plan.c's check_asked): a mistyped
 * path must not cost a checkpoint and move the head. Only a sure refusal
 * here; anything else is left to the plan. */
static int asked_paths_exist(mtm_store *s, mtm_id k, const rreq *rq)
{
	for (size_t i = 0; i < rq->n_paths; i++) {
		const char *q = rq->paths[i];
		mtm_entry_info e;
		int rc = mtm_stat(s, k, q, &e);
		if (!rc)
			mtm_entry_info_clear(&e);
		if (!rc || live_has(s->rootfd, q) || (rc != ENOENT && rc != ENOTDIR))
			continue;
		return mtm_set_error(ENOENT, "%s: not in checkpoint %lld, nor in the tree", browse_asked(q), (long long)k);
	}
	return 0;
}

/* In place, under the writer lock: removes a killed restore's temporary
 * files (only a killed restore leaves an intent and them), saves the live
 * tree if it differs from the head (unless discard), then restores k.
 * *saved: the checkpoint saved, 0 if none. */
static int restore_locked(mtm_store *s, mtm_id k, const rreq *rq, int discard, mtm_id *saved, mtm_restore_stats *st)
{
	*saved = 0;
	intent pending;
	int rc = intent_read(s, &pending);
	if (rc == MTM_ECORRUPT)
		return mtm_set_error(rc, "%s; then run the restore again", mtm_last_error());
	if (rc)
		return rc;
	int had = pending.target > 0;
	intent_free(&pending);
	uint64_t cleaned;
	if (had && !rq->dry_run && (rc = preflight_clean_temps(s->rootfd, &cleaned)))
		return rc;
	if ((rc = asked_paths_exist(s, k, rq)))
		return rc;
	int differs = 0, root_only = 0;
	if (!discard && !rq->dry_run &&
	    ((rc = live_differs(s, &differs)) || (!differs && !rq->n_paths && (rc = root_unsaved(s, k, &root_only)))))
		return mtm_set_error(rc, "cannot restore, the tree was not changed: comparing it with the head failed: %s",
		                     mtm_last_error());
	if (differs || root_only) {
		char msg[96];
		snprintf(msg, sizeof msg, RESTORE_SAVE_MESSAGE "%lld", (long long)k);
		mtm_checkpoint_opts co = MTM_CHECKPOINT_OPTS_INIT;
		co.message = msg;
		mtm_checkpoint_info info;
		if ((rc = (root_only ? ckpt_scan : ckpt_scan_if_changed)(s, &co, NULL, &info)))
			return mtm_set_error(rc, "cannot restore, the tree was not changed: saving it first failed "
			                     "(restore --discard skips the save): %s", mtm_last_error());
		free(info.message);
		*saved = info.id;
	}
	mtm_id from;
	MTM_TRY(mtm_head(s, &from));
	rctx c;
	if (!(rc = rctx_init(&c, s, rq)))
		rc = restore_in_place(&c, k, from, had);
	*st = c.st;
	rctx_free(&c);
	return rc;
}

/* Takes the lock and asks the caller's refusal with it held (api/restore.c:
 * not under a running `metamori run`, whose tree would change under the
 * traced program; a session starts only while holding the lock too). */
static int lock_for_tree(mtm_store *s, int (*refuse)(mtm_store *s))
{
	MTM_TRY(store_lock(s));
	int rc = refuse ? refuse(s) : 0;
	if (!rc)
		rc = store_unmirror(s);
	if (rc)
		store_unlock(s);
	return rc;
}

int restore_checkpoint(mtm_store *s, mtm_id id, const mtm_restore_opts *opts, int (*refuse)(mtm_store *s),
                       mtm_restore_stats *out)
{
	mtm_restore_opts o;
	MTM_TRY(opts_begin(opts, &o, out));
	int64_t branch;
	MTM_TRY(checkpoint_branch(s, id, &branch)); /* MTM_ENOCKPT for an unknown id */
	rreq rq = {o.excludes, o.n_excludes, NULL, 0, o.dry_run, o.on_step, o.step_arg, o.progress, o.progress_arg};
	int rc = rreq_paths(&rq, o.paths, o.n_paths);
	mtm_restore_stats st = {0};
	mtm_id saved = 0;
	if (!rc && o.to_dir) {
		rctx c;
		if (!(rc = rctx_init(&c, s, &rq))) {
			c.in_place = 0;
			rc = restore_to_dir(&c, id, o.to_dir);
			if (c.rootfd >= 0 && c.rootfd != s->rootfd)
				close(c.rootfd);
			st = c.st;
		}
		rctx_free(&c);
	} else if (!rc && !(rc = lock_for_tree(s, refuse))) {
		rc = restore_locked(s, id, &rq, o.discard, &saved, &st);
		store_unlock(s);
	}
	rreq_free(&rq);
	if (o.saved)
		*o.saved = saved;
	if (out)
		*out = st;
	return rc;
}

int mtm_restore_pending(mtm_store *s, mtm_id *target, mtm_id *from)
{
	intent in;
	MTM_NEED(s, "restore");
	MTM_NEED(target, "restore");
	*target = 0;
	if (from)
		*from = 0;
	MTM_TRY(intent_read(s, &in));
	*target = in.target;
	if (from)
		*from = in.from;
	intent_free(&in);
	return 0;
}

/* continue (abort = 0) or abort the pending restore, under the lock. */
int restore_resume(mtm_store *s, int abort, const mtm_restore_opts *opts, int (*refuse)(mtm_store *s),
                   mtm_restore_stats *out)
{
	mtm_restore_opts o;
	MTM_TRY(opts_begin(opts, &o, out));
	MTM_TRY(lock_for_tree(s, refuse));
	intent in;
	int rc = intent_read(s, &in);
	if (!rc && !in.target)
		rc = mtm_set_error(MTM_EINVAL, "restore --%s: no interrupted restore is pending", abort ? "abort" : "continue");
	mtm_id k = abort ? in.from : in.target, saved = 0;
	mtm_restore_stats st = {0};
	if (!rc && abort && !k) {
		/* an intent of an older version: it does not say what the tree
		 * was; the tree is left as it is, every file old or new */
		uint64_t n;
		if (!o.dry_run && !(rc = preflight_clean_temps(s->rootfd, &n)))
			rc = intent_clear(s);
	} else if (!rc) {
		rreq rq = {(const char *const *)in.excludes.v, in.excludes.n, NULL, 0, o.dry_run, o.on_step, o.step_arg,
		           o.progress, o.progress_arg};
		if (!(rc = rreq_paths(&rq, (const char *const *)in.paths.v, in.paths.n)) &&
		    !(rc = checkpoint_branch(s, k, &(int64_t){0})))
			rc = restore_locked(s, k, &rq, o.discard, &saved, &st);
		rreq_free(&rq);
	}
	intent_free(&in);
	store_unlock(s);
	if (o.saved)
		*o.saved = saved;
	if (out)
		*out = st;
	return rc;
}
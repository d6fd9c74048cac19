/*
 * apply.c — an in-place restore's changes, in order, under an intent
 * fsynced first (the whole request: `restore --continue` finishes it):
 * removals deepest first, directories, files (whole or patched), the other
 * names of hard-linked files, the patched files' fsyncs, symlinks and
 * nodes, then directory metadata last and the directories' fsyncs.
 */
#include "restore/preflight.h"
#include "restore/rctx.h"
#include "store/intent.h"
#include "util/error.h"
#include "util/human.h"

/* The whole request, before the first change. */
static int write_intent(rctx *c, mtm_id k, mtm_id from)
{
	const rreq *rq = c->rq;
	intent in = {.target = k, .from = from};
	int rc = 0;
	for (size_t i = 0; !rc && i < rq->n_excludes; i++)
		rc = strvec_push(&in.excludes, rq->excludes[i]);
	for (size_t i = 0; !rc && i < rq->n_paths; i++)
		rc = strvec_push(&in.paths, rq->paths[i]);
	rc = rc ? mtm_set_error(rc, "restore") : intent_write(c->s, &in);
	intent_free(&in);
	return rc;
}

/* Removals deepest first (reverse path order), then directories made. */
static int remove_and_make_dirs(rctx *c, inplace *w)
{
	for (size_t i = w->removed.n; i-- > 0;) {
		live_item *li = VEC_AT(&w->removed, live_item *, i);
		entry *te = tree_find(&w->target, li->path);
		MTM_TRY(remove_path(c, li, te != NULL));
	}
	int rc = 0;
	for (size_t i = 0; i < w->plan.n && !rc; i++) {
		plan_item *p = &VEC_AT(&w->plan, plan_item, i);
		if (p->te->kind == KIND_DIR && p->action == ACT_CREATE)
			rc = make_dir(c, p->te);
	}
	return rc;
}

/* Files written whole, patched or given their metadata; the other names
 * of hard-linked files; the patched files' fsyncs. */
static int write_files(rctx *c, inplace *w)
{
	int rc = 0;
	for (size_t i = 0; i < w->plan.n && !rc; i++) {
		plan_item *p = &VEC_AT(&w->plan, plan_item, i);
		if (p->te->kind == KIND_FILE) {
			if (p->action == ACT_CREATE || p->action == ACT_REWRITE)
				rc = write_whole(c, p);
			else if (p->action == ACT_PATCH)
				rc = write_patch(c, p);
			else if (p->action == ACT_META)
				rc = set_meta_path(c, p->te);
		}
	}
	if (!rc) /* the last batch of files written whole, before their other names */
		rc = rename_written(c);
	if (!rc)
		rc = make_links(c, &w->target, &w->plan);
	c->changed_ns = now_ns(); /* the last change to a file (its stat cache row) */
	if (!rc)
		rc = sync_patched(c);
	return rc;
}

/* Symlinks and other nodes last. */
static int make_nodes(rctx *c, inplace *w)
{
	int rc = 0;
	for (size_t i = 0; i < w->plan.n && !rc; i++) {
		plan_item *p = &VEC_AT(&w->plan, plan_item, i);
		int kd = p->te->kind;
		if (kd == KIND_SYMLINK || (kd >= KIND_FIFO && kd <= KIND_BLK))
			rc = p->action == ACT_CREATE ? (kd == KIND_SYMLINK ? make_symlink(c, p->te) : make_node(c, p->te))
			   : p->action == ACT_META   ? set_meta_path(c, p->te)
			                             : 0;
	}
	return rc;
}

int apply_plan(rctx *c, inplace *w, mtm_id k, mtm_id from, int work, vec *opened)
{
	int rc;
	if (work && ((rc = write_intent(c, k, from)) || (rc = preflight_open_dirs(c->s->rootfd, opened))))
		return rc;
	if (!(rc = remove_and_make_dirs(c, w)) && !(rc = write_files(c, w)))
		rc = make_nodes(c, w);
	/* the modes of the directories opened for the restore, then the
	 * checkpoint's metadata of every directory in the request */
	preflight_close_dirs(c->s->rootfd, opened);
	if (!rc && !(rc = fix_dirs(c, &w->target, &w->plan)))
		rc = fsync_dirs(c);
	return rc;
}

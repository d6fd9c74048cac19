/*
 * in_place.c — an in-place restore's order (restore.c's header says why):
 *   load     k's tree, the head's, the stat cache, the live tree, in one read
 *            transaction (one snapshot; no lock per chunk looked up)
 *   plan     a step per path (plan.c), listed, checked against the free
 *            space and the directories' write access (preflight.c)
 *   verify   every chunk needed read and checked (verify.c)
 *   apply    under the intent (apply.c)
 *   record   the new head and stat cache rows (record.c), the intent removed
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include "restore/preflight.h"
#include "restore/rctx.h"
#include "store/index.h"
#include "store/intent.h"
#include "util/error.h"
#include "util/human.h"
#include "util/log.h"

static void inplace_init(inplace *w)
{
	*w = (inplace){.target = VEC_INIT(entry), .head_tree = VEC_INIT(entry), .live = VEC_INIT(live_item),
	               .plan = VEC_INIT(plan_item), .removed = VEC_INIT(live_item *), .others = VEC_INIT(live_item *)};
}

static void inplace_free(inplace *w)
{
	plan_free(&w->plan);
	vec_free(&w->removed);
	for (size_t i = 0; i < w->others.n; i++) {
		free(VEC_AT(&w->others, live_item *, i)->path);
		free(VEC_AT(&w->others, live_item *, i));
	}
	vec_free(&w->others);
	pathmap_free(&w->dirs, NULL);
	entries_free(&w->target);
	entries_free(&w->head_tree);
	live_free(&w->live);
	pathmap_free(&w->sc, free);
	ignore_free(&w->ign);
}

/* Both sides and what the plan reads: k's tree and lineage, the head's,
 * the stat cache, the blocks written between them, the live tree. */
static int load(rctx *c, inplace *w, mtm_id k)
{
	mtm_store *s = c->s;
	const rreq *rq = c->rq;
	ignore_set none = {0};
	mtm_id head = 0;
	int rc;
	if ((rc = index_load_tree(s, k, &w->target)) || (rc = lineage_of(s, k, &c->lin_k)) || (rc = mtm_head(s, &head)) ||
	    (rc = index_load_tree(s, head, &w->head_tree)) || (rc = lineage_of(s, head, &c->lin_h)) ||
	    (rc = statcache_load(s, &w->sc)) ||
	    (rc = index_blocks_between(s, &c->lin_k, &c->lin_h, BETWEEN_LIMIT, &c->between, &c->between_ok,
	                               &c->log_empty)) ||
	    (rc = ignore_load(&w->ign, s->rootfd, rq->excludes, rq->n_excludes)) ||
	    (rc = walk_tree(s, &none, &w->live)) || (rc = live_group_links(&w->live, &w->ign)))
		return rc;
	return 0;
}

/* Phase ends, for $METAMORI_DEBUG_RESTORE. */
static void debug_phases(const rctx *c, mtm_id k, const int64_t ph[7])
{
	log_msg(MTM_LOG_DEBUG,
	        "restore %lld: load %.1f ms (%zu blocks between), plan %.1f ms, reads started %.1f ms, verify %.1f ms, "
	        "apply %.1f ms (fsyncs %.1f ms), record %.1f ms (%.1f ms of it waiting out the racy window)",
	        (long long)k, (ph[1] - ph[0]) / 1e6, c->between.n, (ph[2] - ph[1]) / 1e6, (ph[3] - ph[2]) / 1e6,
	        (ph[4] - ph[3]) / 1e6,
	        (ph[5] - ph[4]) / 1e6, c->fsync_ns / 1e6, (ph[6] - ph[5]) / 1e6, c->racy_wait_ns / 1e6);
}

int restore_in_place(rctx *c, mtm_id k, mtm_id from, int pending)
{
	mtm_store *s = c->s;
	inplace w;
	inplace_init(&w);
	vec opened = VEC_INIT(opened_dir);
	int rc, in_read = 0, work = 0;
	uint64_t need = 0;
	c->t0 = now_ns();
	int64_t ph[7] = {c->t0};
	c->bc = blockcache_new(KEEP_BUDGET);
	if (!c->bc)
		return mtm_set_error(ENOMEM, "restore");
	if ((rc = db_exec(s, "BEGIN")))
		goto done;
	in_read = 1;
	if ((rc = load(c, &w, k)))
		goto done;
	ph[1] = now_ns();
	if ((rc = plan_in_place(c, &w, k)) || (rc = plan_steps(c, &w.plan, &w.removed, &w.dirs, &need)) || c->rq->dry_run)
		goto done;
	if ((rc = preflight_space(s->rootfd, need)) || (rc = plan_frozen(c, &w)) ||
	    (rc = preflight_access(s->rootfd, &w.dirs, &opened)))
		goto done;
	ph[2] = now_ns();
	if ((rc = gather_reads(c, &w.plan)))
		goto done;
	ph[3] = now_ns();
	if ((rc = verify_plan(c, &w.plan, &w.removed, &work)))
		goto done;
	ph[4] = now_ns();
	if ((rc = apply_plan(c, &w, k, from, work, &opened)))
		goto done;
	ph[5] = now_ns();
	in_read = 0;
	if ((rc = db_exec(s, "COMMIT")) || (rc = record_restored(c, k, &w.plan, &w.removed, c->rq->n_paths == 0)) ||
	    (!c->rq->n_paths && (rc = set_root_meta(c, k))))
		goto done;
	/* on every path that completes, "nothing left to do" included: an
	 * intent left behind would make a later restore's plan start from it */
	if (work || pending)
		rc = intent_clear(s);
	ph[6] = now_ns();
	if (!rc && secure_getenv("METAMORI_DEBUG_RESTORE"))
		debug_phases(c, k, ph);
done:
	drop_unfinished(c); /* (after a failure) */
	preflight_close_dirs(s->rootfd, &opened); /* (after a failure) */
	if (in_read)
		sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	blockcache_free(c->bc);
	c->bc = NULL;
	inplace_free(&w);
	lineage_free(&c->lin_k);
	lineage_free(&c->lin_h);
	return rc;
}

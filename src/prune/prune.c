/*
 * prune.c — mtm_prune: select, fold, free, collect.
 *
 * One index transaction folds every dropped checkpoint and frees the chunks
 * no row uses any more; its commit is the prune. The newest dropped
 * checkpoint is folded first: its children are then all kept, so each row
 * moves once, straight to the kept checkpoints that need it (oldest first
 * would carry the rows of a run of dropped checkpoints down the run, a
 * quadratic cost). Pack rewriting (gc.c) follows in transactions of its own.
 * A dry run does the same work inside the transaction, estimates what gc
 * would return, reports it and rolls back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "prune/prune.h"
#include "store/index.h"
#include "util/error.h"

typedef struct { uint64_t added, changed, removed, bytes; } change_counts;

static int count_change(void *arg, const mtm_change *c)
{
	change_counts *k = arg;
	if (c->kind == 'A')
		k->added++;
	else if (c->kind == 'D')
		k->removed++;
	else
		k->changed++;
	k->bytes += c->bytes;
	return 0;
}

/* A kept checkpoint whose parent was dropped now holds its parent's changes
 * too: its counts (what log shows) become those of the diff from its new
 * parent, inside the prune's transaction (the branches reloaded to see the
 * folded rows). Cost: two tree loads per such child, not per dropped one. */
static int recount_children(mtm_store *s, const mtm_checkpoint_info *list, size_t n, const char *keep)
{
	MTM_TRY(store_load_branches(s));
	for (size_t i = 0; i < n; i++) {
		if (!keep[i] || !list[i].parent)
			continue;
		size_t lo = 0, hi = i; /* list is in id order, and a parent's id is lower */
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (list[mid].id < list[i].parent)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo == i || list[lo].id != list[i].parent || keep[lo])
			continue;
		sqlite3_stmt *st;
		int rc = sqlite3_prepare_v2(s->db, "SELECT parent FROM checkpoint WHERE id=?", -1, &st, NULL);
		if (rc != SQLITE_OK)
			return db_error(s, rc, "prune");
		sqlite3_bind_int64(st, 1, list[i].id);
		rc = sqlite3_step(st);
		mtm_id parent = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
		sqlite3_finalize(st);
		if (rc != SQLITE_ROW)
			return db_error(s, rc, "prune");
		change_counts k = {0};
		/* a new root: everything in it is added (diff from checkpoint 0, the empty tree) */
		MTM_TRY(mtm_diff(s, parent, list[i].id, NULL, count_change, &k));
		rc = sqlite3_prepare_v2(s->db, "UPDATE checkpoint SET files_added=?, files_changed=?, files_removed=?,"
		                               " bytes_changed=? WHERE id=?", -1, &st, NULL);
		if (rc != SQLITE_OK)
			return db_error(s, rc, "prune");
		sqlite3_bind_int64(st, 1, (int64_t)k.added);
		sqlite3_bind_int64(st, 2, (int64_t)k.changed);
		sqlite3_bind_int64(st, 3, (int64_t)k.removed);
		sqlite3_bind_int64(st, 4, (int64_t)k.bytes);
		sqlite3_bind_int64(st, 5, list[i].id);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			return db_error(s, rc, "prune");
	}
	return 0;
}

int mtm_prune(mtm_store *s, const mtm_prune_opts *opts, mtm_id **dropped, size_t *n_dropped, mtm_prune_stats *out)
{
	MTM_NEED(s, "prune");
	mtm_prune_opts o = MTM_PRUNE_OPTS_INIT;
	if (opts) {
		if (opts->version != MTM_PRUNE_OPTS_VERSION)
			return mtm_set_error(MTM_EINVAL, "prune: unsupported options version %d", opts->version);
		o = *opts;
	}
	if (o.n_keep && !o.keep)
		return mtm_set_error(MTM_EINVAL, "prune: keep is NULL");
	if (o.gc_threshold < 0)
		o.gc_threshold = 0.05;
	if (dropped)
		*dropped = NULL;
	if (n_dropped)
		*n_dropped = 0;
	mtm_prune_stats st = {0};
	MTM_TRY(store_lock(s));
	uint64_t before = store_disk_bytes(s);
	st.store_bytes_before = st.store_bytes_after = before;
	mtm_checkpoint_info *list = NULL;
	size_t n = 0;
	char *keep = NULL;
	mtm_id *gone = NULL;
	int in_tx = 0, rc = mtm_log(s, &list, &n);
	if (rc)
		goto done;
	keep = malloc(n + 1);
	gone = malloc((n + 1) * sizeof *gone);
	if (!keep || !gone) {
		rc = mtm_set_error(ENOMEM, "prune");
		goto done;
	}
	if ((rc = prune_select(s, &o, list, n, keep)))
		goto done;
	if ((rc = db_exec(s, "BEGIN IMMEDIATE")))
		goto done;
	in_tx = 1;
	/* folding and gc read block alone: the log's rows go there first, in
	 * this transaction (a dry run rolls the merge back with the rest) */
	if ((rc = index_merge_log(s)))
		goto done;
	mtm_id head;
	if ((rc = mtm_head(s, &head)) || (rc = prune_fold_begin(s, head)))
		goto done;
	size_t ng = 0, to_fold = 0;
	for (size_t i = 0; i < n; i++)
		to_fold += !keep[i];
	for (size_t i = n; i-- > 0;) {
		if (keep[i]) {
			st.kept++;
			continue;
		}
		if (s->progress) /* (counts checkpoints, not bytes: mtm_set_progress) */
			s->progress(s->progress_arg, "prune", ng, to_fold);
		if ((rc = prune_fold(s, list[i].id)))
			goto done;
		gone[ng++] = list[i].id;
		st.dropped++;
	}
	if (s->progress && to_fold)
		s->progress(s->progress_arg, "prune", ng, to_fold);
	/* report the dropped ids in ascending order */
	for (size_t i = 0; i < ng / 2; i++) {
		mtm_id t = gone[i];
		gone[i] = gone[ng - 1 - i];
		gone[ng - 1 - i] = t;
	}
	if ((rc = prune_fold_end(s)) || (rc = prune_free_chunks(s, &st)))
		goto done;
	/* a blockhash row describes its version's blocks, which no longer
	 * exist as such once it is dropped (FORMAT.md 3.11) */
	if ((rc = db_exec(s, "DELETE FROM blockhash WHERE ver NOT IN (SELECT id FROM checkpoint);"
	                     "DELETE FROM blockhash_delta WHERE ver NOT IN (SELECT id FROM checkpoint)"
	                     " OR base NOT IN (SELECT id FROM checkpoint)")))
		goto done;
	if (!o.dry_run && (rc = recount_children(s, list, n, keep)))
		goto done;
	if (o.dry_run) {
		rc = gc_estimate(s, o.gc_threshold, &st);
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		in_tx = 0;
		if (rc)
			goto done;
	} else {
		if ((rc = db_exec(s, "COMMIT")))
			goto done;
		in_tx = 0;
		if ((rc = store_load_branches(s)) || (rc = gc_packs(s, o.gc_threshold, &st)))
			goto done;
		/* give the index's free pages back, and fold the WAL in */
		db_exec(s, "PRAGMA incremental_vacuum");
		sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
		uint64_t after = store_disk_bytes(s);
		st.bytes_returned = before > after ? before - after : 0;
		st.store_bytes_after = after;
	}
	if (dropped) {
		*dropped = gone;
		gone = NULL;
	}
	if (n_dropped)
		*n_dropped = ng;
done:
	if (in_tx)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	store_load_branches(s);
	store_unlock(s);
	mtm_log_free(list, n);
	free(keep);
	free(gone);
	if (out)
		*out = st;
	return rc;
}

/*
 * between.c — what the index says changed between two checkpoints.
 *
 * A block's visible version at checkpoint k is its row with the greatest
 * ckpt among k's ancestors (lineage.h). Two checkpoints a and b see the same
 * version of a block unless some row of it was written by a checkpoint that
 * exactly one of them sees. Per branch, each sees a prefix of the branch's
 * checkpoints, so the checkpoints seen by one only are, per branch, the ids
 * between the two prefixes' ends: found through block_by_ckpt, in time
 * proportional to the rows they wrote, not to the size of the files. Rows
 * still in block_log (FORMAT.md 3.5.1) are looked at too.
 */
#include <errno.h>
#include <stdlib.h>
#include "store/index.h"
#include "util/error.h"

static int cmp_key(const void *x, const void *y)
{
	const blockkey *a = x, *b = y;
	if (a->file_id != b->file_id)
		return a->file_id < b->file_id ? -1 : 1;
	return a->blkno < b->blkno ? -1 : a->blkno > b->blkno;
}

/* Appends the keys of the rows written on branch by checkpoints lo < id <= hi. */
static int scan_branch(mtm_store *s, sqlite3_stmt *st, int64_t branch, int64_t lo, int64_t hi, size_t limit, vec *out,
                       int *complete)
{
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, lo);
	sqlite3_bind_int64(st, 2, hi);
	sqlite3_bind_int64(st, 3, branch);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (out->n >= limit) {
			*complete = 0;
			sqlite3_reset(st);
			return 0;
		}
		blockkey *k = vec_push(out);
		if (!k) {
			sqlite3_reset(st);
			return mtm_set_error(ENOMEM, "index");
		}
		k->file_id = sqlite3_column_int64(st, 0);
		k->blkno = sqlite3_column_int64(st, 1);
		if (k->blkno < 0 || k->blkno > MTM_MAX_FILE_SIZE / MTM_BLOCK) { /* a restore would write there */
			sqlite3_reset(st);
			return mtm_set_error(MTM_ECORRUPT, "index: file %lld has a damaged block number", (long long)k->file_id);
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

int index_blocks_between(mtm_store *s, const lineage *a, const lineage *b, size_t limit, vec *out, int *complete,
                         int *log_empty)
{
	*out = (vec)VEC_INIT(blockkey);
	*complete = 0;
	MTM_TRY(index_log_empty(s, log_empty));
	sqlite3_stmt *st[2] = {NULL, NULL};
	/* block_by_ckpt holds the key columns: no row of the table is read;
	 * block_log, small (store.h, STORE_LOG_KEEP_ROWS), is read whole */
	if (sqlite3_prepare_v2(s->db,
	                       "SELECT file_id, blkno FROM block INDEXED BY block_by_ckpt "
	                       "WHERE ckpt > ?1 AND ckpt <= ?2 AND branch = ?3",
	                       -1, &st[0], NULL) != SQLITE_OK ||
	    (!*log_empty && sqlite3_prepare_v2(s->db,
	                                       "SELECT file_id, blkno FROM block_log WHERE ckpt > ?1 AND ckpt <= ?2 AND branch = ?3",
	                                       -1, &st[1], NULL) != SQLITE_OK)) {
		sqlite3_finalize(st[0]);
		return 0; /* (an index without it: the caller reads whole maps) */
	}
	*complete = 1;
	int rc = 0;
	const lineage *both[2] = {a, b};
	for (int side = 0; side < 2 && !rc && *complete; side++)
		for (size_t i = 0; i < both[side]->n && !rc && *complete; i++) {
			int64_t br = both[side]->v[i].branch;
			if (side == 1 && lineage_max(a, br)) /* done from a's side */
				continue;
			int64_t ma = lineage_max(a, br), mb = lineage_max(b, br);
			int64_t lo = ma < mb ? ma : mb, hi = ma < mb ? mb : ma;
			for (int t = 0; t < 2 && st[t] && lo < hi && !rc && *complete; t++)
				rc = scan_branch(s, st[t], br, lo, hi, limit, out, complete);
		}
	sqlite3_finalize(st[0]);
	sqlite3_finalize(st[1]);
	if (rc || !*complete) {
		vec_free(out);
		*complete = 0;
		return rc;
	}
	if (out->n > 1) {
		qsort(out->v, out->n, sizeof(blockkey), cmp_key);
		size_t k = 1;
		for (size_t i = 1; i < out->n; i++)
			if (cmp_key(&VEC_AT(out, blockkey, i), &VEC_AT(out, blockkey, k - 1)))
				VEC_AT(out, blockkey, k++) = VEC_AT(out, blockkey, i);
		out->n = k;
	}
	return 0;
}

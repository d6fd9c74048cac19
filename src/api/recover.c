/*
 * recover.c — mtm_recover: a restarted program's state back from one
 * checkpoint, its memory regions (restore/regions.c) and then its tree
 * (mtm_restore, refused under a running session like any in-place restore).
 * Regions first: their blocks are verified on the way in, so a damaged
 * store fails before the tree is touched.
 */
#include "restore/restore.h"
#include "store/region.h"
#include "util/error.h"

/* The newest checkpoint the program took: an in-place restore first saves a
 * tree that differs from its head (a killed run's half-done steps) as a
 * checkpoint of its own, and that save is not a restart point. */
static int newest(mtm_store *s, mtm_id *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "SELECT COALESCE(MAX(id), 0) FROM checkpoint"
	                            " WHERE message IS NULL OR message NOT LIKE '" RESTORE_SAVE_MESSAGE "%'", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	rc = sqlite3_step(st);
	*out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : db_error(s, rc, "index");
}

int mtm_recover(mtm_store *s, mtm_id id, mtm_id *out)
{
	if (out)
		*out = 0;
	MTM_NEED(s, "recover");
	if (id < 0)
		return mtm_set_error(MTM_EINVAL, "recover: bad checkpoint id %lld", (long long)id);
	if (!id) {
		MTM_TRY(newest(s, &id));
		if (!id)
			return 0; /* a first start: nothing to recover */
	}
	MTM_TRY(restore_regions(s, id));
	int rc = mtm_restore(s, id, NULL, NULL);
	if (rc) { /* the hashes describe id, which the next checkpoint's parent (the head) is not */
		for (size_t i = 0; i < s->n_regions; i++)
			s->regions[i].hashes_at = 0;
		return rc;
	}
	if (out)
		*out = id;
	return 0;
}

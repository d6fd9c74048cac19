/* log.c — listing checkpoints. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "store/store.h"
#include "util/error.h"

int mtm_log(mtm_store *s, mtm_checkpoint_info **out, size_t *n_out)
{
	MTM_NEED(s, "log");
	MTM_NEED(out, "log");
	MTM_NEED(n_out, "log");
	*out = NULL;
	*n_out = 0;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db,
	                            "SELECT id, parent, time_ns, message, files_added, files_changed, files_removed,"
	                            " bytes_changed, bytes_stored, entries, tree_bytes, regions, region_bytes, region_bytes_changed,"
	                            " tracked, pause_ns"
	                            " FROM checkpoint ORDER BY id",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	size_t n = 0, cap = 0;
	mtm_checkpoint_info *v = NULL;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			mtm_checkpoint_info *nv = realloc(v, cap * sizeof *nv);
			if (!nv) {
				rc = SQLITE_NOMEM;
				break;
			}
			v = nv;
		}
		mtm_checkpoint_info *c = &v[n++];
		c->id = sqlite3_column_int64(st, 0);
		c->parent = sqlite3_column_int64(st, 1);
		c->time_ns = sqlite3_column_int64(st, 2);
		const char *m = (const char *)sqlite3_column_text(st, 3);
		c->message = strdup(m ? m : "");
		c->files_added = (uint64_t)sqlite3_column_int64(st, 4);
		c->files_changed = (uint64_t)sqlite3_column_int64(st, 5);
		c->files_removed = (uint64_t)sqlite3_column_int64(st, 6);
		c->bytes_changed = (uint64_t)sqlite3_column_int64(st, 7);
		c->bytes_stored = (uint64_t)sqlite3_column_int64(st, 8);
		c->entries = (uint64_t)sqlite3_column_int64(st, 9);
		c->tree_bytes = (uint64_t)sqlite3_column_int64(st, 10);
		/* (NULL: a checkpoint made before format 6, which did not keep them) */
		int known = sqlite3_column_type(st, 14) != SQLITE_NULL;
		c->tracked = known ? sqlite3_column_int(st, 14) : -1;
		c->pause_ns = known ? (uint64_t)sqlite3_column_int64(st, 15) : 0;
		c->regions = (uint64_t)sqlite3_column_int64(st, 11);
		c->region_bytes = (uint64_t)sqlite3_column_int64(st, 12);
		c->region_bytes_changed = (uint64_t)sqlite3_column_int64(st, 13);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		mtm_log_free(v, n);
		return db_error(s, rc, "index");
	}
	*out = v;
	*n_out = n;
	return 0;
}

void mtm_log_free(mtm_checkpoint_info *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i].message);
	free(list);
}

/* du.c — space accounting per checkpoint and for the store. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "prune/prune.h"
#include "util/error.h"

/* Bytes only checkpoint c holds: chunks used by no other checkpoint's rows,
 * through rows that every child overrides (so pruning c alone frees them). */
static const char *unique_sql =
	"SELECT COALESCE(SUM(40 + ch.clen), 0) FROM chunk ch WHERE ch.id IN ("
	" SELECT b.chunk FROM block b WHERE b.ckpt = ?1 AND b.chunk != 0 AND NOT EXISTS ("
	"  SELECT 1 FROM checkpoint k WHERE k.parent = ?1 AND NOT EXISTS ("
	"   SELECT 1 FROM block o WHERE o.file_id = b.file_id AND o.blkno = b.blkno AND o.branch = k.branch"
	"   AND o.ckpt = k.id)))"
	" AND NOT EXISTS (SELECT 1 FROM block b2 WHERE b2.chunk = ch.id AND b2.ckpt != ?1)";

static int one_int(mtm_store *s, const char *sql, uint64_t *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "du");
	rc = sqlite3_step(st);
	*out = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : db_error(s, rc, "du");
}

int mtm_du(mtm_store *s, mtm_du_entry **out, size_t *n_out, mtm_du_totals *t)
{
	*out = NULL;
	*n_out = 0;
	memset(t, 0, sizeof *t);
	mtm_checkpoint_info *list;
	size_t n;
	MTM_TRY(mtm_log(s, &list, &n));
	mtm_du_entry *v = calloc(n ? n : 1, sizeof *v);
	sqlite3_stmt *st = NULL;
	int rc = v ? sqlite3_prepare_v2(s->db, unique_sql, -1, &st, NULL) : SQLITE_NOMEM;
	for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
		v[i].id = list[i].id;
		v[i].added = list[i].bytes_stored;
		t->logical += list[i].tree_bytes;
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, list[i].id);
		if (sqlite3_step(st) == SQLITE_ROW)
			v[i].unique = (uint64_t)sqlite3_column_int64(st, 0);
		else
			rc = sqlite3_errcode(s->db);
	}
	sqlite3_finalize(st);
	mtm_log_free(list, n);
	int err = rc == SQLITE_OK ? 0 : db_error(s, rc, "du");
	if (!err)
		err = one_int(s, "SELECT COALESCE(SUM(plen), 0) FROM chunk", &t->plain);
	if (!err)
		err = one_int(s, "SELECT COALESCE(SUM(40 + clen), 0) FROM chunk", &t->packed);
	if (!err)
		err = one_int(s, "SELECT COALESCE(SUM(dead), 0) FROM pack", &t->dead);
	if (err) {
		free(v);
		return err;
	}
	uint64_t disk = store_disk_bytes(s), idx = 0;
	struct stat sb;
	if (!fstatat(s->dirfd, "index.db", &sb, 0))
		idx += (uint64_t)sb.st_size;
	if (!fstatat(s->dirfd, "index.db-wal", &sb, 0))
		idx += (uint64_t)sb.st_size;
	if (!fstatat(s->dirfd, "index.db-shm", &sb, 0))
		idx += (uint64_t)sb.st_size;
	t->index_bytes = idx;
	t->pack_files = disk > idx ? disk - idx : 0;
	*out = v;
	*n_out = n;
	return 0;
}

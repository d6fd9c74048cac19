/* du.c — space accounting per checkpoint and for the store. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "prune/prune.h"
#include "store/index.h"
#include "util/error.h"
#include "util/strvec.h"

/*
 * Bytes only checkpoint c holds: what pruning c alone frees. That mirrors
 * fold.c exactly: c's block row moves to a child k unless k has its own row
 * for the block or c's file does not exist at k any more (du_live holds, per
 * child, c's files that do: at the same path, or renamed); a chunk is freed
 * when every row naming it is one of c's rows that moves nowhere.
 */
static const char *live_same_sql =
	"INSERT OR IGNORE INTO du_live SELECT e.file_id, ?2, ?3 FROM entry e WHERE e.ckpt = ?1 AND e.kind = 1"
	" AND (NOT EXISTS (SELECT 1 FROM entry x WHERE x.path = e.path AND x.branch = ?3 AND x.ckpt = ?2)"
	"  OR EXISTS (SELECT 1 FROM entry x WHERE x.path = e.path AND x.branch = ?3 AND x.ckpt = ?2"
	"   AND x.kind = 1 AND x.file_id = e.file_id))";
static const char *live_renamed_sql =
	"INSERT OR IGNORE INTO du_live SELECT e.file_id, ?2, ?3 FROM entry e WHERE e.ckpt = ?1 AND e.kind = 1"
	" AND e.file_id IN (SELECT file_id FROM entry WHERE ckpt = ?2 AND kind = 1)";
/* a region's blocks move to a child that still has its file id (fold.c) */
static const char *live_region_sql =
	"INSERT OR IGNORE INTO du_live SELECT r.file_id, ?2, ?3 FROM region r WHERE r.ckpt = ?1 AND r.kind = 1"
	" AND (NOT EXISTS (SELECT 1 FROM region x WHERE x.name = r.name AND x.branch = ?3 AND x.ckpt = ?2)"
	"  OR EXISTS (SELECT 1 FROM region x WHERE x.name = r.name AND x.branch = ?3 AND x.ckpt = ?2"
	"   AND x.kind = 1 AND x.file_id = r.file_id))";
static const char *unique_sql =
	"SELECT COALESCE(SUM(40 + ch.clen), 0) FROM (SELECT b.chunk AS id, COUNT(*) AS n FROM block b"
	" WHERE b.ckpt = ?1 AND b.chunk != 0 AND NOT EXISTS (SELECT 1 FROM du_live l WHERE l.file_id = b.file_id"
	"  AND NOT EXISTS (SELECT 1 FROM block o WHERE o.file_id = b.file_id AND o.blkno = b.blkno"
	"   AND o.branch = l.bk AND o.ckpt = l.k))"
	" GROUP BY b.chunk) f JOIN chunk ch ON ch.id = f.id"
	" WHERE f.n = (SELECT COUNT(*) FROM block b2 WHERE b2.chunk = f.id)";

/* The queries above read `block` and `entry` only, so block_log and
 * entry_log are merged first (store_settle). A store this process cannot
 * write (read-only file system, no write permission, a full disk:
 * s->readonly) cannot merge them: there temporary views named `block` and
 * `entry` (SQLite looks names up in temp first) show both tables as the
 * merge would leave them, a log row replacing the row of the same key
 * (FORMAT.md 3.4.1, 3.5.1). Dropped again at the end of mtm_du: other
 * readers read the two tables themselves. */
static const char *merged_view_sql =
	"CREATE TEMP VIEW block AS SELECT file_id, blkno, branch, ckpt, hash, chunk, boff FROM main.block b"
	" WHERE NOT EXISTS (SELECT 1 FROM main.block_log l WHERE l.file_id = b.file_id AND l.blkno = b.blkno"
	"  AND l.branch = b.branch AND l.ckpt = b.ckpt)"
	" UNION ALL SELECT file_id, blkno, branch, ckpt, hash, chunk, boff FROM main.block_log;"
	"CREATE TEMP VIEW entry AS SELECT " ENTRY_COLUMNS " FROM main.entry e"
	" WHERE NOT EXISTS (SELECT 1 FROM main.entry_log l WHERE l.path = e.path AND l.branch = e.branch"
	"  AND l.ckpt = e.ckpt)"
	" UNION ALL SELECT " ENTRY_COLUMNS " FROM main.entry_log";
static const char *drop_views_sql = "DROP VIEW temp.block; DROP VIEW temp.entry";

static int settle_or_view(mtm_store *s, int *view)
{
	*view = 0;
	int empty;
	MTM_TRY(index_logs_empty(s, &empty));
	if (empty)
		return 0;
	if (!s->readonly) {
		/* the merge's pages folded into index.db at once: the index's size
		 * reported is the store's at rest, not with a WAL of our own */
		MTM_TRY(store_settle(s));
		sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
		return 0;
	}
	MTM_TRY(db_exec(s, merged_view_sql));
	*view = 1;
	return 0;
}

static int step3(mtm_store *s, sqlite3_stmt *st, int64_t a, int64_t b, int64_t c)
{
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, a);
	if (sqlite3_bind_parameter_count(st) >= 2)
		sqlite3_bind_int64(st, 2, b);
	if (sqlite3_bind_parameter_count(st) >= 3)
		sqlite3_bind_int64(st, 3, c);
	int rc = sqlite3_step(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_error(s, rc, "du");
}

static int unique_bytes(mtm_store *s, sqlite3_stmt **q, mtm_id c, uint64_t *out)
{
	MTM_TRY(db_exec(s, "DELETE FROM du_live"));
	MTM_TRY(step3(s, q[0], c, 0, 0)); /* files of c */
	int64_t n_files = sqlite3_column_int64(q[0], 0);
	sqlite3_reset(q[0]);
	vec kids = VEC_INIT(int64_t[2]);
	int rc;
	sqlite3_reset(q[1]);
	sqlite3_bind_int64(q[1], 1, c);
	while ((rc = sqlite3_step(q[1])) == SQLITE_ROW) {
		int64_t *k = vec_push(&kids);
		if (!k) {
			vec_free(&kids);
			return mtm_set_error(ENOMEM, "du");
		}
		k[0] = sqlite3_column_int64(q[1], 0);
		k[1] = sqlite3_column_int64(q[1], 1);
	}
	sqlite3_reset(q[1]);
	int err = rc == SQLITE_DONE ? 0 : db_error(s, rc, "du");
	for (size_t i = 0; i < kids.n && !err; i++) {
		int64_t k = ((int64_t *)kids.v)[2 * i], bk = ((int64_t *)kids.v)[2 * i + 1];
		err = step3(s, q[2], c, k, bk);
		if (!err && sqlite3_changes(s->db) < n_files)
			err = step3(s, q[3], c, k, bk);
		if (!err)
			err = step3(s, q[5], c, k, bk);
	}
	vec_free(&kids);
	if (!err && !(err = step3(s, q[4], c, 0, 0)))
		*out = (uint64_t)sqlite3_column_int64(q[4], 0);
	sqlite3_reset(q[4]);
	return err;
}

static int one_int(mtm_store *s, const char *sql, uint64_t *out)
{
	int64_t v;
	int rc = db_int(s, "du", sql, NULL, 0, &v, NULL);
	*out = (uint64_t)v;
	return rc;
}

int mtm_du(mtm_store *s, mtm_du_entry **out, size_t *n_out, mtm_du_totals *t)
{
	MTM_NEED(s, "du");
	MTM_NEED(out, "du");
	MTM_NEED(n_out, "du");
	MTM_NEED(t, "du");
	*out = NULL;
	*n_out = 0;
	memset(t, 0, sizeof *t);
	mtm_checkpoint_info *list;
	size_t n;
	int view;
	MTM_TRY(settle_or_view(s, &view));
	int err = mtm_log(s, &list, &n);
	if (err) {
		if (view)
			db_exec(s, drop_views_sql);
		return err;
	}
	mtm_du_entry *v = calloc(n ? n : 1, sizeof *v);
	const char *sqls[6] = {"SELECT COUNT(*) FROM entry WHERE ckpt = ?1 AND kind = 1",
	                       "SELECT id, branch FROM checkpoint WHERE parent = ?1", live_same_sql, live_renamed_sql,
	                       unique_sql, live_region_sql};
	sqlite3_stmt *q[6] = {0};
	err = v ? db_exec(s, "CREATE TEMP TABLE IF NOT EXISTS du_live(file_id INTEGER, k INTEGER, bk INTEGER,"
	                         " PRIMARY KEY(file_id, k)) WITHOUT ROWID")
	            : mtm_set_error(ENOMEM, "du");
	for (int i = 0; i < 6 && !err; i++) {
		int rc = sqlite3_prepare_v2(s->db, sqls[i], -1, &q[i], NULL);
		if (rc != SQLITE_OK)
			err = db_error(s, rc, "du");
	}
	/* one snapshot for the whole report */
	int in_tx = !err && !(err = db_exec(s, "BEGIN"));
	for (size_t i = 0; !err && i < n; i++) {
		v[i].id = list[i].id;
		v[i].added = list[i].bytes_stored;
		t->logical += list[i].tree_bytes + list[i].region_bytes;
		t->region_logical += list[i].region_bytes;
		err = unique_bytes(s, q, list[i].id, &v[i].unique);
		if (s->progress) /* (counts checkpoints: mtm_set_progress) */
			s->progress(s->progress_arg, "du", i + 1, n);
	}
	for (int i = 0; i < 6; i++)
		sqlite3_finalize(q[i]);
	mtm_log_free(list, n);
	if (!err)
		err = one_int(s, "SELECT COALESCE(SUM(plen), 0) FROM chunk", &t->plain);
	if (!err)
		err = one_int(s, "SELECT COALESCE(SUM(40 + clen), 0) FROM chunk", &t->packed);
	if (!err)
		err = one_int(s, "SELECT COALESCE(SUM(dead), 0) FROM pack", &t->dead);
	if (in_tx)
		sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	int dropped = view ? db_exec(s, drop_views_sql) : 0;
	if (!err)
		err = dropped;
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

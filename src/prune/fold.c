/*
 * fold.c — dropping one checkpoint without changing any other.
 *
 * Each row (entry or block version) written at d moves to every child of d
 * that has no row of its own for the same key (INSERT OR IGNORE): what each
 * child sees is unchanged, since d's row was visible to it exactly when the
 * child had none. Rows every child overrides are deleted, and the chunks
 * they used become gc candidates. Children take d's parent; branches that
 * forked at d fork at d's parent. Cost: O(rows of d x children), through the
 * by-ckpt indexes.
 */
#include <stdlib.h>
#include "prune/prune.h"
#include "util/error.h"
#include "util/strvec.h"

static int exec_bind(mtm_store *s, const char *sql, int64_t a, int64_t b, int64_t c)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "prune");
	int n = sqlite3_bind_parameter_count(st);
	if (n >= 1)
		sqlite3_bind_int64(st, 1, a);
	if (n >= 2)
		sqlite3_bind_int64(st, 2, b);
	if (n >= 3)
		sqlite3_bind_int64(st, 3, c);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "prune");
}

int prune_fold(mtm_store *s, mtm_id d)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "SELECT parent, branch, bytes_stored FROM checkpoint WHERE id=?", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "prune");
	sqlite3_bind_int64(st, 1, d);
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return rc == SQLITE_DONE ? mtm_set_error(MTM_ENOCKPT, "checkpoint %lld: no such checkpoint", (long long)d)
		                         : db_error(s, rc, "prune");
	}
	int64_t parent = sqlite3_column_int64(st, 0), bytes = sqlite3_column_int64(st, 2);
	sqlite3_finalize(st);

	/* the children first: the loop below rewrites their rows */
	rc = sqlite3_prepare_v2(s->db, "SELECT id, branch FROM checkpoint WHERE parent=? ORDER BY id", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "prune");
	sqlite3_bind_int64(st, 1, d);
	vec kids = VEC_INIT(int64_t[2]);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t *k = vec_push(&kids);
		if (!k) {
			rc = SQLITE_NOMEM;
			break;
		}
		k[0] = sqlite3_column_int64(st, 0);
		k[1] = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		vec_free(&kids);
		return db_error(s, rc, "prune");
	}
	int err = 0;
	for (size_t i = 0; i < kids.n && !err; i++) {
		int64_t c = ((int64_t *)kids.v)[2 * i], bc = ((int64_t *)kids.v)[2 * i + 1];
		err = exec_bind(s, "INSERT OR IGNORE INTO entry SELECT path, ?1, ?2, kind, mode, uid, gid, size, mtime_ns,"
		                   " file_id, target FROM entry WHERE ckpt=?3", bc, c, d);
		if (!err)
			err = exec_bind(s, "INSERT OR IGNORE INTO block SELECT file_id, blkno, ?1, ?2, hash, chunk, boff"
			                   " FROM block WHERE ckpt=?3", bc, c, d);
		/* the first child inherits d's share of the packs, for du */
		if (!err)
			err = exec_bind(s, "UPDATE checkpoint SET parent=?1, bytes_stored=bytes_stored+?2 WHERE id=?3", parent,
			                i == 0 ? bytes : 0, c);
	}
	vec_free(&kids);
	if (err)
		return err;
	MTM_TRY(exec_bind(s, "UPDATE branch SET fork=?1 WHERE fork=?2", parent, d, 0));
	MTM_TRY(exec_bind(s, "INSERT OR IGNORE INTO gc_candidate SELECT DISTINCT chunk FROM block WHERE ckpt=?1 AND chunk != 0",
	                  d, 0, 0));
	MTM_TRY(exec_bind(s, "DELETE FROM entry WHERE ckpt=?1", d, 0, 0));
	MTM_TRY(exec_bind(s, "DELETE FROM block WHERE ckpt=?1", d, 0, 0));
	return exec_bind(s, "DELETE FROM checkpoint WHERE id=?1", d, 0, 0);
}

int prune_free_chunks(mtm_store *s, mtm_prune_stats *stats)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db,
	                            "SELECT c.id, c.pack, 40 + c.clen FROM gc_candidate g JOIN chunk c ON c.id = g.id"
	                            " WHERE NOT EXISTS (SELECT 1 FROM block b WHERE b.chunk = g.id)",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "prune");
	int err = 0;
	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0), pack = sqlite3_column_int64(st, 1), len = sqlite3_column_int64(st, 2);
		err = exec_bind(s, "UPDATE pack SET dead = dead + ?1 WHERE id = ?2", len, pack, 0);
		if (!err)
			err = exec_bind(s, "DELETE FROM chunk WHERE id=?1", id, 0, 0);
		stats->chunks_freed++;
		stats->bytes_freed += (uint64_t)len;
	}
	sqlite3_finalize(st);
	if (err)
		return err;
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "prune");
}

/*
 * fold.c — dropping one checkpoint without changing any other.
 *
 * Each row (entry or block version) written at d moves to every child c of d
 * that has no row of its own for the same key (INSERT OR IGNORE): what each
 * child sees is unchanged, since d's row was visible to it exactly when the
 * child had none. Block rows move only for the files that still exist at c
 * (a file id that c removed or replaced never comes back: a file id is only
 * ever taken from the parent's tree), so the blocks of deleted files are
 * freed instead of being carried forever. When d was a root, its children
 * become roots, and tombstones and rows of zeros (which only hide older rows,
 * and there are none) are dropped. Rows every child overrides are deleted,
 * and the chunks they used become gc candidates. Children take d's parent;
 * branches that forked at d fork at d's parent.
 *
 * Cost: O(rows of d x children), through the by-ckpt indexes; when d held a
 * file that a child replaced, the child's file ids are collected once per
 * prune (O(entries of the child)) to recognise a rename.
 *
 * The temp tables (prune_fold_begin):
 *   gc_candidate(id, live)    chunks d's rows used, and how many of their
 *                             blocks rows used before the prune
 *   fold_live(file_id)        d's files alive at the child being folded into
 *   fold_files(ckpt, file_id) the file ids with a file entry at a kept ckpt,
 *                             collected on first need (fold_done)
 *   head_path(id)             the head and its ancestors
 *   ver_remap(old, new)       a dropped ancestor of the head -> the child on
 *                             the head's path that took its rows (statcache)
 */
#include <errno.h>
#include <stdlib.h>
#include "prune/prune.h"
#include "store/index.h"
#include "util/error.h"
#include "util/strvec.h"

static int exec_bind(mtm_store *s, const char *sql, int64_t a, int64_t b, int64_t c)
{
	return db_run(s, "prune", sql, DB_ARGS(a, b, c));
}

static int query_int(mtm_store *s, const char *sql, int64_t a, int64_t b, int64_t *out)
{
	return db_int(s, "prune", sql, DB_ARGS(a, b), out, NULL);
}

int prune_fold_begin(mtm_store *s, mtm_id head)
{
	MTM_TRY(db_exec(s, "CREATE TEMP TABLE IF NOT EXISTS gc_candidate(id INTEGER PRIMARY KEY, live INTEGER NOT NULL);"
	                   "CREATE TEMP TABLE IF NOT EXISTS fold_live(file_id INTEGER PRIMARY KEY);"
	                   "CREATE TEMP TABLE IF NOT EXISTS fold_files(ckpt INTEGER, file_id INTEGER,"
	                   " PRIMARY KEY(ckpt, file_id)) WITHOUT ROWID;"
	                   "CREATE TEMP TABLE IF NOT EXISTS fold_done(ckpt INTEGER PRIMARY KEY);"
	                   "CREATE TEMP TABLE IF NOT EXISTS head_path(id INTEGER PRIMARY KEY);"
	                   "CREATE TEMP TABLE IF NOT EXISTS ver_remap(old INTEGER PRIMARY KEY, new INTEGER NOT NULL);"
	                   "DELETE FROM gc_candidate; DELETE FROM fold_live; DELETE FROM fold_files;"
	                   "DELETE FROM fold_done; DELETE FROM head_path; DELETE FROM ver_remap;"));
	if (!head)
		return 0;
	return exec_bind(s, "WITH RECURSIVE a(id) AS (SELECT ?1 UNION ALL"
	                    " SELECT c.parent FROM checkpoint c JOIN a ON c.id = a.id WHERE c.parent != 0)"
	                    " INSERT OR IGNORE INTO head_path SELECT id FROM a",
	                 head, 0, 0);
}

int prune_fold_end(mtm_store *s)
{
	/* the stat cache names the entry version visible at the head: a version
	 * that moved to a child still describes the same file */
	return db_exec(s, "UPDATE statcache SET ver = (SELECT new FROM ver_remap WHERE old = statcache.ver)"
	                  " WHERE ver IN (SELECT old FROM ver_remap)");
}

/* Fills fold_live with d's files that exist at child c (after d's entries
 * were copied to c): those at the same path in c, and those c renamed. */
static int live_files(mtm_store *s, mtm_id d, int64_t c, int64_t bc, int64_t n_files)
{
	MTM_TRY(db_exec(s, "DELETE FROM fold_live"));
	MTM_TRY(exec_bind(s, "INSERT OR IGNORE INTO fold_live SELECT e.file_id FROM entry e"
	                     " JOIN entry x ON x.path = e.path AND x.branch = ?2 AND x.ckpt = ?3"
	                     " WHERE e.ckpt = ?1 AND e.kind = 1 AND x.kind = 1 AND x.file_id = e.file_id",
	                  d, bc, c));
	int64_t n_same = sqlite3_changes(s->db), done;
	MTM_TRY(query_int(s, "SELECT 1 FROM fold_done WHERE ckpt=?1", c, 0, &done));
	if (done) /* keep c's collected file ids up to date with what it just took */
		MTM_TRY(exec_bind(s, "INSERT OR IGNORE INTO fold_files SELECT ?1, file_id FROM fold_live", c, 0, 0));
	if (n_same == n_files)
		return 0;
	/* c replaced or removed some of d's files: a file id c has at another
	 * path is a rename and stays alive */
	if (!done) {
		MTM_TRY(exec_bind(s, "INSERT OR IGNORE INTO fold_files SELECT ?1, file_id FROM entry WHERE ckpt=?1 AND kind=1",
		                  c, 0, 0));
		MTM_TRY(exec_bind(s, "INSERT INTO fold_done VALUES(?1)", c, 0, 0));
	}
	return exec_bind(s, "INSERT OR IGNORE INTO fold_live SELECT e.file_id FROM entry e WHERE e.ckpt=?1 AND e.kind=1"
	                    " AND EXISTS (SELECT 1 FROM fold_files f WHERE f.ckpt=?2 AND f.file_id=e.file_id)",
	                 d, c, 0);
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
	int64_t n_files = 0;
	int err = kids.n ? query_int(s, "SELECT COUNT(*) FROM entry WHERE ckpt=?1 AND kind=1", d, 0, &n_files) : 0;
	for (size_t i = 0; i < kids.n && !err; i++) {
		int64_t c = ((int64_t *)kids.v)[2 * i], bc = ((int64_t *)kids.v)[2 * i + 1];
		/* a child that becomes a root needs no tombstones and no zero rows */
		err = exec_bind(s, parent ? "INSERT OR IGNORE INTO entry(" ENTRY_COLUMNS ") SELECT path, ?1, ?2, kind, mode,"
		                            " uid, gid, size, mtime_nsec, file_id, target, mtime_s, rdev, xattrs FROM entry"
		                            " WHERE ckpt=?3"
		                          : "INSERT OR IGNORE INTO entry(" ENTRY_COLUMNS ") SELECT path, ?1, ?2, kind, mode,"
		                            " uid, gid, size, mtime_nsec, file_id, target, mtime_s, rdev, xattrs FROM entry"
		                            " WHERE ckpt=?3 AND kind != 0",
		                bc, c, d);
		/* memory regions (FORMAT.md 3.10): their rows move like entries, and
		 * their blocks while the child still has the region's file id */
		if (!err)
			err = exec_bind(s, parent ? "INSERT OR IGNORE INTO region SELECT name, ?1, ?2, kind, size, file_id"
			                            " FROM region WHERE ckpt=?3"
			                          : "INSERT OR IGNORE INTO region SELECT name, ?1, ?2, kind, size, file_id"
			                            " FROM region WHERE ckpt=?3 AND kind != 0",
			                bc, c, d);
		if (!err)
			err = live_files(s, d, c, bc, n_files);
		if (!err)
			err = exec_bind(s, "INSERT OR IGNORE INTO fold_live SELECT r.file_id FROM region r"
			                   " JOIN region x ON x.name = r.name AND x.branch = ?2 AND x.ckpt = ?3"
			                   " WHERE r.ckpt = ?1 AND r.kind = 1 AND x.kind = 1 AND x.file_id = r.file_id",
			                d, bc, c);
		if (!err)
			err = exec_bind(s, parent ? "INSERT OR IGNORE INTO block SELECT b.file_id, b.blkno, ?1, ?2, b.hash, b.chunk,"
			                            " b.boff FROM block b WHERE b.ckpt=?3"
			                            " AND EXISTS (SELECT 1 FROM fold_live l WHERE l.file_id = b.file_id)"
			                          : "INSERT OR IGNORE INTO block SELECT b.file_id, b.blkno, ?1, ?2, b.hash, b.chunk,"
			                            " b.boff FROM block b WHERE b.ckpt=?3 AND b.chunk != 0"
			                            " AND EXISTS (SELECT 1 FROM fold_live l WHERE l.file_id = b.file_id)",
			                bc, c, d);
		if (!err && !parent)
			err = exec_bind(s, "DELETE FROM entry WHERE ckpt=?1 AND kind=0", c, 0, 0);
		if (!err && !parent)
			err = exec_bind(s, "DELETE FROM region WHERE ckpt=?1 AND kind=0", c, 0, 0);
		if (!err && !parent)
			err = exec_bind(s, "DELETE FROM block WHERE ckpt=?1 AND chunk=0", c, 0, 0);
		/* the first child inherits d's share of the packs, for du */
		if (!err)
			err = exec_bind(s, "UPDATE checkpoint SET parent=?1, bytes_stored=bytes_stored+?2 WHERE id=?3", parent,
			                i == 0 ? bytes : 0, c);
		if (!err)
			err = exec_bind(s, "INSERT OR REPLACE INTO ver_remap SELECT ?1, ?2 WHERE EXISTS"
			                   " (SELECT 1 FROM head_path WHERE id=?2)", d, c, 0);
	}
	vec_free(&kids);
	if (err)
		return err;
	MTM_TRY(exec_bind(s, "UPDATE branch SET fork=?1 WHERE fork=?2", parent, d, 0));
	/* d's rows were copied, not yet deleted: the chunks' used blocks are as
	 * before the prune (a chunk seen first here was untouched until now) */
	MTM_TRY(exec_bind(s, "INSERT INTO gc_candidate SELECT c.chunk, (SELECT COUNT(DISTINCT b.boff) FROM block b"
	                     " WHERE b.chunk = c.chunk) FROM (SELECT DISTINCT chunk FROM block WHERE ckpt=?1 AND chunk != 0) c"
	                     " WHERE NOT EXISTS (SELECT 1 FROM gc_candidate g WHERE g.id = c.chunk)",
	                  d, 0, 0));
	MTM_TRY(exec_bind(s, "DELETE FROM entry WHERE ckpt=?1", d, 0, 0));
	MTM_TRY(exec_bind(s, "DELETE FROM region WHERE ckpt=?1", d, 0, 0));
	MTM_TRY(exec_bind(s, "DELETE FROM block WHERE ckpt=?1", d, 0, 0));
	return exec_bind(s, "DELETE FROM checkpoint WHERE id=?1", d, 0, 0);
}

typedef struct { int64_t pack, dead; } pack_dead; /* dead bytes to add to a pack */

/* A chunk no row uses is deleted, its record counted dead in its pack. A
 * chunk whose rows now use fewer of its blocks stays; its pack's dead count
 * grows by those blocks' share of the record, which gc's compaction gives
 * back. */
int prune_free_chunks(mtm_store *s, mtm_prune_stats *stats)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db,
	                            "SELECT c.id, c.pack, 40 + c.clen, (c.plen + 4095) / 4096, g.live,"
	                            " (SELECT COUNT(DISTINCT b.boff) FROM block b WHERE b.chunk = g.id)"
	                            " FROM gc_candidate g JOIN chunk c ON c.id = g.id",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "prune");
	sqlite3_stmt *dead = NULL, *del = NULL;
	vec packs = VEC_INIT(pack_dead);
	int err = 0;
	if (sqlite3_prepare_v2(s->db, "UPDATE pack SET dead = dead + ?1 WHERE id = ?2", -1, &dead, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db, "DELETE FROM chunk WHERE id=?1", -1, &del, NULL) != SQLITE_OK)
		err = db_error(s, sqlite3_errcode(s->db), "prune");
	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0), pack = sqlite3_column_int64(st, 1), len = sqlite3_column_int64(st, 2);
		int64_t nblk = sqlite3_column_int64(st, 3), before = sqlite3_column_int64(st, 4), now = sqlite3_column_int64(st, 5);
		if (nblk <= 0 || now >= before)
			continue;
		/* the blocks that went out of use now: all the rest when none is
		 * left (summed per pack, written once per pack below) */
		int64_t add = len * ((before < nblk ? before : nblk) - now) / nblk;
		size_t i;
		for (i = 0; i < packs.n && VEC_AT(&packs, pack_dead, i).pack != pack; i++)
			;
		if (i == packs.n) {
			pack_dead *slot = vec_push(&packs);
			if (!slot) {
				err = mtm_set_error(ENOMEM, "prune");
				break;
			}
			slot->pack = pack;
		}
		VEC_AT(&packs, pack_dead, i).dead += add;
		if (now > 0)
			continue;
		sqlite3_reset(del);
		sqlite3_bind_int64(del, 1, id);
		if (sqlite3_step(del) != SQLITE_DONE) {
			err = db_error(s, sqlite3_errcode(s->db), "prune");
			break;
		}
		stats->chunks_freed++;
		stats->bytes_freed += (uint64_t)len;
	}
	for (size_t i = 0; !err && i < packs.n; i++) {
		sqlite3_reset(dead);
		sqlite3_bind_int64(dead, 1, VEC_AT(&packs, pack_dead, i).dead);
		sqlite3_bind_int64(dead, 2, VEC_AT(&packs, pack_dead, i).pack);
		if (sqlite3_step(dead) != SQLITE_DONE)
			err = db_error(s, sqlite3_errcode(s->db), "prune");
	}
	vec_free(&packs);
	sqlite3_finalize(dead);
	sqlite3_finalize(del);
	sqlite3_finalize(st);
	if (err)
		return err;
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "prune");
}

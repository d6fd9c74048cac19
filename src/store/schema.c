/* schema.c — the index schema, format version 10 (docs/FORMAT.md). */
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include "store/statblob.h"
#include "store/store.h"
#include "util/error.h"

/* Rows of `block` not yet merged into it (format 2, FORMAT.md 3.5.1): a
 * session's checkpoints append here, to a table that stays small, instead of
 * into the big block B-tree, where ~2 random leaf pages per changed block
 * would go through the WAL inside the checkpoint; the merge runs when the
 * session is idle or a writer takes the lock (index_settle). */
#define BLOCK_LOG_SQL \
	"CREATE TABLE block_log(file_id INTEGER NOT NULL, blkno INTEGER NOT NULL, branch INTEGER NOT NULL," \
	" ckpt INTEGER NOT NULL, hash INTEGER NOT NULL, chunk INTEGER NOT NULL, boff INTEGER NOT NULL," \
	" PRIMARY KEY(file_id, blkno, branch, ckpt)) WITHOUT ROWID;"

/* Rows of `entry` not yet merged into it (format 7, FORMAT.md 3.4.1): a
 * session's checkpoints append here, as their block rows go to block_log:
 * a touched path's row inserted into the big entry B-tree dirtied about a
 * random leaf page each (W2's 200 paths: 143 of the commit's ~200 WAL
 * frames). Same columns, in the same order, and key; entry_log_links
 * answers what entry_links does. */
#define ENTRY_LOG_SQL \
	"CREATE TABLE entry_log(path TEXT NOT NULL, branch INTEGER NOT NULL, ckpt INTEGER NOT NULL," \
	" kind INTEGER NOT NULL, mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL," \
	" size INTEGER NOT NULL, mtime_nsec INTEGER NOT NULL, file_id INTEGER NOT NULL, target BLOB," \
	" mtime_s INTEGER NOT NULL DEFAULT 0, rdev INTEGER NOT NULL DEFAULT 0, xattrs BLOB," \
	" PRIMARY KEY(path, branch, ckpt)) WITHOUT ROWID;" \
	"CREATE INDEX entry_log_links ON entry_log(target) WHERE kind = 8;"

/* Memory regions (format 3, FORMAT.md 3.10): versioned like entry, one row
 * per name per checkpoint that added, changed, resized or dropped the
 * region; the bytes are block rows under file_id, as for a file. A table of
 * their own, so that no query of the tree (restore, status, diff) can see a
 * region. */
#define REGION_SQL \
	"CREATE TABLE region(name TEXT NOT NULL, branch INTEGER NOT NULL, ckpt INTEGER NOT NULL," \
	" kind INTEGER NOT NULL, size INTEGER NOT NULL, file_id INTEGER NOT NULL," \
	" PRIMARY KEY(name, branch, ckpt)) WITHOUT ROWID;" \
	"CREATE INDEX region_by_ckpt ON region(ckpt);"

/* The other names of hard-linked files by their group's file (format 4):
 * a session's checkpoint, which looks at touched paths only, asks whether a
 * touched file had other names, to record the whole group afresh. */
#define ENTRY_LINKS_SQL "CREATE INDEX entry_links ON entry(target) WHERE kind = 8;"

/* A file version's block hashes as one blob (format 5, store/blockhash.h):
 * what a scan compares a changed file with, read as one row instead of a
 * row per block. A cache like statcache, not history. */
#define BLOCKHASH_SQL \
	"CREATE TABLE blockhash(file_id INTEGER PRIMARY KEY, ver INTEGER NOT NULL, hashes BLOB NOT NULL," \
	" chk INTEGER NOT NULL);"

/* A newer version of a file as its blocks that differ from the file's
 * blockhash row (format 10, FORMAT.md 3.11.1, store/blockhash.h): a
 * checkpoint that rewrote 1% of a big file's blocks writes ~1/8 of a row
 * here instead of the whole row again. A cache too. */
#define BLOCKHASH_DELTA_SQL \
	"CREATE TABLE blockhash_delta(file_id INTEGER PRIMARY KEY, ver INTEGER NOT NULL, base INTEGER NOT NULL," \
	" n INTEGER NOT NULL, pairs BLOB NOT NULL, chk INTEGER NOT NULL);"

/* The stat cache (format 8, FORMAT.md 3.9): a file's stat fields in one
 * BLOB (store/statblob.h), not nine columns: a scan reads every row, and
 * SQLite's cost of a row was about its number of columns. */
#define STATCACHE_SQL(name) \
	"CREATE TABLE " name "(path TEXT PRIMARY KEY, ver INTEGER NOT NULL, st BLOB NOT NULL) WITHOUT ROWID;"

static const char *schema_sql =
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
	/* checkpoints: parent 0 = none; branch = the chain the checkpoint extends */
	"CREATE TABLE checkpoint(id INTEGER PRIMARY KEY, parent INTEGER NOT NULL,"
	" branch INTEGER NOT NULL, time_ns INTEGER NOT NULL, message TEXT NOT NULL,"
	" files_added INTEGER NOT NULL, files_changed INTEGER NOT NULL, files_removed INTEGER NOT NULL,"
	" bytes_changed INTEGER NOT NULL, bytes_stored INTEGER NOT NULL, entries INTEGER NOT NULL,"
	" tree_bytes INTEGER NOT NULL, regions INTEGER NOT NULL DEFAULT 0, region_bytes INTEGER NOT NULL DEFAULT 0,"
	" region_bytes_changed INTEGER NOT NULL DEFAULT 0, tracked INTEGER, pause_ns INTEGER, root_mode INTEGER,"
	" root_uid INTEGER, root_gid INTEGER, root_mtime_s INTEGER, root_mtime_nsec INTEGER, root_xattrs BLOB);"
	"CREATE INDEX checkpoint_by_branch ON checkpoint(branch, id);"
	"CREATE INDEX checkpoint_by_parent ON checkpoint(parent);"
	/* a branch is a chain of checkpoints that forks from parent_branch after checkpoint fork */
	"CREATE TABLE branch(id INTEGER PRIMARY KEY, parent_branch INTEGER NOT NULL, fork INTEGER NOT NULL);"
	/* versioned namespace: the row visible at checkpoint k for a path is the one with the
	 * greatest ckpt among k's ancestors (k included); kind 0 records a removal */
	/* (format 4's columns last: the order an older store has once upgraded) */
	"CREATE TABLE entry(path TEXT NOT NULL, branch INTEGER NOT NULL, ckpt INTEGER NOT NULL,"
	" kind INTEGER NOT NULL, mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,"
	" size INTEGER NOT NULL, mtime_nsec INTEGER NOT NULL, file_id INTEGER NOT NULL, target BLOB,"
	" mtime_s INTEGER NOT NULL DEFAULT 0, rdev INTEGER NOT NULL DEFAULT 0, xattrs BLOB,"
	" PRIMARY KEY(path, branch, ckpt)) WITHOUT ROWID;"
	/* versioned block maps, same visibility rule; chunk 0 = a hole (zeros) */
	"CREATE TABLE block(file_id INTEGER NOT NULL, blkno INTEGER NOT NULL, branch INTEGER NOT NULL,"
	" ckpt INTEGER NOT NULL, hash INTEGER NOT NULL, chunk INTEGER NOT NULL, boff INTEGER NOT NULL,"
	" PRIMARY KEY(file_id, blkno, branch, ckpt)) WITHOUT ROWID;"
	BLOCK_LOG_SQL
	ENTRY_LOG_SQL
	REGION_SQL
	"CREATE TABLE chunk(id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, pack INTEGER NOT NULL,"
	" off INTEGER NOT NULL, clen INTEGER NOT NULL, plen INTEGER NOT NULL, codec INTEGER NOT NULL);"
	/* size: committed length; dead: bytes of records no checkpoint uses (gc rewrites the pack
	 * when dead/size passes a threshold) */
	"CREATE TABLE pack(id INTEGER PRIMARY KEY, size INTEGER NOT NULL, dead INTEGER NOT NULL DEFAULT 0);"
	/* prune works on the rows of the checkpoints it drops, gc on the chunks they used:
	 * these indexes keep both proportional to what is dropped, not to the store */
	"CREATE INDEX entry_by_ckpt ON entry(ckpt);"
	ENTRY_LINKS_SQL
	"CREATE INDEX block_by_ckpt ON block(ckpt);"
	"CREATE INDEX block_by_chunk ON block(chunk);"
	"CREATE INDEX chunk_by_pack ON chunk(pack, off);"
	/* names that pin checkpoints against prune */
	"CREATE TABLE tag(name TEXT PRIMARY KEY, ckpt INTEGER NOT NULL) WITHOUT ROWID;"
	/* live-tree stat of files known identical to entry version ver (not history) */
	STATCACHE_SQL("statcache")
	BLOCKHASH_SQL
	BLOCKHASH_DELTA_SQL;

int schema_create(mtm_store *s)
{
	char sql[256];
	/* incremental auto-vacuum: prune gives freed index pages back to the file system */
	MTM_TRY(db_exec(s, "PRAGMA auto_vacuum=INCREMENTAL"));
	MTM_TRY(db_exec(s, "BEGIN"));
	snprintf(sql, sizeof sql,
	         "PRAGMA application_id=%d; PRAGMA user_version=%d;"
	         "INSERT INTO meta VALUES('format',%d),('head',0),('next_id',1),('next_file_id',1);",
	         MTM_APPLICATION_ID, MTM_FORMAT_VERSION, MTM_FORMAT_VERSION);
	int rc = db_exec(s, schema_sql);
	if (!rc)
		rc = db_exec(s, sql);
	if (!rc)
		rc = db_exec(s, "COMMIT");
	if (rc) /* never leave the transaction open on the handle */
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int pragma_int(mtm_store *s, const char *sql, int64_t *out)
{
	return db_int(s, "index", sql, NULL, 0, out, NULL);
}

/* Each step takes a store of version v to v + 1 in place, in the same
 * transaction as the new user_version, by whoever opens it first:
 *  1 -> 2: block_log (an empty log means what format 1 meant);
 *  2 -> 3: the region table and the checkpoint's three region statistics
 *          (no regions: every older checkpoint holds none);
 *  3 -> 4: times as seconds and nanoseconds (a signed 64-bit count of
 *          nanoseconds ends in 2262), device numbers, extended attributes
 *          and the hard-link index; older rows take rdev 0 and no xattrs,
 *          and mtime_ns splits into mtime_s and mtime_nsec (floor division:
 *          nanoseconds stay in [0, 1e9) before 1970 too). Unchanged files
 *          are not read again while the stat cache knows them: it is
 *          emptied, so that the next checkpoint reads every file's
 *          attributes once;
 *  4 -> 5: the blockhash table, empty (each file's first scan after the
 *          upgrade reads its rows of `block`, as before, and fills it);
 *  5 -> 6: the checkpoint's tracked flag and pause, NULL in older rows:
 *          unknown, which is not the same as "scanned, no pause";
 *  6 -> 7: entry_log (an empty log means what format 6 meant);
 *  7 -> 8: statcache's nine stat columns become one BLOB, st (every row
 *          kept: mtm_statblob, below, packs them);
 *  8 -> 9: the checkpoint's root_mode, NULL in older rows: not recorded
 *          (a restore leaves the root's mode as it is);
 *  9 -> 10: blockhash_delta, empty (every blockhash row is still a whole
 *          row, as format 9 wrote them);
 * 10 -> 11: the root's owner, mtime and extended attributes, NULL in
 *          older rows: not recorded (a restore leaves them as they are). */
static const char *const upgrade_sql[] = {
	[1] = BLOCK_LOG_SQL,
	[2] = REGION_SQL "ALTER TABLE checkpoint ADD COLUMN regions INTEGER NOT NULL DEFAULT 0;"
	      "ALTER TABLE checkpoint ADD COLUMN region_bytes INTEGER NOT NULL DEFAULT 0;"
	      "ALTER TABLE checkpoint ADD COLUMN region_bytes_changed INTEGER NOT NULL DEFAULT 0;",
	[3] = "ALTER TABLE entry ADD COLUMN mtime_s INTEGER NOT NULL DEFAULT 0;"
	      "ALTER TABLE entry ADD COLUMN rdev INTEGER NOT NULL DEFAULT 0;"
	      "ALTER TABLE entry ADD COLUMN xattrs BLOB;"
	      "UPDATE entry SET mtime_s = (mtime_ns - ((mtime_ns % 1000000000) + 1000000000) % 1000000000) / 1000000000,"
	      " mtime_ns = ((mtime_ns % 1000000000) + 1000000000) % 1000000000;"
	      "ALTER TABLE entry RENAME COLUMN mtime_ns TO mtime_nsec;" ENTRY_LINKS_SQL "DELETE FROM statcache;",
	[4] = BLOCKHASH_SQL,
	[5] = "ALTER TABLE checkpoint ADD COLUMN tracked INTEGER;"
	      "ALTER TABLE checkpoint ADD COLUMN pause_ns INTEGER;",
	[6] = ENTRY_LOG_SQL,
	[7] = STATCACHE_SQL("statcache8")
	      "INSERT INTO statcache8 SELECT path, ver, mtm_statblob(size, mtime_ns, ctime_ns, ino, dev, mode, uid, gid, racy)"
	      " FROM statcache;"
	      "DROP TABLE statcache; ALTER TABLE statcache8 RENAME TO statcache;",
	[8] = "ALTER TABLE checkpoint ADD COLUMN root_mode INTEGER;",
	[9] = BLOCKHASH_DELTA_SQL,
	[10] = "ALTER TABLE checkpoint ADD COLUMN root_uid INTEGER; ALTER TABLE checkpoint ADD COLUMN root_gid INTEGER;"
	       "ALTER TABLE checkpoint ADD COLUMN root_mtime_s INTEGER; ALTER TABLE checkpoint ADD COLUMN root_mtime_nsec INTEGER;"
	       "ALTER TABLE checkpoint ADD COLUMN root_xattrs BLOB;",
};

/* mtm_statblob(size, mtime_ns, ctime_ns, ino, dev, mode, uid, gid, racy):
 * a format 7 row's stat columns as format 8's st (the 7 -> 8 step). */
static void sql_statblob(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
	int64_t f[STATBLOB_FIELDS];
	unsigned char b[STATBLOB_MAX];
	for (int i = 0; i < STATBLOB_FIELDS && i < argc; i++)
		f[i] = sqlite3_value_int64(argv[i]);
	f[8] = !!f[8];
	sqlite3_result_blob(cx, b, (int)statblob_pack(b, f), SQLITE_TRANSIENT);
}

_Static_assert(sizeof upgrade_sql / sizeof upgrade_sql[0] == MTM_FORMAT_VERSION, "one upgrade step per older version");

static int upgrade(mtm_store *s)
{
	int frc = sqlite3_create_function(s->db, "mtm_statblob", STATBLOB_FIELDS, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
	                                  sql_statblob, NULL, NULL);
	if (frc != SQLITE_OK)
		return db_error(s, frc, "index");
	MTM_TRY(db_exec(s, "BEGIN IMMEDIATE"));
	int64_t ver;
	int rc = pragma_int(s, "PRAGMA user_version", &ver);
	/* (another opener may have upgraded it between our check and the lock) */
	for (; !rc && ver >= 1 && ver < MTM_FORMAT_VERSION; ver++) {
		char sql[64];
		snprintf(sql, sizeof sql, "PRAGMA user_version=%d", (int)ver + 1);
		rc = db_exec(s, upgrade_sql[ver]);
		if (!rc)
			rc = db_exec(s, sql);
	}
	if (!rc)
		return db_exec(s, "COMMIT");
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* A store of an older format that cannot be written (read-only media, a
 * snapshot, a full disk, another user's): the readers read a private copy
 * of its index, upgraded (SQLite's temporary database, in $TMPDIR or
 * SQLITE_TMPDIR, deleted when closed). The store is never written: nothing
 * is half upgraded, and lock.c refuses every writer (s->readonly stays). */
static int upgrade_copy(mtm_store *s, int64_t ver)
{
	sqlite3 *copy = NULL;
	int rc = sqlite3_open_v2("", &copy, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	sqlite3_backup *b = rc == SQLITE_OK ? sqlite3_backup_init(copy, "main", s->db, "main") : NULL;
	if (b) {
		rc = sqlite3_backup_step(b, -1);
		int frc = sqlite3_backup_finish(b);
		rc = rc == SQLITE_DONE ? frc : rc;
	} else if (rc == SQLITE_OK) {
		rc = sqlite3_errcode(copy);
	}
	if (rc != SQLITE_OK) {
		rc = mtm_set_error(MTM_EINDEX, "%s/.metamori: store format %lld must be upgraded and the store cannot be "
		                   "written (%s): reading an upgraded copy of its index failed: %s", s->root, (long long)ver,
		                   strerror(s->readonly), copy ? sqlite3_errmsg(copy) : sqlite3_errstr(rc));
		sqlite3_close(copy);
		return rc;
	}
	assert(!s->n_cached); /* (no statement of the store's own handle survives it) */
	sqlite3_close(s->db);
	s->db = copy;
	sqlite3_extended_result_codes(s->db, 1);
	db_exec(s, "PRAGMA cache_size=-32768");
	if ((rc = upgrade(s)))
		return mtm_set_error(rc, "%s/.metamori: store format %lld must be upgraded and the store cannot be written "
		                     "(%s): upgrading a copy of its index failed: %s", s->root, (long long)ver,
		                     strerror(s->readonly), mtm_last_error());
	return 0;
}

int schema_check(mtm_store *s)
{
	int64_t app, ver;
	MTM_TRY(pragma_int(s, "PRAGMA application_id", &app));
	if (app != MTM_APPLICATION_ID)
		return mtm_set_error(MTM_EFOREIGN, "%s/.metamori/index.db: not a metamori index", s->root);
	MTM_TRY(pragma_int(s, "PRAGMA user_version", &ver));
	if (ver > MTM_FORMAT_VERSION)
		return mtm_set_error(MTM_ENEWER, "%s/.metamori: store format %lld is newer than this metamori (reads %d)",
		                     s->root, (long long)ver, MTM_FORMAT_VERSION);
	if (ver < 1)
		return mtm_set_error(MTM_ECORRUPT, "%s/.metamori/index.db: no format version", s->root);
	if (ver < MTM_FORMAT_VERSION && s->readonly)
		return upgrade_copy(s, ver);
	if (ver < MTM_FORMAT_VERSION)
		return upgrade(s);
	return 0;
}

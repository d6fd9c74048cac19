/*
 * mirror_rows.c — the index part of an incremental push (issue 19): instead
 * of a copy of the whole index on every push, the rows the store added
 * since the mirror's last push, inserted into the mirror's own index.db.
 *
 * Checkpoint ids only grow, and a checkpoint's rows (checkpoint, entry,
 * entry_log, block, block_log, region) carry its id; chunk ids only grow too. So what
 * the store added since the mirror's newest checkpoint M and newest chunk C
 * is the rows past M and C. Only prune and gc change or delete older rows,
 * and each leaves a trace the mirror can see: prune deletes checkpoints (the
 * store has fewer at or below M, or other times), gc deletes the packs it
 * rewrote (a pack of the mirror's the store no longer has). Then, and when
 * the mirror's index has another schema, the caller copies the index whole.
 * The small tables that are updated in place (meta, branch, pack, tag) are
 * replaced whole; the caches (statcache, blockhash, blockhash_delta: "any row may be deleted
 * at any time") are emptied, as they describe the store's tree.
 *
 * Crash safety: one SQLite transaction on the mirror's index (WAL,
 * synchronous=FULL), committed after the packs it names are copied and
 * fsynced: killed before the commit, the mirror reads as before.
 * A block_log (entry_log) row the store merged into block (entry) since
 * (index_settle) stays in the mirror's block_log (entry_log): the two are
 * read as one.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "io/io.h"
#include "store/mirror_rows.h"
#include "util/error.h"

/* every table of the schema (store/schema.c); another means another format */
static const char *const history[] = {"checkpoint", "entry", "entry_log", "block", "block_log", "region"};
#define KNOWN_TABLES "'meta','checkpoint','branch','entry','entry_log','block','block_log','region','chunk','pack','tag'," \
	"'statcache','blockhash','blockhash_delta'"

static int rows_error(mirror_rows *m, const char *mdir, const char *what)
{
	return mtm_set_error(MTM_EINDEX, "push: %s/index.db: %s: %s", mdir, what, sqlite3_errmsg(m->db));
}

static int query_int(sqlite3 *db, const char *sql, int64_t a, int64_t b, int64_t *out)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, a);
	sqlite3_bind_int64(st, 2, b);
	int rc = sqlite3_step(st) == SQLITE_ROW ? 0 : -1;
	if (!rc)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc;
}

static int exec_bound(mirror_rows *m, const char *sql, int64_t a, int64_t b)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(m->db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, a);
	sqlite3_bind_int64(st, 2, b);
	int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	sqlite3_finalize(st);
	if (!rc)
		m->rows += (uint64_t)sqlite3_changes(m->db);
	return rc;
}

/* 1 when the mirror's index has the store's schema, 0 if not. */
static int same_schema(sqlite3 *db)
{
	int64_t differ = 1;
	query_int(db,
	          "SELECT (SELECT group_concat(sql, ';') FROM (SELECT sql FROM main.sqlite_master ORDER BY name)) IS NOT "
	          "(SELECT group_concat(sql, ';') FROM (SELECT sql FROM src.sqlite_master ORDER BY name))"
	          " OR (SELECT count(*) FROM src.sqlite_master WHERE type='table' AND name NOT IN (" KNOWN_TABLES "))",
	          0, 0, &differ);
	return !differ;
}

/* 1 when prune or gc changed rows the mirror holds (m: its newest
 * checkpoint, c: its newest chunk). */
static int rewritten(sqlite3 *db, int64_t m, int64_t c)
{
	int64_t r = 1;
	query_int(db,
	          "SELECT (SELECT count(*) FROM src.checkpoint WHERE id <= ?1) != (SELECT count(*) FROM main.checkpoint)"
	          " OR (SELECT total(time_ns) FROM src.checkpoint WHERE id <= ?1) != (SELECT total(time_ns) FROM "
	          "main.checkpoint)"
	          " OR (SELECT count(*) FROM src.chunk WHERE id <= ?2) != (SELECT count(*) FROM main.chunk)"
	          " OR EXISTS(SELECT 1 FROM main.pack p LEFT JOIN src.pack q ON q.id = p.id WHERE q.id IS NULL"
	          " OR q.size < p.size)",
	          m, c, &r);
	return r != 0;
}

static int copy_rows(mirror_rows *m, int64_t last, int64_t last_chunk)
{
	static const char *const replaced[] = {"meta", "branch", "pack", "tag"};
	char sql[160];
	int rc = 0;
	for (size_t i = 0; !rc && i < sizeof replaced / sizeof replaced[0]; i++) {
		snprintf(sql, sizeof sql, "DELETE FROM main.%s; INSERT INTO main.%s SELECT * FROM src.%s", replaced[i],
		         replaced[i], replaced[i]);
		rc = sqlite3_exec(m->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
	}
	if (!rc)
		rc = sqlite3_exec(m->db, "DELETE FROM main.statcache; DELETE FROM main.blockhash;"
		                               " DELETE FROM main.blockhash_delta", NULL, NULL, NULL) ==
		             SQLITE_OK ? 0 : -1;
	for (size_t i = 0; !rc && i < sizeof history / sizeof history[0]; i++) {
		snprintf(sql, sizeof sql, "INSERT INTO main.%s SELECT * FROM src.%s WHERE %s > ?1", history[i], history[i],
		         i ? "ckpt" : "id");
		rc = exec_bound(m, sql, last, 0);
	}
	if (!rc)
		rc = exec_bound(m, "INSERT INTO main.chunk SELECT * FROM src.chunk WHERE id > ?2", last, last_chunk);
	return rc;
}

int mirror_rows_begin(mtm_store *s, int mfd, const char *mdir, mirror_rows *m, int *whole)
{
	memset(m, 0, sizeof *m);
	*whole = MTM_PUSH_WHOLE_NEW;
	struct stat sb;
	if (fstatat(mfd, "index.db", &sb, AT_SYMLINK_NOFOLLOW))
		return errno == ENOENT ? 0 : mtm_set_errno(errno, "push: %s/index.db", mdir);
	char path[PATH_MAX + 32], src[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/index.db", mdir);
	snprintf(src, sizeof src, "%s/.metamori/index.db", s->root);
	int rc = sqlite3_open_v2(path, &m->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, io_sqlite_vfs());
	if (rc != SQLITE_OK) {
		rc = mtm_set_error(MTM_EINDEX, "push: %s: %s", path, m->db ? sqlite3_errmsg(m->db) : sqlite3_errstr(rc));
		mirror_rows_abort(m);
		return rc;
	}
	sqlite3_busy_timeout(m->db, 5000);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(m->db, "ATTACH ?1 AS src", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, src, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
	}
	/* the mirror's committed rows all in index.db: a whole copy may then
	 * drop its WAL before renaming over it */
	if (rc != SQLITE_DONE ||
	    sqlite3_exec(m->db, "PRAGMA main.synchronous=FULL; PRAGMA main.wal_checkpoint(TRUNCATE)", NULL, NULL, NULL)) {
		rc = rows_error(m, mdir, "opening");
		mirror_rows_abort(m);
		return rc;
	}
	/* one write transaction on the mirror, one read snapshot of the store */
	if (sqlite3_exec(m->db, "BEGIN", NULL, NULL, NULL)) {
		rc = rows_error(m, mdir, "locking");
		mirror_rows_abort(m);
		return rc;
	}
	int64_t last = 0, last_chunk = 0;
	if (!same_schema(m->db))
		*whole = MTM_PUSH_WHOLE_SCHEMA;
	else if (query_int(m->db, "SELECT coalesce(max(id), 0) FROM main.checkpoint", 0, 0, &last) ||
	         query_int(m->db, "SELECT coalesce(max(id), 0) FROM main.chunk", 0, 0, &last_chunk) ||
	         rewritten(m->db, last, last_chunk))
		*whole = MTM_PUSH_WHOLE_REWRITTEN;
	else if (copy_rows(m, last, last_chunk)) {
		rc = rows_error(m, mdir, "adding the new rows");
		mirror_rows_abort(m);
		return rc;
	} else
		*whole = 0;
	if (*whole)
		mirror_rows_abort(m);
	return 0;
}

int mirror_rows_commit(mirror_rows *m, const char *mdir)
{
	assert(m->db);
	int rc = 0;
	if (sqlite3_exec(m->db, "COMMIT", NULL, NULL, NULL) ||
	    sqlite3_exec(m->db, "PRAGMA main.wal_checkpoint(TRUNCATE)", NULL, NULL, NULL))
		rc = rows_error(m, mdir, "committing");
	mirror_rows_abort(m);
	return rc;
}

void mirror_rows_abort(mirror_rows *m)
{
	if (m->db) {
		sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close_v2(m->db);
	}
	m->db = NULL;
}

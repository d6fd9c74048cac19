/*
 * store.c — the small helpers over a store's index that every part of the
 * store uses: errors, one-shot statements, the meta table, the branch
 * table, the head. (Opening and closing a store is open.c's, the writer
 * lock lock.c's, the restore intent intent.c's.)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "store/store.h"
#include "util/error.h"

const char *mtm_version(void) { return METAMORI_VERSION; }

int db_error(mtm_store *s, int rc, const char *what)
{
	int prim = rc & 0xff;
	const char *msg = s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
	if (prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB)
		return mtm_set_error(MTM_ECORRUPT, "%s: index is damaged: %s", what, msg);
	if (prim == SQLITE_FULL)
		return mtm_set_error(ENOSPC, "%s: %s", what, msg);
	if (prim == SQLITE_IOERR)
		return mtm_set_error(EIO, "%s: index I/O error: %s", what, msg);
	if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED)
		return mtm_set_error(MTM_EBUSY, "%s: %s", what, msg);
	return mtm_set_error(MTM_EINDEX, "%s: %s", what, msg);
}

int db_exec(mtm_store *s, const char *sql)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : db_error(s, rc, "index");
}

/* prepare, bind and step once: the shared part of db_run and db_int */
static int db_step_once(mtm_store *s, const char *sql, const int64_t *args, int n, sqlite3_stmt **st)
{
	int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	int params = sqlite3_bind_parameter_count(*st);
	for (int i = 0; i < n && i < params; i++)
		sqlite3_bind_int64(*st, i + 1, args[i]);
	return sqlite3_step(*st);
}

int db_cached(mtm_store *s, const void *key, const char *sql, sqlite3_stmt **out)
{
	for (int i = 0; i < s->n_cached; i++)
		if (s->cached[i].key == key) {
			*out = s->cached[i].st;
			sqlite3_reset(*out);
			return 0;
		}
	*out = NULL;
	if (s->n_cached == (int)(sizeof s->cached / sizeof s->cached[0]))
		return mtm_set_error(MTM_EINVAL, "index: too many cached statements"); /* (a bug: more call sites) */
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	s->cached[s->n_cached].key = key;
	s->cached[s->n_cached++].st = st;
	*out = st;
	return 0;
}

int db_exec_cached(mtm_store *s, const char *sql)
{
	sqlite3_stmt *st;
	MTM_TRY(db_cached(s, sql, sql, &st));
	int rc = sqlite3_step(st);
	sqlite3_reset(st); /* (not left active: a COMMIT or ROLLBACK may follow) */
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_error(s, rc, "index");
}

int db_run(mtm_store *s, const char *what, const char *sql, const int64_t *args, int n)
{
	sqlite3_stmt *st = NULL;
	int rc = db_step_once(s, sql, args, n, &st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, what);
}

int db_int(mtm_store *s, const char *what, const char *sql, const int64_t *args, int n, int64_t *out, int *found)
{
	sqlite3_stmt *st = NULL;
	int rc = db_step_once(s, sql, args, n, &st);
	*out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	if (found)
		*found = rc == SQLITE_ROW;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(s, rc, what);
}

static const char meta_get_sql[] = "SELECT value FROM meta WHERE key=?";
static const char meta_set_sql[] = "INSERT OR REPLACE INTO meta VALUES(?,?)";

int meta_get_int(mtm_store *s, const char *key, int64_t *out)
{
	sqlite3_stmt *st;
	MTM_TRY(db_cached(s, meta_get_sql, meta_get_sql, &st));
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return mtm_set_error(MTM_ECORRUPT, "index: meta key '%s' is missing", key);
	return rc == SQLITE_ROW ? 0 : db_error(s, rc, "index");
}

int meta_set_int(mtm_store *s, const char *key, int64_t v)
{
	sqlite3_stmt *st;
	MTM_TRY(db_cached(s, meta_set_sql, meta_set_sql, &st));
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, v);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

int store_load_branches(mtm_store *s)
{
	static const char sql[] = "SELECT id, parent_branch, fork FROM branch ORDER BY id";
	sqlite3_stmt *st;
	MTM_TRY(db_cached(s, sql, sql, &st));
	int rc;
	free(s->branches);
	s->branches = NULL;
	s->n_branches = 0;
	int64_t cap = 0, prev = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		int64_t parent = sqlite3_column_int64(st, 1);
		/* a branch's parent always has a smaller id; anything else is damage
		 * (and would make lineage walks loop). Branch ids are 1, 2, ... with
		 * no gaps (rows are never deleted): a gap is damage, and would make a
		 * lying id cost an allocation of its size. */
		if (id != prev + 1 || parent < 0 || parent >= id) {
			sqlite3_reset(st);
			return mtm_set_error(MTM_ECORRUPT, "index: branch %lld is damaged", (long long)id);
		}
		if (id >= cap) {
			int64_t ncap = cap ? cap * 2 : 64;
			while (ncap <= id)
				ncap *= 2;
			struct mtm_branch *b = realloc(s->branches, (size_t)ncap * sizeof *b);
			if (!b) {
				sqlite3_reset(st);
				return mtm_set_error(ENOMEM, "index: loading branches");
			}
			memset(b + cap, 0, (size_t)(ncap - cap) * sizeof *b);
			s->branches = b;
			cap = ncap;
		}
		prev = id;
		s->branches[id].parent = parent;
		s->branches[id].fork = sqlite3_column_int64(st, 2);
		if (id + 1 > s->n_branches)
			s->n_branches = id + 1;
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

const char *mtm_root(const mtm_store *s) { return s ? s->root : NULL; }

void mtm_set_progress(mtm_store *s, mtm_progress_fn fn, void *arg)
{
	if (!s)
		return;
	s->progress = fn;
	s->progress_arg = arg;
}

int mtm_head(mtm_store *s, mtm_id *out)
{
	MTM_NEED(s, "head");
	MTM_NEED(out, "head");
	return meta_get_int(s, "head", out);
}

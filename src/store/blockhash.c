/* blockhash.c — see blockhash.h. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "store/blockhash.h"
#include "util/error.h"
#include "util/xxh.h"

/* The row's check: XXH3-64 of the blob, seeded with the XXH3-64 of the
 * key and version (16 bytes, LE), so that a flipped byte anywhere in the
 * row, or a row moved to another file or version, is not believed. */
static int64_t row_check(int64_t file_id, int64_t ver, const void *blob, size_t len)
{
	uint64_t key[2] = {htole64((uint64_t)file_id), htole64((uint64_t)ver)};
	return (int64_t)XXH3_64bits_withSeed(blob, len, XXH3_64bits(key, sizeof key));
}

static int prepare(mtm_store *s, sqlite3_stmt **st, const char *sql)
{
	int rc = *st ? SQLITE_OK : sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_reset(*st);
	return 0;
}

int blockhash_get(mtm_store *s, blockhash_stmts *q, int64_t file_id, int64_t ver, uint64_t **hashes, int64_t *n,
                  int *found)
{
	*hashes = NULL;
	*n = 0;
	*found = 0;
	MTM_TRY(prepare(s, &q->get, "SELECT ver, hashes, chk FROM blockhash WHERE file_id=?"));
	sqlite3_bind_int64(q->get, 1, file_id);
	int rc = sqlite3_step(q->get);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(q->get);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		sqlite3_reset(q->get);
		return db_error(s, rc, "index");
	}
	const void *blob = sqlite3_column_blob(q->get, 1);
	size_t len = (size_t)sqlite3_column_bytes(q->get, 1);
	int err = 0;
	/* a row for another version, or damaged: the rows of `block` say it */
	if (sqlite3_column_int64(q->get, 0) == ver && blob && len % 8 == 0 &&
	    len / 8 <= (size_t)BLOCKHASH_MAX_BLOCKS && sqlite3_column_int64(q->get, 2) == row_check(file_id, ver, blob, len)) {
		uint64_t *h = malloc(len ? len : 1);
		if (!h) {
			err = mtm_set_error(ENOMEM, "index");
		} else {
			memcpy(h, blob, len);
			for (size_t i = 0; i < len / 8; i++)
				h[i] = le64toh(h[i]);
			*hashes = h;
			*n = (int64_t)(len / 8);
			*found = 1;
		}
	}
	sqlite3_reset(q->get);
	return err;
}

int blockhash_put(mtm_store *s, blockhash_stmts *q, int64_t file_id, int64_t ver, const uint64_t *hashes, int64_t n)
{
	if (n < 0 || n > BLOCKHASH_MAX_BLOCKS)
		return blockhash_del(s, q, file_id);
	size_t len = (size_t)n * 8;
	uint64_t *le = malloc(len ? len : 1);
	if (!le)
		return mtm_set_error(ENOMEM, "index");
	for (int64_t i = 0; i < n; i++)
		le[i] = htole64(hashes[i]);
	int rc = prepare(s, &q->put, "INSERT OR REPLACE INTO blockhash(file_id, ver, hashes, chk) VALUES(?,?,?,?)");
	if (!rc) {
		sqlite3_bind_int64(q->put, 1, file_id);
		sqlite3_bind_int64(q->put, 2, ver);
		sqlite3_bind_blob(q->put, 3, le, (int)len, SQLITE_STATIC);
		sqlite3_bind_int64(q->put, 4, row_check(file_id, ver, le, len));
		int st = sqlite3_step(q->put);
		sqlite3_reset(q->put);
		if (st != SQLITE_DONE)
			rc = db_error(s, st, "index");
	}
	free(le);
	return rc;
}

int blockhash_del(mtm_store *s, blockhash_stmts *q, int64_t file_id)
{
	MTM_TRY(prepare(s, &q->del, "DELETE FROM blockhash WHERE file_id=?"));
	sqlite3_bind_int64(q->del, 1, file_id);
	int rc = sqlite3_step(q->del);
	sqlite3_reset(q->del);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

void blockhash_stmts_free(blockhash_stmts *q)
{
	sqlite3_finalize(q->get);
	sqlite3_finalize(q->put);
	sqlite3_finalize(q->del);
	memset(q, 0, sizeof *q);
}

/* blockhash.c — see blockhash.h. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "store/blockhash.h"
#include "store/index.h"
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

/* A delta row's check: the same over its pairs, seeded with its file id,
 * version, base version and length (32 bytes, LE). */
static int64_t delta_check(int64_t file_id, int64_t ver, int64_t base, int64_t n, const void *blob, size_t len)
{
	uint64_t key[4] = {htole64((uint64_t)file_id), htole64((uint64_t)ver), htole64((uint64_t)base),
	                   htole64((uint64_t)n)};
	return (int64_t)XXH3_64bits_withSeed(blob, len, XXH3_64bits(key, sizeof key));
}

#define PAIR_BYTES 12 /* blkno u32 LE, hash u64 LE */

static int prepare(mtm_store *s, sqlite3_stmt **st, const char *sql)
{
	int rc = *st ? SQLITE_OK : sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_reset(*st);
	return 0;
}

static int step_done(mtm_store *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

/* base's hashes as version ver's, from file_id's delta row: 1 when the row
 * is there, for ver against base's version, and checks; *out malloc'ed. */
static int read_delta(mtm_store *s, blockhash_stmts *q, int64_t file_id, int64_t ver, const blockhash_base *base,
                      uint64_t **out, int64_t *nout, int *found)
{
	MTM_TRY(prepare(s, &q->dget, "SELECT ver, base, n, pairs, chk FROM blockhash_delta WHERE file_id=?"));
	sqlite3_bind_int64(q->dget, 1, file_id);
	int rc = sqlite3_step(q->dget);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(q->dget);
		return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
	}
	int64_t n = sqlite3_column_int64(q->dget, 2);
	const unsigned char *p = sqlite3_column_blob(q->dget, 3);
	size_t len = (size_t)sqlite3_column_bytes(q->dget, 3);
	int err = 0;
	if (sqlite3_column_int64(q->dget, 0) == ver && sqlite3_column_int64(q->dget, 1) == base->ver && n >= 0 &&
	    n <= BLOCKHASH_MAX_BLOCKS && len % PAIR_BYTES == 0 && (p || !len) &&
	    sqlite3_column_int64(q->dget, 4) == delta_check(file_id, ver, base->ver, n, p, len)) {
		uint64_t *h = malloc((size_t)(n ? n : 1) * sizeof *h);
		if (!h) {
			err = mtm_set_error(ENOMEM, "index");
		} else {
			uint64_t zh = zero_block_hash();
			int64_t keep = base->n < n ? base->n : n;
			memcpy(h, base->h, (size_t)keep * sizeof *h);
			for (int64_t b = keep; b < n; b++)
				h[b] = zh;
			/* pairs in ascending block order, each inside the version */
			int64_t prev = -1;
			for (size_t i = 0; i < len / PAIR_BYTES && h; i++, p += PAIR_BYTES) {
				uint32_t b;
				uint64_t v;
				memcpy(&b, p, 4);
				memcpy(&v, p + 4, 8);
				b = le32toh(b);
				if ((int64_t)b <= prev || (int64_t)b >= n) {
					free(h);
					h = NULL;
				} else {
					h[b] = le64toh(v);
					prev = b;
				}
			}
			if (h) {
				*out = h;
				*nout = n;
				*found = 1;
			}
		}
	}
	sqlite3_reset(q->dget);
	return err;
}

int blockhash_get(mtm_store *s, blockhash_stmts *q, int64_t file_id, int64_t ver, uint64_t **hashes, int64_t *n,
                  int *found, blockhash_base *base)
{
	blockhash_base row = {0};
	*hashes = NULL;
	*n = 0;
	*found = 0;
	if (base)
		*base = row;
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
	int64_t rver = sqlite3_column_int64(q->get, 0);
	int err = 0;
	/* damaged: the rows of `block` say it */
	if (rver > 0 && blob && len % 8 == 0 && len / 8 <= (size_t)BLOCKHASH_MAX_BLOCKS &&
	    sqlite3_column_int64(q->get, 2) == row_check(file_id, rver, blob, len)) {
		uint64_t *h = malloc(len ? len : 1);
		if (!h) {
			err = mtm_set_error(ENOMEM, "index");
		} else {
			memcpy(h, blob, len);
			for (size_t i = 0; i < len / 8; i++)
				h[i] = le64toh(h[i]);
			row = (blockhash_base){rver, h, (int64_t)(len / 8)};
		}
	}
	sqlite3_reset(q->get);
	if (!err && row.ver == ver) {
		/* the row itself: the caller's copy, and the base's */
		if (!(*hashes = malloc(row.n ? (size_t)row.n * 8 : 1))) {
			err = mtm_set_error(ENOMEM, "index");
		} else {
			memcpy(*hashes, row.h, (size_t)row.n * 8);
			*n = row.n;
			*found = 1;
		}
	} else if (!err && row.ver) {
		/* a row for another version: version ver may be a delta against it */
		err = read_delta(s, q, file_id, ver, &row, hashes, n, found);
	}
	if (base && !err)
		*base = row;
	else
		free(row.h);
	return err;
}

/* hashes as differences from base (12 bytes each, LE), when they take at
 * most 1/BLOCKHASH_DELTA_DIV of the whole row: *out malloc'ed (NULL: write
 * the whole row). */
static int make_delta(const uint64_t *hashes, int64_t n, const blockhash_base *base, unsigned char **out,
                      size_t *len)
{
	uint64_t zh = zero_block_hash();
	size_t most = (size_t)n * 8 / BLOCKHASH_DELTA_DIV / PAIR_BYTES, k = 0;
	*out = NULL;
	*len = 0;
#ifdef BLOCKHASH_WHOLE_ROWS /* (whole rows only, as format 9 wrote them: a build to A/B against) */
	return 0;
#endif
	for (int64_t b = 0; b < n; b++)
		if (hashes[b] != (b < base->n ? base->h[b] : zh) && ++k > most)
			return 0;
	unsigned char *p = malloc(k ? k * PAIR_BYTES : 1);
	if (!p)
		return mtm_set_error(ENOMEM, "index");
	*out = p;
	*len = k * PAIR_BYTES;
	for (int64_t b = 0; b < n; b++) {
		if (hashes[b] == (b < base->n ? base->h[b] : zh))
			continue;
		uint32_t lb = htole32((uint32_t)b);
		uint64_t lh = htole64(hashes[b]);
		memcpy(p, &lb, 4);
		memcpy(p + 4, &lh, 8);
		p += PAIR_BYTES;
	}
	return 0;
}

static int put_delta(mtm_store *s, blockhash_stmts *q, int64_t file_id, int64_t ver, int64_t base, int64_t n,
                     const unsigned char *pairs, size_t len)
{
	MTM_TRY(prepare(s, &q->dput, "INSERT OR REPLACE INTO blockhash_delta(file_id, ver, base, n, pairs, chk)"
	                             " VALUES(?,?,?,?,?,?)"));
	sqlite3_bind_int64(q->dput, 1, file_id);
	sqlite3_bind_int64(q->dput, 2, ver);
	sqlite3_bind_int64(q->dput, 3, base);
	sqlite3_bind_int64(q->dput, 4, n);
	sqlite3_bind_blob(q->dput, 5, len ? (const void *)pairs : "", (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(q->dput, 6, delta_check(file_id, ver, base, n, pairs, len));
	return step_done(s, q->dput);
}

static int del_delta(mtm_store *s, blockhash_stmts *q, int64_t file_id)
{
	MTM_TRY(prepare(s, &q->ddel, "DELETE FROM blockhash_delta WHERE file_id=?"));
	sqlite3_bind_int64(q->ddel, 1, file_id);
	return step_done(s, q->ddel);
}

int blockhash_put(mtm_store *s, blockhash_stmts *q, int64_t file_id, int64_t ver, const uint64_t *hashes, int64_t n,
                  const blockhash_base *base)
{
	if (n < 0 || n > BLOCKHASH_MAX_BLOCKS)
		return blockhash_del(s, q, file_id);
	if (base && base->ver && base->ver != ver) {
		unsigned char *pairs;
		size_t plen;
		MTM_TRY(make_delta(hashes, n, base, &pairs, &plen));
		if (pairs) {
			int rc = put_delta(s, q, file_id, ver, base->ver, n, pairs, plen);
			free(pairs);
			return rc;
		}
	}
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
		rc = step_done(s, q->put);
	}
	free(le);
	/* a delta against the row replaced would no longer apply */
	return rc ? rc : del_delta(s, q, file_id);
}

int blockhash_del(mtm_store *s, blockhash_stmts *q, int64_t file_id)
{
	MTM_TRY(prepare(s, &q->del, "DELETE FROM blockhash WHERE file_id=?"));
	sqlite3_bind_int64(q->del, 1, file_id);
	MTM_TRY(step_done(s, q->del));
	return del_delta(s, q, file_id);
}

void blockhash_base_free(blockhash_base *b)
{
	free(b->h);
	memset(b, 0, sizeof *b);
}

void blockhash_stmts_free(blockhash_stmts *q)
{
	sqlite3_finalize(q->get);
	sqlite3_finalize(q->put);
	sqlite3_finalize(q->del);
	sqlite3_finalize(q->dget);
	sqlite3_finalize(q->dput);
	sqlite3_finalize(q->ddel);
	memset(q, 0, sizeof *q);
}

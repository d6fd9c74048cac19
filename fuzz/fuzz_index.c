/*
 * fuzz_index.c — index rows as Metamori loads them. The input is decoded
 * into rows of the checkpoint, branch, entry, block, chunk and pack tables
 * (any values: hostile paths with NUL, '..', '/', huge sizes, block numbers,
 * loops between branches) inserted into a real store's index inside a
 * transaction that is rolled back afterwards. Then everything that reads
 * those rows runs: the branch table load, lineage walks, each checkpoint's
 * tree (index_load_tree), each file's block map and block hashes, and
 * verify's reference and path checks. Nothing may crash, loop or allocate
 * without bound; a row that is accepted must be valid.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "metamori.h"
#include "io/beneath.h"
#include "store/index.h"
#include "store/lineage.h"
#include "store/store.h"

static mtm_store *S;

typedef struct { const uint8_t *p, *end; } rd;
static uint64_t get(rd *r, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | (r->p < r->end ? *r->p++ : 0);
	return v;
}
static const uint8_t *bytes(rd *r, size_t *n)
{
	if (*n > (size_t)(r->end - r->p))
		*n = (size_t)(r->end - r->p);
	const uint8_t *b = r->p;
	r->p += *n;
	return b;
}
/* small numbers mostly (so rows refer to each other), sometimes anything */
static int64_t num(rd *r)
{
	uint8_t sel = (uint8_t)get(r, 1);
	if (sel < 0xf0)
		return sel % 12;
	return (int64_t)get(r, 8);
}

static void exec(const char *sql)
{
	if (sqlite3_exec(S->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		abort();
}

static void cleanup(void)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", mtm_root(S));
	mtm_close(S);
	if (system(cmd)) {
	}
}

static int no_problem(void *arg, const char *what) { (void)arg; (void)what; return 0; }

/* blob_cols: a bit per column (1 << c) bound as a BLOB */
static void insert(const char *sql, rd *r, int ncols, unsigned blob_cols, int text_col)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(S->db, sql, -1, &st, NULL) != SQLITE_OK)
		abort();
	for (int c = 1; c <= ncols; c++) {
		if ((blob_cols >> c & 1) || c == text_col) {
			size_t n = (size_t)get(r, 1);
			if (n == 0xff) {
				sqlite3_bind_null(st, c);
				continue;
			}
			const uint8_t *b = bytes(r, &n);
			if (c == text_col)
				sqlite3_bind_text(st, c, (const char *)b, (int)n, SQLITE_TRANSIENT);
			else
				sqlite3_bind_blob(st, c, b, (int)n, SQLITE_TRANSIENT);
		} else {
			sqlite3_bind_int64(st, c, num(r));
		}
	}
	sqlite3_step(st); /* constraint failures are fine: the row is skipped */
	sqlite3_finalize(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!S) {
		char dir[] = "/tmp/mtm-fuzz-index-XXXXXX";
		if (!mkdtemp(dir) || mtm_init(&S, dir))
			abort();
		atexit(cleanup);
	}
	exec("BEGIN; DELETE FROM checkpoint; DELETE FROM branch; DELETE FROM entry; DELETE FROM block;"
	     " DELETE FROM chunk; DELETE FROM pack; DELETE FROM tag;");
	rd r = {data, data + size};
	for (int k = 0; k < 256 && r.p < r.end; k++) {
		switch (get(&r, 1) % 6) {
		case 0: insert("INSERT OR IGNORE INTO checkpoint(id, parent, branch, time_ns, message, files_added, files_changed,"
		               " files_removed, bytes_changed, bytes_stored, entries, tree_bytes) VALUES(?,?,?,0,'',0,0,0,0,0,0,0)", &r, 3, 0, 0); break;
		case 1: insert("INSERT OR IGNORE INTO branch VALUES(?,?,?)", &r, 3, 0, 0); break;
		/* (target and xattrs are BLOBs) */
		case 2: insert("INSERT OR IGNORE INTO entry VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)", &r, 14, 1u << 11 | 1u << 14, 1); break;
		case 3: insert("INSERT OR IGNORE INTO block VALUES(?,?,?,?,?,?,?)", &r, 7, 0, 0); break;
		case 4: insert("INSERT OR IGNORE INTO chunk VALUES(?,?,?,?,?,?,?)", &r, 7, 1u << 2, 0); break;
		case 5: insert("INSERT OR IGNORE INTO pack VALUES(?,?,?)", &r, 3, 0, 0); break;
		}
	}
	if (store_load_branches(S) == 0) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(S->db, "SELECT id FROM checkpoint ORDER BY id LIMIT 16", -1, &st, NULL) != SQLITE_OK)
			abort();
		while (sqlite3_step(st) == SQLITE_ROW) {
			mtm_id k = sqlite3_column_int64(st, 0);
			vec tree;
			if (index_load_tree(S, k, &tree) == 0) {
				lineage l;
				int lrc = lineage_of(S, k, &l);
				for (size_t i = 0; i < tree.n; i++) {
					entry *e = &VEC_AT(&tree, entry, i);
					/* what the loader accepted is safe to create */
					if (!path_is_safe(e->path, strlen(e->path)) || e->size < 0 || e->size > MTM_MAX_FILE_SIZE ||
					    e->kind < 1 || e->kind > 3)
						abort();
					if (lrc || e->kind != 1)
						continue;
					vec map;
					if (index_file_map(S, e->file_id, &l, &map) == 0)
						vec_free(&map);
					uint64_t h;
					index_block_hash(S, e->file_id, 0, &l, &h);
					entry one = {0};
					int found;
					if (index_entry_at(S, e->path, &l, &one, &found) == 0 && found)
						entry_clear(&one);
				}
				lineage_free(&l);
				entries_free(&tree);
			}
		}
		sqlite3_finalize(st);
	}
	mtm_verify_stats vs;
	mtm_verify(S, 0, no_problem, NULL, &vs);
	index_lookups_free(S);
	exec("ROLLBACK");
	store_load_branches(S);
	return 0;
}

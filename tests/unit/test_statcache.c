/* test_statcache.c — the stat cache (docs/FORMAT.md 3.9): a row vouches for
 * a live file only while every recorded stat field and the entry version
 * match and the row is not racy (the file's mtime or ctime fell within the
 * racy window before the scan that wrote it); rows survive a reload, are
 * replaced and deleted by path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <sqlite3.h>
#include "tree/scan.h"
#include "store/statblob.h"
#include "store/store.h"
#include "util/pathmap.h"

#include "tmp_store.h"
static struct stat ST; /* of a real file in dir */

#define HOUR_NS (3600LL * 1000000000)

static sc_row *load_one(pathmap *m, const char *path)
{
	assert_int_equal(statcache_load(S, m), 0);
	return pathmap_get(m, path);
}

static void put_and_reload(void **state)
{
	(void)state;
	sqlite3_stmt *put = NULL, *del = NULL;
	assert_int_equal(sqlite3_exec(S->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	/* a scan that started an hour after the file's last change: not racy */
	assert_int_equal(statcache_put(S, &put, "a/file", 7, &ST, st_mtime_ns(&ST) + HOUR_NS), 0);
	assert_int_equal(sqlite3_exec(S->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	pathmap m;
	sc_row *r = load_one(&m, "a/file");
	assert_non_null(r);
	assert_int_equal(r->ver, 7);
	assert_int_equal(r->size, ST.st_size);
	assert_int_equal(r->mtime_ns, st_mtime_ns(&ST));
	assert_int_equal(r->ctime_ns, st_ctime_ns(&ST));
	assert_int_equal(r->ino, (int64_t)ST.st_ino);
	assert_int_equal(r->dev, (int64_t)ST.st_dev);
	assert_int_equal(r->mode, ST.st_mode);
	assert_int_equal(r->racy, 0);
	assert_true(statcache_fresh(r, &ST, 7));
	assert_null(pathmap_get(&m, "a"));
	pathmap_free(&m, free);

	/* replaced by path, then deleted */
	assert_int_equal(statcache_put(S, &put, "a/file", 9, &ST, st_mtime_ns(&ST) + HOUR_NS), 0);
	r = load_one(&m, "a/file");
	assert_non_null(r);
	assert_int_equal(r->ver, 9);
	pathmap_free(&m, free);
	assert_int_equal(statcache_del(S, &del, "a/file"), 0);
	assert_null(load_one(&m, "a/file"));
	pathmap_free(&m, free);
	sqlite3_finalize(put);
	sqlite3_finalize(del);
}

/* Any field that differs, or another version, and the row vouches for nothing. */
static void every_field_counts(void **state)
{
	(void)state;
	sqlite3_stmt *put = NULL;
	assert_int_equal(statcache_put(S, &put, "f", 3, &ST, st_mtime_ns(&ST) + HOUR_NS), 0);
	sqlite3_finalize(put);
	pathmap m;
	sc_row *r = load_one(&m, "f");
	assert_non_null(r);
	assert_true(statcache_fresh(r, &ST, 3));
	assert_false(statcache_fresh(r, &ST, 4));
	assert_false(statcache_fresh(NULL, &ST, 3));
	for (int field = 0; field < 8; field++) {
		struct stat st = ST;
		switch (field) {
		case 0: st.st_size++; break;
		case 1: st.st_mtim.tv_nsec ^= 1; break;
		case 2: st.st_ctim.tv_nsec ^= 1; break;
		case 3: st.st_ino++; break;
		case 4: st.st_dev++; break;
		case 5: st.st_mode ^= 0100; break;
		case 6: st.st_uid++; break;
		case 7: st.st_gid++; break;
		}
		if (statcache_fresh(r, &st, 3)) {
			print_error("a change of stat field %d went unseen\n", field);
			fail();
		}
	}
	pathmap_free(&m, free);
}

/* A file changed within the racy window before the scan may change again
 * within the same timestamp: its row must never vouch for it. */
static void racy_rows_vouch_for_nothing(void **state)
{
	(void)state;
	sqlite3_stmt *put = NULL;
	int64_t t = st_mtime_ns(&ST) > st_ctime_ns(&ST) ? st_mtime_ns(&ST) : st_ctime_ns(&ST);
	const int64_t starts[] = {t, t + 1, t - HOUR_NS};
	for (size_t i = 0; i < sizeof starts / sizeof *starts; i++) {
		assert_int_equal(statcache_put(S, &put, "r", 5, &ST, starts[i]), 0);
		pathmap m;
		sc_row *r = load_one(&m, "r");
		assert_non_null(r);
		assert_int_equal(r->racy, 1);
		assert_false(statcache_fresh(r, &ST, 5));
		pathmap_free(&m, free);
	}
	sqlite3_finalize(put);
}

/* The stat fields' BLOB (format 8, store/statblob.h) gives back every
 * 64-bit value, and reads no blob that is not exactly what it writes. */
static void statblob_round_trip(void **state)
{
	(void)state;
	const int64_t cases[][STATBLOB_FIELDS] = {
		{0, 0, 0, 0, 0, 0, 0, 0, 0},
		{16384, 1765000000123456789, 1765000000123456790, 123456, 2049, 0100644, 1000, 1000, 1},
		{INT64_MAX, -1, INT64_MIN, -1, (int64_t)UINT64_C(0x8000000000000001), 0177777, UINT32_MAX, UINT32_MAX, 0},
		{1, -86400000000000LL, 255, 256, 65535, 65536, 1, 0, 1},
	};
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		unsigned char b[STATBLOB_MAX];
		int64_t got[STATBLOB_FIELDS];
		size_t n = statblob_pack(b, cases[c]);
		assert_true(n <= STATBLOB_MAX);
		assert_int_equal(statblob_unpack(b, n, got), 0);
		for (int i = 0; i < STATBLOB_FIELDS; i++)
			assert_int_equal(got[i], cases[c][i]);
		/* cut short, one byte too many, a length past 8 */
		assert_int_equal(statblob_unpack(b, n - 1, got), -1);
		unsigned char more[STATBLOB_MAX + 1];
		memcpy(more, b, n);
		more[n] = 0;
		assert_int_equal(statblob_unpack(more, n + 1, got), -1);
		more[0] = (unsigned char)((more[0] & 0xf0) | 9);
		assert_int_equal(statblob_unpack(more, n, got), -1);
	}
	assert_int_equal(statblob_unpack(NULL, 0, (int64_t[STATBLOB_FIELDS]){0}), -1);
}

/* A row whose st is damaged (not what statblob_pack writes) is as good as
 * none: it vouches for no file, and a lookup or load does not give it. */
static void damaged_rows_vouch_for_nothing(void **state)
{
	(void)state;
	sqlite3_stmt *put = NULL, *get = NULL;
	assert_int_equal(statcache_put(S, &put, "d", 3, &ST, st_mtime_ns(&ST) + HOUR_NS), 0);
	sqlite3_finalize(put);
	sc_row row;
	int found;
	assert_int_equal(statcache_get_row(S, &get, "d", &row, &found), 0);
	assert_true(found && statcache_fresh(&row, &ST, 3));
	const char *damage[] = {"x''", "x'00'", "NULL", "substr(st, 1, length(st) - 1)", "st || x'00'", "42"};
	for (size_t i = 0; i < sizeof damage / sizeof *damage; i++) {
		char sql[160];
		/* (st is NOT NULL: a NULL is put as the empty blob) */
		snprintf(sql, sizeof sql, "UPDATE statcache SET st = coalesce(%s, zeroblob(0)) WHERE path = 'd'", damage[i]);
		assert_int_equal(sqlite3_exec(S->db, "SAVEPOINT s", NULL, NULL, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_exec(S->db, sql, NULL, NULL, NULL), SQLITE_OK);
		assert_int_equal(statcache_get_row(S, &get, "d", &row, &found), 0);
		assert_false(found);
		pathmap m;
		assert_null(load_one(&m, "d"));
		pathmap_free(&m, free);
		assert_int_equal(sqlite3_exec(S->db, "ROLLBACK TO s; RELEASE s", NULL, NULL, NULL), SQLITE_OK);
	}
	assert_int_equal(statcache_get_row(S, &get, "d", &row, &found), 0);
	assert_true(found && statcache_fresh(&row, &ST, 3));
	sqlite3_finalize(get);
}

static int setup(void **state)
{
	(void)state;
	if (tmp_dir())
		return -1;
	char path[128];
	snprintf(path, sizeof path, "%s/file", dir);
	FILE *f = fopen(path, "w");
	if (!f || fputs("some bytes\n", f) < 0 || fclose(f) || stat(path, &ST))
		return -1;
	return mtm_init(&S, dir) ? -1 : 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(put_and_reload),
		cmocka_unit_test(every_field_counts),
		cmocka_unit_test(racy_rows_vouch_for_nothing),
		cmocka_unit_test(statblob_round_trip),
		cmocka_unit_test(damaged_rows_vouch_for_nothing),
	};
	return cmocka_run_group_tests(tests, setup, tmp_store_teardown);
}

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
#include "store/store.h"
#include "util/pathmap.h"

static char dir[] = "/tmp/mtm-statcache-XXXXXX";
static mtm_store *S;
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

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	char path[128];
	snprintf(path, sizeof path, "%s/file", dir);
	FILE *f = fopen(path, "w");
	if (!f || fputs("some bytes\n", f) < 0 || fclose(f) || stat(path, &ST))
		return -1;
	return mtm_init(&S, dir) ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	mtm_close(S);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(put_and_reload),
		cmocka_unit_test(every_field_counts),
		cmocka_unit_test(racy_rows_vouch_for_nothing),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

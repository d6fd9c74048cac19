/* test_lineage.c — the store's visibility rule (docs/FORMAT.md 4.2): a row
 * written at checkpoint c is visible at k exactly when c is k or one of
 * k's ancestors, and the visible version of a path is the one with the
 * greatest such c. Random checkpoint trees (with branches made as a
 * checkpoint makes them) are checked against the parent links walked one
 * by one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sqlite3.h>
#include "store/index.h"
#include "store/lineage.h"
#include "store/store.h"

#define N 60 /* checkpoints 1..N */

#include "tmp_store.h"
static int parent[N + 1], branch[N + 1];

static void sql(const char *q)
{
	assert_int_equal(sqlite3_exec(S->db, q, NULL, NULL, NULL), SQLITE_OK);
}

/* Checkpoint i's parent is a random earlier one (0: a new root, rarely);
 * it extends its parent's branch when the parent is that branch's newest
 * checkpoint, and starts a branch forking at the parent otherwise. */
static void make_tree(unsigned *seed)
{
	int newest[N + 2] = {0}, nbranches = 0;
	char q[256];
	sql("BEGIN; DELETE FROM checkpoint; DELETE FROM branch; DELETE FROM entry");
	for (int i = 1; i <= N; i++) {
		int r = rand_r(seed) % 10;
		parent[i] = i == 1 || r == 0 ? 0 : r < 5 ? i - 1 : 1 + rand_r(seed) % (i - 1);
		int p = parent[i];
		if (p && newest[branch[p]] == p) {
			branch[i] = branch[p];
		} else {
			branch[i] = ++nbranches;
			snprintf(q, sizeof q, "INSERT INTO branch VALUES(%d, %d, %d)", branch[i], p ? branch[p] : 0, p);
			sql(q);
		}
		newest[branch[i]] = i;
		snprintf(q, sizeof q, "INSERT INTO checkpoint(id, parent, branch, time_ns, message, files_added, files_changed,"
		         " files_removed, bytes_changed, bytes_stored, entries, tree_bytes) VALUES(%d, %d, %d, 0, '', 0, 0, 0, 0, 0, 0, 0)", i, p,
		         branch[i]);
		sql(q);
	}
	sql("COMMIT");
	assert_int_equal(store_load_branches(S), 0);
}

static int is_ancestor_or_self(int c, int k)
{
	for (; k; k = parent[k])
		if (k == c)
			return 1;
	return 0;
}

static void visibility_is_ancestry(void **state)
{
	(void)state;
	unsigned seed = 11;
	for (int round = 0; round < 20; round++) {
		make_tree(&seed);
		for (int k = 0; k <= N; k++) {
			lineage l;
			assert_int_equal(lineage_of(S, k, &l), 0);
			if (!k)
				assert_int_equal(l.n, 0);
			for (int c = 1; c <= N; c++) {
				if (lineage_visible(&l, branch[c], c) != is_ancestor_or_self(c, k)) {
					print_error("round %d: checkpoint %d seen from %d: lineage says %d\n", round, c, k,
					            lineage_visible(&l, branch[c], c));
					fail();
				}
			}
			/* lineage_max: the newest checkpoint of a branch that k sees */
			int nbranches = 0;
			for (int c = 1; c <= N; c++)
				nbranches = branch[c] > nbranches ? branch[c] : nbranches;
			for (int b = 1; b <= nbranches; b++) {
				int64_t want = 0;
				for (int c = 1; c <= N; c++)
					if (branch[c] == b && is_ancestor_or_self(c, k) && c > want)
						want = c;
				assert_int_equal(lineage_max(&l, b), want);
			}
			lineage_free(&l);
		}
	}
}

/* Rows for one path at a random subset of checkpoints (size = the ckpt
 * that wrote it, kind 0 now and then: a removal); at every k the row
 * index_entry_at finds is the one of the greatest visible ckpt. */
static void visible_version_is_the_newest_ancestor(void **state)
{
	(void)state;
	unsigned seed = 5;
	for (int round = 0; round < 10; round++) {
		make_tree(&seed);
		int kind[N + 1] = {0};
		char q[256];
		sql("BEGIN");
		for (int c = 1; c <= N; c++) {
			if (rand_r(&seed) % 3)
				continue;
			kind[c] = rand_r(&seed) % 5 ? 1 : -1; /* -1: a tombstone */
			if (kind[c] > 0)
				snprintf(q, sizeof q, "INSERT INTO entry(path, branch, ckpt, kind, mode, uid, gid, size, mtime_nsec, file_id, target)"
				         " VALUES('p', %d, %d, 1, 420, 0, 0, %d, 0, 1, NULL)",
				         branch[c], c, c);
			else
				snprintf(q, sizeof q, "INSERT INTO entry(path, branch, ckpt, kind, mode, uid, gid, size, mtime_nsec, file_id, target)"
				         " VALUES('p', %d, %d, 0, 0, 0, 0, 0, 0, 0, NULL)",
				         branch[c], c);
			sql(q);
		}
		sql("COMMIT");
		for (int k = 0; k <= N; k++) {
			int want = 0;
			for (int a = k; a; a = parent[a])
				if (kind[a]) {
					want = kind[a] > 0 ? a : 0;
					break;
				}
			lineage l;
			assert_int_equal(lineage_of(S, k, &l), 0);
			entry e;
			int found;
			assert_int_equal(index_entry_at(S, "p", &l, &e, &found), 0);
			assert_int_equal(found, want != 0);
			if (found) {
				assert_int_equal(e.size, want);
				assert_int_equal(e.ver, want);
			}
			entry_clear(&e);
			lineage_free(&l);
		}
	}
}

/* tree_cursor (narrow: path, ver and kind; the rest by tree_cursor_fill)
 * hands out at every k exactly index_load_tree's entries: several paths,
 * each with versions at random checkpoints of a random tree (branches,
 * tombstones, every field set from the ckpt that wrote it). Each entry is
 * filled, or left partial every other time (then its other fields are
 * zero), as a scan leaves the files the stat cache vouches for. */
static void cursor_hands_out_the_loaded_tree(void **state)
{
	(void)state;
	unsigned seed = 11;
	static const char *paths[] = {"a", "a-b", "b", "c.txt", "lnk", "z"};
	const int np = (int)(sizeof paths / sizeof *paths);
	for (int round = 0; round < 6; round++) {
		make_tree(&seed);
		char q[512];
		sql("BEGIN");
		for (int i = 0; i < np; i++)
			for (int c = 1; c <= N; c++) {
				if (rand_r(&seed) % 4)
					continue;
				int kind = rand_r(&seed) % 6 ? (i == 4 ? 3 : 1) : 0; /* 0: a tombstone; "lnk" a symlink */
				snprintf(q, sizeof q,
				         "INSERT INTO entry(path, branch, ckpt, kind, mode, uid, gid, size, mtime_nsec, file_id, target,"
				         " mtime_s) VALUES('%s', %d, %d, %d, %d, %d, %d, %d, %d, %d, %s, %d)",
				         paths[i], branch[c], c, kind, kind ? 0600 + c : 0, c, c + 1, kind == 1 ? 100 + c : 0, c * 1000,
				         kind == 1 ? 1 + i : 0, kind == 3 ? "CAST('t' AS BLOB)" : "NULL", 1000 + c);
				sql(q);
			}
		sql("COMMIT");
		for (int k = 1; k <= N; k++) {
			vec want;
			assert_int_equal(index_load_tree(S, k, &want), 0);
			tree_cursor tc;
			assert_int_equal(tree_cursor_open(S, k, &tc), 0);
			size_t n = 0;
			for (;;) {
				entry *e;
				assert_int_equal(tree_cursor_next(&tc, &e), 0);
				if (!e)
					break;
				assert_true(n < want.n);
				const entry *w = &VEC_AT(&want, entry, n);
				assert_string_equal(e->path, w->path);
				assert_int_equal(e->ver, w->ver);
				assert_int_equal(e->kind, w->kind);
				if ((n + (size_t)k) % 2) {
					assert_int_equal(e->size, 0); /* partial: not read */
					assert_null(e->target);
				} else {
					assert_int_equal(tree_cursor_fill(&tc), 0);
					assert_int_equal(tree_cursor_fill(&tc), 0); /* (once whole, nothing) */
					assert_true(entry_same(e, w));
					assert_int_equal(e->ver, w->ver);
					assert_int_equal(e->file_id, w->file_id);
				}
				n++;
			}
			assert_int_equal(n, want.n);
			tree_cursor_close(&tc);
			entries_free(&want);
		}
	}
}

static void unknown_checkpoint_is_refused(void **state)
{
	(void)state;
	unsigned seed = 3;
	make_tree(&seed);
	lineage l;
	assert_int_equal(lineage_of(S, N + 1, &l), MTM_ENOCKPT);
	assert_int_equal(lineage_of(S, -1, &l), MTM_ENOCKPT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(visibility_is_ancestry),
		cmocka_unit_test(visible_version_is_the_newest_ancestor),
		cmocka_unit_test(cursor_hands_out_the_loaded_tree),
		cmocka_unit_test(unknown_checkpoint_is_refused),
	};
	return cmocka_run_group_tests(tests, tmp_store_setup, tmp_store_teardown);
}

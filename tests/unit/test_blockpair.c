/* test_blockpair.c — index_block_pair (one seek per branch for two
 * lineages at once) agrees with two index_block_at lookups, over random
 * rows on several branches, in block and in block_log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>
#include "store/index.h"
#include "store/lineage.h"
#include "store/store.h"

#include "tmp_store.h"

/* The checkpoint tree: ids 1-15 on branch 1; branch 2 forks at 8 and holds
 * 16-30; branch 3 forks at 22 and holds 31-40. */
static int branch_of(int id)
{
	return id <= 15 ? 1 : id <= 30 ? 2 : 3;
}

static void put_rows(const char *table, int n, unsigned *seed)
{
	char sql[256];
	for (int i = 0; i < n; i++) {
		int blk = rand_r(seed) % 12, ckpt = 1 + rand_r(seed) % 40;
		snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO %s VALUES(1, %d, %d, %d, %d, %d, %d)", table, blk,
		         branch_of(ckpt), ckpt, blk * 1000 + ckpt, 1 + ckpt, ckpt % 16);
		assert_int_equal(sqlite3_exec(S->db, sql, NULL, NULL, NULL), SQLITE_OK);
	}
}

/* The lineage of checkpoint k (0: none), as lineage_of builds it. */
static void lineage_at(lineage *l, lin_step *v, int k)
{
	l->v = v;
	l->n = 0;
	if (!k)
		return;
	int b = branch_of(k);
	v[l->n++] = (lin_step){b, k};
	if (b == 3)
		v[l->n++] = (lin_step){2, 22};
	if (b >= 2)
		v[l->n++] = (lin_step){1, 8};
}

static void random_lineage(lineage *l, lin_step *v, unsigned *seed)
{
	lineage_at(l, v, rand_r(seed) % 41);
}

static void check_all(int log_empty, unsigned *seed)
{
	for (int round = 0; round < 400; round++) {
		lin_step va[3], vb[3];
		lineage la, lb;
		random_lineage(&la, va, seed);
		random_lineage(&lb, vb, seed);
		for (int blk = 0; blk < 13; blk++) {
			blockref pair[2], one[2];
			int fp[2], f1[2];
			assert_int_equal(index_block_pair(S, 1, blk, &la, &lb, log_empty, pair, fp), 0);
			assert_int_equal(index_block_at(S, 1, blk, &la, &one[0], &f1[0]), 0);
			assert_int_equal(index_block_at(S, 1, blk, &lb, &one[1], &f1[1]), 0);
			for (int t = 0; t < 2; t++) {
				assert_int_equal(fp[t], f1[t]);
				if (fp[t]) {
					assert_int_equal(pair[t].hash, one[t].hash);
					assert_int_equal(pair[t].chunk, one[t].chunk);
					assert_int_equal(pair[t].boff, one[t].boff);
					assert_int_equal(pair[t].blkno, blk);
				}
			}
		}
	}
}

/* The greatest visible ckpt wins whichever branch holds it; rows between
 * the two lineages' maxima are read once for both. */
static void agrees_with_point_lookups(void **state)
{
	(void)state;
	unsigned seed = 7;
	put_rows("block", 150, &seed);
	check_all(1, &seed); /* block_log empty, not read */
	check_all(0, &seed); /* ... read all the same */
	put_rows("block_log", 60, &seed);
	check_all(0, &seed); /* rows in both tables */
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(agrees_with_point_lookups)};
	return cmocka_run_group_tests(tests, tmp_store_setup, tmp_store_teardown);
}

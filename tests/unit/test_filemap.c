/* test_filemap.c — which blocks differ between two versions of a file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "tree/filemap_diff.h"

static void push(vec *m, int64_t blkno, uint64_t hash)
{
	blockref *b = vec_push(m);
	b->blkno = blkno;
	b->hash = hash;
	b->chunk = hash ? 1 : 0;
}

static void diffs(void **state)
{
	(void)state;
	uint64_t z = zero_block_hash();
	vec a = VEC_INIT(blockref), b = VEC_INIT(blockref), runs = VEC_INIT(blk_run);
	push(&a, 0, 11); push(&a, 1, 12); push(&a, 2, 13); push(&a, 5, 16);
	push(&b, 0, 11); push(&b, 1, 99); push(&b, 2, 13); push(&b, 3, z); push(&b, 7, 5);
	uint64_t bytes = 0;
	/* a: 6 blocks; b: 8 blocks. Block 7 of b is past a's end: ignored. */
	assert_int_equal(filemap_diff(&a, 6 * 4096, &b, 8 * 4096, &runs, &bytes), 0);
	/* differ: 1 (12 vs 99), 5 (16 vs missing = zero) */
	assert_int_equal(runs.n, 2);
	assert_int_equal(VEC_AT(&runs, blk_run, 0).blkno, 1);
	assert_int_equal(VEC_AT(&runs, blk_run, 1).blkno, 5);
	assert_int_equal(bytes, 2 * 4096);
	vec_free(&runs);
	/* b's rows past its own end are stale and count as zeros */
	runs = (vec)VEC_INIT(blk_run);
	bytes = 0;
	assert_int_equal(filemap_diff(&a, 6 * 4096, &b, 2 * 4096, &runs, &bytes), 0);
	/* now b is [11, 99] and zeros: differ at 1, 2, 5 */
	assert_int_equal(bytes, 3 * 4096);
	vec_free(&runs);
	/* a ends 100 bytes into block 5: its bytes there count, not the block's
	 * (status, diff and checkpoint report the same size for one change) */
	runs = (vec)VEC_INIT(blk_run);
	bytes = 0;
	assert_int_equal(filemap_diff(&a, 5 * 4096 + 100, &b, 8 * 4096, &runs, &bytes), 0);
	assert_int_equal(bytes, 4096 + 100);
	vec_free(&runs);
	vec_free(&a);
	vec_free(&b);
}

static void runs_coalesce(void **state)
{
	(void)state;
	vec runs = VEC_INIT(blk_run);
	for (int64_t k = 3; k < 10; k++)
		assert_int_equal(filemap_add_run(&runs, k), 0);
	assert_int_equal(filemap_add_run(&runs, 20), 0);
	assert_int_equal(runs.n, 2);
	assert_int_equal(VEC_AT(&runs, blk_run, 0).count, 7);
	vec_free(&runs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(diffs), cmocka_unit_test(runs_coalesce)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

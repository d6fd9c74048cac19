/* test_blockrows.c — a checkpoint's block rows as index_writer inserts
 * them into `block` (one plain INSERT a row, index.c BLOCK_BATCH): every
 * row put is there once flushed, and a block put again in the same
 * checkpoint (in the same flush or a later one) keeps the later row, as
 * the OR REPLACE batches did. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>
#include "store/index.h"
#include "store/store.h"

#include "tmp_store.h"

static int64_t count(const char *where)
{
	char sql[256];
	snprintf(sql, sizeof sql, "SELECT count(*) FROM block WHERE %s", where);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(S->db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

static void rows_in_and_later_wins(void **state)
{
	(void)state;
	index_writer w;
	assert_int_equal(sqlite3_exec(S->db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(index_writer_init(&w, S, INDEX_TO_BLOCK), 0);
	/* 1,000 blocks of file 7 at checkpoint 3, in order, then block 5 again */
	for (int b = 0; b < 1000; b++)
		assert_int_equal(index_put_block(&w, 7, b, 1, 3, 100 + b, 1 + b / 16, b % 16), 0);
	assert_int_equal(index_put_block(&w, 7, 5, 1, 3, 555, 99, 1), 0);
	assert_int_equal(index_flush_blocks(&w), 0);
	/* and block 6 again after the flush (a big scan flushes as it goes) */
	assert_int_equal(index_put_block(&w, 7, 6, 1, 3, 666, 98, 2), 0);
	assert_int_equal(index_flush_blocks(&w), 0);
	index_writer_free(&w);
	/* still inside the transaction: a failed insert had not rolled it back */
	assert_int_equal(sqlite3_get_autocommit(S->db), 0);
	assert_int_equal(sqlite3_exec(S->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(count("file_id=7 AND ckpt=3"), 1000);
	assert_int_equal(count("file_id=7 AND blkno=5 AND hash=555 AND chunk=99 AND boff=1"), 1);
	assert_int_equal(count("file_id=7 AND blkno=6 AND hash=666 AND chunk=98 AND boff=2"), 1);
	assert_int_equal(count("file_id=7 AND blkno=7 AND hash=107 AND chunk=1 AND boff=7"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(rows_in_and_later_wins)};
	return cmocka_run_group_tests(tests, tmp_store_setup, tmp_store_teardown);
}

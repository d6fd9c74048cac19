/* test_zstd_tries.c — what the pack writer gives zstd (pack_writer.c
 * append_record): a chunk after one that compressed is compressed whole at
 * once, not its first block alone first (that look compressed the first
 * block twice on data that compresses: 1.2x zstd's CPU for whole 64 KiB
 * chunks, 1.9x for 8 KiB ones); after one that did not, the look comes
 * first, so random chunks still cost a block's try each; and every chunk
 * reads back as it was put. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sqlite3.h>
#include "store/pack.h"
#include "store/store.h"

#include "tmp_store.h"

enum { N = 12, LEN = CHUNK_MAX_PLAIN, SMALL = 2 * MTM_BLOCK };

/* A chunk that compresses (a page-like pattern, distinct per seed), or one
 * that does not (xorshift bytes). */
static void fill(unsigned char *p, size_t len, unsigned seed, int random)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL * (seed + 1);
	for (size_t i = 0; i < len; i++) {
		if (random) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			p[i] = (unsigned char)x;
		} else {
			p[i] = (unsigned char)(i % 97 == 0 ? seed + i / 4096 : i / 512);
		}
	}
}

static unsigned char buf[N][LEN];

static void put_all(pack_writer *w, size_t len, int random, unsigned seed0, int64_t *ids)
{
	for (int i = 0; i < N; i++) {
		fill(buf[i], len, seed0 + (unsigned)i, random);
		pack_piece pc = {buf[i], len, 0};
		assert_int_equal(pack_putv(w, &pc, 1, len, &ids[i]), 0);
		assert_true(ids[i] > 0);
	}
}

static void check_back(int64_t *ids, size_t len)
{
	pack_reader r;
	assert_int_equal(pack_reader_init(&r, S), 0);
	for (int i = 0; i < N; i++) {
		const unsigned char *plain;
		size_t plen = 0;
		assert_int_equal(pack_read(&r, ids[i], &plain, &plen), 0);
		assert_int_equal(plen, len);
		assert_memory_equal(plain, buf[i], len);
	}
	pack_reader_free(&r);
}

static void one_try_a_chunk_that_compresses(void **state)
{
	(void)state;
	size_t lens[] = {LEN, SMALL};
	for (int k = 0; k < 2; k++) {
		size_t len = lens[k];
		int64_t ids[N];
		pack_writer w;
		assert_int_equal(sqlite3_exec(S->db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
		assert_int_equal(pack_writer_begin(&w, S, NULL), 0);
		put_all(&w, len, 0, 100u * (unsigned)(k + 1), ids);
		/* every chunk stored compressed; zstd saw each once, but for the
		 * first look at the first chunk of the store (nothing tried yet) */
		uint64_t in = w.zstd_in;
		assert_int_equal(pack_writer_finish(&w), 0);
		pack_writer_free(&w);
		assert_int_equal(sqlite3_exec(S->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
		assert_true(in <= (uint64_t)N * len + (k == 0 ? MTM_BLOCK : 0));
		assert_true(in >= (uint64_t)N * len);
		check_back(ids, len);
	}
}

static void random_chunks_still_looked_at_first(void **state)
{
	(void)state;
	int64_t ids[N];
	pack_writer w;
	assert_int_equal(sqlite3_exec(S->db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(pack_writer_begin(&w, S, NULL), 0);
	/* after the chunks that compressed: the first random one is tried
	 * whole, the rest by their first block only (8 in a row that do not
	 * pay, then none is tried for a while) */
	put_all(&w, LEN, 1, 7, ids);
	uint64_t in = w.zstd_in;
	assert_int_equal(pack_writer_finish(&w), 0);
	pack_writer_free(&w);
	assert_int_equal(sqlite3_exec(S->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	assert_true(in <= (uint64_t)LEN + 7 * MTM_BLOCK);
	check_back(ids, LEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(one_try_a_chunk_that_compresses),
	                                   cmocka_unit_test(random_chunks_still_looked_at_first)};
	return cmocka_run_group_tests(tests, tmp_store_setup, tmp_store_teardown);
}

/* test_record.c — the pack record codec as the writers use it
 * (chunk_header_put, chunk_check_put, the little-endian helpers of
 * pack_record.h) against the layout of docs/FORMAT.md 6 and the reader
 * (chunk_decode): every field where the format puts it, a record the
 * writers make decodes to its bytes, and the check covers every header
 * byte and every stored byte. (test_chunk.c builds records by hand and
 * tests the reader's refusals.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <xxhash.h>
#include <zstd.h>
#include "store/pack.h"
#include "store/pack_record.h"

static unsigned char plain[CHUNK_MAX_PLAIN], out[CHUNK_MAX_PLAIN];
static unsigned char rec[CHUNK_HEADER_LEN + 2 * CHUNK_MAX_PLAIN];

static void little_endian_fields(void **state)
{
	(void)state;
	unsigned char b[8];
	put32(b, 0x04030201u);
	assert_memory_equal(b, "\x01\x02\x03\x04", 4);
	put64(b, 0x0807060504030201ull);
	assert_memory_equal(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	const uint64_t v64[] = {0, 1, 0xffffffffffffffffull, 0x8000000000000000ull, 0x0123456789abcdefull};
	for (size_t i = 0; i < sizeof v64 / sizeof *v64; i++) {
		put64(b, v64[i]);
		assert_true(get64(b) == v64[i]);
		put32(b, (uint32_t)v64[i]);
		assert_true(get32(b) == (uint32_t)v64[i]);
	}
}

/* Makes a record the way pack.c and gc.c do; returns its length. */
static size_t make(size_t plen, int compress)
{
	XXH128_canonical_t hc;
	XXH128_canonicalFromHash(&hc, XXH3_128bits(plain, plen));
	unsigned char *data = rec + CHUNK_HEADER_LEN;
	size_t clen = plen;
	if (compress)
		clen = ZSTD_compress(data, ZSTD_compressBound(plen), plain, plen, 1);
	else
		memcpy(data, plain, plen);
	assert_false(ZSTD_isError(clen));
	chunk_header_put(rec, compress ? CODEC_ZSTD : CODEC_RAW, (uint32_t)plen, (uint32_t)clen, hc.digest);
	/* the check is left for the writer's thread */
	assert_memory_equal(rec + 32, "\0\0\0\0\0\0\0\0", 8);
	chunk_check_put(rec, data, clen);
	/* FORMAT.md 6: magic, codec, 3 zero bytes, plen, clen, XXH3-128, check */
	assert_memory_equal(rec, "MTMC", 4);
	assert_int_equal(rec[4], compress ? 1 : 0);
	assert_memory_equal(rec + 5, "\0\0\0", 3);
	assert_int_equal(get32(rec + 8), plen);
	assert_int_equal(get32(rec + 12), clen);
	assert_memory_equal(rec + 16, hc.digest, 16);
	assert_true(get64(rec + 32) == XXH3_64bits_withSeed(data, clen, XXH3_64bits(rec, 32)));
	return CHUNK_HEADER_LEN + clen;
}

static void written_records_decode(void **state)
{
	(void)state;
	ZSTD_DCtx *d = ZSTD_createDCtx();
	unsigned seed = 1;
	for (size_t i = 0; i < sizeof plain; i++)
		plain[i] = (unsigned char)(i % 251 < 100 ? (int)(i / 13) : rand_r(&seed));
	const size_t lens[] = {1, 100, 4096, 4097, 3 * 4096 + 100, CHUNK_MAX_PLAIN};
	for (size_t i = 0; i < sizeof lens / sizeof *lens; i++)
		for (int compress = 0; compress < 2; compress++) {
			size_t n = make(lens[i], compress), plen = 0;
			unsigned char hash[16];
			assert_int_equal(chunk_decode(d, rec, n, out, &plen, hash), 0);
			assert_int_equal(plen, lens[i]);
			assert_memory_equal(out, plain, plen);
			assert_memory_equal(hash, rec + 16, 16);
		}
	ZSTD_freeDCtx(d);
}

/* One flipped bit anywhere in a written record (header, check or data) and
 * the reader refuses it: nothing the writer lays out goes unchecked. */
static void check_covers_every_byte(void **state)
{
	(void)state;
	ZSTD_DCtx *d = ZSTD_createDCtx();
	for (int compress = 0; compress < 2; compress++) {
		size_t n = make(5000, compress), plen;
		for (size_t at = 0; at < n; at++) {
			rec[at] ^= 0x10;
			if (chunk_decode(d, rec, n, out, &plen, NULL) != MTM_ECORRUPT) {
				print_error("a flip at byte %zu of a %s record went unseen\n", at, compress ? "zstd" : "raw");
				fail();
			}
			rec[at] ^= 0x10;
		}
		assert_int_equal(chunk_decode(d, rec, n, out, &plen, NULL), 0);
	}
	ZSTD_freeDCtx(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(little_endian_fields),
		cmocka_unit_test(written_records_decode),
		cmocka_unit_test(check_covers_every_byte),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_chunk.c — chunk records: round trip, and every kind of damage is
 * reported as MTM_ECORRUPT (never a crash or an out-of-bounds read). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <xxhash.h>
#include <zstd.h>
#include "store/pack.h"

/* Builds a record as pack.c lays it out (docs/FORMAT.md). */
static size_t make_record(unsigned char *rec, const unsigned char *plain, size_t plen, int compress)
{
	size_t clen = plen;
	unsigned char *data = rec + CHUNK_HEADER_LEN;
	if (compress)
		clen = ZSTD_compress(data, ZSTD_compressBound(plen), plain, plen, 1);
	else
		memcpy(data, plain, plen);
	memcpy(rec, "MTMC", 4);
	rec[4] = (unsigned char)(compress ? CODEC_ZSTD : CODEC_RAW);
	rec[5] = rec[6] = rec[7] = 0;
	for (int i = 0; i < 4; i++) {
		rec[8 + i] = (unsigned char)(plen >> (8 * i));
		rec[12 + i] = (unsigned char)(clen >> (8 * i));
	}
	XXH128_canonical_t hc;
	XXH128_canonicalFromHash(&hc, XXH3_128bits(plain, plen));
	memcpy(rec + 16, hc.digest, 16);
	uint64_t chk = XXH3_64bits_withSeed(data, clen, XXH3_64bits(rec, 32));
	for (int i = 0; i < 8; i++)
		rec[32 + i] = (unsigned char)(chk >> (8 * i));
	return CHUNK_HEADER_LEN + clen;
}

static unsigned char plain[CHUNK_MAX_PLAIN], out[CHUNK_MAX_PLAIN];
static unsigned char rec[CHUNK_HEADER_LEN + 2 * CHUNK_MAX_PLAIN];

static void round_trip(void **state)
{
	(void)state;
	ZSTD_DCtx *d = ZSTD_createDCtx();
	for (size_t i = 0; i < sizeof plain; i++)
		plain[i] = (unsigned char)(i / 7);
	for (int compress = 0; compress < 2; compress++) {
		size_t n = make_record(rec, plain, 3 * 4096 + 100, compress), plen;
		assert_int_equal(chunk_decode(d, rec, n, out, &plen, NULL), 0);
		assert_int_equal(plen, 3 * 4096 + 100);
		assert_memory_equal(out, plain, plen);
	}
	ZSTD_freeDCtx(d);
}

static void damage_detected(void **state)
{
	(void)state;
	ZSTD_DCtx *d = ZSTD_createDCtx();
	size_t n = make_record(rec, plain, 8192, 1), plen;
	/* every single-byte flip anywhere in the record is caught */
	for (size_t i = 0; i < n; i++) {
		rec[i] ^= 0x40;
		assert_int_equal(chunk_decode(d, rec, n, out, &plen, NULL), MTM_ECORRUPT);
		rec[i] ^= 0x40;
	}
	/* every truncation is caught */
	for (size_t cut = 0; cut < n; cut += 7)
		assert_int_equal(chunk_decode(d, rec, cut, out, &plen, NULL), MTM_ECORRUPT);
	assert_int_equal(chunk_decode(d, rec, n, out, &plen, NULL), 0);
	ZSTD_freeDCtx(d);
}

static void impossible_lengths(void **state)
{
	(void)state;
	ZSTD_DCtx *d = ZSTD_createDCtx();
	size_t n = make_record(rec, plain, 4096, 0), plen;
	/* claim a huge plain length, and fix up the header check so only the
	 * length rule can catch it */
	rec[8] = 0xff; rec[9] = 0xff; rec[10] = 0xff; rec[11] = 0x7f;
	uint64_t chk = XXH3_64bits_withSeed(rec + CHUNK_HEADER_LEN, 4096, XXH3_64bits(rec, 32));
	for (int i = 0; i < 8; i++)
		rec[32 + i] = (unsigned char)(chk >> (8 * i));
	assert_int_equal(chunk_decode(d, rec, n, out, &plen, NULL), MTM_ECORRUPT);
	ZSTD_freeDCtx(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(round_trip), cmocka_unit_test(damage_detected),
	                                   cmocka_unit_test(impossible_lengths)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

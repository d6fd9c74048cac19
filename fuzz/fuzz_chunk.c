/*
 * fuzz_chunk.c — chunk records (FORMAT section 6) through chunk_decode(), the
 * parser every pack read and verify --data uses: header, lengths, codec,
 * record check, zstd frame, plain-bytes hash.
 *
 * Input: one flags byte, then the record. With flags bit 0 set, the record
 * check (header bytes 32..39) is recomputed first, as FORMAT section 6 says,
 * so that mutations get past it into the zstd frame and the hash checks;
 * with bit 1 also the plain-bytes hash is patched in after a first decode,
 * so that records that decompress reach the success path.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "store/pack.h"

static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }

static void fix_check(unsigned char *rec, size_t len)
{
	if (len < CHUNK_HEADER_LEN)
		return;
	size_t clen = get32(rec + 12);
	if (clen > len - CHUNK_HEADER_LEN)
		clen = len - CHUNK_HEADER_LEN;
	put64(rec + 32, XXH3_64bits_withSeed(rec + CHUNK_HEADER_LEN, clen, XXH3_64bits(rec, 32)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static ZSTD_DCtx *dctx;
	static unsigned char *plain;
	if (!dctx) {
		dctx = ZSTD_createDCtx();
		plain = malloc(CHUNK_MAX_PLAIN);
	}
	if (size < 1)
		return 0;
	int flags = data[0];
	size--;
	unsigned char *rec = malloc(size ? size : 1); /* exact size: ASan sees any overread */
	memcpy(rec, data + 1, size);
	if (flags & 1)
		fix_check(rec, size);
	size_t plen = 0;
	unsigned char hash[16];
	int rc = chunk_decode(dctx, rec, size, plain, &plen, hash);
	if (rc && (flags & 2) && size >= CHUNK_HEADER_LEN) {
		/* decode far enough to learn the plain bytes' hash, patch it in, retry */
		size_t clen = get32(rec + 12);
		if (clen <= size - CHUNK_HEADER_LEN && clen <= ZSTD_compressBound(CHUNK_MAX_PLAIN)) {
			size_t n;
			if (rec[4] == CODEC_RAW) {
				n = clen <= CHUNK_MAX_PLAIN ? clen : 0;
				memcpy(plain, rec + CHUNK_HEADER_LEN, n);
			} else {
				n = ZSTD_decompressDCtx(dctx, plain, CHUNK_MAX_PLAIN, rec + CHUNK_HEADER_LEN, clen);
			}
			if (!ZSTD_isError(n)) {
				XXH128_canonical_t hc;
				XXH128_canonicalFromHash(&hc, XXH3_128bits(plain, n));
				memcpy(rec + 16, hc.digest, 16);
				fix_check(rec, size);
				rc = chunk_decode(dctx, rec, size, plain, &plen, hash);
			}
		}
	}
	if (rc == 0) {
		/* a record that decodes is exactly what its header says */
		if (plen == 0 || plen > CHUNK_MAX_PLAIN || plen != get32(rec + 8) || memcmp(hash, rec + 16, 16) != 0 ||
		    get64(rec + 32) != XXH3_64bits_withSeed(rec + CHUNK_HEADER_LEN, get32(rec + 12), XXH3_64bits(rec, 32)))
			abort();
	}
	free(rec);
	return 0;
}

/*
 * fuzz_chunk.c — chunk records (FORMAT section 6) through chunk_decode(), the
 * parser every pack read and verify --data uses: header, lengths, codec,
 * record check, zstd frame, plain-bytes hash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "store/pack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static ZSTD_DCtx *dctx;
	static unsigned char *plain;
	if (!dctx) {
		dctx = ZSTD_createDCtx();
		plain = malloc(CHUNK_MAX_PLAIN);
	}
	size_t plen = 0;
	unsigned char hash[16];
	if (chunk_decode(dctx, data, size, plain, &plen, hash) == 0) {
		/* a record that decodes is exactly what the header says */
		if (plen == 0 || plen > CHUNK_MAX_PLAIN || size < CHUNK_HEADER_LEN || memcmp(hash, data + 16, 16) != 0)
			abort();
	}
	return 0;
}

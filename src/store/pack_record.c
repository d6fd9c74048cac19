/* pack_record.c — the chunk record codec: header, check, decoding (see
 * pack.h; docs/FORMAT.md 3). */
#include <assert.h>
#include <string.h>
#include "store/pack.h"
#include "store/pack_record.h"
#include "util/error.h"
#include "util/xxh.h"

void chunk_header_put(unsigned char *rec, int codec, uint32_t plen, uint32_t clen, const unsigned char digest[16])
{
	assert(plen > 0 && plen <= CHUNK_MAX_PLAIN && (codec == CODEC_ZSTD || (codec == CODEC_RAW && clen == plen)));
	memcpy(rec, CHUNK_MAGIC, CHUNK_MAGIC_LEN);
	rec[4] = (unsigned char)codec;
	rec[5] = rec[6] = rec[7] = 0;
	put32(rec + 8, plen);
	put32(rec + 12, clen);
	memcpy(rec + 16, digest, 16);
	memset(rec + 32, 0, 8);
}

void chunk_check_put(unsigned char *rec, const unsigned char *data, size_t clen)
{
	put64(rec + 32, record_check(rec, data, clen));
}

int chunk_decode(ZSTD_DCtx *dctx, const unsigned char *rec, size_t rec_len, unsigned char *plain,
                 size_t *plen_out, unsigned char hash_out[16])
{
	if (rec_len < CHUNK_HEADER_LEN)
		return mtm_set_error(MTM_ECORRUPT, "chunk record is truncated");
	if (memcmp(rec, CHUNK_MAGIC, CHUNK_MAGIC_LEN) != 0)
		return mtm_set_error(MTM_ECORRUPT, "chunk record has a bad magic number");
	int codec = rec[4];
	uint32_t plen = get32(rec + 8), clen = get32(rec + 12);
	if (plen == 0 || plen > CHUNK_MAX_PLAIN || codec > CODEC_ZSTD || (codec == CODEC_RAW && clen != plen) ||
	    clen > ZSTD_compressBound(CHUNK_MAX_PLAIN))
		return mtm_set_error(MTM_ECORRUPT, "chunk header has impossible lengths or codec");
	if (rec_len < CHUNK_HEADER_LEN + (size_t)clen)
		return mtm_set_error(MTM_ECORRUPT, "chunk data is truncated");
	const unsigned char *data = rec + CHUNK_HEADER_LEN;
	if (get64(rec + 32) != record_check(rec, data, clen))
		return mtm_set_error(MTM_ECORRUPT, "chunk record checksum mismatch");
	if (codec == CODEC_RAW) {
		memcpy(plain, data, plen);
	} else {
		size_t n = ZSTD_decompressDCtx(dctx, plain, CHUNK_MAX_PLAIN, data, clen);
		if (ZSTD_isError(n) || n != plen)
			return mtm_set_error(MTM_ECORRUPT, "chunk does not decompress");
	}
	XXH128_canonical_t hc;
	XXH128_canonicalFromHash(&hc, XXH3_128bits(plain, plen));
	if (memcmp(hc.digest, rec + 16, 16) != 0)
		return mtm_set_error(MTM_ECORRUPT, "chunk checksum mismatch");
	*plen_out = plen;
	if (hash_out)
		memcpy(hash_out, hc.digest, 16);
	return 0;
}

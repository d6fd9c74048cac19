/* statblob.c — see statblob.h. */
#include <string.h>
#include "store/statblob.h"

enum { HEAD = (STATBLOB_FIELDS + 1) / 2 };

static unsigned bytes_of(uint64_t v)
{
	unsigned n = 0;
	for (; v; v >>= 8)
		n++;
	return n;
}

size_t statblob_pack(unsigned char *out, const int64_t f[STATBLOB_FIELDS])
{
	size_t at = HEAD;
	memset(out, 0, HEAD);
	for (int i = 0; i < STATBLOB_FIELDS; i++) {
		uint64_t v = (uint64_t)f[i];
		unsigned n = bytes_of(v);
		out[i / 2] |= (unsigned char)(n << (4 * (i % 2)));
		for (unsigned k = 0; k < n; k++)
			out[at++] = (unsigned char)(v >> (8 * k));
	}
	return at;
}

int statblob_unpack(const void *p, size_t n, int64_t f[STATBLOB_FIELDS])
{
	/* (copied with 8 bytes of zeros after it: each field is one 8-byte
	 * load, masked to its length) */
	unsigned char b[STATBLOB_MAX + 8];
	if (!p || n < HEAD || n > STATBLOB_MAX)
		return -1;
	memcpy(b, p, n);
	memset(b + n, 0, 8);
	size_t at = HEAD;
	for (int i = 0; i < STATBLOB_FIELDS; i++) {
		unsigned len = (b[i / 2] >> (4 * (i % 2))) & 15;
		if (len > 8)
			return -1;
		uint64_t v;
		memcpy(&v, b + at, 8);
		if (len < 8)
			v &= ((uint64_t)1 << (8 * len)) - 1;
		f[i] = (int64_t)v;
		at += len;
	}
	/* (past at, b is zeros: an unused nibble of the header must be 0 too) */
	return at == n && !(b[HEAD - 1] >> 4 && STATBLOB_FIELDS % 2) ? 0 : -1;
}

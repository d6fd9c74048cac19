/* source.c — where a file's bytes are read from: a descriptor, or a
 * session's capture in memory; see source.h. */
#include <errno.h>
#include <string.h>
#include "io/io.h"
#include "tree/source.h"

/* The index in c->blk of block b, or -1. */
static int64_t capture_index(const capture *c, int64_t b)
{
	size_t lo = 0, hi = c->runs.n;
	while (lo < hi) { /* the run holding b (runs are sorted) */
		size_t mid = lo + (hi - lo) / 2;
		const blk_run *r = &VEC_AT(&c->runs, blk_run, mid);
		if (r->blkno + r->count <= b)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == c->runs.n || VEC_AT(&c->runs, blk_run, lo).blkno > b)
		return -1;
	return (int64_t)(c->first[lo] + (size_t)(b - VEC_AT(&c->runs, blk_run, lo).blkno));
}

/* Block b of a capture held in memory, or NULL if it holds no such block. */
static const unsigned char *capture_block(const capture *c, int64_t b)
{
	int64_t i = capture_index(c, b);
	return i < 0 ? NULL : c->blk[i];
}

int capture_hash(const capture *c, int64_t b, uint64_t *h)
{
	if (!c || c->fd >= 0 || !c->hashed || (b + 1) * MTM_BLOCK > c->size)
		return 0;
	int64_t i = capture_index(c, b);
	if (i < 0 || !c->hashed[i])
		return 0;
	memcpy(h, c->blk[i] + MTM_BLOCK, sizeof *h);
	return 1;
}

const unsigned char *capture_slot(const capture *c, int64_t b)
{
	if (!c || c->fd >= 0 || !c->hashed)
		return NULL;
	int64_t i = capture_index(c, b);
	return i >= 0 && c->hashed[i] ? c->blk[i] : NULL;
}

int src_pread(file_src src, void *buf, size_t len, int64_t off, size_t *got)
{
	const capture *c = src.mem;
	if (!c || c->fd >= 0)
		return io_pread(c ? c->fd : src.fd, buf, len, (off_t)off, got);
	*got = 0;
	unsigned char *out = buf;
	while (len > 0 && off < c->size) {
		int64_t b = off / MTM_BLOCK, in = off % MTM_BLOCK;
		const unsigned char *p = capture_block(c, b);
		if (!p)
			return EIO;
		int64_t end = (b + 1) * MTM_BLOCK < c->size ? (b + 1) * MTM_BLOCK : c->size;
		size_t n = (size_t)(end - off) < len ? (size_t)(end - off) : len;
		memcpy(out, p + in, n);
		out += n;
		*got += n;
		off += (int64_t)n;
		len -= n;
	}
	return 0;
}

const unsigned char *src_at(file_src src, int64_t off, size_t len)
{
	const capture *c = src.mem;
	if (!c || c->fd >= 0 || !len || off % MTM_BLOCK || off + (int64_t)len > c->size)
		return NULL;
	int64_t b = off / MTM_BLOCK, last = (off + (int64_t)len - 1) / MTM_BLOCK;
	const unsigned char *p = capture_block(c, b);
	for (int64_t k = 1; p && k <= last - b; k++)
		if (capture_block(c, b + k) != p + k * MTM_BLOCK)
			return NULL;
	return p;
}

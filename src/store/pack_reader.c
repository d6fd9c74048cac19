/* pack_reader.c — reading chunks and blocks back from packs (see pack.h):
 * chunk rows looked up or preloaded, records read, checked and decoded,
 * reads announced ahead. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/io.h"
#include "store/pack.h"
#include "store/pack_record.h"
#include "util/error.h"
#include "util/xxh.h"

/* A chunk's row: where its record is and what it holds. */
typedef struct {
	unsigned char hash[16];
	int hash_ok;
	int64_t pack, off, clen, plen;
	int codec;
} chunk_row;

int pack_reader_init(pack_reader *r, mtm_store *s)
{
	memset(r, 0, sizeof *r);
	r->s = s;
	r->willneed.fd = -1;
	r->memo_rows = (vec)VEC_INIT(chunk_row);
	for (int i = 0; i < 8; i++)
		r->fds[i].fd = -1;
	r->dctx = ZSTD_createDCtx();
	r->rbuf = malloc(CHUNK_HEADER_LEN + ZSTD_compressBound(CHUNK_MAX_PLAIN));
	for (int i = 0; i < 4; i++) {
		r->cache[i].data = malloc(CHUNK_MAX_PLAIN);
		if (!r->cache[i].data)
			return mtm_set_error(ENOMEM, "pack reader");
	}
	if (!r->dctx || !r->rbuf)
		return mtm_set_error(ENOMEM, "pack reader");
	int rc = sqlite3_prepare_v2(s->db, "SELECT hash, pack, off, clen, plen, codec FROM chunk WHERE id=?", -1,
	                            &r->lookup, NULL);
	return rc == SQLITE_OK ? 0 : db_error(s, rc, "index");
}

static int pack_fd(pack_reader *r, int64_t pack, int *fd)
{
	for (int i = 0; i < 8; i++)
		if (r->fds[i].fd >= 0 && r->fds[i].id == pack) {
			*fd = r->fds[i].fd;
			return 0;
		}
	char name[64];
	pack_name(name, sizeof name, pack);
	int slot = (int)(pack % 8), nfd;
	/* never blocks: a FIFO put in a pack's place fails here */
	int rc = io_open_regular(r->s->dirfd, name, O_RDONLY | O_NOFOLLOW, &nfd);
	if (rc)
		return mtm_set_error(rc == ENOENT || rc == ENOTPLAIN ? MTM_ECORRUPT : rc, "%s/.metamori/%s: %s", r->s->root,
		                     name, rc == ENOENT ? "pack file is missing" : mtm_strerror(rc));
	if (r->fds[slot].fd >= 0) {
		if (r->fds[slot].fd == r->willneed.fd)
			pack_prefetch_flush(r); /* (while the fd is still that pack) */
		close(r->fds[slot].fd);
	}
	r->fds[slot].id = pack;
	r->fds[slot].fd = nfd;
	*fd = nfd;
	return 0;
}


/* Chunk rows pack_preload remembered: memo maps a chunk id to its index in
 * memo_rows + 1. At most MEMO_MAX; past it, rows are looked up each time. */
#define MEMO_MAX ((size_t)1 << 18)

static const chunk_row *memo_get(const pack_reader *r, int64_t id)
{
	const uint64_t *v = keymap_get(&r->memo, id, 0);
	return v && *v ? &VEC_AT(&r->memo_rows, chunk_row, *v - 1) : NULL;
}

int pack_chunk_where(const pack_reader *r, int64_t chunk_id, int64_t *pack, int64_t *off)
{
	const chunk_row *c = memo_get(r, chunk_id);
	if (c) {
		*pack = c->pack;
		*off = c->off;
	}
	return c != NULL;
}

static void memo_put(pack_reader *r, int64_t id, const chunk_row *c)
{
	int fresh;
	uint64_t *v = r->memo_rows.n < MEMO_MAX ? keymap_put(&r->memo, id, 0, &fresh) : NULL;
	chunk_row *row = v && fresh ? vec_push(&r->memo_rows) : NULL;
	if (!row)
		return; /* (a key left at 0 reads as absent: memo_get) */
	*row = *c;
	*v = r->memo_rows.n;
}

/* The columns of a chunk row from column col on (hash, pack, off, clen,
 * plen, codec). */
static void chunk_row_read(sqlite3_stmt *q, int col, chunk_row *c)
{
	memset(c->hash, 0, sizeof c->hash);
	c->hash_ok = sqlite3_column_bytes(q, col) == 16;
	if (c->hash_ok)
		memcpy(c->hash, sqlite3_column_blob(q, col), 16);
	c->pack = sqlite3_column_int64(q, col + 1);
	c->off = sqlite3_column_int64(q, col + 2);
	c->clen = sqlite3_column_int64(q, col + 3);
	c->plen = sqlite3_column_int64(q, col + 4);
	c->codec = sqlite3_column_int(q, col + 5);
}

/* Looks chunk_id up (MTM_ECORRUPT if no row names it). */
static int lookup_chunk(pack_reader *r, int64_t chunk_id, chunk_row *c)
{
	const chunk_row *kept = memo_get(r, chunk_id);
	if (kept) {
		*c = *kept;
		return 0;
	}
	sqlite3_reset(r->lookup);
	sqlite3_bind_int64(r->lookup, 1, chunk_id);
	int rc = sqlite3_step(r->lookup);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(r->lookup);
		if (rc == SQLITE_DONE)
			return mtm_set_error(MTM_ECORRUPT, "index: chunk %lld is referenced but missing", (long long)chunk_id);
		return db_error(r->s, rc, "index");
	}
	chunk_row_read(r->lookup, 0, c);
	sqlite3_reset(r->lookup);
	return 0;
}

/* Rows closer than this to the cursor are stepped to, not sought. */
#define PRELOAD_STEP 8

void pack_preload(pack_reader *r, const int64_t *ids, size_t n)
{
	sqlite3_stmt *q = NULL;
	if (sqlite3_prepare_v2(r->s->db, "SELECT id, hash, pack, off, clen, plen, codec FROM chunk WHERE id >= ?1 ORDER BY id",
	                       -1, &q, NULL) != SQLITE_OK)
		return; /* best effort: each lookup then seeks */
	int64_t cur = -1; /* the cursor's row id; -1: not on a row */
	for (size_t i = 0; i < n; i++) {
		int64_t want = ids[i];
		if (memo_get(r, want) || r->memo_rows.n >= MEMO_MAX)
			continue;
		if (cur < 0 || cur > want || want - cur > PRELOAD_STEP) {
			sqlite3_reset(q);
			sqlite3_bind_int64(q, 1, want);
			cur = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
		}
		while (cur >= 0 && cur < want)
			cur = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
		if (cur == want) {
			chunk_row c;
			chunk_row_read(q, 1, &c);
			memo_put(r, want, &c);
		} /* else missing: its lookup reports it */
	}
	sqlite3_finalize(q);
}

int pack_read(pack_reader *r, int64_t chunk_id, const unsigned char **plain, size_t *plen)
{
	pack_prefetch_flush(r);
	for (int i = 0; i < 4; i++)
		if (r->cache[i].id == chunk_id && r->cache[i].len) {
			*plain = r->cache[i].data;
			*plen = r->cache[i].len;
			return 0;
		}
	chunk_row c;
	int rc;
	MTM_TRY(lookup_chunk(r, chunk_id, &c));
	const unsigned char *want_hash = c.hash;
	int64_t pack = c.pack, off = c.off, clen = c.clen, want_plen = c.plen;
	if (!c.hash_ok || pack <= 0 || off < PACK_HEADER_LEN || clen <= 0 ||
	    (uint64_t)clen > ZSTD_compressBound(CHUNK_MAX_PLAIN) || want_plen <= 0 || want_plen > CHUNK_MAX_PLAIN)
		return mtm_set_error(MTM_ECORRUPT, "index: chunk %lld has an impossible location", (long long)chunk_id);
	int fd = -1;
	MTM_TRY(pack_fd(r, pack, &fd));
	size_t got, need = CHUNK_HEADER_LEN + (size_t)clen;
	if ((rc = io_pread(fd, r->rbuf, need, (off_t)off, &got)))
		return mtm_set_errno(rc, "%s/.metamori/packs: reading pack %lld", r->s->root, (long long)pack);
	r->bytes_read += got;
	int slot = (int)(r->next_victim++ % 4);
	r->cache[slot].len = 0;
	size_t n;
	unsigned char h[16];
	if ((rc = chunk_decode(r->dctx, r->rbuf, got, r->cache[slot].data, &n, h)))
		return mtm_set_error(rc, "pack %lld offset %lld (chunk %lld): %s", (long long)pack, (long long)off,
		                     (long long)chunk_id, mtm_last_error());
	if ((int64_t)n != want_plen || memcmp(h, want_hash, 16) != 0 || (int64_t)get32(r->rbuf + 12) != clen)
		return mtm_set_error(MTM_ECORRUPT, "pack %lld offset %lld (chunk %lld): chunk does not match the index",
		                     (long long)pack, (long long)off, (long long)chunk_id);
	r->cache[slot].id = chunk_id;
	r->cache[slot].len = n;
	*plain = r->cache[slot].data;
	*plen = n;
	return 0;
}

int pack_read_block(pack_reader *r, int64_t chunk_id, int64_t boff, uint64_t hash, unsigned char *out)
{
	pack_prefetch_flush(r);
	chunk_row c;
	int rc;
	MTM_TRY(lookup_chunk(r, chunk_id, &c));
	int64_t pack = c.pack, off = c.off, clen = c.clen, plen = c.plen;
	int codec = c.codec;
	const unsigned char *plain;
	size_t n;
	uint64_t sum = 0;
	if (codec != CODEC_RAW || clen != plen || boff < 0 || boff * MTM_BLOCK >= plen || pack <= 0 ||
	    off < PACK_HEADER_LEN || plen > CHUNK_MAX_PLAIN) {
		/* compressed (or a row pack_read will reject with the right words) */
		MTM_TRY(pack_read(r, chunk_id, &plain, &n));
		size_t from = (size_t)boff * MTM_BLOCK, have = from < n ? n - from : 0;
		if (have > MTM_BLOCK)
			have = MTM_BLOCK;
		memcpy(out, plain + (from < n ? from : n), have);
		memset(out + have, 0, MTM_BLOCK - have);
		sum = XXH3_64bits(out, MTM_BLOCK);
	} else {
		int fd = -1;
		MTM_TRY(pack_fd(r, pack, &fd));
		size_t have = (size_t)(plen - boff * MTM_BLOCK);
		if (have > MTM_BLOCK)
			have = MTM_BLOCK;
		if ((rc = io_pread(fd, out, have, (off_t)(off + CHUNK_HEADER_LEN + boff * MTM_BLOCK), &n)))
			return mtm_set_errno(rc, "%s/.metamori/packs: reading pack %lld", r->s->root, (long long)pack);
		r->bytes_read += n;
		memset(out + n, 0, MTM_BLOCK - n);
		if (n < have || (sum = XXH3_64bits(out, MTM_BLOCK)) != hash) {
			/* what is wrong: the record (its header) or the block in it */
			size_t got = 0;
			if (!r->blockbuf && !(r->blockbuf = malloc(CHUNK_HEADER_LEN)))
				return mtm_set_error(ENOMEM, "pack reader");
			if ((rc = io_pread(fd, r->blockbuf, CHUNK_HEADER_LEN, (off_t)off, &got)))
				return mtm_set_errno(rc, "%s/.metamori/packs: reading pack %lld", r->s->root, (long long)pack);
			if (n < have || got < CHUNK_HEADER_LEN || memcmp(r->blockbuf, CHUNK_MAGIC, CHUNK_MAGIC_LEN) != 0 ||
			    r->blockbuf[4] != CODEC_RAW || get32(r->blockbuf + 8) != (uint32_t)plen ||
			    get32(r->blockbuf + 12) != (uint32_t)clen)
				return mtm_set_error(MTM_ECORRUPT,
				                     "pack %lld offset %lld (chunk %lld): chunk record does not match the index",
				                     (long long)pack, (long long)off, (long long)chunk_id);
		}
	}
	if (sum != hash)
		return mtm_set_error(MTM_ECORRUPT, "pack %lld offset %lld (chunk %lld): block %lld does not match its hash",
		                     (long long)pack, (long long)off, (long long)chunk_id, (long long)boff);
	return 0;
}

void pack_prefetch(pack_reader *r, int64_t chunk_id, int64_t boff, int whole)
{
	chunk_row c;
	int fd = -1;
	if (lookup_chunk(r, chunk_id, &c)) { /* the read itself reports it */
		mtm_clear_error();
		return;
	}
	int64_t pack = c.pack, off = c.off, clen = c.clen, plen = c.plen;
	int codec = c.codec;
	if (pack <= 0 || off < PACK_HEADER_LEN || clen <= 0 || clen > CHUNK_MAX_PLAIN * 2 || pack_fd(r, pack, &fd)) {
		mtm_clear_error();
		return;
	}
	int64_t from = off, to = off + CHUNK_HEADER_LEN + clen;
	if (!whole && codec == CODEC_RAW && clen == plen) {
		from = off + CHUNK_HEADER_LEN + boff * MTM_BLOCK;
		to = from + MTM_BLOCK;
	}
	/* A restore announces its blocks in the order they lie: the blocks of
	 * one record, and records written one after the other, go to the
	 * kernel as one range (one call and one larger read, where there was
	 * one of each per 4 KiB block), reading a little between them. */
	enum { GAP = 64 << 10 };
	if (r->willneed.fd == fd && from >= r->willneed.from && from <= r->willneed.to + GAP) {
		if (to > r->willneed.to)
			r->willneed.to = to;
		return;
	}
	pack_prefetch_flush(r);
	r->willneed.fd = fd;
	r->willneed.from = from;
	r->willneed.to = to;
}

void pack_prefetch_flush(pack_reader *r)
{
	if (r->willneed.fd >= 0 && r->willneed.to > r->willneed.from)
		posix_fadvise(r->willneed.fd, (off_t)r->willneed.from, (off_t)(r->willneed.to - r->willneed.from), POSIX_FADV_WILLNEED);
	r->willneed.fd = -1;
}

int pack_block_if_cached(pack_reader *r, int64_t chunk_id, int64_t boff, uint64_t hash, unsigned char *out)
{
	chunk_row c;
	int fd = -1;
	if (lookup_chunk(r, chunk_id, &c)) {
		mtm_clear_error();
		return 0;
	}
	if (c.codec == CODEC_RAW && c.clen == c.plen && boff >= 0 && boff * MTM_BLOCK < c.plen && c.pack > 0 &&
	    c.off >= PACK_HEADER_LEN && c.plen <= CHUNK_MAX_PLAIN && !pack_fd(r, c.pack, &fd)) {
		size_t have = (size_t)(c.plen - boff * MTM_BLOCK);
		if (have > MTM_BLOCK)
			have = MTM_BLOCK;
		struct iovec iov = {out, have};
		/* the read itself, if it need not wait for the disk (no fault
		 * point: anything but a whole, matching block is left to it) */
		ssize_t n = preadv2(fd, &iov, 1, (off_t)(c.off + CHUNK_HEADER_LEN + boff * MTM_BLOCK), RWF_NOWAIT);
		if (n == (ssize_t)have) {
			memset(out + have, 0, MTM_BLOCK - have);
			if (XXH3_64bits(out, MTM_BLOCK) == hash) {
				r->bytes_read += have;
				return 1;
			}
		}
	}
	mtm_clear_error();
	pack_prefetch(r, chunk_id, boff, 0);
	return 0;
}

void pack_reader_free(pack_reader *r)
{
	r->willneed.fd = -1; /* (nothing to announce: nobody reads now) */
	for (int i = 0; i < 8; i++)
		if (r->fds[i].fd >= 0)
			close(r->fds[i].fd);
	for (int i = 0; i < 4; i++)
		free(r->cache[i].data);
	sqlite3_finalize(r->lookup);
	ZSTD_freeDCtx(r->dctx);
	free(r->rbuf);
	free(r->blockbuf);
	keymap_free(&r->memo);
	vec_free(&r->memo_rows);
	memset(r, 0, sizeof *r);
}

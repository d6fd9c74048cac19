/* filemap.c — see filemap.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "io/io.h"
#include "restore/filemap.h"
#include "util/error.h"
#include "util/keymap.h"

#define WBUF (1u << 20)

/* (chunk, boff) -> the block's copy; never shrinks (one restore's life).
 * The blocks live in slabs of SLAB_BLOCKS, each mapped and populated at once:
 * a malloc per block cost more than reading the block (its page faults one
 * at a time). */
struct blockcache {
	keymap map;  /* value: the copy's address; 0 while it has none */
	size_t max_n;
	unsigned char **slabs;
	size_t nslabs, slab_used; /* blocks used in the last slab */
};
#define SLAB_BLOCKS 256

blockcache *blockcache_new(size_t budget_bytes)
{
	blockcache *bc = calloc(1, sizeof *bc);
	if (!bc)
		return NULL;
	bc->max_n = budget_bytes / MTM_BLOCK;
	return bc;
}

void blockcache_free(blockcache *bc)
{
	if (!bc)
		return;
	for (size_t i = 0; i < bc->nslabs; i++)
		munmap(bc->slabs[i], (size_t)SLAB_BLOCKS * MTM_BLOCK);
	free(bc->slabs);
	keymap_free(&bc->map);
	free(bc);
}

/* The kept copy of a block, or NULL. */
static const unsigned char *bc_get(const blockcache *bc, int64_t chunk, int64_t boff)
{
	const uint64_t *v = bc ? keymap_get(&bc->map, chunk, boff) : NULL;
	return v && *v ? (const unsigned char *)(uintptr_t)*v : NULL;
}

static int bc_has_room(const blockcache *bc) { return bc && bc->map.n < bc->max_n; }

/* Keeps a copy of one block; quietly does nothing past the budget. */
static void bc_put(blockcache *bc, int64_t chunk, int64_t boff, const unsigned char *data)
{
	int fresh;
	uint64_t *v = bc_has_room(bc) ? keymap_put(&bc->map, chunk, boff, &fresh) : NULL;
	if (!v || *v)
		return;
	if (!bc->nslabs || bc->slab_used == SLAB_BLOCKS) {
		unsigned char **ns = realloc(bc->slabs, (bc->nslabs + 1) * sizeof *ns);
		if (!ns)
			return;
		bc->slabs = ns;
		void *m = mmap(NULL, (size_t)SLAB_BLOCKS * MTM_BLOCK, PROT_READ | PROT_WRITE,
		               MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (m == MAP_FAILED)
			return;
		bc->slabs[bc->nslabs++] = m;
		bc->slab_used = 0;
	}
	unsigned char *copy = bc->slabs[bc->nslabs - 1] + (bc->slab_used++) * MTM_BLOCK;
	memcpy(copy, data, MTM_BLOCK);
	*v = (uint64_t)(uintptr_t)copy;
}

typedef struct {
	pack_reader *pr;
	blockcache *bc;
	unsigned char one[MTM_BLOCK]; /* the block being put */
	int scattered;                /* a short run: read single blocks, not chunks */
	int fd, dry;
	unsigned char *buf;
	int64_t buf_start; /* blkno of buf[0], -1 when empty */
	size_t buf_len;
	uint64_t *bytes;
} writer;

static int wflush(writer *w)
{
	if (w->buf_start < 0 || !w->buf_len)
		return 0;
	int rc = w->dry ? 0 : io_pwrite(w->fd, w->buf, w->buf_len, (off_t)(w->buf_start * MTM_BLOCK));
	if (rc)
		return mtm_set_errno(rc, "write");
	if (w->bytes && !w->dry)
		*w->bytes += w->buf_len;
	w->buf_start = -1;
	w->buf_len = 0;
	return 0;
}

/* Puts one block (len bytes: the last block of a file may be short). */
static int put_block(writer *w, const blockref *b, int64_t len, int punch)
{
	if (!b || b->chunk == 0) {
		MTM_TRY(wflush(w));
		if (punch && !w->dry) {
			int rc = io_punch_hole(w->fd, (off_t)(b ? b->blkno : 0) * MTM_BLOCK, (off_t)len);
			if (rc)
				return mtm_set_errno(rc, "punch hole");
		}
		return 0;
	}
	const unsigned char *blk; /* the block's bytes: have of them, the rest zeros */
	size_t have;
	const unsigned char *kept = bc_get(w->bc, b->chunk, b->boff);
	if (kept) { /* verified already (filemap_gather, the dry pass): stands for its chunk */
		if (w->dry)
			return 0;
		blk = kept;
		have = MTM_BLOCK;
	} else if (w->scattered) {
		/* only this block, checked against its hash in the index (a raw
		 * chunk is not read whole for one of its 16 blocks) */
		MTM_TRY(pack_read_block(w->pr, b->chunk, b->boff, b->hash, w->one));
		blk = w->one;
		have = MTM_BLOCK;
		if (w->dry) {
			bc_put(w->bc, b->chunk, b->boff, blk);
			return 0; /* read and verified: nothing to write */
		}
	} else { /* runs of blocks: whole chunks, read once each */
		const unsigned char *plain;
		size_t plen, from = (size_t)b->boff * MTM_BLOCK;
		MTM_TRY(pack_read(w->pr, b->chunk, &plain, &plen));
		blk = plain + (from < plen ? from : plen);
		have = from < plen ? plen - from : 0;
		if (w->dry) {
			if (have >= MTM_BLOCK)
				bc_put(w->bc, b->chunk, b->boff, blk);
			return 0; /* read and verified: nothing to write */
		}
	}
	if (w->buf_start >= 0 && (b->blkno != w->buf_start + (int64_t)(w->buf_len / MTM_BLOCK) ||
	                          w->buf_len % MTM_BLOCK || w->buf_len + MTM_BLOCK > WBUF))
		MTM_TRY(wflush(w));
	if (w->buf_start < 0)
		w->buf_start = b->blkno;
	unsigned char *dst = w->buf + w->buf_len;
	if (have > (size_t)len)
		have = (size_t)len;
	memcpy(dst, blk, have);
	memset(dst + have, 0, (size_t)len - have); /* a short last block of an older, shorter version */
	w->buf_len += (size_t)len;
	return 0;
}

/* A run this short is read block by block, not chunk by chunk. */
#define SCATTERED_RUN(count) ((count) < 4)

static int cmp_need(const void *x, const void *y)
{
	const blockref *a = x, *b = y;
	if (a->chunk != b->chunk)
		return a->chunk < b->chunk ? -1 : 1;
	return a->boff < b->boff ? -1 : a->boff > b->boff;
}

typedef struct { int64_t pack, off, boff; size_t i; } placed;

static int cmp_placed(const void *x, const void *y)
{
	const placed *a = x, *b = y;
	if (a->pack != b->pack)
		return a->pack < b->pack ? -1 : 1;
	if (a->off != b->off)
		return a->off < b->off ? -1 : 1;
	return a->boff < b->boff ? -1 : a->boff > b->boff;
}

void filemap_gather(pack_reader *pr, blockcache *bc, const filemap_job *jobs, size_t njobs)
{
	vec need = VEC_INIT(blockref);
	for (size_t j = 0; j < njobs; j++) {
		const vec *map = jobs[j].map, *runs = jobs[j].runs;
		int64_t last = 0, nblocks = (jobs[j].size + MTM_BLOCK - 1) / MTM_BLOCK;
		for (size_t r = 0; r < runs->n; r++) {
			const blk_run *run = &VEC_AT(runs, blk_run, r);
			int scattered = SCATTERED_RUN(run->count);
			for (int64_t k = run->blkno; k < run->blkno + run->count && k < nblocks; k++) {
				const blockref *b = file_map_find(map, k);
				if (b && b->chunk && scattered) {
					blockref *n = vec_push(&need);
					if (n)
						*n = *b;
				} else if (b && b->chunk && b->chunk != last) {
					pack_prefetch(pr, b->chunk, b->boff, 1);
				}
				if (b)
					last = b->chunk;
			}
		}
	}
	/* in chunk order: one pass over the chunk rows, and the packs read
	 * mostly forwards (chunk ids grow as packs are appended to) */
	if (need.n > 1)
		qsort(need.v, need.n, sizeof(blockref), cmp_need);
	int64_t *ids = need.n ? malloc(need.n * sizeof *ids) : NULL;
	size_t nids = 0;
	for (size_t i = 0; ids && i < need.n; i++)
		if (!nids || ids[nids - 1] != VEC_AT(&need, blockref, i).chunk)
			ids[nids++] = VEC_AT(&need, blockref, i).chunk;
	if (ids)
		pack_preload(pr, ids, nids);
	free(ids);
	/* and then read in the order they lie in the packs: a session writes
	 * blocks ahead as the program writes them (session/prewrite.c), so
	 * chunk ids, given out at the checkpoint in path order, are not in
	 * the records' order there */
	placed *at = need.n > 1 ? malloc(need.n * sizeof *at) : NULL;
	for (size_t i = 0; at && i < need.n; i++) {
		const blockref *b = &VEC_AT(&need, blockref, i);
		at[i] = (placed){0, 0, b->boff, i};
		if (!pack_chunk_where(pr, b->chunk, &at[i].pack, &at[i].off))
			at[i].pack = INT64_MAX, at[i].off = b->chunk; /* (unknown: last, in chunk order) */
	}
	if (at)
		qsort(at, need.n, sizeof *at, cmp_placed);
	unsigned char one[MTM_BLOCK];
	for (size_t k = 0; k < need.n; k++) {
		size_t i = at ? at[k].i : k;
		const blockref *b = &VEC_AT(&need, blockref, i);
		if (k && !cmp_need(b, &VEC_AT(&need, blockref, at ? at[k - 1].i : k - 1)))
			continue; /* the same block twice */
		if (bc_has_room(bc)) {
			if (pack_block_if_cached(pr, b->chunk, b->boff, b->hash, one))
				bc_put(bc, b->chunk, b->boff, one);
		} else {
			pack_prefetch(pr, b->chunk, b->boff, 0);
		}
	}
	pack_prefetch_flush(pr);
	free(at);
	vec_free(&need);
}

int filemap_write(pack_reader *pr, blockcache *bc, int fd, const vec *map, int64_t size, const vec *runs, int punch,
                  int dry, uint64_t *bytes)
{
	writer w = {.pr = pr, .bc = bc, .fd = fd, .dry = dry, .buf_start = -1, .bytes = bytes};
	w.buf = malloc(WBUF);
	if (!w.buf)
		return mtm_set_error(ENOMEM, "restore");
	int64_t nblocks = (size + MTM_BLOCK - 1) / MTM_BLOCK;
	int rc = 0;
	if (!runs) {
		for (size_t i = 0; i < map->n && !rc; i++) {
			const blockref *b = &VEC_AT(map, blockref, i);
			if (b->blkno >= nblocks)
				break;
			if (b->chunk)
				rc = put_block(&w, b, b->blkno == nblocks - 1 ? size - b->blkno * MTM_BLOCK : MTM_BLOCK, 0);
		}
	} else {
		for (size_t r = 0; r < runs->n && !rc; r++) {
			const blk_run *run = &VEC_AT(runs, blk_run, r);
			w.scattered = SCATTERED_RUN(run->count);
			for (int64_t k = run->blkno; k < run->blkno + run->count && k < nblocks && !rc; k++) {
				const blockref *b = file_map_find(map, k);
				blockref hole = {.blkno = k};
				rc = put_block(&w, b ? b : &hole, k == nblocks - 1 ? size - k * MTM_BLOCK : MTM_BLOCK, punch);
			}
		}
	}
	if (!rc)
		rc = wflush(&w);
	free(w.buf);
	return rc;
}

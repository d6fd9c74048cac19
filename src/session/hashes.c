/*
 * hashes.c — the block hashes of the files a tracked checkpoint compared
 * whole: gathered while it runs (pending), kept in ss->hashes once it
 * commits, so that the next compare copies out only the blocks that differ.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "session/tctx.h"
#include "util/error.h"
#include "util/xxh.h"

void block_hashes_free(void *p)
{
	block_hashes *b = p;
	if (b)
		free(b->h);
	free(b);
}

void pending_free(void *p)
{
	pending_hashes *ph = p;
	if (ph)
		free(ph->bh.h);
	free(ph);
}

uint64_t block_hash(const unsigned char *blk, size_t len)
{
	unsigned char pad[MTM_BLOCK];
	if (len < MTM_BLOCK) {
		memcpy(pad, blk, len);
		memset(pad + len, 0, MTM_BLOCK - len);
		blk = pad;
	}
	return XXH3_64bits(blk, MTM_BLOCK);
}

int add_pending(tctx *t, const char *path, const struct stat *st, uint64_t *h, const capture *cap)
{
	pending_hashes *ph = calloc(1, sizeof *ph);
	if (!ph || pathmap_put(&t->pending, path, ph)) {
		free(ph);
		free(h);
		return mtm_set_error(ENOMEM, "checkpoint");
	}
	ph->bh.dev = (int64_t)st->st_dev;
	ph->bh.ino = (int64_t)st->st_ino;
	ph->bh.n = ((int64_t)st->st_size + MTM_BLOCK - 1) / MTM_BLOCK;
	ph->bh.h = h;
	ph->cap = cap;
	ph->size = (int64_t)st->st_size;
	return 0;
}

/* After the commit: the hashes of the files compared whole, at checkpoint id. */
void keep_hashes(tctx *t, mtm_id id)
{
	pathmap next = {0};
	for (size_t i = 0; i < t->pending.cap; i++) {
		pending_hashes *ph = t->pending.slots[i].val;
		if (!t->pending.slots[i].key || !ph)
			continue;
		if (!ph->bh.h) { /* from the whole copy */
			int64_t n = ph->bh.n;
			unsigned char *buf = malloc(1 << 20);
			uint64_t *h = malloc((size_t)(n ? n : 1) * sizeof *h);
			int ok = buf && h;
			for (int64_t off = 0; ok && off < ph->size;) {
				size_t want = (size_t)(ph->size - off < (1 << 20) ? ph->size - off : (1 << 20)), got;
				if (!ph->cap || src_pread((file_src){-1, ph->cap}, buf, want, off, &got) || got != want) {
					ok = 0;
					break;
				}
				for (size_t o = 0; o < want; o += MTM_BLOCK)
					h[(off + (int64_t)o) / MTM_BLOCK] = block_hash(buf + o, want - o < MTM_BLOCK ? want - o : MTM_BLOCK);
				off += (int64_t)want;
			}
			free(buf);
			if (!ok) {
				free(h);
				continue;
			}
			ph->bh.h = h;
		}
		block_hashes *bh = malloc(sizeof *bh);
		if (!bh)
			continue;
		*bh = ph->bh;
		bh->at = id;
		ph->bh.h = NULL;
		if (pathmap_put(&next, t->pending.slots[i].key, bh))
			block_hashes_free(bh);
	}
	pathmap_free(&t->ss->hashes, block_hashes_free);
	t->ss->hashes = next;
}

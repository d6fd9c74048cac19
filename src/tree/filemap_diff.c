/* filemap_diff.c — see filemap_diff.h. */
#include <errno.h>
#include <stdint.h>
#include "tree/filemap_diff.h"
#include "util/error.h"

int filemap_add_run(vec *runs, int64_t blkno)
{
	if (runs->n) {
		blk_run *last = &VEC_AT(runs, blk_run, runs->n - 1);
		if (last->blkno + last->count == blkno) {
			last->count++;
			return 0;
		}
	}
	blk_run *r = vec_push(runs);
	if (!r)
		return mtm_set_error(ENOMEM, "restore");
	r->blkno = blkno;
	r->count = 1;
	return 0;
}

int filemap_diff(const vec *a, int64_t a_size, const vec *b, int64_t b_size, vec *runs, uint64_t *bytes)
{
	int64_t nblocks = (a_size + MTM_BLOCK - 1) / MTM_BLOCK;
	int64_t b_blocks = (b_size + MTM_BLOCK - 1) / MTM_BLOCK; /* b's rows past its end are stale */
	uint64_t zh = zero_block_hash();
	size_t i = 0, j = 0;
	while (i < a->n || j < b->n) {
		int64_t ba = i < a->n ? VEC_AT(a, blockref, i).blkno : INT64_MAX;
		int64_t bb = j < b->n ? VEC_AT(b, blockref, j).blkno : INT64_MAX;
		int64_t blk = ba < bb ? ba : bb;
		if (blk >= nblocks)
			break;
		uint64_t ha = ba == blk ? VEC_AT(a, blockref, i).hash : zh;
		uint64_t hb = bb == blk && blk < b_blocks ? VEC_AT(b, blockref, j).hash : zh;
		if (ha != hb) {
			MTM_TRY(filemap_add_run(runs, blk));
			/* a's bytes in the block: the last block counts up to a's end,
			 * as a checkpoint and status count it */
			if (bytes)
				*bytes += (uint64_t)(a_size - blk * MTM_BLOCK < MTM_BLOCK ? a_size - blk * MTM_BLOCK : MTM_BLOCK);
		}
		if (ba == blk)
			i++;
		if (bb == blk)
			j++;
	}
	return 0;
}

/*
 * regions.c — memory regions (mtm_protect) back from a checkpoint, for
 * mtm_recover (api/recover.c), which restores the tree afterwards.
 *
 * Every block is read and verified (pack_read_block) on its way into
 * memory, so a damaged store fails before the tree is touched. The handle
 * keeps the block hashes it read, so the next checkpoint (whose parent is
 * the recovered one) compares memory with them without reading the index.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "store/index.h"
#include "store/lineage.h"
#include "store/pack.h"
#include "restore/restore.h"
#include "store/region.h"
#include "restore/restore.h"
#include "util/error.h"

/* Copies version row of region g at lineage l into g's memory. */
static int read_region(mtm_store *s, pack_reader *pr, const lineage *l, mtm_region *g, const region_row *row, mtm_id id)
{
	int64_t nblocks = ((int64_t)g->len + MTM_BLOCK - 1) / MTM_BLOCK;
	uint64_t *hashes = malloc((size_t)(nblocks ? nblocks : 1) * sizeof *hashes);
	if (!hashes)
		return mtm_set_error(ENOMEM, "recover: region %s", g->name);
	vec map = VEC_INIT(blockref);
	int rc = index_file_map(s, row->file_id, l, &map);
	const uint64_t zh = zero_block_hash();
	unsigned char *mem = (unsigned char *)g->ptr, blk[MTM_BLOCK];
	size_t mi = 0;
	for (int64_t b = 0; b < nblocks && !rc; b++) {
		while (mi < map.n && VEC_AT(&map, blockref, mi).blkno < b)
			mi++;
		const blockref *br = mi < map.n && VEC_AT(&map, blockref, mi).blkno == b ? &VEC_AT(&map, blockref, mi) : NULL;
		size_t off = (size_t)b * MTM_BLOCK, len = g->len - off < MTM_BLOCK ? g->len - off : MTM_BLOCK;
		hashes[b] = br ? br->hash : zh;
		if (!br || !br->chunk) {
			if (br && br->hash != zh)
				rc = mtm_set_error(MTM_ECORRUPT, "%s/.metamori/index.db: region %s: block %lld: a hole with a data hash",
				                   s->root, g->name, (long long)b);
			else
				memset(mem + off, 0, len);
			continue;
		}
		if (!(rc = pack_read_block(pr, br->chunk, br->boff, br->hash, blk)))
			memcpy(mem + off, blk, len);
	}
	vec_free(&map);
	if (rc) {
		free(hashes);
		return mtm_set_error(rc, "recover: region %s at checkpoint %lld: %s", g->name, (long long)id, mtm_last_error());
	}
	free(g->hashes);
	g->hashes = hashes;
	g->hashes_at = id;
	g->file_id = row->file_id;
	return 0;
}

int restore_regions(mtm_store *s, mtm_id id)
{
	lineage l = {0};
	region_row *rows = NULL;
	size_t n = 0;
	MTM_TRY(lineage_of(s, id, &l));
	int rc = db_exec(s, "BEGIN");
	if (rc) {
		lineage_free(&l);
		return rc;
	}
	rc = region_rows_at(s, &l, &rows, &n);
	/* every length is checked before any memory is written */
	for (size_t i = 0; i < s->n_regions && !rc; i++) {
		const region_row *row = region_row_find(rows, n, s->regions[i].name);
		if (row && row->size != (int64_t)s->regions[i].len)
			rc = mtm_set_error(MTM_EINVAL, "recover: region %s: %lld bytes at checkpoint %lld, %llu registered",
			                   s->regions[i].name, (long long)row->size, (long long)id,
			                   (unsigned long long)s->regions[i].len);
	}
	pack_reader pr;
	int have_reader = 0;
	if (!rc && !(rc = pack_reader_init(&pr, s)))
		have_reader = 1;
	for (size_t i = 0; i < s->n_regions && !rc; i++) {
		const region_row *row = region_row_find(rows, n, s->regions[i].name);
		if (row)
			rc = read_region(s, &pr, &l, &s->regions[i], row, id);
	}
	if (have_reader)
		pack_reader_free(&pr);
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	region_rows_free(rows, n);
	lineage_free(&l);
	return rc;
}

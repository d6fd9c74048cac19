/*
 * plan_file.c — how a live regular file becomes a checkpoint's version:
 * nothing, its metadata, its differing blocks patched, or rewritten whole.
 * The blocks that differ are found through the index when the stat cache
 * vouches for the live file (through the history between head and target
 * when it can: diff_changed), by hashing the live file otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/xattr.h"
#include "restore/rctx.h"
#include "store/index.h"
#include "tree/filemap_diff.h"
#include "util/error.h"

typedef struct { vec *runs; } run_collect;

static int collect_run(void *arg, int64_t blkno, int nblocks, const unsigned char *data, size_t len,
                       const uint64_t *hashes, int zero, int lasting)
{
	run_collect *rc = arg;
	for (int i = 0; i < nblocks; i++)
		MTM_TRY(filemap_add_run(rc->runs, blkno + i));
	return 0;
}

/* A live file whose content is already te's: only its metadata may differ.
 * A name of a hard-linked file is rewritten instead (a new inode), so that
 * setting its metadata cannot change the other names. */
static int file_meta_action(rctx *c, plan_item *p)
{
	if (!meta_differs(p->te, &p->li->st) && !p->xattrs_differ)
		return ACT_NONE;
	if (p->li->st.st_nlink > 1) {
		c->total += (uint64_t)p->te->size;
		return ACT_REWRITE;
	}
	return ACT_META;
}

/* The live file holds the head's version he, of te's history: only the
 * blocks some checkpoint between the two wrote can differ (c->between),
 * and the blocks te has past he's end. Each is looked up under both
 * lineages; p->map gets te's rows for those blocks only. */
static int diff_changed(rctx *c, plan_item *p, const entry *he)
{
	const entry *te = p->te;
	const int64_t B = MTM_BLOCK, nblocks = (te->size + B - 1) / B, hblocks = (he->size + B - 1) / B;
	const uint64_t zh = zero_block_hash();
	size_t lo = 0, hi = c->between.n;
	while (lo < hi) { /* the first key of te's file */
		size_t mid = lo + (hi - lo) / 2;
		if (VEC_AT(&c->between, blockkey, mid).file_id < te->file_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t i = lo;
	int64_t tail = hblocks; /* [hblocks, nblocks): past the head's end */
	for (;;) {
		int64_t listed = i < c->between.n && VEC_AT(&c->between, blockkey, i).file_id == te->file_id
		                     ? VEC_AT(&c->between, blockkey, i).blkno : INT64_MAX;
		int64_t blk = listed < tail ? listed : tail;
		if (blk >= nblocks)
			break;
		if (blk == listed)
			i++;
		if (blk == tail)
			tail++;
		blockref r[2]; /* te's row, he's (one file: the caller checked) */
		int f[2];
		MTM_TRY(index_block_pair(c->s, te->file_id, blk, &c->lin_k, &c->lin_h, c->log_empty, r, f));
		if (blk >= hblocks)
			f[1] = 0; /* past the head's end: zeros */
		if (f[0]) {
			blockref *b = vec_push(&p->map);
			if (!b)
				return mtm_set_error(ENOMEM, "restore");
			*b = r[0];
		}
		if ((f[0] ? r[0].hash : zh) != (f[1] ? r[1].hash : zh))
			MTM_TRY(filemap_add_run(&p->runs, blk));
	}
	return 0;
}

static int plan_file_as(rctx *c, plan_item *p, const vec *head_tree, pathmap *sc, int *partial);

/* Decides how a live regular file becomes version te. */
int plan_file(rctx *c, plan_item *p, const vec *head_tree, pathmap *sc)
{
	int partial = 0;
	MTM_TRY(plan_file_as(c, p, head_tree, sc, &partial));
	if (partial && p->action == ACT_REWRITE) { /* written whole: all of te's map */
		vec_free(&p->map);
		MTM_TRY(index_file_map(c->s, p->te->file_id, &c->lin_k, &p->map));
	}
	return 0;
}

static int plan_file_as(rctx *c, plan_item *p, const vec *head_tree, pathmap *sc, int *partial)
{
	entry *te = p->te;
	live_item *li = p->li;
	entry *he = tree_find(head_tree, te->path);
	int fresh = he && he->kind == KIND_FILE && statcache_fresh(pathmap_get(sc, te->path), &li->st, he->ver);
	*partial = fresh && he->ver != te->ver && c->between_ok && he->file_id == te->file_id;
	/* a stat the cache knows: the attributes are the head's (any change to
	 * them changes the ctime); otherwise they are read with the content */
	if (fresh)
		p->xattrs_differ = xattrs_differ(te, he->xattrs, he->xattrs_len);
	if (fresh && he->ver == te->ver) {
		/* the version the file holds: its map only if it is written whole
		 * (several names); a query per unchanged file made a restore's
		 * plan O(tree) in queries */
		p->action = file_meta_action(c, p);
		if (p->action == ACT_REWRITE)
			MTM_TRY(index_file_map(c->s, te->file_id, &c->lin_k, &p->map));
		return 0;
	}
	if (!*partial)
		MTM_TRY(index_file_map(c->s, te->file_id, &c->lin_k, &p->map));
	if (*partial) {
		MTM_TRY(diff_changed(c, p, he));
	} else if (fresh) { /* the live file holds the head's version: diff through the index */
		vec hmap;
		MTM_TRY(index_file_map(c->s, he->file_id, &c->lin_h, &hmap));
		int rc = filemap_diff(&p->map, te->size, &hmap, he->size, &p->runs, NULL);
		vec_free(&hmap);
		MTM_TRY(rc);
	} else { /* unknown content: hash it */
		int fd, rc = beneath_open(c->rootfd, te->path, O_RDONLY, &fd);
		if (rc == EACCES || rc == EPERM) {
			/* a file we may not read (mode 0): written whole through a new
			 * name, which needs no read of it. Only a restore that does not
			 * save the tree first gets here (--discard, or a partial one):
			 * saving would have failed on this file */
			p->action = ACT_REWRITE;
			c->total += (uint64_t)te->size;
			return 0;
		}
		if (rc)
			return mtm_set_errno(rc, "%s", te->path);
		int64_t got;
		run_collect col = {&p->runs};
		rc = compare_file(FILE_SRC(fd), (int64_t)li->st.st_size, &p->map, collect_run, &col, &got);
		if (!rc && !li->xattrs_read) {
			int e = xattr_read_fd(fd, &li->xattrs, &li->xattrs_len);
			if (e)
				rc = mtm_set_errno(e, "reading extended attributes");
			li->xattrs_read = !e;
		}
		if (!rc)
			p->xattrs_differ = xattrs_differ(te, li->xattrs, li->xattrs_len);
		close(fd);
		if (rc)
			return mtm_set_error(rc, "%s: %s", te->path, mtm_last_error());
		/* blocks past the live end that hold data in te */
		int64_t live_blocks = (got + MTM_BLOCK - 1) / MTM_BLOCK, blocks = (te->size + MTM_BLOCK - 1) / MTM_BLOCK;
		for (size_t i = 0; i < p->map.n; i++) {
			blockref *b = &VEC_AT(&p->map, blockref, i);
			if (b->blkno >= live_blocks && b->blkno < blocks && b->chunk)
				MTM_TRY(filemap_add_run(&p->runs, b->blkno));
		}
	}
	/* drop runs past te's end (the file is truncated anyway) */
	int64_t blocks = (te->size + MTM_BLOCK - 1) / MTM_BLOCK, diff = 0;
	size_t keep = 0;
	for (size_t i = 0; i < p->runs.n; i++) {
		blk_run *r = &VEC_AT(&p->runs, blk_run, i);
		if (r->blkno >= blocks)
			continue;
		if (r->blkno + r->count > blocks)
			r->count = blocks - r->blkno;
		diff += r->count;
		VEC_AT(&p->runs, blk_run, keep++) = *r;
	}
	p->runs.n = keep;
	if (!diff && (int64_t)li->st.st_size == te->size) {
		p->action = file_meta_action(c, p);
		return 0;
	}
	int64_t diff_bytes = diff * MTM_BLOCK;
	if (te->size >= PATCH_MIN_SIZE && diff_bytes * 2 <= te->size && li->st.st_nlink == 1) {
		p->action = ACT_PATCH;
		c->total += (uint64_t)diff_bytes;
	} else {
		p->action = ACT_REWRITE;
		c->total += (uint64_t)te->size;
	}
	return 0;
}

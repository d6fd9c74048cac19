/*
 * checkpoint.c — recording the tree as a new checkpoint (scan mode).
 *
 * Order of events, which is what makes a crash at any point harmless:
 *   1. take the writer lock; open an IMMEDIATE index transaction;
 *   2. walk the tree; for each file whose stat is not known-fresh, compare
 *      its blocks with the parent's block map and append the changed runs to
 *      a pack (the rows naming them go into the open transaction);
 *   3. flush and fsync the packs (and the packs directory for a new pack);
 *   4. COMMIT. That commit is the checkpoint. Before it, a crash leaves only
 *      an unreferenced pack tail (cut off by the next writer); after it,
 *      nothing can be lost.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/io.h"
#include "io/xattr.h"
#include "tree/root.h"
#include "tree/reader.h"
#include "tree/scan.h"
#include "store/pack.h"
#include "util/error.h"
#include "util/log.h"
#include "util/human.h"
#include "checkpoint/checkpoint.h"
#include "store/region.h"
#include "store/blockhash.h"
#include "util/xxh.h"

typedef struct {
	mtm_store *s;
	pack_writer pw;
	index_writer iw;
	int64_t id, branch;
	int64_t next_file_id; /* allocator for new files */
	int64_t cur_file;     /* the file store_run is recording */
	const capture *ahead_cap; /* its capture, when the session wrote some of its blocks ahead */
	const ckpt_hooks *hooks;
	uint64_t bytes_changed, blocks_changed;
	/* Changed blocks of the current file that do not fill an aligned group
	 * (scattered writes: typically one block here, one there) are gathered
	 * into one chunk of up to MTM_CHUNK_BLOCKS, in file order, instead of a
	 * chunk each: a chunk row, its hash's index entry and a record header
	 * per 16 blocks rather than per block (FORMAT.md 3.6 allows it; readers
	 * find a block by boff alone). Only within one file, so that a whole
	 * file is chunked as it always was and identical files still share
	 * their chunks. */
	/* The gathered pieces: pointers into captures, which last until the
	 * checkpoint ends, or into grp, where a piece read into a reused
	 * buffer is copied. */
	unsigned char grp[CHUNK_MAX_PLAIN];
	size_t grp_len, grp_copied;
	int grp_n, grp_npieces;
	pack_piece grp_piece[MTM_CHUNK_BLOCKS];
	struct { int64_t blkno; uint64_t hash; } grp_blk[MTM_CHUNK_BLOCKS];
} ckpt_ctx;

/* Stores the gathered blocks as one chunk and names them in the index. */
static int flush_group(ckpt_ctx *c)
{
	if (!c->grp_n)
		return 0;
	int64_t chunk;
	MTM_TRY(pack_putv(&c->pw, c->grp_piece, c->grp_npieces, c->grp_len, &chunk));
	for (int i = 0; i < c->grp_n; i++)
		MTM_TRY(index_put_block(&c->iw, c->cur_file, c->grp_blk[i].blkno, c->branch, c->id, c->grp_blk[i].hash, chunk, i));
	c->grp_n = c->grp_npieces = 0;
	c->grp_len = c->grp_copied = 0;
	return 0;
}

static int store_plain(ckpt_ctx *c, int64_t blkno, int nblocks, const unsigned char *data, size_t len,
                       const uint64_t *hashes, int zero, int lasting)
{
	c->bytes_changed += len;
	c->blocks_changed += (uint64_t)nblocks;
	if (zero) {
		for (int i = 0; i < nblocks; i++)
			MTM_TRY(index_put_block(&c->iw, c->cur_file, blkno + i, c->branch, c->id, hashes[i], 0, 0));
		return 0;
	}
	if (nblocks == MTM_CHUNK_BLOCKS) { /* a whole aligned group: a chunk of its own */
		int64_t chunk;
		pack_piece one = {data, len, lasting};
		MTM_TRY(pack_putv(&c->pw, &one, 1, len, &chunk));
		for (int i = 0; i < nblocks; i++)
			MTM_TRY(index_put_block(&c->iw, c->cur_file, blkno + i, c->branch, c->id, hashes[i], chunk, i));
		return 0;
	}
	if (c->grp_n + nblocks > MTM_CHUNK_BLOCKS)
		MTM_TRY(flush_group(c));
	if (!lasting) {
		memcpy(c->grp + c->grp_copied, data, len);
		data = c->grp + c->grp_copied;
		c->grp_copied += len;
	}
	c->grp_piece[c->grp_npieces++] = (pack_piece){data, len, lasting};
	c->grp_len += len;
	for (int i = 0; i < nblocks; i++) {
		c->grp_blk[c->grp_n].blkno = blkno + i;
		c->grp_blk[c->grp_n++].hash = hashes[i];
	}
	/* a short block (the file's last) can only end a chunk */
	return len < (size_t)nblocks * MTM_BLOCK ? flush_group(c) : 0;
}

/* A block the session wrote ahead from the very slot it is recorded from
 * (hooks->ahead_ref): named where it lies, its record adopted once. */
static int store_ahead(ckpt_ctx *c, int64_t blkno, uint64_t hash, ahead_rec *rec, int boff)
{
	if (!rec->chunk)
		MTM_TRY(pack_adopt(&c->pw, &rec->loc, &rec->chunk));
	c->bytes_changed += MTM_BLOCK;
	c->blocks_changed++;
	return index_put_block(&c->iw, c->cur_file, blkno, c->branch, c->id, hash, rec->chunk, boff);
}

static int store_run(void *arg, int64_t blkno, int nblocks, const unsigned char *data, size_t len,
                     const uint64_t *hashes, int zero, int lasting)
{
	ckpt_ctx *c = arg;
	if (zero || !c->ahead_cap || !c->hooks->ahead_ref)
		return store_plain(c, blkno, nblocks, data, len, hashes, zero, lasting);
	int from = 0; /* the blocks before i not written ahead */
	for (int i = 0; i < nblocks; i++) {
		ahead_rec *rec;
		int boff;
		if ((size_t)(i + 1) * MTM_BLOCK > len ||
		    !c->hooks->ahead_ref(c->hooks->arg, capture_slot(c->ahead_cap, blkno + i), &rec, &boff))
			continue;
		if (i > from)
			MTM_TRY(store_plain(c, blkno + from, i - from, data + (size_t)from * MTM_BLOCK,
			                    (size_t)(i - from) * MTM_BLOCK, hashes + from, 0, lasting));
		MTM_TRY(store_ahead(c, blkno + i, hashes[i], rec, boff));
		from = i + 1;
	}
	if (from == nblocks)
		return 0;
	return store_plain(c, blkno + from, nblocks - from, data + (size_t)from * MTM_BLOCK,
	                   len - (size_t)from * MTM_BLOCK, hashes + from, 0, lasting);
}

/* Picks the branch for a child of head: head's own branch if head is its
 * tip, otherwise a new branch forking after head. */
static int choose_branch(mtm_store *s, mtm_id head, int64_t *out)
{
	int64_t hb = 0;
	if (head) {
		MTM_TRY(checkpoint_branch(s, head, &hb));
		static const char sql[] = "SELECT 1 FROM checkpoint WHERE branch=? AND id>? LIMIT 1";
		sqlite3_stmt *st;
		MTM_TRY(db_cached(s, sql, sql, &st));
		sqlite3_bind_int64(st, 1, hb);
		sqlite3_bind_int64(st, 2, head);
		int rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc == SQLITE_DONE) {
			*out = hb;
			return 0;
		}
		if (rc != SQLITE_ROW)
			return db_error(s, rc, "index");
	}
	int64_t nb = s->n_branches > 0 ? s->n_branches : 1;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "INSERT INTO branch VALUES(?,?,?)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_bind_int64(st, 1, nb);
	sqlite3_bind_int64(st, 2, hb);
	sqlite3_bind_int64(st, 3, head);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_error(s, rc, "index");
	*out = nb;
	return 0;
}

static int insert_checkpoint(mtm_store *s, const mtm_checkpoint_info *ci, int64_t branch)
{
	static const char sql[] = "INSERT INTO checkpoint(id, parent, branch, time_ns, message, files_added, files_changed,"
	                          " files_removed, bytes_changed, bytes_stored, entries, tree_bytes, regions, region_bytes,"
	                          " region_bytes_changed, tracked, pause_ns, root_mode, root_uid, root_gid, root_mtime_s,"
	                          " root_mtime_nsec, root_xattrs) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
	/* the root's own metadata (its entries have theirs): a private tree
	 * must come back private, a shared one shared, and a whole-tree restore
	 * give the root back as it was (FORMAT.md 3.2, formats 9 and 11) */
	root_meta root;
	int rc = root_meta_live(s->rootfd, &root);
	if (rc) {
		root_meta_free(&root);
		return mtm_set_errno(rc, "the tree's root");
	}
	sqlite3_stmt *st;
	if ((rc = db_cached(s, sql, sql, &st))) {
		root_meta_free(&root);
		return rc;
	}
	sqlite3_bind_int64(st, 1, ci->id);
	sqlite3_bind_int64(st, 2, ci->parent);
	sqlite3_bind_int64(st, 3, branch);
	sqlite3_bind_int64(st, 4, ci->time_ns);
	sqlite3_bind_text(st, 5, ci->message ? ci->message : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, (int64_t)ci->files_added);
	sqlite3_bind_int64(st, 7, (int64_t)ci->files_changed);
	sqlite3_bind_int64(st, 8, (int64_t)ci->files_removed);
	sqlite3_bind_int64(st, 9, (int64_t)ci->bytes_changed);
	sqlite3_bind_int64(st, 10, (int64_t)ci->bytes_stored);
	sqlite3_bind_int64(st, 11, (int64_t)ci->entries);
	sqlite3_bind_int64(st, 12, (int64_t)ci->tree_bytes);
	sqlite3_bind_int64(st, 13, (int64_t)ci->regions);
	sqlite3_bind_int64(st, 14, (int64_t)ci->region_bytes);
	sqlite3_bind_int64(st, 15, (int64_t)ci->region_bytes_changed);
	assert(ci->tracked == 0 || ci->tracked == 1);
	sqlite3_bind_int(st, 16, ci->tracked);
	sqlite3_bind_int64(st, 17, (int64_t)ci->pause_ns);
	sqlite3_bind_int(st, 18, (int)root.e.mode);
	sqlite3_bind_int64(st, 19, root.e.uid);
	sqlite3_bind_int64(st, 20, root.e.gid);
	sqlite3_bind_int64(st, 21, root.e.mtime_s);
	sqlite3_bind_int(st, 22, root.e.mtime_nsec);
	if (root.e.xattrs_len)
		sqlite3_bind_blob(st, 23, root.e.xattrs, (int)root.e.xattrs_len, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st); /* (the message and the attributes are not ours to keep bound) */
	root_meta_free(&root);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

/* A removed file's (dev, ino), to recognise it under a new name (a rename)
 * and keep its block history instead of storing it again. */
typedef struct { int64_t dev, ino; entry *e; int used; } gone_file;

static gone_file *find_gone(vec *gone, const struct stat *st)
{
	for (size_t i = 0; i < gone->n; i++) {
		gone_file *g = &VEC_AT(gone, gone_file, i);
		if (!g->used && g->dev == (int64_t)st->st_dev && g->ino == (int64_t)st->st_ino)
			return g;
	}
	return NULL;
}

struct ckpt_run {
	mtm_store *s;
	ckpt_ctx *c;
	ckpt_ctx ctx;
	mtm_checkpoint_info info;
	lineage parent_lin;
	pathmap sc;
	sqlite3_stmt *sc_put, *sc_del;
	blockhash_stmts bh;
	scan_reader rd; /* reads (and hashes) the files compared, on two threads */
	vec removed_ids; /* file ids of regular files removed: their blockhash rows go unless renamed */
	int64_t t0;
	mtm_checkpoint_info *ci;
	const mtm_checkpoint_opts *opts;
	ignore_set ign;
	uint64_t done_bytes, total_bytes;
	int in_tx, committed;
	int sc_loaded; /* the stat cache rows of the recorded paths are read (record_paths) */
	int sc_defer;   /* the stat cache rows go to sc_kept (hooks.sc_kept), not into the index */
	pathmap sc_out; /* path -> sc_row* (ver 0: deleted): the rows this checkpoint did not write */
	ckpt_hooks hooks;
	int regions_recorded; /* the handle's region hashes now describe this checkpoint, once committed */
	int ph_debug;
};
typedef struct ckpt_run run_state;

typedef struct {
	mtm_store *s;
	int64_t file_id;
	const lineage *l;
	mtm_id parent;
	const ckpt_hooks *hooks;
} parent_hash_arg;
static int parent_hash(void *arg, int64_t blkno, uint64_t *out)
{
	parent_hash_arg *a = arg;
	/* a session looked most of them up while the program ran */
	if (a->hooks->parent_hash && a->hooks->parent_hash(a->hooks->arg, a->parent, a->file_id, blkno, out))
		return 0;
	return index_block_hash(a->s, a->file_id, blkno, a->l, out);
}

/* A regular file's extended attributes, read with its content: through
 * the fd read, or (a capture taken during a session's barrier) by name. */
static int read_file_xattrs(run_state *r, live_item *it, int fd)
{
	if (it->xattrs_read)
		return 0;
	int rc;
	if (fd >= 0 && !it->cap) {
		rc = xattr_read_fd(fd, &it->xattrs, &it->xattrs_len);
	} else {
		int dfd;
		const char *leaf;
		if (!(rc = beneath_open_parent(r->s->rootfd, it->path, &dfd, &leaf))) {
			rc = xattr_read_at(dfd, leaf, &it->xattrs, &it->xattrs_len);
			close(dfd);
		}
		if (rc == ENOENT || rc == ENOTDIR || rc == ELOOP)
			rc = 0; /* gone since: the next checkpoint records that */
	}
	if (rc)
		return mtm_set_errno(rc, "%s: reading extended attributes", it->path);
	it->xattrs_read = 1;
	return 0;
}

/* A file version's block hashes as an array: block b's is h[b], a block
 * past n (or with no row) is the zero block's. */
typedef struct {
	uint64_t *h;
	int64_t n;
	int from_row; /* read from its blockhash row (not from `block`) */
	blockhash_base base; /* the file's whole blockhash row: the next one may be a delta against it */
} hash_list;

/* The parent version's hashes of file_id as an array (*old): its blockhash
 * row when that describes prev_ver, else from its rows of `block` (*map),
 * unless the file is too sparse and large for an array (old->h NULL: the
 * compare reads *map then). The compare reads the array as it is: no map
 * of 16,384 entries is built per 64 MiB file from a row that holds them. */
static int load_parent_hashes(run_state *r, int64_t file_id, int64_t prev_ver, vec *map, hash_list *old)
{
	const uint64_t zh = zero_block_hash();
	int found = 0;
	if (prev_ver)
		MTM_TRY(blockhash_get(r->s, &r->bh, file_id, prev_ver, &old->h, &old->n, &found, &old->base));
	if (found) {
		old->from_row = 1;
		return 0;
	}
	if (prev_ver)
		MTM_TRY(index_file_map(r->s, file_id, &r->parent_lin, map));
	int64_t n = map->n ? VEC_AT(map, blockref, map->n - 1).blkno + 1 : 0;
	if (n > BLOCKHASH_MAX_BLOCKS)
		return 0; /* sparse and huge: no row for it */
	if (!(old->h = malloc((size_t)(n ? n : 1) * sizeof *old->h)))
		return mtm_set_error(ENOMEM, "checkpoint");
	old->n = n;
	for (int64_t b = 0; b < n; b++)
		old->h[b] = zh;
	for (size_t i = 0; i < map->n; i++)
		old->h[VEC_AT(map, blockref, i).blkno] = VEC_AT(map, blockref, i).hash;
	return 0;
}

/* Compares a whole file with the parent's version prev_ver (0: none) and,
 * when it is one a blockhash row is kept for, gives the new version's
 * hashes in *fresh: those read (blocks up to *size_read), then the parent's
 * past them (rows past a file's end stay visible, FORMAT.md 3.5, and a
 * compare counts on them exactly as on rows of `block`). */
static int compare_whole(run_state *r, file_src src, const struct stat *st, int64_t file_id, int64_t prev_ver,
                         int64_t *size_read, hash_list *fresh)
{
	vec map = VEC_INIT(blockref);
	hash_list old = {0};
	int64_t nblocks = ((int64_t)st->st_size + MTM_BLOCK - 1) / MTM_BLOCK;
	int keep = nblocks >= BLOCKHASH_MIN_BLOCKS && nblocks <= BLOCKHASH_MAX_BLOCKS;
	uint64_t *out = NULL;
	int rc = 0;
	if (keep)
		rc = load_parent_hashes(r, file_id, prev_ver, &map, &old);
	else if (prev_ver)
		rc = index_file_map(r->s, file_id, &r->parent_lin, &map);
	if (!rc && keep && old.h && !(out = malloc((size_t)nblocks * sizeof *out)))
		rc = mtm_set_error(ENOMEM, "checkpoint");
	if (!rc)
		rc = compare_file_hashes(&r->rd, src, (int64_t)st->st_size, &map, old.h, old.n, store_run, r->c, size_read,
		                         out);
	if (!rc && out) {
		int64_t got = (*size_read + MTM_BLOCK - 1) / MTM_BLOCK, n = got > old.n ? got : old.n;
		assert(got <= nblocks);
		uint64_t *h = n > nblocks ? realloc(out, (size_t)n * sizeof *out) : out;
		if (!h) {
			rc = mtm_set_error(ENOMEM, "checkpoint");
		} else {
			out = h;
			for (int64_t b = got; b < n; b++)
				out[b] = old.h[b];
			*fresh = (hash_list){out, n, old.from_row, old.base};
			old.base = (blockhash_base){0};
			out = NULL;
		}
	}
	free(out);
	free(old.h);
	blockhash_base_free(&old.base);
	vec_free(&map);
	return rc;
}

/* The stat cache row of path for version ver (0: no row), written now or
 * kept for the layer above (ckpt_hooks.sc_kept). */
static int sc_keep(run_state *r, const char *path, int64_t ver, const struct stat *st, int64_t seen)
{
	sc_row *row = malloc(sizeof *row);
	if (!row)
		return mtm_set_error(ENOMEM, "stat cache");
	if (ver)
		statcache_row_make(r->s, ver, st, seen, row);
	else
		memset(row, 0, sizeof *row);
	sc_row *old = pathmap_get(&r->sc_out, path);
	if (pathmap_put(&r->sc_out, path, row)) {
		free(row);
		return mtm_set_error(ENOMEM, "stat cache");
	}
	free(old);
	return 0;
}

static int sc_write(run_state *r, const char *path, int64_t ver, const struct stat *st, int64_t seen)
{
	return r->sc_defer ? sc_keep(r, path, ver, st, seen) : statcache_put(r->s, &r->sc_put, path, ver, st, seen);
}

static int sc_delete(run_state *r, const char *path)
{
	return r->sc_defer ? sc_keep(r, path, 0, NULL, 0) : statcache_del(r->s, &r->sc_del, path);
}

/* Records one live regular file: compares its content with its history. */
static int record_file(run_state *r, live_item *it, entry *pe, gone_file *renamed)
{
	ckpt_ctx *c = r->c;
	int fd, rc;
	struct stat st;
	int64_t file_id = pe && pe->kind == KIND_FILE ? pe->file_id : renamed ? renamed->e->file_id : 0;
	/* the parent's version of that history: what its blockhash row must describe */
	int64_t prev_ver = pe && pe->kind == KIND_FILE ? pe->ver : renamed ? renamed->e->ver : 0;
	hash_list fresh = {0};
	capture *cap = it->cap;
	int64_t seen = r->t0; /* captures: as of the checkpoint's start */
	if (cap && !cap->whole && !file_id)
		cap = NULL; /* only some blocks copied, but no history to take the rest from: read it */
	if (cap) {
		fd = cap->fd; /* copied out during the barrier: consistent with the other files */
		st = it->st;
	} else {
		/* The racy rule is measured from when this file's stat was taken,
		 * not from the start of the whole scan: a write after this moment
		 * gets an mtime at least (now - one clock tick), which differs from
		 * the stat recorded below unless that stat is itself that recent. */
		seen = now_ns();
		rc = beneath_open_st(r->s->rootfd, it->path, O_RDONLY, &fd, &st);
		if (rc == ENOENT || rc == ELOOP || rc == ENOTPLAIN)
			return ENOENT; /* vanished or replaced since the walk (never waited on) */
		if (rc)
			return mtm_set_errno(rc, "%s", it->path);
		if (!S_ISREG(st.st_mode)) { /* (the open's own fstat) */
			close(fd);
			return ENOENT;
		}
		it->st = st; /* the stat of what we actually read */
		/* A write through a shared mapping to a page it already dirtied
		 * sets no new mtime nor ctime (the kernel stamps the file when a
		 * clean page is first written): the row written below would vouch
		 * for content that kept changing. Writeback started here cleans
		 * (write-protects) the dirty pages, so a write after this read
		 * stamps the file again (best effort: its error changes nothing
		 * read here). */
		(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE);
	}
	if (!file_id)
		file_id = c->next_file_id++;
	uint64_t before = c->blocks_changed;
	int64_t size_read = (int64_t)st.st_size;
	c->cur_file = file_id;
	file_src src = {fd, cap};
	if (cap && !cap->whole) {
		/* tracked: only the blocks the program wrote, against the parent's hashes */
		parent_hash_arg pa = {r->s, file_id, &r->parent_lin, r->info.parent, &r->hooks};
		c->ahead_cap = c->pw.ahead_kept ? cap : NULL;
		rc = compare_runs(src, size_read, &cap->runs, parent_hash, &pa, store_run, c);
		c->ahead_cap = NULL;
	} else {
		rc = compare_whole(r, src, &st, file_id, prev_ver, &size_read, &fresh);
	}
	if (!rc)
		rc = flush_group(c);
	c->grp_n = c->grp_npieces = 0; /* (after a failure: nothing of this file is kept) */
	c->grp_len = c->grp_copied = 0;
	if (rc)
		rc = mtm_set_error(rc, "%s/%s: %s", r->s->root, it->path, mtm_last_error());
	else
		rc = read_file_xattrs(r, it, cap ? -1 : fd);
	if (!cap)
		close(fd);
	if (rc) {
		free(fresh.h);
		blockhash_base_free(&fresh.base);
		return rc;
	}
	r->done_bytes += (uint64_t)size_read;
	if (r->opts && r->opts->progress)
		r->opts->progress(r->opts->progress_arg, "checkpoint", r->done_bytes, r->total_bytes);

	entry e;
	live_entry(it, &e);
	e.size = size_read;
	e.file_id = file_id;
	int64_t ver;
	int content_changed = c->blocks_changed != before;
	rc = 0;
	if (!pe || pe->kind != KIND_FILE || pe->file_id != file_id || content_changed || !entry_same(&e, pe)) {
		rc = index_put_entry(&c->iw, c->branch, c->id, &e);
		ver = c->id;
		if (!pe)
			r->ci->files_added++;
		else
			r->ci->files_changed++;
	} else {
		ver = pe->ver;
	}
	/* the hashes of version ver, for the next scan that finds the file changed */
	if (!rc)
		rc = fresh.h && (ver == c->id || !fresh.from_row)
		             ? blockhash_put(r->s, &r->bh, file_id, ver, fresh.h, fresh.n, &fresh.base)
		             : 0;
	free(fresh.h);
	blockhash_base_free(&fresh.base);
	if (rc)
		return rc;
	r->ci->tree_bytes += (uint64_t)size_read;
	/* only the blocks a session's logs named were read: the row may let a
	 * later scan skip the file only if nobody else can have written it */
	if (cap && !cap->whole && !cap->vouched)
		seen = STATCACHE_UNVOUCHED;
	return sc_write(r, it->path, ver, &st, seen);
}

static int record_other(run_state *r, const live_item *it, const entry *pe)
{
	entry e;
	live_entry(it, &e);
	if (pe && entry_same(&e, pe))
		return 0;
	MTM_TRY(index_put_entry(&r->c->iw, r->c->branch, r->c->id, &e));
	/* a directory whose mtime alone moved (an entry came or went) is recorded
	 * but not counted: status and diff do not list it either */
	int dir_mtime_only = pe && pe->kind == KIND_DIR && e.kind == KIND_DIR && pe->mode == e.mode &&
	                     pe->uid == e.uid && pe->gid == e.gid;
	if (!pe)
		r->ci->files_added++;
	else if (!dir_mtime_only)
		r->ci->files_changed++;
	return 0;
}

static int record_removal(run_state *r, const entry *pe)
{
	entry t = {.path = pe->path, .kind = KIND_NONE};
	MTM_TRY(index_put_entry(&r->c->iw, r->c->branch, r->c->id, &t));
	r->ci->files_removed++;
	int64_t *id = pe->kind == KIND_FILE ? vec_push(&r->removed_ids) : NULL;
	if (pe->kind == KIND_FILE && !id)
		return mtm_set_error(ENOMEM, "checkpoint");
	if (id)
		*id = pe->file_id;
	return pe->kind == KIND_FILE ? sc_delete(r, pe->path) : 0;
}

/* Whether recording live file it may append to the pack: not when the
 * stat cache vouches it unchanged, nor when every block captured was
 * written ahead from the very slot it is recorded from (adopted, as
 * store_run does). Else it may (a block like the parent's, or like some
 * chunk, is not appended either: a guess on the safe side). */
static int may_append(run_state *r, const live_item *it, const entry *pe)
{
	int had = pe && pe->kind == KIND_FILE;
	if (it->kind != KIND_FILE)
		return 0;
	if (!it->cap)
		return !(had && statcache_fresh(pathmap_get(&r->sc, it->path), &it->st, pe->ver));
	if (it->cap->whole || !had || !r->ctx.pw.ahead_kept || !r->hooks.ahead_ref)
		return 1;
	for (size_t k = 0; k < it->cap->runs.n; k++) {
		const blk_run *run = &VEC_AT(&it->cap->runs, blk_run, k);
		for (int64_t b = run->blkno; b < run->blkno + run->count; b++)
			if ((b + 1) * MTM_BLOCK > (int64_t)it->st.st_size || /* (a short block is never adopted) */
			    !r->hooks.ahead_ref(r->hooks.arg, capture_slot(it->cap, b), NULL, NULL))
				return 1;
	}
	return 0;
}

/* The index in live of the last file whose record may append to the pack
 * (may_append), live->n if none: once it is recorded, the pack's fsync
 * begins (pack_writer_sync_early) while the files after it are recorded
 * (a session's W2 checkpoint: the heartbeat's captured block, then 200
 * files whose blocks were written ahead: their adoptions and rows ran
 * before the commit waited ~0.4 ms for that fsync). */
static size_t last_append(run_state *r, vec *parent, vec *live)
{
	if (r->s->n_regions)
		return live->n; /* (the regions' records come after the files') */
	for (size_t i = live->n; i-- > 0;) {
		const live_item *it = &VEC_AT(live, live_item, i);
		if (may_append(r, it, tree_find(parent, it->path)))
			return i;
	}
	return live->n;
}

/* Once the file at *after is recorded: the pack's fsync begins (once). */
static int sync_early(run_state *r, vec *live, size_t *after)
{
	size_t i = *after;
	int begun;
	*after = live->n;
	MTM_TRY(pack_writer_sync_early(&r->ctx.pw, &begun));
	if (begun && r->ph_debug)
		log_msg(MTM_LOG_DEBUG, "checkpoint record: the pack's fsync begun after %s, file %zu of %zu",
		        VEC_AT(live, live_item, i).path, i + 1, live->n);
	return 0;
}

static int scan_and_record(run_state *r, vec *parent, vec *live)
{
	int rc = 0;
	/* Removed regular files, by inode, for rename detection. */
	vec gone = VEC_INIT(gone_file);
	size_t li = 0;
	for (size_t pi = 0; pi < parent->n; pi++) {
		entry *pe = &VEC_AT(parent, entry, pi);
		while (li < live->n && strcmp(VEC_AT(live, live_item, li).path, pe->path) < 0)
			li++;
		int present = li < live->n && !strcmp(VEC_AT(live, live_item, li).path, pe->path);
		if (present || pe->kind != KIND_FILE)
			continue;
		sc_row *sr = pathmap_get(&r->sc, pe->path);
		if (sr && sr->ver == pe->ver) {
			gone_file *g = vec_push(&gone);
			if (!g)
				return mtm_set_error(ENOMEM, "checkpoint");
			g->dev = sr->dev;
			g->ino = sr->ino;
			g->e = pe;
		}
	}
	for (size_t i = 0; i < live->n; i++) {
		live_item *it = &VEC_AT(live, live_item, i);
		entry *pe = tree_find(parent, it->path);
		if (it->kind == KIND_FILE) {
			sc_row *sr = pathmap_get(&r->sc, it->path);
			if (!(pe && pe->kind == KIND_FILE && statcache_fresh(sr, &it->st, pe->ver)))
				r->total_bytes += (uint64_t)it->st.st_size;
		}
	}
	size_t sync_after = last_append(r, parent, live);
	for (size_t i = 0, pi = 0; i < live->n || pi < parent->n;) {
		if (i && i - 1 == sync_after && (rc = sync_early(r, live, &sync_after)))
			break;
		live_item *it = i < live->n ? &VEC_AT(live, live_item, i) : NULL;
		entry *pe = pi < parent->n ? &VEC_AT(parent, entry, pi) : NULL;
		int cmp = !it ? 1 : !pe ? -1 : strcmp(it->path, pe->path);
		if (cmp > 0) { /* only in the parent: removed */
			if ((rc = record_removal(r, pe)))
				break;
			pi++;
			continue;
		}
		if (cmp == 0)
			pi++;
		else
			pe = NULL;
		i++;
		r->ci->entries++;
		if (pe && pe->kind != it->kind && pe->kind == KIND_FILE && (rc = sc_delete(r, pe->path)))
			break;
		if (it->kind != KIND_FILE) {
			if ((rc = record_other(r, it, pe)))
				break;
			continue;
		}
		if (pe && pe->kind == KIND_FILE && !it->cap && statcache_fresh(pathmap_get(&r->sc, it->path), &it->st, pe->ver)) {
			r->ci->tree_bytes += (uint64_t)it->st.st_size;
			continue; /* unchanged: no read at all */
		}
		gone_file *g = !pe || pe->kind != KIND_FILE ? find_gone(&gone, &it->st) : NULL;
		if (g)
			g->used = 1;
		rc = record_file(r, it, pe, g);
		if (rc == ENOENT) { /* vanished after the walk */
			r->ci->entries--;
			rc = pe ? record_removal(r, pe) : 0;
		}
		if (rc)
			break;
	}
	if (!rc && live->n && live->n - 1 == sync_after)
		rc = sync_early(r, live, &sync_after);
	/* the blockhash rows of removed files, unless a rename took the history on */
	for (size_t i = 0; !rc && i < r->removed_ids.n; i++) {
		int64_t id = VEC_AT(&r->removed_ids, int64_t, i);
		int renamed = 0;
		for (size_t k = 0; k < gone.n && !renamed; k++)
			renamed = VEC_AT(&gone, gone_file, k).used && VEC_AT(&gone, gone_file, k).e->file_id == id;
		if (!renamed)
			rc = blockhash_del(r->s, &r->bh, id);
	}
	r->removed_ids.n = 0;
	vec_free(&gone);
	return rc;
}

static int all_zero_block(const unsigned char *p)
{
	static const unsigned char z[MTM_BLOCK];
	return memcmp(p, z, MTM_BLOCK) == 0;
}

/* The block hashes of region g's version pr at the parent, for comparison:
 * the handle's own when they describe that version (its last checkpoint or
 * recovery made it), else read from the index. No version: all zeros. */
static int region_parent_hashes(run_state *r, mtm_region *g, const region_row *pr, int64_t file_id)
{
	int64_t nblocks = ((int64_t)g->len + MTM_BLOCK - 1) / MTM_BLOCK;
	if (g->hashes && g->hashes_at && g->hashes_at == r->info.parent && g->file_id == file_id)
		return 0;
	free(g->hashes);
	g->hashes_at = 0;
	if (!(g->hashes = malloc((size_t)(nblocks ? nblocks : 1) * sizeof *g->hashes)))
		return mtm_set_error(ENOMEM, "checkpoint: region %s", g->name);
	const uint64_t zh = zero_block_hash();
	for (int64_t b = 0; b < nblocks; b++)
		g->hashes[b] = zh;
	if (!pr)
		return 0;
	vec map = VEC_INIT(blockref);
	MTM_TRY(index_file_map(r->s, file_id, &r->parent_lin, &map));
	/* rows past the parent's size are kept too: a file's compare sees them
	 * the same way (FORMAT.md 3.5), so a region that grows again reuses them */
	for (size_t i = 0; i < map.n; i++) {
		const blockref *b = &VEC_AT(&map, blockref, i);
		if (b->blkno < nblocks)
			g->hashes[b->blkno] = b->hash;
	}
	vec_free(&map);
	return 0;
}

/* Compares region g's memory with the parent's hashes, aligned group by
 * group like compare_file, and stores the changed runs where they lie (the
 * memory must not change until the checkpoint returns: mtm_protect). */
static int region_compare(ckpt_ctx *c, mtm_region *g)
{
	const uint64_t zh = zero_block_hash();
	int64_t nblocks = ((int64_t)g->len + MTM_BLOCK - 1) / MTM_BLOCK;
	for (int64_t gstart = 0; gstart < nblocks; gstart += MTM_CHUNK_BLOCKS) {
		int n = (int)(nblocks - gstart < MTM_CHUNK_BLOCKS ? nblocks - gstart : MTM_CHUNK_BLOCKS);
		uint64_t hashes[MTM_CHUNK_BLOCKS];
		signed char state[MTM_CHUNK_BLOCKS]; /* 0 same, 1 changed data, 2 changed to zeros */
		for (int i = 0; i < n; i++) {
			size_t off = (size_t)(gstart + i) * MTM_BLOCK, len = g->len - off < MTM_BLOCK ? g->len - off : MTM_BLOCK;
			const unsigned char *blk = g->ptr + off;
			unsigned char pad[MTM_BLOCK];
			if (len < MTM_BLOCK) {
				memcpy(pad, blk, len);
				memset(pad + len, 0, MTM_BLOCK - len);
				blk = pad;
			}
			uint64_t h = XXH3_64bits(blk, MTM_BLOCK);
			hashes[i] = h;
			state[i] = h == g->hashes[gstart + i] ? 0 : h == zh && all_zero_block(blk) ? 2 : 1;
		}
		for (int i = 0; i < n;) {
			int stt = state[i], e = i + 1;
			while (e < n && state[e] == stt)
				e++;
			if (stt) {
				size_t start = (size_t)(gstart + i) * MTM_BLOCK, stop = (size_t)(gstart + e) * MTM_BLOCK;
				if (stop > g->len)
					stop = g->len;
				MTM_TRY(store_run(c, gstart + i, e - i, stt == 1 ? g->ptr + start : NULL, stop - start, hashes + i,
				                  stt == 2, 1));
				for (int k = i; k < e; k++)
					g->hashes[gstart + k] = hashes[k];
			}
			i = e;
		}
	}
	return 0;
}

/* Records the handle's regions against the parent's: a version row for each
 * region that is new, resized or changed, a removal for each the parent
 * held that is no longer registered. */
static int record_regions(run_state *r)
{
	mtm_store *s = r->s;
	ckpt_ctx *c = r->c;
	region_row *rows;
	size_t n;
	MTM_TRY(region_rows_at(s, &r->parent_lin, &rows, &n));
	int rc = 0;
	for (size_t i = 0; i < s->n_regions && !rc; i++) {
		mtm_region *g = &s->regions[i];
		const region_row *pr = region_row_find(rows, n, g->name);
		int64_t file_id = pr ? pr->file_id : c->next_file_id++;
		if ((rc = region_parent_hashes(r, g, pr, file_id)))
			break;
		g->file_id = file_id;
		g->hashes_at = 0; /* updated in place: until the commit they describe nothing */
		uint64_t bytes_before = c->bytes_changed;
		c->cur_file = file_id;
		if ((rc = region_compare(c, g)) || (rc = flush_group(c)))
			break;
		uint64_t changed = c->bytes_changed - bytes_before;
		c->bytes_changed = bytes_before; /* counted as the regions', not the files' */
		r->info.region_bytes_changed += changed;
		r->info.regions++;
		r->info.region_bytes += g->len;
		if (!pr || pr->size != (int64_t)g->len || changed)
			rc = region_put(s, g->name, c->branch, c->id, 1, (int64_t)g->len, file_id);
	}
	for (size_t i = 0; i < n && !rc; i++) {
		int registered = 0;
		for (size_t k = 0; k < s->n_regions && !registered; k++)
			registered = !strcmp(s->regions[k].name, rows[i].name);
		if (!registered)
			rc = region_put(s, rows[i].name, c->branch, c->id, 0, 0, 0);
	}
	region_rows_free(rows, n);
	if (rc)
		return mtm_set_error(rc, "checkpoint: memory regions: %s", mtm_last_error());
	r->regions_recorded = 1;
	return 0;
}

int ckpt_begin(mtm_store *s, const mtm_checkpoint_opts *opts, const ckpt_hooks *hooks, ckpt_run **out)
{
	*out = NULL;
	if (opts && opts->version != MTM_CHECKPOINT_OPTS_VERSION)
		return mtm_set_error(MTM_EINVAL, "checkpoint: unsupported options version %d", opts->version);
	run_state *r = calloc(1, sizeof *r);
	if (!r)
		return mtm_set_error(ENOMEM, "checkpoint");
	/* A scan checkpoint of the API or the CLI (one that asks whether a
	 * session runs: not a session's own, nor the one an in-place restore
	 * makes first) adds its block rows to block_log (store_trim_log) */
	int scan_logs = hooks && !hooks->arg && hooks->pack_fresh;
	int64_t b0 = now_ns();
	int rc = store_lock(s);
	if (!rc && ((rc = store_unmirror(s)) || (scan_logs && (rc = store_trim_log(s)))))
		store_unlock(s);
	if (rc) {
		free(r);
		return rc;
	}
	r->s = s;
	r->c = &r->ctx;
	r->ctx.s = s;
	r->removed_ids = (vec)VEC_INIT(int64_t);
	if (hooks)
		r->hooks = *hooks;
	r->sc_defer = r->hooks.sc_kept != NULL;
	reader_init(&r->rd);
	/* mapped or read, each on two threads, whichever costs this machine
	 * less (tree/reader.h): on a PVM guest, mapping a file cached in small
	 * folios cost 2.5x the CPU of reading it (BENCHMARKS-ARCHIVE.md S31) */
	r->rd.pick = 1;
	r->ctx.hooks = &r->hooks;
	r->ci = &r->info;
	r->opts = opts;
	r->t0 = now_ns();
	r->ph_debug = secure_getenv("METAMORI_DEBUG_CHECKPOINT") != NULL; /* (a session's too: the commit's parts) */
	r->info.time_ns = r->t0;
	r->info.message = (char *)(opts && opts->message ? opts->message : "");
	*out = r;
	int64_t b1 = now_ns();
	if ((rc = ignore_load(&r->ign, s->rootfd, opts ? opts->excludes : NULL, opts ? opts->n_excludes : 0)))
		return rc;
	int64_t b2 = now_ns();
	if ((rc = mtm_head(s, &r->info.parent)) || (rc = lineage_of(s, r->info.parent, &r->parent_lin)))
		return rc;
	int64_t b3 = now_ns();
	if ((rc = db_exec_cached(s, "BEGIN IMMEDIATE")))
		return rc;
	int64_t b4 = now_ns();
	r->in_tx = 1;
	if ((rc = meta_get_int(s, "next_id", &r->info.id)) || (rc = meta_get_int(s, "next_file_id", &r->ctx.next_file_id)) ||
	    (rc = choose_branch(s, r->info.parent, &r->ctx.branch)))
		return rc;
	r->ctx.id = r->info.id;
	/* A session's checkpoint continues after what it wrote ahead; while a
	 * session runs, anyone else's starts a pack of its own */
	pack_begin_opts po = {0};
	int64_t b5 = now_ns();
	if (r->hooks.ahead)
		po.ahead = r->hooks.ahead(r->hooks.arg);
	else if (r->hooks.pack_fresh)
		po.fresh = r->hooks.pack_fresh(s);
	int64_t b6 = now_ns();
	/* ... unless a session runs: its handle takes block_log for empty once
	 * it merged it (index_block_at), so while it lives only it adds rows
	 * there; it merges the log when it starts, under the lock we hold */
	if ((rc = pack_writer_begin(&r->ctx.pw, s, &po)) ||
	    (rc = index_writer_init(&r->ctx.iw, s, s->log_blocks ? INDEX_TO_LOG
	                                           : scan_logs && !po.fresh ? INDEX_TO_LOG_IF_FEW : INDEX_TO_BLOCK)))
		return rc;
	if (r->ph_debug) {
		int64_t b7 = now_ns();
		log_msg(MTM_LOG_DEBUG, "checkpoint begin: lock %.2f ms, ignore file %.2f ms, head %.2f ms, BEGIN %.2f ms, "
		        "ids %.2f ms, what was written ahead %.2f ms, writers %.2f ms", (double)(b1 - b0) / 1e6,
		        (double)(b2 - b1) / 1e6, (double)(b3 - b2) / 1e6, (double)(b4 - b3) / 1e6, (double)(b5 - b4) / 1e6,
		        (double)(b6 - b5) / 1e6, (double)(b7 - b6) / 1e6);
	}
	return 0;
}

mtm_id ckpt_parent(const ckpt_run *r) { return r->info.parent; }
/* The root's own metadata counts too (status shows it as "."): a restore's
 * save-first that skipped a changed root would lose it. A root that cannot
 * be read counts as changed: the commit then says why. */
static int root_changed(const ckpt_run *r)
{
	root_meta live, head = {0};
	int rc = root_meta_live(r->s->rootfd, &live);
	if (!rc)
		rc = root_meta_of(r->s, r->info.parent, &head);
	int changed = rc || root_meta_changed(&head, &live);
	root_meta_free(&live);
	root_meta_free(&head);
	return changed;
}

int ckpt_unchanged(const ckpt_run *r)
{
	return r->info.parent && !r->info.files_added && !r->info.files_changed && !r->info.files_removed &&
	       !root_changed(r);
}
const pack_writer *ckpt_pack(const ckpt_run *r) { return &r->ctx.pw; }
const lineage *ckpt_lineage(const ckpt_run *r) { return &r->parent_lin; }
const ignore_set *ckpt_ignore(const ckpt_run *r) { return &r->ign; }

/* Entries and tree bytes of the parent, for a partial (tracked) record. */
static int parent_totals(run_state *r)
{
	if (!r->info.parent)
		return 0;
	static const char sql[] = "SELECT entries, tree_bytes FROM checkpoint WHERE id=?";
	sqlite3_stmt *st;
	MTM_TRY(db_cached(r->s, sql, sql, &st));
	sqlite3_bind_int64(st, 1, r->info.parent);
	int rc;
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		r->info.entries = (uint64_t)sqlite3_column_int64(st, 0);
		r->info.tree_bytes = (uint64_t)sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(r->s, rc, "index");
}

/* path's stat cache row into r->sc (*out NULL: none), read once a
 * checkpoint. */
/* A copy of row kept in r->sc as path's. */
static int sc_cache_copy(run_state *r, const char *path, const sc_row *row, const sc_row **out)
{
	sc_row *copy = malloc(sizeof *copy);
	if (!copy || pathmap_put(&r->sc, path, copy)) {
		free(copy);
		return mtm_set_error(ENOMEM, "stat cache");
	}
	*copy = *row;
	*out = copy;
	return 0;
}

static int statcache_get(run_state *r, const char *path, const sc_row **out)
{
	*out = pathmap_get(&r->sc, path);
	if (*out)
		return 0;
	const sc_row *kept;
	if (r->hooks.sc_pending && r->hooks.sc_pending(r->hooks.arg, r->info.parent, path, &kept))
		/* kept by the session (not in the index yet), or read by its passes;
		 * NULL: deleted */
		return kept ? sc_cache_copy(r, path, kept, out) : 0;
	/* (the handle's statement: a session's checkpoint reads a few rows,
	 * and preparing one for each checkpoint cost as much as those reads) */
	static const char sql[] = "SELECT ver, st FROM statcache WHERE path=?";
	sqlite3_stmt *st;
	sc_row got;
	int found;
	MTM_TRY(db_cached(r->s, sql, sql, &st));
	int rc = statcache_get_row(r->s, &st, path, &got, &found);
	return rc || !found ? rc : sc_cache_copy(r, path, &got, out);
}

int ckpt_statcache_row(ckpt_run *r, const char *path, const sc_row **out)
{
	return statcache_get(r, path, out);
}

void ckpt_statcache_direct(ckpt_run *r)
{
	assert(!r->sc_out.n); /* (before the record) */
	r->sc_defer = 0;
}

/* The stat cache rows of the paths in parent and live only: a tracked
 * checkpoint never reads the rows of untouched files (and not twice the
 * rows a session's collect read already, ckpt_statcache_row). */
static int statcache_load_paths(run_state *r, const vec *parent, const vec *live)
{
	for (size_t i = 0; i < parent->n + live->n; i++) {
		const char *path = i < parent->n ? VEC_AT(parent, entry, i).path : VEC_AT(live, live_item, i - parent->n).path;
		const sc_row *row;
		MTM_TRY(statcache_get(r, path, &row));
	}
	return 0;
}

/* Records the paths in parent and live (the stat cache read for those
 * alone); entries and bytes: the totals of every other path, added to what
 * the record counts. */
static int record_paths(run_state *r, vec *parent, vec *live, uint64_t entries, uint64_t bytes)
{
	assert(!r->sc_loaded); /* one record per checkpoint */
	/* (no more entry rows than paths in parent and live; a first
	 * checkpoint's rows are appended to entry in key order, and a session
	 * that starts would merge the log first, its pages in its memory) */
	if (r->info.parent)
		MTM_TRY(index_writer_entries_to_log_if_few(&r->ctx.iw, parent->n + live->n));
	MTM_TRY(statcache_load_paths(r, parent, live));
	r->sc_loaded = 1;
	r->info.entries = r->info.tree_bytes = 0;
	MTM_TRY(scan_and_record(r, parent, live));
	r->info.entries += entries;
	r->info.tree_bytes += bytes;
	return 0;
}

int ckpt_record(ckpt_run *r, vec *parent, vec *live)
{
	/* parent and live hold only the touched paths: the totals are the
	 * parent's, adjusted by the difference over those paths */
	MTM_TRY(parent_totals(r));
	uint64_t entries = r->info.entries, bytes = r->info.tree_bytes;
	for (size_t i = 0; i < parent->n; i++) {
		entry *e = &VEC_AT(parent, entry, i);
		entries--;
		if (e->kind == KIND_FILE)
			bytes -= (uint64_t)e->size;
	}
	return record_paths(r, parent, live, entries, bytes);
}

int ckpt_record_scanned(ckpt_run *r, vec *parent, vec *live, const tree_rest *rest)
{
	return record_paths(r, parent, live, rest->entries, rest->bytes);
}

void ckpt_note_session(ckpt_run *r, int tracked, uint64_t pause_ns)
{
	r->info.tracked = !!tracked;
	r->info.pause_ns = pause_ns;
}

int ckpt_commit(ckpt_run *r, mtm_checkpoint_info *out)
{
	mtm_store *s = r->s;
	int rc;
	r->info.bytes_changed = r->ctx.bytes_changed;
	r->info.bytes_stored = r->ctx.pw.bytes_stored;
	/* SQLite rolls a transaction back by itself after some I/O errors; had
	 * one been missed, the statements since ran in autocommit mode. Never
	 * record a checkpoint outside the transaction that holds its rows. */
	if (sqlite3_get_autocommit(s->db))
		return mtm_set_error(EIO, "%s/.metamori/index.db: the checkpoint's transaction was rolled back by an I/O error",
		                     s->root);
	if ((rc = insert_checkpoint(s, &r->info, r->ctx.branch)) || (rc = meta_set_int(s, "head", r->info.id)) ||
	    (rc = meta_set_int(s, "next_id", r->info.id + 1)) || (rc = meta_set_int(s, "next_file_id", r->ctx.next_file_id)))
		return rc;
	/* packs durable first, then the commit that names them; the held
	 * block rows go in while the pack's last writes and fsync run */
	int64_t c0 = now_ns();
	if ((rc = pack_writer_sync_begin(&r->ctx.pw)))
		return rc;
	if ((rc = index_flush_blocks(&r->ctx.iw)))
		return rc;
	int64_t c1 = now_ns();
	if ((rc = pack_writer_finish(&r->ctx.pw)))
		return rc;
	int64_t c2 = now_ns();
	if ((rc = db_exec_cached(s, "COMMIT")))
		return rc; /* (ckpt_end joins the pack's thread before it lets the lock go) */
	if (r->ph_debug)
		log_msg(MTM_LOG_DEBUG, "checkpoint commit: rows %.1f ms, pack sync wait %.1f ms, index COMMIT %.1f ms",
		        (c1 - c0) / 1e6, (c2 - c1) / 1e6, (now_ns() - c2) / 1e6);
	r->in_tx = 0;
	r->committed = 1;
	if (r->hooks.sc_kept) {
		r->hooks.sc_kept(r->hooks.arg, &r->sc_out); /* (the values are its now) */
		pathmap_free(&r->sc_out, NULL);
		memset(&r->sc_out, 0, sizeof r->sc_out);
	}
	for (size_t i = 0; r->regions_recorded && i < s->n_regions; i++)
		s->regions[i].hashes_at = r->info.id;
	s->log_rows += s->log_pending;
	s->entry_log_rows += s->entry_log_pending;
	s->log_pending = s->entry_log_pending = 0;
	if (out) {
		*out = r->info;
		out->message = strdup(r->info.message);
	}
	return 0;
}

void ckpt_end(ckpt_run *r)
{
	if (!r)
		return;
	mtm_store *s = r->s;
	if (r->in_tx)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	s->log_pending = s->entry_log_pending = 0;
	sqlite3_finalize(r->sc_put);
	sqlite3_finalize(r->sc_del);
	blockhash_stmts_free(&r->bh);
	reader_free(&r->rd);
	vec_free(&r->removed_ids);
	pack_writer_free(&r->ctx.pw);
	index_writer_free(&r->ctx.iw);
	pathmap_free(&r->sc, free);
	pathmap_free(&r->sc_out, free);
	lineage_free(&r->parent_lin);
	ignore_free(&r->ign);
	store_load_branches(s);
	store_unlock(s);
	free(r);
}

/* A full scan: the whole tree against the whole parent tree, streamed
 * (scan_changed: what may differ is held, the rest only counted).
 * only_if_changed: nothing is recorded (out->id = 0) when no entry differs
 * from the parent's. */
static int scan(mtm_store *s, const mtm_checkpoint_opts *opts, const ckpt_hooks *hooks, mtm_checkpoint_info *out,
                int only_if_changed)
{
	ckpt_run *r;
	vec parent = VEC_INIT(entry), live = VEC_INIT(live_item);
	tree_rest rest;
	int64_t ph[4] = {now_ns()};
	int rc = ckpt_begin(s, opts, hooks, &r);
	ph[1] = now_ns();
	if (!rc)
		rc = scan_changed(s, &r->ign, r->info.parent, 1, &live, &parent, &rest, NULL, NULL);
	ph[2] = now_ns();
	if (!rc)
		rc = ckpt_record_scanned(r, &parent, &live, &rest);
	ph[3] = now_ns();
	int debug = secure_getenv("METAMORI_DEBUG_CHECKPOINT") != NULL;
	if (r) /* (NULL when ckpt_begin failed: a store that cannot be written) */
		r->ph_debug = debug;
	if (!rc && debug)
		log_msg(MTM_LOG_DEBUG, "checkpoint phases: begin %.1f ms, walk %.1f ms, record %.1f ms (%zu files compared)",
		        (ph[1] - ph[0]) / 1e6, (ph[2] - ph[1]) / 1e6, (ph[3] - ph[2]) / 1e6, live.n);
	if (!rc && only_if_changed && ckpt_unchanged(r)) {
		if (out) {
			memset(out, 0, sizeof *out); /* ckpt_end rolls back: nothing was recorded */
			out->parent = r->info.parent;
		}
	} else {
		if (!rc && s->n_regions)
			rc = record_regions(r);
		if (!rc)
			rc = ckpt_commit(r, out);
	}
	entries_free(&parent);
	live_free(&live);
	ckpt_end(r);
	return rc;
}

int ckpt_scan(mtm_store *s, const mtm_checkpoint_opts *opts, const ckpt_hooks *hooks, mtm_checkpoint_info *out)
{
	return scan(s, opts, hooks, out, 0);
}

int ckpt_scan_if_changed(mtm_store *s, const mtm_checkpoint_opts *opts, const ckpt_hooks *hooks,
                         mtm_checkpoint_info *out)
{
	return scan(s, opts, hooks, out, 1);
}

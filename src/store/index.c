/* index.c — see index.h. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/beneath.h"
#include "io/xattr.h"
#include "store/index.h"
#include "util/error.h"
#include "util/xxh.h"

static uint64_t zero_hash;

static void zero_hash_init(void)
{
	static const unsigned char z[MTM_BLOCK];
	zero_hash = XXH3_64bits(z, sizeof z);
}

/* Computed once; separate handles (and the flusher thread) may ask at once. */
uint64_t zero_block_hash(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, zero_hash_init);
	return zero_hash;
}

void entry_clear(entry *e)
{
	free(e->path);
	free(e->target);
	free(e->xattrs);
	memset(e, 0, sizeof *e);
}

int entry_same(const entry *a, const entry *b)
{
	return a->kind == b->kind && a->mode == b->mode && a->uid == b->uid && a->gid == b->gid && a->size == b->size &&
	       a->mtime_s == b->mtime_s && a->mtime_nsec == b->mtime_nsec && a->rdev == b->rdev &&
	       ((!a->target && !b->target) || (a->target && b->target && !strcmp(a->target, b->target))) &&
	       a->xattrs_len == b->xattrs_len && (!a->xattrs_len || !memcmp(a->xattrs, b->xattrs, a->xattrs_len));
}

void entries_free(vec *v)
{
	for (size_t i = 0; i < v->n; i++)
		entry_clear(&VEC_AT(v, entry, i));
	vec_free(v);
}

entry *tree_find(const vec *tree, const char *path)
{
	size_t lo = 0, hi = tree->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(VEC_AT(tree, entry, mid).path, path);
		if (c == 0)
			return &VEC_AT(tree, entry, mid);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Copies and validates the current row into e. */
static int read_entry_row(sqlite3_stmt *st, entry *e)
{
	const char *path = (const char *)sqlite3_column_text(st, 0);
	int plen = sqlite3_column_bytes(st, 0);
	if (!path || !path_is_safe(path, (size_t)plen))
		return mtm_set_error(MTM_ECORRUPT, "index: unsafe or damaged path in an entry ('%.80s')",
		                     path ? path : "");
	e->ver = sqlite3_column_int64(st, 2);
	e->kind = sqlite3_column_int(st, 3);
	int64_t mode = sqlite3_column_int64(st, 4);
	e->uid = (uint32_t)sqlite3_column_int64(st, 5);
	e->gid = (uint32_t)sqlite3_column_int64(st, 6);
	e->size = sqlite3_column_int64(st, 7);
	int64_t nsec = sqlite3_column_int64(st, 8);
	e->file_id = sqlite3_column_int64(st, 9);
	e->mtime_s = sqlite3_column_int64(st, 11);
	e->rdev = (uint64_t)sqlite3_column_int64(st, 12);
	if (e->kind < KIND_NONE || e->kind > KIND_MAX || mode < 0 || mode > 07777 || e->size < 0 ||
	    e->size > MTM_MAX_FILE_SIZE || (e->kind == KIND_FILE && e->file_id <= 0) || nsec < 0 || nsec > 999999999)
		return mtm_set_error(MTM_ECORRUPT, "index: damaged entry for '%s'", path);
	e->mode = (uint32_t)mode;
	e->mtime_nsec = (int32_t)nsec;
	e->path = strdup(path);
	if (!e->path)
		return mtm_set_error(ENOMEM, "index");
	if (e->kind == KIND_SYMLINK || e->kind == KIND_LINK) {
		const char *t = sqlite3_column_blob(st, 10);
		int tlen = sqlite3_column_bytes(st, 10);
		if (!t || tlen <= 0 || memchr(t, 0, (size_t)tlen) ||
		    (e->kind == KIND_SYMLINK ? tlen > 4095 : !path_is_safe(t, (size_t)tlen)))
			return mtm_set_error(MTM_ECORRUPT, "index: damaged %s target for '%s'",
			                     e->kind == KIND_SYMLINK ? "symlink" : "hard link", path);
		e->target = strndup(t, (size_t)tlen);
		if (!e->target)
			return mtm_set_error(ENOMEM, "index");
	}
	const unsigned char *x = sqlite3_column_blob(st, 13);
	int xlen = sqlite3_column_bytes(st, 13);
	if (x && xlen > 0) {
		if (!xattr_blob_valid(x, (size_t)xlen))
			return mtm_set_error(MTM_ECORRUPT, "index: damaged extended attributes for '%s'", path);
		e->xattrs = malloc((size_t)xlen);
		if (!e->xattrs)
			return mtm_set_error(ENOMEM, "index");
		memcpy(e->xattrs, x, (size_t)xlen);
		e->xattrs_len = (size_t)xlen;
	}
	return 0;
}

/* Every entry row, of entry and of entry_log (FORMAT.md 3.4.1: a reader
 * takes both tables' rows), in key order: SQLite merges the two
 * primary-key scans (no sort). */
#define ENTRY_ALL_SQL \
	"SELECT " ENTRY_COLUMNS " FROM entry UNION ALL SELECT " ENTRY_COLUMNS " FROM entry_log ORDER BY 1, 2, 3"

/* Steps st (rows of entry ordered by path, branch, ckpt) and appends to out
 * the visible version of each path under l that is not a tombstone. */
static int collect_visible(mtm_store *s, sqlite3_stmt *st, const lineage *l, vec *out)
{
	/* Rows come grouped by path; keep the visible row with the greatest ckpt. */
	char *group = NULL;
	int64_t best_ckpt = -1;
	entry best = {0};
	int err = 0, rc;
	for (;;) {
		rc = sqlite3_step(st);
		const char *path = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
		if (rc == SQLITE_ROW && !path) {
			err = mtm_set_error(MTM_ECORRUPT, "index: entry with no path");
			break;
		}
		if (!path || !group || strcmp(path, group) != 0) {
			/* close the previous group */
			if (best_ckpt >= 0 && best.kind != KIND_NONE) {
				entry *slot = vec_push(out);
				if (!slot) {
					err = mtm_set_error(ENOMEM, "index");
					break;
				}
				*slot = best;
				memset(&best, 0, sizeof best);
			}
			entry_clear(&best);
			best_ckpt = -1;
			free(group);
			group = NULL;
			if (!path)
				break;
			group = strdup(path);
			if (!group) {
				err = mtm_set_error(ENOMEM, "index");
				break;
			}
		}
		int64_t branch = sqlite3_column_int64(st, 1), ckpt = sqlite3_column_int64(st, 2);
		if (lineage_visible(l, branch, ckpt) && ckpt > best_ckpt) {
			entry_clear(&best);
			if ((err = read_entry_row(st, &best)))
				break;
			best_ckpt = ckpt;
		}
	}
	if (!err && rc != SQLITE_DONE)
		err = db_error(s, rc, "index");
	entry_clear(&best);
	free(group);
	return err;
}

int index_load_tree(mtm_store *s, mtm_id k, vec *out)
{
	*out = (vec)VEC_INIT(entry);
	lineage l;
	MTM_TRY(lineage_of(s, k, &l));
	if (!l.n)
		return 0;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, ENTRY_ALL_SQL, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		lineage_free(&l);
		return db_error(s, rc, "index");
	}
	int err = collect_visible(s, st, &l, out);
	/* The visible tree is closed under parents (FORMAT 3.4). A lying index
	 * could otherwise make a restore fail half-way (a file under a symlink or
	 * under nothing), after the tree was already changed. */
	for (size_t i = 0; !err && i < out->n; i++) {
		const char *p = VEC_AT(out, entry, i).path, *slash = strrchr(p, '/');
		if (!slash)
			continue;
		char *parent = strndup(p, (size_t)(slash - p));
		if (!parent) {
			err = mtm_set_error(ENOMEM, "index");
			break;
		}
		const entry *pe = tree_find(out, parent);
		free(parent);
		if (!pe || pe->kind != KIND_DIR)
			err = mtm_set_error(MTM_ECORRUPT, "index: damaged tree at checkpoint %lld: '%.200s' has no parent directory",
			                    (long long)k, p);
	}
	sqlite3_finalize(st);
	lineage_free(&l);
	if (err)
		entries_free(out);
	return err;
}

int tree_cursor_open(mtm_store *s, mtm_id k, tree_cursor *c)
{
	memset(c, 0, sizeof *c);
	c->s = s;
	c->k = k;
	MTM_TRY(lineage_of(s, k, &c->l));
	if (!c->l.n) {
		c->done = 1; /* no checkpoint: an empty tree */
		return 0;
	}
	/* (both tables' rows: FORMAT.md 3.4.1; a key is in one of them) Each
	 * table is read in its key's order and the two are merged here: SQLite's
	 * merge of a UNION ALL (co-routines, a compare of every row) cost a
	 * third of the cursor's instructions once the log held a few thousand
	 * rows (W2m). */
	int rc = sqlite3_prepare_v2(s->db, "SELECT path, branch, ckpt, kind FROM entry ORDER BY 1, 2, 3", -1,
	                            &c->src[0], NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(s->db, "SELECT path, branch, ckpt, kind FROM entry_log ORDER BY 1, 2, 3", -1,
		                        &c->src[1], NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(s->db,
		                        "SELECT " ENTRY_COLUMNS " FROM entry WHERE path=?1 AND branch=?2 AND ckpt=?3 UNION ALL "
		                        "SELECT " ENTRY_COLUMNS " FROM entry_log WHERE path=?1 AND branch=?2 AND ckpt=?3",
		                        -1, &c->full, NULL);
	return rc == SQLITE_OK ? 0 : db_error(s, rc, "index");
}

enum { ROW_NEED, ROW_ON, ROW_DONE };

/* SQLite's order of two paths (the first column of each source's row, of
 * the types it had when read: a hand-edited index may hold a number or a
 * BLOB): numbers first, then TEXT, then BLOB; TEXT and BLOB by their bytes
 * (BINARY), the shorter first where one is the other's start. The merge
 * must order as SQLite ordered each table, or one path's rows could come
 * apart. */
static int type_rank(int t) { return t == SQLITE_INTEGER || t == SQLITE_FLOAT ? 1 : t == SQLITE_TEXT ? 2 : t == SQLITE_BLOB ? 3 : 0; }

static int path_cmp(tree_cursor *c)
{
	int ra = type_rank(c->type[0]), rb = type_rank(c->type[1]);
	if (ra != rb)
		return ra < rb ? -1 : 1;
	if (ra == 1) {
		double x = sqlite3_column_double(c->src[0], 0), y = sqlite3_column_double(c->src[1], 0);
		return x < y ? -1 : x > y;
	}
	/* (a BLOB's text is its bytes) */
	int na = c->path_len[0], nb = c->path_len[1];
	int r = na && nb ? memcmp(c->path[0], c->path[1], (size_t)(na < nb ? na : nb)) : 0;
	return r ? r : (na > nb) - (na < nb);
}

/* The source whose row comes next in the merged order, left untaken on
 * its statement (*out: 0 or 1), or -1 at the end of both tables. */
static int cursor_peek(tree_cursor *c, int *out)
{
	*out = -1;
	for (int i = 0; i < 2; i++) {
		if (c->state[i] != ROW_NEED)
			continue;
		sqlite3_stmt *st = c->src[i];
		int rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			c->state[i] = ROW_ON;
			c->type[i] = sqlite3_column_type(st, 0);
			c->path[i] = (const char *)sqlite3_column_text(st, 0);
			c->path_len[i] = sqlite3_column_bytes(st, 0);
			if (!c->path[i])
				return c->type[i] == SQLITE_NULL ? mtm_set_error(MTM_ECORRUPT, "index: entry with no path")
				                                 : mtm_set_error(ENOMEM, "index");
		} else if (rc == SQLITE_DONE) {
			c->state[i] = ROW_DONE;
		} else {
			return db_error(c->s, rc, "index");
		}
	}
	int a = c->state[0] == ROW_ON, b = c->state[1] == ROW_ON;
	*out = a && b ? (path_cmp(c) <= 0 ? 0 : 1) : a ? 0 : b ? 1 : -1;
	return 0;
}

/* The visible tree is closed under parents (FORMAT 3.4): e's parent is a
 * directory handed out before it (parents sort first). */
static int cursor_check_parent(tree_cursor *c, entry *e)
{
	char *slash = strrchr(e->path, '/');
	size_t len = slash ? (size_t)(slash - e->path) : 0;
	if (slash && !(len == c->parent_ok_len && c->parent_ok && !memcmp(e->path, c->parent_ok, len))) {
		*slash = 0;
		int ok = pathmap_get(&c->dirs, e->path) != NULL;
		*slash = '/';
		if (!ok)
			return mtm_set_error(MTM_ECORRUPT,
			                     "index: damaged tree at checkpoint %lld: '%.200s' has no parent directory",
			                     (long long)c->k, e->path);
		/* (the set only grows: a parent found stays found) */
		if (len + 1 > c->parent_ok_cap) {
			char *p = realloc(c->parent_ok, len + 1);
			if (!p)
				return mtm_set_error(ENOMEM, "index");
			c->parent_ok = p;
			c->parent_ok_cap = len + 1;
		}
		memcpy(c->parent_ok, e->path, len);
		c->parent_ok_len = len;
	}
	if (e->kind == KIND_DIR && pathmap_put(&c->dirs, e->path, (void *)1))
		return mtm_set_error(ENOMEM, "index");
	return 0;
}

/* Clears the entry handed out last: a partial one's path is the cursor's
 * buffer, not its own. */
static void cursor_clear(tree_cursor *c)
{
	if (c->partial)
		c->cur.path = NULL;
	entry_clear(&c->cur);
	c->partial = 0;
}

int tree_cursor_next(tree_cursor *c, entry **out)
{
	*out = NULL;
	cursor_clear(c);
	while (!c->done) {
		int i;
		int rc = cursor_peek(c, &i);
		if (rc)
			return rc;
		if (i < 0) {
			c->done = 1;
			break;
		}
		/* one path's rows (grouped: ordered by path): the visible one with
		 * the greatest ckpt; only its key and kind are kept (the path in the
		 * cursor's buffer: a strdup and a free per entry were ~5% of a W2
		 * walk's allocations, for the few entries a caller keeps) */
		size_t len = strlen(c->path[i]) + 1;
		if (len > c->pathbuf_cap) {
			size_t cap = len < 256 ? 256 : len * 2;
			char *nb = malloc(cap);
			if (!nb)
				return mtm_set_error(ENOMEM, "index");
			free(c->pathbuf);
			c->pathbuf = nb;
			c->pathbuf_cap = cap;
		}
		char *group = memcpy(c->pathbuf, c->path[i], len);
		int64_t best_ckpt = -1, best_branch = 0;
		int best_kind = KIND_NONE, best_safe = 0;
		for (;;) {
			sqlite3_stmt *r = c->src[i];
			int64_t branch = sqlite3_column_int64(r, 1), ckpt = sqlite3_column_int64(r, 2);
			if (lineage_visible(&c->l, branch, ckpt) && ckpt > best_ckpt) {
				best_ckpt = ckpt;
				best_branch = branch;
				best_kind = sqlite3_column_int(r, 3);
				/* (the row's own bytes: a NUL inside hides from strcmp) */
				best_safe = path_is_safe(c->path[i], (size_t)c->path_len[i]);
			}
			c->state[i] = ROW_NEED; /* taken: its columns stay valid until the next peek steps it */
			if ((rc = cursor_peek(c, &i)))
				return rc;
			if (i < 0) {
				c->done = 1;
				break;
			}
			if (strcmp(c->path[i], group) != 0)
				break; /* the next group's first row (not taken) */
		}
		if (best_ckpt < 0 || best_kind == KIND_NONE)
			continue;
		if (!best_safe)
			return mtm_set_error(MTM_ECORRUPT, "index: unsafe or damaged path in an entry ('%.80s')", group);
		if (best_kind < KIND_NONE || best_kind > KIND_MAX)
			return mtm_set_error(MTM_ECORRUPT, "index: damaged entry for '%s'", group);
		c->cur = (entry){.path = group, .ver = best_ckpt, .kind = best_kind};
		c->cur_branch = best_branch;
		c->partial = 1;
		if ((rc = cursor_check_parent(c, &c->cur)))
			return rc;
		*out = &c->cur;
		return 0;
	}
	return 0;
}

int tree_cursor_fill(tree_cursor *c)
{
	if (!c->partial)
		return 0;
	sqlite3_stmt *q = c->full;
	int rc = SQLITE_DONE;
	entry e = {0};
	/* the key as TEXT, as written; then as a BLOB (a BLOB never equals a
	 * TEXT, and a hand-edited index may hold one) */
	for (int blob = 0; blob < 2 && rc == SQLITE_DONE; blob++) {
		sqlite3_reset(q);
		if (blob)
			sqlite3_bind_blob(q, 1, c->cur.path, (int)strlen(c->cur.path), SQLITE_STATIC);
		else
			sqlite3_bind_text(q, 1, c->cur.path, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 2, c->cur_branch);
		sqlite3_bind_int64(q, 3, c->cur.ver);
		rc = sqlite3_step(q);
	}
	if (rc == SQLITE_ROW)
		rc = read_entry_row(q, &e);
	else if (rc == SQLITE_DONE) /* read a moment ago in this transaction */
		rc = mtm_set_error(MTM_ECORRUPT, "index: the entry for '%s' is gone", c->cur.path);
	else
		rc = db_error(c->s, rc, "index");
	sqlite3_reset(q);
	if (!rc && e.kind != c->cur.kind)
		rc = mtm_set_error(MTM_ECORRUPT, "index: damaged entry for '%s'", c->cur.path);
	if (rc) {
		entry_clear(&e);
		return rc;
	}
	cursor_clear(c);
	c->cur = e;
	return 0;
}

void tree_cursor_close(tree_cursor *c)
{
	cursor_clear(c);
	free(c->pathbuf);
	sqlite3_finalize(c->src[0]);
	sqlite3_finalize(c->src[1]);
	sqlite3_finalize(c->full);
	lineage_free(&c->l);
	pathmap_free(&c->dirs, NULL);
	free(c->parent_ok);
	memset(c, 0, sizeof *c);
}

/* A block rewritten in many checkpoints has many versions. Up to this many
 * are scanned in order; past it the visible one is found by a seek per
 * lineage step, so that the cost per block stays bounded however long the
 * history (the versioned-key lookup of FORMAT.md section 4.2). */
#define VERSIONS_SCANNED 16

static int read_blockref(sqlite3_stmt *st, int64_t file_id, blockref *b)
{
	b->blkno = sqlite3_column_int64(st, 0);
	b->hash = (uint64_t)sqlite3_column_int64(st, 3);
	b->chunk = sqlite3_column_int64(st, 4);
	b->boff = sqlite3_column_int64(st, 5);
	if (b->chunk < 0 || b->boff < 0 || b->boff >= MTM_CHUNK_BLOCKS)
		return mtm_set_error(MTM_ECORRUPT, "index: file %lld block %lld has a damaged chunk reference",
		                     (long long)file_id, (long long)b->blkno);
	return 0;
}

/* The visible version of one block by seeking, in block and, when log is
 * given, in block_log (a lineage step's greatest ckpt wins, whichever table
 * holds it): *found = 0 if none. */
static int block_seek(mtm_store *s, sqlite3_stmt *st, sqlite3_stmt *log, int64_t file_id, int64_t blkno,
                      const lineage *l, blockref *out, int *found)
{
	*found = 0;
	sqlite3_stmt *q[2] = {st, log};
	for (size_t i = 0; i < l->n && !*found; i++) {
		int64_t best = -1;
		for (int t = 0; t < 2 && q[t]; t++) {
			sqlite3_reset(q[t]);
			sqlite3_bind_int64(q[t], 1, file_id);
			sqlite3_bind_int64(q[t], 2, blkno);
			sqlite3_bind_int64(q[t], 3, l->v[i].branch);
			sqlite3_bind_int64(q[t], 4, l->v[i].max);
			int rc = sqlite3_step(q[t]);
			if (rc == SQLITE_ROW) {
				int64_t ckpt = sqlite3_column_int64(q[t], 2);
				if (ckpt > best) {
					best = ckpt;
					*found = 1;
					MTM_TRY(read_blockref(q[t], file_id, out));
				}
			} else if (rc != SQLITE_DONE) {
				return db_error(s, rc, "index");
			}
			sqlite3_reset(q[t]);
		}
	}
	return 0;
}

#define BLOCK_COLS "blkno, branch, ckpt, hash, chunk, boff"
#define BLOCK_SEEK_WHERE "WHERE file_id=?1 AND blkno=?2 AND branch=?3 AND ckpt<=?4 ORDER BY ckpt DESC LIMIT 1"
#define BLOCK_PAIR_WHERE "WHERE file_id=?1 AND blkno=?2 AND branch=?3 AND ckpt<=?4 ORDER BY ckpt DESC"

const blockref *file_map_find(const vec *map, int64_t blkno)
{
	size_t lo = 0, hi = map->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int64_t b = VEC_AT(map, blockref, mid).blkno;
		if (b == blkno)
			return &VEC_AT(map, blockref, mid);
		if (b < blkno)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int index_file_map(mtm_store *s, int64_t file_id, const lineage *l, vec *out)
{
	*out = (vec)VEC_INIT(blockref);
	/* prepared once per handle: a scan of many small changed files calls
	 * this per file, and three prepares cost more than their few rows */
	int rc = SQLITE_OK;
	/* both tables' rows in one key order (SQLite merges the two index scans) */
	if (!s->q_file_map)
		rc = sqlite3_prepare_v2(s->db,
		                        "SELECT " BLOCK_COLS " FROM block WHERE file_id=?1 AND blkno>=?2 UNION ALL "
		                        "SELECT " BLOCK_COLS " FROM block_log WHERE file_id=?1 AND blkno>=?2 "
		                        "ORDER BY 1, 2, 3",
		                        -1, &s->q_file_map, NULL);
	if (rc == SQLITE_OK && !s->q_block_at)
		rc = sqlite3_prepare_v2(s->db, "SELECT " BLOCK_COLS " FROM block " BLOCK_SEEK_WHERE, -1, &s->q_block_at, NULL);
	if (rc == SQLITE_OK && !s->q_block_at_log)
		rc = sqlite3_prepare_v2(s->db, "SELECT " BLOCK_COLS " FROM block_log " BLOCK_SEEK_WHERE, -1, &s->q_block_at_log,
		                        NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_stmt *st = s->q_file_map, *seek = s->q_block_at, *seek_log = s->q_block_at_log;
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, file_id);
	sqlite3_bind_int64(st, 2, 0);
	int64_t cur = -1, best_ckpt = -1, seen = 0;
	blockref best = {0};
	int err = 0;
	for (;;) {
		rc = sqlite3_step(st);
		int64_t blkno = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -2;
		if (blkno != cur) {
			if (best_ckpt >= 0) {
				blockref *b = vec_push(out);
				if (!b) {
					err = mtm_set_error(ENOMEM, "index");
					break;
				}
				*b = best;
			}
			best_ckpt = -1;
			seen = 0;
			cur = blkno;
			if (rc != SQLITE_ROW)
				break;
			if (blkno < 0 || blkno > MTM_MAX_FILE_SIZE / MTM_BLOCK) {
				err = mtm_set_error(MTM_ECORRUPT, "index: file %lld has a damaged block number", (long long)file_id);
				break;
			}
		}
		if (++seen > VERSIONS_SCANNED) {
			/* a hot block: seek its visible version, go on after it */
			int found;
			if ((err = block_seek(s, seek, seek_log, file_id, blkno, l, &best, &found)))
				break;
			best_ckpt = found ? 0 : -1;
			if (found) {
				blockref *b = vec_push(out);
				if (!b) {
					err = mtm_set_error(ENOMEM, "index");
					break;
				}
				*b = best;
			}
			best_ckpt = -1;
			cur = -1;
			sqlite3_reset(st);
			sqlite3_bind_int64(st, 2, blkno + 1);
			continue;
		}
		int64_t branch = sqlite3_column_int64(st, 1), ckpt = sqlite3_column_int64(st, 2);
		if (lineage_visible(l, branch, ckpt) && ckpt > best_ckpt) {
			if ((err = read_blockref(st, file_id, &best)))
				break;
			best_ckpt = ckpt;
		}
	}
	if (!err && rc != SQLITE_DONE && rc != SQLITE_ROW)
		err = db_error(s, rc, "index");
	sqlite3_reset(st);
	if (err)
		vec_free(out);
	return err;
}

/* A session's block rows (to block_log) go in BLOCK_BATCH to a statement:
 * one VDBE run and one bind pass per batch instead of per row, which was
 * most of a row's cost (W1's 2,878 rows: 2-4 ms one at a time, on the
 * checkpoint's critical path).
 *
 * A checkpoint's rows to `block` go one to a plain INSERT (ins_new): a
 * multi-row or OR REPLACE statement may abort half done, so SQLite gives
 * each a statement journal, the pages it changes copied to a temporary
 * file first; W1's rows each change a different page of `block`, and that
 * was 10 MiB written to /var/tmp per checkpoint (as much as its WAL) and
 * more CPU than the per-row statements cost (BENCHMARKS-ARCHIVE.md S11). A
 * plain one-row INSERT fails, if it fails, before it writes anything: it
 * needs no journal. A row whose key is there already (a block put twice in
 * one checkpoint) is then put again by ins_block, which replaces it. */
#define BLOCK_BATCH 16

/* (a session's entry rows, and a small scan's) */
static const char ins_entry_log[] =
	"INSERT OR REPLACE INTO entry_log(" ENTRY_COLUMNS ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)";

int index_writer_init(index_writer *w, mtm_store *s, int where)
{
	/* a session's handle puts every checkpoint's rows in the log */
	assert(where == INDEX_TO_LOG || !s->log_blocks);
	memset(w, 0, sizeof *w);
	w->s = s;
	/* (the statements are the handle's, prepared once: db_cached; the keys
	 * are these static strings) */
	static const char ins_entry[] = "INSERT OR REPLACE INTO entry(" ENTRY_COLUMNS ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
	static const char ins_new[] = "INSERT INTO block VALUES(?,?,?,?,?,?,?)";
	static const char ins_again[] = "INSERT OR REPLACE INTO block VALUES(?,?,?,?,?,?,?)";
	static const char key_one[2], key_batch[2]; /* [0]: to block, [1]: to block_log */
	w->held = (vec)VEC_INIT(held_block);
	w->to_log = where != INDEX_TO_BLOCK;
	w->log_if_few = where == INDEX_TO_LOG_IF_FEW;
	/* a session's entry rows go to entry_log (FORMAT.md 3.4.1); a scan's,
	 * with no session, to entry unless they are few (below) */
	w->entries_to_log = where == INDEX_TO_LOG;
	const char *table = where == INDEX_TO_BLOCK ? "block" : "block_log";
	char sql[64 + BLOCK_BATCH * 16];
	int n = snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO %s VALUES(?,?,?,?,?,?,?)", table);
	const char *ie = w->entries_to_log ? ins_entry_log : ins_entry;
	MTM_TRY(db_cached(s, ie, ie, &w->ins_entry));
	MTM_TRY(db_cached(s, &key_one[w->to_log], sql, &w->ins_block));
	for (int i = 1; i < BLOCK_BATCH; i++)
		n += snprintf(sql + n, sizeof sql - (size_t)n, ",(?,?,?,?,?,?,?)");
	MTM_TRY(db_cached(s, &key_batch[w->to_log], sql, &w->ins_blocks));
	MTM_TRY(db_cached(s, ins_new, ins_new, &w->ins_new));
	return db_cached(s, ins_again, ins_again, &w->ins_again);
}

int index_writer_entries_to_log_if_few(index_writer *w, size_t rows)
{
	/* A scan's entry rows land at random paths of `entry`: about one leaf
	 * page each in the commit, and again in the fold of the WAL (W2's 225:
	 * 195 of its 516 pages); in the small log they share a few leaves, and
	 * the merge (store_trim_log) puts many checkpoints' rows into each leaf
	 * of `entry` at once. Many rows (a first checkpoint) go to `entry`,
	 * where they would only make the log big. */
	if (!w->log_if_few || w->entries_to_log || rows > INDEX_LOG_CKPT_ROWS)
		return 0;
	sqlite3_reset(w->ins_entry);
	MTM_TRY(db_cached(w->s, ins_entry_log, ins_entry_log, &w->ins_entry));
	w->entries_to_log = 1;
	return 0;
}

void index_writer_free(index_writer *w)
{
	/* (the handle's: reset, not finalized) */
	sqlite3_stmt *st[] = {w->ins_entry, w->ins_block, w->ins_blocks, w->ins_new, w->ins_again};
	for (size_t i = 0; i < sizeof st / sizeof st[0]; i++)
		if (st[i])
			sqlite3_reset(st[i]);
	vec_free(&w->held);
	memset(w, 0, sizeof *w);
}

int index_put_entry(index_writer *w, int64_t branch, int64_t ckpt, const entry *e)
{
	sqlite3_stmt *st = w->ins_entry;
	sqlite3_reset(st);
	sqlite3_bind_text(st, 1, e->path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, branch);
	sqlite3_bind_int64(st, 3, ckpt);
	sqlite3_bind_int(st, 4, e->kind);
	sqlite3_bind_int64(st, 5, e->mode);
	sqlite3_bind_int64(st, 6, e->uid);
	sqlite3_bind_int64(st, 7, e->gid);
	sqlite3_bind_int64(st, 8, e->size);
	sqlite3_bind_int64(st, 9, e->mtime_nsec);
	sqlite3_bind_int64(st, 10, e->file_id);
	if (e->target)
		sqlite3_bind_blob(st, 11, e->target, (int)strlen(e->target), SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 11);
	sqlite3_bind_int64(st, 12, e->mtime_s);
	sqlite3_bind_int64(st, 13, (int64_t)e->rdev);
	if (e->xattrs_len)
		sqlite3_bind_blob(st, 14, e->xattrs, (int)e->xattrs_len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 14);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_error(w->s, rc, "index");
	if (w->entries_to_log) {
		w->s->log_pending++;
		w->s->entry_log_pending++;
	}
	return 0;
}

/* Held rows at most: 3.5 MiB; a big scan inserts as it goes. */
#define HELD_BLOCKS 65536

int index_put_block(index_writer *w, int64_t file_id, int64_t blkno, int64_t branch, int64_t ckpt,
                    uint64_t hash, int64_t chunk, int64_t boff)
{
	/* FORMAT.md 3.5: boff is 0..15, and 0 for a hole (chunk 0) */
	assert(chunk >= 0 && boff >= 0 && boff < MTM_CHUNK_BLOCKS && (chunk || !boff));
	if (w->held.n >= HELD_BLOCKS)
		MTM_TRY(index_flush_blocks(w));
	assert(w->held.n < HELD_BLOCKS);
	held_block *h = vec_push(&w->held);
	if (!h)
		return mtm_set_error(ENOMEM, "index");
	*h = (held_block){file_id, blkno, branch, ckpt, (int64_t)hash, chunk, boff};
	return 0;
}

static void bind_block(sqlite3_stmt *st, int at, const held_block *h)
{
	sqlite3_bind_int64(st, at + 1, h->file_id);
	sqlite3_bind_int64(st, at + 2, h->blkno);
	sqlite3_bind_int64(st, at + 3, h->branch);
	sqlite3_bind_int64(st, at + 4, h->ckpt);
	sqlite3_bind_int64(st, at + 5, h->hash);
	sqlite3_bind_int64(st, at + 6, h->chunk);
	sqlite3_bind_int64(st, at + 7, h->boff);
}

/* In the order they were put: a later row for the same block replaces an
 * earlier one (a multi-row INSERT inserts its rows in order too). */
/* One row to `block` without a statement journal (see BLOCK_BATCH). */
static int insert_block(index_writer *w, const held_block *h)
{
	sqlite3_stmt *st = w->ins_new;
	sqlite3_reset(st);
	bind_block(st, 0, h);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) { /* the same block again: the later row wins */
		st = w->ins_again;
		sqlite3_reset(st);
		bind_block(st, 0, h);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
	}
	return rc == SQLITE_DONE ? 0 : db_error(w->s, rc, "index");
}

int index_flush_blocks(index_writer *w)
{
	/* The first flush decides, for all of the checkpoint's rows (a key put
	 * twice must land in the same table, where the later row replaces the
	 * earlier): a scan's many rows (a first checkpoint, files rewritten
	 * whole) go to block, where they would only make the log big */
	if (!w->decided && w->log_if_few && w->held.n > INDEX_LOG_CKPT_ROWS)
		w->to_log = 0;
	w->decided = 1;
	if (w->to_log)
		w->s->log_pending += (int64_t)w->held.n;
	size_t i = 0;
	while (!w->to_log && i < w->held.n)
		MTM_TRY(insert_block(w, &VEC_AT(&w->held, held_block, i++)));
	while (i < w->held.n) {
		int batch = w->held.n - i >= BLOCK_BATCH;
		sqlite3_stmt *st = batch ? w->ins_blocks : w->ins_block;
		int n = batch ? BLOCK_BATCH : 1;
		sqlite3_reset(st);
		for (int k = 0; k < n; k++)
			bind_block(st, 7 * k, &VEC_AT(&w->held, held_block, i + (size_t)k));
		int rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return db_error(w->s, rc, "index");
		i += (size_t)n;
	}
	w->held.n = 0;
	return 0;
}

static int none_in(mtm_store *s, const char *sql, int *empty)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	*empty = rc == SQLITE_DONE;
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_error(s, rc, "index");
}

int index_log_empty(mtm_store *s, int *empty)
{
	return none_in(s, "SELECT 1 FROM block_log LIMIT 1", empty);
}

int index_logs_empty(mtm_store *s, int *empty)
{
	return none_in(s, "SELECT 1 FROM block_log UNION ALL SELECT 1 FROM entry_log LIMIT 1", empty);
}

static int merge_error(mtm_store *s, int rc)
{
	char what[4200];
	snprintf(what, sizeof what, "%s/.metamori/index.db: merging block_log's and entry_log's rows into block and entry", s->root);
	return db_error(s, rc, what);
}

int index_merge_log(mtm_store *s)
{
	static const char *const steps[] = {
		"INSERT OR REPLACE INTO block SELECT file_id, blkno, branch, ckpt, hash, chunk, boff FROM block_log",
		"DELETE FROM block_log",
		"INSERT OR REPLACE INTO entry(" ENTRY_COLUMNS ") SELECT " ENTRY_COLUMNS " FROM entry_log",
		"DELETE FROM entry_log",
	};
	assert(!sqlite3_get_autocommit(s->db));
	/* an empty log is left alone: the DELETE would still write its root
	 * page (and its index's) */
	int empty[2];
	MTM_TRY(index_log_empty(s, &empty[0]));
	MTM_TRY(none_in(s, "SELECT 1 FROM entry_log LIMIT 1", &empty[1]));
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		if (empty[i / 2])
			continue;
		int rc = sqlite3_exec(s->db, steps[i], NULL, NULL, NULL);
		if (rc == SQLITE_OK && sqlite3_get_autocommit(s->db))
			rc = SQLITE_IOERR; /* rolled back by SQLite after an I/O error */
		if (rc != SQLITE_OK)
			return merge_error(s, rc);
	}
	return 0;
}

int index_settle(mtm_store *s)
{
	int empty;
	MTM_TRY(index_logs_empty(s, &empty));
	if (empty) {
		s->log_rows = s->entry_log_rows = 0;
		return 0;
	}
	/* one transaction: a crash leaves the rows in one table or the other,
	 * and a row in either means the same (FORMAT.md 3.5.1) */
	int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	rc = rc != SQLITE_OK ? merge_error(s, rc) : index_merge_log(s);
	if (!rc && (rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
		rc = merge_error(s, rc);
	if (rc) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	s->log_rows = s->entry_log_rows = 0;
	return 0;
}

void index_lookups_free(mtm_store *s)
{
	sqlite3_finalize(s->q_entry_at);
	sqlite3_finalize(s->q_entry_at_log);
	s->q_entry_at_log = NULL;
	sqlite3_finalize(s->q_block_at);
	sqlite3_finalize(s->q_file_map);
	sqlite3_finalize(s->q_block_at_log);
	sqlite3_finalize(s->q_block_pair);
	sqlite3_finalize(s->q_block_pair_log);
	s->q_entry_at = s->q_block_at = s->q_block_at_log = s->q_block_pair = s->q_block_pair_log = s->q_file_map = NULL;
	for (int i = 0; i < s->n_cached; i++)
		sqlite3_finalize(s->cached[i].st);
	s->n_cached = 0;
}

int index_entry_at(mtm_store *s, const char *path, const lineage *l, entry *out, int *found)
{
	*found = 0;
	memset(out, 0, sizeof *out);
	int rc;
#define ENTRY_SEEK_WHERE "WHERE path=?1 AND branch=?2 AND ckpt<=?3 ORDER BY ckpt DESC LIMIT 1"
	if (!s->q_entry_at && (rc = sqlite3_prepare_v2(s->db, "SELECT " ENTRY_COLUMNS " FROM entry " ENTRY_SEEK_WHERE, -1,
	                                               &s->q_entry_at, NULL)) != SQLITE_OK)
		return db_error(s, rc, "index");
	if (!s->q_entry_at_log && (rc = sqlite3_prepare_v2(s->db, "SELECT " ENTRY_COLUMNS " FROM entry_log " ENTRY_SEEK_WHERE,
	                                                   -1, &s->q_entry_at_log, NULL)) != SQLITE_OK)
		return db_error(s, rc, "index");
	/* entry_log's rows too (FORMAT.md 3.4.1), unless a session's own
	 * handle knows it holds none (as index_block_at) */
	sqlite3_stmt *q[2] = {s->q_entry_at, s->log_blocks && s->entry_log_rows == 0 ? NULL : s->q_entry_at_log};
	/* the deepest branch first: its rows are the newest on the path; in a
	 * branch, the greater ckpt of the two tables' */
	for (size_t i = 0; i < l->n; i++) {
		int64_t best = -1;
		for (int t = 0; t < 2 && q[t]; t++) {
			sqlite3_stmt *st = q[t];
			sqlite3_reset(st);
			sqlite3_bind_text(st, 1, path, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int64(st, 2, l->v[i].branch);
			sqlite3_bind_int64(st, 3, l->v[i].max);
			rc = sqlite3_step(st);
			if (rc == SQLITE_ROW && sqlite3_column_int64(st, 2) > best) {
				best = sqlite3_column_int64(st, 2);
				entry_clear(out);
				int err = read_entry_row(st, out);
				if (err) {
					sqlite3_reset(st);
					entry_clear(out);
					return err;
				}
			} else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
				sqlite3_reset(st);
				entry_clear(out);
				return db_error(s, rc, "index");
			}
			sqlite3_reset(st);
		}
		if (best >= 0) {
			if (out->kind == KIND_NONE)
				entry_clear(out);
			else
				*found = 1;
			return 0;
		}
	}
	return 0;
}

int index_link_names(mtm_store *s, const char *first, const lineage *l, uint32_t *out)
{
	*out = 0;
	sqlite3_stmt *st;
	/* every path that ever named first (entry_links), then which of them
	 * still does at l: O(names the group ever had) */
	int rc = sqlite3_prepare_v2(s->db,
	                            "SELECT path FROM entry WHERE kind = 8 AND target = ?1 UNION "
	                            "SELECT path FROM entry_log WHERE kind = 8 AND target = ?1",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_bind_blob(st, 1, first, (int)strlen(first), SQLITE_STATIC);
	int err = 0;
	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *path = (const char *)sqlite3_column_text(st, 0);
		entry e;
		int found;
		if (!path || (err = index_entry_at(s, path, l, &e, &found)) || !found)
			continue;
		*out += e.kind == KIND_LINK && e.target && !strcmp(e.target, first);
		entry_clear(&e);
	}
	sqlite3_finalize(st);
	if (!err && rc != SQLITE_DONE)
		err = db_error(s, rc, "index");
	return err;
}

int index_entries_under(mtm_store *s, const char *dir, const lineage *l, vec *out)
{
	/* paths under "d/" sort between "d/" and "d0" ('0' follows '/') */
	size_t n = strlen(dir);
	char *lo = malloc(n + 2), *hi = malloc(n + 2);
	if (!lo || !hi) {
		free(lo);
		free(hi);
		return mtm_set_error(ENOMEM, "index");
	}
	memcpy(lo, dir, n);
	memcpy(hi, dir, n);
	lo[n] = '/';
	hi[n] = '0';
	lo[n + 1] = hi[n + 1] = 0;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db,
	                            "SELECT " ENTRY_COLUMNS " FROM entry WHERE path>=?1 AND path<?2 UNION ALL "
	                            "SELECT " ENTRY_COLUMNS " FROM entry_log WHERE path>=?1 AND path<?2 ORDER BY 1, 2, 3",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK) {
		free(lo);
		free(hi);
		return db_error(s, rc, "index");
	}
	sqlite3_bind_text(st, 1, lo, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, hi, -1, SQLITE_TRANSIENT);
	free(lo);
	free(hi);
	rc = collect_visible(s, st, l, out);
	sqlite3_finalize(st);
	return rc;
}

int index_block_hash(mtm_store *s, int64_t file_id, int64_t blkno, const lineage *l, uint64_t *out)
{
	blockref b;
	int found;
	MTM_TRY(index_block_at(s, file_id, blkno, l, &b, &found));
	*out = found ? b.hash : zero_block_hash();
	return 0;
}

int index_block_at(mtm_store *s, int64_t file_id, int64_t blkno, const lineage *l, blockref *out, int *found)
{
	int rc;
	*found = 0;
	if (!s->q_block_at &&
	    (rc = sqlite3_prepare_v2(s->db, "SELECT " BLOCK_COLS " FROM block " BLOCK_SEEK_WHERE, -1, &s->q_block_at, NULL)) !=
	        SQLITE_OK)
		return db_error(s, rc, "index");
	if (!s->q_block_at_log &&
	    (rc = sqlite3_prepare_v2(s->db, "SELECT " BLOCK_COLS " FROM block_log " BLOCK_SEEK_WHERE, -1, &s->q_block_at_log,
	                             NULL)) != SQLITE_OK)
		return db_error(s, rc, "index");
	/* A session's own handle knows the log holds no committed row once it
	 * merged it: while it lives only it appends to it (one per store; scan
	 * checkpoints append only while none runs), and session_start merges
	 * what is there under the lock. The open checkpoint's rows are not
	 * visible to any lineage. */
	int log_empty = s->log_blocks && s->log_rows == 0;
	return block_seek(s, s->q_block_at, log_empty ? NULL : s->q_block_at_log, file_id, blkno, l, out, found);
}

/* One branch's rows of a block, newest first, down to the older of the two
 * limits: the first row at or below each limit is that side's candidate.
 * Rows stepped: those between the two limits, plus one. */
static int pair_step(mtm_store *s, sqlite3_stmt *q, int64_t file_id, int64_t blkno, int64_t branch, int64_t max_a,
                     int64_t max_b, blockref got[2], int64_t ckpt[2])
{
	sqlite3_reset(q);
	sqlite3_bind_int64(q, 1, file_id);
	sqlite3_bind_int64(q, 2, blkno);
	sqlite3_bind_int64(q, 3, branch);
	sqlite3_bind_int64(q, 4, max_a > max_b ? max_a : max_b);
	const int64_t lim[2] = {max_a, max_b};
	int rc, err = 0;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		int64_t c = sqlite3_column_int64(q, 2);
		int open = 0;
		for (int side = 0; side < 2; side++) {
			if (lim[side] > 0 && ckpt[side] < 0 && c <= lim[side]) {
				if ((err = read_blockref(q, file_id, &got[side])))
					break;
				ckpt[side] = c;
			}
			open |= lim[side] > 0 && ckpt[side] < 0;
		}
		if (err || !open)
			break;
	}
	sqlite3_reset(q);
	if (err)
		return err;
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

int index_block_pair(mtm_store *s, int64_t file_id, int64_t blkno, const lineage *la, const lineage *lb, int log_empty,
                     blockref out[2], int found[2])
{
	int rc;
	if (!s->q_block_pair &&
	    (rc = sqlite3_prepare_v2(s->db, "SELECT " BLOCK_COLS " FROM block " BLOCK_PAIR_WHERE, -1, &s->q_block_pair,
	                             NULL)) != SQLITE_OK)
		return db_error(s, rc, "index");
	if (!log_empty && !s->q_block_pair_log &&
	    (rc = sqlite3_prepare_v2(s->db, "SELECT " BLOCK_COLS " FROM block_log " BLOCK_PAIR_WHERE, -1,
	                             &s->q_block_pair_log, NULL)) != SQLITE_OK)
		return db_error(s, rc, "index");
	/* A side's visible version is its visible row with the greatest ckpt
	 * (lineage.h), whichever step holds it: each branch of either lineage
	 * is read once, for both sides. */
	int64_t best[2] = {-1, -1};
	const lineage *l[2] = {la, lb};
	for (int side = 0; side < 2; side++)
		for (size_t i = 0; i < l[side]->n; i++) {
			int64_t br = l[side]->v[i].branch;
			if (side == 1 && lineage_max(la, br))
				continue; /* read with la's step of the same branch */
			int64_t max_a = lineage_max(la, br), max_b = lineage_max(lb, br);
			blockref got[2];
			int64_t ckpt[2] = {-1, -1};
			MTM_TRY(pair_step(s, s->q_block_pair, file_id, blkno, br, max_a, max_b, got, ckpt));
			if (!log_empty) {
				blockref lg[2];
				int64_t lc[2] = {-1, -1};
				MTM_TRY(pair_step(s, s->q_block_pair_log, file_id, blkno, br, max_a, max_b, lg, lc));
				for (int t = 0; t < 2; t++)
					if (lc[t] > ckpt[t]) {
						ckpt[t] = lc[t];
						got[t] = lg[t];
					}
			}
			for (int t = 0; t < 2; t++)
				if (ckpt[t] > best[t]) {
					best[t] = ckpt[t];
					out[t] = got[t];
				}
		}
	found[0] = best[0] >= 0;
	found[1] = best[1] >= 0;
	return 0;
}

/*
 * index.h — reading and writing versioned entries and block maps.
 *
 * Everything read from the index is validated before use (paths, kinds,
 * sizes, block numbers): the index may be damaged or hostile, and SQLite
 * only guarantees that it will not crash on it.
 */
#ifndef MTM_STORE_INDEX_H
#define MTM_STORE_INDEX_H
#include <stdint.h>
#include "store/lineage.h"
#include "store/store.h"
#include "util/pathmap.h"
#include "util/strvec.h"

/* Entry kinds (FORMAT.md 3.4). KIND_LINK: another name of a hard-linked
 * regular file; its target is the group's first name (in path order), a
 * KIND_FILE entry of the same checkpoint that holds the content. */
enum { KIND_NONE = 0, KIND_FILE = 1, KIND_DIR = 2, KIND_SYMLINK = 3, KIND_FIFO = 4, KIND_SOCKET = 5, KIND_CHR = 6,
       KIND_BLK = 7, KIND_LINK = 8, KIND_MAX = 8 };
#define MTM_MAX_FILE_SIZE ((int64_t)1 << 46) /* 64 TiB: larger is damage */

typedef struct entry {
	char *path;
	int64_t ver;        /* checkpoint that wrote this version */
	int kind;
	uint32_t mode, uid, gid;
	int64_t size, file_id;
	int64_t mtime_s;    /* seconds since the epoch: any time Linux stores */
	int32_t mtime_nsec; /* 0 .. 999999999 */
	uint64_t rdev;      /* KIND_CHR, KIND_BLK */
	char *target;       /* symlinks; KIND_LINK: the group's first name */
	unsigned char *xattrs; /* xattr_blob (io/xattr.h), NULL when none */
	size_t xattrs_len;
} entry;

/* Whether two entries record the same thing (the path and ver aside). */
int entry_same(const entry *a, const entry *b);

typedef struct blockref {
	int64_t blkno;
	uint64_t hash;      /* XXH3-64 of the block zero-padded to MTM_BLOCK */
	int64_t chunk;      /* 0: hole */
	int64_t boff;       /* block index inside the chunk */
} blockref;

/* A run of blocks [blkno, blkno + count). */
typedef struct { int64_t blkno, count; } blk_run;

/* The entry columns in table order (FORMAT.md 3.4), as read_entry_row reads them. */
#define ENTRY_COLUMNS "path, branch, ckpt, kind, mode, uid, gid, size, mtime_nsec, file_id, target, mtime_s, rdev, xattrs"

/* The tree at checkpoint k, sorted by path (parents before children). */
int index_load_tree(mtm_store *s, mtm_id k, vec *out /* of entry */);
void entries_free(vec *v);
void entry_clear(entry *e);
/* Binary search in a tree loaded by index_load_tree. */
entry *tree_find(const vec *tree, const char *path);

/* The tree at checkpoint k one entry at a time, in path order, without
 * holding it: for status and scans of trees of millions of files.
 *
 * Narrow: the rows are read four columns at a time (path, branch, ckpt,
 * kind: what picks each path's visible version), and an entry is handed
 * out with its path, ver and kind only; tree_cursor_fill reads the rest of
 * that one row (one seek by its key) when the caller needs it. A scan needs
 * no more for the files the stat cache vouches for (nearly all), and
 * reading every column of every version of every path was most of the
 * cursor's cost (W2: 0.6 against 0.2 us a row). The checks of
 * index_load_tree are made: the path's and the kind's on every entry, the
 * rest of the row's when it is filled. */
typedef struct tree_cursor {
	mtm_store *s;
	mtm_id k;
	sqlite3_stmt *src[2]; /* the narrow rows of entry and of entry_log, each in key order */
	int state[2];         /* each: ROW_NEED (step it), ROW_ON (on a row not taken yet), ROW_DONE */
	int type[2];          /* the path's SQLite type on that row (before any conversion) */
	const char *path[2];  /* and its path as text (SQLite's, valid until the next step) */
	int path_len[2];      /* (its bytes) */
	sqlite3_stmt *full; /* one row by its key (tree_cursor_fill) */
	lineage l;
	int done;
	entry cur;  /* the entry handed out last (the cursor's; while partial, its
	             * path is pathbuf: a caller takes only a filled entry) */
	char *pathbuf;
	size_t pathbuf_cap;
	int64_t cur_branch; /* its row's branch */
	int partial;        /* cur holds path, ver and kind only */
	pathmap dirs; /* the visible directories so far: each entry's parent must be one */
	char *parent_ok; /* the last parent found among them (a directory's entries share it) */
	size_t parent_ok_len, parent_ok_cap;
} tree_cursor;
int tree_cursor_open(mtm_store *s, mtm_id k, tree_cursor *c);
/* *out: the next entry (valid until the next call), or NULL at the end;
 * only its path, ver and kind are read (the rest zero) until
 * tree_cursor_fill. */
int tree_cursor_next(tree_cursor *c, entry **out);
/* Reads the rest of the entry handed out last (all of its row, checked as
 * index_load_tree checks it); nothing when it is already whole. */
int tree_cursor_fill(tree_cursor *c);
void tree_cursor_close(tree_cursor *c);

/* The visible block map of file_id under lineage l, sorted by blkno.
 * Includes hole rows (chunk 0); blocks with no row are holes too. */
int index_file_map(mtm_store *s, int64_t file_id, const lineage *l, vec *out /* of blockref */);
/* Block blkno in a map index_file_map loaded (binary search), NULL if it has no row. */
const blockref *file_map_find(const vec *map, int64_t blkno);
/* Point lookups under lineage l, one index seek per branch of l:
 * the visible entry for path (*found = 0 if none or removed) ... */
int index_entry_at(mtm_store *s, const char *path, const lineage *l, entry *out, int *found);
/* ... the number of other names of the hard-linked file whose first name is
 * first: visible KIND_LINK entries with that target ... */
int index_link_names(mtm_store *s, const char *first, const lineage *l, uint32_t *out);
/* ... the visible entries strictly under directory dir, sorted, appended to out ... */
int index_entries_under(mtm_store *s, const char *dir, const lineage *l, vec *out /* of entry */);
/* ... and the visible hash of one block (the zero-block hash if none). */
int index_block_hash(mtm_store *s, int64_t file_id, int64_t blkno, const lineage *l, uint64_t *out);
/* ... and the visible row of one block (*found = 0: none, a hole). */
int index_block_at(mtm_store *s, int64_t file_id, int64_t blkno, const lineage *l, blockref *out, int *found);
/* ... and the visible rows of one block under two lineages at once (out[0],
 * found[0] under la; out[1], found[1] under lb): one seek per branch of
 * either, reading the rows between the two, not two seeks per branch per
 * side. log_empty: the caller knows block_log holds no row in its read
 * transaction (index_blocks_between said so), so it is not read. */
int index_block_pair(mtm_store *s, int64_t file_id, int64_t blkno, const lineage *la, const lineage *lb, int log_empty,
                     blockref out[2], int found[2]);
void index_lookups_free(mtm_store *s);

/* The blocks whose visible version may differ between the checkpoints of
 * lineages a and b: those with a row written by a checkpoint exactly one of
 * them sees (between.c). Sorted by (file_id, blkno), unique. *complete = 0
 * (and out empty) if there are more than limit rows to look at, or the
 * index cannot answer cheaply: then compare whole maps. *log_empty: 1 if
 * block_log holds no row (index_block_pair need not read it). */
typedef struct { int64_t file_id, blkno; } blockkey;
int index_blocks_between(mtm_store *s, const lineage *a, const lineage *b, size_t limit, vec *out, int *complete,
                         int *log_empty);

/* The XXH3-64 of an all-zero block. */
uint64_t zero_block_hash(void);

/* Block rows are held in memory (up to a bound) and inserted in order by
 * index_flush_blocks, which must run before the commit: a checkpoint inserts
 * its last ones while its pack is fsynced (checkpoint.c). Until then a
 * held row is not in the index; nothing reads a checkpoint's own rows
 * before it commits. */
typedef struct { int64_t file_id, blkno, branch, ckpt, hash, chunk, boff; } held_block;
typedef struct {
	mtm_store *s;
	sqlite3_stmt *ins_entry, *ins_block;
	sqlite3_stmt *ins_blocks; /* BLOCK_BATCH rows in one statement */
	sqlite3_stmt *ins_new;    /* one row that no row has the key of yet */
	sqlite3_stmt *ins_again;  /* ... and one that replaces the row of its key */
	int to_log;     /* block rows go to block_log (FORMAT.md 3.5.1) */
	int log_if_few; /* ... only if the first flush holds at most INDEX_LOG_CKPT_ROWS */
	int decided;    /* the first flush is done: to_log holds for the rest */
	int entries_to_log; /* entry rows go to entry_log (FORMAT.md 3.4.1): a session's, a small scan's */
	vec held;       /* of held_block */
} index_writer;
/* Where a checkpoint's block rows go: block; block_log (a session's, whose
 * entry rows go to entry_log too); or
 * block_log if there are at most INDEX_LOG_CKPT_ROWS of them (a scan's:
 * store.h, STORE_LOG_KEEP_ROWS). */
enum { INDEX_TO_BLOCK, INDEX_TO_LOG, INDEX_TO_LOG_IF_FEW };
#define INDEX_LOG_CKPT_ROWS 4096
int index_writer_init(index_writer *w, mtm_store *s, int where);
/* A scan's writer (INDEX_TO_LOG_IF_FEW) puts its entry rows in entry_log
 * too when they are at most INDEX_LOG_CKPT_ROWS (rows: at least as many as
 * it will put; FORMAT.md 3.4.1). Before its first entry row. */
int index_writer_entries_to_log_if_few(index_writer *w, size_t rows);
void index_writer_free(index_writer *w);
int index_put_entry(index_writer *w, int64_t branch, int64_t ckpt, const entry *e);
int index_put_block(index_writer *w, int64_t file_id, int64_t blkno, int64_t branch, int64_t ckpt,
                    uint64_t hash, int64_t chunk, int64_t boff);
int index_flush_blocks(index_writer *w);

/* Whether block_log holds no row. */
int index_log_empty(mtm_store *s, int *empty);
/* Whether block_log and entry_log hold no row. */
int index_logs_empty(mtm_store *s, int *empty);
/* Moves every block_log row into block and every entry_log row into entry
 * (FORMAT.md 3.4.1, 3.5.1), in one transaction of its own. The caller holds
 * the writer lock and has no transaction open. */
int index_settle(mtm_store *s);
/* The same inside the caller's open transaction (prune: a dry run or a
 * refusal rolls it back with the rest, and leaves the index as it was). */
int index_merge_log(mtm_store *s);
#endif

/*
 * scan.h — finding what changed by looking: a walk of the live tree, the stat
 * cache that lets unchanged files be skipped, and block-by-block comparison
 * of a file's content with a block map from the index.
 */
#ifndef MTM_SCAN_H
#define MTM_SCAN_H
#include <sys/stat.h>
#include "tree/ignore.h"
#include "store/index.h"
#include "util/pathmap.h"
#include "tree/source.h"

/* A file whose mtime is this close to (or after) the start of the scan that
 * recorded it is "racy": a write in the same timestamp tick would not change
 * its stat, so the next scan rehashes it (git's racy-git rule). The window is
 * the timestamp granularity: on local Linux file systems that store
 * nanoseconds (ext4, XFS, Btrfs, tmpfs, F2FS, ZFS, bcachefs) an mtime comes
 * from the kernel's coarse clock, at most one tick (<= 10 ms) behind, so
 * RACY_FINE_NS leaves a 5x margin; anywhere else (FAT's 2 s, NFS and other
 * network file systems stamped by a server's clock) RACY_WINDOW_NS. */
#define RACY_WINDOW_NS 2000000000LL
#define RACY_FINE_NS 50000000LL
/* The racy window for a file with this stat in s's tree. */
int64_t racy_window(mtm_store *s, const struct stat *st);

typedef struct live_item {
	char *path;
	struct stat st;
	int kind;       /* KIND_FILE ... KIND_LINK (links: after live_group_links) */
	char *target;   /* symlinks; KIND_LINK: the group's first name */
	capture *cap;   /* tracked mode: what to read instead of the live file */
	/* extended attributes (io/xattr.h); read by the walk for every kind but
	 * regular files, whose are read with their content (xattrs_read = 1 once known) */
	unsigned char *xattrs;
	size_t xattrs_len;
	int xattrs_read;
} live_item;

/* Finds the link groups of a walked tree (sorted by path): regular files
 * that share an inode. The first name of each stays a file; every other
 * becomes KIND_LINK with target = the first name (FORMAT.md 3.4). Files
 * that ign ignores are no members (NULL: none is). */
int live_group_links(vec *live /* of live_item */, const ignore_set *ign);

/* The entry kind of a stat's type (KIND_NONE: none we know). */
int kind_of_mode(mode_t mode);
/* What a live item records, as an entry (pointing into it, not copied). */
void live_entry(const live_item *it, entry *e);
/* 1 if two versions of one kind differ in metadata (contents aside; a
 * directory's mtime is not compared: it changes with every entry). */
int entry_meta_changed(const entry *a, const entry *b);
/* The entry's mtime as a timespec, and a stat's mtime as the entry fields. */
struct timespec entry_mtime(const entry *e);

/* Walks the tree under s->root (skipping .metamori, restore temporaries and
 * ignored paths); out is sorted by path. */
int walk_tree(mtm_store *s, const ignore_set *ign, vec *out /* of live_item */);
void live_free(vec *v);
/* Hands each item of the tree (as walk_tree finds them) to fn, in path
 * order, without holding the tree (walk_sorted.c): fn owns the item (to be
 * freed with live_item_free); a non-zero return stops the walk with it.
 * A directory under the root that cannot be read (opened, listed, or an
 * entry in it looked at; err: why) goes to unlisted, if given, in the
 * place of its subtree, which the walk then skips; with none it stops the
 * walk with its error. */
typedef int (*walk_fn)(void *arg, live_item *it);
typedef int (*walk_unlisted_fn)(void *arg, const char *dir, int err);
int walk_sorted(mtm_store *s, const ignore_set *ign, walk_fn fn, walk_unlisted_fn unlisted, void *arg);
void live_item_free(live_item *it);
/* What a scan checkpoint must record against checkpoint parent, found
 * without holding the tree (changed.c): live gets the items that are new
 * or may differ (a file the stat cache cannot vouch for), parent_out the
 * parent's entries at those paths and the ones gone, both in path order;
 * the unchanged rest is only counted. group_links: hard links grouped as
 * live_group_links does. */
typedef struct { uint64_t entries, bytes; } tree_rest;
/* tick (NULL: none) is called with tick_arg at the first item and every
 * SCAN_TICK_ITEMS after: the walk of 1,000,000 files takes seconds, in
 * which a session reads its watcher's queue on. */
typedef void (*scan_tick_fn)(void *arg);
#define SCAN_TICK_ITEMS 64
int scan_changed(mtm_store *s, const ignore_set *ign, mtm_id parent, int group_links, vec *live /* of live_item */,
                 vec *parent_out /* of entry */, tree_rest *rest, scan_tick_fn tick, void *tick_arg);
/* Appends the entries under directory rel (not rel itself), unsorted. */
int walk_subtree(mtm_store *s, const ignore_set *ign, const char *rel, vec *out);
void capture_free(capture *c);
int64_t st_mtime_ns(const struct stat *st);
int64_t st_ctime_ns(const struct stat *st);

typedef struct sc_row {
	int64_t ver, size, mtime_ns, ctime_ns, ino, dev;
	uint32_t mode, uid, gid;
	int racy;
} sc_row;
int statcache_load(mtm_store *s, pathmap *out /* of sc_row* */);
/* Decodes a statcache row's ver (column col) and st (col + 1, store/statblob.h):
 * 0, or -1 if st is damaged (then the row is as good as none). */
int statcache_row_read(sqlite3_stmt *st, int col, sc_row *r);
/* path's row into *out (*found = 1), or *found = 0 if it has none; *cache
 * holds the statement between calls (the caller finalizes it). */
int statcache_get_row(mtm_store *s, sqlite3_stmt **cache, const char *path, sc_row *out, int *found);
/* 1 if the live file with stat st is known to hold entry version ver. */
int statcache_fresh(const sc_row *r, const struct stat *st, int64_t ver);
/* scan_start_ns for a row that must not vouch for the file's content (a
 * session copied only the blocks its logs named): the row is racy, so the
 * next scan compares the file. */
#define STATCACHE_UNVOUCHED INT64_MAX
/* Upserts (ver > 0) or deletes (ver == 0) a row; inside a transaction. */
int statcache_put(mtm_store *s, sqlite3_stmt **cache, const char *path, int64_t ver, const struct stat *st,
                  int64_t scan_start_ns);
int statcache_del(mtm_store *s, sqlite3_stmt **cache, const char *path);
/* statcache_put in two steps: the row (its racy flag judged from st and
 * scan_start_ns, as statcache_put does), then its upsert. */
void statcache_row_make(mtm_store *s, int64_t ver, const struct stat *st, int64_t scan_start_ns, sc_row *out);
int statcache_put_row(mtm_store *s, sqlite3_stmt **cache, const char *path, const sc_row *r);

/* Called for each maximal run (within one aligned group of MTM_CHUNK_BLOCKS)
 * of blocks whose content differs from the map. zero: the run is all zeros
 * (data is NULL then). hashes: per-block XXH3-64 (zero-padded). lasting:
 * data stays where it is until the checkpoint ends (a capture in memory),
 * so it may be pointed at rather than copied. */
typedef int (*run_fn)(void *arg, int64_t blkno, int nblocks, const unsigned char *data, size_t len,
                      const uint64_t *hashes, int zero, int lasting);
/* Reads fd up to size bytes and compares block by block with map (sorted by
 * blkno; missing = hole). *size_read is what was actually read. */
int compare_file(file_src src, int64_t size, const vec *map, run_fn fn, void *arg, int64_t *size_read);
/* The same, calling tick(tick_arg, bytes) after each read (holes are not
 * read: they tick nothing), for progress within a large file. */
typedef void (*read_tick_fn)(void *tick_arg, uint64_t bytes);
int compare_file_ticking(file_src src, int64_t size, const vec *map, run_fn fn, void *arg, int64_t *size_read,
                         read_tick_fn tick, void *tick_arg);
/* compare_file, also giving the new version's hash of every block it
 * compared: out[b] for b < ceil(*size_read / MTM_BLOCK) (out holds
 * ceil(size / MTM_BLOCK)); a hole's blocks get the zero block's hash.
 * The parent's hashes: parent_h[b] for b < parent_n (past it the zero
 * block's) when parent_h is not NULL (map is not read then), else map.
 * Reads through rd (tree/reader.h: its buffers and its second thread),
 * which the caller keeps from one file to the next. */
typedef struct scan_reader scan_reader;
int compare_file_hashes(scan_reader *rd, file_src src, int64_t size, const vec *map, const uint64_t *parent_h,
                        int64_t parent_n, run_fn fn, void *arg, int64_t *size_read, uint64_t *out);
/* Compares only the blocks in runs (sorted blk_runs, clipped to size) with
 * the hashes parent_hash gives; the rest of the file is taken as unchanged. */
typedef int (*hash_fn)(void *arg, int64_t blkno, uint64_t *hash);
int compare_runs(file_src src, int64_t size, const vec *runs, hash_fn parent_hash, void *parg, run_fn fn, void *arg);
#endif

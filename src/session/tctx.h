/*
 * tctx.h — the parts of a tracked checkpoint (tracked.c) and what they
 * share: the checkpoint's context, the blocks read in the barrier, the hashes
 * kept for the next compare. Private to src/session/.
 *
 *   tracked.c        the order: pre-copy, barrier, collect, record, commit
 *   collect.c        the touched paths on both sides (or the whole tree)
 *   live.c           the live tree, opened beneath the root, never through a symlink
 *   capture.c        what to copy out of each touched file, and the copy
 *   capture_read.c   the barrier's reads, and the captures pointed at them
 *   ahead.c          files compared whole, compared before the gate closes
 *   hashes.c         block hashes of files compared whole, kept for the next compare
 *   describe.c       the lines that report a checkpoint
 */
#ifndef MTM_SESSION_TCTX_H
#define MTM_SESSION_TCTX_H
#include <stdint.h>
#include <sys/stat.h>
#include "checkpoint/checkpoint.h"
#include "session/session.h"
#include "tree/scan.h"

#define CAPTURE_LIMIT ((uint64_t)512 << 20) /* copy at most this much (and a quarter of free memory) */
#define NEED_SCAN 1                         /* collect_tracked: the logs are not enough */

typedef struct { int64_t off, len; } byte_range; /* as in barrier.c */

typedef struct {
	mtm_session *ss;
	mtm_store *s;
	const lineage *lin;
	const ignore_set *ign;
	change_set *cs;
	vec *live, *parent;
	pathmap nsdirs;  /* namespace paths whose subtrees are listed on both sides */
	pathmap points;  /* other touched paths */
	ckpt_run *run;   /* the checkpoint being made (its stat cache rows) */
	const char *why; /* NEED_SCAN's reason */
	uint64_t budget; /* bytes still to copy out; past it, captures refer to the live file ... */
	int hold;        /* ... and the barrier stays closed until they are recorded */
	mtm_id parent_id;
	pathmap pending; /* path -> pending_hashes*: ss->hashes after a commit */
	vec deferred;    /* of deferred_copy: blocks read in the barrier, the captures' bytes */
	unsigned char *slab_at; /* where the next capture's bytes go (capture_alloc) ... */
	size_t slab_left;       /* ... and room there */
	vec slabs;              /* (unsigned char *) slabs beyond ss->cap_slab, freed by deferred_free */
	pathmap dirfds;  /* directory -> its fd + 1, or -errno: each opened once per checkpoint */
	pathmap filefds; /* written file -> its fd + 1, opened by live_open for its capture (open_same_file) */
	pathmap pre;     /* path -> precopy*: blocks read before the barrier */
	change_set post; /* what the records say changed after they were read */
	uint64_t precopied_blocks;
	uint64_t kept_fds_used; /* files opened by the pre-copy's passes, not looked up in the pause */
	pathmap ahead;   /* path -> ahead_file*: compared whole before the gate closed (ahead.c) */
	struct lowprio *low; /* the record and commit run there (a periodic checkpoint), NULL: here */
	uint64_t ahead_files, ahead_used; /* compared ahead; of them, taken in the barrier */
	uint64_t ahead_read, ahead_again; /* bytes read by the compares ahead; blocks read again */
	int64_t ahead_ns;
	uint64_t barrier_read; /* bytes of live files read with the gate closed */
	/* METAMORI_DEBUG_SESSION: collect_tracked's steps (now_ns() times), and
	 * its slowest capture */
	int64_t col_t0, col_points, col_checks, cap_max_ns;
	const char *cap_max_path;
	tree_rest rest;  /* a scan: the unchanged entries and bytes, not held (collect_scan) */
} tctx;

/* The session's slab for the captures' bytes (mtm_session.cap_slab), and
 * those a checkpoint makes beyond it. */
#define CAP_SLAB_BYTES ((size_t)1 << 20)

/* Scattered blocks cost a system call each to read (the pause is mostly
 * that): in the barrier they are only read, into memory, where
 * ckpt_record reads them (materialize points the capture at them). */
typedef struct {
	capture *cap;
	unsigned char *data; /* the runs' bytes, in run order, clipped to size */
	int64_t size;
	int src;             /* the live file (-1: none), closed by deferred_free, after the answer */
	const char *path;    /* live_item's */
	int64_t dev, ino;
	int src_precopy;     /* blocks may come from the pre-copy (read_deferred decided) */
	int owned;           /* data is a malloc of its own (else in a slab: capture_alloc) */
} deferred_copy;

/* Block hashes for ss->hashes once the checkpoint commits: known (h), or to
 * be computed from a whole capture after the barrier (cap: its bytes exist
 * by then). */
typedef struct { block_hashes bh; const capture *cap; int64_t size; } pending_hashes;

static inline int need_scan(tctx *t, const char *why)
{
	t->why = why;
	return NEED_SCAN;
}

/* live.c */
int live_stat(tctx *t, const char *path, live_item *it, int *found);
/* The fd of path's directory and its last component. 0 or an errno. */
int live_parent_fd(tctx *t, const char *path, int *dfd, const char **leaf);
/* The fd live_open kept for path (the caller's now; its stat is the item's
 * st), or -1. filefds_close: the ones nobody took. */
int live_take_fd(tctx *t, const char *path);
void filefds_close(tctx *t);
/* Opens a live file for its capture. */
int open_live(tctx *t, const char *path, int *fd, struct stat *st);
void dirfds_close(tctx *t);

/* live_open.c: live_stat for a path the logs say was written: opened (it
 * is a regular file, as a rule), its stat taken from the open, and the fd
 * kept for its capture (filefds, taken by open_same_file): one lookup of
 * the path inside the pause, not two, and none when a pre-copy pass kept
 * the fd it opened the path with and no namespace change in the interval
 * was at the path or above it (t->nsdirs: every one the logs and the
 * watcher saw). Anything but a regular file opened: as live_stat. */
int live_open(tctx *t, const char *path, live_item *it, int *found);

/* collect.c: inside the barrier, the touched paths, both sides, and the
 * captures; or, when the logs are not enough (NEED_SCAN), the whole tree. */
int collect_tracked(tctx *t);
int collect_scan(tctx *t, mtm_id parent);

/* capture.c */
/* The blocks a file's records may have changed, against its parent size. */
int dirty_runs(const file_change *fc, int64_t parent_size, int64_t size, vec *runs);
int capture_file(tctx *t, live_item *it, capture *cap);
int capture_hashed(tctx *t, live_item *it, capture *cap);

/* capture_read.c */
int read_deferred(tctx *t);
int materialize(tctx *t);
void deferred_free(tctx *t);

/* ahead.c: before the gate closes, the files compared whole are read and
 * compared (the program runs); in the barrier, capture_ahead reads again
 * only what the records after the last peek name (*done 0: it cannot,
 * compare the file as before). */
typedef struct ahead_file ahead_file;
int compare_ahead(tctx *t);
int capture_ahead(tctx *t, live_item *it, capture *cap, int whole, int *done);
void ahead_free(void *p);
/* The fd a compare ahead read path through, now the caller's (-1: none):
 * the file at path then, which it still is if no namespace change in the
 * interval was at the path or above it (live.c's kept_fd checks). */
int ahead_take_fd(tctx *t, const char *path);
/* precopy_pass's side: a file compared ahead, named by records peeked */
int ahead_refresh(mtm_session *ss, void *arg, const char *path, const file_change *fc);

/* hashes.c */
uint64_t block_hash(const unsigned char *blk, size_t len);
int add_pending(tctx *t, const char *path, const struct stat *st, uint64_t *h, const capture *cap);
void keep_hashes(tctx *t, mtm_id id);
void pending_free(void *p);

/* describe.c: the phases of one checkpoint, for METAMORI_DEBUG_SESSION */
typedef struct {
	int64_t tb, t0, tpc, tl, tpre, t1, tr, tc; /* begin, gate closed, pre-copy done, logs read, ..., committed */
	int64_t wait_rec;                      /* the pack's thread's wait, in the record */
	int64_t tcol, tdef;                    /* in the pause: collected, deferred reads done */
	int64_t cpu1, nvcsw1, nivcsw1, minflt1; /* the session's thread when the gate opened */
} tracked_times;
void tracked_report(mtm_session *ss, ckpt_run *r, const tctx *t, const tracked_times *tm, int scan,
                    const char *scan_why, size_t nlive, size_t nparent);
#endif

/*
 * rctx.h — a restore's context and the parts that share it. Private to
 * src/restore/.
 *
 *   restore.c     the entry points: the request, the lock, the save first
 *   in_place.c    an in-place restore's order: load, plan, preflight,
 *                 verify, apply, record
 *   plan.c        what to do to each path (plan_file.c: to each file)
 *   verify.c      every chunk read and checked before the tree is touched
 *   apply.c       the plan carried out under the intent
 *   write.c       files written whole or patched
 *   make.c        directories, links, symlinks, nodes made; entries removed
 *   meta.c        owner, extended attributes, mode and times set
 *   parent.c      parent directories opened beneath the root; temporary names
 *   record.c      the new head and the stat cache rows of what was written
 *   to_dir.c      a restore into an empty directory
 */
#ifndef MTM_RESTORE_RCTX_H
#define MTM_RESTORE_RCTX_H
#include <stdint.h>
#include <sys/stat.h>
#include "metamori.h"
#include "restore/filemap.h"
#include "store/pack.h"
#include "store/lineage.h"
#include "tree/ignore.h"
#include "tree/scan.h"
#include "util/pathmap.h"
#include "util/strvec.h"

#define PATCH_MIN_SIZE (1 << 20) /* smaller files are always rewritten whole */

enum { ACT_NONE, ACT_META, ACT_REWRITE, ACT_PATCH, ACT_CREATE };

typedef struct {
	entry *te;       /* target entry */
	live_item *li;   /* live item at the same path, or NULL */
	int action;
	int above;       /* a directory above the request's paths: made if missing, its metadata left alone */
	vec map;         /* target block map (files being written) */
	vec runs;        /* ACT_PATCH: blocks to write */
	int xattrs_differ; /* files: the live file's extended attributes are not te's */
} plan_item;

/* A restore request, whatever asked for it (mtm_restore, or the intent of
 * an interrupted one for mtm_restore_continue and mtm_restore_abort). */
typedef struct {
	const char *const *excludes;
	size_t n_excludes;
	char **paths;      /* normalized (browse_norm_path: browse_asked names each as given), sorted; n_paths = 0: the whole tree */
	size_t n_paths;
	int dry_run;
	mtm_restore_step_fn on_step;
	void *step_arg;
	mtm_progress_fn progress;
	void *progress_arg;
} rreq;

typedef struct {
	mtm_store *s;
	int rootfd;
	int in_place;
	int64_t t0;
	int64_t changed_ns; /* in place: when the apply pass last changed a file */
	int64_t racy_wait_ns; /* for $METAMORI_DEBUG_RESTORE: wait_racy_window's sleep */
	unsigned tmp_seq;
	pack_reader pr;
	mtm_restore_stats st;
	const rreq *rq;
	uint64_t done, total;
	lineage lin_k, lin_h;
	pathmap dirs;    /* directories whose entries changed: fsync them */
	blockcache *bc;  /* blocks of patched files kept from the verify pass */
	vec between;     /* of blockkey: blocks written by a checkpoint between head and k */
	int between_ok;  /* ... and that is all of them (index_blocks_between) */
	int log_empty;   /* block_log holds no row in this read transaction */
	int64_t fsync_ns; /* for $METAMORI_DEBUG_RESTORE: time in the files' fsyncs */
	vec unsynced;    /* of unsynced_file: patched in place, not yet fsynced */
	vec unrenamed;   /* of unrenamed_file: written whole in place, not yet fsynced nor renamed in */
} rctx;

/* A file patched in place is fsynced after the others are written, not
 * before the next is: the writes into the page cache go on while the device
 * writes the dirty pages, and the fsyncs at the end overlap the wait for
 * the racy window (wait_racy_window), which counts from the last change to
 * a file, not from the last fsync. The intent covers the files until then.
 * At most this many are held open. */
typedef struct { int fd; const char *path; } unsynced_file;

#define UNSYNCED_MAX 64

/* A file written whole in place waits, under its temporary name, for the
 * fsyncs of a batch (io_fsync_many: one journal commit for the batch
 * instead of one per file), then is renamed in (old or new under its name,
 * never a mix: renamed only once its bytes are durable). */
typedef struct {
	int dfd, fd;
	char tmp[64];
	const char *path, *leaf; /* the entry's (the plan outlives the batch) */
} unrenamed_file;

/* Past this many rows between head and k, whole block maps are compared. */
#define BETWEEN_LIMIT ((size_t)1 << 22)

#define KEEP_BUDGET (256u << 20) /* bytes of verified blocks kept between passes */

/* An in-place restore's working set, from the load to the record. */
typedef struct {
	vec target;     /* of entry: k's tree */
	vec head_tree;  /* of entry: the head's */
	vec live;       /* of live_item: the live tree, in path order */
	vec plan;       /* of plan_item: a step per target entry the request covers */
	vec removed;    /* of live_item *: what goes */
	vec others;     /* of live_item *: entries the walk does not list, owned here (add_other) */
	pathmap sc;     /* the stat cache */
	pathmap dirs;   /* directories whose entries the plan changes (the access check) */
	ignore_set ign; /* what the request excludes */
} inplace;

/* in_place.c: restores k in place, as c->rq asks. pending: an intent was
 * there when the restore began (an interrupted one): removed however this
 * one ends, once it completes. */
int restore_in_place(rctx *c, mtm_id k, mtm_id from, int pending);
/* to_dir.c: restores k into the empty (or new) directory to. */
int restore_to_dir(rctx *c, mtm_id k, const char *to);

/* plan.c */
/* The plan: target and live merged (w->plan, w->removed), every path asked
 * for found, and what would fail half-way refused before any change. */
int plan_in_place(rctx *c, inplace *w, mtm_id k);
void plan_free(vec *plan);
/* Refuses (preflight_frozen_at) a plan that changes an entry marked
 * immutable or append-only: what it removes, replaces, patches or gives
 * metadata, and the directories whose entries it changes. */
int plan_frozen(rctx *c, const inplace *w);
/* on_step for one step (action letter, path, bytes). */
int report_step(rctx *c, char action, const char *path, uint64_t bytes);
/* Lists the plan's steps (on_step), and collects the directories whose
 * entries it changes (for the access check) and the bytes it writes. */
int plan_steps(rctx *c, const vec *plan, const vec *removed, pathmap *dirs, uint64_t *need);
/* plan_file.c: decides how a live regular file becomes version p->te. */
int plan_file(rctx *c, plan_item *p, const vec *head_tree, pathmap *sc);

/* verify.c */
/* Starts every read the patches of the plan will make (filemap_gather). */
int gather_reads(rctx *c, const vec *plan);
/* Reads and checks every chunk the plan needs; *work: anything to change. */
int verify_plan(rctx *c, const vec *plan, const vec *removed, int *work);

/* apply.c: the plan carried out, under an intent written first (when there
 * is work); opened: the directories preflight_access opened for writing. */
int apply_plan(rctx *c, inplace *w, mtm_id k, mtm_id from, int work, vec *opened);

/* parent.c */
/* path's parent directory, opened beneath the root (MTM_EUNSAFE through a
 * symlink), and path's last component. */
int open_parent(rctx *c, const char *path, int *dfd, const char **leaf);
/* Adds path's parent directory ("." for the root) to dirs. */
void touch_dir_in(pathmap *dirs, const char *path);
void touch_dir(rctx *c, const char *path);
void tmp_name(rctx *c, char *buf, size_t len);

/* write.c */
/* Writes a file version whole under a temporary name and renames it in. */
int write_whole(rctx *c, const plan_item *p);
/* Rewrites only the differing blocks of a large file. */
int write_patch(rctx *c, const plan_item *p);
/* fsyncs (and closes) the files patched in place so far. */
int sync_patched(rctx *c);
/* fsyncs the files written whole in place so far and renames them in. */
int rename_written(rctx *c);
/* After a failure: closes what is still open and removes the temporaries. */
void drop_unfinished(rctx *c);
int fsync_dirs(rctx *c);

/* make.c */
int make_symlink(rctx *c, const entry *e);
/* Every other name of the hard-linked files, once the files are written:
 * those of the plan (NULL: every one of target). */
int make_links(rctx *c, const vec *target, const vec *plan);
/* Before a restore that leaves out some entries of target (a partial
 * restore, excluded paths): a link group whose file (its first name) is
 * left out, but other names taken, gets the first of those as its file
 * (the content and metadata of the file's entry), the others linked to it,
 * so that each name restored holds the checkpoint's content, and nothing
 * left out is touched. taken: whether the restore takes e. */
int reroot_links(vec *target, int (*taken)(void *arg, const entry *e), void *arg);
int make_node(rctx *c, const entry *e);
int make_dir(rctx *c, const entry *e);
int remove_path(rctx *c, const live_item *li, int must);

/* meta.c */
int set_meta_fd(rctx *c, int fd, const entry *e);
int set_meta_at(rctx *c, int dfd, const char *leaf, const entry *e);
int set_meta_path(rctx *c, const entry *e);
int meta_differs(const entry *e, const struct stat *st);
int xattrs_differ(const entry *e, const unsigned char *x, size_t len);
/* Applies directory metadata last, deepest first (plan NULL: every
 * directory of target). */
int fix_dirs(rctx *c, vec *target, const vec *plan);

/* record.c: records the new head (whole: a restore of the whole tree) and
 * the stat cache rows of the files written. */
int record_restored(rctx *c, mtm_id k, vec *plan, vec *removed, int whole);
/* The root directory (c->rootfd) given the metadata checkpoint k recorded
 * for it (the mode since format 9, owner, attributes and mtime since 11;
 * what an older checkpoint did not record is left as it is). A whole-tree
 * restore's last step, after every entry's own (its mtime last of all). */
int set_root_meta(rctx *c, mtm_id k);
#endif

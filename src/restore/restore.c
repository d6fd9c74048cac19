/*
 * restore.c — making the tree (or an empty directory) exactly what it was at
 * checkpoint k.
 *
 * In place, in two phases:
 *   plan and verify (the tree is not touched): compare the live tree with k;
 *     a file whose stat shows it still holds the head's version is diffed
 *     through the index (no read of the live file), any other is hashed;
 *     every chunk the restore will need is read and verified. A damaged
 *     store therefore fails here, with the tree as it was.
 *   apply, under a restore intent fsynced first: remove what k lacks
 *     (deepest first), make directories, rewrite small or mostly-changed
 *     files whole (temporary name, O_EXCL|O_NOFOLLOW, metadata through the
 *     fd, fsync, rename, directory fsync: each file is old or new), patch
 *     large files extent by extent (the intent makes a rerun finish them),
 *     create symlinks, then set directory metadata last. The index records
 *     the new head and stat cache; the intent is removed.
 * Every path is opened beneath the root with no symlink followed.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/io.h"
#include "restore/browse.h"
#include "io/xattr.h"
#include "restore/filemap.h"
#include "restore/preflight.h"
#include "restore/restore.h"
#include "checkpoint/checkpoint.h"
#include "store/intent.h"
#include "tree/scan.h"
#include "util/error.h"
#include "util/log.h"
#include "util/human.h"

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
	char **paths;      /* normalized (browse_norm_path), sorted; n_paths = 0: the whole tree */
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
	int between_ok;  /* ... and that is all of them (index_blocks_between: then
	                  * block_log holds no row in this read transaction) */
	int64_t fsync_ns; /* for $METAMORI_DEBUG_RESTORE: time in the files' fsyncs */
	vec unsynced;    /* of unsynced_file: patched in place, not yet fsynced */
} rctx;

/* A file patched in place is fsynced after the others are written, not
 * before the next is: the writes into the page cache go on while the device
 * writes the dirty pages, and the fsyncs at the end overlap the wait for
 * the racy window (wait_racy_window), which counts from the last change to
 * a file, not from the last fsync. The intent covers the files until then.
 * At most this many are held open. */
typedef struct { int fd; const char *path; } unsynced_file;
#define UNSYNCED_MAX 64
/* Past this many rows between head and k, whole block maps are compared. */
#define BETWEEN_LIMIT ((size_t)1 << 22)

#define KEEP_BUDGET (256u << 20) /* bytes of verified blocks kept between passes */

static void progress(rctx *c, uint64_t add)
{
	c->done += add;
	if (c->rq && c->rq->progress)
		c->rq->progress(c->rq->progress_arg, "restore", c->done, c->total);
}

static int open_parent(rctx *c, const char *path, int *dfd, const char **leaf)
{
	int rc = beneath_open_parent(c->rootfd, path, dfd, leaf);
	if (rc == ELOOP || rc == EXDEV || rc == ENOTDIR)
		return mtm_set_error(MTM_EUNSAFE, "%s: a symlink or non-directory is in the way; refusing to follow it", path);
	return rc ? mtm_set_errno(rc, "%s", path) : 0;
}

/* Adds path's parent directory ("." for the root) to dirs. */
static void touch_dir_in(pathmap *dirs, const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
	if (dir && !pathmap_get(dirs, dir))
		pathmap_put(dirs, dir, (void *)1);
	free(dir);
}

static void touch_dir(rctx *c, const char *path) { touch_dir_in(&c->dirs, path); }

/* Sets owner, extended attributes, mode and mtime, in that order, through
 * an fd (files) or no-follow calls: a chown clears capabilities and set-id
 * bits, so they come after it; setting an ACL rewrites the group bits,
 * which the mode (recorded with that ACL) then sets to what they were. */
static int set_meta_fd(rctx *c, int fd, const entry *e)
{
	struct stat st;
	if (fstat(fd, &st))
		return errno;
	int rc;
	if ((st.st_uid != e->uid || st.st_gid != e->gid) && (rc = io_fchown(fd, e->uid, e->gid)) &&
	    !(rc == EPERM && geteuid()))
		return rc; /* an unprivileged user cannot give files away: keep ours */
	unsigned skipped = 0;
	rc = xattr_apply_fd(fd, e->xattrs, e->xattrs_len, &skipped);
	c->st.attrs_skipped += skipped;
	if (rc)
		return rc;
	if ((rc = io_fchmod(fd, e->mode)))
		return rc;
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, entry_mtime(e)};
	return io_futimens(fd, ts);
}

static int set_meta_at(rctx *c, int dfd, const char *leaf, const entry *e)
{
	struct stat st;
	if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW))
		return errno;
	int chowned = 0, rc;
	if (st.st_uid != e->uid || st.st_gid != e->gid) {
		if (!(rc = io_fchownat(dfd, leaf, e->uid, e->gid, AT_SYMLINK_NOFOLLOW)))
			chowned = 1;
		else if (!(rc == EPERM && geteuid()))
			return rc;
	}
	unsigned skipped = 0;
	rc = xattr_apply_at(dfd, leaf, e->xattrs, e->xattrs_len, &skipped);
	c->st.attrs_skipped += skipped;
	if (rc)
		return rc;
	/* a chown clears set-id bits, an ACL sets the group bits: the mode is
	 * set again after either */
	if (e->xattrs_len && fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW))
		return errno;
	if (e->kind != KIND_SYMLINK && (chowned || (st.st_mode & 07777) != e->mode) &&
	    (rc = io_fchmodat(dfd, leaf, e->mode, AT_SYMLINK_NOFOLLOW)))
		return rc;
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, entry_mtime(e)};
	return io_utimensat(dfd, leaf, ts, AT_SYMLINK_NOFOLLOW);
}

static void tmp_name(rctx *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s%d.%u", MTM_TMP_PREFIX, (int)getpid(), c->tmp_seq++);
}

/* Writes a file version whole under a temporary name and renames it in. */
static int write_whole(rctx *c, const plan_item *p)
{
	const entry *e = p->te;
	int dfd, fd, rc;
	const char *leaf;
	MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
	char tmp[64];
	tmp_name(c, tmp, sizeof tmp);
	rc = io_openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600, &fd);
	if (rc) {
		close(dfd);
		return mtm_set_errno(rc, "%s", e->path);
	}
	uint64_t before = c->st.bytes_written;
	rc = io_ftruncate(fd, (off_t)e->size);
	if (rc)
		mtm_set_errno(rc, "%s", e->path);
	else if ((rc = filemap_write(&c->pr, NULL, fd, &p->map, e->size, NULL, 0, 0, &c->st.bytes_written)))
		mtm_set_error(rc, "%s: %s", e->path, mtm_last_error());
	else if ((rc = set_meta_fd(c, fd, e)))
		mtm_set_errno(rc, "%s: setting metadata", e->path);
	else if (c->in_place) {
		int64_t t = now_ns();
		if ((rc = io_fsync(fd)))
			mtm_set_errno(rc, "%s: fsync", e->path);
		c->fsync_ns += now_ns() - t;
	}
	close(fd);
	if (!rc && (rc = io_renameat(dfd, tmp, dfd, leaf)))
		mtm_set_errno(rc, "%s: rename into place", e->path);
	if (rc)
		(void)io_unlinkat(dfd, tmp, 0); /* best effort: scans skip a left temporary */
	close(dfd);
	if (!rc) {
		touch_dir(c, e->path);
		c->st.files_written++;
		progress(c, c->st.bytes_written - before);
	}
	return rc;
}

/* Where the file system can share extents (btrfs, XFS), a large file is
 * patched in a reflinked copy renamed into place: old-or-new at the cost of
 * the differing bytes. Elsewhere it is patched in place, covered by the
 * intent. Returns the fd to patch, and in tmp the copy's name ("" if none). */
static int open_for_patch(rctx *c, const entry *e, int *dfd_out, const char **leaf, char *tmp, size_t tmplen, int *fd_out)
{
	int dfd, src, rc;
	MTM_TRY(open_parent(c, e->path, &dfd, leaf));
	tmp[0] = 0;
	if ((rc = io_open_regular(dfd, *leaf, O_RDONLY | O_NOFOLLOW, &src))) {
		close(dfd);
		return rc == ELOOP ? mtm_set_error(MTM_EUNSAFE, "%s: is a symlink now; refusing to follow it", e->path)
		                   : mtm_set_errno(rc, "%s", e->path);
	}
	tmp_name(c, tmp, tmplen);
	int fd = -1;
	if (!io_openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600, &fd)) {
		if (io_clone(fd, src) == 0) {
			close(src);
			*dfd_out = dfd;
			*fd_out = fd;
			return 0;
		}
		close(fd);
		(void)io_unlinkat(dfd, tmp, 0); /* best effort: scans skip a left temporary */
	}
	tmp[0] = 0;
	close(src);
	rc = io_open_regular(dfd, *leaf, O_WRONLY | O_NOFOLLOW, &fd);
	if (rc) {
		close(dfd);
		return mtm_set_errno(rc, "%s", e->path);
	}
	*dfd_out = dfd;
	*fd_out = fd;
	return 0;
}

/* fsyncs (and closes) the files patched in place so far. */
static int sync_patched(rctx *c)
{
	int rc = 0;
	int64_t t = now_ns();
	for (size_t i = 0; i < c->unsynced.n; i++) {
		unsynced_file *u = &VEC_AT(&c->unsynced, unsynced_file, i);
		int err = rc ? 0 : io_fsync(u->fd);
		if (err)
			rc = mtm_set_errno(err, "%s: fsync", u->path);
		close(u->fd);
	}
	c->unsynced.n = 0;
	c->fsync_ns += now_ns() - t;
	return rc;
}

/* Rewrites only the differing blocks of a large file. */
static int write_patch(rctx *c, const plan_item *p)
{
	const entry *e = p->te;
	int fd = -1, dfd = -1;
	const char *leaf;
	char tmp[64];
	int rc = open_for_patch(c, e, &dfd, &leaf, tmp, sizeof tmp, &fd);
	if (rc)
		return rc;
	uint64_t before = c->st.bytes_written;
	if ((rc = io_ftruncate(fd, (off_t)e->size)))
		mtm_set_errno(rc, "%s", e->path);
	else if ((rc = filemap_write(&c->pr, c->bc, fd, &p->map, e->size, &p->runs, 1, 0, &c->st.bytes_written)))
		mtm_set_error(rc, "%s: %s", e->path, mtm_last_error());
	else if ((rc = set_meta_fd(c, fd, e)))
		mtm_set_errno(rc, "%s: setting metadata", e->path);
	else if (!tmp[0] && (c->unsynced.n < UNSYNCED_MAX || !(rc = sync_patched(c)))) {
		unsynced_file *u = vec_push(&c->unsynced);
		if (u) {
			u->fd = fd;
			u->path = e->path;
			fd = -1;
		}
	}
	if (fd >= 0 && !rc) {
		int64_t t = now_ns();
		if ((rc = io_fsync(fd)))
			mtm_set_errno(rc, "%s: fsync", e->path);
		c->fsync_ns += now_ns() - t;
	}
	if (fd >= 0)
		close(fd);
	if (tmp[0]) {
		if (!rc && (rc = io_renameat(dfd, tmp, dfd, leaf)))
			mtm_set_errno(rc, "%s: rename into place", e->path);
		if (rc)
			(void)io_unlinkat(dfd, tmp, 0); /* best effort: scans skip a left temporary */
		else
			touch_dir(c, e->path);
	}
	close(dfd);
	if (!rc) {
		c->st.files_patched++;
		progress(c, c->st.bytes_written - before);
	}
	return rc;
}

static int make_symlink(rctx *c, const entry *e)
{
	int dfd, rc;
	const char *leaf;
	MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
	char tmp[64];
	tmp_name(c, tmp, sizeof tmp);
	rc = io_symlinkat(e->target, dfd, tmp);
	if (!rc && (rc = io_renameat(dfd, tmp, dfd, leaf)))
		(void)io_unlinkat(dfd, tmp, 0); /* best effort: scans skip a left temporary */
	if (!rc)
		rc = set_meta_at(c, dfd, leaf, e);
	close(dfd);
	if (rc)
		return mtm_set_errno(rc, "%s", e->path);
	touch_dir(c, e->path);
	c->st.entries_created++;
	return 0;
}

/* Another name of a hard-linked file: a link to the group's file, which
 * the file pass wrote (FORMAT.md 3.4). Nothing if the name is already that
 * file (same inode); else a link made under a temporary name and renamed
 * over whatever is there, so a rerun after a crash finishes it. */
static int make_link(rctx *c, const vec *target, const entry *e)
{
	const entry *f = tree_find(target, e->target);
	if (!f || f->kind != KIND_FILE)
		return mtm_set_error(MTM_ECORRUPT, "index: hard link '%s' names '%s', which is no file of the checkpoint",
		                     e->path, e->target);
	int dfd, fdfd, rc;
	const char *leaf, *fleaf;
	MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
	if ((rc = open_parent(c, f->path, &fdfd, &fleaf))) {
		close(dfd);
		return rc;
	}
	struct stat have, want;
	if (fstatat(fdfd, fleaf, &want, AT_SYMLINK_NOFOLLOW))
		rc = errno;
	else if (!S_ISREG(want.st_mode))
		rc = ENOTPLAIN;
	else if (!fstatat(dfd, leaf, &have, AT_SYMLINK_NOFOLLOW) && have.st_dev == want.st_dev && have.st_ino == want.st_ino)
		rc = -1; /* already one of its names */
	if (!rc) {
		char tmp[64];
		tmp_name(c, tmp, sizeof tmp);
		rc = io_linkat(fdfd, fleaf, dfd, tmp);
		if (!rc && (rc = io_renameat(dfd, tmp, dfd, leaf)))
			(void)io_unlinkat(dfd, tmp, 0);
		if (!rc) {
			touch_dir(c, e->path);
			c->st.entries_created++;
		}
	}
	close(dfd);
	close(fdfd);
	return rc > 0 ? mtm_set_errno(rc, "%s: linking to %s", e->path, f->path) : 0;
}

/* Every other name of the hard-linked files, once the files are written. */
static int make_links(rctx *c, const vec *target)
{
	for (size_t i = 0; i < target->n; i++)
		if (VEC_AT(target, entry, i).kind == KIND_LINK)
			MTM_TRY(make_link(c, target, &VEC_AT(target, entry, i)));
	return 0;
}

/* A FIFO, socket or device node, made as what it was (a socket as an
 * inode, with nothing listening: only a program can bind one). Device
 * nodes need root; anyone else gets a count in nodes_skipped. */
static int make_node(rctx *c, const entry *e)
{
	static const mode_t type[] = {[KIND_FIFO] = S_IFIFO, [KIND_SOCKET] = S_IFSOCK, [KIND_CHR] = S_IFCHR,
	                              [KIND_BLK] = S_IFBLK};
	assert(e->kind >= KIND_FIFO && e->kind <= KIND_BLK);
	int dfd, rc;
	const char *leaf;
	MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
	char tmp[64];
	tmp_name(c, tmp, sizeof tmp);
	rc = io_mknodat(dfd, tmp, type[e->kind] | 0600, (dev_t)e->rdev);
	if (rc == EPERM && (e->kind == KIND_CHR || e->kind == KIND_BLK) && geteuid()) {
		close(dfd);
		c->st.nodes_skipped++;
		return 0;
	}
	if (!rc && (rc = io_renameat(dfd, tmp, dfd, leaf)))
		(void)io_unlinkat(dfd, tmp, 0); /* best effort: scans skip a left temporary */
	if (!rc)
		rc = set_meta_at(c, dfd, leaf, e);
	close(dfd);
	if (rc)
		return mtm_set_errno(rc, "%s", e->path);
	touch_dir(c, e->path);
	c->st.entries_created++;
	return 0;
}

static int make_dir(rctx *c, const entry *e)
{
	int dfd, rc;
	const char *leaf;
	MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
	rc = io_mkdirat(dfd, leaf, 0700);
	if (rc == EEXIST) {
		struct stat st;
		rc = fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) ? errno : S_ISDIR(st.st_mode) ? 0 : EEXIST;
	} else if (!rc) {
		c->st.entries_created++;
		touch_dir(c, e->path);
	}
	close(dfd);
	return rc ? mtm_set_errno(rc, "%s", e->path) : 0;
}

static int set_meta_path(rctx *c, const entry *e)
{
	int dfd, rc;
	const char *leaf;
	MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
	rc = set_meta_at(c, dfd, leaf, e);
	close(dfd);
	return rc ? mtm_set_errno(rc, "%s: setting metadata", e->path) : 0;
}

static int remove_path(rctx *c, const live_item *li, int must)
{
	int dfd, rc;
	const char *leaf;
	MTM_TRY(open_parent(c, li->path, &dfd, &leaf));
	rc = io_unlinkat(dfd, leaf, li->kind == KIND_DIR ? AT_REMOVEDIR : 0);
	close(dfd);
	if (rc == ENOENT)
		return 0;
	if ((rc == ENOTEMPTY || rc == EEXIST) && !must) {
		/* it still holds ignored files: they are not ours to delete */
		log_msg(MTM_LOG_WARNING, "%s: kept (holds files excluded from checkpoints)", li->path);
		return 0;
	}
	if (rc)
		return mtm_set_errno(rc, "%s: removing", li->path);
	touch_dir(c, li->path);
	c->st.entries_removed++;
	return 0;
}

static int meta_differs(const entry *e, const struct stat *st)
{
	return (e->kind != KIND_SYMLINK && (uint32_t)(st->st_mode & 07777) != e->mode) || st->st_uid != e->uid ||
	       st->st_gid != e->gid || (int64_t)st->st_mtim.tv_sec != e->mtime_s || st->st_mtim.tv_nsec != e->mtime_nsec ||
	       (e->kind == KIND_FILE && (int64_t)st->st_size != e->size);
}

static int xattrs_differ(const entry *e, const unsigned char *x, size_t len)
{
	return e->xattrs_len != len || (len && memcmp(e->xattrs, x, len));
}

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
		MTM_TRY(index_block_pair(c->s, te->file_id, blk, &c->lin_k, &c->lin_h, 1, r, f));
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
static int plan_file(rctx *c, plan_item *p, const vec *head_tree, pathmap *sc)
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
	if (!*partial)
		MTM_TRY(index_file_map(c->s, te->file_id, &c->lin_k, &p->map));
	if (fresh && he->ver == te->ver) {
		p->action = file_meta_action(c, p);
		return 0;
	}
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

/* Starts every read the patches of the plan will make (filemap_gather). */
static int gather(rctx *c, const vec *plan)
{
	filemap_job *jobs = malloc((plan->n ? plan->n : 1) * sizeof *jobs);
	if (!jobs)
		return mtm_set_error(ENOMEM, "restore");
	size_t n = 0;
	for (size_t i = 0; i < plan->n; i++) {
		const plan_item *p = &VEC_AT(plan, plan_item, i);
		if (p->action == ACT_PATCH)
			jobs[n++] = (filemap_job){&p->map, p->te->size, &p->runs};
	}
	filemap_gather(&c->pr, c->bc, jobs, n);
	free(jobs);
	return 0;
}

static void plan_free(vec *plan)
{
	for (size_t i = 0; i < plan->n; i++) {
		vec_free(&VEC_AT(plan, plan_item, i).map);
		vec_free(&VEC_AT(plan, plan_item, i).runs);
	}
	vec_free(plan);
}

static int fsync_dirs(rctx *c)
{
	for (size_t i = 0; i < c->dirs.cap; i++) {
		const char *d = c->dirs.slots[i].key;
		if (!d)
			continue;
		int fd, rc;
		if (!strcmp(d, "."))
			rc = io_fsync_dirat(c->rootfd, ".");
		else if (!(rc = beneath_open(c->rootfd, d, O_RDONLY | O_DIRECTORY, &fd))) {
			rc = io_fsync(fd);
			close(fd);
		}
		/* a directory removed or replaced later in this restore: its
		 * parent holds that change and is fsynced itself */
		if (rc && rc != ENOENT && rc != ENOTDIR && rc != ELOOP)
			return mtm_set_errno(rc, "%s: fsync", d);
	}
	return 0;
}

/* Applies directory metadata last, deepest first: creating entries in a
 * directory changes its mtime, so nothing may follow this. */
static int fix_dirs(rctx *c, vec *target, const vec *plan)
{
	for (size_t i = plan ? plan->n : target->n; i-- > 0;) {
		const plan_item *p = plan ? &VEC_AT(plan, plan_item, i) : NULL;
		entry *e = p ? p->te : &VEC_AT(target, entry, i);
		if (e->kind != KIND_DIR || (p && p->above && p->action != ACT_CREATE))
			continue; /* above the request's paths: only made if missing */
		int dfd;
		const char *leaf;
		MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
		struct stat st;
		int rc = fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) ? errno : 0;
		unsigned char *x = NULL;
		size_t xlen = 0;
		if (!rc && !meta_differs(e, &st))
			rc = xattr_read_at(dfd, leaf, &x, &xlen);
		if (!rc && (meta_differs(e, &st) || xattrs_differ(e, x, xlen)))
			rc = set_meta_at(c, dfd, leaf, e);
		free(x);
		close(dfd);
		if (rc)
			return mtm_set_errno(rc, "%s: setting metadata", e->path);
	}
	return 0;
}

/* The stat cache rows of the files written are taken once the racy window
 * has passed since the last change to one (at most RACY_FINE_NS, 50 ms, of
 * waiting, mostly spent in the fsyncs; none where the window is the 2 s of
 * coarse file systems): a row
 * taken sooner is racy (scan.h), and the next restore, scan or session
 * would hash every file this restore wrote, O(tree) after each restore of
 * a program that explores and backs off. The rule is then scan's: measured
 * from the moment each stat is taken. */
static void wait_racy_window(rctx *c, const vec *plan)
{
	struct stat st;
	if (fstat(c->rootfd, &st))
		return;
	int64_t window = racy_window(c->s, &st);
	if (window > RACY_FINE_NS)
		return;
	int any = 0;
	for (size_t i = 0; i < plan->n && !any; i++) {
		const plan_item *p = &VEC_AT(plan, plan_item, i);
		any = p->te->kind == KIND_FILE && p->action != ACT_NONE;
	}
	int64_t left = any ? c->changed_ns + window - now_ns() : 0;
	if (left > 0) {
		nanosleep(&(struct timespec){left / 1000000000, left % 1000000000}, NULL);
		c->racy_wait_ns = left;
	}
}

/* Records the new head (a restore of the whole tree) and the stat cache
 * rows of the files written: a row names the version the file holds,
 * whatever the head is. */
static int record_restored(rctx *c, mtm_id k, vec *plan, vec *removed, int whole)
{
	sqlite3_stmt *put = NULL, *del = NULL;
	wait_racy_window(c, plan);
	int rc = db_exec(c->s, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	rc = whole ? meta_set_int(c->s, "head", k) : 0;
	for (size_t i = 0; i < plan->n && !rc; i++) {
		plan_item *p = &VEC_AT(plan, plan_item, i);
		if (p->te->kind != KIND_FILE || p->action == ACT_NONE)
			continue;
		int fd;
		struct stat st;
		if ((rc = beneath_open(c->rootfd, p->te->path, O_RDONLY | O_NONBLOCK, &fd))) {
			rc = mtm_set_errno(rc, "%s", p->te->path);
			break;
		}
		int64_t seen = now_ns();
		rc = fstat(fd, &st) ? errno : 0;
		close(fd);
		if (!rc)
			rc = statcache_put(c->s, &put, p->te->path, p->te->ver, &st, seen);
	}
	for (size_t i = 0; i < removed->n && !rc; i++) {
		live_item *li = VEC_AT(removed, live_item *, i);
		if (li->kind == KIND_FILE)
			rc = statcache_del(c->s, &del, li->path);
	}
	sqlite3_finalize(put);
	sqlite3_finalize(del);
	if (!rc)
		rc = db_exec(c->s, "COMMIT");
	if (rc)
		sqlite3_exec(c->s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int push_removed(vec *removed, live_item *li)
{
	live_item **slot = vec_push(removed);
	if (!slot)
		return mtm_set_error(ENOMEM, "restore");
	*slot = li;
	return 0;
}

static int by_path(const void *a, const void *b)
{
	return strcmp((*(live_item *const *)a)->path, (*(live_item *const *)b)->path);
}

/* An entry of another type (FIFO, socket, device node) that the walk does
 * not list but that is in the way: removed like any other difference. */
static int add_other(vec *removed, vec *others, const char *path, const struct stat *st)
{
	live_item **o = vec_push(others), *li = calloc(1, sizeof *li);
	if (!o || !li || !(li->path = strdup(path))) {
		free(li);
		return mtm_set_error(ENOMEM, "restore");
	}
	*o = li;
	li->st = *st;
	li->kind = KIND_NONE;
	return push_removed(removed, li);
}

static live_item *live_find(const vec *live, const char *path)
{
	size_t lo = 0, hi = live->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(VEC_AT(live, live_item, mid).path, path);
		if (!cmp)
			return &VEC_AT(live, live_item, mid);
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int report(rctx *c, char action, const char *path, uint64_t bytes)
{
	if (!c->rq->on_step)
		return 0;
	mtm_restore_step st = {action, path, bytes};
	return c->rq->on_step(c->rq->step_arg, &st);
}

/* Lists the plan's steps (on_step), and collects the directories whose
 * entries it changes (for the access check) and the bytes it writes. */
static int steps(rctx *c, const vec *plan, const vec *removed, pathmap *dirs, uint64_t *need)
{
	int rc = 0;
	for (size_t i = 0; i < removed->n && !rc; i++) {
		live_item *li = VEC_AT(removed, live_item *, i);
		touch_dir_in(dirs, li->path);
		rc = report(c, 'R', li->path, 0);
	}
	for (size_t i = 0; i < plan->n && !rc; i++) {
		const plan_item *p = &VEC_AT(plan, plan_item, i);
		const entry *e = p->te;
		uint64_t bytes = 0;
		char a = 0;
		switch (p->action) {
		case ACT_NONE:
			continue;
		case ACT_META:
			a = 'm';
			break;
		case ACT_CREATE:
			if (e->kind == KIND_FILE) {
				a = 'W';
				bytes = (uint64_t)e->size;
			} else {
				a = 'C';
			}
			touch_dir_in(dirs, e->path);
			break;
		case ACT_REWRITE:
			a = 'W';
			bytes = (uint64_t)e->size;
			touch_dir_in(dirs, e->path);
			break;
		case ACT_PATCH:
			a = 'P';
			for (size_t r = 0; r < p->runs.n; r++)
				bytes += (uint64_t)VEC_AT(&p->runs, blk_run, r).count * MTM_BLOCK;
			touch_dir_in(dirs, e->path); /* a reflinked copy is renamed in */
			break;
		}
		*need += bytes;
		rc = report(c, a, e->path, bytes);
	}
	return rc;
}

/* Restores k in place, as c->rq asks. pending: an intent was there when
 * the restore began (an interrupted one): removed however this one ends,
 * once it completes. */
static int restore_in_place(rctx *c, mtm_id k, mtm_id from, int pending)
{
	mtm_store *s = c->s;
	const rreq *rq = c->rq;
	vec target = VEC_INIT(entry), head_tree = VEC_INIT(entry), live = VEC_INIT(live_item);
	vec plan = VEC_INIT(plan_item), removed = VEC_INIT(live_item *), others = VEC_INIT(live_item *);
	vec opened = VEC_INIT(opened_dir);
	pathmap sc = {0}, dirs = {0};
	strvec odd = {0};
	ignore_set ign = {0}, none = {0};
	mtm_id head = 0;
	int rc, in_read = 0;
	c->t0 = now_ns();
	int64_t ph[7] = {c->t0}; /* phase ends, for $METAMORI_DEBUG_RESTORE */
	c->bc = blockcache_new(KEEP_BUDGET);
	if (!c->bc)
		return mtm_set_error(ENOMEM, "restore");
	/* One read transaction from plan to apply: one snapshot of the index,
	 * and no lock and unlock of the database for every chunk looked up. */
	if ((rc = db_exec(s, "BEGIN")))
		goto done;
	in_read = 1;
	if ((rc = index_load_tree(s, k, &target)) || (rc = lineage_of(s, k, &c->lin_k)) || (rc = mtm_head(s, &head)) ||
	    (rc = index_load_tree(s, head, &head_tree)) || (rc = lineage_of(s, head, &c->lin_h)) ||
	    (rc = statcache_load(s, &sc)) ||
	    (rc = index_blocks_between(s, &c->lin_k, &c->lin_h, BETWEEN_LIMIT, &c->between, &c->between_ok)) ||
	    (rc = ignore_load(&ign, s->rootfd, rq->excludes, rq->n_excludes)) ||
	    (rc = walk_tree(s, &none, &live)) || (rc = live_group_links(&live, &ign)))
		goto done;
	ph[1] = now_ns();

	/* Plan: merge target and live, both in path order. */
	for (size_t i = 0, j = 0; i < target.n || j < live.n;) {
		entry *te = i < target.n ? &VEC_AT(&target, entry, i) : NULL;
		live_item *li = j < live.n ? &VEC_AT(&live, live_item, j) : NULL;
		int cmp = !te ? 1 : !li ? -1 : strcmp(te->path, li->path);
		if (cmp > 0) { /* live only: remove unless excluded from checkpoints or outside the request */
			j++;
			if (!ignore_path(&ign, li->path, li->kind == KIND_DIR) &&
			    scope_of(rq->paths, rq->n_paths, li->path) == SCOPE_IN && (rc = push_removed(&removed, li)))
				goto done;
			continue;
		}
		int scope = scope_of(rq->paths, rq->n_paths, te->path);
		if (ignore_path(&ign, te->path, te->kind == KIND_DIR) || scope == SCOPE_OUT ||
		    (scope == SCOPE_ABOVE && te->kind != KIND_DIR)) {
			/* excluded or outside the request: neither restored nor removed, whatever is live there */
			i++;
			j += cmp == 0;
			continue;
		}
		plan_item *p = vec_push(&plan);
		if (!p) {
			rc = mtm_set_error(ENOMEM, "restore");
			goto done;
		}
		p->map = (vec)VEC_INIT(blockref);
		p->runs = (vec)VEC_INIT(blk_run);
		p->te = te;
		p->above = scope == SCOPE_ABOVE;
		i++;
		if (cmp == 0) {
			j++;
			if (li->kind != te->kind) {
				if ((rc = push_removed(&removed, li)))
					goto done;
				li = NULL;
			}
		} else {
			li = NULL;
			/* something the walk does not list may be there (only if
			 * its parent is: one lookup per entry created in a live directory) */
			const char *slash = strrchr(te->path, '/');
			char *parent = slash ? strndup(te->path, (size_t)(slash - te->path)) : NULL;
			live_item *pl = parent ? live_find(&live, parent) : NULL;
			free(parent);
			struct stat st;
			if ((!slash || (pl && pl->kind == KIND_DIR)) && preflight_other_at(s->rootfd, te->path, &st) &&
			    (rc = add_other(&removed, &others, te->path, &st)))
				goto done;
		}
		p->li = li;
		if (!li) {
			p->action = ACT_CREATE;
			if (te->kind == KIND_FILE) {
				if ((rc = index_file_map(s, te->file_id, &c->lin_k, &p->map)))
					goto done;
				c->total += (uint64_t)te->size;
			}
		} else if (p->above) {
			p->action = ACT_NONE; /* a directory there already: left as it is */
		} else if (te->kind == KIND_FILE) {
			if ((rc = plan_file(c, p, &head_tree, &sc)))
				goto done;
		} else if (te->kind == KIND_LINK) { /* (made or checked by make_links) */
			p->action = strcmp(te->target, li->target) ? ACT_CREATE : ACT_NONE;
		} else if (te->kind == KIND_SYMLINK && strcmp(te->target, li->target ? li->target : "") != 0) {
			p->action = ACT_CREATE;
		} else if ((te->kind == KIND_CHR || te->kind == KIND_BLK) && (uint64_t)li->st.st_rdev != te->rdev) {
			p->action = ACT_CREATE;
		} else {
			p->action = meta_differs(te, &li->st) || xattrs_differ(te, li->xattrs, li->xattrs_len) ? ACT_META : ACT_NONE;
		}
	}
	/* a path asked for that neither the checkpoint nor the tree has */
	for (size_t i = 0; i < rq->n_paths; i++) {
		const char *q = rq->paths[i];
		if (*q && !tree_find(&target, q) && !live_find(&live, q)) {
			rc = mtm_set_error(ENOENT, "%s: not in checkpoint %lld, nor in the tree", q, (long long)k);
			goto done;
		}
	}
	/* A file patched in place must be writable; one that is not (mode
	 * 0444) is rewritten whole instead, through a new name. */
	for (size_t i = 0; i < plan.n; i++) {
		plan_item *p = &VEC_AT(&plan, plan_item, i);
		int fd;
		if (p->action != ACT_PATCH || !faccessat(s->rootfd, p->te->path, W_OK, AT_EACCESS | AT_SYMLINK_NOFOLLOW))
			continue;
		vec_free(&p->map);
		vec_free(&p->runs);
		p->map = (vec)VEC_INIT(blockref);
		p->runs = (vec)VEC_INIT(blk_run);
		p->action = ACT_REWRITE;
		c->total += (uint64_t)p->te->size;
		(void)fd;
		if ((rc = index_file_map(s, p->te->file_id, &c->lin_k, &p->map)))
			goto done;
	}
	/* Entries of other types inside directories that go: removed first. */
	for (size_t i = 0, n = removed.n; i < n; i++) {
		live_item *li = VEC_AT(&removed, live_item *, i);
		if (li->kind != KIND_DIR)
			continue;
		odd.n ? strvec_free(&odd) : (void)0;
		if ((rc = preflight_others_in(s->rootfd, li->path, &odd)))
			goto done;
		for (size_t j = 0; j < odd.n; j++) {
			struct stat st;
			if (preflight_other_at(s->rootfd, odd.v[j], &st) && (rc = add_other(&removed, &others, odd.v[j], &st)))
				goto done;
		}
	}
	if (removed.n)
		qsort(removed.v, removed.n, sizeof(live_item *), by_path);

	/* A directory that must give way to another type but holds excluded
	 * files cannot be removed (they are not ours): fail before any change. */
	for (size_t i = 0; i < removed.n; i++) {
		live_item *li = VEC_AT(&removed, live_item *, i);
		if (li->kind != KIND_DIR || !tree_find(&target, li->path))
			continue;
		size_t n = strlen(li->path);
		for (size_t j = 0; j < live.n; j++) {
			live_item *x = &VEC_AT(&live, live_item, j);
			if (!strncmp(x->path, li->path, n) && x->path[n] == '/' && ignore_path(&ign, x->path, x->kind == KIND_DIR)) {
				rc = mtm_set_error(MTM_ENOTEMPTY, "%s: cannot restore, the tree was not changed: this directory "
				                   "holds %s, which is excluded from checkpoints; move it away first",
				                   li->path, x->path);
				goto done;
			}
		}
	}

	/* Preflight: the steps, the space they need, the directories they change. */
	uint64_t need = 0;
	if ((rc = steps(c, &plan, &removed, &dirs, &need)) || rq->dry_run)
		goto done;
	if ((rc = preflight_space(s->rootfd, need)) || (rc = preflight_access(s->rootfd, &dirs, &opened)))
		goto done;

	ph[2] = now_ns();
	if ((rc = gather(c, &plan)))
		goto done;
	ph[3] = now_ns();

	/* Verify: read every chunk the restore needs before touching anything. */
	int work = removed.n > 0;
	for (size_t i = 0; i < plan.n; i++) {
		plan_item *p = &VEC_AT(&plan, plan_item, i);
		if (p->action != ACT_NONE)
			work = 1;
		if (p->te->kind != KIND_FILE || p->action == ACT_NONE || p->action == ACT_META)
			continue;
		if ((rc = filemap_write(&c->pr, p->action == ACT_PATCH ? c->bc : NULL, -1, &p->map, p->te->size,
		                        p->action == ACT_PATCH ? &p->runs : NULL, 0, 1, NULL))) {
			rc = mtm_set_error(rc, "%s: cannot restore, the tree was not changed: %s", p->te->path, mtm_last_error());
			goto done;
		}
	}

	ph[4] = now_ns();
	if (work) { /* the whole request, before the first change */
		intent in = {.target = k, .from = from};
		for (size_t i = 0; !rc && i < rq->n_excludes; i++)
			rc = strvec_push(&in.excludes, rq->excludes[i]);
		for (size_t i = 0; !rc && i < rq->n_paths; i++)
			rc = strvec_push(&in.paths, rq->paths[i]);
		rc = rc ? mtm_set_error(rc, "restore") : intent_write(s, &in);
		intent_free(&in);
		if (rc || (rc = preflight_open_dirs(s->rootfd, &opened)))
			goto done;
	}
	/* Apply. Removals deepest first (reverse path order). */
	for (size_t i = removed.n; i-- > 0;) {
		live_item *li = VEC_AT(&removed, live_item *, i);
		entry *te = tree_find(&target, li->path);
		if ((rc = remove_path(c, li, te != NULL)))
			goto done;
	}
	for (size_t i = 0; i < plan.n && !rc; i++) {
		plan_item *p = &VEC_AT(&plan, plan_item, i);
		if (p->te->kind == KIND_DIR && p->action == ACT_CREATE)
			rc = make_dir(c, p->te);
	}
	for (size_t i = 0; i < plan.n && !rc; i++) {
		plan_item *p = &VEC_AT(&plan, plan_item, i);
		if (p->te->kind == KIND_FILE) {
			if (p->action == ACT_CREATE || p->action == ACT_REWRITE)
				rc = write_whole(c, p);
			else if (p->action == ACT_PATCH)
				rc = write_patch(c, p);
			else if (p->action == ACT_META)
				rc = set_meta_path(c, p->te);
		}
	}
	if (!rc)
		rc = make_links(c, &target);
	c->changed_ns = now_ns(); /* the last change to a file (its stat cache row) */
	if (!rc)
		rc = sync_patched(c);
	for (size_t i = 0; i < plan.n && !rc; i++) { /* symlinks and other nodes last */
		plan_item *p = &VEC_AT(&plan, plan_item, i);
		int kd = p->te->kind;
		if (kd == KIND_SYMLINK || (kd >= KIND_FIFO && kd <= KIND_BLK))
			rc = p->action == ACT_CREATE ? (kd == KIND_SYMLINK ? make_symlink(c, p->te) : make_node(c, p->te))
			   : p->action == ACT_META   ? set_meta_path(c, p->te)
			                             : 0;
	}
	/* the modes of the directories opened for the restore, then the
	 * checkpoint's metadata of every directory in the request */
	preflight_close_dirs(s->rootfd, &opened);
	if (rc || (rc = fix_dirs(c, &target, &plan)) || (rc = fsync_dirs(c)))
		goto done;
	ph[5] = now_ns();
	in_read = 0;
	if ((rc = db_exec(s, "COMMIT")) || (rc = record_restored(c, k, &plan, &removed, rq->n_paths == 0)))
		goto done;
	/* on every path that completes, "nothing left to do" included: an
	 * intent left behind would make a later restore's plan start from it */
	if (work || pending)
		rc = intent_clear(s);
	ph[6] = now_ns();
	if (!rc && secure_getenv("METAMORI_DEBUG_RESTORE"))
		log_msg(MTM_LOG_DEBUG,
		        "restore %lld: load %.1f ms (%zu blocks between), plan %.1f ms, reads started %.1f ms, verify %.1f ms, "
		        "apply %.1f ms (fsyncs %.1f ms), record %.1f ms (%.1f ms of it waiting out the racy window)",
		        (long long)k, (ph[1] - ph[0]) / 1e6, c->between.n, (ph[2] - ph[1]) / 1e6, (ph[3] - ph[2]) / 1e6,
		        (ph[4] - ph[3]) / 1e6,
		        (ph[5] - ph[4]) / 1e6, c->fsync_ns / 1e6, (ph[6] - ph[5]) / 1e6, c->racy_wait_ns / 1e6);
done:
	for (size_t i = 0; i < c->unsynced.n; i++) /* after a failure */
		close(VEC_AT(&c->unsynced, unsynced_file, i).fd);
	c->unsynced.n = 0;
	preflight_close_dirs(s->rootfd, &opened); /* (after a failure) */
	if (in_read)
		sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	blockcache_free(c->bc);
	c->bc = NULL;
	plan_free(&plan);
	vec_free(&removed);
	for (size_t i = 0; i < others.n; i++) {
		free(VEC_AT(&others, live_item *, i)->path);
		free(VEC_AT(&others, live_item *, i));
	}
	vec_free(&others);
	strvec_free(&odd);
	pathmap_free(&dirs, NULL);
	entries_free(&target);
	entries_free(&head_tree);
	live_free(&live);
	pathmap_free(&sc, free);
	ignore_free(&ign);
	lineage_free(&c->lin_k);
	lineage_free(&c->lin_h);
	return rc;
}

static int dir_is_empty(int fd)
{
	int dup_fd = dup(fd);
	if (dup_fd < 0)
		return -1;
	DIR *d = fdopendir(dup_fd);
	if (!d) {
		close(dup_fd);
		return -1;
	}
	struct dirent *de;
	int empty = 1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			empty = 0;
			break;
		}
	closedir(d);
	return empty;
}

static int restore_to_dir(rctx *c, mtm_id k, const char *to)
{
	const rreq *rq = c->rq;
	vec target = VEC_INIT(entry);
	/* One read transaction, as in place: the block rows and the chunk rows
	 * they name come from one snapshot (a concurrent gc may compact a chunk:
	 * FORMAT.md section 7), and no chunk lookup locks the database alone. */
	int rc = db_exec(c->s, "BEGIN");
	if (rc)
		return rc;
	if ((rc = index_load_tree(c->s, k, &target)) || (rc = lineage_of(c->s, k, &c->lin_k)))
		goto done;
	/* with paths: those, and the directories above them */
	size_t keep = 0;
	for (size_t i = 0; i < target.n; i++) {
		entry *e = &VEC_AT(&target, entry, i);
		int scope = scope_of(rq->paths, rq->n_paths, e->path);
		if (scope == SCOPE_IN || (scope == SCOPE_ABOVE && e->kind == KIND_DIR))
			VEC_AT(&target, entry, keep++) = *e;
		else
			entry_clear(e);
	}
	target.n = keep;
	for (size_t i = 0; i < rq->n_paths; i++)
		if (*rq->paths[i] && !tree_find(&target, rq->paths[i])) {
			rc = mtm_set_error(ENOENT, "%s: not in checkpoint %lld", rq->paths[i], (long long)k);
			goto done;
		}
	for (size_t i = 0; i < target.n && !rc; i++) {
		entry *e = &VEC_AT(&target, entry, i);
		if (rq->on_step && e->kind != KIND_DIR)
			rc = report(c, e->kind == KIND_FILE ? 'W' : 'C', e->path, e->kind == KIND_FILE ? (uint64_t)e->size : 0);
	}
	if (rc || rq->dry_run)
		goto done;
	if (mkdir(to, 0700) && errno != EEXIST) {
		rc = mtm_set_errno(errno, "%s", to);
		goto done;
	}
	if ((rc = io_openat(AT_FDCWD, to, O_RDONLY | O_DIRECTORY, 0, &c->rootfd))) {
		rc = mtm_set_errno(rc, "%s", to);
		goto done;
	}
	if (dir_is_empty(c->rootfd) != 1) {
		rc = mtm_set_error(MTM_ENOTEMPTY, "%s: restore target is not an empty directory", to);
		goto done;
	}
	for (size_t i = 0; i < target.n; i++)
		if (VEC_AT(&target, entry, i).kind == KIND_FILE)
			c->total += (uint64_t)VEC_AT(&target, entry, i).size;
	for (size_t i = 0; i < target.n && !rc; i++) {
		entry *e = &VEC_AT(&target, entry, i);
		if (e->kind == KIND_DIR) {
			rc = make_dir(c, e);
		} else if (e->kind == KIND_FILE) {
			plan_item p = {.te = e, .map = VEC_INIT(blockref)};
			if (!(rc = index_file_map(c->s, e->file_id, &c->lin_k, &p.map)))
				rc = write_whole(c, &p);
			vec_free(&p.map);
		}
	}
	if (!rc)
		rc = make_links(c, &target);
	for (size_t i = 0; i < target.n && !rc; i++) {
		entry *e = &VEC_AT(&target, entry, i);
		if (e->kind == KIND_SYMLINK)
			rc = make_symlink(c, e);
		else if (e->kind >= KIND_FIFO && e->kind <= KIND_BLK)
			rc = make_node(c, e);
	}
	if (!rc)
		rc = fix_dirs(c, &target, NULL);
	/* one syncfs instead of an fsync per file: the directory was empty, so
	 * there is no old version to protect, only durability at the end */
	if (!rc && syncfs(c->rootfd))
		rc = mtm_set_errno(errno, "%s: sync", to);
done:
	db_exec(c->s, "COMMIT");
	entries_free(&target);
	lineage_free(&c->lin_k);
	return rc;
}

static int rctx_init(rctx *c, mtm_store *s, const rreq *rq)
{
	memset(c, 0, sizeof *c);
	c->s = s;
	c->rq = rq;
	c->rootfd = s->rootfd;
	c->in_place = 1;
	c->unsynced = (vec)VEC_INIT(unsynced_file);
	return pack_reader_init(&c->pr, s);
}

static void rctx_free(rctx *c)
{
	pack_reader_free(&c->pr);
	pathmap_free(&c->dirs, NULL);
	vec_free(&c->between);
	vec_free(&c->unsynced);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void rreq_free(rreq *rq)
{
	for (size_t i = 0; i < rq->n_paths; i++)
		free(rq->paths[i]);
	free(rq->paths);
	rq->paths = NULL;
	rq->n_paths = 0;
}

/* The request's paths, normalized and sorted ("" for the whole tree:
 * then as if none was given). */
static int rreq_paths(rreq *rq, const char *const *paths, size_t n)
{
	rq->paths = calloc(n ? n : 1, sizeof *rq->paths);
	if (!rq->paths)
		return mtm_set_error(ENOMEM, "restore");
	int whole = 0;
	for (size_t i = 0; i < n; i++) {
		MTM_TRY(browse_norm_path(paths[i], &rq->paths[rq->n_paths]));
		whole |= !*rq->paths[rq->n_paths++];
	}
	if (whole) {
		rreq_free(rq);
		return 0;
	}
	qsort(rq->paths, rq->n_paths, sizeof *rq->paths, cmp_str);
	return 0;
}

/* Options of either version as the current version; the caller's outputs
 * (*o->saved, *out) cleared before anything can fail. */
static int opts_begin(const mtm_restore_opts *opts, mtm_restore_opts *o, mtm_restore_stats *out)
{
	mtm_restore_opts def = MTM_RESTORE_OPTS_INIT;
	*o = def;
	if (out)
		memset(out, 0, sizeof *out);
	if (opts && opts->version == MTM_RESTORE_OPTS_VERSION && opts->saved)
		*opts->saved = 0;
	if (!opts)
		return 0;
	if (opts->version == 1) { /* the fields up to progress_arg */
		o->to_dir = opts->to_dir;
		o->excludes = opts->excludes;
		o->n_excludes = opts->n_excludes;
		o->progress = opts->progress;
		o->progress_arg = opts->progress_arg;
		return 0;
	}
	if (opts->version != MTM_RESTORE_OPTS_VERSION)
		return mtm_set_error(MTM_EINVAL, "restore: unsupported options version %d", opts->version);
	*o = *opts;
	return 0;
}

#define DIFF_STOP (-1) /* not an error code: the first difference was found */
static int stop_at_first(void *arg, const mtm_change *ch)
{
	(void)ch;
	*(int *)arg = 1;
	return DIFF_STOP;
}

/* Whether the live tree differs from the head, as `status` sees it: a read
 * only (no transaction, nothing written) that stops at the first
 * difference, so that a restore of a tree that is its head's costs no
 * checkpoint's writes. */
static int live_differs(mtm_store *s, int *differs)
{
	mtm_id head;
	*differs = 0;
	MTM_TRY(mtm_head(s, &head));
	if (!head)
		return 0;
	int rc = mtm_diff(s, head, MTM_LIVE, NULL, stop_at_first, differs);
	return rc == DIFF_STOP ? 0 : rc;
}

/* In place, under the writer lock: removes a killed restore's temporary
 * files (only a killed restore leaves an intent and them), saves the live
 * tree if it differs from the head (unless discard), then restores k.
 * *saved: the checkpoint saved, 0 if none. */
static int restore_locked(mtm_store *s, mtm_id k, const rreq *rq, int discard, mtm_id *saved, mtm_restore_stats *st)
{
	*saved = 0;
	intent pending;
	int rc = intent_read(s, &pending);
	if (rc == MTM_ECORRUPT)
		return mtm_set_error(rc, "%s; then run the restore again", mtm_last_error());
	if (rc)
		return rc;
	int had = pending.target > 0;
	intent_free(&pending);
	uint64_t cleaned;
	if (had && !rq->dry_run && (rc = preflight_clean_temps(s->rootfd, &cleaned)))
		return rc;
	int differs = 0;
	if (!discard && !rq->dry_run && (rc = live_differs(s, &differs)))
		return mtm_set_error(rc, "cannot restore, the tree was not changed: comparing it with the head failed: %s",
		                     mtm_last_error());
	if (differs) {
		char msg[96];
		snprintf(msg, sizeof msg, RESTORE_SAVE_MESSAGE "%lld", (long long)k);
		mtm_checkpoint_opts co = MTM_CHECKPOINT_OPTS_INIT;
		co.message = msg;
		mtm_checkpoint_info info;
		if ((rc = ckpt_scan_if_changed(s, &co, NULL, &info)))
			return mtm_set_error(rc, "cannot restore, the tree was not changed: saving it first failed "
			                     "(restore --discard skips the save): %s", mtm_last_error());
		free(info.message);
		*saved = info.id;
	}
	mtm_id from;
	MTM_TRY(mtm_head(s, &from));
	rctx c;
	if (!(rc = rctx_init(&c, s, rq)))
		rc = restore_in_place(&c, k, from, had);
	*st = c.st;
	rctx_free(&c);
	return rc;
}

/* Takes the lock and asks the caller's refusal with it held (api/restore.c:
 * not under a running `metamori run`, whose tree would change under the
 * traced program; a session starts only while holding the lock too). */
static int lock_for_tree(mtm_store *s, int (*refuse)(mtm_store *s))
{
	MTM_TRY(store_lock(s));
	int rc = refuse ? refuse(s) : 0;
	if (rc)
		store_unlock(s);
	return rc;
}

int restore_checkpoint(mtm_store *s, mtm_id id, const mtm_restore_opts *opts, int (*refuse)(mtm_store *s),
                       mtm_restore_stats *out)
{
	mtm_restore_opts o;
	MTM_TRY(opts_begin(opts, &o, out));
	int64_t branch;
	MTM_TRY(checkpoint_branch(s, id, &branch)); /* MTM_ENOCKPT for an unknown id */
	rreq rq = {o.excludes, o.n_excludes, NULL, 0, o.dry_run, o.on_step, o.step_arg, o.progress, o.progress_arg};
	int rc = rreq_paths(&rq, o.paths, o.n_paths);
	mtm_restore_stats st = {0};
	mtm_id saved = 0;
	if (!rc && o.to_dir) {
		rctx c;
		if (!(rc = rctx_init(&c, s, &rq))) {
			c.in_place = 0;
			rc = restore_to_dir(&c, id, o.to_dir);
			if (c.rootfd >= 0 && c.rootfd != s->rootfd)
				close(c.rootfd);
			st = c.st;
		}
		rctx_free(&c);
	} else if (!rc && !(rc = lock_for_tree(s, refuse))) {
		rc = restore_locked(s, id, &rq, o.discard, &saved, &st);
		store_unlock(s);
	}
	rreq_free(&rq);
	if (o.saved)
		*o.saved = saved;
	if (out)
		*out = st;
	return rc;
}

int mtm_restore_pending(mtm_store *s, mtm_id *target, mtm_id *from)
{
	intent in;
	*target = 0;
	if (from)
		*from = 0;
	MTM_TRY(intent_read(s, &in));
	*target = in.target;
	if (from)
		*from = in.from;
	intent_free(&in);
	return 0;
}

/* continue (abort = 0) or abort the pending restore, under the lock. */
int restore_resume(mtm_store *s, int abort, const mtm_restore_opts *opts, int (*refuse)(mtm_store *s),
                   mtm_restore_stats *out)
{
	mtm_restore_opts o;
	MTM_TRY(opts_begin(opts, &o, out));
	MTM_TRY(lock_for_tree(s, refuse));
	intent in;
	int rc = intent_read(s, &in);
	if (!rc && !in.target)
		rc = mtm_set_error(MTM_EINVAL, "restore --%s: no interrupted restore is pending", abort ? "abort" : "continue");
	mtm_id k = abort ? in.from : in.target, saved = 0;
	mtm_restore_stats st = {0};
	if (!rc && abort && !k) {
		/* an intent of an older version: it does not say what the tree
		 * was; the tree is left as it is, every file old or new */
		uint64_t n;
		if (!o.dry_run && !(rc = preflight_clean_temps(s->rootfd, &n)))
			rc = intent_clear(s);
	} else if (!rc) {
		rreq rq = {(const char *const *)in.excludes.v, in.excludes.n, NULL, 0, o.dry_run, o.on_step, o.step_arg,
		           o.progress, o.progress_arg};
		if (!(rc = rreq_paths(&rq, (const char *const *)in.paths.v, in.paths.n)) &&
		    !(rc = checkpoint_branch(s, k, &(int64_t){0})))
			rc = restore_locked(s, k, &rq, o.discard, &saved, &st);
		rreq_free(&rq);
	}
	intent_free(&in);
	store_unlock(s);
	if (o.saved)
		*o.saved = saved;
	if (out)
		*out = st;
	return rc;
}

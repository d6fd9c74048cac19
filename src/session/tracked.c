/*
 * tracked.c — a session's checkpoint: consistent, and O(what changed).
 *
 *   ckpt_begin (writer lock, transaction, head)      the program runs on
 *   barrier_close: the logs become a change set      modifying calls held
 *   collect: stat the touched paths, walk the subtrees of namespace changes,
 *     look up the parent's entries for exactly those paths (point lookups),
 *     copy the dirty blocks of touched files out of the page cache (capture)
 *   barrier_open                                     the program runs on
 *   ckpt_record(partial) / ckpt_commit: hash, compress, write, fsync
 *
 * The live side and the parent side hold the same set of paths (whatever
 * exists of it on each side), so ckpt_record's merge sees additions,
 * removals and changes among them, and leaves every other path as it was.
 *
 * A file's dirty blocks are enough only if the file is the one the parent
 * recorded at that path: the stat cache row written with the parent's
 * version names its inode, and no entry was created, removed or renamed at
 * the path or above it (an inode freed there may be reused at once by a
 * file written under another name). Otherwise (created, replaced, renamed,
 * no history) the whole file is copied; a renamed file still keeps its
 * history, matched by inode in ckpt_record, so only what differs is stored.
 *
 * When the logs cannot be trusted to name every change (overflow, a SCAN
 * record, a process that died inside a call, hard links, a symlink in a
 * recorded path, the ignore file changed), the checkpoint scans, still
 * inside the barrier: the walk and the copy of the files the stat cache
 * cannot vouch for happen while calls are held (or, past the capture
 * budget, the whole record does), so it is consistent too.
 *
 * The pause would be mostly a system call per scattered block read. So the
 * blocks the records name are read before the gate closes (the pre-copy,
 * as in live migration: records after the peek say which to read again),
 * in the barrier the rest are only read into memory (or by reference past
 * the budget); ckpt_record reads the captures where they were read into.
 * docs/SESSION.md has the measurements.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/io.h"
#include "io/xattr.h"
#include "checkpoint/checkpoint.h"
#include "tree/scan.h"
#include "session/session.h"
#include "util/error.h"
#include "util/log.h"
#include "util/human.h"
#include <xxhash.h>

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
	sqlite3_stmt *q_sc;
	const char *why; /* NEED_SCAN's reason */
	uint64_t budget; /* bytes still to copy out; past it, captures refer to the live file ... */
	int hold;        /* ... and the barrier stays closed until they are recorded */
	mtm_id parent_id;
	pathmap pending; /* path -> pending_hashes*: ss->hashes after a commit */
	vec deferred;    /* of deferred_copy: blocks read in the barrier, the captures' bytes */
	pathmap dirfds;  /* directory -> its fd + 1, or -errno: each opened once per checkpoint */
	pathmap pre;     /* path -> precopy*: blocks read before the barrier */
	change_set post; /* what the records say changed after they were read */
	uint64_t precopied_blocks;
} tctx;

/* Scattered blocks cost a system call each to read (the pause is mostly
 * that): in the barrier they are only read, into memory, where
 * ckpt_record reads them (materialize points the capture at them). */
typedef struct {
	capture *cap;
	unsigned char *data; /* the runs' bytes, in run order, clipped to size */
	int64_t size;
	int src;             /* the live file, until the reads are done (-1: read already) */
	const char *path;    /* live_item's */
	int64_t dev, ino;
	int src_precopy;     /* blocks may come from the pre-copy (read_deferred decided) */
} deferred_copy;

/* Block hashes for ss->hashes once the checkpoint commits: known (h), or to
 * be computed from a whole capture after the barrier (cap: its bytes exist
 * by then). */
typedef struct { block_hashes bh; const capture *cap; int64_t size; } pending_hashes;

void block_hashes_free(void *p)
{
	block_hashes *b = p;
	if (b)
		free(b->h);
	free(b);
}

static void pending_free(void *p)
{
	pending_hashes *ph = p;
	if (ph)
		free(ph->bh.h);
	free(ph);
}

static uint64_t block_hash(const unsigned char *blk, size_t len)
{
	unsigned char pad[MTM_BLOCK];
	if (len < MTM_BLOCK) {
		memcpy(pad, blk, len);
		memset(pad + len, 0, MTM_BLOCK - len);
		blk = pad;
	}
	return XXH3_64bits(blk, MTM_BLOCK);
}

/* How much a checkpoint may copy into memory during the barrier. */
uint64_t capture_budget(void)
{
	uint64_t limit = CAPTURE_LIMIT;
	const char *knob = secure_getenv("METAMORI_CAPTURE_LIMIT"); /* tests: force reading in place */
	if (knob && *knob)
		return strtoull(knob, NULL, 10);
	FILE *f = fopen("/proc/meminfo", "re");
	if (f) {
		char line[128];
		unsigned long long kb;
		while (fgets(line, sizeof line, f))
			if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1 && kb * 1024 / 4 < limit)
				limit = kb * 1024 / 4;
		fclose(f);
	}
	return limit;
}

static int need_scan(tctx *t, const char *why)
{
	t->why = why;
	return NEED_SCAN;
}

static int cmp_live(const void *a, const void *b)
{
	return strcmp(((const live_item *)a)->path, ((const live_item *)b)->path);
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const entry *)a)->path, ((const entry *)b)->path);
}

static live_item *live_find(const vec *live, const char *path)
{
	live_item key = {.path = (char *)path};
	if (!live->n)
		return NULL;
	return bsearch(&key, live->v, live->n, sizeof(live_item), cmp_live);
}

/* 1 if a strict ancestor of path is in m. */
static int under(const pathmap *m, const char *path)
{
	if (!m->n)
		return 0;
	char *buf = strdup(path); /* (paths may be longer than PATH_MAX) */
	if (!buf)
		return 1; /* the cautious answer: the file is read whole */
	int found = 0;
	for (char *p = buf + strlen(buf); p > buf && !found; p--) {
		if (*p != '/')
			continue;
		*p = 0;
		found = pathmap_get(m, buf) != NULL;
	}
	free(buf);
	return found;
}

/* The fd of path's directory (opened beneath the root, never through a
 * symlink, once per checkpoint) and its last component. 0 or an errno. */
static int parent_fd(tctx *t, const char *path, int *dfd, const char **leaf)
{
	const char *slash = strrchr(path, '/');
	if (!slash) {
		*dfd = t->s->rootfd;
		*leaf = path;
		return 0;
	}
	char *dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return ENOMEM;
	intptr_t v = (intptr_t)pathmap_get(&t->dirfds, dir);
	if (!v) {
		int fd, rc = beneath_open(t->s->rootfd, dir, O_RDONLY | O_DIRECTORY, &fd);
		v = rc ? -(intptr_t)rc : (intptr_t)fd + 1;
		if (pathmap_put(&t->dirfds, dir, (void *)v)) {
			if (!rc)
				close(fd);
			free(dir);
			return ENOMEM;
		}
	}
	free(dir);
	if (v < 0)
		return (int)-v;
	*dfd = (int)(v - 1);
	*leaf = slash + 1;
	return 0;
}

static void dirfds_close(tctx *t)
{
	for (size_t i = 0; i < t->dirfds.cap; i++)
		if (t->dirfds.slots[i].key && (intptr_t)t->dirfds.slots[i].val > 0)
			close((int)((intptr_t)t->dirfds.slots[i].val - 1));
	pathmap_free(&t->dirfds, NULL);
}

/* Whether some checkpoint recorded another name of the file at path. */
static int has_links(mtm_store *s, const char *path, int *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "SELECT 1 FROM entry WHERE kind = 8 AND target = ? LIMIT 1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_bind_blob(st, 1, path, (int)strlen(path), SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	*out = rc == SQLITE_ROW;
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

/* Opens a live file for its capture. */
static int open_live(tctx *t, const char *path, int *fd)
{
	int dfd;
	const char *leaf;
	int rc = parent_fd(t, path, &dfd, &leaf);
	if (!rc)
		rc = io_open_plain(dfd, leaf, O_RDONLY | O_NOFOLLOW, fd, NULL);
	return rc == ENOTPLAIN ? ENOENT : rc; /* replaced by a FIFO or device: never blocks */
}

/* lstat of a tree path, never through a symlink (and its extended
 * attributes, but a regular file's). *found = 0 if it is not there. */
static int live_stat(tctx *t, const char *path, live_item *it, int *found)
{
	*found = 0;
	int dfd;
	const char *leaf;
	int rc = parent_fd(t, path, &dfd, &leaf);
	if (rc == ENOENT || rc == ENOTDIR)
		return 0;
	if (rc == ELOOP || rc == EXDEV)
		return need_scan(t, "a recorded path goes through a symlink");
	if (rc)
		return mtm_set_errno(rc, "%s/%s", t->s->root, path);
	struct stat st;
	if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW)) {
		rc = errno;
		return rc == ENOENT ? 0 : mtm_set_errno(rc, "%s/%s", t->s->root, path);
	}
	int kind = kind_of_mode(st.st_mode);
	if (kind == KIND_NONE)
		return 0;
	if (kind == KIND_SYMLINK) {
		char buf[4096];
		ssize_t n = readlinkat(dfd, leaf, buf, sizeof buf - 1);
		if (n < 0)
			return mtm_set_errno(errno, "%s/%s", t->s->root, path);
		it->target = strndup(buf, (size_t)n);
	}
	if (kind != KIND_FILE) {
		if ((rc = xattr_read_at(dfd, leaf, &it->xattrs, &it->xattrs_len)) && rc != ENOENT) {
			free(it->target);
			it->target = NULL;
			return mtm_set_errno(rc, "%s/%s: reading extended attributes", t->s->root, path);
		}
		it->xattrs_read = 1;
	}
	it->st = st;
	it->kind = kind;
	*found = 1;
	return 0;
}

/* The parent's entries strictly under directory path (its subtree). */
static int add_parent_subtree(tctx *t, const char *path)
{
	size_t from = t->parent->n;
	int rc = index_entries_under(t->s, path, t->lin, t->parent);
	if (rc)
		return rc;
	/* what the ignore rules leave out now was left out then, as a rule; if
	 * they changed, the checkpoint scans (.metamoriignore is watched) */
	size_t keep = from;
	for (size_t i = from; i < t->parent->n; i++) {
		entry *e = &VEC_AT(t->parent, entry, i);
		if (ignore_path(t->ign, e->path, e->kind == KIND_DIR)) {
			entry_clear(e);
			continue;
		}
		VEC_AT(t->parent, entry, keep++) = *e;
	}
	t->parent->n = keep;
	return 0;
}

/* One touched path that no listed subtree covers: both sides, point
 * lookups. subtree (a namespace change there): its subtrees too, the live
 * one if it is a directory now, the parent's if it was one then. */
static int add_point(tctx *t, const char *path, int subtree)
{
	live_item it = {0};
	int have_live, have_pe, rc;
	entry pe;
	if ((rc = live_stat(t, path, &it, &have_live)))
		return rc;
	if ((rc = index_entry_at(t->s, path, t->lin, &pe, &have_pe))) {
		free(it.target);
		free(it.xattrs);
		return rc;
	}
	int kind = have_live ? it.kind : have_pe ? pe.kind : KIND_NONE;
	if (kind == KIND_NONE || ignore_path(t->ign, path, kind == KIND_DIR)) {
		free(it.target);
		free(it.xattrs);
		if (have_pe)
			entry_clear(&pe);
		return 0;
	}
	if (subtree && ((have_live && it.kind == KIND_DIR && (rc = walk_subtree(t->s, t->ign, path, t->live))) ||
	                (have_pe && pe.kind == KIND_DIR && (rc = add_parent_subtree(t, path))))) {
		free(it.target);
		free(it.xattrs);
		entry_clear(&pe);
		return rc;
	}
	if (have_live) {
		live_item *slot = vec_push(t->live);
		if (!slot || !(it.path = strdup(path))) {
			free(it.target);
			free(it.xattrs);
			if (have_pe)
				entry_clear(&pe);
			return mtm_set_error(ENOMEM, "checkpoint");
		}
		*slot = it;
	}
	if (have_pe) {
		entry *slot = vec_push(t->parent);
		if (!slot) {
			entry_clear(&pe);
			return mtm_set_error(ENOMEM, "checkpoint");
		}
		*slot = pe;
	}
	return 0;
}

static int put_point(tctx *t, const char *path)
{
	return pathmap_get(&t->points, path) || !pathmap_put(&t->points, path, (void *)1) ? 0
	       : mtm_set_error(ENOMEM, "checkpoint");
}

/* The stat cache row the parent's version left for path: its inode. */
static int sc_inode(tctx *t, const char *path, int64_t ver, int64_t *dev, int64_t *ino, int *found)
{
	*found = 0;
	int rc;
	if (!t->q_sc && (rc = sqlite3_prepare_v2(t->s->db, "SELECT ver, dev, ino FROM statcache WHERE path=?", -1, &t->q_sc,
	                                         NULL)) != SQLITE_OK)
		return db_error(t->s, rc, "index");
	sqlite3_reset(t->q_sc);
	sqlite3_bind_text(t->q_sc, 1, path, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(t->q_sc);
	if (rc == SQLITE_ROW && sqlite3_column_int64(t->q_sc, 0) == ver) {
		*dev = sqlite3_column_int64(t->q_sc, 1);
		*ino = sqlite3_column_int64(t->q_sc, 2);
		*found = 1;
	}
	sqlite3_reset(t->q_sc);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(t->s, rc, "index");
}

/* Copies bytes [off, off + len) of fd to the same offset of mfd. */
static int copy_range(int mfd, int fd, int64_t off, int64_t len)
{
	static __thread unsigned char *buf;
	while (len > 0) {
		if (lseek(mfd, off, SEEK_SET) < 0)
			return errno;
		off_t in = off;
		ssize_t n = sendfile(mfd, fd, &in, (size_t)(len < (1 << 30) ? len : (1 << 30)));
		if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
			/* no sendfile between these two: by hand */
			if (!buf && !(buf = malloc(1 << 20)))
				return ENOMEM;
			size_t want = (size_t)(len < (1 << 20) ? len : (1 << 20)), got;
			int rc = io_pread(fd, buf, want, off, &got);
			if (rc)
				return rc;
			if (got && pwrite(mfd, buf, got, off) != (ssize_t)got)
				return errno ? errno : EIO;
			n = (ssize_t)got;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return 0; /* shorter than its stat said: what follows reads as zeros */
		off += n;
		len -= n;
	}
	return 0;
}

static int cmp_run(const void *a, const void *b)
{
	const blk_run *x = a, *y = b;
	return x->blkno < y->blkno ? -1 : x->blkno > y->blkno;
}

static int add_run(vec *runs, int64_t from, int64_t to /* blocks, exclusive */)
{
	if (to <= from)
		return 0;
	blk_run *r = vec_push(runs);
	if (!r)
		return ENOMEM;
	r->blkno = from;
	r->count = to - from;
	return 0;
}

/* The blocks a file's records may have changed, against its parent size. */
static int dirty_runs(const file_change *fc, int64_t parent_size, int64_t size, vec *runs)
{
	const int64_t B = MTM_BLOCK;
	int64_t nblk = (size + B - 1) / B;
	if (fc) {
		for (size_t i = 0; i < fc->ranges.n; i++) {
			const byte_range *r = &VEC_AT(&fc->ranges, byte_range, i);
			int64_t a = r->off / B, b = (r->off + r->len + B - 1) / B;
			if (b > nblk)
				b = nblk;
			if (add_run(runs, a, b))
				return ENOMEM;
		}
		/* a truncation zeroes from its point on, whatever grows back */
		if (fc->trunc_min >= 0 && add_run(runs, fc->trunc_min / B, nblk))
			return ENOMEM;
	}
	/* growth past the parent's end: holes there must read as zeros, not as
	 * the blocks an older, longer version left in the map */
	if (size > parent_size && add_run(runs, parent_size / B, nblk))
		return ENOMEM;
	if (runs->n < 2)
		return 0;
	qsort(runs->v, runs->n, sizeof(blk_run), cmp_run);
	size_t k = 0;
	for (size_t i = 1; i < runs->n; i++) {
		blk_run *last = &VEC_AT(runs, blk_run, k), *r = &VEC_AT(runs, blk_run, i);
		if (r->blkno <= last->blkno + last->count) {
			int64_t end = r->blkno + r->count;
			if (end > last->blkno + last->count)
				last->count = end - last->blkno;
		} else {
			VEC_AT(runs, blk_run, ++k) = *r;
		}
	}
	runs->n = k + 1;
	return 0;
}

/* Before the barrier: a last pass over the records since the session's
 * passes (precopy.c), whose copies this checkpoint takes over. Best effort:
 * after an error, what the pre-copy holds is still right. */
static int precopy_phase(tctx *t)
{
	uint64_t read = 0; /* its own budget, as much as the barrier may copy */
	int rc = precopy_pass(t->ss, t->cs, &t->pre, &t->ss->bg_held, &read, t->budget / 2);
	return rc == ENOMEM ? mtm_set_error(ENOMEM, "checkpoint") : 0;
}

/* The pre-copied block b of path, or NULL if it must be read again. */
static const unsigned char *precopied(tctx *t, const char *path, int64_t dev, int64_t ino, int64_t b)
{
	const file_change *post = pathmap_get(&t->post.files, path);
	if (post) {
		/* (many writes since the peek: read it all again rather than search) */
		if (post->whole || post->ranges.n > 64 || (post->trunc_min >= 0 && b >= post->trunc_min / MTM_BLOCK))
			return NULL;
		for (size_t k = 0; k < post->ranges.n; k++) {
			const byte_range *r = &VEC_AT(&post->ranges, byte_range, k);
			if (r->off < (b + 1) * MTM_BLOCK && r->off + r->len > b * MTM_BLOCK)
				return NULL;
		}
	}
	return precopy_get(&t->pre, path, dev, ino, b);
}

/* Copies a live file's content (whole, or the blocks in cap->runs) out:
 * into memory (read with the other scattered blocks in read_deferred), or,
 * for a big whole file, into a memfd; and takes the stat of what was copied. */
static int capture_file(tctx *t, live_item *it, capture *cap)
{
	int fd, rc = open_live(t, it->path, &fd);
	if (rc == ELOOP || rc == ENOENT || rc == ENOTDIR || rc == EXDEV)
		return need_scan(t, "a file changed under an untraced process");
	if (rc)
		return mtm_set_errno(rc, "%s/%s", t->s->root, it->path);
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_ino != it->st.st_ino || st.st_dev != it->st.st_dev) {
		close(fd);
		return need_scan(t, "a file changed under an untraced process");
	}
	it->st = st;
	const int64_t B = MTM_BLOCK, size = (int64_t)st.st_size;
	uint64_t want = 0;
	if (cap->whole)
		want = (uint64_t)size;
	else
		for (size_t i = 0; i < cap->runs.n; i++)
			want += (uint64_t)VEC_AT(&cap->runs, blk_run, i).count * B;
	if (want > t->budget) {
		/* too much to hold in memory: read the file itself, after the copy
		 * phase but before the barrier opens */
		cap->fd = fd;
		t->hold = 1;
		return 0;
	}
	t->budget -= want;
	/* a small file copied whole: read now, like scattered blocks (a memfd
	 * costs more than the read) */
	int small = cap->whole && size <= (1 << 20);
	if (small && add_run(&cap->runs, 0, (size + B - 1) / B)) {
		close(fd);
		return mtm_set_error(ENOMEM, "checkpoint");
	}
	if (!cap->whole || small) {
		deferred_copy *d = vec_push(&t->deferred);
		unsigned char *p = d ? malloc(want ? want : 1) : NULL;
		if (!p) {
			if (d)
				t->deferred.n--;
			close(fd);
			return mtm_set_error(ENOMEM, "checkpoint");
		}
		d->cap = cap;
		d->data = p;
		d->size = size;
		d->src = fd; /* read by read_deferred, with the others */
		d->path = it->path;
		d->dev = (int64_t)st.st_dev;
		d->ino = (int64_t)st.st_ino;
		d->src_precopy = !cap->whole;
		return 0;
	}
	cap->fd = memfd_create("metamori-capture", MFD_CLOEXEC);
	if (cap->fd < 0) {
		rc = errno;
		close(fd);
		return mtm_set_errno(rc, "memfd_create");
	}
	if (ftruncate(cap->fd, size))
		rc = errno;
	else
		rc = copy_range(cap->fd, fd, 0, size);
	close(fd);
	return rc ? mtm_set_errno(rc, "%s/%s: capture", t->s->root, it->path) : 0;
}

static int add_pending(tctx *t, const char *path, const struct stat *st, uint64_t *h, const capture *cap)
{
	pending_hashes *ph = calloc(1, sizeof *ph);
	if (!ph || pathmap_put(&t->pending, path, ph)) {
		free(ph);
		free(h);
		return mtm_set_error(ENOMEM, "checkpoint");
	}
	ph->bh.dev = (int64_t)st->st_dev;
	ph->bh.ino = (int64_t)st->st_ino;
	ph->bh.n = ((int64_t)st->st_size + MTM_BLOCK - 1) / MTM_BLOCK;
	ph->bh.h = h;
	ph->cap = cap;
	ph->size = (int64_t)st->st_size;
	return 0;
}

/* A file to compare whole (writes the interposer cannot see) that was
 * compared whole at the parent too: its blocks are hashed here and only
 * those that differ from the parent's are copied out. */
static int capture_hashed(tctx *t, live_item *it, capture *cap)
{
	const block_hashes *old = pathmap_get(&t->ss->hashes, it->path);
	int valid = old && old->at == t->parent_id && old->dev == (int64_t)it->st.st_dev &&
	            old->ino == (int64_t)it->st.st_ino && (uint64_t)it->st.st_size <= t->budget;
	if (!valid) {
		cap->whole = 1;
		int rc = capture_file(t, it, cap);
		/* hashed after the barrier, from the copy (not from a file read in place) */
		return rc || t->hold ? rc : add_pending(t, it->path, &it->st, NULL, cap);
	}
	int fd, rc = open_live(t, it->path, &fd);
	if (rc == ELOOP || rc == ENOENT || rc == ENOTDIR || rc == EXDEV)
		return need_scan(t, "a file changed under an untraced process");
	if (rc)
		return mtm_set_errno(rc, "%s/%s", t->s->root, it->path);
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_ino != it->st.st_ino || st.st_dev != it->st.st_dev) {
		close(fd);
		return need_scan(t, "a file changed under an untraced process");
	}
	it->st = st;
	const int64_t B = MTM_BLOCK, size = (int64_t)st.st_size, n = (size + B - 1) / B;
	uint64_t *h = malloc((size_t)(n ? n : 1) * sizeof *h);
	unsigned char *buf = malloc(1 << 20), *dat = NULL;
	size_t dlen = 0, dcap = 0;
	if (!h || !buf) {
		rc = ENOMEM;
		goto out;
	}
	for (int64_t off = 0; off < size && !rc;) {
		size_t want = (size_t)(size - off < (1 << 20) ? size - off : (1 << 20)), got;
		if ((rc = io_pread(fd, buf, want, off, &got)))
			break;
		if (got < want)
			memset(buf + got, 0, want - got); /* shrank meanwhile: an untraced writer */
		for (size_t o = 0; o < want && !rc; o += MTM_BLOCK) {
			int64_t b = (off + (int64_t)o) / B;
			size_t len = want - o < MTM_BLOCK ? want - o : MTM_BLOCK;
			h[b] = block_hash(buf + o, len);
			if (b < old->n && old->h[b] == h[b])
				continue;
			blk_run *last = cap->runs.n ? &VEC_AT(&cap->runs, blk_run, cap->runs.n - 1) : NULL;
			if (last && last->blkno + last->count == b)
				last->count++;
			else if (add_run(&cap->runs, b, b + 1))
				rc = ENOMEM;
			if (!rc && dlen + len > dcap) {
				size_t nc = dcap ? dcap * 2 : 64 * MTM_BLOCK;
				unsigned char *nd = realloc(dat, nc);
				if (!nd)
					rc = ENOMEM;
				else {
					dat = nd;
					dcap = nc;
				}
			}
			if (!rc) {
				memcpy(dat + dlen, buf + o, len); /* what ckpt_record reads */
				dlen += len;
			}
			t->budget = t->budget > len ? t->budget - len : 0;
		}
		off += (int64_t)want;
	}
out:
	free(buf);
	close(fd);
	deferred_copy *d = rc ? NULL : vec_push(&t->deferred);
	if (!rc && !d)
		rc = ENOMEM;
	if (rc) {
		free(h);
		free(dat);
		return mtm_set_errno(rc, "%s/%s: capture", t->s->root, it->path);
	}
	d->cap = cap;
	d->data = dat;
	d->size = size;
	d->src = -1;
	d->path = it->path;
	cap->whole = 0;
	cap->vouched = 1; /* every block was read and compared */
	if (t->ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: %s compared by hashes: %zu runs", it->path, cap->runs.n);
	return add_pending(t, it->path, &st, h, NULL);
}

/* After the commit: the hashes of the files compared whole, at checkpoint id. */
static void keep_hashes(tctx *t, mtm_id id)
{
	pathmap next = {0};
	for (size_t i = 0; i < t->pending.cap; i++) {
		pending_hashes *ph = t->pending.slots[i].val;
		if (!t->pending.slots[i].key || !ph)
			continue;
		if (!ph->bh.h) { /* from the whole copy */
			int64_t n = ph->bh.n;
			unsigned char *buf = malloc(1 << 20);
			uint64_t *h = malloc((size_t)(n ? n : 1) * sizeof *h);
			int ok = buf && h;
			for (int64_t off = 0; ok && off < ph->size;) {
				size_t want = (size_t)(ph->size - off < (1 << 20) ? ph->size - off : (1 << 20)), got;
				if (!ph->cap || src_pread((file_src){-1, ph->cap}, buf, want, off, &got) || got != want) {
					ok = 0;
					break;
				}
				for (size_t o = 0; o < want; o += MTM_BLOCK)
					h[(off + (int64_t)o) / MTM_BLOCK] = block_hash(buf + o, want - o < MTM_BLOCK ? want - o : MTM_BLOCK);
				off += (int64_t)want;
			}
			free(buf);
			if (!ok) {
				free(h);
				continue;
			}
			ph->bh.h = h;
		}
		block_hashes *bh = malloc(sizeof *bh);
		if (!bh)
			continue;
		*bh = ph->bh;
		bh->at = id;
		ph->bh.h = NULL;
		if (pathmap_put(&next, t->pending.slots[i].key, bh))
			block_hashes_free(bh);
	}
	pathmap_free(&t->ss->hashes, block_hashes_free);
	t->ss->hashes = next;
}


/* After the barrier: each capture read during it points at its blocks, in
 * the pre-copy or in the bytes read in the barrier (both live until the
 * checkpoint is recorded and its hashes kept). */
static int materialize(tctx *t)
{
	for (size_t i = 0; i < t->deferred.n; i++) {
		deferred_copy *d = &VEC_AT(&t->deferred, deferred_copy, i);
		capture *cap = d->cap;
		size_t nblk = 0;
		for (size_t k = 0; k < cap->runs.n; k++)
			nblk += (size_t)VEC_AT(&cap->runs, blk_run, k).count;
		cap->blk = malloc((nblk ? nblk : 1) * sizeof *cap->blk);
		cap->first = malloc((cap->runs.n ? cap->runs.n : 1) * sizeof *cap->first);
		cap->hashed = calloc(nblk ? nblk : 1, 1);
		if (!cap->blk || !cap->first || !cap->hashed)
			return mtm_set_error(ENOMEM, "capture");
		cap->size = d->size;
		cap->fd = -1;
		const unsigned char *p = d->data;
		size_t n = 0;
		for (size_t k = 0; k < cap->runs.n; k++) {
			const blk_run *r = &VEC_AT(&cap->runs, blk_run, k);
			cap->first[k] = n;
			/* the same walk as read_deferred's: a block it took from the
			 * pre-copy has an untouched slot in data */
			for (int64_t blk = r->blkno, end = r->blkno + r->count; blk < end && blk * MTM_BLOCK < d->size; blk++) {
				const unsigned char *pre = d->src_precopy ? precopied(t, d->path, d->dev, d->ino, blk) : NULL;
				cap->hashed[n] = pre != NULL;
				cap->blk[n++] = pre ? pre : p;
				p += d->size - blk * MTM_BLOCK < MTM_BLOCK ? d->size - blk * MTM_BLOCK : MTM_BLOCK;
			}
		}
	}
	return 0;
}

static void deferred_free(tctx *t)
{
	for (size_t i = 0; i < t->deferred.n; i++) {
		deferred_copy *d = &VEC_AT(&t->deferred, deferred_copy, i);
		free(d->data);
		if (d->src >= 0)
			close(d->src);
	}
	vec_free(&t->deferred);
}

/* The reads of the barrier: one pread per run, from several threads on a
 * machine with CPUs to spare (the program is held meanwhile), since a system
 * call per scattered block is what the pause is made of. */
typedef struct { int fd; int64_t off; size_t len; unsigned char *dst; } read_job;
typedef struct {
	const vec *jobs;
	size_t next; /* atomic */
	int err;     /* atomic: the first error */
} read_pool;

static void *read_worker(void *arg)
{
	read_pool *p = arg;
	for (;;) {
		size_t i = __atomic_fetch_add(&p->next, 16, __ATOMIC_RELAXED);
		if (i >= p->jobs->n || __atomic_load_n(&p->err, __ATOMIC_RELAXED))
			return NULL;
		for (size_t k = i; k < i + 16 && k < p->jobs->n; k++) {
			const read_job *j = &VEC_AT(p->jobs, read_job, k);
			size_t got;
			int rc = io_pread(j->fd, j->dst, j->len, j->off, &got);
			if (rc) {
				int zero = 0;
				__atomic_compare_exchange_n(&p->err, &zero, rc, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
				return NULL;
			}
			if (got < j->len) /* cut short meanwhile (outside the session): zeros */
				memset(j->dst + got, 0, j->len - got);
		}
	}
}

static int read_deferred(tctx *t)
{
	vec jobs = VEC_INIT(read_job);
	int rc = 0;
	for (size_t i = 0; i < t->deferred.n && !rc; i++) {
		deferred_copy *d = &VEC_AT(&t->deferred, deferred_copy, i);
		if (d->src < 0)
			continue;
		unsigned char *p = d->data;
		for (size_t k = 0; k < d->cap->runs.n && !rc; k++) {
			const blk_run *r = &VEC_AT(&d->cap->runs, blk_run, k);
			/* block by block: pre-copied ones are taken from memory, the
			 * others read in maximal pieces */
			for (int64_t blk = r->blkno, end = r->blkno + r->count; blk < end && blk * MTM_BLOCK < d->size;) {
				const unsigned char *pre = d->src_precopy ? precopied(t, d->path, d->dev, d->ino, blk) : NULL;
				if (pre) {
					/* its slot in data stays untouched (never faulted in):
					 * materialize writes the pre-copy itself */
					size_t len = (size_t)(d->size - blk * MTM_BLOCK < MTM_BLOCK ? d->size - blk * MTM_BLOCK : MTM_BLOCK);
					p += len;
					blk++;
					t->precopied_blocks++;
					continue;
				}
				int64_t stop = blk + 1;
				while (stop < end && stop * MTM_BLOCK < d->size &&
				       (!d->src_precopy || !precopied(t, d->path, d->dev, d->ino, stop)))
					stop++;
				int64_t a = blk * MTM_BLOCK, b = stop * MTM_BLOCK < d->size ? stop * MTM_BLOCK : d->size;
				read_job *j = vec_push(&jobs);
				if (!j) {
					rc = mtm_set_error(ENOMEM, "checkpoint");
					break;
				}
				*j = (read_job){d->src, a, (size_t)(b - a), p};
				p += b - a;
				blk = stop;
			}
		}
	}
	read_pool pool = {&jobs, 0, 0};
	if (!rc && jobs.n) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		/* with 2 CPUs, measured: no gain (the other is rarely idle) */
		int nthreads = jobs.n < 256 || ncpu < 4 ? 0 : ncpu > 4 ? 3 : (int)ncpu - 1;
		const char *knob = secure_getenv("METAMORI_CAPTURE_THREADS"); /* tests */
		if (knob && *knob)
			nthreads = atoi(knob) < 0 ? 0 : atoi(knob) > 3 ? 3 : atoi(knob);
		pthread_t th[3];
		int started = 0;
		for (; started < nthreads; started++)
			if (pthread_create(&th[started], NULL, read_worker, &pool))
				break;
		read_worker(&pool);
		for (int i = 0; i < started; i++)
			pthread_join(th[i], NULL);
		if (pool.err)
			rc = mtm_set_errno(pool.err, "capture");
	}
	vec_free(&jobs);
	for (size_t i = 0; i < t->deferred.n; i++) {
		deferred_copy *d = &VEC_AT(&t->deferred, deferred_copy, i);
		if (d->src >= 0)
			close(d->src);
		d->src = -1;
	}
	return rc;
}

/* Inside the barrier: the touched paths, both sides, and the captures. */
static int collect_tracked(tctx *t)
{
	change_set *cs = t->cs;
	int rc = 0;
	if (pathmap_get(&cs->files, ".metamoriignore") || pathmap_get(&cs->ns, ".metamoriignore") ||
	    pathmap_get(&cs->meta, ".metamoriignore"))
		return need_scan(t, ".metamoriignore changed");
	/* namespace changes: whole subtrees, unless an ancestor's covers them */
	for (size_t i = 0; i < cs->ns.cap; i++) {
		const char *p = cs->ns.slots[i].key;
		if (p && pathmap_put(&t->nsdirs, p, (void *)1))
			return mtm_set_error(ENOMEM, "checkpoint");
	}
	for (size_t i = 0; i < cs->ns.cap; i++) {
		const char *p = cs->ns.slots[i].key;
		if (!p || under(&t->nsdirs, p))
			continue;
		if ((rc = add_point(t, p, 1)))
			return rc;
		/* the parent directory: an entry came or went (its mtime changed) */
		const char *slash = strrchr(p, '/');
		if (slash) {
			char *dir = strndup(p, (size_t)(slash - p));
			rc = dir ? put_point(t, dir) : mtm_set_error(ENOMEM, "checkpoint");
			free(dir);
			if (rc)
				return rc;
		}
	}
	pathmap *sets[] = {&cs->files, &cs->meta};
	for (size_t k = 0; k < 2; k++)
		for (size_t i = 0; i < sets[k]->cap; i++)
			if (sets[k]->slots[i].key && (rc = put_point(t, sets[k]->slots[i].key)))
				return rc;
	for (size_t i = 0; i < t->points.cap; i++) {
		const char *p = t->points.slots[i].key;
		/* namespace paths were done above (or are inside a listed subtree) */
		if (p && !pathmap_get(&t->nsdirs, p) && !under(&t->nsdirs, p) && (rc = add_point(t, p, 0)))
			return rc;
	}
	/* sorted by path on both sides, as ckpt_record merges them */
	if (t->live->n > 1)
		qsort(t->live->v, t->live->n, sizeof(live_item), cmp_live);
	if (t->parent->n > 1)
		qsort(t->parent->v, t->parent->n, sizeof(entry), cmp_entry);
	for (size_t i = 1; i < t->live->n; i++)
		if (!strcmp(VEC_AT(t->live, live_item, i - 1).path, VEC_AT(t->live, live_item, i).path))
			return mtm_set_error(MTM_EINVAL, "checkpoint: '%s' listed twice", VEC_AT(t->live, live_item, i).path);
	/* a new entry's directory must be in the tree: if the records missed its
	 * creation, they cannot be trusted, and the checkpoint scans */
	for (size_t i = 0; i < t->live->n; i++) {
		const char *path = VEC_AT(t->live, live_item, i).path, *slash = strrchr(path, '/');
		if (!slash || tree_find(t->parent, path))
			continue;
		char *dir = strndup(path, (size_t)(slash - path));
		if (!dir)
			return mtm_set_error(ENOMEM, "checkpoint");
		const live_item *d = live_find(t->live, dir);
		int ok = d && d->kind == KIND_DIR, found = 0;
		entry de;
		if (!d && !(rc = index_entry_at(t->s, dir, t->lin, &de, &found)) && found) {
			ok = de.kind == KIND_DIR;
			entry_clear(&de);
		}
		free(dir);
		if (rc)
			return rc;
		if (!ok)
			return need_scan(t, "a new entry's directory was not recorded");
	}
	/* a link group is recorded from all of its names (ckpt_scan): a touched
	 * name that was a hard link, or a file that had some, needs a scan */
	for (size_t i = 0; i < t->parent->n && !rc; i++) {
		const entry *pe = &VEC_AT(t->parent, entry, i);
		int linked = pe->kind == KIND_LINK;
		if (pe->kind == KIND_FILE && (rc = has_links(t->s, pe->path, &linked)))
			break;
		if (linked)
			rc = need_scan(t, "a touched file is or was hard-linked");
	}
	for (size_t i = 0; i < t->live->n && !rc; i++) {
		live_item *it = &VEC_AT(t->live, live_item, i);
		if (it->kind != KIND_FILE)
			continue;
		if (it->st.st_nlink > 1) {
			rc = need_scan(t, "a touched file has other hard links");
			break;
		}
		entry *pe = tree_find(t->parent, it->path);
		const file_change *fc = pathmap_get(&cs->files, it->path);
		int same = 0, found;
		int64_t dev, ino;
		/* the file the parent recorded here, written only where the records
		 * say? Not if an entry was created, removed or renamed at its path
		 * (or above): an inode freed there may have been reused by a file
		 * written under another name. Then it is read whole; a rename keeps
		 * its history all the same (ckpt_record matches it by inode). */
		int ns = pathmap_get(&t->nsdirs, it->path) || under(&t->nsdirs, it->path);
		if (pe && pe->kind == KIND_FILE && !ns) {
			if ((rc = sc_inode(t, it->path, pe->ver, &dev, &ino, &found)))
				break;
			same = found && dev == (int64_t)it->st.st_dev && ino == (int64_t)it->st.st_ino;
		}
		capture *cap = calloc(1, sizeof *cap);
		if (!cap) {
			rc = mtm_set_error(ENOMEM, "checkpoint");
			break;
		}
		cap->fd = -1;
		cap->runs = (vec)VEC_INIT(blk_run);
		it->cap = cap;
		if (same && fc && fc->whole) {
			if ((rc = capture_hashed(t, it, cap)))
				break;
			continue;
		}
		cap->whole = !same || (fc && fc->whole);
		/* the blocks the logs name are all that changed only if the watcher
		 * saw no other writer (it marked the file whole otherwise) */
		cap->vouched = t->ss->watch != NULL;
		if (!cap->whole && dirty_runs(fc, pe ? pe->size : 0, (int64_t)it->st.st_size, &cap->runs)) {
			rc = mtm_set_error(ENOMEM, "checkpoint");
			break;
		}
		if (cap->whole || cap->runs.n || (int64_t)it->st.st_size != pe->size)
			rc = capture_file(t, it, cap);
	}
	return rc;
}

/* Inside the barrier, when the logs are not enough: the whole tree. Files
 * the stat cache cannot vouch for are copied out, unless that is more than
 * the budget: then t->hold says to record before opening the barrier. */
static int collect_scan(tctx *t, mtm_id parent)
{
	pathmap sc = {0};
	int rc;
	if ((rc = walk_tree(t->s, t->ign, t->live)) || (rc = index_load_tree(t->s, parent, t->parent)) ||
	    (rc = statcache_load(t->s, &sc)))
		goto done;
	uint64_t total = 0;
	for (size_t i = 0; i < t->live->n; i++) {
		live_item *it = &VEC_AT(t->live, live_item, i);
		entry *pe = tree_find(t->parent, it->path);
		if (it->kind == KIND_FILE && !(pe && pe->kind == KIND_FILE && statcache_fresh(pathmap_get(&sc, it->path), &it->st, pe->ver)))
			total += (uint64_t)it->st.st_size;
	}
	if (total > t->budget) {
		t->hold = 1; /* read in place while the barrier holds */
		goto done;
	}
	for (size_t i = 0; i < t->live->n && !rc; i++) {
		live_item *it = &VEC_AT(t->live, live_item, i);
		entry *pe = tree_find(t->parent, it->path);
		if (it->kind != KIND_FILE || (pe && pe->kind == KIND_FILE && statcache_fresh(pathmap_get(&sc, it->path), &it->st, pe->ver)))
			continue;
		capture *cap = calloc(1, sizeof *cap);
		if (!cap) {
			rc = mtm_set_error(ENOMEM, "checkpoint");
			break;
		}
		cap->fd = -1;
		cap->whole = 1;
		cap->runs = (vec)VEC_INIT(blk_run);
		it->cap = cap;
		rc = capture_file(t, it, cap);
		if (rc == NEED_SCAN) { /* changed by an untraced process: read it as it comes */
			capture_free(cap);
			it->cap = NULL;
			rc = 0;
		}
	}
done:
	pathmap_free(&sc, free);
	return rc;
}

static int same_excludes(const mtm_session *ss, const mtm_checkpoint_opts *opts)
{
	if (!opts || !opts->n_excludes)
		return 1;
	if (opts->n_excludes != ss->n_excludes)
		return 0;
	for (size_t i = 0; i < ss->n_excludes; i++)
		if (strcmp(opts->excludes[i], ss->excludes[i]))
			return 0;
	return 1;
}

static int tracked_checkpoint(mtm_session *ss, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out,
                              int only_if_changed)
{
	if (out)
		memset(out, 0, sizeof *out);
	if (!same_excludes(ss, opts))
		return mtm_set_error(MTM_EINVAL, "checkpoint: --exclude cannot change while 'metamori run' tracks the tree "
		                                 "(give the patterns to 'metamori run')");
	mtm_store *s = ss->s;
	mtm_checkpoint_opts o = MTM_CHECKPOINT_OPTS_INIT;
	o.message = opts ? opts->message : NULL;
	o.excludes = ss->excludes;
	o.n_excludes = ss->n_excludes;
	if (opts) {
		o.progress = opts->progress;
		o.progress_arg = opts->progress_arg;
	}
	ckpt_run *r;
	int64_t tb = now_ns(); /* phases, for METAMORI_DEBUG_SESSION */
	ckpt_hooks hooks = session_ckpt_hooks(ss);
	int rc = ckpt_begin(s, &o, &hooks, &r);
	if (rc) {
		ckpt_end(r);
		prewrite_reset(ss); /* (what was written ahead may have been cut by now) */
		return rc;
	}
	vec live = VEC_INIT(live_item), parent = VEC_INIT(entry);
	tctx t = {.ss = ss, .s = s, .lin = ckpt_lineage(r), .ign = ckpt_ignore(r), .live = &live, .parent = &parent,
	          .budget = capture_budget(), .parent_id = ckpt_parent(r), .deferred = VEC_INIT(deferred_copy)};
	/* what the session's passes peeked and copied while the program ran is
	 * this checkpoint's now (the logs' peek offsets match it) */
	change_set cs = ss->bg_cs;
	t.pre = ss->bg_pre;
	memset(&ss->bg_cs, 0, sizeof ss->bg_cs);
	memset(&ss->bg_pre, 0, sizeof ss->bg_pre);
	int scan = 0, opened = 0;
	int64_t t0 = now_ns(), t1 = 0;
	t.cs = &cs;
	ss->gate_ns = 0;
	rc = 0;
	if (!ss->force_scan && !ss->always_scan && !secure_getenv("METAMORI_NO_PRECOPY"))
		rc = precopy_phase(&t);
	int64_t tpc = now_ns();
	if (!rc)
		rc = barrier_close(ss, &cs, &t.post);
	const char *hold_ms = secure_getenv("METAMORI_TEST_HOLD_GATE_MS"); /* tests: die with the gate closed */
	if (!rc && hold_ms && *hold_ms)
		usleep((useconds_t)atoi(hold_ms) * 1000);
	int64_t tl = now_ns(), tpre = t0;
	if (ss->gate_ns)
		t0 = ss->gate_ns; /* dead processes' logs were read before: not part of the pause */
	if (!rc) {
		scan = cs.scan || ss->force_scan || ss->always_scan;
		if (!cs.scan && scan)
			cs.scan_why = ss->always_scan ? "the program cannot be tracked" : ss->force_why;
		if (!scan) {
			rc = collect_tracked(&t);
			if (rc == NEED_SCAN) {
				scan = 1;
				cs.scan_why = t.why;
				t.hold = 0;
				t.budget = capture_budget();
				pathmap_free(&t.pending, pending_free);
				deferred_free(&t);
				t.deferred = (vec)VEC_INIT(deferred_copy);
				live_free(&live);
				entries_free(&parent);
				live = (vec)VEC_INIT(live_item);
				parent = (vec)VEC_INIT(entry);
			}
		}
		if (scan)
			rc = collect_scan(&t, ckpt_parent(r));
		if (!rc)
			rc = read_deferred(&t);
	}
	if (!t.hold || rc) {
		barrier_open(ss);
		t1 = now_ns();
		opened = 1;
	}
	if (!rc)
		rc = materialize(&t);
	if (!rc)
		rc = ckpt_record(r, &parent, &live, !scan);
	if (!opened) {
		barrier_open(ss);
		t1 = now_ns();
	}
	int64_t tr = now_ns(), wait_rec = ckpt_pack(r)->waited_ns;
	mtm_checkpoint_info ci = {0};
	const char *cs_why = cs.scan_why;
	/* nothing differs: ckpt_end rolls the transaction back (what the
	 * interval's logs said is consumed all the same: it changed nothing) */
	int skipped = !rc && only_if_changed && ckpt_unchanged(r);
	if (!rc && !skipped)
		rc = ckpt_commit(r, &ci);
	char ahead[96];
	prewrite_report(ss, ahead, sizeof ahead);
	if (ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: %s%s%s: begin %.2f ms, logs %.2f ms, collect %.2f ms, record %.2f ms, "
		        "commit %.2f ms (waits for the pack's thread: %.2f ms in the record, %.2f ms in the commit; the "
		        "thread's writes %.2f ms, fsyncs %.2f ms); %zu live, %zu parent entries; %.2f ms before the gate "
		        "(pre-copy %.2f ms, %llu blocks used); %s", scan ? "scanned: " : "tracked",
		        scan ? (cs.scan_why ? cs.scan_why : "?") : "", t.hold ? " (read in place)" : "",
		        (double)(tpre - tb) / 1e6, (double)(tl - t0) / 1e6, (double)(t1 - tl) / 1e6, (double)(tr - t1) / 1e6,
		        (double)(now_ns() - tr) / 1e6, (double)wait_rec / 1e6, (double)(ckpt_pack(r)->waited_ns - wait_rec) / 1e6,
		        (double)ckpt_pack(r)->write_ns / 1e6, (double)ckpt_pack(r)->fsync_ns / 1e6, live.n, parent.n,
		        (double)(t0 - tpre) / 1e6, (double)(tpc - tpre) / 1e6,
		        (unsigned long long)t.precopied_blocks, ahead);
	if (!rc) /* (skipped: the files' hashes are the parent's) */
		keep_hashes(&t, skipped ? t.parent_id : ci.id);
	else
		pathmap_free(&ss->hashes, block_hashes_free);
	pathmap_free(&t.pending, pending_free);
	sqlite3_finalize(t.q_sc);
	ckpt_end(r);
	prewrite_reset(ss); /* (after the pack writer: what it adopted is committed or rolled back) */
	live_free(&live);
	deferred_free(&t); /* the captures' bytes (after live_free: nothing points at them now) */
	entries_free(&parent);
	pathmap_free(&t.nsdirs, NULL);
	pathmap_free(&t.points, NULL);
	dirfds_close(&t);
	pathmap_free(&t.pre, precopy_free);
	ss->bg_held = ss->bg_read = ss->bg_limit = 0; /* a new interval */
	change_set_free(&t.post);
	change_set_free(&cs);
	/* the logs were reset: if this checkpoint failed, only a scan knows
	 * what they said */
	ss->force_scan = rc != 0;
	for (size_t i = 0; rc && i < ss->logs.n; i++)
		VEC_AT(&ss->logs, log_slot, i).peek_tail = 0; /* the next checkpoint scans: start afresh */
	ss->force_why = "the previous checkpoint failed";
	session_reap_logs(ss);
	if (rc)
		return rc;
	ci.tracked = !scan;
	ci.pause_ns = (uint64_t)(t1 - t0);
	if (skipped)
		ci.parent = t.parent_id;
	ss->scan_why = scan ? cs_why : NULL;
	if (out)
		*out = ci;
	else
		free(ci.message);
	return 0;
}

int session_tracked_checkpoint(mtm_session *ss, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out)
{
	return tracked_checkpoint(ss, opts, out, 0);
}

int session_tracked_checkpoint_if_changed(mtm_session *ss, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out)
{
	return tracked_checkpoint(ss, opts, out, 1);
}

const char *session_describe(char *buf, size_t len, const mtm_checkpoint_info *ci, const char *why)
{
	char a[32], b[32];
	snprintf(buf, len, "checkpoint %lld (%s%s%s, paused %.1f ms): %llu added, %llu changed, %llu removed; %s changed, %s stored",
	         (long long)ci->id, ci->tracked ? "tracked" : "scanned", !ci->tracked && why ? ": " : "",
	         !ci->tracked && why ? why : "", (double)ci->pause_ns / 1e6,
	         (unsigned long long)ci->files_added, (unsigned long long)ci->files_changed,
	         (unsigned long long)ci->files_removed, human_size(a, sizeof a, ci->bytes_changed),
	         human_size(b, sizeof b, ci->bytes_stored));
	return buf;
}

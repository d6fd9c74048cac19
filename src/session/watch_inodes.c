/*
 * watch_inodes.c — fanotify: the tree's inodes, loaded when a file changed
 * outside the tree may be one of the tree's (linked_into_tree), and the
 * queue read on into a stash meanwhile (watch_read_on).
 */
#include "session/watch_parts.h"

/* An inode as load_inodes keeps it: 8 bytes, not its "dev:ino" text in a
 * hash map (~70 bytes a file: at 1,000,000 files, more than the session's
 * whole budget of 100 MiB). Two inodes may share a key (one chance in
 * 2^64 per pair): then a file outside the tree is taken for the tree's,
 * the safe side (the checkpoint compares it, or scans). */
static uint64_t inode_key(int64_t dev, int64_t ino)
{
	const int64_t k[2] = {dev, ino};
	return XXH3_64bits(k, sizeof k);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The loaded inodes are sorted by runs of INODE_RUN keys (each sorted in a
 * few ms as it fills, so that the load never stops reading the queue for
 * long: a sort of 1,000,000 keys takes ~100 ms), and a lookup searches each
 * run (16 at 1,000,000 files: only a file changed outside the tree is looked
 * up). */
#define INODE_RUN 65536
/* While the inodes load, the queue is read whenever LOAD_READ_NS passed,
 * looked at every LOAD_READ_ROWS rows: on a busy file system the kernel's
 * queue (fs.fanotify.max_queued_events, 16,384) overflows in well under a
 * second, and a load takes ~0.5 s a 1,000,000 files. */
#define LOAD_READ_ROWS 16
#define LOAD_READ_NS 2000000L
/* watch_read_on_if_filling reads on past this many events queued (of
 * fs.fanotify.max_queued_events, 16,384 by default). */
#define READ_ON_QUEUED 4096
/* The events read while the inodes load are kept (raw) up to this; past it
 * they are left in the kernel's queue, which is read after the stash: the
 * order holds, and the kernel says if its queue overflows. */
#define STASH_MAX ((size_t)8 << 20)

static int in_inodes(const watcher *w, uint64_t key)
{
	for (size_t off = 0; off < w->n_inodes; off += INODE_RUN) {
		size_t n = w->n_inodes - off < INODE_RUN ? w->n_inodes - off : INODE_RUN;
		if (bsearch(&key, w->inodes + off, n, sizeof key, cmp_u64))
			return 1;
	}
	return 0;
}

/* Reads the queue on, into the stash, in the middle of an event (the inodes
 * loading for it): the events read are judged after the ones read before
 * them, in order (fan_unstash). */
static void fan_stash(watcher *w)
{
	for (;;) {
		if (w->stash_cap - w->stash_len < sizeof w->buf) {
			size_t cap = w->stash_cap ? 2 * w->stash_cap : 2 * sizeof w->buf;
			unsigned char *p = cap <= STASH_MAX ? realloc(w->stash, cap) : NULL;
			if (!p)
				return; /* left in the queue, read after the stash */
			w->stash = p;
			w->stash_cap = cap;
		}
		ssize_t n = read(w->fd, w->stash + w->stash_len, sizeof w->buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0 && errno != EAGAIN)
				w->lost = "the watcher could not be read";
			return;
		}
		for (size_t off = 0; off + sizeof(uint32_t) <= (size_t)n; w->stashed++) {
			uint32_t elen;
			memcpy(&elen, w->stash + w->stash_len + off, sizeof elen);
			if (!elen)
				break;
			off += elen;
		}
		w->stash_len += (size_t)n;
	}
}

/* While the inodes load (or a scan fallback walks, watch_read_on): the
 * queue read on if LOAD_READ_NS passed since it last was. */
static void load_read_on(watcher *w)
{
	if (elapsed_ns(&w->read_at) < LOAD_READ_NS)
		return;
	fan_stash(w);
	clock_gettime(CLOCK_MONOTONIC, &w->read_at);
}

void watch_read_on(watcher *w)
{
	if (w->kind == W_FANOTIFY)
		load_read_on(w);
}

void watch_read_on_if_filling(watcher *w)
{
	/* (the stash is the session's memory, the queue the kernel's: a
	 * checkpoint's record of 4,000 files stashed its own store's events,
	 * and session_scale's peak RSS rose by 0.5 MiB) */
	if (w->kind == W_FANOTIFY && queued_units(w, w->fd) >= READ_ON_QUEUED)
		load_read_on(w);
}

/* Appends key to the inodes being loaded (*cap: their room), each full
 * run of INODE_RUN sorted as it completes; 0 or ENOMEM. */
static int push_inode(watcher *w, size_t *cap, uint64_t key)
{
	if (w->n_inodes == *cap) {
		/* (grown by doubling: glibc moves a block this large by
		 * remapping its pages, not by copying them) */
		size_t ncap = *cap ? 2 * *cap : INODE_RUN;
		uint64_t *p = realloc(w->inodes, ncap * sizeof *p);
		if (!p)
			return ENOMEM;
		w->inodes = p;
		*cap = ncap;
	}
	w->inodes[w->n_inodes++] = key;
	if (w->n_inodes % INODE_RUN == 0)
		qsort(w->inodes + w->n_inodes - INODE_RUN, INODE_RUN, sizeof *w->inodes, cmp_u64);
	return 0;
}

/* Loads the inodes of the tree's files as of the last checkpoint (its stat
 * cache rows), reading the queue on meanwhile (fan_stash). A file made
 * since is a namespace change of this interval, compared whole at the next
 * checkpoint anyway. */
static int load_inodes(watcher *w, mtm_session *ss)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	w->read_at = start;
	if (ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: watcher: a file changed outside the tree: loading the tree's inodes");
	free(w->inodes);
	w->inodes = NULL;
	w->n_inodes = 0;
	w->stashed = 0;
	size_t cap = 0;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ss->s->db, "SELECT st FROM statcache", -1, &st, NULL) != SQLITE_OK)
		return EIO;
	int r, rc = 0;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t f[STATBLOB_FIELDS]; /* (dev f[4], ino f[3]) */
		if (statblob_unpack(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), f)) {
			rc = EIO; /* a damaged row: which file's inode it was is not known */
			break;
		}
		if ((rc = push_inode(w, &cap, inode_key(f[4], f[3]))))
			break;
		if (w->n_inodes % LOAD_READ_ROWS == 0)
			load_read_on(w);
		while (w->test_gate && w->n_inodes == 1 && !access(w->test_gate, F_OK)) {
			usleep(1000);
			load_read_on(w);
		}
	}
	sqlite3_finalize(st);
	/* (rows are added only by a checkpoint, and none runs while the
	 * watcher looks) */
	if (!rc && r != SQLITE_DONE)
		rc = EIO;
	/* and the rows the session's checkpoints kept, not written yet */
	for (size_t i = 0; !rc && i < ss->sc_kept.cap; i++) {
		const sc_row *row = ss->sc_kept.slots[i].val;
		if (ss->sc_kept.slots[i].key && row->ver)
			rc = push_inode(w, &cap, inode_key(row->dev, row->ino));
	}
	if (rc) {
		free(w->inodes);
		w->inodes = NULL;
		w->n_inodes = 0;
		return rc;
	}
	size_t tail = w->n_inodes % INODE_RUN;
	if (tail)
		qsort(w->inodes + w->n_inodes - tail, tail, sizeof *w->inodes, cmp_u64);
	w->inodes_loaded = 1;
	if (ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: watcher: a file changed outside the tree: the tree's %zu inodes loaded (%zu KiB) "
		        "in %.1f ms, %zu events read meanwhile",
		        w->n_inodes, w->n_inodes * sizeof *w->inodes / 1024, (double)elapsed_ns(&start) / 1e6, w->stashed);
	return 0;
}

/* 1 if the file open at fd was made after t: it is then none of the files
 * the last checkpoint recorded (inodes), even when it has the number of one
 * (a file of the tree removed since, its inode number given to a new file
 * anywhere on the file system: another program's, a test's). A file made
 * after the barrier is a change of this interval anyway (its name appeared
 * in the tree, or it is not the tree's). 0 when unknown (no birth time):
 * the caller then takes it for the tree's file, the safe side. The kernel
 * stamps with a clock that may lag, never lead: a file made just after t
 * may look older (a needless scan), never the reverse. */
static int born_after(int fd, const struct timespec *t)
{
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_BTIME, &sx) || !(sx.stx_mask & STATX_BTIME))
		return 0;
	return sx.stx_btime.tv_sec > t->tv_sec || (sx.stx_btime.tv_sec == t->tv_sec && (long)sx.stx_btime.tv_nsec > t->tv_nsec);
}

/* 1 if the file a handle names (changed through a name outside the tree)
 * may be one of the tree's files; 0 if not (or it is gone, or not a regular
 * file); -1 if it is being freed (ask again later: open_handle). Its link
 * count says little: the outside name may be removed again by now, so the
 * inode itself is looked up among the tree's. fresh: its
 * attributes changed (a link made or removed): look again. */
int linked_into_tree(watcher *w, const fsid_t *fsid, const struct file_handle *fh, int fresh)
{
	char key[HANDLE_KEY_LEN];
	handle_key(key, fsid, fh);
	if (!fresh && pathmap_get(&w->objcache, key))
		return 0; /* one name, not the tree's */
	int mfd = mark_fd(w, fsid);
	if (mfd < 0)
		return 0; /* a file system of no file of the tree */
	int fd = open_handle(w, mfd, fh);
	struct stat st;
	if (fd < 0) {
		if (errno == ENOMEM)
			return -1;
		if (errno != ESTALE && errno != ENOENT) /* gone */
			w->lost = "the watcher could not look at a file changed outside the tree";
		return 0;
	}
	int ok = !fstat(fd, &st);
	if (!ok || !S_ISREG(st.st_mode) || st.st_nlink == 0) {
		close(fd);
		return 0;
	}
	if (!w->inodes_loaded && (w->inodes_failed || load_inodes(w, w->ss))) {
		w->inodes_failed = 1; /* (not loaded again for every event) */
		close(fd);
		return 1; /* cannot tell: the checkpoint scans */
	}
	if (in_inodes(w, inode_key((int64_t)st.st_dev, (int64_t)st.st_ino))) {
		int reused = born_after(fd, &w->inodes_since);
		close(fd);
		return !reused;
	}
	close(fd);
	/* one name, and not a file of the tree: until a link is made to it
	 * (an attribute change), it cannot become one but by a rename into
	 * the tree, and then its one name is there */
	if (st.st_nlink < 2) {
		if (w->objcache.n >= DIRCACHE_MAX) {
			pathmap_free(&w->objcache, NULL);
			memset(&w->objcache, 0, sizeof w->objcache);
		}
		if (pathmap_put(&w->objcache, key, ONE_NAME))
			w->lost = "the watcher ran out of memory";
	}
	return 0;
}

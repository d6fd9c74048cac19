/*
 * watch.c — the session's watcher (watch.h): changes in the tree that no
 * traced process's log explains.
 *
 * fanotify, one mark per file system of the tree (FAN_MARK_FILESYSTEM,
 * FAN_REPORT_DFID_NAME | FAN_REPORT_FID): each event names its directory by
 * a file handle and the entry by name, and the file itself by its handle,
 * and carries the writer's pid. Directory handles are resolved once
 * (open_by_handle_at, then the kernel's path of the fd) and cached; a
 * directory moved to or from anywhere but a directory known to be outside
 * the tree empties the cache, so a directory moved into the tree is never
 * taken for one outside it (one removed leaves nothing under it to go stale). Events outside the
 * tree cost a hash lookup, except a file's content or attributes changed
 * there: if that file is one of the tree's (its inode is, whatever its link
 * count now: the outside name may be gone again), the next checkpoint scans
 * (linked_into_tree; a file with one name that is not the tree's is cached
 * until its attributes change).
 *
 * inotify otherwise: a watch on every directory (new ones are watched as
 * they come, and listed as a namespace change, so what was made in them
 * before the watch is found by the checkpoint's walk), and on every regular
 * file: with one name for its attribute changes (a link made to it outside
 * the tree is one, and reaches no directory of the tree: the file is then
 * compared whole, and watched for every change if it has several names
 * now), with several names for every change (a write through a name outside
 * the tree is reported to the file's watch only; the checkpoint then scans,
 * as for any change to such a file). inotify does not say who wrote, so
 * every file written is compared by its blocks' hashes. Lost events (a
 * queue overflow) make the checkpoint scan and every watch be set again.
 *
 * Events are only gathered while the program runs (pending: path -> what
 * and who); they are judged in the barrier against the logs of the same
 * interval: a traced write is queued by the kernel inside the call, before
 * the interposer records it and leaves its region, and the barrier reads
 * the queue only once every region is empty.
 */

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include "session/session.h"
#include "session/watch.h"
#include "store/statblob.h"
#include "util/error.h"
#include "util/log.h"
#include "util/xxh.h"

enum { W_FANOTIFY = 1, W_INOTIFY = 2 };
/* EV_LET_GO: a file opened for writing was let go (its last fd closed, its
 * last shared mapping unmapped, its process ended: FAN_CLOSE_WRITE;
 * inotify's IN_CLOSE_WRITE, whose writer is unknown, is an EV_MODIFY).
 * Writes through a shared mapping make no event of their own (no
 * write(2)), so that is the one sign of them the watcher gets. Let go by
 * writers that are all trusted it says nothing their logs do not (a
 * traced process's shared writable mapping is a sticky WHOLE record) and
 * is kept as explained (let_go_explained); otherwise it is judged as a
 * write: the file is compared whole (tests/session
 * test_outside_mmap_write, and test_session_ahead's
 * test_file_let_go_unwritten_is_not_compared: a database a traced process
 * opened read-write and let go unwritten was read again whole at every
 * checkpoint). */
/* A process outside the session can map a file of the tree it opened for
 * writing, close the fd, and write through the mapping for as long as it
 * likes: no event at all until the mapping goes. So the processes with no
 * log heard opening a file of the tree (FAN_OPEN, in a group of its own:
 * ofd) are asked at each look what they hold for writing or map, and what
 * they hold is compared whole at each barrier until they let it go
 * (look_held). tests/session test_outside_mapping_held_across_checkpoints,
 * test_mapping_held_when_the_opens_were_lost. */
enum { EV_MODIFY = 1, EV_ATTRIB = 2, EV_NS = 4, EV_LET_GO = 8 };
/* The writers of one file kept per interval; past them the file is
 * compared whole. A database's busiest files are written by every backend
 * and its writer processes (pgbench -c 6: 8-10 pids), and each of them is
 * judged (trusted, memo) once per interval anyway. */
#define PEND_PIDS 16
#define DIRCACHE_MAX 65536 /* resolved directories kept (the whole file system's, not only the tree's) */
#define OUTSIDE ((char *)1) /* dircache: a directory outside the tree */
#define BEING_FREED ((char *)2) /* fan_dir: a directory the kernel is freeing: ask again later */
#define RETRY_MAX 4096 /* events kept for later (BEING_FREED) */
#define OPENERS_MAX 4096 /* processes outside heard opening files of the tree, kept to be looked at */
#define LOOK_NS 50000000L /* openers looked at between checkpoints at most this often (watch_drain) */
#define ONE_NAME ((void *)1)  /* objcache: a file with one name */

/* early: noted before the mark (watch_mark), so before the checkpoint was
 * asked for: what it says is in this checkpoint, never carried over */
typedef struct { uint8_t kinds, npid, many, early; int32_t pid[PEND_PIDS]; } pend;
typedef struct { int32_t pid; int fresh; } opener; /* fresh: heard since the last look */
typedef struct { fsid_t fsid; int fd; } fs_mark;
typedef struct { unsigned char *ev; size_t len; } held_event;

/* The held events dropped (their bytes freed; the vector kept). */
static void held_drop(vec *held)
{
	for (size_t i = 0; i < held->n; i++)
		free(VEC_AT(held, held_event, i).ev);
	held->n = 0;
}
typedef struct { int32_t pid; int trusted; } trust_memo;
/* inotify: what a watch descriptor watches */
enum { WD_DIR = 1, WD_FILE_ATTRIB = 2, WD_FILE_ALL = 3 };
typedef struct { char *path; uint8_t kind; } wd_ent;
#define TRUST_MEMO 64

struct watcher {
	int kind, fd;
	int ofd, epfd;    /* fanotify: the group that hears opens (FAN_OPEN) alone; an epoll of fd and ofd (watch_fd) */
	int opens_lost;   /* ofd's queue overflowed: what is held is found by a sweep of /proc (look_held) */
	int test_opens_lost; /* METAMORI_TEST_OPENS_LOST: every open read is taken as lost (tests) */
	char *root;       /* canonical absolute path of the tree */
	size_t rootlen;
	dev_t root_dev;   /* the tree's root directory (deep_dir_inside) */
	ino_t root_ino;
	vec marks;        /* of fs_mark (fanotify): a file system and a directory on it */
	pathmap dircache; /* fanotify: handle (hex) -> path relative to the root, or OUTSIDE */
	pathmap objcache; /* fanotify: a file's handle (hex) -> ONE_NAME: one name, outside the tree */
	uint64_t resolved, emptied; /* fanotify: directory handles resolved, dircache emptied (the debug log) */
	uint64_t *inodes; /* fanotify, loaded when needed: the tree's files, inode_key of each, sorted by runs (load_inodes) */
	size_t n_inodes;
	int inodes_failed; /* the load failed in this interval: every file changed outside may be the tree's (scan) */
	unsigned char *stash; /* fanotify: raw events read while the inodes loaded, not judged yet (fan_stash) */
	size_t stash_len, stash_cap;
	size_t stashed;   /* events stashed by the last load (the debug log) */
	struct timespec read_at; /* CLOCK_MONOTONIC: the queue last read on into the stash (load_read_on, watch_read_on) */
	const char *test_gate; /* METAMORI_TEST_INODE_LOAD_GATE: the load waits while this file exists (tests) */
	int test_read_us; /* METAMORI_TEST_DRAIN_READ_US: each read of the queue takes this long more (tests) */
	long test_freeing_us; /* METAMORI_TEST_FREEING_US: these gone handles answer ENOMEM, in the barrier's settle for this long (tests) */
	const char *test_freeing; /* METAMORI_TEST_FREEING_HANDLES: "TYPE:HEX,..." of the handles (tests) */
	struct timespec settle_at; /* CLOCK_MONOTONIC: the barrier's settle began (fan_settle); 0: not settling */
	vec held;         /* fanotify: of held_event, events in a directory being freed, to resolve later */
	int inodes_loaded;
	struct timespec inodes_since; /* the last barrier (or the start): a file born after it is none of inodes' */
	struct mtm_session *ss;
	vec wds;          /* inotify: of wd_ent, by watch descriptor (path NULL: none) */
	pathmap pending;  /* path -> pend*: events since the last barrier, not judged yet */
	pathmap early;    /* the same, noted before the mark (watch_mark) */
	pathmap explained; /* path -> pend*: writes the logs explained before the barrier (judge) */
	trust_memo memo[TRUST_MEMO]; /* session_pid_trusted of the writers, for one interval */
	int nmemo;
	int marked;       /* a checkpoint compares files ahead (ahead.c): writes to them from here on are carried */
	pathmap carry;    /* path -> 1: written after the mark by a writer no log explains: compared whole next time */
	vec openers;      /* fanotify: of opener: processes with no log heard opening a file of the tree (look_held) */
	struct timespec look_at; /* CLOCK_MONOTONIC: the openers last looked at */
	pathmap held_w;   /* fanotify: path -> pend*: files of the tree an opener held for writing or mapped at the last look */
	int32_t self;     /* the session's pid: its own opens (compares) are not the tree's writers */
	uint64_t probes;  /* processes outside asked what they hold (holds_read; the debug log) */
	const char *lost; /* events were lost since the last barrier: why */
	char lost_why[128]; /* lost's text when it names an errno */
	char lost_told[128]; /* the copy a change set keeps (lost_why is rewritten while it is used) */
	const char *blind; /* cannot see everything (watch limit): every checkpoint scans */
	int rewatch;      /* inotify: events were lost, watches may be missing: walk the tree again */
	unsigned char buf[64 * 1024] __attribute__((aligned(8)));
};

int watch_fd(const watcher *w) { return !w ? -1 : w->epfd >= 0 ? w->epfd : w->fd; }
const char *watch_kind(const watcher *w) { return w && w->kind == W_FANOTIFY ? "fanotify" : "inotify"; }

static void dircache_free(void *p)
{
	if (p != OUTSIDE)
		free(p);
}

static void dircache_clear(watcher *w)
{
	pathmap_free(&w->dircache, dircache_free);
	memset(&w->dircache, 0, sizeof w->dircache);
}

void watch_stop(watcher *w)
{
	if (!w)
		return;
	if (w->kind == W_FANOTIFY && w->ss && w->ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: watcher: %llu directory handles resolved, the cache emptied %llu times; "
		        "%llu processes outside asked what they hold for writing", (unsigned long long)w->resolved,
		        (unsigned long long)w->emptied, (unsigned long long)w->probes);
	if (w->fd >= 0)
		close(w->fd);
	if (w->ofd >= 0)
		close(w->ofd);
	if (w->epfd >= 0)
		close(w->epfd);
	for (size_t i = 0; i < w->marks.n; i++)
		close(VEC_AT(&w->marks, fs_mark, i).fd);
	vec_free(&w->marks);
	held_drop(&w->held);
	vec_free(&w->held);
	for (size_t i = 0; i < w->wds.n; i++)
		free(VEC_AT(&w->wds, wd_ent, i).path);
	vec_free(&w->wds);
	dircache_clear(w);
	pathmap_free(&w->objcache, NULL);
	pathmap_free(&w->carry, NULL);
	pathmap_free(&w->held_w, free);
	vec_free(&w->openers);
	free(w->inodes);
	free(w->stash);
	pathmap_free(&w->pending, free);
	pathmap_free(&w->early, free);
	pathmap_free(&w->explained, free);
	free(w->root);
	free(w);
}

/* Records that something (kind) happened to path, by pid (0: unknown). */
static int note(watcher *w, const char *path, int kind, int32_t pid)
{
	if (session_outside_tree(path))
		return 0;
	pend *p = pathmap_get(&w->pending, path);
	if (!p) {
		if (!(p = calloc(1, sizeof *p)) || pathmap_put(&w->pending, path, p)) {
			free(p);
			return ENOMEM;
		}
	}
	p->kinds |= (uint8_t)kind;
	for (int i = 0; i < p->npid; i++)
		if (p->pid[i] == pid)
			return 0;
	if (p->npid < PEND_PIDS)
		p->pid[p->npid++] = pid;
	else
		p->many = 1;
	return 0;
}

/* path relative to the root, or NULL if abs is not in the tree. */
static const char *in_tree(const watcher *w, const char *abs)
{
	if (strncmp(abs, w->root, w->rootlen))
		return NULL;
	if (w->root[w->rootlen - 1] == '/') /* the tree is / */
		return abs + w->rootlen;
	return abs[w->rootlen] == '/' ? abs + w->rootlen + 1 : abs[w->rootlen] ? NULL : abs + w->rootlen;
}

/* ---- fanotify ---- */

/* The tree's directory a handle names: its path relative to the root ("" is
 * the root), OUTSIDE, NULL if it is gone (a removal, seen at its parent), or
 * BEING_FREED (ask again later: gone, or, were it a real allocation failure,
 * there then). */
static void handle_key(char *key, const fsid_t *fsid, const struct file_handle *fh)
{
	/* (two table lookups a byte, not a sprintf: every event's directory
	 * and every file changed outside the tree is keyed, and under other
	 * programs' writes sprintf was ~8% of a W2 checkpoint's CPU) */
	static const char hex[] = "0123456789abcdef";
	char *k = key;
	const unsigned char *parts[] = {(const unsigned char *)fsid, (const unsigned char *)&fh->handle_type, fh->f_handle};
	size_t lens[] = {sizeof *fsid, sizeof fh->handle_type, fh->handle_bytes > MAX_HANDLE_SZ ? MAX_HANDLE_SZ : fh->handle_bytes};
	for (int i = 0; i < 3; i++)
		for (size_t j = 0; j < lens[i]; j++) {
			*k++ = hex[parts[i][j] >> 4];
			*k++ = hex[parts[i][j] & 15];
		}
	*k = 0;
}
#define HANDLE_KEY_LEN (2 * (sizeof(fsid_t) + sizeof(int) + MAX_HANDLE_SZ) + 1)

/* The mark's directory on the file system fsid names, -1 if none. */
static int mark_fd(const watcher *w, const fsid_t *fsid)
{
	for (size_t i = 0; i < w->marks.n; i++)
		if (!memcmp(&VEC_AT(&w->marks, fs_mark, i).fsid, fsid, sizeof *fsid))
			return VEC_AT(&w->marks, fs_mark, i).fd;
	return -1;
}

/* open_by_handle_at(O_PATH). The kernel answers ENOMEM for an inode it is
 * freeing (iget_locked finds it being freed: ext4 takes that for an
 * allocation failure) and ESTALE once it is gone: seen here on directories
 * removed right after an event in them (other programs' builds on the file
 * system), which made a session's checkpoints scan under load. So ENOMEM is
 * asked again, briefly, and then the caller asks again later (the freeing
 * may wait for the journal). */
static int64_t elapsed_ns(const struct timespec *since);

/* Tests: whether fh is one of METAMORI_TEST_FREEING_HANDLES, whose removed
 * directories answer ENOMEM until test_freeing_us into the barrier's
 * settle. */
static int test_freeing(const watcher *w, const struct file_handle *fh)
{
	if (!w->test_freeing || w->test_freeing_us <= 0 || fh->handle_bytes > MAX_HANDLE_SZ)
		return 0;
	if (w->settle_at.tv_sec && elapsed_ns(&w->settle_at) >= w->test_freeing_us * 1000)
		return 0;
	char want[16 + 2 * MAX_HANDLE_SZ], *k = want + snprintf(want, 16, "%d:", fh->handle_type);
	for (unsigned i = 0; i < fh->handle_bytes; i++)
		k += sprintf(k, "%02x", fh->f_handle[i]);
	size_t n = strlen(want);
	for (const char *p = w->test_freeing; (p = strstr(p, want)); p += n)
		if ((p == w->test_freeing || p[-1] == ',') && (!p[n] || p[n] == ','))
			return 1;
	return 0;
}

/* (In the barrier's settle, fan_settle waits between its looks instead:
 * hundreds of held events, each waited for here, took seconds.) */
static int open_handle(const watcher *w, int mfd, const struct file_handle *fh)
{
	int fd = open_by_handle_at(mfd, (struct file_handle *)fh, O_PATH | O_CLOEXEC);
	for (int i = 0; fd < 0 && errno == ENOMEM && i < 3 && !w->settle_at.tv_sec; i++) {
		usleep(100);
		fd = open_by_handle_at(mfd, (struct file_handle *)fh, O_PATH | O_CLOEXEC);
	}
	if (fd < 0 && errno == ESTALE && test_freeing(w, fh))
		errno = ENOMEM;
	return fd;
}

/* Whether the directory FD names is the tree's or below it, when the
 * kernel cannot print its path (longer than PATH_MAX: readlink of its
 * /proc/self/fd link answers ENAMETOOLONG; a neighbour's deep directories,
 * as e2e's test_long_path makes, on the tree's file system). Its parents
 * are walked up with "..", which crosses mounts upwards, until the tree's
 * root (inside) or the top, whose ".." is itself (outside). 1 inside, 0
 * outside, -1 not known (a parent could not be opened). */
static int deep_dir_inside(const watcher *w, int fd)
{
	struct stat st;
	if (fstat(fd, &st))
		return -1;
	int cur = fd, r = -1;
	/* a path of 1 MiB (MTM_PATH_MAX) has at most this many parents */
	for (int depth = 0; depth < (1 << 19); depth++) {
		if (st.st_dev == w->root_dev && st.st_ino == w->root_ino) {
			r = 1;
			break;
		}
		int up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		struct stat ust;
		if (up < 0 || fstat(up, &ust)) {
			if (up >= 0)
				close(up);
			break;
		}
		if (cur != fd)
			close(cur);
		cur = up;
		if (ust.st_dev == st.st_dev && ust.st_ino == st.st_ino) {
			r = 0; /* the top: its ".." is itself */
			break;
		}
		st = ust;
	}
	if (cur != fd)
		close(cur);
	return r;
}

static const char *fan_dir(watcher *w, const fsid_t *fsid, const struct file_handle *fh)
{
	char key[HANDLE_KEY_LEN];
	handle_key(key, fsid, fh);
	const char *got = pathmap_get(&w->dircache, key);
	if (got)
		return got;
	int mfd = mark_fd(w, fsid);
	if (mfd < 0)
		return OUTSIDE;
	int fd = open_handle(w, mfd, fh);
	w->resolved++;
	if (fd < 0) {
		if (errno == ENOMEM)
			return BEING_FREED;
		/* gone (its removal is an event at its parent); anything else
		 * (no CAP_DAC_READ_SEARCH, say) would drop events unseen */
		if (errno != ESTALE && errno != ENOENT) {
			snprintf(w->lost_why, sizeof w->lost_why,
				 "the watcher could not resolve a directory (%s)", strerror(errno));
			w->lost = w->lost_why;
		}
		return NULL;
	}
	char link[64], abs[PATH_MAX + 1];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, abs, sizeof abs - 1);
	if (n <= 0 || n >= (ssize_t)sizeof abs - 1) {
		int err = n < 0 ? errno : ENAMETOOLONG;
		/* a directory outside whose path is too long to print is
		 * outside all the same; inside, its events cannot be placed
		 * by path: the session scans (it reads such paths) */
		int inside = err == ENAMETOOLONG ? deep_dir_inside(w, fd) : -1;
		close(fd);
		if (inside == 0) {
			if (w->dircache.n >= DIRCACHE_MAX)
				dircache_clear(w);
			(void)pathmap_put(&w->dircache, key, OUTSIDE); /* (not kept: resolved again) */
			return OUTSIDE;
		}
		snprintf(w->lost_why, sizeof w->lost_why,
			 "the watcher could not resolve a directory (its path: %s)",
			 inside == 1 ? "longer than PATH_MAX, in the tree" : strerror(err));
		w->lost = w->lost_why;
		return NULL;
	}
	close(fd);
	abs[n] = 0;
	if (n > 10 && !strcmp(abs + n - 10, " (deleted)"))
		return NULL;
	const char *rel = in_tree(w, abs);
	char *val = rel ? strdup(rel) : OUTSIDE;
	if (!val) {
		w->lost = "the watcher ran out of memory";
		return NULL;
	}
	if (w->dircache.n >= DIRCACHE_MAX)
		dircache_clear(w);
	if (pathmap_put(&w->dircache, key, val)) {
		/* NULL alone would say "gone", and the event would be dropped */
		dircache_free(val);
		w->lost = "the watcher ran out of memory";
		return NULL;
	}
	return val;
}

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

static int64_t elapsed_ns(const struct timespec *since)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)(now.tv_sec - since->tv_sec) * 1000000000 + (now.tv_nsec - since->tv_nsec);
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

static size_t queued_units(const watcher *w, int fd);

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
static int linked_into_tree(watcher *w, const fsid_t *fsid, const struct file_handle *fh, int fresh)
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

/* A handle copied out of an info record (unaligned) into hb; NULL if it
 * does not fit in the record's len bytes at in. */
static struct file_handle *copy_handle(unsigned char *hb, const unsigned char *in, const unsigned char *end)
{
	struct file_handle *fh = (struct file_handle *)hb;
	if (in + sizeof *fh > end)
		return NULL;
	memcpy(fh, in, sizeof *fh);
	if (fh->handle_bytes > MAX_HANDLE_SZ || in + sizeof *fh + fh->handle_bytes > end)
		return NULL;
	memcpy(fh->f_handle, in + sizeof *fh, fh->handle_bytes);
	return fh;
}

/* Keeps an event in a directory being freed, to be resolved at the next
 * drain (fan_held): the directory is then gone (the event is dropped: its
 * removal is an event at its parent), or there, and the event counts. */
static int hold(watcher *w, const unsigned char *ev, size_t len)
{
	held_event *h = w->held.n < RETRY_MAX ? vec_push(&w->held) : NULL;
	if (!h || !(h->ev = malloc(len))) {
		if (h)
			w->held.n--;
		w->lost = h ? "the watcher ran out of memory"
			    : "the watcher could not resolve a directory (too many events held)";
		return 0;
	}
	memcpy(h->ev, ev, len);
	h->len = len;
	return 0;
}

static void opener_add(watcher *w, int32_t pid);

/* 1 if pid was heard opening a file of the tree since the last look: its
 * other opens say nothing more. */
static int opener_fresh(const watcher *w, int32_t pid)
{
	for (size_t i = 0; i < w->openers.n; i++)
		if (VEC_AT(&w->openers, opener, i).pid == pid)
			return VEC_AT(&w->openers, opener, i).fresh;
	return 0;
}

/* One event of len bytes at ev. Events hold names of any length, so the
 * next one may be unaligned: every structure is copied out before use. */
static int fan_event(watcher *w, const unsigned char *ev, size_t len)
{
	struct fanotify_event_metadata m;
	memcpy(&m, ev, sizeof m);
	if (m.vers != FANOTIFY_METADATA_VERSION)
		return 0;
	if (m.mask & FAN_Q_OVERFLOW) {
		w->lost = "the watcher's queue overflowed (events were lost)";
		return 0;
	}
	/* an open of a directory, or the session's own (it reads files to
	 * compare them): nothing to ask (cheap: most opens are such, or
	 * outside the tree) */
	if ((m.mask & FAN_OPEN) && ((m.mask & FAN_ONDIR) || m.pid == w->self))
		m.mask &= ~(uint64_t)FAN_OPEN;
	if (!(m.mask & ~(uint64_t)FAN_ONDIR))
		return 0;
	unsigned char dhb[sizeof(struct file_handle) + MAX_HANDLE_SZ] __attribute__((aligned(8)));
	unsigned char ohb[sizeof(struct file_handle) + MAX_HANDLE_SZ] __attribute__((aligned(8)));
	struct file_handle *dfh = NULL, *ofh = NULL;
	fsid_t dfsid, ofsid;
	const char *name = ".";
	const unsigned char *p = ev + m.metadata_len, *end = ev + len;
	while (p + sizeof(struct fanotify_event_info_fid) <= end) {
		struct fanotify_event_info_fid fid;
		memcpy(&fid, p, sizeof fid);
		if (fid.hdr.len == 0 || p + fid.hdr.len > end)
			break;
		const unsigned char *in = p + offsetof(struct fanotify_event_info_fid, handle);
		if (!dfh && (fid.hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME || fid.hdr.info_type == FAN_EVENT_INFO_TYPE_DFID)) {
			if ((dfh = copy_handle(dhb, in, p + fid.hdr.len))) {
				memcpy(&dfsid, &fid.fsid, sizeof dfsid);
				if (fid.hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME)
					name = (const char *)in + sizeof *dfh + dfh->handle_bytes;
			}
		} else if (!ofh && fid.hdr.info_type == FAN_EVENT_INFO_TYPE_FID) {
			if ((ofh = copy_handle(ohb, in, p + fid.hdr.len)))
				memcpy(&ofsid, &fid.fsid, sizeof ofsid);
		}
		p += fid.hdr.len;
	}
	const char *dir = dfh ? fan_dir(w, &dfsid, dfh) : NULL;
	if (dir == BEING_FREED)
		return hold(w, ev, len);
	char path[PATH_MAX * 2] = "";
	if (dir && dir != OUTSIDE) {
		if (!strcmp(name, ".") || !*name)
			snprintf(path, sizeof path, "%s", dir);
		else
			snprintf(path, sizeof path, "%s%s%s", dir, *dir ? "/" : "", name);
	}
	/* a directory moved: cached paths at and below it are stale (dir is
	 * one of them: not used past this point; path was made before). Not
	 * one removed: it has no descendants left, and its handle dies with it
	 * (a neighbour's builds remove directories all the time: emptying the
	 * cache for each had every later event resolved again, the tree's too,
	 * tests/session test_directories_removed_outside_keep_the_cache). Nor
	 * one moved from or to a directory known to be outside the tree: what
	 * is under it was outside and stays so (moved into the tree, it is a
	 * MOVED_TO in a directory of the tree, which empties the cache). */
	if ((m.mask & FAN_ONDIR) && (m.mask & (FAN_MOVED_FROM | FAN_MOVED_TO)) && dir != OUTSIDE) {
		dircache_clear(w);
		w->emptied++;
	}
	dir = NULL;
	if (!*path) {
		/* outside the tree (or a name gone, or the root itself): the file
		 * changed may still be in the tree under another name */
		int linked = ofh && !(m.mask & FAN_ONDIR) && (m.mask & (FAN_MODIFY | FAN_ATTRIB | FAN_CLOSE_WRITE)) ?
		             linked_into_tree(w, &ofsid, ofh, (m.mask & FAN_ATTRIB) != 0) : 0;
		if (linked < 0)
			return hold(w, ev, len);
		if (linked && !w->lost)
			w->lost = "a file of the tree changed through a name outside it (a hard link)";
		return 0;
	}
	int kind = (m.mask & FAN_MODIFY ? EV_MODIFY : 0) | (m.mask & FAN_CLOSE_WRITE ? EV_LET_GO : 0) |
	           (m.mask & FAN_ATTRIB ? EV_ATTRIB : 0) |
	           (m.mask & (FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO) ? EV_NS : 0);
	/* (a traced opener's mappings are in its log; one whose log is not
	 * found yet is asked about at the barrier) */
	if ((m.mask & FAN_OPEN) && !session_outside_tree(path) && !session_pid_traced(w->ss, (int32_t)m.pid))
		opener_add(w, (int32_t)m.pid);
	return kind ? note(w, path, kind, (int32_t)m.pid) : 0;
}

/* The mount points under the root (besides the root's own file system). */
static int fan_mark(watcher *w, const char *path)
{
	const uint64_t mask = FAN_MODIFY | FAN_ATTRIB | FAN_CLOSE_WRITE | FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM |
	                      FAN_MOVED_TO | FAN_ONDIR;
	if (fanotify_mark(w->fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, AT_FDCWD, path) ||
	    fanotify_mark(w->ofd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN, AT_FDCWD, path))
		return errno;
	struct statfs sf;
	fs_mark fm = {.fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
	if (fm.fd < 0 || fstatfs(fm.fd, &sf)) {
		int e = errno;
		if (fm.fd >= 0)
			close(fm.fd);
		return e;
	}
	fm.fsid = sf.f_fsid;
	for (size_t i = 0; i < w->marks.n; i++)
		if (!memcmp(&VEC_AT(&w->marks, fs_mark, i).fsid, &fm.fsid, sizeof fm.fsid)) {
			close(fm.fd); /* one file system mounted twice under the root */
			return 0;
		}
	fs_mark *slot = vec_push(&w->marks);
	if (!slot) {
		close(fm.fd);
		return ENOMEM;
	}
	*slot = fm;
	return 0;
}

/* Unescapes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

static int fan_start(watcher *w)
{
	w->fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME | FAN_REPORT_FID,
	                      O_RDONLY | O_LARGEFILE);
	if (w->fd < 0)
		return errno;
	/* opens in a group of their own: a busy file system opens more than
	 * it writes (a third more events here), and were they in the same
	 * queue they would overflow it sooner, which makes a checkpoint scan;
	 * their own queue overflowing costs a sweep of /proc instead */
	w->ofd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME | FAN_REPORT_FID,
	                       O_RDONLY | O_LARGEFILE);
	struct epoll_event ev = {.events = EPOLLIN};
	if (w->ofd < 0 || (w->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->fd, &ev) ||
	    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->ofd, &ev))
		return errno;
	w->marks = (vec)VEC_INIT(fs_mark);
	w->openers = (vec)VEC_INIT(opener);
	w->held = (vec)VEC_INIT(held_event);
	int rc = fan_mark(w, w->root);
	FILE *f = rc ? NULL : fopen("/proc/self/mountinfo", "re");
	char line[8192];
	while (f && !rc && fgets(line, sizeof line, f)) {
		/* id parent major:minor root mountpoint ... */
		char *save, *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (!tok)
			continue;
		unescape(tok);
		const char *rel = in_tree(w, tok);
		if (rel && *rel && !session_outside_tree(rel))
			rc = fan_mark(w, tok);
	}
	if (f)
		fclose(f);
	return rc;
}

/* ---- inotify ---- */

#define INO_MASK (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR | \
                  IN_DONT_FOLLOW | IN_EXCL_UNLINK)

/* A file with one name: its attribute changes (a link made to it is one,
 * also through a directory outside the tree, where no watch of the tree's
 * directories hears of it). Masks are only ever added to (IN_MASK_ADD): a
 * watch raced onto another file than the one looked at never loses events. */
#define INO_ONE_MASK (IN_ATTRIB | IN_DONT_FOLLOW | IN_MASK_ADD)
/* A file with several names: every change, through whichever name. */
#define INO_FILE_MASK (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVE_SELF | IN_DONT_FOLLOW | IN_MASK_ADD)

/* The absolute path of rel into buf; 0, or -1 if it does not fit. */
static int path_abs(const watcher *w, const char *rel, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s%s%s", w->root, *rel ? "/" : "", rel);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Puts path (owned) at wd in w->wds, watching a thing of that kind. */
static int ino_set(watcher *w, int wd, char *path, int kind)
{
	while ((size_t)wd >= w->wds.n) {
		wd_ent *slot = vec_push(&w->wds);
		if (!slot) {
			free(path);
			return ENOMEM;
		}
		*slot = (wd_ent){0};
	}
	wd_ent *e = &VEC_AT(&w->wds, wd_ent, wd);
	if (e->path && e->kind == WD_DIR && kind != WD_DIR) {
		free(path); /* a file replaced by this directory since it was looked at */
		return 0;
	}
	/* a file's watch that reports every change keeps doing so (IN_MASK_ADD) */
	if (!(e->path && e->kind == WD_FILE_ALL && kind == WD_FILE_ATTRIB))
		e->kind = (uint8_t)kind;
	free(e->path);
	e->path = path;
	return 0;
}

/* Every regular file of the tree (st) gets a watch of its own: with one
 * name, for its attribute changes (the link count: ino_one_name); with
 * several, for every change (a write through a name outside the tree is
 * reported to the file's watch only). Watched again under a new name, the
 * watch is the same and takes the new path. */
static int ino_watch_file(watcher *w, const char *rel, const struct stat *st)
{
	if (!S_ISREG(st->st_mode) || session_outside_tree(rel))
		return 0;
	char abs[PATH_MAX * 2];
	if (path_abs(w, rel, abs, sizeof abs)) {
		w->lost = "a file of the tree could not be watched (its path is too long)";
		return 0;
	}
	int all = st->st_nlink > 1;
	int wd = inotify_add_watch(w->fd, abs, all ? INO_FILE_MASK : INO_ONE_MASK);
	/* a link made between the look (st) and the watch sent its event to no
	 * watch: looked at again, now that a later one would be heard */
	struct stat now;
	if (wd >= 0 && !all && !fstatat(AT_FDCWD, abs, &now, AT_SYMLINK_NOFOLLOW) && S_ISREG(now.st_mode) &&
	    now.st_nlink > 1 && (all = 1))
		wd = inotify_add_watch(w->fd, abs, INO_FILE_MASK);
	if (wd < 0) {
		if (errno == ENOSPC)
			w->blind = "cannot watch every file of the tree (fs.inotify.max_user_watches)";
		else if (errno == EACCES)
			w->blind = "a file of the tree cannot be watched (no read permission)";
		else if (errno != ENOENT) /* gone: its removal is an event of its directory */
			w->lost = "a file of the tree could not be watched";
		return 0;
	}
	char *dup = strdup(rel);
	return dup ? ino_set(w, wd, dup, all ? WD_FILE_ALL : WD_FILE_ATTRIB) : ENOMEM;
}

/* An attribute change of a file that had one name: its link count may have
 * grown (a link made outside the tree sends this event, and none to the
 * tree's directories), and written through the new name, and shrunk again
 * by now. So the file is compared whole at the next checkpoint, and if it
 * has several names now, its watch reports every change from now on (the
 * lookup comes after this event was queued: a link made later sends
 * another). path may be stale: the file renamed (or removed) since; a
 * rename in the tree is an event of its own, after this one, and the file
 * is looked at under its new name then (compared whole, watched again). */
static int ino_one_name(watcher *w, const char *path)
{
	int rc = note(w, path, EV_MODIFY | EV_ATTRIB, 0);
	char abs[PATH_MAX * 2];
	struct stat st;
	if (!rc && !path_abs(w, path, abs, sizeof abs) && !fstatat(AT_FDCWD, abs, &st, AT_SYMLINK_NOFOLLOW) &&
	    S_ISREG(st.st_mode) && st.st_nlink > 1)
		rc = ino_watch_file(w, path, &st);
	return rc;
}

/* Watches directory rel and every directory and file below it. */
static int ino_add_tree(watcher *w, const char *rel)
{
	vec stack = VEC_INIT(char *);
	char *first = strdup(rel);
	int rc = first ? 0 : ENOMEM;
	if (first && !vec_push(&stack))
		rc = ENOMEM, free(first);
	else if (first)
		VEC_AT(&stack, char *, 0) = first;
	while (!rc && stack.n) {
		char *dir = VEC_AT(&stack, char *, --stack.n);
		char abs[PATH_MAX * 2];
		snprintf(abs, sizeof abs, "%s%s%s", w->root, *dir ? "/" : "", dir);
		int wd = inotify_add_watch(w->fd, abs, INO_MASK);
		if (wd < 0) {
			if (errno == ENOSPC)
				w->blind = "cannot watch every directory of the tree (fs.inotify.max_user_watches)";
			else if (errno != ENOENT && errno != ENOTDIR && errno != EACCES)
				w->lost = "a directory could not be watched";
			free(dir);
			continue;
		}
		if ((rc = ino_set(w, wd, dir, WD_DIR)))
			break;
		DIR *d = opendir(abs);
		struct dirent *de;
		while (d && !rc && (de = readdir(d))) {
			if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN && de->d_type != DT_REG)
				continue;
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			char *sub;
			if (asprintf(&sub, "%s%s%s", dir, *dir ? "/" : "", de->d_name) < 0) {
				rc = ENOMEM;
				break;
			}
			struct stat st;
			int isdir = de->d_type == DT_DIR;
			if (!isdir && !session_outside_tree(sub) && !fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW)) {
				isdir = S_ISDIR(st.st_mode);
				if (!isdir)
					rc = ino_watch_file(w, sub, &st);
			}
			if (session_outside_tree(sub) || !isdir) {
				free(sub);
				continue;
			}
			char **slot = vec_push(&stack);
			if (!slot) {
				free(sub);
				rc = ENOMEM;
			} else {
				*slot = sub;
			}
		}
		if (d)
			closedir(d);
	}
	for (size_t i = 0; i < stack.n; i++)
		free(VEC_AT(&stack, char *, i));
	vec_free(&stack);
	return rc;
}

static int ino_event(watcher *w, const struct inotify_event *e)
{
	char abs[PATH_MAX * 2];
	if (e->mask & IN_Q_OVERFLOW) {
		w->lost = "the watcher's queue overflowed (fs.inotify.max_queued_events: events were lost)";
		w->rewatch = 1; /* a directory or a link may have come unseen: its watch is missing */
		return 0;
	}
	if (e->wd < 0 || (size_t)e->wd >= w->wds.n || !VEC_AT(&w->wds, wd_ent, e->wd).path)
		return 0;
	wd_ent *we = &VEC_AT(&w->wds, wd_ent, e->wd);
	if (e->mask & IN_IGNORED) { /* the directory or file is gone: its removal was seen at its parent */
		free(we->path);
		*we = (wd_ent){0};
		return 0;
	}
	const char *dir = we->path;
	char path[PATH_MAX * 2];
	if (e->len && e->name[0])
		snprintf(path, sizeof path, "%s%s%s", dir, *dir ? "/" : "", e->name);
	else
		snprintf(path, sizeof path, "%s", dir);
	if (!*path)
		return 0;
	if (we->kind == WD_FILE_ATTRIB)
		return (e->mask & IN_ATTRIB) ? ino_one_name(w, path) : 0;
	if (e->mask & IN_MOVE_SELF) { /* a file with several names: which of its names moved? */
		w->lost = "a file with several names was moved";
		return 0;
	}
	int kind = (e->mask & (IN_MODIFY | IN_CLOSE_WRITE) ? EV_MODIFY : 0) | (e->mask & IN_ATTRIB ? EV_ATTRIB : 0) |
	           (e->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO) ? EV_NS : 0);
	int rc = kind ? note(w, path, kind, 0) : 0;
	/* a file that arrived (made, linked or moved here): watched from now on,
	 * under this name */
	struct stat st;
	if (!rc && !(e->mask & IN_ISDIR) && e->len && (e->mask & (IN_CREATE | IN_MOVED_TO)) &&
	    !session_outside_tree(path) && !path_abs(w, path, abs, sizeof abs) && !fstatat(AT_FDCWD, abs, &st, AT_SYMLINK_NOFOLLOW))
		rc = ino_watch_file(w, path, &st);
	/* a directory that arrived: watched from now on (what was made in it
	 * before is found by the checkpoint's walk of the namespace change) */
	if (!rc && (e->mask & IN_ISDIR) && (e->mask & (IN_CREATE | IN_MOVED_TO)) && !session_outside_tree(path))
		rc = ino_add_tree(w, path);
	return rc;
}

static int ino_start(watcher *w)
{
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0)
		return errno;
	w->wds = (vec)VEC_INIT(wd_ent);
	return ino_add_tree(w, "");
}

/* ---- both ---- */

int watch_start(mtm_session *ss, const char **why)
{
	*why = NULL;
	ss->watch = NULL;
	const char *knob = secure_getenv("METAMORI_WATCH"); /* tests and benchmarks: force one, or none */
	if (knob && !strcmp(knob, "off")) {
		*why = "METAMORI_WATCH=off";
		return 0;
	}
	watcher *w = calloc(1, sizeof *w);
	if (!w)
		return mtm_set_error(ENOMEM, "session");
	w->fd = w->ofd = w->epfd = -1;
	w->ss = ss;
	w->self = (int32_t)getpid();
	/* tests: the load of the tree's inodes waits after its first row while
	 * this file exists (a long load, events coming meanwhile) */
	w->test_gate = secure_getenv("METAMORI_TEST_INODE_LOAD_GATE");
	/* tests: a slow reader, so that a neighbour's events come faster than
	 * they are judged (tests/session: a flood outside the tree) */
	const char *slow = secure_getenv("METAMORI_TEST_DRAIN_READ_US");
	w->test_read_us = slow ? atoi(slow) : 0;
	/* tests: the removed directories these handles name answer as ones
	 * being freed (ENOMEM: the inode number being reused) in every drain,
	 * and in the barrier's settle for this long
	 * (test_a_directory_freed_at_the_barrier) */
	const char *freeing = secure_getenv("METAMORI_TEST_FREEING_US");
	w->test_freeing_us = freeing ? atol(freeing) : 0;
	w->test_freeing = secure_getenv("METAMORI_TEST_FREEING_HANDLES");
	/* tests: the opens' queue taken as overflowed at each read
	 * (test_mapping_held_when_the_opens_were_lost) */
	w->test_opens_lost = secure_getenv("METAMORI_TEST_OPENS_LOST") != NULL;
	clock_gettime(CLOCK_REALTIME, &w->inodes_since); /* (the stat cache holds files older than the session) */
	if (!(w->root = realpath(ss->s->root, NULL))) {
		free(w);
		*why = "the tree's path cannot be resolved";
		return 0;
	}
	w->rootlen = strlen(w->root);
	struct stat rst;
	if (stat(w->root, &rst)) {
		free(w->root);
		free(w);
		*why = "the tree's root cannot be read";
		return 0;
	}
	w->root_dev = rst.st_dev;
	w->root_ino = rst.st_ino;
	int rc = EINVAL;
	if (!knob || !*knob || !strcmp(knob, "fanotify")) {
		w->kind = W_FANOTIFY;
		rc = fan_start(w);
		if (rc && w->fd >= 0) {
			for (size_t i = 0; i < w->marks.n; i++)
				close(VEC_AT(&w->marks, fs_mark, i).fd);
			vec_free(&w->marks);
			close(w->fd);
			w->fd = -1;
			if (w->ofd >= 0)
				close(w->ofd);
			if (w->epfd >= 0)
				close(w->epfd);
			w->ofd = w->epfd = -1;
		}
	}
	if (rc && (!knob || !*knob || !strcmp(knob, "inotify"))) {
		w->kind = W_INOTIFY;
		rc = ino_start(w);
	}
	if (rc) {
		*why = rc == ENOMEM ? "out of memory" : "neither fanotify nor inotify can watch the tree";
		watch_stop(w);
		return rc == ENOMEM ? mtm_set_error(ENOMEM, "session") : 0;
	}
	ss->watch = w;
	return 0;
}

static int fan_event(watcher *w, const unsigned char *ev, size_t len);

/* The held events once more (each is held again if its directory is still
 * being freed). */
static void fan_held(watcher *w)
{
	vec old = w->held;
	w->held = (vec)VEC_INIT(held_event);
	for (size_t i = 0; i < old.n; i++) {
		held_event *h = &VEC_AT(&old, held_event, i);
		if (fan_event(w, h->ev, h->len))
			w->lost = "the watcher ran out of memory";
		free(h->ev);
	}
	vec_free(&old);
}

/* The fanotify events of n bytes at buf, in order. 0 or ENOMEM. */
static int fan_batch(watcher *w, const unsigned char *buf, size_t n)
{
	int rc = 0;
	for (size_t off = 0; off + sizeof(struct fanotify_event_metadata) <= n && !rc;) {
		uint32_t elen;
		memcpy(&elen, buf + off, sizeof elen); /* event_len comes first */
		if (elen < sizeof(struct fanotify_event_metadata) || off + elen > n)
			break;
		rc = fan_event(w, buf + off, elen);
		off += elen;
	}
	return rc;
}

/* The events read while the inodes loaded (fan_stash), after the ones read
 * before them: called after every batch read and every pass over the held
 * events. Taken out first: should they make the inodes load again (they
 * do not: a load is once an interval), what is read then comes after
 * them. */
static void fan_unstash(watcher *w)
{
	while (w->stash_len) {
		unsigned char *buf = w->stash;
		size_t n = w->stash_len;
		w->stash = NULL;
		w->stash_len = w->stash_cap = 0;
		if (fan_batch(w, buf, n))
			w->lost = "the watcher ran out of memory";
		free(buf);
	}
}

/* How long the barrier waits, at most, for a directory being freed. Its
 * handle answers ENOMEM while the kernel reuses its inode number for a new
 * one (ext4; the directory itself is gone). Measured here, with two
 * neighbours making and removing directories: 42 of 20,000 removed
 * directories answered ENOMEM, for 0.01-3.5 ms. One look (open_handle's
 * ~0.3 ms) made such a checkpoint scan the whole tree, in a clean-clone
 * make test; a scan of a big tree costs far more than this wait, which
 * only a held event pays. */
#define FREEING_WAIT_NS (50 * 1000000LL)

/* Before the mark and in the barrier: every event read so far judged now,
 * none held nor stashed. A stashed event may be held, and a held one may
 * make the inodes load (and stash), so until neither is left. A held event
 * is looked at again after 0.1, 0.2, 0.4 ... ms (at most 8 ms apart) for up
 * to FREEING_WAIT_NS; one still unresolved then makes this checkpoint scan,
 * and none is kept past it. */
static void fan_settle(watcher *w)
{
	clock_gettime(CLOCK_MONOTONIC, &w->settle_at);
	useconds_t nap = 100;
	for (;;) {
		if (w->held.n)
			fan_held(w);
		fan_unstash(w); /* (leaves the stash empty) */
		if (!w->held.n)
			break;
		if (elapsed_ns(&w->settle_at) >= FREEING_WAIT_NS) {
			w->lost = "the watcher could not resolve a directory (being freed for too long)";
			held_drop(&w->held);
			break;
		}
		usleep(nap);
		nap = nap < 8000 ? nap * 2 : nap;
	}
	assert(!w->held.n && !w->stash_len);
	memset(&w->settle_at, 0, sizeof w->settle_at);
}

/* The fanotify events in n bytes at buf. */
static size_t fan_count(const unsigned char *buf, size_t n)
{
	size_t count = 0;
	for (size_t off = 0; off + sizeof(uint32_t) <= n; count++) {
		uint32_t elen;
		memcpy(&elen, buf + off, sizeof elen); /* event_len comes first */
		if (elen < sizeof(struct fanotify_event_metadata))
			break;
		off += elen;
	}
	return count;
}

/* What is queued now, in the unit watch_drain counts what it reads in:
 * inotify's bytes; fanotify's events. fanotify's FIONREAD counts each
 * event as its metadata alone (FAN_EVENT_METADATA_LEN), not the file
 * handles and name that follow it (~80-330 bytes an event here): taken for
 * bytes, a drain read a quarter of the queue or less, and a write's event
 * queued before a checkpoint was asked for was read after its mark or its
 * barrier (the checkpoint, "tracked", missed the write;
 * test_an_outside_write_behind_a_long_queue). Should a kernel count whole
 * events, this takes more events than were queued: read until the queue is
 * empty or the count is reached, more than needed, never less. SIZE_MAX:
 * not told (until empty). */
static size_t queued_units(const watcher *w, int fd)
{
	int queued;
	if (ioctl(fd, FIONREAD, &queued) < 0 || queued < 0)
		return SIZE_MAX;
	if (w->kind == W_FANOTIFY)
		return ((size_t)queued + sizeof(struct fanotify_event_metadata) - 1) / sizeof(struct fanotify_event_metadata);
	return (size_t)queued;
}

/* The opens queued (ofd): noted (fan_event), or, lost to an overflow, a
 * sweep owed (opens_lost). */
static void fan_read_opens(watcher *w)
{
	size_t want = w->ofd >= 0 ? queued_units(w, w->ofd) : 0;
	for (size_t got = 0; got < want;) {
		ssize_t n = read(w->ofd, w->buf, sizeof w->buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0 && errno != EAGAIN)
				w->opens_lost = 1;
			return;
		}
		got += fan_count(w->buf, (size_t)n);
		for (size_t off = 0; off + sizeof(struct fanotify_event_metadata) <= (size_t)n;) {
			struct fanotify_event_metadata m;
			memcpy(&m, w->buf + off, sizeof m);
			if (m.event_len < sizeof m || off + m.event_len > (size_t)n)
				break;
			if ((m.mask & FAN_Q_OVERFLOW) || w->test_opens_lost)
				w->opens_lost = 1;
			else if ((m.mask & FAN_ONDIR) || m.pid == w->self || opener_fresh(w, m.pid) ||
			         session_pid_traced(w->ss, m.pid))
				; /* (nothing to learn: no path resolved, ~0.2 us an event:
				   * a process reading 20,000 files of the tree, a traced
				   * database opening its own) */
			else if (fan_event(w, w->buf + off, m.event_len))
				w->opens_lost = 1; /* (out of memory: what was not noted is looked for) */
			off += m.event_len;
		}
	}
}

static int drain_main(watcher *w);
static int look_held(watcher *w, mtm_session *ss, change_set *cs, int final);

int watch_drain(watcher *w)
{
	int rc = drain_main(w);
	if (w->kind == W_FANOTIFY)
		fan_read_opens(w);
	/* openers heard: looked at between checkpoints too (every LOOK_NS at
	 * most), so that the barrier's look is left only those heard since,
	 * and those that hold something (an opener is forgotten at its
	 * second look) */
	if (w->kind == W_FANOTIFY && w->openers.n && (!w->look_at.tv_sec || elapsed_ns(&w->look_at) >= LOOK_NS) &&
	    look_held(w, w->ss, NULL, 0))
		w->lost = "the watcher ran out of memory";
	return rc;
}

static int drain_main(watcher *w)
{
	if (w->kind == W_FANOTIFY && w->held.n)
		fan_held(w);
	if (w->kind == W_FANOTIFY)
		fan_unstash(w);
	/* What is queued now is what every caller needs read (the loop: what
	 * came since it last looked; the barrier, the mark, a pre-copy pass:
	 * every event of a call made before them). Read until the queue was
	 * empty, a neighbour on the file system making events faster than they
	 * are judged kept the session here: no request, signal or end of the
	 * program served, or a pause held, for as long as it went on. What
	 * comes meanwhile is read by the next drain. (Whole events are read: a
	 * read may take a few more than were counted.) */
	size_t want = queued_units(w, w->fd);
	for (size_t got = 0; got < want;) {
		ssize_t n = read(w->fd, w->buf, sizeof w->buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0 && errno != EAGAIN)
				w->lost = "the watcher could not be read";
			return 0;
		}
		got += w->kind == W_FANOTIFY ? fan_count(w->buf, (size_t)n) : (size_t)n;
		if (w->test_read_us > 0)
			usleep((useconds_t)w->test_read_us);
		int rc = 0;
		if (w->kind == W_FANOTIFY) {
			rc = fan_batch(w, w->buf, (size_t)n);
			if (!rc)
				fan_unstash(w); /* (read after this batch, before the next) */
		} else {
			/* inotify pads names so that each event stays aligned */
			for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n && !rc;) {
				const struct inotify_event *e = (const void *)(w->buf + off);
				rc = ino_event(w, e);
				off += (ssize_t)(sizeof *e + e->len);
			}
		}
		if (rc) { /* out of memory: what was not noted is lost */
			w->lost = "the watcher ran out of memory";
			return 0;
		}
		/* after lost events (this checkpoint scans): every directory and
		 * file watched again, so the watches miss nothing from now on */
		if (w->rewatch && w->kind == W_INOTIFY) {
			w->rewatch = 0;
			if (ino_add_tree(w, ""))
				w->lost = "the watcher ran out of memory";
		}
	}
	return 0;
}

static int trusted(watcher *w, mtm_session *ss, int32_t pid)
{
	for (int i = 0; i < w->nmemo; i++)
		if (w->memo[i].pid == pid)
			return w->memo[i].trusted;
	int t = session_pid_trusted(ss, pid);
	if (w->nmemo < TRUST_MEMO)
		w->memo[w->nmemo++] = (trust_memo){pid, t};
	return t;
}

/* The same, asked by the pre-copy between barriers: a pid with no log
 * found yet (a process started since the pass listed them) is not
 * remembered as untrusted, so the barrier, which lists the logs again,
 * judges it afresh. */
static int trusted_before_barrier(watcher *w, mtm_session *ss, int32_t pid)
{
	for (int i = 0; i < w->nmemo; i++)
		if (w->memo[i].pid == pid)
			return w->memo[i].trusted;
	return session_pid_traced(ss, pid) ? trusted(w, ss, pid) : 0;
}

/* 1 if path or a strict ancestor of it is in m. */
static int at_or_under(const pathmap *m, const char *path)
{
	if (!m->n)
		return 0;
	if (pathmap_get(m, path))
		return 1;
	char buf[PATH_MAX * 2];
	size_t n = strlen(path);
	if (n >= sizeof buf)
		return 0;
	memcpy(buf, path, n + 1);
	for (char *p = buf + n; p > buf; p--)
		if (*p == '/') {
			*p = 0;
			if (pathmap_get(m, buf))
				return 1;
		}
	return 0;
}

static int mark_whole(change_set *cs, const char *path)
{
	file_change *fc = change_set_file(cs, path);
	if (!fc)
		return ENOMEM;
	fc->whole = 1;
	return 0;
}

/* The logs name the bytes a traced process wrote through the C library; a
 * writer that is not traced, or that may make system calls of its own (or
 * inotify's, which could be anyone) may have written others. */
static int explained_by(watcher *w, mtm_session *ss, const file_change *fc, const pend *p)
{
	int explained = fc && w->kind == W_FANOTIFY && !p->many;
	for (int j = 0; j < p->npid && explained; j++)
		explained = trusted(w, ss, p->pid[j]);
	return explained;
}

static int carry(watcher *w, const char *path)
{
	return pathmap_get(&w->carry, path) ? 0 : pathmap_put(&w->carry, path, (void *)1);
}

int watch_carried(const watcher *w, const char *path)
{
	return w && pathmap_get(&w->carry, path) != NULL;
}

int watch_compares_whole(watcher *w, mtm_session *ss, const char *path)
{
	if (!w)
		return 0;
	if (pathmap_get(&w->carry, path))
		return 1;
	const pend *p = pathmap_get(&w->pending, path);
	if (!p)
		p = pathmap_get(&w->early, path);
	if (!p || !(p->kinds & (EV_MODIFY | EV_LET_GO)))
		return 0;
	/* judge_map: under inotify no write is explained_by the logs; under
	 * fanotify, none by a writer that is not trusted. (Only a hint: a
	 * writer's trust is never regained within an interval, and one that
	 * turns out trusted after all has its blocks read in the barrier.) */
	if (w->kind == W_INOTIFY || p->many)
		return 1;
	for (int j = 0; j < p->npid; j++)
		if (!trusted_before_barrier(w, ss, p->pid[j]))
			return 1;
	return 0;
}

/* The files carried from the last interval: compared whole now. */
static int apply_carry(watcher *w, change_set *cs)
{
	int rc = 0;
	for (size_t i = 0; i < w->carry.cap && !rc; i++)
		if (w->carry.slots[i].key)
			rc = mark_whole(cs, w->carry.slots[i].key);
	pathmap_free(&w->carry, NULL);
	memset(&w->carry, 0, sizeof w->carry);
	return rc;
}

/* A file let go, and not written as far as the events say (EV_LET_GO
 * alone), by writers all trusted (fanotify): explained by their logs
 * without a record (see EV_LET_GO). 0: judged as a write. */
static int let_go_explained(watcher *w, mtm_session *ss, const pend *p)
{
	int explained = w->kind == W_FANOTIFY && !p->many && p->npid > 0 && (p->kinds & EV_LET_GO) &&
	                !(p->kinds & EV_MODIFY);
	for (int j = 0; j < p->npid && explained; j++)
		explained = trusted(w, ss, p->pid[j]);
	return explained;
}

/* p's pids added to q's (past PEND_PIDS: many). */
static void pend_merge(pend *q, const pend *p)
{
	for (int i = 0; i < p->npid && !q->many; i++) {
		int seen = 0;
		for (int j = 0; j < q->npid && !seen; j++)
			seen = q->pid[j] == p->pid[i];
		if (!seen && q->npid < PEND_PIDS)
			q->pid[q->npid++] = p->pid[i];
		else if (!seen)
			q->many = 1;
	}
}

/* An opener heard (FAN_OPEN of a file of the tree by a process with no
 * log): looked at at the next look. Past OPENERS_MAX, a sweep of every
 * process instead. */
static void opener_add(watcher *w, int32_t pid)
{
	for (size_t i = 0; i < w->openers.n; i++)
		if (VEC_AT(&w->openers, opener, i).pid == pid) {
			VEC_AT(&w->openers, opener, i).fresh = 1;
			return;
		}
	opener *o = w->openers.n < OPENERS_MAX ? vec_push(&w->openers) : NULL;
	if (!o) {
		w->opens_lost = 1;
		return;
	}
	o->pid = pid;
	o->fresh = 1;
}

/* path held by pid: added to m (path -> pend of the pids). */
static int held_put(pathmap *m, const char *path, int32_t pid)
{
	pend *q = pathmap_get(m, path);
	if (!q) {
		if (!(q = calloc(1, sizeof *q)) || pathmap_put(m, path, q)) {
			free(q);
			return ENOMEM;
		}
	}
	const pend one = {.npid = 1, .pid = {pid}};
	pend_merge(q, &one);
	return 0;
}

/* The files of the tree pid holds for writing, added to m, asked of it
 * through /proc: its fds open for writing (the mode of a /proc/PID/fd link
 * says how its file is open: S_IWUSR for writing) and its shared mappings
 * (any: one made read-only through an fd open for writing may be made
 * writable later). Named as the kernel names them now (a file renamed
 * since its open is found under its new name). *any: 1 if it holds one. */
static int holds_read(watcher *w, int32_t pid, pathmap *m, int *any)
{
	char p[64], link[PATH_MAX + 1];
	int rc = 0;
	snprintf(p, sizeof p, "/proc/%d/fd", (int)pid);
	DIR *d = opendir(p);
	if (!d)
		return 0; /* gone: holds nothing any more */
	w->probes++;
	struct dirent *de;
	while (!rc && (de = readdir(d))) {
		struct stat lst;
		ssize_t n;
		if (de->d_name[0] < '0' || de->d_name[0] > '9' ||
		    fstatat(dirfd(d), de->d_name, &lst, AT_SYMLINK_NOFOLLOW) || !(lst.st_mode & S_IWUSR) ||
		    (n = readlinkat(dirfd(d), de->d_name, link, sizeof link - 1)) <= 0)
			continue;
		link[n] = 0;
		const char *rel = in_tree(w, link);
		if (rel && *rel && !session_outside_tree(rel) && !(rc = held_put(m, rel, pid)))
			*any = 1;
	}
	closedir(d);
	snprintf(p, sizeof p, "/proc/%d/maps", (int)pid);
	FILE *f = fopen(p, "re");
	char line[PATH_MAX + 256];
	while (!rc && f && fgets(line, sizeof line, f)) {
		char perms[8];
		int at = 0;
		/* (a line longer than the buffer: its rest does not parse) */
		if (sscanf(line, "%*x-%*x %7s %*x %*x:%*x %*u %n", perms, &at) != 1 || !at || perms[3] != 's')
			continue;
		char *path = line + at;
		path[strcspn(path, "\n")] = 0;
		const char *rel = in_tree(w, path);
		if (rel && *rel && !session_outside_tree(rel) && !(rc = held_put(m, rel, pid)))
			*any = 1;
	}
	if (f)
		fclose(f);
	return rc;
}

/* The opens were lost (ofd's queue overflowed, or too many openers): every
 * process with no log is asked what it holds, and one that holds a file of
 * the tree is an opener from now on. (~0.1 ms a process: only then.) */
static int sweep_holds(watcher *w, mtm_session *ss, pathmap *m)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	int rc = 0;
	struct dirent *de;
	w->opens_lost = 0;
	while (!rc && (de = readdir(d))) {
		int32_t pid = (int32_t)atoi(de->d_name), any = 0;
		if (pid <= 0 || pid == w->self || session_pid_traced(ss, pid))
			continue;
		rc = holds_read(w, pid, m, &any);
		if (!rc && any)
			opener_add(w, pid);
	}
	closedir(d);
	return rc;
}

/* A look: each opener is asked what it holds (holds_read), and held_w
 * becomes the files of the tree they hold for writing or map; at the
 * barrier (final, cs), those are compared whole (and, compared ahead
 * perhaps before a write that makes no event, again next time). An opener
 * that holds nothing is forgotten, but only at a look after the first that
 * saw it: an open's event is queued before its fd is installed. Before the
 * barrier to spread the work; only the barrier's look says who is traced
 * (a log found since). Costs a look at /proc per opener, whatever it read
 * (a backup reading the tree by the thousand: one process). */
static int look_held(watcher *w, mtm_session *ss, change_set *cs, int final)
{
	pathmap now = {0};
	int rc = 0;
	clock_gettime(CLOCK_MONOTONIC, &w->look_at);
	size_t kept = 0;
	for (size_t i = 0; i < w->openers.n; i++) {
		opener o = VEC_AT(&w->openers, opener, i);
		int any = 0;
		if (rc || (final && session_pid_traced(ss, o.pid)))
			continue;
		rc = holds_read(w, o.pid, &now, &any);
		if (any || o.fresh)
			VEC_AT(&w->openers, opener, kept++) = (opener){o.pid, 0};
	}
	w->openers.n = kept;
	if (!rc && w->opens_lost)
		rc = sweep_holds(w, ss, &now);
	pathmap_free(&w->held_w, free);
	w->held_w = now;
	for (size_t i = 0; final && !rc && i < w->held_w.cap; i++) {
		const char *path = w->held_w.slots[i].key;
		if (!path)
			continue;
		const file_change *fc = pathmap_get(&cs->files, path);
		if (!(fc && fc->whole))
			rc = mark_whole(cs, path);
		if (!rc && w->marked)
			rc = carry(w, path);
	}
	return rc;
}

/* A write explained by the logs (so far): kept with its writers until the
 * barrier has looked at their code changes. p is taken. */
static int keep_explained(watcher *w, change_set *cs, const char *path, pend *p)
{
	pend *q = pathmap_get(&w->explained, path);
	if (!q) {
		if (pathmap_put(&w->explained, path, p)) {
			free(p);
			return ENOMEM;
		}
		return 0;
	}
	pend_merge(q, p);
	free(p);
	return q->many ? mark_whole(cs, path) : 0;
}

/* Judges the events gathered so far against the logs read into cs. Before
 * the barrier (!final), a write the logs do not name yet stays pending (its
 * record may still come), and a write they explain is kept for the
 * barrier's last look (keep_explained); what is decided (a namespace change,
 * metadata, a writer that is not trusted) goes into cs at once: the
 * barrier's pause is left only the events that came after. */
static int judge_map(watcher *w, mtm_session *ss, change_set *cs, int final, pathmap *m)
{
	pathmap keep = {0};
	int rc = 0;
	for (size_t i = 0; i < m->cap; i++) {
		const char *path = m->slots[i].key;
		pend *p = m->slots[i].val;
		if (!path)
			continue;
		/* a namespace change at the path or above: listed and read whole anyway */
		if (rc || at_or_under(&cs->ns, path)) {
			free(p);
			continue;
		}
		if (p->kinds & EV_NS)
			rc = change_set_mark(&cs->ns, path);
		if (!rc && (p->kinds & EV_ATTRIB) && !pathmap_get(&cs->meta, path) && !pathmap_get(&cs->files, path))
			rc = change_set_mark(&cs->meta, path);
		if (!rc && (p->kinds & EV_LET_GO)) {
			if (let_go_explained(w, ss, p)) {
				/* kept for the barrier's look at its writers' code */
				rc = keep_explained(w, cs, path, p);
				continue;
			}
			p->kinds = (uint8_t)((p->kinds & ~EV_LET_GO) | EV_MODIFY);
		}
		file_change *fc = pathmap_get(&cs->files, path);
		if (rc || !(p->kinds & EV_MODIFY) || (fc && fc->whole)) {
			/* compared ahead, before this write perhaps: again next time */
			if (!rc && w->marked && !p->early && (p->kinds & EV_MODIFY) && fc && !explained_by(w, ss, fc, p))
				rc = carry(w, path);
			free(p);
			continue;
		}
		if (!fc && !final) {
			p->kinds = EV_MODIFY;
			if ((rc = pathmap_put(&keep, path, p)))
				free(p);
			continue;
		}
		/* the logs name the bytes a traced process wrote through the C
		 * library; a writer that is not traced, or that may make system
		 * calls of its own (or inotify's, which could be anyone) may have
		 * written others: the whole file is compared */
		if (explained_by(w, ss, fc, p)) {
			rc = keep_explained(w, cs, path, p);
		} else if (w->marked && !p->early) {
			/* written after the checkpoint was asked for, while it compares
			 * ahead: in the next one (the logs' bytes are in this one) */
			rc = carry(w, path);
			free(p);
		} else {
			rc = mark_whole(cs, path);
			free(p);
		}
	}
	pathmap_free(m, NULL);
	*m = keep;
	return rc;
}

/* The events noted before the mark first (w->early: what they say is in
 * this checkpoint), then the others. */
static int judge(watcher *w, mtm_session *ss, change_set *cs, int final)
{
	int rc = w->marked ? 0 : apply_carry(w, cs);
	if (!rc && w->early.n)
		rc = judge_map(w, ss, cs, final, &w->early);
	if (!rc)
		rc = judge_map(w, ss, cs, final, &w->pending);
	if (!rc)
		rc = look_held(w, ss, cs, final);
	return rc;
}

int watch_prejudge(watcher *w, mtm_session *ss, change_set *cs)
{
	watch_drain(w);
	return judge(w, ss, cs, 0) ? mtm_set_error(ENOMEM, "session") : 0;
}

int watch_mark(watcher *w, mtm_session *ss, change_set *cs, pathmap *written)
{
	watch_drain(w);
	/* a held event came before the mark: resolved later it would be taken
	 * for one after it (carried to the next checkpoint) */
	if (w->kind == W_FANOTIFY)
		fan_settle(w);
	if (judge(w, ss, cs, 0))
		return mtm_set_error(ENOMEM, "session");
	/* writes whose records have not come yet: compared ahead too, in case
	 * the barrier finds no record to explain them. They are kept apart
	 * from the events that come after the mark. */
	for (size_t i = 0; i < w->pending.cap; i++) {
		const char *path = w->pending.slots[i].key;
		pend *p = w->pending.slots[i].val;
		if (path)
			p->early = 1;
		if (path && (p->kinds & EV_MODIFY) && !pathmap_get(written, path) && pathmap_put(written, path, (void *)1))
			return mtm_set_error(ENOMEM, "session");
	}
	pathmap_free(&w->early, free); /* (empty: the last barrier judged them) */
	w->early = w->pending;
	memset(&w->pending, 0, sizeof w->pending);
	w->marked = 1;
	return 0;
}

int watch_apply(watcher *w, mtm_session *ss, change_set *cs)
{
	watch_drain(w);
	if (w->kind == W_FANOTIFY)
		fan_settle(w); /* (the events read while the inodes loaded are of this interval) */
	assert(!w->stash_len && !w->held.n);
	/* (from here, until the next drain, what watch_read_on stashes is of
	 * the next interval) */
	if (w->blind)
		change_set_scan(cs, w->blind);
	if (w->lost) {
		if (w->lost == w->lost_why) {
			memcpy(w->lost_told, w->lost_why, sizeof w->lost_told);
			w->lost = w->lost_told;
		}
		change_set_scan(cs, w->lost);
		w->lost = NULL;
	}
	int rc = judge(w, ss, cs, 1);
	/* a writer trusted before the barrier whose code changed since (its
	 * log, read now, says so): what it wrote is compared after all */
	int revoked = 0;
	for (int i = 0; i < w->nmemo; i++)
		if (w->memo[i].trusted && session_pid_code_changed(ss, w->memo[i].pid))
			w->memo[i].trusted = 0, revoked = 1;
	for (size_t i = 0; revoked && i < w->explained.cap && !rc; i++) {
		const char *path = w->explained.slots[i].key;
		const pend *p = w->explained.slots[i].val;
		int ok = 1;
		for (int j = 0; path && j < p->npid && ok; j++)
			ok = trusted(w, ss, p->pid[j]);
		if (path && !ok)
			rc = mark_whole(cs, path);
	}
	pathmap_free(&w->pending, free);
	memset(&w->pending, 0, sizeof w->pending);
	pathmap_free(&w->early, free);
	memset(&w->early, 0, sizeof w->early);
	pathmap_free(&w->explained, free);
	memset(&w->explained, 0, sizeof w->explained);
	w->nmemo = 0; /* a new interval */
	w->marked = 0;
	free(w->inodes); /* this checkpoint's files: loaded again when needed */
	w->inodes = NULL;
	w->n_inodes = 0;
	w->inodes_loaded = 0;
	w->inodes_failed = 0;
	clock_gettime(CLOCK_REALTIME, &w->inodes_since);
	return rc ? mtm_set_error(ENOMEM, "session") : 0;
}

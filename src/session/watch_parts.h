/*
 * watch_parts.h — the session's watcher (watch.h): changes in the tree that
 * no traced process's log explains. Its parts (watch_*.c) share this
 * header: the watcher's state and what one part calls of another, each
 * calling only those listed before it (watch_start.c, start and stop, all
 * of them).
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
#ifndef MTM_SESSION_WATCH_PARTS_H
#define MTM_SESSION_WATCH_PARTS_H
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
#define HANDLE_KEY_LEN (2 * (sizeof(fsid_t) + sizeof(int) + MAX_HANDLE_SZ) + 1)

/* watch_base.c */
void held_drop(vec *held);
void dircache_free(void *p);
void dircache_clear(watcher *w);
int note(watcher *w, const char *path, int kind, int32_t pid);
const char *in_tree(const watcher *w, const char *abs);
int64_t elapsed_ns(const struct timespec *since);
int mark_whole(change_set *cs, const char *path);
int carry(watcher *w, const char *path);
void pend_merge(pend *q, const pend *p);
/* watch_queue.c */
size_t fan_count(const unsigned char *buf, size_t n);
size_t queued_units(const watcher *w, int fd);
int read_queued(watcher *w, int fd, int (*take)(watcher *w, size_t n));
/* watch_handle.c */
void handle_key(char *key, const fsid_t *fsid, const struct file_handle *fh);
int mark_fd(const watcher *w, const fsid_t *fsid);
int open_handle(const watcher *w, int mfd, const struct file_handle *fh);
const char *fan_dir(watcher *w, const fsid_t *fsid, const struct file_handle *fh);
/* watch_inodes.c */
int linked_into_tree(watcher *w, const fsid_t *fsid, const struct file_handle *fh, int fresh);
/* watch_opens.c */
int opener_fresh(const watcher *w, int32_t pid);
void opener_add(watcher *w, int32_t pid);
int look_held(watcher *w, mtm_session *ss, change_set *cs, int final);
/* watch_event.c */
int fan_event(watcher *w, const unsigned char *ev, size_t len);
/* watch_fan.c */
int fan_start(watcher *w);
/* watch_ino.c */
int ino_add_tree(watcher *w, const char *rel);
int ino_event(watcher *w, const struct inotify_event *e);
int ino_start(watcher *w);
/* watch_drain.c */
void fan_settle(watcher *w);
#endif

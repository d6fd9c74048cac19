/*
 * watch.h — the session's watcher: what changes in the tree that the
 * interposer's logs do not explain (another shell, an editor, a daemon, a
 * static program, raw system calls, another user).
 *
 * fanotify on the tree's file systems where the session may use it (it
 * reports the writer's pid: a write by a process that is not traced, or
 * that has no record for the file, marks the path); otherwise inotify on
 * every directory of the tree (no pid: every file written is compared by
 * its blocks' hashes). A marked path is compared at the next checkpoint,
 * never trusted; a lost event (queue overflow, watch limit) makes the next
 * checkpoint scan and say why. See docs/SESSION.md.
 */
#ifndef MTM_SESSION_WATCH_H
#define MTM_SESSION_WATCH_H
#include <stdint.h>
#include "util/pathmap.h"

struct mtm_session;
struct change_set;
typedef struct watcher watcher;

/* Starts watching ss's tree (METAMORI_WATCH=fanotify|inotify|off chooses;
 * default: fanotify, else inotify). Never fails the session: a watcher
 * that cannot start leaves ss->watch NULL with a reason in *why, and the
 * session then scans at every checkpoint. */
int watch_start(struct mtm_session *ss, const char **why);
void watch_stop(watcher *w);
/* The descriptor to poll, -1 if none. */
int watch_fd(const watcher *w);
/* "fanotify" or "inotify". */
const char *watch_kind(const watcher *w);
/* Reads the queued events (the session's loop, and the barrier). */
int watch_drain(watcher *w);
/* In long work that cannot judge events (a scan fallback's walk, after the
 * barrier judged): the queue read on, if 2 ms passed since it last was,
 * and the events kept to be judged, in order, at the next drain (as if the
 * kernel's queue had held them). fanotify only: inotify's queue waits. */
void watch_read_on(watcher *w);
/* The same, only when the kernel's queue holds more than a quarter of what
 * it may (a periodic checkpoint's record, tracked.c; the compare ahead). */
void watch_read_on_if_filling(watcher *w);
/* In the barrier, after the logs were read into cs: the events since the
 * last barrier that the logs do not explain become changes of cs (a file to
 * compare whole, a path's metadata, a namespace change), or a reason to
 * scan. A write is explained only by a log naming the file and a writer
 * whose every write is logged (session_pid_trusted). 0 or an error. */
int watch_apply(watcher *w, struct mtm_session *ss, struct change_set *cs);
/* Before the barrier closes (the program still runs): the same for what
 * can be decided already, so that the barrier's pause is left only the
 * events that come after (and the writers whose code changed meanwhile). */
int watch_prejudge(watcher *w, struct mtm_session *ss, struct change_set *cs);
/* The same, for a checkpoint about to compare files ahead of the barrier
 * (session/ahead.c): the files written with no record yet are added to
 * written (path -> 1); from here until the barrier, a write to a file
 * compared whole that no log explains is carried over: the next
 * checkpoint compares that file whole again, and this one takes only the
 * bytes the logs name. */
int watch_mark(watcher *w, struct mtm_session *ss, struct change_set *cs, pathmap *written);
/* 1 if a write to path after the mark is left to the next checkpoint (the
 * stat cache row written now must not vouch for the file). */
int watch_carried(const watcher *w, const char *path);
/* 1 if the file at path is sure to be compared whole at the next checkpoint
 * whatever the logs say (inotify saw it written: inotify names no writer;
 * fanotify saw a writer the logs cannot vouch for, as judge_map will; or
 * it was carried over): its pre-copy would be read again, and written
 * ahead for nothing. A hint (0 when unsure): a file it misses is
 * pre-copied as before, one it names is read by the compare. */
int watch_compares_whole(watcher *w, struct mtm_session *ss, const char *path);
#endif

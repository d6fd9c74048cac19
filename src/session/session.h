/*
 * session.h — `metamori run`: the session that owns the store while a traced
 * program runs, holds the barrier, and turns the interposer's logs into
 * tracked checkpoints (protocol in track/protocol.h).
 *
 * Files (ROOT/.metamori/session/, mode 0700):
 *   lock   flock(LOCK_EX) by the live session for its whole life: the one
 *          proof that a session is running (a dead session's files are stale)
 *   ctl    struct mtm_ctl, mapped by every traced process
 *   sock   unix socket: checkpoint requests from other processes (client.c)
 *   log.PID  the interposer's per-process logs
 *
 * Split: session.c (liveness, the socket's address, idle work), start.c
 * (start and stop, stale cleanup), barrier.c (the logs and the barrier),
 * change_set.c (what changed), watch_*.c (what no log explains), precopy.c
 * and slots.c (blocks copied ahead), prewrite.c (written ahead), hooks.c
 * (what the engine borrows), tracked.c (a checkpoint from a change set; its
 * parts in tctx.h), run.c (mtm_run; its parts in run.h), join.c (a second
 * run joins), client.c (requests and the wire format).
 */
#ifndef MTM_SESSION_H
#define MTM_SESSION_H
#include <poll.h>
#include <stdint.h>
#include <sys/types.h>
#include "metamori.h"
#include "checkpoint/checkpoint.h"
#include "store/pack.h"
#include "store/lineage.h"
#include "store/store.h"
#include "util/keymap.h"
#include "util/pathmap.h"
#include "util/strvec.h"

#define MTM_ENOSESSION (-30999) /* internal: no session is running for this store */

/* What the logs say changed since the last checkpoint. */
typedef struct file_change {
	vec ranges;        /* of {int64_t off, len} byte ranges written */
	int64_t trunc_min; /* smallest size truncated to, or -1 */
	int whole;         /* compare the whole file */
} file_change;

/* The steps of barrier_close after the gate closed, for
 * METAMORI_DEBUG_SESSION's breakdown of the pause (now_ns() times). */
typedef struct barrier_times {
	int64_t listed, waited, consumed; /* the logs listed, every live one's calls done, read */
	int64_t wait_max;                 /* the longest wait for one process's calls */
	int32_t wait_pid;                 /* whose */
	uint32_t nlive;                   /* logs of live processes */
	int64_t cpu0, nvcsw0, nivcsw0, minflt0; /* the session's thread at the gate's closing */
} barrier_times;
/* The calling thread's CPU time (ns), voluntary and involuntary context
 * switches and minor faults so far: was the pause's thread preempted? */
void thread_usage(int64_t *cpu, int64_t *nvcsw, int64_t *nivcsw, int64_t *minflt);

typedef struct change_set {
	pathmap files;     /* path -> file_change* */
	pathmap meta;      /* path -> non-NULL */
	pathmap ns;        /* path -> non-NULL */
	int scan;          /* only a full scan is safe */
	const char *scan_why; /* for the log: why */
} change_set;
void change_set_free(change_set *cs);
/* path's entry in cs->files (made if missing), or NULL (no memory). */
file_change *change_set_file(change_set *cs, const char *path);
/* Adds path to one of cs's sets (0 or ENOMEM). */
int change_set_mark(pathmap *m, const char *path);
/* The checkpoint must scan; the first reason given is the one said. */
void change_set_scan(change_set *cs, const char *why);
/* 1 for paths that are never part of the tree (the store, a restore's
 * temporaries). */
int session_outside_tree(const char *path);

/* One interposer log the session knows about. */
typedef struct log_slot {
	char name[32];
	int fd;
	int64_t dev, ino;
	struct mtm_log_hdr *hdr;
	size_t maplen;
	int32_t pid;
	int dead;
	int code;            /* MTM_REC_CODE in this interval: its code changed (bypass.c) */
	uint64_t peek_tail;  /* records before this offset were seen by barrier_peek */
} log_slot;

typedef struct { int32_t pid; char *path; } sticky_whole;
/* A process every checkpoint scans for while it lives. Its log's lock is
 * not proof enough: a static program may close the descriptor it inherited
 * (DMTCP's restarter closes them all), so the process itself is looked for
 * (pid and start time, /proc/PID/stat). */
typedef struct { int32_t pid; int64_t start; } sticky_scanner;
/* The start time of process pid (clock ticks since boot), or -1 if it is
 * gone (or a zombie). */
int64_t proc_start_time(int32_t pid);

/* What bypass.c found in a process image: whether it may make system
 * calls the interposer does not see. */
typedef struct { int32_t pid; int bypass; int64_t start; uint64_t sig; } code_verdict;

/* The block hashes of a file compared whole at checkpoint `at` (its
 * content there): the next compare reads and hashes it in the barrier and
 * copies out only the blocks that differ, not the whole file. */
typedef struct block_hashes {
	int64_t at, dev, ino, n;
	uint64_t *h;
} block_hashes;
void block_hashes_free(void *p);

typedef struct mtm_session {
	mtm_store *s;
	char *dir;               /* absolute ROOT/.metamori/session */
	int dirfd, lockfd, listenfd;
	struct mtm_ctl *ctl;
	vec logs;                /* of log_slot */
	vec sticky;              /* of sticky_whole: compared at every checkpoint while the pid lives */
	vec sticky_scan;         /* of sticky_scanner: every checkpoint scans while it lives */
	pathmap hashes;          /* path -> block_hashes*: files compared whole */
	struct scan_reader *ahead_rd; /* what compares them ahead reads with (ahead.c), once it has */
	int force_scan;          /* the next checkpoint must scan (baseline, failed checkpoint) */
	const char *force_why;   /* and why */
	int64_t gate_ns;         /* when barrier_close closed the gate (the pause starts) */
	barrier_times bt;        /* and its steps after that */
	const char *scan_why;    /* why the last checkpoint scanned (a static string) */
	int always_scan;         /* the program cannot be tracked (static): every checkpoint scans */
	const char *const *excludes;
	size_t n_excludes;
	int verbose;             /* a line on stderr per checkpoint */
	int debug;               /* $METAMORI_DEBUG_SESSION: 1: every record and pass on stderr; 2
	                          * ("phases"): only a line per checkpoint (a busy program's records
	                          * would be millions of lines) */
	int wal_frames;          /* frames in the index's WAL after the last commit (0: nothing to copy) */
	int wal_copied;          /* the WAL was copied whole since: session_wal_restart starts it over */
	int wal_end;             /* frames in the WAL after the last commit, copied or not (0: none yet) */
	int wal_last;            /* frames the last commit that added to the WAL added */
	/* the pre-copy made while the program runs, taken over by the next
	 * checkpoint (tracked.c) */
	change_set bg_cs;        /* the records the passes peeked */
	pathmap bg_pre;          /* path -> precopy* */
	uint64_t bg_held, bg_read, bg_limit; /* bytes held, read this interval; 0 limit: not computed yet */
	int64_t bg_last_ns;      /* when the last pass ran */
	int bg_wait_ms;          /* until the next: longer while passes find nothing */
	int bg_quiet;            /* the last pass found nothing new (prewrite.c then syncs what it wrote) */
	struct parent_hashes *bg_ph; /* the head's hashes of the blocks copied */
	struct prewrite *pw;     /* the pre-copied blocks written into the pack ahead (prewrite.c) */
	struct lowprio *low;     /* the thread the periodic checkpoints' record and commit run on (tracked.c) */
	int low_prio;            /* its priority (util/lowprio.h); 0: none, they run on the session's thread */
	int low_tried;           /* low_prio read, the thread started if it could be */
	struct watcher *watch;   /* what changes that no log explains (watch.h); NULL: none */
	const char *watch_why;   /* no watcher: why (then every checkpoint scans, unless switched off) */
	int watch_off;           /* METAMORI_WATCH=off (benchmarks): the logs alone are trusted */
	vec code_seen;           /* of code_verdict, by pid (bypass.c) */
	uint64_t dispatch_trusted; /* writers trusted for their dispatch flag since the last report */
	/* The stat cache rows of the session's committed checkpoints, not
	 * written yet (ckpt_hooks.sc_kept): path -> sc_row* (ver 0: deleted).
	 * Written when idle, when a checkpoint scans, past SESSION_SC_KEPT_MAX
	 * rows, and when the session ends (session_sc_write). */
	pathmap sc_kept;
	/* the captures' bytes of a checkpoint, bump-allocated (capture.c):
	 * kept between checkpoints, so that a pause makes no malloc per file
	 * (W2: 200 of 4 KiB, a sixth of the collect's CPU with their page
	 * faults) */
	unsigned char *cap_slab;
	int sc_in_tx;            /* sc_kept is written into the open transaction: emptied once it commits */
} mtm_session;

/* 1 if traced process pid may change files without its interposer
 * recording it (code of its own that makes system calls, code made at run
 * time, or it cannot be looked at); 0 if every change it makes goes
 * through the C library's calls. Cached per process image (bypass.c). */
int session_pid_bypasses(mtm_session *ss, int32_t pid);
/* 1 if the log's process is gone (nobody holds its shared lock; bypass.c). */
int session_log_dead(log_slot *l);
void session_forget_pid(mtm_session *ss, int32_t pid);
/* 1 if pid's writes are all in its log: traced (a log), alive, no code
 * change in this interval and no code of its own that bypasses the
 * interposer (barrier.c). */
int session_pid_trusted(mtm_session *ss, int32_t pid);
/* 1 if pid has a log the session has found (it may be dead). */
int session_pid_traced(const mtm_session *ss, int32_t pid);
/* 1 if pid's log said its code changed in this interval (MTM_REC_CODE). */
int session_pid_code_changed(mtm_session *ss, int32_t pid);

/* Creates ROOT/.metamori/session (lock, control file, socket), cleaning up a
 * dead session's files. MTM_EBUSY if a live session already has it. */
int session_start(mtm_store *s, const char *const *excludes, size_t n_excludes, mtm_session **out);
void session_stop(mtm_session *ss);
/* 1 if a live session holds the store's session lock (any process). */
int session_alive(mtm_store *s);
/* What the checkpoint engine borrows (checkpoint.h): a session's own
 * checkpoint (ss) continues after the blocks it wrote ahead and takes the
 * parent hashes its passes looked up; anyone else's (ss NULL) only starts a
 * pack of its own while a session runs. */
ckpt_hooks session_ckpt_hooks(mtm_session *ss);
/* MTM_EBUSY with a clear message if a session is running: for in-place
 * restores, which would change the tree under the traced program. */
int session_refuse_restore(mtm_store *s);

struct sockaddr_un;
/* The socket's address: dir/sock, or through /proc/self/fd/DIRFD when long. */
int session_sock_addr(int dirfd, const char *dir, struct sockaddr_un *sa);

/* Before the barrier: the records so far into cs (zeroed by the caller, or
 * filled by earlier peeks), remembering where each log was; the barrier
 * reads only what follows. delta, if given, also gets the records this peek
 * read (without their side effects). */
int barrier_peek(mtm_session *ss, change_set *cs, change_set *delta);

/* The pre-copy (precopy.c): blocks read out of the page cache before the
 * barrier, per path, valid for the inode it names. */
typedef struct precopy precopy;
void precopy_free(void *p);
/* The copy of block b of path (that inode), or NULL. */
const unsigned char *precopy_get(const pathmap *pre, const char *path, int64_t dev, int64_t ino, int64_t b);
/* The fd a pass opened path's file with (the inode the copy is of), kept
 * for the barrier: the caller's now, or -1. Whether the path still names
 * that file is the caller's to judge (collect's live_open: no namespace
 * change at the path or above it in the interval, logged or watched). */
int precopy_take_fd(pathmap *pre, const char *path);
/* Closes the fd kept for path, if any (a namespace change there: a file
 * removed is not kept from the disk until the checkpoint). */
void precopy_drop_fd(pathmap *pre, const char *path);
/* side, if given, is offered each file the records name first: 1 if it
 * took it (then its copies, if any, are dropped), 0 if not, <0 an error. */
typedef int (*precopy_side)(mtm_session *ss, void *arg, const char *path, const file_change *fc);
/* One pass: peeks the records since the last one into cs and reads the
 * blocks they name into pre (path -> precopy*), replacing older copies;
 * held: bytes in pre; read: bytes read since the last checkpoint. Past limit
 * (either), blocks are no longer copied and older copies of the blocks named
 * are dropped. 0, or an error after which pre is still right. */
int precopy_pass(mtm_session *ss, change_set *cs, pathmap *pre, uint64_t *held, uint64_t *read, uint64_t limit,
                 precopy_side side, void *side_arg);
/* A pre-copy slot: the block's MTM_BLOCK bytes, their XXH3-64, and a
 * meta word for prewrite.c: SLOT_WHOLE if the block was whole (not a
 * file's short last block) and not all zeros when copied, the only blocks
 * written ahead; once written, the index + 1 of its record
 * (SLOT_REC_MASK), its place in it (bits 32-39) and the generation of
 * the records (bits 40-62: a slot that outlives them, after a checkpoint
 * failed to begin, never names a later record by its index). A later copy
 * into the slot resets it. */
#define SLOT_LEN (MTM_BLOCK + 16)
#define SLOT_WHOLE (1ull << 63)
#define SLOT_REC_MASK 0xffffffffull
#define SLOT_GEN_SHIFT 40
#define SLOT_GEN_MASK 0x7fffffull
static inline uint64_t *slot_meta(const unsigned char *slot)
{
	return (uint64_t *)(uintptr_t)(slot + MTM_BLOCK + sizeof(uint64_t));
}
typedef struct { int64_t b; unsigned char *slot; } pending_blk;
/* Slots of pc that are SLOT_WHOLE and not written ahead yet: how many, and
 * appended to out (pending_blk, unsorted); mark: all now are (or will not be). */
size_t precopy_unwritten(const precopy *pc);
int precopy_each_unwritten(const precopy *pc, vec *out);
void precopy_mark_written(precopy *pc);

/* Writing ahead (prewrite.c): after a pass that copied `copied` bytes,
 * records for the whole blocks held that have none, once the passes find
 * the program quiet (1: more remain for the next tick); drain: before a
 * pass rewrites slots, until the writer's thread has written them;
 * slot_reused: a slot whose meta was old_meta is copied into again. */
int prewrite_tick(mtm_session *ss, uint64_t copied);
void prewrite_drain(mtm_session *ss);
void prewrite_slot_reused(mtm_session *ss, uint64_t old_meta);
/* For the checkpoint's pack writer (checkpoint.c): the records written
 * ahead in this interval, NULL if none can be used; their writer is closed. */
const pack_ahead *prewrite_ahead(mtm_session *ss);
/* 1 if the pre-copy slot was written ahead: its record (ahead_rec,
 * checkpoint.h) and place there. */
int prewrite_ref(mtm_session *ss, const unsigned char *slot, ahead_rec **rec, int *boff);
/* For METAMORI_DEBUG_SESSION: what was written and used this interval. */
void prewrite_report(mtm_session *ss, char *buf, size_t len);
/* After a checkpoint (the slots are gone): a new interval. */
void prewrite_reset(mtm_session *ss);
void prewrite_free(mtm_session *ss);

/* The parent's hashes of the blocks the passes copied, looked up along
 * (precopy.c): 1 and *out if block b of file_id is known at parent. */
typedef struct parent_hashes {
	mtm_id at;           /* the head they belong to (0: none yet) */
	lineage lin;         /* at's */
	pathmap fid;         /* path -> (file_id at `at`) + 1, or 1 when not a file there */
	pathmap ent;         /* path -> entry* at `at` (found there), for the checkpoint's collect */
	pathmap sc;          /* path -> sc_row* (ver 0: no row) of the files in ent, for the same */
	sqlite3_stmt *q_sc;  /* a stat cache row by path */
	keymap hash;         /* (file_id, blkno) -> the hash at `at` */
	int off;             /* a lookup failed: none until the head changes */
} parent_hashes;
int parent_hashes_get(const parent_hashes *ph, mtm_id parent, int64_t file_id, int64_t b, uint64_t *out);
void parent_hashes_free(parent_hashes *ph);
/* The parent's entry at path as the session's passes looked it up (for the
 * blocks they copied), while parent is still the head they looked at: a
 * copy in *out (entry_clear), 1; else 0 (look it up). Saves the collect a
 * lookup a touched file inside the pause. */
int parent_entry_get(const parent_hashes *ph, mtm_id parent, const char *path, entry *out);
/* The same for the stat cache row of a file whose entry they looked up: 1
 * if known (*row NULL: none), 0 (look it up). The rows the session writes
 * (session_sc_write) drop what they read. */
int parent_sc_get(const parent_hashes *ph, mtm_id parent, const char *path, const sc_row **row);
/* The parent's entry at path and its stat cache row looked up now, while
 * the program runs, for parent_entry_get and parent_sc_get in the barrier
 * (the compare ahead's files: ahead.c). Best effort. */
void parent_note_entry(mtm_session *ss, mtm_id parent, const char *path);
/* The block hashes of path's version at parent (the head), from its
 * blockhash row (kept by the scan that last read it whole): 1 and *out
 * (block_hashes_free; dev and ino -1: any inode), 0 when there is none.
 * For a file the session compares whole before it hashed it itself (its
 * first checkpoint): without them every block read is held. */
int parent_file_hashes(mtm_session *ss, mtm_id parent, const char *path, block_hashes **out);
/* The session's passes while the program runs (run.c): when records came
 * since the last one. Returns the poll timeout until the next (ms), -1: none. */
int session_precopy_tick(mtm_session *ss);
/* How much a checkpoint may copy into memory (tracked.c). */
uint64_t capture_budget(void);
/* The barrier: close holds every traced modifying call and reads and
 * resets the logs into cs (zeroed by the caller, or filled by the peek);
 * post, if given, also gets what came after the peek (what changed during
 * the pre-copy). open releases. */
int barrier_close(mtm_session *ss, change_set *cs, change_set *post);
void barrier_open(mtm_session *ss);
/* After a checkpoint: forget dead processes (their logs and sticky records). */
void session_reap_logs(mtm_session *ss);

/* The session copies the index's WAL into the database itself, after it
 * has answered: when idle (SESSION_IDLE_MS without a request), or at once
 * past SESSION_WAL_MAX_FRAMES (64 MiB). idle = 0 only checks the bound.
 * When idle, it first merges its checkpoints' block_log rows into block. */
#define SESSION_IDLE_MS 1000
#define SESSION_WAL_MAX_FRAMES 16384
void session_wal_maintain(mtm_session *ss, int idle);
/* Idle, after session_wal_maintain: starts the copied WAL over (session.c). */
void session_wal_restart(mtm_session *ss);
/* After a checkpoint's answer: room in the WAL's file for the next
 * commits, made when short (io_sqlite_wal_short: a commit past the file's
 * end syncs the file system's journal too). Room for SESSION_WAL_ROOM_MIN
 * frames, or 4 commits as large as the last, up to SESSION_WAL_ROOM_MAX
 * (16 MiB: a larger commit, a scan's, grows the file as before). */
#define SESSION_WAL_ROOM_MIN 512
#define SESSION_WAL_ROOM_MAX 4096
void session_wal_reserve(mtm_session *ss);
/* Past this many rows kept (~150 bytes each), a checkpoint writes them in
 * its own commit. */
#define SESSION_SC_KEPT_MAX 16384
/* Writes the kept stat cache rows into the open transaction (sc_in_tx);
 * they are forgotten once it commits (ckpt_hooks.sc_kept, session.c). */
int session_sc_write(mtm_session *ss);

/* Serves one client connection: reads the request, checkpoints, replies;
 * 1 if it was a join: the connection is then a member's (join.c), kept open. */
int session_serve(mtm_session *ss, int client);
/* A connection to the live session's socket (waiting for one starting);
 * MTM_ENOSESSION if none is alive. */
int session_connect(mtm_store *s, int *out);

/* Joining a live session (join.c): a second `metamori run` on the tree
 * (mpirun starts one per rank) runs its program in the session instead of
 * failing. The joiner keeps its connection open while its program runs;
 * the session ends only when its own program and every member have ended. */
#define SESSION_JOIN_STATIC 1u /* the joiner's program cannot be traced: every checkpoint scans */
int session_join_request(int fd, unsigned flags);
/* Runs argv in the live session of s: MTM_ENOSESSION if there is none (or it
 * ended before it answered), else as mtm_run. */
int session_join_run(mtm_store *s, const char *preload, char *const argv[], int quiet, int *exit_status);
/* The session's members: add a joined connection, poll them (fills pf from
 * index 0, returns how many), and drop those that closed. */
typedef struct session_members { int *fd; size_t n, cap; } session_members;
int members_add(session_members *m, int fd);
size_t members_pollfds(const session_members *m, struct pollfd *pf);
void members_reap(session_members *m, const struct pollfd *pf);
void members_free(session_members *m);
/* From child.c, shared with the joiner: the program's environment (ours with
 * the interposer and the session added) and whether it can be traced. */
char **run_child_env(const char *preload, const char *session_dir, const char *root);
void run_child_env_free(char **env);
int run_is_untraceable_cmd(const char *argv0);
/* Forks and execs argv with env (prepare(arg) first, in the child: its
 * signal state). 0 and *out the pid once the program runs; an exec that
 * failed is reported as its errno in *exec_err (the child reaped) and as
 * the error "run: ARGV0". */
int run_fork_exec(char *const argv[], char **env, void (*prepare)(const void *), const void *arg, pid_t *out,
                  int *exec_err);
/* A tracked (or, when needed, scanned) consistent checkpoint. */
int session_tracked_checkpoint(mtm_session *ss, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out);
/* The same, but when nothing differs from the head nothing is recorded
 * (out->id = 0; `run --every` ticks while the program idles). */
int session_tracked_checkpoint_if_changed(mtm_session *ss, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out);
/* A checkpoint no one waits for (`run --every`, SIGUSR1), only_if_changed
 * as above: what it does while the program runs after the gate opened (the
 * record, the commit) runs on a thread of lower priority, the session's
 * waiting for it (ss->low; METAMORI_SESSION_NICE: a nice increment 1-19,
 * "idle" for SCHED_IDLE, "off" or 0 for none; SESSION_LOW_NICE when unset).
 * On a machine the program keeps busy, the session then takes mostly what
 * the program leaves idle, not a CPU from it. The pause is the session's
 * own thread's, at its own priority. */
#define SESSION_LOW_NICE 10
int session_tracked_checkpoint_periodic(mtm_session *ss, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out,
                                        int only_if_changed);
/* The same, and answer(arg, rc, info) as soon as the checkpoint is durable
 * (or failed) and the writer lock let go, before the session drops what it
 * held (the captures, the pre-copy's copies: ~0.7 ms for 200 files), so
 * that a client is answered sooner. info is NULL when rc != 0. */
typedef void (*session_answer_fn)(void *arg, int rc, const mtm_checkpoint_info *info);
int session_tracked_checkpoint_answer(mtm_session *ss, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out,
                                      session_answer_fn answer, void *arg);
/* mtm_checkpoint's entry: in the session process, a tracked checkpoint;
 * elsewhere, a request to the running session; MTM_ENOSESSION if none. */
int session_checkpoint(mtm_store *s, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out);
/* The same from path, without opening the store's index when a session
 * answers (its client need not pay for SQLite: ~0.5 ms of a W1 checkpoint).
 * MTM_ENOSESSION when none runs: then open the store and mtm_checkpoint. */
int session_checkpoint_at(const char *path, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out);
/* "checkpoint 3 (tracked, paused 0.4 ms): 1 added, ..." into buf; a scanned
 * one says why (ss->scan_why). */
const char *session_describe(char *buf, size_t len, const mtm_checkpoint_info *ci, const char *why);
#endif

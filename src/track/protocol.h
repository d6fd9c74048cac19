/*
 * protocol.h — what the interposer (libmetamori-preload.so, in every traced
 * process) and the session (`metamori run`) share.
 *
 * No sockets or threads in traced processes: everything goes through memory
 * mapped files under ROOT/.metamori/session/, so a traced process pays no
 * system call on its hot path, and what it recorded survives its death.
 *
 *   ctl        one struct mtm_ctl, created by the session, mapped by all
 *   log.PID    one per traced process that changed something: a header and
 *              an append-only list of records (what may have changed)
 *
 * The barrier. Every modifying call on the tree runs inside an "in-flight"
 * region:  enter: inflight++ (in the process's own log header), then if
 * ctl->gate is set: inflight--, futex-wait on ctl->gate until it is 0, retry;
 * ... the real call, then the record appended ...;  exit: inflight--, and if
 * ctl->gate is set, futex-wake &hdr->inflight. A checkpoint sets gate = 1
 * (seq_cst), lists the log files, waits until every live process's inflight
 * is 0, reads every log, resets the logs (tail = 0) and bumps ctl->epoch,
 * copies the dirty blocks out of the page cache, then sets gate = 0 and
 * futex-wakes &ctl->gate (FUTEX_WAKE, not private: the futex word is in a
 * MAP_SHARED file). Because records are only appended inside the in-flight
 * region, a log is stable while the gate is closed and inflight is 0.
 * A process that dies inside a call leaves inflight > 0; the session knows it
 * is dead because it no longer holds its shared flock on its log file.
 *
 * Records (all little-endian, each 8-byte aligned):
 *   struct mtm_rec header, then path_len bytes of path relative to the root
 *   (no leading '/', never under .metamori), zero-padded to a multiple of 8.
 *   The root directory itself has path_len 0 (META or NS on the tree's top).
 *   Paths are canonical: symlinks in the parent are resolved, so a change
 *   made through a symlinked directory is recorded under its real path.
 */
#ifndef MTM_TRACK_PROTOCOL_H
#define MTM_TRACK_PROTOCOL_H
#include <stddef.h>
#include <stdint.h>

#define MTM_TRACK_MAGIC 0x544d544du /* "MTMT" */
#define MTM_TRACK_VERSION 2
#define MTM_SESSION_DIR ".metamori/session"
#define MTM_LOG_CAPACITY (64u << 20) /* bytes of records per process log (sparse file) */

/* Environment set by `metamori run` for the traced command. */
#define MTM_ENV_SESSION "METAMORI_SESSION" /* absolute path of ROOT/.metamori/session */
#define MTM_ENV_ROOT "METAMORI_ROOT"       /* absolute path of the tracked tree */

struct mtm_ctl {
	uint32_t magic, version;
	uint32_t gate;        /* atomic: 1 while a checkpoint holds modifying calls */
	uint32_t scan_needed; /* atomic: set to 1 when something could not be tracked */
	uint64_t epoch;       /* atomic: bumped each time the logs are reset */
	uint32_t session_pid;
	uint32_t moved_in;    /* atomic: bumped by a traced process that moved something from outside
	                       * the tree into it: every interposer then looks again at its fds not in
	                       * its table (one may be open on that file: docs/TRACKING.md) */
};

struct mtm_log_hdr {
	uint32_t magic, version;
	int32_t pid;
	uint32_t inflight;    /* atomic: this process's modifying calls under way (futex word) */
	uint64_t tail;        /* atomic: bytes of records after the header */
	uint64_t epoch;       /* ctl->epoch when the records were started */
	uint64_t capacity;    /* bytes available for records after the header */
	uint32_t overflow;    /* atomic: 1 if a record did not fit (the session then scans) */
	uint32_t dispatch;    /* atomic: MTM_DISPATCH_ON while every thread of this process image
	                       * traps the system calls it makes outside the C library to the
	                       * interposer (syscall user dispatch), which records them: its writes
	                       * need no look at its code (session/bypass.c). Stored inside the
	                       * in-flight region once ctl->epoch has moved past the one read when
	                       * it was turned on (never during that interval); 0 before an exec,
	                       * and as soon as it is lost (then with a MTM_REC_CODE) */
	uint64_t peeked;      /* atomic: the session may have read the records before this offset
	                       * while the process ran (barrier_peek); such a WRITE record is not
	                       * extended in place any more, or not only (see struct mtm_rec) */
};
#define MTM_DISPATCH_ON 0x44535544u /* "DUSD" */
#define MTM_LOG_HDR_SIZE 64 /* records start here */

enum mtm_rec_type {
	MTM_REC_WRITE = 1,   /* a = offset, b = length: these bytes may have changed */
	MTM_REC_TRUNC = 2,   /* a = new size (ftruncate, truncate, O_TRUNC: a = 0) */
	MTM_REC_WHOLE = 3,   /* compare the whole file. a = 1: "sticky": compare it at every
	                      * checkpoint until a MTM_REC_RELEASE for the path from the same
	                      * process, or the process's death (writable stdio streams,
	                      * shared writable mmaps: writes the interposer cannot see) */
	MTM_REC_META = 4,    /* permissions, owner or times changed */
	MTM_REC_NS = 5,      /* an entry was created, removed, renamed or replaced at path:
	                      * rescan it (and its subtree if it is a directory) and its parent */
	MTM_REC_SCAN = 6,    /* no path: the next checkpoint scans the whole tree. a = 1: sticky,
	                      * every checkpoint scans while this process lives (io_uring, a
	                      * child that is static or was started without the interposer).
	                      * a = 2: the sticky SCAN of this pid ends: the process is traced
	                      * again (restarted by DMTCP out of the static mtcp_restart, with
	                      * the interposer of its image attached to the session) */
	MTM_REC_RELEASE = 7, /* the sticky WHOLE for path ends (fclose, munmap) */
	MTM_REC_CODE = 8,    /* no path: this process's code changed in this interval (an
	                      * executable mapping made or changed, dlclose, an exec in the
	                      * same process): the session cannot look at the code that ran,
	                      * so what the process wrote in this interval is compared whole
	                      * wherever the watcher saw it write (session/bypass.c) */
};

/* A record is reserved (tail moved past it) before it is written, so the
 * session, which reads logs while the program runs too, takes only records
 * whose seal is MTM_SEAL(ctl->epoch): the seal is stored last (release), and
 * a record left from before the log's last reset has an older one. A WRITE
 * record may grow in place with its thread's next adjacent write; one at an
 * offset below hdr->peeked is then recorded again, as a new record, after a
 * seq_cst fence between the growth and the load of peeked (the session
 * stores peeked, fences, then reads: one of the two sees the other). */
struct mtm_rec {
	uint16_t type;
	uint16_t path_len;
	uint32_t seal;
	uint64_t a, b;
};
#define MTM_SEAL(epoch) ((uint32_t)(epoch) * 2u + 1u)
#define MTM_REC_SIZE(path_len) (sizeof(struct mtm_rec) + (((path_len) + 7u) & ~7u))

/* The layouts above are shared through MAP_SHARED files by processes built
 * apart (the interposer is built with other flags, and a traced 32-bit-clean
 * program maps the same bytes): they must not depend on the compiler's
 * padding. Atomic and futex words must be naturally aligned. */
_Static_assert(sizeof(struct mtm_ctl) == 32, "mtm_ctl layout");
_Static_assert(offsetof(struct mtm_ctl, gate) == 8 && offsetof(struct mtm_ctl, epoch) == 16 &&
               offsetof(struct mtm_ctl, session_pid) == 24, "mtm_ctl field offsets");
_Static_assert(sizeof(struct mtm_log_hdr) == 56 && sizeof(struct mtm_log_hdr) <= MTM_LOG_HDR_SIZE,
               "mtm_log_hdr must fit before the records");
_Static_assert(offsetof(struct mtm_log_hdr, inflight) == 12 && offsetof(struct mtm_log_hdr, tail) == 16 &&
               offsetof(struct mtm_log_hdr, overflow) == 40 && offsetof(struct mtm_log_hdr, dispatch) == 44 &&
               offsetof(struct mtm_log_hdr, peeked) == 48,
               "mtm_log_hdr field offsets");
_Static_assert(sizeof(struct mtm_rec) == 24 && MTM_LOG_HDR_SIZE % 8 == 0, "records are 8-byte aligned");
_Static_assert(offsetof(struct mtm_rec, seal) == 4 && offsetof(struct mtm_rec, a) == 8, "mtm_rec field offsets");
_Static_assert(MTM_LOG_CAPACITY % 8 == 0, "log capacity in whole records");
#endif

/*
 * preload.h — libmetamori-preload.so, the interposer `metamori run` puts into
 * every traced process (LD_PRELOAD). It wraps the libc calls that change files
 * under the tracked tree and appends what may have changed to the process's
 * log (protocol.h), inside the in-flight region that the checkpoint barrier
 * waits on. docs/TRACKING.md explains the design and what it cannot see.
 *
 * Invariants:
 *  - Every real function is reached through one table (calls.def), resolved
 *    lazily with dlsym(RTLD_NEXT): wrappers work before our constructor ran.
 *    Our own code calls the real functions only (REAL(x)), never a wrapper.
 *  - A call on an untracked fd costs one array lookup: g_fds[fd] is NULL.
 *    fd entries come from our own slab: no malloc (only realpath, used
 *    when chmod & co are given a path ending in a symlink, may allocate).
 *  - Records are appended only between enter() and leave(), after the real
 *    call returned, so a log is complete whenever the gate is closed and
 *    inflight is 0.
 *  - Paths in records are canonical (the kernel's /proc/self/fd view, or the
 *    canonical parent + the final name), relative to the root, never under
 *    .metamori. The root itself has the empty path (path_len 0).
 *  - A per-thread guard lets calls made while we are inside a wrapper (a
 *    signal handler, an allocator called by dlsym) go straight through; a
 *    write on a tracked fd there sets ctl->scan_needed instead.
 *
 * This header is what the interposer's files share (none of it is seen
 * outside the library: PRELOAD_HIDDEN). Each file calls only those below
 * it. The core, from the bottom: state.c (what the session told us, the
 * locks), paths.c and log.c (the records), fd_table.c, sticky.c,
 * region.c (the in-flight region), notes.c, adopt.c (fds opened elsewhere;
 * its own header, which the writing wrappers include); then the wrappers,
 * one family per file (wrap_*.c), init.c under those that may be a
 * process's first call (init.h), and dispatch.c and trap.c (dispatch.h),
 * which send the system calls a program makes outside libc to them.
 */
#ifndef MTM_TRACK_PRELOAD_H
#define MTM_TRACK_PRELOAD_H
#include <aio.h>
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utime.h>

#include "track/protocol.h"

#ifdef _FILE_OFFSET_BITS
#error "the interposer must be built without _FILE_OFFSET_BITS (it defines both open and open64)"
#endif

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TLS __thread __attribute__((tls_model("initial-exec")))
#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define PRELOAD_HIDDEN __attribute__((visibility("hidden")))

#ifndef RWF_APPEND
#define RWF_APPEND 0x10
#endif
#ifndef FALLOC_FL_COLLAPSE_RANGE
#define FALLOC_FL_COLLAPSE_RANGE 0x08
#endif
#ifndef FALLOC_FL_INSERT_RANGE
#define FALLOC_FL_INSERT_RANGE 0x20
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* ------------------------------------------------------------------ */
/* The table of real functions.                                        */

/* One table for the whole library (defined in state.c): a function is
 * looked up once, at its first call from any file, as when the interposer
 * was one file (a trapped call's handler, trap.c, finds libc's syscall()
 * resolved by then, not looked up inside the handler). */
#ifdef PRELOAD_REAL_TABLE_HERE
#define REAL_SLOT(name) PRELOAD_HIDDEN name##_fn real_##name
#else
#define REAL_SLOT(name) PRELOAD_HIDDEN extern name##_fn real_##name
#endif
#define W_CUSTOM(ret, name, params) \
	typedef ret(*name##_fn) params; \
	REAL_SLOT(name);
#define W_REAL(ret, name, params) W_CUSTOM(ret, name, params)
#define W_NS(ret, name, params, args, d, p) W_CUSTOM(ret, name, params)
#define W_META(ret, name, params, args, d, p, f) W_CUSTOM(ret, name, params)
#define W_FDMETA(ret, name, params, args, fd) W_CUSTOM(ret, name, params)
#define W_PATH_REC(ret, name, params, args, path, type, a) W_CUSTOM(ret, name, params)
#define W_OPEN(ret, name, params, dirfd) W_CUSTOM(ret, name, params)
#define W_OPEN_AS(ret, name, params, dirfd, flags, mode) W_CUSTOM(ret, name, params)
#define W_SEQ_WRITE(ret, name, params, args, fd) W_CUSTOM(ret, name, params)
#define W_POS_WRITE(ret, name, params, args, fd, off) W_CUSTOM(ret, name, params)
#define W_POS_WRITE2(ret, name, params, args, fd, off, flags) W_CUSTOM(ret, name, params)
#define W_SENDFILE(ret, name, params, args, out, in) W_CUSTOM(ret, name, params)
#define W_FD_REC(ret, name, params, args, fd, type, a, b) W_CUSTOM(ret, name, params)
#define W_MKSTEMP(ret, name, params, args, tmpl, oflags) W_CUSTOM(ret, name, params)
#define W_FCNTL(ret, name, params, args, fd, cmd) W_CUSTOM(ret, name, params)
#define W_AIO_WRITE(ret, name, params, args, cb) W_CUSTOM(ret, name, params)
#define W_LIO_LISTIO(ret, name, params, args, list, nent) W_CUSTOM(ret, name, params)
#define W_FORWARD_PATH(ret, name, params, call) W_CUSTOM(ret, name, params)
#define W_FORWARD_STDIO(ret, name, params, call) W_CUSTOM(ret, name, params)
#define W_FORWARD_MMAP(ret, name, params, call) W_CUSTOM(ret, name, params)
#include "track/calls.def"

/* The real function called name (dlsym(RTLD_NEXT)); aborts if libc has none.
 * (REAL caches it in the table.) */
PRELOAD_HIDDEN void *resolve(const char *name);
#define REAL(name)                                                             \
	(*({                                                                   \
		name##_fn f_ = __atomic_load_n(&real_##name, __ATOMIC_RELAXED); \
		if (UNLIKELY(!f_)) {                                            \
			f_ = (name##_fn)resolve(#name);                         \
			__atomic_store_n(&real_##name, f_, __ATOMIC_RELAXED);    \
		}                                                               \
		f_;                                                             \
	}))


/* ------------------------------------------------------------------ */
/* State (state.c).                                                    */

enum { ST_NEW = 0, ST_INIT = 1, ST_ON = 2, ST_OFF = 3 };
PRELOAD_HIDDEN extern int g_state;
PRELOAD_HIDDEN extern char g_root[PATH_MAX];
PRELOAD_HIDDEN extern size_t g_rootlen;
PRELOAD_HIDDEN extern char g_session[PATH_MAX];
PRELOAD_HIDDEN extern size_t g_sessionlen;
PRELOAD_HIDDEN extern char g_self[PATH_MAX];              /* our own .so, for children's LD_PRELOAD */
PRELOAD_HIDDEN extern char g_env_session[PATH_MAX + 32]; /* "METAMORI_SESSION=..." */
PRELOAD_HIDDEN extern char g_env_root[PATH_MAX + 32];    /* "METAMORI_ROOT=..." */
PRELOAD_HIDDEN extern int g_quick_skip;                  /* the root is not under /proc, /sys, /dev */

PRELOAD_HIDDEN extern struct mtm_ctl *g_ctl;
PRELOAD_HIDDEN extern struct mtm_log_hdr *g_hdr; /* NULL until this process records something */
PRELOAD_HIDDEN extern int g_logfd;
PRELOAD_HIDDEN extern int g_log_failed;
PRELOAD_HIDDEN extern int g_gone;        /* the session died: stop honouring the gate */
PRELOAD_HIDDEN extern int g_sticky_scan; /* this process recorded a sticky SCAN */
/* A sticky record lost to a full log would never be made again: they are
 * all said again once the session has emptied the log (restick). */
PRELOAD_HIDDEN extern int g_sticky_lost;
#define LOG_MAP_SIZE ((size_t)MTM_LOG_HDR_SIZE + MTM_LOG_CAPACITY)
PRELOAD_HIDDEN extern uint64_t g_log_cap; /* METAMORI_TRACK_LOG_CAPACITY: tests only */

PRELOAD_HIDDEN extern TLS int t_guard;
/* the last WRITE record this thread appended, to extend it in place */
struct last_write {
	struct mtm_rec *r;
	struct mtm_log_hdr *h;
	uint64_t epoch;
	uint64_t gen;
};
PRELOAD_HIDDEN extern TLS struct last_write t_last;
/* Bumped whenever the log is dropped (fork child, DMTCP detach): a new log
 * may be mapped where the old one was, and no thread's t_last may reach it. */
PRELOAD_HIDDEN extern uint64_t g_log_gen;

/* Under DMTCP (docs/TRACKING.md, "DMTCP"): its checkpoint must never
 * suspend a thread inside the in-flight region (the session, asked for the
 * paired file checkpoint at DMTCP's barrier, would wait for that thread for
 * ever), and the session's files must not be in its images. */
PRELOAD_HIDDEN extern int (*g_ckpt_off)(void);          /* dmtcp_plugin_disable_ckpt, if libdmtcp is loaded */
PRELOAD_HIDDEN extern void (*g_ckpt_on)(void);          /* dmtcp_plugin_enable_ckpt */
PRELOAD_HIDDEN extern _Bool (*g_is_ckpt_thread)(void); /* a C++ bool */
PRELOAD_HIDDEN extern TLS int t_ckpt_thread; /* 0: not asked yet, 1: DMTCP's checkpoint thread, 2: another */
PRELOAD_HIDDEN extern int g_detached;        /* between metamori_preload_detach and _attach: record nothing */

PRELOAD_HIDDEN extern int g_log_lock, g_slab_lock, g_st_lock, g_cwd_lock;

/* The locks are held for a few instructions, never across a wait. A signal
 * handler that calls a wrapper while its thread holds one must not spin on
 * it: lock() then returns 0 and the caller does without (and, where that
 * could lose a change, asks the session for a scan). */
PRELOAD_HIDDEN extern TLS unsigned t_held;
static inline unsigned lockbit(int *l)
{
	return l == &g_log_lock ? 1u : l == &g_slab_lock ? 2u : l == &g_st_lock ? 4u : 8u;
}
static inline int lock(int *l)
{
	unsigned bit = lockbit(l);
	if (t_held & bit)
		return 0;
	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
		sched_yield();
	t_held |= bit;
	return 1;
}
static inline void unlock(int *l)
{
	t_held &= ~lockbit(l);
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

/* Syscall user dispatch (dispatch.c turns it on and off; the log says it). */
enum { D_NEVER = 0, D_ON = 1, D_LOST = 2 };
PRELOAD_HIDDEN extern int g_dispatch;              /* D_*: atomic */
PRELOAD_HIDDEN extern uint64_t g_dispatch_since;   /* see dispatch_since */
/* 1 while it is on in every thread. */
static inline int dispatch_on(void) { return LOAD(&g_dispatch) == D_ON; }
/* ctl->epoch read after it was turned on (in this process image or fork
 * child): the interval of that epoch is not covered. */
static inline uint64_t dispatch_since(void) { return LOAD(&g_dispatch_since); }

/* A change we cannot describe: the next checkpoint scans. */
PRELOAD_HIDDEN void note_untrackable(void);

/* ------------------------------------------------------------------ */
/* The fd table (fd_table.c).                                          */

/* The file has other names (hard links) we do not know: a change through
 * this one changes them too, so the next checkpoint scans. */
#define ENT_MULTI 0x80000000u
#define MULTI(e) (LOAD(&(e)->flags) & ENT_MULTI)

struct ent {
	uint32_t flags; /* open flags (O_ACCMODE, O_APPEND), ENT_MULTI */
	uint16_t len;
	uint8_t cls;
	uint8_t pad;
	char path[]; /* relative to the root, NUL-terminated */
};
PRELOAD_HIDDEN extern struct ent **g_fds;
PRELOAD_HIDDEN extern int g_nfds;
PRELOAD_HIDDEN extern int g_maxfd;

PRELOAD_HIDDEN struct ent *ent_new(const char *rel, size_t len, uint32_t flags);
PRELOAD_HIDDEN void ent_free(struct ent *e);
PRELOAD_HIDDEN void fd_put(int fd, struct ent *e);
PRELOAD_HIDDEN void fd_set_path(int fd, const char *rel, size_t len, uint32_t flags);
PRELOAD_HIDDEN void fd_copy(int from, int to);

static inline struct ent *fd_get(int fd)
{
	if ((unsigned)fd >= (unsigned)g_nfds)
		return NULL;
	return LOAD(&g_fds[fd]);
}

/* fd is not (or no longer) one of ours. */
PRELOAD_HIDDEN void fd_clear(int fd);

/* ------------------------------------------------------------------ */
/* Paths (paths.c).                                                    */

PRELOAD_HIDDEN size_t normalize(char *p);
PRELOAD_HIDDEN const char *in_root(const char *abs, size_t *len);
PRELOAD_HIDDEN int fdpath(int fd, char *out);
PRELOAD_HIDDEN void cwd_forget(void);
PRELOAD_HIDDEN int lex_abs(int dirfd, const char *path, char *out);
PRELOAD_HIDDEN int quick_outside(const char *p);
PRELOAD_HIDDEN int fd_link(const char *p);
PRELOAD_HIDDEN int resolve_at(int dirfd, const char *path, int follow, char *rel);
PRELOAD_HIDDEN int fd_rel(int fd, char *rel);
PRELOAD_HIDDEN int trackable(int fd);

/* ------------------------------------------------------------------ */
/* The log (log.c).                                                    */

PRELOAD_HIDDEN pid_t real_pid(void);
PRELOAD_HIDDEN extern int g_dispatch_owed; /* the log does not say yet that dispatch is on */
PRELOAD_HIDDEN int log_attach(int fd);
/* 1 once this process has a log (mapped on first use) */
PRELOAD_HIDDEN int ensure_log(void);
PRELOAD_HIDDEN struct mtm_rec *rec(uint16_t type, uint64_t a, uint64_t b, const char *path, size_t len);
PRELOAD_HIDDEN void rec_write(const char *path, size_t len, uint64_t off, uint64_t n);
PRELOAD_HIDDEN void rec_e(uint16_t type, uint64_t a, uint64_t b, struct ent *e);
PRELOAD_HIDDEN void rec_sticky(uint16_t type, const char *path, size_t len);
PRELOAD_HIDDEN extern uint64_t g_multi_ep;
PRELOAD_HIDDEN void multi_scan(void);
PRELOAD_HIDDEN void multi_check_at(int dirfd, const char *path, int follow);
PRELOAD_HIDDEN void multi_sticky(void);
PRELOAD_HIDDEN void multi_check_fd(int fd);

/* ------------------------------------------------------------------ */
/* Sticky WHOLE records (sticky.c).                                    */

enum { SK_STREAM = 1, SK_MAP = 2, SK_AIO = 3 };
struct sticky {
	uintptr_t key; /* FILE * or mapping address; 0: free slot */
	size_t len;
	uint8_t kind, writable;
	struct ent *e;
};
#define NSTICKY 1024
PRELOAD_HIDDEN extern struct sticky g_st[NSTICKY];
PRELOAD_HIDDEN extern int g_st_n, g_st_maps;
PRELOAD_HIDDEN extern int g_st_hi; /* slots in use are below this (it only grows; g_st_lock) */

PRELOAD_HIDDEN void sticky_add(int kind, uintptr_t key, size_t len, int writable, const char *path, size_t plen);
PRELOAD_HIDDEN int sticky_path_used(const struct ent *e);
PRELOAD_HIDDEN struct ent *sticky_drop(int i);
PRELOAD_HIDDEN void release(struct ent *e, int in);
PRELOAD_HIDDEN void paths_moved(const char *o, size_t ol, const char *n, size_t nl, int in);
PRELOAD_HIDDEN void restick(void);

/* ------------------------------------------------------------------ */
/* The in-flight region (region.c) and what the interposer says of     */
/* itself (notes.c).                                                   */

PRELOAD_HIDDEN int enter(void);
PRELOAD_HIDDEN void leave(void);
PRELOAD_HIDDEN void sticky_scan(void);
PRELOAD_HIDDEN void code_changed(void);

/* ------------------------------------------------------------------ */
/* What syscall user dispatch (dispatch.c, trap.c) asks of the         */
/* interposer below it.                                                */

/* ctl->epoch, or 0 without a session: notes.c */
PRELOAD_HIDDEN uint64_t preload_epoch(void);
/* Dispatch was lost: the log's flag cleared, then MTM_REC_CODE for this
 * interval (what ran without it cannot be vouched for): notes.c */
PRELOAD_HIDDEN void preload_dispatch_lost(void);
/* our syscall() (which records what it changes): wrap_syscall.c */
PRELOAD_HIDDEN long preload_traced_syscall(long n, long a1, long a2, long a3, long a4, long a5, long a6);

/* ------------------------------------------------------------------ */
/* The frame of a wrapper's body (a macro: the body returns the call's  */
/* result from the wrapper).                                           */

/* A call made while this thread is already inside a wrapper (a signal
 * handler's) goes straight through and asks the session for a scan;
 * otherwise the in-flight region is entered: in_ says whether this process
 * records (0: no log, or detached). */
#define WRAP_ENTER(call)            \
	if (t_guard) {              \
		note_untrackable(); \
		return call;        \
	}                           \
	t_guard++;                  \
	int in_ = enter()
/* Once the call is made, with its errno in err_ and its records appended
 * (when in_): the region left and errno given back. */
#define WRAP_LEAVE()          \
	do {                  \
		if (in_)      \
			leave(); \
		t_guard--;    \
		errno = err_; \
	} while (0)

/* ------------------------------------------------------------------ */
/* Shared between the wrappers' files.                                 */

/* (wrap_stdio.c) the stream's sticky entry dropped; *found if it had one */
PRELOAD_HIDDEN struct ent *stream_forget(FILE *f, int *found);

#endif

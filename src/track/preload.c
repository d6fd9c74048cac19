/*
 * preload.c — libmetamori-preload.so, the interposer `metamori run` puts into
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
 */
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

#include "track/dispatch.h"
#include "track/protocol.h"

#ifdef _FILE_OFFSET_BITS
#error "preload.c must be built without _FILE_OFFSET_BITS (it defines both open and open64)"
#endif

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TLS __thread __attribute__((tls_model("initial-exec")))
#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

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

#define W_CUSTOM(ret, name, params) \
	typedef ret(*name##_fn) params; \
	static name##_fn real_##name __attribute__((unused));
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
#define W_FORWARD(ret, name, params, call) W_CUSTOM(ret, name, params)
#include "track/calls.def"

static void *resolve(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (!p) {
		/* A function our libc lacks is never called by a program that
		 * links against that libc; if it is, fail loudly, not silently. */
		static const char msg[] = "metamori-preload: a wrapped function is missing from libc\n";
		ssize_t r = syscall(SYS_write, 2, msg, sizeof msg - 1);
		(void)r;
		abort();
	}
	return p;
}
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
/* State.                                                              */

enum { ST_NEW = 0, ST_INIT = 1, ST_ON = 2, ST_OFF = 3 };
static int g_state;
static char g_root[PATH_MAX];
static size_t g_rootlen;
static char g_session[PATH_MAX];
static size_t g_sessionlen;
static char g_self[PATH_MAX];           /* our own .so, for children's LD_PRELOAD */
static char g_env_session[PATH_MAX + 32]; /* "METAMORI_SESSION=..." */
static char g_env_root[PATH_MAX + 32];    /* "METAMORI_ROOT=..." */
static int g_quick_skip;                /* the root is not under /proc, /sys, /dev */

static struct mtm_ctl *g_ctl;
static struct mtm_log_hdr *g_hdr; /* NULL until this process records something */
static int g_logfd = -1;
static int g_log_failed;
static int g_gone;        /* the session died: stop honouring the gate */
static int g_sticky_scan; /* this process recorded a sticky SCAN */
/* A sticky record lost to a full log would never be made again: they are
 * all said again once the session has emptied the log (restick). */
static int g_sticky_lost;
static void restick(void);
#define LOG_MAP_SIZE ((size_t)MTM_LOG_HDR_SIZE + MTM_LOG_CAPACITY)
static uint64_t g_log_cap = MTM_LOG_CAPACITY; /* METAMORI_TRACK_LOG_CAPACITY: tests only */

static TLS int t_guard;
static TLS struct {
	struct mtm_rec *r;
	struct mtm_log_hdr *h;
	uint64_t epoch;
	uint64_t gen;
} t_last; /* the last WRITE record this thread appended, to extend it in place */
/* Bumped whenever the log is dropped (fork child, DMTCP detach): a new log
 * may be mapped where the old one was, and no thread's t_last may reach it. */
static uint64_t g_log_gen;

/* Under DMTCP (docs/TRACKING.md, "DMTCP"): its checkpoint must never
 * suspend a thread inside the in-flight region (the session, asked for the
 * paired file checkpoint at DMTCP's barrier, would wait for that thread for
 * ever), and the session's files must not be in its images. */
static int (*g_ckpt_off)(void);  /* dmtcp_plugin_disable_ckpt, if libdmtcp is loaded */
static void (*g_ckpt_on)(void);  /* dmtcp_plugin_enable_ckpt */
static _Bool (*g_is_ckpt_thread)(void); /* a C++ bool */
static TLS int t_ckpt_thread;    /* 0: not asked yet, 1: DMTCP's checkpoint thread, 2: another */
static int g_detached;           /* between metamori_preload_detach and _attach: record nothing */

static int g_log_lock, g_slab_lock, g_st_lock, g_cwd_lock;

/* The locks are held for a few instructions, never across a wait. A signal
 * handler that calls a wrapper while its thread holds one must not spin on
 * it: lock() then returns 0 and the caller does without (and, where that
 * could lose a change, asks the session for a scan). */
static TLS unsigned t_held;
static unsigned lockbit(int *l)
{
	return l == &g_log_lock ? 1u : l == &g_slab_lock ? 2u : l == &g_st_lock ? 4u : 8u;
}
static int lock(int *l)
{
	unsigned bit = lockbit(l);
	if (t_held & bit)
		return 0;
	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
		sched_yield();
	t_held |= bit;
	return 1;
}
static void unlock(int *l)
{
	t_held &= ~lockbit(l);
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

static void do_init(void);
static inline int active(void)
{
	int s = LOAD(&g_state);
	if (LIKELY(s == ST_ON))
		return 1;
	if (s == ST_NEW) {
		int expect = ST_NEW;
		if (__atomic_compare_exchange_n(&g_state, &expect, ST_INIT, 0, __ATOMIC_ACQ_REL,
		                                __ATOMIC_ACQUIRE))
			do_init();
		return LOAD(&g_state) == ST_ON;
	}
	return 0;
}

static void note_untrackable(void)
{
	if (g_ctl)
		__atomic_store_n(&g_ctl->scan_needed, 1, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------------ */
/* fd table: one pointer per fd, entries from a slab (no malloc).      */

/* The file has other names (hard links) we do not know: a change through
 * this one changes them too, so the next checkpoint scans. */
#define ENT_MULTI 0x80000000u
#define MULTI(e) (LOAD(&(e)->flags) & ENT_MULTI)
static void multi_scan(void);

struct ent {
	uint32_t flags; /* open flags (O_ACCMODE, O_APPEND), ENT_MULTI */
	uint16_t len;
	uint8_t cls;
	uint8_t pad;
	char path[]; /* relative to the root, NUL-terminated */
};
#define NCLS 8 /* 64 .. 8192 bytes */
static struct ent *g_free[NCLS];
static char *g_chunk;
static size_t g_chunk_left;
static struct ent **g_fds;
static int g_nfds;
static int g_maxfd = -1;

static struct ent *ent_new(const char *rel, size_t len, uint32_t flags)
{
	size_t need = sizeof(struct ent) + len + 1;
	int c = 0;
	while (c < NCLS && ((size_t)64 << c) < need)
		c++;
	if (c == NCLS)
		return NULL;
	size_t sz = (size_t)64 << c;
	if (!lock(&g_slab_lock)) {
		note_untrackable();
		return NULL;
	}
	struct ent *e = g_free[c];
	if (e) {
		memcpy(&g_free[c], e->path, sizeof(struct ent *));
	} else {
		if (g_chunk_left < sz) {
			size_t csz = 256 << 10;
			void *p = REAL(mmap)(NULL, csz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED) {
				unlock(&g_slab_lock);
				return NULL;
			}
			g_chunk = p;
			g_chunk_left = csz;
		}
		e = (struct ent *)g_chunk;
		g_chunk += sz;
		g_chunk_left -= sz;
	}
	unlock(&g_slab_lock);
	e->cls = (uint8_t)c;
	e->flags = flags;
	e->len = (uint16_t)len;
	memcpy(e->path, rel, len);
	e->path[len] = 0;
	return e;
}

static void ent_free(struct ent *e)
{
	if (!lock(&g_slab_lock))
		return; /* a few bytes lost, once in a blue moon */
	memcpy(e->path, &g_free[e->cls], sizeof(struct ent *));
	g_free[e->cls] = e;
	unlock(&g_slab_lock);
}

static inline struct ent *fd_get(int fd)
{
	if ((unsigned)fd >= (unsigned)g_nfds)
		return NULL;
	return LOAD(&g_fds[fd]);
}

static void fd_put(int fd, struct ent *e)
{
	if ((unsigned)fd >= (unsigned)g_nfds) {
		if (e)
			ent_free(e);
		return;
	}
	struct ent *old = __atomic_exchange_n(&g_fds[fd], e, __ATOMIC_ACQ_REL);
	if (old)
		ent_free(old);
	if (e) {
		int m = LOAD(&g_maxfd);
		while (fd > m && !__atomic_compare_exchange_n(&g_maxfd, &m, fd, 0, __ATOMIC_ACQ_REL,
		                                              __ATOMIC_ACQUIRE))
			;
	}
}

static inline void fd_clear(int fd)
{
	if (fd_get(fd))
		fd_put(fd, NULL);
}

static void fd_set_path(int fd, const char *rel, size_t len, uint32_t flags)
{
	fd_put(fd, ent_new(rel, len, flags));
}

static void fd_copy(int from, int to)
{
	struct ent *e = fd_get(from);
	if (e)
		fd_set_path(to, e->path, e->len, e->flags);
	else
		fd_clear(to);
}

/* ------------------------------------------------------------------ */
/* Paths.                                                              */

/* Lexical normalisation of an absolute path, in place; returns its length.
 * Each output component ("/name") is no longer than the input it came from,
 * so the writer never overtakes the reader. */
static size_t normalize(char *p)
{
	char *w = p;
	const char *r = p;
	while (*r) {
		while (*r == '/')
			r++;
		if (!*r)
			break;
		const char *s = r;
		while (*r && *r != '/')
			r++;
		size_t n = (size_t)(r - s);
		if (n == 1 && s[0] == '.')
			continue;
		if (n == 2 && s[0] == '.' && s[1] == '.') {
			while (w > p && *--w != '/')
				;
			continue;
		}
		*w++ = '/';
		memmove(w, s, n);
		w += n;
	}
	if (w == p)
		*w++ = '/';
	*w = 0;
	return (size_t)(w - p);
}

/* The part of abs (normalised, absolute) under the root, or NULL: outside,
 * or the store. The root itself is "" (length 0). */
static const char *in_root(const char *abs, size_t *len)
{
	if (strncmp(abs, g_root, g_rootlen) != 0)
		return NULL;
	const char *r = abs + g_rootlen;
	if (g_rootlen == 1)
		r = abs + 1; /* root "/" */
	else if (*r == '/')
		r++;
	else if (*r)
		return NULL;
	if (!*r) {
		*len = 0;
		return r;
	}
	if (strncmp(r, ".metamori", 9) == 0 && (r[9] == 0 || r[9] == '/'))
		return NULL;
	*len = strlen(r);
	return r;
}

/* The kernel's path of an open fd; -1 if unknown or deleted. */
static int fdpath(int fd, char *out)
{
	char link[32] = "/proc/self/fd/";
	char num[12];
	int n = 0;
	unsigned v = (unsigned)fd;
	do
		num[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	int k = 14;
	while (n)
		link[k++] = num[--n];
	link[k] = 0;
	ssize_t l = readlink(link, out, PATH_MAX - 1);
	if (l <= 0 || out[0] != '/')
		return -1;
	out[l] = 0;
	if (l > 10 && memcmp(out + l - 10, " (deleted)", 10) == 0)
		return -1;
	return (int)l;
}

static char g_cwd[PATH_MAX];
static int g_cwd_ok;

static int cwd_get(char *out)
{
	if (!lock(&g_cwd_lock)) {
		note_untrackable();
		return -1;
	}
	if (!g_cwd_ok && getcwd(g_cwd, sizeof g_cwd) && g_cwd[0] == '/')
		g_cwd_ok = 1;
	int ok = g_cwd_ok;
	if (ok)
		strcpy(out, g_cwd);
	unlock(&g_cwd_lock);
	return ok ? (int)strlen(out) : -1;
}

static void cwd_forget(void)
{
	int l = lock(&g_cwd_lock);
	g_cwd_ok = 0;
	if (l)
		unlock(&g_cwd_lock);
}

/* Absolute path of dirfd (canonical). */
static int base_abs(int dirfd, char *out)
{
	if (dirfd == AT_FDCWD)
		return cwd_get(out);
	struct ent *e = fd_get(dirfd);
	if (e) {
		if (e->len == 0) {
			strcpy(out, g_root);
			return (int)g_rootlen;
		}
		if (g_rootlen + 1 + e->len >= PATH_MAX)
			return -1;
		memcpy(out, g_root, g_rootlen);
		size_t n = g_rootlen;
		if (n > 1)
			out[n++] = '/';
		memcpy(out + n, e->path, e->len + 1u);
		return (int)(n + e->len);
	}
	return fdpath(dirfd, out);
}

static int join(char *out, int blen, const char *name)
{
	size_t nl = strlen(name);
	if ((size_t)blen + 1 + nl >= PATH_MAX)
		return -1;
	out[blen] = '/';
	memcpy(out + blen + 1, name, nl + 1);
	return (int)normalize(out);
}

/* Lexical absolute path of (dirfd, path): no system call unless dirfd is an
 * fd we do not know. */
static int lex_abs(int dirfd, const char *path, char *out)
{
	if (!path || !*path)
		return -1;
	if (path[0] == '/') {
		size_t n = strlen(path);
		if (n >= PATH_MAX)
			return -1;
		memcpy(out, path, n + 1);
		return (int)normalize(out);
	}
	int b = base_abs(dirfd, out);
	if (b < 0)
		return -1;
	return join(out, b, path);
}

static int quick_outside(const char *p)
{
	if (!g_quick_skip)
		return 0;
	return (strncmp(p, "/proc", 5) == 0 && (p[5] == '/' || !p[5])) ||
	       (strncmp(p, "/sys", 4) == 0 && (p[4] == '/' || !p[4])) ||
	       (strncmp(p, "/dev", 4) == 0 && (p[4] == '/' || !p[4]));
}

/* /proc/self/fd/N and the like: a path that names an open file, which may
 * be in the tree (its new fd's kernel path says). */
static int fd_link(const char *p)
{
	if (!strncmp(p, "/dev/fd/", 8) || !strncmp(p, "/proc/self/fd/", 14) || !strncmp(p, "/proc/thread-self/fd/", 21))
		return 1;
	if (strncmp(p, "/proc/", 6) || p[6] < '0' || p[6] > '9')
		return 0;
	for (p += 6; *p >= '0' && *p <= '9'; p++)
		;
	return !strncmp(p, "/fd/", 4) || (!strncmp(p, "/task/", 6) && strstr(p, "/fd/"));
}

/* Canonical absolute path of directory dir relative to dirfd (dir NULL:
 * dirfd itself). */
static int canon_dir(int dirfd, const char *dir, char *out)
{
	if (!dir)
		return base_abs(dirfd, out);
	int fd = REAL(openat)(dirfd, dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int n = fdpath(fd, out);
	REAL(close)(fd);
	return n;
}

/*
 * The path relative to the root that a path call on (dirfd, path) acts on,
 * into rel (PATH_MAX); its length, or -1 when outside the root or unknown.
 * The parent is resolved by the kernel (symlinks and all); the final
 * component is followed only when follow is set and it is a symlink.
 */
/* abs names a symlink: where it leads (kept apart: its buffer is needed
 * only then, and signal handlers may run on small stacks). */
static __attribute__((noinline)) void follow_link(char *abs)
{
	struct stat st;
	char rp[PATH_MAX];
	if (lstat(abs, &st) == 0 && S_ISLNK(st.st_mode) && realpath(abs, rp))
		strcpy(abs, rp);
}

static int resolve_at(int dirfd, const char *path, int follow, char *rel)
{
	if (!path || !*path)
		return -1;
	if (path[0] == '/' && quick_outside(path))
		return -1;
	/* rel (PATH_MAX) holds a copy of path until the result goes there */
	char abs[PATH_MAX], *buf = rel;
	size_t n = strlen(path);
	if (n >= PATH_MAX)
		return -1;
	memcpy(buf, path, n + 1);
	while (n > 1 && buf[n - 1] == '/')
		buf[--n] = 0;
	char *slash = strrchr(buf, '/');
	const char *name;
	int l;
	if (!slash) {
		name = buf;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			l = canon_dir(dirfd, name, abs);
		else if ((l = canon_dir(dirfd, NULL, abs)) >= 0)
			l = join(abs, l, name);
	} else {
		name = slash + 1;
		if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
			l = canon_dir(dirfd, buf, abs);
		} else {
			if (slash == buf)
				l = canon_dir(dirfd, "/", abs);
			else {
				*slash = 0;
				l = canon_dir(dirfd, buf, abs);
			}
			if (l >= 0)
				l = join(abs, l, name);
		}
	}
	if (l < 0)
		return -1;
	if (follow)
		follow_link(abs);
	size_t rl;
	const char *r = in_root(abs, &rl);
	if (!r)
		return -1;
	memcpy(rel, r, rl + 1);
	return (int)rl;
}

/* rel of an fd (table, else the kernel's view): for the rarer fd calls. */
static int fd_rel(int fd, char *rel)
{
	struct ent *e = fd_get(fd);
	if (e) {
		memcpy(rel, e->path, e->len + 1u);
		return e->len;
	}
	char abs[PATH_MAX];
	size_t rl;
	const char *r;
	if (fdpath(fd, abs) < 0 || !(r = in_root(abs, &rl)))
		return -1;
	memcpy(rel, r, rl + 1);
	return (int)rl;
}

/* Only regular files and directories are tracked: a write to a FIFO or a
 * device changes no file, and one that blocks must not hold a checkpoint's
 * barrier for ever. */
static int trackable(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
		return 0;
	return S_ISREG(st.st_mode) && st.st_nlink > 1 ? 2 : 1;
}

/* ------------------------------------------------------------------ */
/* The log and the barrier.                                            */

static long sys_futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
	return REAL(syscall)(SYS_futex, addr, op, val, ts, NULL, 0);
}

/* The kernel's pid, for the log's name and header: under DMTCP, getpid()
 * is a virtual pid that survives a restart while the real one changes, and
 * the session looks a process up by the real one (/proc/PID). libc's
 * syscall() is the next one after us (DMTCP's preload comes first). */
static pid_t real_pid(void)
{
	return (pid_t)REAL(syscall)(SYS_getpid);
}

static int g_dispatch_owed; /* the log does not say yet that dispatch is on */
static void dispatch_settle(struct mtm_log_hdr *h);

static int log_attach(int fd)
{
	struct stat st;
	if (flock(fd, LOCK_SH) != 0 || fstat(fd, &st) != 0)
		return -1;
	size_t want = (size_t)MTM_LOG_HDR_SIZE + g_log_cap;
	if ((size_t)st.st_size < want) {
		if (REAL(ftruncate)(fd, (off_t)want) != 0)
			return -1;
		st.st_size = (off_t)want;
	}
	/* Mapped at the largest size; only the file's size is ever touched. */
	void *p = REAL(mmap)(NULL, LOG_MAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -1;
	struct mtm_log_hdr *h = p;
	if (h->magic != MTM_TRACK_MAGIC || h->version != MTM_TRACK_VERSION || h->capacity > MTM_LOG_CAPACITY ||
	    h->capacity + MTM_LOG_HDR_SIZE > (uint64_t)st.st_size) {
		memset(h, 0, MTM_LOG_HDR_SIZE);
		h->pid = real_pid();
		h->capacity = g_log_cap;
		h->epoch = __atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST);
		h->version = MTM_TRACK_VERSION;
		__atomic_store_n(&h->magic, MTM_TRACK_MAGIC, __ATOMIC_SEQ_CST);
	} else {
		/* Our pid's earlier image (before exec) or a dead process with
		 * our pid: its records stay, its in-flight calls are over. */
		h->pid = real_pid();
		__atomic_store_n(&h->inflight, 0, __ATOMIC_SEQ_CST);
	}
	/* Dispatch is said on only once the interval it was turned on in is
	 * over (enter: dispatch_settle). */
	__atomic_store_n(&h->dispatch, 0, __ATOMIC_SEQ_CST);
	g_dispatch_owed = dispatch_on();
	g_logfd = fd;
	STORE(&g_hdr, h);
	return 0;
}

static int ensure_log(void)
{
	if (LIKELY(LOAD(&g_hdr) != NULL))
		return 1;
	if (g_log_failed || !g_ctl)
		return 0;
	if (!lock(&g_log_lock)) {
		note_untrackable();
		return 0;
	}
	if (!g_hdr && !g_log_failed) {
		char p[PATH_MAX + 32];
		snprintf(p, sizeof p, "%s/log.%d", g_session, (int)real_pid());
		int fd = -1;
		for (int tries = 0; tries < 100; tries++) {
			fd = REAL(open)(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
			if (fd < 0)
				break;
			/* A dead process with our pid may have left a log that the
			 * session holds (exclusively) until it removes it: once we
			 * get the lock, make sure the file is still the one named. */
			struct stat a, b;
			if (flock(fd, LOCK_SH) == 0 && fstat(fd, &a) == 0 && stat(p, &b) == 0 &&
			    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
				break;
			REAL(close)(fd);
			fd = -1;
		}
		if (fd < 0 || log_attach(fd) != 0) {
			if (fd >= 0)
				REAL(close)(fd);
			g_log_failed = 1;
			note_untrackable();
		}
	}
	unlock(&g_log_lock);
	return LOAD(&g_hdr) != NULL;
}

static void wait_gate(void)
{
	int saved = errno;
	uint32_t g;
	while ((g = __atomic_load_n(&g_ctl->gate, __ATOMIC_SEQ_CST)) && !g_gone) {
		struct timespec ts = {1, 0};
		long r = sys_futex(&g_ctl->gate, FUTEX_WAIT, g, &ts);
		if (r == -1 && errno == ETIMEDOUT) {
			pid_t sp = (pid_t)g_ctl->session_pid;
			if (sp > 0 && kill(sp, 0) == -1 && errno == ESRCH)
				g_gone = 1; /* nobody will open the gate: go on, untracked */
		}
	}
	errno = saved;
}

/* DMTCP's checkpoint thread never takes its own checkpoint lock (it holds
 * it for writing while it suspends the others). */
static int ckpt_guarded(void)
{
	if (LIKELY(!LOAD(&g_ckpt_off)))
		return 0;
	if (UNLIKELY(!t_ckpt_thread))
		t_ckpt_thread = g_is_ckpt_thread && g_is_ckpt_thread() ? 1 : 2;
	return t_ckpt_thread == 2;
}
static TLS unsigned t_ckpt_taken; /* this thread's ckpt_off()s not given back yet */
static void ckpt_off(void)
{
	if (ckpt_guarded()) {
		int saved = errno;
		g_ckpt_off();
		t_ckpt_taken++;
		errno = saved;
	}
}
static void ckpt_on(void)
{
	if (UNLIKELY(t_ckpt_taken)) {
		int saved = errno;
		t_ckpt_taken--;
		g_ckpt_on();
		errno = saved;
	}
}

/* Enter the in-flight region; 0 if this process cannot record (no log, or
 * detached while DMTCP writes or restores an image). Under DMTCP the region
 * is also one DMTCP does not checkpoint inside: taken before inflight++,
 * given back before waiting at a closed gate (that wait may last a
 * checkpoint, DMTCP's own included). The log is looked up again after each
 * wait: a detach may have dropped it meanwhile. */
static int enter(void)
{
	for (;;) {
		ckpt_off();
		if (UNLIKELY(LOAD(&g_detached)) || !ensure_log()) {
			ckpt_on();
			return 0;
		}
		struct mtm_log_hdr *h = g_hdr;
		__atomic_fetch_add(&h->inflight, 1, __ATOMIC_SEQ_CST);
		if (LIKELY(!__atomic_load_n(&g_ctl->gate, __ATOMIC_SEQ_CST)) || g_gone) {
			if (UNLIKELY(g_sticky_lost) && !__atomic_load_n(&h->overflow, __ATOMIC_SEQ_CST))
				restick();
			if (UNLIKELY(__atomic_load_n(&g_dispatch_owed, __ATOMIC_RELAXED)))
				dispatch_settle(h);
			return 1;
		}
		__atomic_fetch_sub(&h->inflight, 1, __ATOMIC_SEQ_CST);
		sys_futex(&h->inflight, FUTEX_WAKE, INT_MAX, NULL);
		ckpt_on();
		wait_gate();
	}
}

static void leave(void)
{
	struct mtm_log_hdr *h = g_hdr;
	__atomic_fetch_sub(&h->inflight, 1, __ATOMIC_SEQ_CST);
	if (UNLIKELY(__atomic_load_n(&g_ctl->gate, __ATOMIC_SEQ_CST))) {
		int saved = errno;
		sys_futex(&h->inflight, FUTEX_WAKE, INT_MAX, NULL);
		errno = saved;
	}
	ckpt_on();
}

/* Append a record (inside the region). */
static struct mtm_rec *rec(uint16_t type, uint64_t a, uint64_t b, const char *path, size_t len)
{
	struct mtm_log_hdr *h = g_hdr;
	if (!h)
		return NULL;
	if (len > 0xffff) {
		__atomic_store_n(&h->overflow, 1, __ATOMIC_SEQ_CST);
		return NULL;
	}
	uint64_t sz = MTM_REC_SIZE(len);
	uint64_t t = __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE);
	do {
		if (t + sz > h->capacity) {
			__atomic_store_n(&h->overflow, 1, __ATOMIC_SEQ_CST);
			return NULL;
		}
	} while (!__atomic_compare_exchange_n(&h->tail, &t, t + sz, 0, __ATOMIC_ACQ_REL,
	                                      __ATOMIC_ACQUIRE));
	struct mtm_rec *r = (struct mtm_rec *)((char *)h + MTM_LOG_HDR_SIZE + t);
	__atomic_store_n(&r->seal, 0, __ATOMIC_RELAXED); /* (a reset log holds old records) */
	r->type = type;
	r->path_len = (uint16_t)len;
	r->a = a;
	r->b = b;
	char *d = (char *)(r + 1);
	if (len)
		memcpy(d, path, len);
	memset(d + len, 0, sz - sizeof *r - len);
	__atomic_store_n(&r->seal, MTM_SEAL(__atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST)), __ATOMIC_RELEASE);
	return r;
}

/* A WRITE record; extends this thread's previous one when it touches it. */
static void rec_write(const char *path, size_t len, uint64_t off, uint64_t n)
{
	if (!n)
		return;
	struct mtm_log_hdr *h = g_hdr;
	uint64_t ep = __atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST);
	struct mtm_rec *r = t_last.r;
	if (r && t_last.h == h && t_last.epoch == ep && t_last.gen == LOAD(&g_log_gen) && r->path_len == len &&
	    memcmp(r + 1, path, len) == 0 && off <= r->a + r->b && off + n >= r->a) {
		uint64_t s = off < r->a ? off : r->a;
		uint64_t e = off + n > r->a + r->b ? off + n : r->a + r->b;
		__atomic_store_n(&r->a, s, __ATOMIC_RELAXED);
		__atomic_store_n(&r->b, e - s, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		uint64_t at = (uint64_t)((char *)r - ((char *)h + MTM_LOG_HDR_SIZE));
		if (__atomic_load_n(&h->peeked, __ATOMIC_SEQ_CST) <= at)
			return; /* not read yet: the session sees the grown record */
		/* the session may have read it before it grew: a record of its own */
		off = s;
		n = e - s;
	}
	r = rec(MTM_REC_WRITE, off, n, path, len);
	t_last.r = r;
	t_last.h = h;
	t_last.epoch = ep;
	t_last.gen = LOAD(&g_log_gen);
}

static void rec_e(uint16_t type, uint64_t a, uint64_t b, struct ent *e)
{
	if (type == MTM_REC_WRITE)
		rec_write(e->path, e->len, a, b);
	else
		rec(type, a, b, e->path, e->len);
	if (MULTI(e))
		multi_scan();
}

static void rec_sticky(uint16_t type, const char *path, size_t len)
{
	if (!rec(type, 1, 0, path, len))
		g_sticky_lost = 1;
}

static void sticky_scan(void)
{
	if (g_sticky_scan && !g_sticky_lost)
		return; /* the session remembers it while we live */
	g_sticky_scan = 1;
	if (enter()) {
		rec_sticky(MTM_REC_SCAN, NULL, 0);
		leave();
	} else {
		note_untrackable();
	}
}

/* Our code changed (an executable mapping, dlclose, an exec): the code
 * that ran in this interval is not the code the session can look at now,
 * so what we wrote in it is compared wherever the watcher saw us write
 * (MTM_REC_CODE). Once per interval. */
static uint64_t g_code_ep;
static void code_changed(void)
{
	if (LOAD(&g_state) != ST_ON || !g_ctl)
		return;
	uint64_t ep = __atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST) + 1;
	if (__atomic_load_n(&g_code_ep, __ATOMIC_RELAXED) == ep)
		return;
	if (enter()) {
		if (rec(MTM_REC_CODE, 0, 0, NULL, 0))
			__atomic_store_n(&g_code_ep, ep, __ATOMIC_RELAXED);
		leave();
	} else {
		note_untrackable();
	}
}

/* Inside the region: the log says dispatch is on (dispatch.c) once the
 * interval it was turned on in is over (the calls this image made before,
 * in that interval, were not trapped): a checkpoint judges an interval's
 * writes while the epoch is still the interval's (before its barrier) or
 * while every call is held (after), so the flag is never seen set in the
 * interval it was turned on in. */
static void dispatch_settle(struct mtm_log_hdr *h)
{
	if (!dispatch_on()) {
		__atomic_store_n(&g_dispatch_owed, 0, __ATOMIC_RELAXED);
		return;
	}
	if (__atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST) <= dispatch_since())
		return; /* still that interval: the next call looks again */
	__atomic_store_n(&g_dispatch_owed, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&h->dispatch, MTM_DISPATCH_ON, __ATOMIC_SEQ_CST);
}

void preload_dispatch_lost(void)
{
	__atomic_store_n(&g_dispatch_owed, 0, __ATOMIC_RELAXED);
	struct mtm_log_hdr *h = LOAD(&g_hdr);
	if (h)
		__atomic_store_n(&h->dispatch, 0, __ATOMIC_SEQ_CST);
	int err = errno;
	code_changed();
	errno = err;
}

uint64_t preload_epoch(void)
{
	return g_ctl ? __atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST) : 0;
}

/* A change to a file with several names (inside the region): scan once in
 * this checkpoint interval, so the names we did not see are compared. */
static uint64_t g_multi_ep;
static void multi_scan(void)
{
	uint64_t ep = __atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST) + 1;
	if (__atomic_load_n(&g_multi_ep, __ATOMIC_RELAXED) == ep)
		return;
	__atomic_store_n(&g_multi_ep, ep, __ATOMIC_RELAXED);
	rec(MTM_REC_SCAN, 0, 0, NULL, 0);
}

/* After a metadata or size change through a path: other names? */
static void multi_check_at(int dirfd, const char *path, int follow)
{
	struct stat st;
	if (path && fstatat(dirfd, path, &st, follow ? 0 : AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	    st.st_nlink > 1)
		multi_scan();
}

/* Writes we cannot see, to a file with names we do not know: scan at every
 * checkpoint while we live (inside the region). */
static void multi_sticky(void)
{
	g_sticky_scan = 1;
	rec_sticky(MTM_REC_SCAN, NULL, 0);
}

static void multi_check_fd(int fd)
{
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink > 1)
		multi_scan();
}

/* ------------------------------------------------------------------ */
/* Sticky WHOLE: writable stdio streams and shared writable mappings.  */

enum { SK_STREAM = 1, SK_MAP = 2, SK_AIO = 3 };
struct sticky {
	uintptr_t key; /* FILE * or mapping address; 0: free slot */
	size_t len;
	uint8_t kind, writable;
	struct ent *e;
};
#define NSTICKY 1024
static struct sticky g_st[NSTICKY];
static int g_st_n, g_st_maps;
static int g_st_hi; /* slots in use are below this (it only grows; g_st_lock) */

/* Record a sticky WHOLE for e's path and remember key (inside the region). */
static void sticky_add(int kind, uintptr_t key, size_t len, int writable, const char *path, size_t plen)
{
	if (writable)
		rec_sticky(MTM_REC_WHOLE, path, plen);
	struct ent *e = ent_new(path, plen, 0);
	if (!e)
		return; /* never released: compared until death, which is safe */
	if (!lock(&g_st_lock)) {
		ent_free(e);
		return;
	}
	for (int i = 0; i < NSTICKY; i++) {
		if (!g_st[i].key) {
			g_st[i] = (struct sticky){key, len, (uint8_t)kind, (uint8_t)writable, e};
			if (i >= g_st_hi)
				g_st_hi = i + 1;
			__atomic_fetch_add(&g_st_n, 1, __ATOMIC_ACQ_REL);
			if (kind == SK_MAP)
				__atomic_fetch_add(&g_st_maps, 1, __ATOMIC_ACQ_REL);
			e = NULL;
			break;
		}
	}
	unlock(&g_st_lock);
	if (e)
		ent_free(e);
}

static int sticky_path_used(const struct ent *e)
{
	for (int i = 0; i < g_st_hi; i++)
		if (g_st[i].key && g_st[i].writable && g_st[i].e->len == e->len &&
		    memcmp(g_st[i].e->path, e->path, e->len) == 0)
			return 1;
	return 0;
}

/* Drop slot i (g_st_lock held); returns the entry if the sticky WHOLE for
 * its path ends (the caller records WHOLE 0 + RELEASE, then frees it). */
static struct ent *sticky_drop(int i)
{
	struct sticky s = g_st[i];
	g_st[i].key = 0;
	__atomic_fetch_sub(&g_st_n, 1, __ATOMIC_ACQ_REL);
	if (s.kind == SK_MAP)
		__atomic_fetch_sub(&g_st_maps, 1, __ATOMIC_ACQ_REL);
	if (s.writable && !sticky_path_used(s.e))
		return s.e;
	ent_free(s.e);
	return NULL;
}

/* The last writer is gone: compare once more, then stop (inside the region). */
static void release(struct ent *e, int in)
{
	if (in) {
		rec(MTM_REC_WHOLE, 0, 0, e->path, e->len);
		rec(MTM_REC_RELEASE, 0, 0, e->path, e->len);
	}
	ent_free(e);
}

/* After a rename of old to new by this process: fds and sticky paths follow. */
static int path_under(const char *p, size_t pl, const char *dir, size_t dl)
{
	if (dl == 0)
		return 0; /* the root itself is never renamed */
	return pl >= dl && memcmp(p, dir, dl) == 0 && (pl == dl || p[dl] == '/');
}

static struct ent *ent_moved(const struct ent *e, const char *o, size_t ol, const char *n, size_t nl)
{
	char buf[PATH_MAX];
	size_t rest = e->len - ol;
	if (!n || nl + rest >= PATH_MAX)
		return NULL;
	memcpy(buf, n, nl);
	memcpy(buf + nl, e->path + ol, rest);
	return ent_new(buf, nl + rest, e->flags);
}

static void paths_moved(const char *o, size_t ol, const char *n, size_t nl, int in)
{
	int max = LOAD(&g_maxfd);
	for (int fd = 0; fd <= max && fd < g_nfds; fd++) {
		struct ent *e = fd_get(fd);
		if (e && path_under(e->path, e->len, o, ol))
			fd_put(fd, ent_moved(e, o, ol, n, nl));
	}
	if (!LOAD(&g_st_n))
		return;
	if (!lock(&g_st_lock)) {
		note_untrackable();
		return;
	}
	for (int i = 0; i < g_st_hi; i++) {
		struct sticky *s = &g_st[i];
		if (!s->key || !path_under(s->e->path, s->e->len, o, ol))
			continue;
		struct ent *ne = ent_moved(s->e, o, ol, n, nl);
		if (s->writable && in) {
			rec(MTM_REC_RELEASE, 0, 0, s->e->path, s->e->len);
			if (ne)
				rec_sticky(MTM_REC_WHOLE, ne->path, ne->len);
		}
		if (ne) {
			ent_free(s->e);
			s->e = ne;
		} /* else moved outside the root: keep the old name, harmless */
	}
	unlock(&g_st_lock);
}

/* Declare every sticky thing again (inside the region): in a new child's
 * log, or after one was lost to a full log. */
static void restick(void)
{
	g_sticky_lost = 0;
	if (g_sticky_scan)
		rec_sticky(MTM_REC_SCAN, NULL, 0);
	if (!LOAD(&g_st_n) || !lock(&g_st_lock))
		return;
	for (int i = 0; i < g_st_hi; i++)
		if (g_st[i].key && g_st[i].writable)
			rec_sticky(MTM_REC_WHOLE, g_st[i].e->path, g_st[i].e->len);
	unlock(&g_st_lock);
}

/* ------------------------------------------------------------------ */
/* Initialisation, fork.                                               */

static void atfork_prepare(void)
{
	lock(&g_log_lock);
	lock(&g_st_lock);
	lock(&g_cwd_lock);
	lock(&g_slab_lock);
}

static void atfork_parent(void)
{
	unlock(&g_slab_lock);
	unlock(&g_cwd_lock);
	unlock(&g_st_lock);
	unlock(&g_log_lock);
}

static void atfork_child(void)
{
	g_slab_lock = g_cwd_lock = g_st_lock = g_log_lock = 0;
	t_held = 0;
	if (LOAD(&g_state) != ST_ON)
		return;
	/* The parent's log stays the parent's: its lock must not outlive it
	 * through us. Ours is opened when we first record. */
	if (g_hdr) {
		REAL(munmap)(g_hdr, LOG_MAP_SIZE);
		g_hdr = NULL;
	}
	if (g_logfd >= 0) {
		REAL(close)(g_logfd);
		g_logfd = -1;
	}
	g_log_failed = 0;
	g_multi_ep = 0;
	g_log_gen++;
	t_last.r = NULL;
	dispatch_fork_child(); /* clone turned it off in this thread, the only one */
	/* What we inherited and cannot see (streams, mappings, a ring) stays
	 * ours to declare, for as long as we live. */
	if ((g_sticky_scan || LOAD(&g_st_n)) && enter()) {
		restick();
		leave();
	}
}

/* Called by Metamori's DMTCP plugin at DMTCP_EVENT_INIT, once DMTCP knows
 * this process's threads (its checkpoint lock may be taken from then on;
 * our constructor ran before DMTCP's). */
void metamori_preload_dmtcp_init(void)
{
	/* a C++ function of DMTCP's (bool dmtcp_is_ckpt_thread()) */
	_Bool (*is_ckpt)(void) = (_Bool (*)(void))dlsym(RTLD_DEFAULT, "_Z20dmtcp_is_ckpt_threadv");
	void (*on)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "dmtcp_plugin_enable_ckpt");
	int (*off)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "dmtcp_plugin_disable_ckpt");
	if (!is_ckpt || !on || !off)
		return;
	g_is_ckpt_thread = is_ckpt;
	g_ckpt_on = on;
	STORE(&g_ckpt_off, off);
}

/* Called by Metamori's DMTCP plugin (src/dmtcp/plugin.c), in DMTCP's
 * checkpoint thread while every other thread is suspended, never inside the
 * in-flight region (enter() keeps DMTCP out of it).
 *
 * Detach, once the paired file checkpoint is made and before the image is
 * written: the log is dropped (unmapped and closed: the session reads it as
 * a dead process's, already emptied by that checkpoint) and an anonymous
 * page, gate open, takes the place of ctl, so that no image holds the
 * session's files, and a thread that restarts from the image never touches
 * a mapping that is not there (the log, and ctl, of a session that is
 * gone). Until attach, enter() records nothing. */
void metamori_preload_detach(void)
{
	if (LOAD(&g_state) != ST_ON || LOAD(&g_detached))
		return;
	/* DMTCP's image does not carry the kernel's dispatch setting: a
	 * restarted process has it in no thread */
	dispatch_lose();
	STORE(&g_detached, 1);
	lock(&g_log_lock);
	if (g_hdr) {
		REAL(munmap)(g_hdr, LOG_MAP_SIZE);
		STORE(&g_hdr, NULL);
	}
	if (g_logfd >= 0) {
		REAL(close)(g_logfd);
		g_logfd = -1;
	}
	g_log_failed = 0;
	g_multi_ep = 0;
	__atomic_fetch_add(&g_log_gen, 1, __ATOMIC_SEQ_CST);
	unlock(&g_log_lock);
	REAL(mmap)(g_ctl, sizeof(struct mtm_ctl), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
	           -1, 0);
}

/* Attach, after the image is written (the same session goes on) or after
 * a restart from it (`metamori restart` started a new session on the same
 * tree, at the same path): the session's ctl is mapped where the page was,
 * the next record creates a new log, and what is sticky is said again
 * there. After a restart, what happened before this call is unknown: the
 * next checkpoint scans (MTM_REC_SCAN a = 2, which also ends the sticky
 * SCAN of the static mtcp_restart that became us). No session (a plain
 * dmtcp_restart): stay detached, untracked. */
void metamori_preload_attach(int restarted)
{
	if (LOAD(&g_state) != ST_ON || !LOAD(&g_detached))
		return;
	char p[PATH_MAX + 8];
	snprintf(p, sizeof p, "%s/ctl", g_session);
	int fd = REAL(open)(p, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return;
	void *m = REAL(mmap)(g_ctl, sizeof(struct mtm_ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	REAL(close)(fd);
	if (m == MAP_FAILED)
		return;
	if (g_ctl->magic != MTM_TRACK_MAGIC || g_ctl->version != MTM_TRACK_VERSION) {
		REAL(mmap)(g_ctl, sizeof(struct mtm_ctl), PROT_READ | PROT_WRITE,
		           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		return;
	}
	g_gone = 0;
	STORE(&g_detached, 0);
	/* Restarted: DMTCP's mtcp_restart, a static program, became this
	 * process under our pid, and the exec of it made every checkpoint scan
	 * while the pid lives (a sticky SCAN): we are back, so that ends (this
	 * checkpoint still scans). */
	if (restarted && enter()) {
		rec(MTM_REC_SCAN, 2, 0, NULL, 0);
		leave();
	} else if (restarted) {
		__atomic_store_n(&g_ctl->scan_needed, 1, __ATOMIC_SEQ_CST);
	}
	if ((g_sticky_scan || LOAD(&g_st_n)) && enter()) {
		restick();
		leave();
	}
}

static void scan_inherited(void)
{
	DIR *d = REAL(opendir)("/proc/self/fd");
	if (!d)
		return;
	int self = dirfd(d);
	int stdio[3] = {0, 0, 0};
	int others[64], nothers = 0;
	char link[PATH_MAX];
	struct dirent *de;
	pid_t me = real_pid();
	int exec_seen = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		int fd = atoi(de->d_name);
		if (fd == self || fdpath(fd, link) < 0)
			continue;
		if (strncmp(link, g_session, g_sessionlen) == 0 &&
		    strncmp(link + g_sessionlen, "/log.", 5) == 0) {
			/* Our own log, kept open across exec so its lock never
			 * lapsed; anyone else's is not ours to hold. */
			if (atoi(link + g_sessionlen + 5) == (int)me && g_logfd < 0) {
				REAL(fcntl)(fd, F_SETFD, FD_CLOEXEC);
				if (log_attach(fd) != 0)
					REAL(close)(fd);
				else
					exec_seen = 1;
			} else {
				REAL(close)(fd);
			}
			continue;
		}
		size_t rl;
		const char *rel = in_root(link, &rl);
		if (!rel)
			continue;
		int fl = REAL(fcntl)(fd, F_GETFL);
		struct stat st;
		if (fl < 0 || fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
			continue;
		fd_set_path(fd, rel, rl, (uint32_t)fl | (S_ISREG(st.st_mode) && st.st_nlink > 1 ? ENT_MULTI : 0));
		if ((fl & O_ACCMODE) == O_RDONLY || !S_ISREG(st.st_mode))
			continue;
		if (fd == 1 || fd == 2)
			stdio[fd] = 1;
		else if (nothers < 64)
			others[nothers++] = fd;
	}
	REAL(closedir)(d);
	/* our pid ran another image before this one in this interval, maybe
	 * one with code of its own that the session can no longer look at */
	if (exec_seen)
		code_changed();
	if (!stdio[1] && !stdio[2] && !nothers)
		return;
	if (!enter())
		return;
	/* stdout/stderr into a tracked file: stdio writes them unseen. */
	for (int fd = 1; fd <= 2; fd++) {
		struct ent *e = fd_get(fd);
		if (stdio[fd] && e)
			sticky_add(SK_STREAM, (uintptr_t)(fd == 1 ? stdout : stderr), 0, 1, e->path, e->len);
	}
	/* Opened for us before exec by someone we may not have seen
	 * (posix_spawn file actions): rescan the entry. */
	for (int i = 0; i < nothers; i++) {
		struct ent *e = fd_get(others[i]);
		if (e)
			rec(MTM_REC_NS, 0, 0, e->path, e->len);
	}
	leave();
}

static void do_init(void)
{
	t_guard++;
	int ok = 0;
	const char *s = secure_getenv(MTM_ENV_SESSION);
	const char *r = secure_getenv(MTM_ENV_ROOT);
	if (getauxval(AT_SECURE) || !s || !r || s[0] != '/' || r[0] != '/' || strlen(s) >= PATH_MAX - 64 ||
	    strlen(r) >= PATH_MAX - 64)
		goto out;
	snprintf(g_env_session, sizeof g_env_session, "%s=%s", MTM_ENV_SESSION, s);
	snprintf(g_env_root, sizeof g_env_root, "%s=%s", MTM_ENV_ROOT, r);
	/* canonical, as the kernel names open files (/proc/self/fd) */
	if (!realpath(r, g_root))
		strcpy(g_root, r);
	g_rootlen = normalize(g_root);
	if (!realpath(s, g_session))
		strcpy(g_session, s);
	g_sessionlen = normalize(g_session);
	const char *cap = secure_getenv("METAMORI_TRACK_LOG_CAPACITY");
	if (cap) {
		unsigned long long c = strtoull(cap, NULL, 10) & ~7ull;
		if (c >= 4096 && c <= MTM_LOG_CAPACITY)
			g_log_cap = c;
	}
	g_quick_skip = !(strncmp(g_root, "/proc", 5) == 0 || strncmp(g_root, "/sys", 4) == 0 ||
	                 strncmp(g_root, "/dev", 4) == 0);

	char p[PATH_MAX + 8];
	snprintf(p, sizeof p, "%s/ctl", g_session);
	int fd = REAL(open)(p, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		goto out;
	void *m = REAL(mmap)(NULL, sizeof(struct mtm_ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REAL(close)(fd);
	if (m == MAP_FAILED)
		goto out;
	struct mtm_ctl *c = m;
	if (c->magic != MTM_TRACK_MAGIC || c->version != MTM_TRACK_VERSION) {
		REAL(munmap)(m, sizeof(struct mtm_ctl));
		goto out;
	}
	g_ctl = c;

	Dl_info info;
	if (!dladdr((void *)do_init, &info) || !info.dli_fname || !realpath(info.dli_fname, g_self))
		g_self[0] = 0;

	struct rlimit rl;
	rlim_t n = 1024;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		n = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (1u << 20) ? (1u << 20) : rl.rlim_max;
	if (n < 1024)
		n = 1024;
	void *t = REAL(mmap)(NULL, n * sizeof(struct ent *), PROT_READ | PROT_WRITE,
	                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (t == MAP_FAILED)
		goto out;
	g_fds = t;
	g_nfds = (int)n;
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	ok = 1;
out:
	STORE(&g_state, ok ? ST_ON : ST_OFF);
	if (ok) {
		scan_inherited();
		dispatch_start();
	}
	t_guard--;
}

__attribute__((constructor)) static void metamori_preload_init(void) { active(); }

/* ------------------------------------------------------------------ */
/* Opening and closing.                                                */

static struct ent *stream_forget(FILE *f, int *found);
static void stdio_retarget(int fd, int in);
#define STDIO_FD(fd) UNLIKELY((unsigned)(fd)-1u < 2u)

static int open_impl(int dirfd, const char *path, int flags, mode_t mode)
{
	if (!active() || t_guard)
		return REAL(openat)(dirfd, path, flags, mode);
	t_guard++;
	int tmpf = (flags & O_TMPFILE) == O_TMPFILE;
	int modifying = (flags & (O_CREAT | O_TRUNC)) && !tmpf;
	int wr = (flags & O_ACCMODE) != O_RDONLY;
	char abs[PATH_MAX];
	size_t lrl;
	const char *lrel = NULL;
	int la = lex_abs(dirfd, path, abs);
	if (la >= 0 && quick_outside(abs) && !fd_link(abs))
		wr = modifying = 0; /* /dev/null and the like: nothing to look at */
	else if (la >= 0)
		lrel = in_root(abs, &lrl);
	int in = 0, existed = 1;
	if (modifying && lrel) {
		struct stat st;
		if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
			existed = 0;
		else if (fstatat(dirfd, path, &st, 0) == 0)
			existed = 1;
		else
			existed = 0;
		/* opening a FIFO can block until a reader comes: never inside
		 * the region (it changes no file anyway) */
		if (!existed || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
			in = enter();
		else
			modifying = 0;
	}
	int fd = REAL(openat)(dirfd, path, flags, mode);
	int err = errno;
	if (fd >= 0) {
		char *canon = abs; /* the lexical path is done with (lrel is a flag now) */
		const char *rel = NULL;
		size_t rl = 0;
		/* A file open only for reading cannot change through its fd
		 * (fchmod & co look the path up themselves): only directories,
		 * the bases of *at calls, are worth an entry then. */
		if (!tmpf && (wr || modifying || (lrel && (flags & (O_DIRECTORY | O_PATH)))) &&
		    fdpath(fd, canon) > 0)
			rel = in_root(canon, &rl);
		if (rel) {
			int tk = trackable(fd);
			if (tk)
				fd_set_path(fd, rel, rl, (uint32_t)flags | (tk == 2 ? ENT_MULTI : 0));
			else
				fd_clear(fd);
			if (tk == 2 && (flags & O_TRUNC) && in)
				multi_scan();
			if (modifying) {
				if (!in && !lrel) {
					in = enter(); /* reached the tree through a symlink */
					existed = !(flags & O_CREAT);
				}
				if (in && (flags & O_CREAT) && !existed)
					rec(MTM_REC_NS, 0, 0, rel, rl);
				if (in && (flags & O_TRUNC) && existed)
					rec(MTM_REC_TRUNC, 0, 0, rel, rl);
			}
		} else {
			fd_clear(fd);
		}
		if (STDIO_FD(fd))
			stdio_retarget(fd, in);
	}
	if (in)
		leave();
	t_guard--;
	errno = err;
	return fd;
}

#define OPEN_MODE(flags, last)                                              \
	mode_t mode = 0;                                                        \
	if (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE) {        \
		va_list ap;                                                     \
		va_start(ap, last);                                             \
		mode = (mode_t)va_arg(ap, int);                                 \
		va_end(ap);                                                     \
	}

/* The opens (calls.def): path, flags (and dirfd) are the rows' parameter names. */
#define W_OPEN(ret, name, params, dirfd)                \
	ret name params                                  \
	{                                                \
		OPEN_MODE(flags, flags);                 \
		return open_impl(dirfd, path, flags, mode); \
	}
#define W_OPEN_AS(ret, name, params, dirfd, flags, mode) \
	ret name params { return open_impl(dirfd, path, flags, mode); }
#include "track/calls.def"

int close(int fd)
{
	if (UNLIKELY(fd == g_logfd && fd >= 0))
		return 0; /* our log's lock tells the session we live: keep it */
	fd_clear(fd);
	return REAL(close)(fd);
}

int close_range(unsigned first, unsigned last, int flags)
{
	int lf = g_logfd;
	if (lf >= 0 && (unsigned)lf >= first && (unsigned)lf <= last && !(flags & 4 /* CLOSE_RANGE_CLOEXEC */)) {
		int r = 0;
		if ((unsigned)lf > first)
			r = close_range(first, (unsigned)lf - 1, flags);
		if (r == 0 && (unsigned)lf < last)
			r = close_range((unsigned)lf + 1, last, flags);
		return r;
	}
	int r = REAL(close_range)(first, last, flags);
	if (r == 0 && !(flags & 4) && g_nfds) {
		int max = LOAD(&g_maxfd);
		for (unsigned fd = first; fd <= last && (int)fd <= max; fd++)
			fd_clear((int)fd);
	}
	return r;
}

void closefrom(int lowfd)
{
	if (lowfd < 0)
		lowfd = 0;
	close_range((unsigned)lowfd, ~0u, 0);
}

/* Keep our log fd out of the way of dup2/dup3 onto its number. */
static void log_fd_dodge(int newfd)
{
	if (newfd != g_logfd || newfd < 0)
		return;
	int n = REAL(fcntl)(g_logfd, F_DUPFD_CLOEXEC, 3);
	if (n >= 0)
		g_logfd = n; /* same open file description: the lock stays */
}

/* fd 1 or 2 now refers to another file (dup2 onto it, or close then open or
 * dup): stdout/stderr write there through libc, unseen. in: already inside
 * the region. */
static void stdio_retarget(int fd, int in)
{
	FILE *f = fd == 1 ? stdout : stderr;
	struct ent *e = fd_get(fd);
	int w = e && (LOAD(&e->flags) & O_ACCMODE) != O_RDONLY;
	int found;
	struct ent *gone = stream_forget(f, &found);
	if (!w && !found)
		return;
	int mine = 0;
	if (!in)
		in = mine = enter();
	if (gone)
		release(gone, in);
	if (w && in)
		sticky_add(SK_STREAM, (uintptr_t)f, 0, 1, e->path, e->len);
	if (mine)
		leave();
}

static void fd_dup_done(int fd, int r)
{
	if (fd_get(fd) || fd_get(r))
		fd_copy(fd, r);
	if (STDIO_FD(r) && g_nfds && !t_guard) {
		int err = errno;
		t_guard++;
		stdio_retarget(r, 0);
		t_guard--;
		errno = err;
	}
}

int dup(int fd)
{
	int r = REAL(dup)(fd);
	if (r >= 0)
		fd_dup_done(fd, r);
	return r;
}

int dup2(int fd, int fd2)
{
	log_fd_dodge(fd2);
	int r = REAL(dup2)(fd, fd2);
	if (r >= 0 && fd != fd2)
		fd_dup_done(fd, r);
	return r;
}

int dup3(int fd, int fd2, int flags)
{
	log_fd_dodge(fd2);
	int r = REAL(dup3)(fd, fd2, flags);
	if (r >= 0)
		fd_dup_done(fd, r);
	return r;
}

static int fcntl_after(int fd, int cmd, long arg, int r)
{
	if (r < 0)
		return r;
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) {
		fd_dup_done(fd, r);
	} else if (cmd == F_SETFL) {
		struct ent *e = fd_get(fd);
		if (e)
			__atomic_store_n(&e->flags, (e->flags & ~(uint32_t)O_APPEND) | ((uint32_t)arg & O_APPEND),
			                 __ATOMIC_RELEASE);
	}
	return r;
}

#define W_FCNTL(ret, name, params, args, fd, cmd)                            \
	ret name params                                                       \
	{                                                                     \
		va_list ap;                                                   \
		va_start(ap, cmd);                                            \
		void *arg = va_arg(ap, void *);                               \
		va_end(ap);                                                   \
		if (cmd == F_SETFD && fd == g_logfd && fd >= 0)               \
			return 0; /* keep FD_CLOEXEC as we set it */          \
		return fcntl_after(fd, cmd, (long)arg, REAL(name) args);      \
	}
#include "track/calls.def"

int chdir(const char *path)
{
	int r = REAL(chdir)(path);
	if (r == 0)
		cwd_forget();
	return r;
}

int fchdir(int fd)
{
	int r = REAL(fchdir)(fd);
	if (r == 0)
		cwd_forget();
	return r;
}

DIR *opendir(const char *path)
{
	DIR *d = REAL(opendir)(path);
	if (d && g_nfds)
		fd_clear(dirfd(d)); /* opened inside libc: whatever we had is stale */
	return d;
}

int closedir(DIR *d)
{
	if (g_nfds)
		fd_clear(dirfd(d));
	return REAL(closedir)(d);
}

/* ------------------------------------------------------------------ */
/* Data writes.                                                        */

/* A write at the file position (or appended): record where it landed.
 * before: the position (or, appending, the size) before the call. */
static void note_seq(int fd, struct ent *e, off_t before, ssize_t n, int append)
{
	off_t after = lseek(fd, 0, SEEK_CUR);
	if (after < 0 || n <= 0)
		return;
	if (MULTI(e))
		multi_scan();
	off_t s = after - n;
	if (append) {
		/* appenders sharing the file may have moved the end meanwhile */
		off_t lo = before >= 0 && before < s ? before : s;
		rec_write(e->path, e->len, (uint64_t)lo, (uint64_t)(after - lo));
		return;
	}
	if (before >= 0 && before != s) {
		/* Someone sharing the position (another process with the same
		 * open file) wrote meanwhile: ours landed somewhere between the
		 * position before and the one after. */
		off_t lo = before < s ? before : s, hi = before + n > after ? before + n : after;
		rec_write(e->path, e->len, (uint64_t)lo, (uint64_t)(hi - lo));
		return;
	}
	rec_write(e->path, e->len, (uint64_t)s, (uint64_t)n);
}

static off_t pos_before(int fd, int append)
{
	if (append) {
		struct stat st;
		return fstat(fd, &st) == 0 ? st.st_size : -1;
	}
	return lseek(fd, 0, SEEK_CUR);
}

/* Wrapper body for a call writing at the position of tracked fd. */
#define SEQ_WRITE(e, fd, call, append_expr)                                   \
	do {                                                                  \
		if (t_guard) {                                                \
			note_untrackable();                                   \
			return call;                                          \
		}                                                             \
		t_guard++;                                                    \
		int in_ = enter();                                            \
		int app_ = (append_expr);                                     \
		off_t before_ = in_ ? pos_before(fd, app_) : -1;              \
		ssize_t r_ = call;                                            \
		int err_ = errno;                                             \
		if (in_) {                                                    \
			if (r_ > 0)                                           \
				note_seq(fd, e, before_, r_, app_);           \
			leave();                                              \
		}                                                             \
		t_guard--;                                                    \
		errno = err_;                                                 \
		return r_;                                                    \
	} while (0)

/* Wrapper body for a call writing at offset off of tracked fd (pwrite). On
 * Linux, pwrite on an O_APPEND fd appends. */
#define POS_WRITE(e, fd, call, off, append)                                   \
	do {                                                                  \
		if (t_guard) {                                                \
			note_untrackable();                                   \
			return call;                                          \
		}                                                             \
		t_guard++;                                                    \
		int in_ = enter();                                            \
		off_t before_ = in_ && (append) ? pos_before(fd, 1) : -1;    \
		ssize_t r_ = call;                                            \
		int err_ = errno;                                             \
		if (in_) {                                                    \
			if (r_ > 0 && (append)) {                             \
				struct stat st_;                              \
				if (fstat(fd, &st_) == 0) {                   \
					off_t lo_ = st_.st_size - r_;         \
					if (before_ >= 0 && before_ < lo_)    \
						lo_ = before_;                \
					rec_write(e->path, e->len, (uint64_t)lo_, \
					          (uint64_t)(st_.st_size - lo_)); \
				}                                             \
			} else if (r_ > 0) {                                  \
				rec_write(e->path, e->len, (uint64_t)(off), (uint64_t)r_); \
			}                                                     \
			if (r_ > 0 && MULTI(e))                               \
				multi_scan();                                 \
			leave();                                              \
		}                                                             \
		t_guard--;                                                    \
		errno = err_;                                                 \
		return r_;                                                    \
	} while (0)

#define IS_APPEND(e) ((LOAD(&(e)->flags) & O_APPEND) != 0)

/* The writes (calls.def): a position-less write at the file position (or
 * the end, O_APPEND), a positioned one at off; pwritev2 takes -1 for the
 * position, and RWF_APPEND for O_APPEND. */
#define W_SEQ_WRITE(ret, name, params, args, fd)                   \
	ret name params                                             \
	{                                                           \
		struct ent *e = fd_get(fd);                         \
		if (LIKELY(!e))                                     \
			return REAL(name) args;                     \
		SEQ_WRITE(e, fd, REAL(name) args, IS_APPEND(e));    \
	}
#define W_POS_WRITE(ret, name, params, args, fd, off)                   \
	ret name params                                                  \
	{                                                                \
		struct ent *e = fd_get(fd);                              \
		if (LIKELY(!e))                                          \
			return REAL(name) args;                          \
		POS_WRITE(e, fd, REAL(name) args, off, IS_APPEND(e));    \
	}
#define W_POS_WRITE2(ret, name, params, args, fd, off, flags)                                   \
	ret name params                                                                          \
	{                                                                                        \
		struct ent *e = fd_get(fd);                                                      \
		if (LIKELY(!e))                                                                  \
			return REAL(name) args;                                                  \
		if (off == -1)                                                                   \
			SEQ_WRITE(e, fd, REAL(name) args, IS_APPEND(e) || (flags & RWF_APPEND));      \
		POS_WRITE(e, fd, REAL(name) args, off, IS_APPEND(e) || (flags & RWF_APPEND));         \
	}
#include "track/calls.def"

/* copy_file_range, splice: an explicit output offset, else the position. */
ssize_t copy_file_range(int in, off64_t *inoff, int out, off64_t *outoff, size_t n, unsigned int flags)
{
	struct ent *e = fd_get(out);
	if (LIKELY(!e))
		return REAL(copy_file_range)(in, inoff, out, outoff, n, flags);
	if (!outoff)
		SEQ_WRITE(e, out, REAL(copy_file_range)(in, inoff, out, outoff, n, flags), 0);
	off64_t o = *outoff;
	POS_WRITE(e, out, REAL(copy_file_range)(in, inoff, out, outoff, n, flags), o, 0);
}

/* Input from a pipe or a socket may take for ever to come: wait for it
 * outside the region, so a checkpoint is not held meanwhile. */
static void wait_input(int in)
{
	struct stat st;
	if (fstat(in, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode))) {
		struct pollfd p = {in, POLLIN, 0};
		int saved = errno;
		poll(&p, 1, -1);
		errno = saved;
	}
}

ssize_t splice(int in, off64_t *inoff, int out, off64_t *outoff, size_t n, unsigned int flags)
{
	struct ent *e = fd_get(out);
	if (LIKELY(!e))
		return REAL(splice)(in, inoff, out, outoff, n, flags);
	if (!(flags & SPLICE_F_NONBLOCK))
		wait_input(in);
	if (!outoff)
		SEQ_WRITE(e, out, REAL(splice)(in, inoff, out, outoff, n, flags), IS_APPEND(e));
	off64_t o = *outoff;
	POS_WRITE(e, out, REAL(splice)(in, inoff, out, outoff, n, flags), o, 0);
}

/* sendfile (calls.def): its input is waited for outside the region. */
#define W_SENDFILE(ret, name, params, args, out, in)                \
	ret name params                                              \
	{                                                            \
		struct ent *e = fd_get(out);                         \
		if (LIKELY(!e))                                      \
			return REAL(name) args;                      \
		wait_input(in);                                      \
		SEQ_WRITE(e, out, REAL(name) args, IS_APPEND(e));    \
	}
#include "track/calls.def"

/* Calls on a tracked fd that succeed with 0 and leave one record. */
#define FD_REC(e, call, type, a, b)                                           \
	do {                                                                  \
		if (t_guard) {                                                \
			note_untrackable();                                   \
			return call;                                          \
		}                                                             \
		t_guard++;                                                    \
		int in_ = enter();                                            \
		int r_ = call;                                                \
		int err_ = errno;                                             \
		if (in_) {                                                    \
			if (r_ == 0)                                          \
				rec_e(type, a, b, e);                         \
			leave();                                              \
		}                                                             \
		t_guard--;                                                    \
		errno = err_;                                                 \
		return r_;                                                    \
	} while (0)

#define SHIFTS(mode) ((mode) & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE))

#define W_FD_REC(ret, name, params, args, fd, type, a, b)    \
	ret name params                                       \
	{                                                     \
		struct ent *e = fd_get(fd);                   \
		if (LIKELY(!e))                               \
			return REAL(name) args;               \
		FD_REC(e, REAL(name) args, type, a, b);       \
	}
#include "track/calls.def"

/* Reflinks rewrite a file's content without a write(): cp --reflink, the
 * default of coreutils' cp on btrfs and xfs. */
int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	struct ent *e = fd_get(fd);
	if (LIKELY(!e))
		return REAL(ioctl)(fd, req, arg);
	if (req == FICLONERANGE && arg) {
		const struct file_clone_range *cr = arg;
		if (cr->src_length)
			FD_REC(e, REAL(ioctl)(fd, req, arg), MTM_REC_WRITE, cr->dest_offset, cr->src_length);
		FD_REC(e, REAL(ioctl)(fd, req, arg), MTM_REC_WHOLE, 0, 0);
	}
	if (req == FICLONE)
		FD_REC(e, REAL(ioctl)(fd, req, arg), MTM_REC_WHOLE, 0, 0);
	if (req == FS_IOC_SETFLAGS || req == FS_IOC_FSSETXATTR)
		FD_REC(e, REAL(ioctl)(fd, req, arg), MTM_REC_META, 0, 0);
	return REAL(ioctl)(fd, req, arg);
}

/* POSIX AIO writes land whenever a libc thread gets to them, maybe after a
 * barrier: the file is compared at every checkpoint from now on. */
static int aio_note(int fd)
{
	struct ent *e = fd_get(fd);
	if (!e || t_guard)
		return 0;
	t_guard++;
	if (enter()) {
		int known = 0;
		if (lock(&g_st_lock)) {
			known = sticky_path_used(e);
			unlock(&g_st_lock);
		}
		if (!known) /* never released: a request may still be queued */
			sticky_add(SK_AIO, (uintptr_t)e, 0, 1, e->path, e->len);
		leave();
	}
	t_guard--;
	return 0;
}

#define W_LIO_LISTIO(ret, name, params, args, list, nent)                 \
	ret name params                                                   \
	{                                                                 \
		for (int i = 0; i < nent; i++)                            \
			if (list[i] && list[i]->aio_lio_opcode == LIO_WRITE) \
				aio_note(list[i]->aio_fildes);            \
		return REAL(name) args;                                   \
	}
#include "track/calls.def"

/* libaio: the kernel does the writes, complete when io_getevents says (a
 * direct write may land after a barrier): compared like POSIX AIO. */
int io_submit(aio_context_t ctx, long nr, struct iocb **ios)
{
	for (long i = 0; ios && i < nr; i++)
		if (ios[i] && (ios[i]->aio_lio_opcode == IOCB_CMD_PWRITE || ios[i]->aio_lio_opcode == IOCB_CMD_PWRITEV))
			aio_note((int)ios[i]->aio_fildes);
	return REAL(io_submit)(ctx, nr, ios);
}

/* An fd that came from another process (SCM_RIGHTS, pidfd_getfd): into the
 * table as an open of its file would have put it. */
static void adopt_fd(int fd)
{
	if (fd < 0 || LOAD(&g_state) != ST_ON || t_guard)
		return;
	int err = errno;
	t_guard++;
	char canon[PATH_MAX];
	size_t rl;
	const char *rel = NULL;
	int fl = REAL(fcntl)(fd, F_GETFL), tk = 0;
	if (fl >= 0 && fdpath(fd, canon) > 0)
		rel = in_root(canon, &rl);
	if (rel && (tk = trackable(fd)) && ((fl & O_ACCMODE) != O_RDONLY || tk == 1))
		fd_set_path(fd, rel, rl, (uint32_t)fl | (tk == 2 ? ENT_MULTI : 0));
	else
		fd_clear(fd);
	t_guard--;
	errno = err;
}

static void adopt_rights(const struct msghdr *m)
{
	if (!m || !m->msg_control)
		return;
	for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)m); c; c = CMSG_NXTHDR((struct msghdr *)m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
			adopt_fd(fd);
		}
	}
}

ssize_t recvmsg(int s, struct msghdr *m, int flags)
{
	ssize_t r = REAL(recvmsg)(s, m, flags);
	if (r >= 0)
		adopt_rights(m);
	return r;
}

int recvmmsg(int s, struct mmsghdr *v, unsigned int n, int flags, struct timespec *t)
{
	int r = REAL(recvmmsg)(s, v, n, flags, t);
	for (int i = 0; i < r; i++)
		adopt_rights(&v[i].msg_hdr);
	return r;
}

int pidfd_getfd(int pidfd, int target, unsigned int flags)
{
	int fd = REAL(pidfd_getfd)(pidfd, target, flags);
	adopt_fd(fd);
	return fd;
}

#define W_AIO_WRITE(ret, name, params, args, cb) \
	ret name params                           \
	{                                         \
		aio_note(cb->aio_fildes);         \
		return REAL(name) args;           \
	}
#include "track/calls.def"

/* ------------------------------------------------------------------ */
/* Path calls.                                                         */

/* Wrapper body: resolve, enter, call, record on success (r == 0). */
#define PATH_REC(call, dirfd, path, follow, type, a, b)                       \
	do {                                                                  \
		if (!active() || t_guard)                                     \
			return call;                                          \
		t_guard++;                                                    \
		char rel_[PATH_MAX];                                          \
		int rl_ = resolve_at(dirfd, path, follow, rel_);              \
		int in_ = rl_ >= 0 ? enter() : 0;                             \
		int r_ = call;                                                \
		int err_ = errno;                                             \
		if (in_) {                                                    \
			if (r_ == 0) {                                        \
				rec(type, a, b, rel_, (size_t)rl_);           \
				if ((type) != MTM_REC_NS)                     \
					multi_check_at(dirfd, path, follow);  \
			}                                                     \
			leave();                                              \
		}                                                             \
		t_guard--;                                                    \
		errno = err_;                                                 \
		return r_;                                                    \
	} while (0)

#define W_NS(ret, name, params, args, dirfd, path) \
	ret name params { PATH_REC(REAL(name) args, dirfd, path, 0, MTM_REC_NS, 0, 0); }
#define W_META(ret, name, params, args, dirfd, path, follow) \
	ret name params { PATH_REC(REAL(name) args, dirfd, path, follow, MTM_REC_META, 0, 0); }
#define W_PATH_REC(ret, name, params, args, path, type, a) \
	ret name params { PATH_REC(REAL(name) args, AT_FDCWD, path, 1, type, a, 0); }
#include "track/calls.def"

/* Metadata through an fd: the rarer calls may use fds we did not open. */
#define FD_META(call, fd)                                                     \
	do {                                                                  \
		if (!g_nfds || t_guard)                                       \
			return call;                                          \
		t_guard++;                                                    \
		char rel_[PATH_MAX];                                          \
		int rl_ = fd_rel(fd, rel_);                                   \
		int in_ = rl_ >= 0 ? enter() : 0;                             \
		int r_ = call;                                                \
		int err_ = errno;                                             \
		if (in_) {                                                    \
			if (r_ == 0) {                                        \
				rec(MTM_REC_META, 0, 0, rel_, (size_t)rl_);   \
				multi_check_fd(fd);                           \
			}                                                     \
			leave();                                              \
		}                                                             \
		t_guard--;                                                    \
		errno = err_;                                                 \
		return r_;                                                    \
	} while (0)

#define W_FDMETA(ret, name, params, args, fd) \
	ret name params { FD_META(REAL(name) args, fd); }
#include "track/calls.def"

int utimensat(int dirfd, const char *path_, const struct timespec t[2], int flags)
{
	const char *path = path_;
	__asm__("" : "+r"(path)); /* glibc declares it nonnull; Linux takes NULL (the fd itself) */
	if (!path || (!*path && (flags & AT_EMPTY_PATH)))
		FD_META(REAL(utimensat)(dirfd, path, t, flags), dirfd);
	PATH_REC(REAL(utimensat)(dirfd, path, t, flags), dirfd, path, !(flags & AT_SYMLINK_NOFOLLOW),
	         MTM_REC_META, 0, 0);
}

static int rename_impl(int od, const char *o, int nd, const char *n, unsigned flags, int how)
{
#define RENAME_CALL                                                                         \
	(how == 0 ? REAL(rename)(o, n) : how == 1 ? REAL(renameat)(od, o, nd, n) \
	                                          : REAL(renameat2)(od, o, nd, n, flags))
	if (!active() || t_guard)
		return RENAME_CALL;
	t_guard++;
	char ro[PATH_MAX], rn[PATH_MAX];
	int lo = resolve_at(od, o, 0, ro);
	int ln = resolve_at(nd, n, 0, rn);
	int in = lo >= 0 || ln >= 0 ? enter() : 0;
	int r = RENAME_CALL;
	int err = errno;
	if (in && r == 0) {
		if (lo >= 0)
			rec(MTM_REC_NS, 0, 0, ro, (size_t)lo);
		if (ln >= 0)
			rec(MTM_REC_NS, 0, 0, rn, (size_t)ln);
	}
	if (r == 0 && lo >= 0 && !(flags & RENAME_EXCHANGE))
		paths_moved(ro, (size_t)lo, ln >= 0 ? rn : NULL, ln >= 0 ? (size_t)ln : 0, in);
	if (in)
		leave();
	t_guard--;
	errno = err;
	return r;
#undef RENAME_CALL
}

int renameat2(int od, const char *o, int nd, const char *n, unsigned int flags)
{
	return rename_impl(od, o, nd, n, flags, 2);
}

static int link_impl(int od, const char *o, int nd, const char *n, int flags, int how)
{
#define LINK_CALL (how == 0 ? REAL(link)(o, n) : REAL(linkat)(od, o, nd, n, flags))
	if (!active() || t_guard)
		return LINK_CALL;
	t_guard++;
	char ro[PATH_MAX], rn[PATH_MAX];
	int srcfd = -1, lo;
	if (o && !*o && (flags & AT_EMPTY_PATH))
		srcfd = od;
	else if (o && strncmp(o, "/proc/self/fd/", 14) == 0)
		srcfd = atoi(o + 14); /* an O_TMPFILE file given a name */
	lo = srcfd >= 0 ? -1 : resolve_at(od, o, (flags & AT_SYMLINK_FOLLOW) != 0, ro);
	int ln = resolve_at(nd, n, 0, rn);
	int in = lo >= 0 || ln >= 0 ? enter() : 0;
	int r = LINK_CALL;
	int err = errno;
	if (in && r == 0) {
		if (ln >= 0)
			rec(MTM_REC_NS, 0, 0, rn, (size_t)ln);
		if (lo >= 0)
			rec(MTM_REC_META, 0, 0, ro, (size_t)lo); /* link count, ctime */
	}
	if (r == 0 && lo >= 0) {
		/* fds open on it now write to a file with several names */
		int max = LOAD(&g_maxfd);
		for (int fd = 0; fd <= max && fd < g_nfds; fd++) {
			struct ent *e = fd_get(fd);
			if (e && e->len == (size_t)lo && memcmp(e->path, ro, (size_t)lo) == 0)
				__atomic_fetch_or(&e->flags, ENT_MULTI, __ATOMIC_ACQ_REL);
		}
	}
	if (r == 0 && srcfd >= 0 && ln >= 0 && !fd_get(srcfd)) {
		int fl = REAL(fcntl)(srcfd, F_GETFL);
		if (fl >= 0)
			fd_set_path(srcfd, rn, (size_t)ln, (uint32_t)fl);
	}
	if (in)
		leave();
	t_guard--;
	errno = err;
	return r;
#undef LINK_CALL
}


/* mkstemp and friends create the file inside libc: seen here only
 * (calls.def's W_MKSTEMP rows; oflags: the open flags the call was given). */
#define MKSTEMP_REC(call, tmpl, oflags)                                                       \
	do {                                                                                  \
		if (!active() || t_guard)                                                     \
			return call;                                                          \
		t_guard++;                                                                    \
		char rel_[PATH_MAX], canon_[PATH_MAX];                                        \
		int in_ = resolve_at(AT_FDCWD, tmpl, 0, rel_) >= 0 ? enter() : 0;             \
		int fd_ = call;                                                               \
		int err_ = errno;                                                             \
		if (fd_ >= 0 && fdpath(fd_, canon_) > 0) {                                    \
			size_t rl_;                                                           \
			const char *r_ = in_root(canon_, &rl_);                               \
			if (r_) {                                                             \
				fd_set_path(fd_, r_, rl_, O_RDWR | (uint32_t)(oflags));       \
				if (!in_)                                                     \
					in_ = enter();                                        \
				if (in_)                                                      \
					rec(MTM_REC_NS, 0, 0, r_, rl_);                       \
			} else {                                                              \
				fd_clear(fd_);                                                \
			}                                                                     \
		}                                                                             \
		if (in_)                                                                      \
			leave();                                                              \
		t_guard--;                                                                    \
		errno = err_;                                                                 \
		return fd_;                                                                   \
	} while (0)

#define W_MKSTEMP(ret, name, params, args, tmpl, oflags) \
	ret name params { MKSTEMP_REC(REAL(name) args, tmpl, oflags); }
#include "track/calls.def"

char *mkdtemp(char *tmpl)
{
	if (!active() || t_guard)
		return REAL(mkdtemp)(tmpl);
	t_guard++;
	char rel[PATH_MAX];
	int in = resolve_at(AT_FDCWD, tmpl, 0, rel) >= 0 ? enter() : 0;
	char *r = REAL(mkdtemp)(tmpl);
	int err = errno;
	if (in) {
		int rl;
		if (r && (rl = resolve_at(AT_FDCWD, r, 0, rel)) >= 0)
			rec(MTM_REC_NS, 0, 0, rel, (size_t)rl);
		leave();
	}
	t_guard--;
	errno = err;
	return r;
}

/* ------------------------------------------------------------------ */
/* stdio: glibc writes streams internally, unseen: sticky WHOLE.       */

static int mode_writes(const char *mode) { return mode && strpbrk(mode, "wa+") != NULL; }

/* Forget stream f (before it is closed); returns its entry when the sticky
 * WHOLE of its path ends. found: set if f was one of ours. */
static struct ent *stream_forget(FILE *f, int *found)
{
	struct ent *rel = NULL;
	*found = 0;
	if (!LOAD(&g_st_n) || !lock(&g_st_lock))
		return NULL;
	for (int i = 0; i < g_st_hi; i++)
		if (g_st[i].key == (uintptr_t)f && g_st[i].kind == SK_STREAM) {
			*found = 1;
			rel = sticky_drop(i);
			break;
		}
	unlock(&g_st_lock);
	return rel;
}

static FILE *fopen_impl(const char *path, const char *mode, FILE *old, int how)
{
#define FOPEN_CALL                                                             \
	(how == 0 ? REAL(fopen)(path, mode) : how == 1 ? REAL(fopen64)(path, mode) \
	 : how == 2 ? REAL(freopen)(path, mode, old) : REAL(freopen64)(path, mode, old))
	if (!active() || t_guard)
		return FOPEN_CALL;
	t_guard++;
	char rel[PATH_MAX];
	int rl = -1, in = 0, existed = 1, found = 0;
	struct ent *gone = NULL;
	if (old) {
		if (path || !mode_writes(mode))
			gone = stream_forget(old, &found);
		fd_clear(fileno(old));
		if (found)
			in = enter();
	}
	if (path && mode_writes(mode) && (rl = resolve_at(AT_FDCWD, path, 1, rel)) >= 0) {
		struct stat st;
		existed = stat(path, &st) == 0;
		if (existed && !S_ISREG(st.st_mode))
			rl = -1; /* a FIFO (opening it may wait for a reader) or a device */
		else if (!in)
			in = enter();
	}
	FILE *f = FOPEN_CALL;
	int err = errno;
	if (gone)
		release(gone, in);
	if (f) {
		int fd = fileno(f);
		if (rl >= 0) {
			fd_set_path(fd, rel, (size_t)rl, mode[0] == 'a' ? O_APPEND | O_WRONLY : O_RDWR);
			if (in) {
				if (!existed)
					rec(MTM_REC_NS, 0, 0, rel, (size_t)rl);
				else if (mode[0] == 'w')
					rec(MTM_REC_TRUNC, 0, 0, rel, (size_t)rl);
				sticky_add(SK_STREAM, (uintptr_t)f, 0, 1, rel, (size_t)rl);
				struct stat st;
				if (fstat(fd, &st) == 0 && st.st_nlink > 1)
					multi_sticky();
			}
		} else if (!path && old && found) {
			/* freopen(NULL, mode, f): same file, new mode; still ours */
		} else {
			fd_clear(fd);
		}
	}
	if (in)
		leave();
	t_guard--;
	errno = err;
	return f;
#undef FOPEN_CALL
}


FILE *fdopen(int fd, const char *mode)
{
	struct ent *e = fd_get(fd);
	if (LIKELY(!e) || t_guard || !mode_writes(mode))
		return REAL(fdopen)(fd, mode);
	t_guard++;
	int in = enter();
	FILE *f = REAL(fdopen)(fd, mode);
	int err = errno;
	if (in) {
		if (f)
			sticky_add(SK_STREAM, (uintptr_t)f, 0, 1, e->path, e->len);
		if (f && MULTI(e))
			multi_sticky();
		leave();
	}
	t_guard--;
	errno = err;
	return f;
}

int fclose(FILE *f)
{
	if (!g_nfds || t_guard || !f)
		return REAL(fclose)(f);
	int fd = fileno(f);
	if (fd >= 0 && fd == g_logfd)
		return REAL(fclose)(f); /* cannot be: we never fdopen it */
	fd_clear(fd); /* before: once closed, another thread may reuse the number */
	int found;
	struct ent *gone = stream_forget(f, &found);
	if (!found)
		return REAL(fclose)(f);
	t_guard++;
	int in = enter();
	int r = REAL(fclose)(f);
	int err = errno;
	if (gone)
		release(gone, in);
	if (in)
		leave();
	t_guard--;
	errno = err;
	return r;
}

/* ------------------------------------------------------------------ */
/* Shared mappings.                                                    */

static void *mmap_impl(void *addr, size_t len, int prot, int flags, int fd, off_t off, int how)
{
#define MMAP_CALL (how ? REAL(mmap64)(addr, len, prot, flags, fd, off) : REAL(mmap)(addr, len, prot, flags, fd, off))
	struct ent *e = fd_get(fd);
	int type = flags & MAP_TYPE;
	if (LIKELY(!e) || (type != MAP_SHARED && type != MAP_SHARED_VALIDATE) || t_guard)
		return MMAP_CALL;
	int writable = (prot & PROT_WRITE) != 0;
	if (!writable && (LOAD(&e->flags) & O_ACCMODE) != O_RDWR)
		return MMAP_CALL; /* can never become writable */
	t_guard++;
	int in = enter();
	void *p = MMAP_CALL;
	int err = errno;
	if (in) {
		if (p != MAP_FAILED)
			sticky_add(SK_MAP, (uintptr_t)p, len, writable, e->path, e->len);
		if (p != MAP_FAILED && writable && MULTI(e))
			multi_sticky();
		leave();
	}
	t_guard--;
	errno = err;
	return p;
#undef MMAP_CALL
}

/* Code mapped at run time (a JIT, a loader of its own): see code_changed. */
static void *mmap_exec(void *p, int prot)
{
	if (UNLIKELY(prot & PROT_EXEC) && p != MAP_FAILED && !t_guard) {
		int err = errno;
		code_changed();
		errno = err;
	}
	return p;
}

/* The twins of the calls wrapped by hand above (rename, link, fopen,
 * mmap: calls.def's W_FORWARD rows). */
#define W_FORWARD(ret, name, params, call) \
	ret name params { return call; }
#include "track/calls.def"

int munmap(void *addr, size_t len)
{
	if (LIKELY(!LOAD(&g_st_maps)) || t_guard)
		return REAL(munmap)(addr, len);
	uintptr_t a = (uintptr_t)addr, z = a + len;
	int hit = 0;
	if (!lock(&g_st_lock))
		return REAL(munmap)(addr, len);
	for (int i = 0; i < g_st_hi && !hit; i++)
		hit = g_st[i].key && g_st[i].kind == SK_MAP && g_st[i].key >= a && g_st[i].key + g_st[i].len <= z;
	unlock(&g_st_lock);
	if (!hit)
		return REAL(munmap)(addr, len);
	t_guard++;
	int in = enter();
	int r = REAL(munmap)(addr, len);
	int err = errno;
	if (r == 0) {
		struct ent *gone[16];
		int ng = 0;
		if (lock(&g_st_lock)) {
			for (int i = 0; i < g_st_hi && ng < 16; i++)
				if (g_st[i].key && g_st[i].kind == SK_MAP && g_st[i].key >= a &&
				    g_st[i].key + g_st[i].len <= z) {
					struct ent *e = sticky_drop(i);
					if (e)
						gone[ng++] = e;
				}
			unlock(&g_st_lock);
		}
		for (int i = 0; i < ng; i++)
			release(gone[i], in);
	}
	if (in)
		leave();
	t_guard--;
	errno = err;
	return r;
}

/* A moved or resized mapping keeps its sticky entry (SQLite grows its
 * mappings this way). */
void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	void *want = va_arg(ap, void *);
	va_end(ap);
	void *p = REAL(mremap)(old, oldlen, newlen, flags, want);
	if (p != MAP_FAILED && LOAD(&g_st_maps) && lock(&g_st_lock)) {
		for (int i = 0; i < g_st_hi; i++)
			if (g_st[i].key == (uintptr_t)old && g_st[i].kind == SK_MAP) {
				g_st[i].key = (uintptr_t)p;
				g_st[i].len = newlen;
				break;
			}
		unlock(&g_st_lock);
	}
	return p;
}

/* The mapping that contains [addr, addr+len): its path into rel, or -1. */
static int map_find(uintptr_t a, size_t len, int want_ro, char *rel, int mark_writable)
{
	int rl = -1;
	if (!lock(&g_st_lock)) {
		note_untrackable();
		return -1;
	}
	for (int i = 0; i < g_st_hi; i++) {
		struct sticky *s = &g_st[i];
		if (!s->key || s->kind != SK_MAP || a + len <= s->key || a >= s->key + s->len)
			continue;
		if (want_ro && s->writable)
			continue;
		memcpy(rel, s->e->path, s->e->len + 1u);
		rl = s->e->len;
		if (mark_writable)
			s->writable = 1;
		break;
	}
	unlock(&g_st_lock);
	return rl;
}

int msync(void *addr, size_t len, int flags)
{
	if (LIKELY(!LOAD(&g_st_maps)) || t_guard)
		return REAL(msync)(addr, len, flags);
	char rel[PATH_MAX];
	int rl = map_find((uintptr_t)addr, len, 0, rel, 0);
	if (rl < 0)
		return REAL(msync)(addr, len, flags);
	t_guard++;
	int in = enter();
	int r = REAL(msync)(addr, len, flags);
	int err = errno;
	if (in) {
		rec(MTM_REC_WHOLE, 0, 0, rel, (size_t)rl);
		leave();
	}
	t_guard--;
	errno = err;
	return r;
}

static int mprotect_impl(void *addr, size_t len, int prot)
{
	if (LIKELY(!LOAD(&g_st_maps)) || t_guard || !(prot & PROT_WRITE))
		return REAL(mprotect)(addr, len, prot);
	char rel[PATH_MAX];
	int rl = map_find((uintptr_t)addr, len, 1, rel, 0);
	if (rl < 0)
		return REAL(mprotect)(addr, len, prot);
	t_guard++;
	int in = enter();
	int r = REAL(mprotect)(addr, len, prot);
	int err = errno;
	if (r == 0 && (rl = map_find((uintptr_t)addr, len, 1, rel, 1)) >= 0 && in)
		rec_sticky(MTM_REC_WHOLE, rel, (size_t)rl);
	if (in)
		leave();
	t_guard--;
	errno = err;
	return r;
}

int mprotect(void *addr, size_t len, int prot)
{
	int r = mprotect_impl(addr, len, prot);
	if (UNLIKELY(prot & PROT_EXEC) && r == 0 && !t_guard) {
		int err = errno;
		code_changed();
		errno = err;
	}
	return r;
}

/* A library unloaded: its code may have run in this interval. (dlopen is
 * not wrapped: the loader takes its caller for the search path, and what it
 * maps is still there at the checkpoint for the session to look at.) */
int dlclose(void *handle)
{
	int r = REAL(dlclose)(handle);
	int err = errno;
	if (!t_guard)
		code_changed();
	errno = err;
	return r;
}

/* ------------------------------------------------------------------ */
/* syscall(): io_uring, and calls without a libc wrapper.              */

struct open_how_ { uint64_t flags, mode, resolve; };

long syscall(long n, ...)
{
	va_list ap;
	va_start(ap, n);
	long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
	long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
	va_end(ap);
	return preload_traced_syscall(n, a1, a2, a3, a4, a5, a6);
}

long preload_real_syscall(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
	return REAL(syscall)(n, a1, a2, a3, a4, a5, a6);
}

/* What syscall() does for a call, also for a call trapped by dispatch.c. */
long preload_traced_syscall(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
	if (LOAD(&g_state) != ST_ON || t_guard)
		return REAL(syscall)(n, a1, a2, a3, a4, a5, a6);
	switch (n) {
#ifdef SYS_io_uring_setup
	case SYS_io_uring_setup: {
		long r = REAL(syscall)(n, a1, a2, a3, a4, a5, a6);
		if (r >= 0) {
			int err = errno;
			t_guard++;
			sticky_scan(); /* the ring writes files without us */
			t_guard--;
			errno = err;
		}
		return r;
	}
#endif
	case SYS_renameat2:
		return renameat2((int)a1, (const char *)a2, (int)a3, (const char *)a4, (unsigned)a5);
	case SYS_renameat:
		return renameat((int)a1, (const char *)a2, (int)a3, (const char *)a4);
	case SYS_unlinkat:
		return unlinkat((int)a1, (const char *)a2, (int)a3);
	case SYS_mkdirat:
		return mkdirat((int)a1, (const char *)a2, (mode_t)a3);
	case SYS_write:
		return write((int)a1, (const void *)a2, (size_t)a3);
	case SYS_pwrite64:
		return pwrite((int)a1, (const void *)a2, (size_t)a3, (off_t)a4);
	case SYS_writev:
		return writev((int)a1, (const struct iovec *)a2, (int)a3);
	case SYS_pwritev: /* the offset comes split in two longs: low, high */
		return pwritev((int)a1, (const struct iovec *)a2, (int)a3,
		               (off_t)(((unsigned long)a4) | ((unsigned long)a5 << 32 << 32)));
#ifdef SYS_pwritev2
	case SYS_pwritev2:
		return pwritev2((int)a1, (const struct iovec *)a2, (int)a3,
		                (off_t)(((unsigned long)a4) | ((unsigned long)a5 << 32 << 32)), (int)a6);
#endif
#ifdef SYS_pidfd_getfd
	case SYS_pidfd_getfd: {
		long fd = REAL(syscall)(n, a1, a2, a3, a4, a5, a6);
		adopt_fd((int)fd);
		return fd;
	}
#endif
	case SYS_ftruncate:
		return ftruncate((int)a1, (off_t)a2);
	case SYS_fallocate:
		return fallocate((int)a1, (int)a2, (off_t)a3, (off_t)a4);
	case SYS_close:
		return close((int)a1);
#ifdef SYS_openat2
	case SYS_openat2: {
		/* RESOLVE_* semantics cannot be pre-checked: record after */
		const struct open_how_ *how = (const void *)a3;
		long fd = REAL(syscall)(n, a1, a2, a3, a4, a5, a6);
		int err = errno;
		char canon[PATH_MAX];
		size_t rl;
		const char *rel;
		if (fd >= 0 && how && fdpath((int)fd, canon) > 0 && (rel = in_root(canon, &rl)) && trackable((int)fd)) {
			t_guard++;
			fd_set_path((int)fd, rel, rl, (uint32_t)how->flags);
			if ((how->flags & (O_CREAT | O_TRUNC)) && enter()) {
				rec(MTM_REC_NS, 0, 0, rel, rl); /* created or truncated: rescan */
				leave();
			}
			t_guard--;
		} else if (fd >= 0) {
			fd_clear((int)fd);
		}
		errno = err;
		return fd;
	}
#endif
	default:
		return REAL(syscall)(n, a1, a2, a3, a4, a5, a6);
	}
}

/* liburing issues its system calls itself (not through syscall()); its
 * entry points that make a ring are what we can see. */
static int uring_made(int r)
{
	if (r >= 0 && LOAD(&g_state) == ST_ON && !t_guard) {
		int err = errno;
		t_guard++;
		sticky_scan();
		t_guard--;
		errno = err;
	}
	return r;
}

int io_uring_setup(unsigned entries, void *p) { return uring_made(REAL(io_uring_setup)(entries, p)); }
int io_uring_queue_init(unsigned entries, void *ring, unsigned flags)
{
	return uring_made(REAL(io_uring_queue_init)(entries, ring, flags));
}
int io_uring_queue_init_params(unsigned entries, void *ring, void *p)
{
	return uring_made(REAL(io_uring_queue_init_params)(entries, ring, p));
}

/* ------------------------------------------------------------------ */
/* Children: fork, vfork, exec, posix_spawn.                           */

/* vfork's child shares our memory: our tables would be its tables. A fork
 * is a vfork with more copying, which POSIX allows. */
pid_t vfork(void) { return REAL(fork)(); }

enum { X_DYN = 0, X_STATIC = 1, X_NOPRELOAD = 2, X_UNKNOWN = 3 };

static int inspect_path(int dirfd, const char *path, int depth);

/* Will the interposer load in a program run from fd? */
static int inspect_fd(int fd, int depth)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return X_UNKNOWN;
	if (st.st_mode & (S_ISUID | S_ISGID))
		return X_NOPRELOAD; /* AT_SECURE: the loader and we stand aside */
	if (fgetxattr(fd, "security.capability", NULL, 0) >= 0)
		return X_NOPRELOAD;
	unsigned char buf[256];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	if (n < 4)
		return X_DYN; /* exec fails */
	if (buf[0] == '#' && buf[1] == '!') {
		if (depth > 3)
			return X_UNKNOWN;
		buf[n] = 0;
		char *p = (char *)buf + 2;
		while (*p == ' ' || *p == '\t')
			p++;
		char *q = p;
		while (*q && *q != ' ' && *q != '\t' && *q != '\n')
			q++;
		*q = 0;
		return *p == '/' ? inspect_path(AT_FDCWD, p, depth + 1) : X_DYN;
	}
	if (n < (ssize_t)sizeof(Elf64_Ehdr) || memcmp(buf, ELFMAG, SELFMAG) != 0)
		return X_DYN; /* the kernel will not run it itself (execvp hands it to sh) */
	Elf64_Ehdr eh;
	memcpy(&eh, buf, sizeof eh);
#if defined(__x86_64__)
	const int machine = EM_X86_64;
#elif defined(__aarch64__)
	const int machine = EM_AARCH64;
#else
	const int machine = eh.e_machine;
#endif
	if (buf[EI_CLASS] != ELFCLASS64 || eh.e_machine != machine)
		return X_NOPRELOAD;
	for (int i = 0; i < eh.e_phnum && i < 256; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * eh.e_phentsize)) != (ssize_t)sizeof ph)
			return X_UNKNOWN;
		if (ph.p_type == PT_INTERP)
			return X_DYN;
	}
	return X_STATIC;
}

static int inspect_path(int dirfd, const char *path, int depth)
{
	int fd = REAL(openat)(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		/* execute-only: cannot look, so assume the worst if it exists */
		return faccessat(dirfd, path, X_OK, 0) == 0 ? X_UNKNOWN : X_DYN;
	}
	int k = inspect_fd(fd, depth);
	REAL(close)(fd);
	return k;
}

/* The file execvp would run for file (PATH search), into out. */
static const char *search_path(const char *file, char *out)
{
	if (strchr(file, '/'))
		return file;
	const char *p = getenv("PATH");
	if (!p)
		p = "/bin:/usr/bin";
	size_t fl = strlen(file);
	while (*p) {
		const char *c = strchr(p, ':');
		size_t dl = c ? (size_t)(c - p) : strlen(p);
		if (dl + fl + 2 < PATH_MAX) {
			if (dl) {
				memcpy(out, p, dl);
				out[dl] = '/';
				memcpy(out + dl + 1, file, fl + 1);
			} else {
				memcpy(out, file, fl + 1);
			}
			if (access(out, X_OK) == 0)
				return out;
		}
		if (!c)
			break;
		p = c + 1;
	}
	return NULL;
}

enum { XE_EXECVE, XE_EXECVPE, XE_FEXECVE, XE_EXECVEAT, XE_SPAWN, XE_SPAWNP };
struct xcall {
	int how;
	int dirfd, fd, flags;
	const char *path;
	char *const *argv;
	char *const *envp;
	pid_t *pid;
	const posix_spawn_file_actions_t *fa;
	const posix_spawnattr_t *attr;
};

static int xcall_real(const struct xcall *x, char *const *envp)
{
	switch (x->how) {
	case XE_EXECVE:
		return REAL(execve)(x->path, x->argv, envp);
	case XE_EXECVPE:
		return REAL(execvpe)(x->path, x->argv, envp);
	case XE_FEXECVE:
		return REAL(fexecve)(x->fd, x->argv, envp);
	case XE_EXECVEAT:
		return REAL(execveat)(x->dirfd, x->path, x->argv, envp, x->flags);
	case XE_SPAWN:
		return REAL(posix_spawn)(x->pid, x->path, x->fa, x->attr, x->argv, envp);
	default:
		return REAL(posix_spawnp)(x->pid, x->path, x->fa, x->attr, x->argv, envp);
	}
}

static int xcall_classify(const struct xcall *x)
{
	char buf[PATH_MAX];
	const char *p;
	switch (x->how) {
	case XE_FEXECVE:
		return inspect_fd(x->fd, 0);
	case XE_EXECVEAT:
		if (x->path && !*x->path && (x->flags & AT_EMPTY_PATH))
			return inspect_fd(x->dirfd, 0);
		return inspect_path(x->dirfd, x->path, 0);
	case XE_EXECVPE:
	case XE_SPAWNP:
		p = search_path(x->path, buf);
		return p ? inspect_path(AT_FDCWD, p, 0) : X_DYN;
	default:
		return inspect_path(AT_FDCWD, x->path, 0);
	}
}

static int has_self(const char *list)
{
	const char *base = strrchr(g_self, '/');
	base = base ? base + 1 : g_self;
	return *base && strstr(list, base) != NULL;
}

/* Run the exec or spawn with an environment that keeps the interposer and
 * the session settings, whatever envp the caller built; declare programs
 * the interposer will not load into. */
static int xcall_run(const struct xcall *x)
{
	if (LOAD(&g_state) != ST_ON || t_guard || !g_self[0])
		return xcall_real(x, x->envp);
	t_guard++;
	int kind = xcall_classify(x);
	char *const *envp = x->envp ? x->envp : (char *const *)(char *[]){NULL};
	size_t n = 0, prelen = 0;
	const char *pre = NULL;
	while (envp[n]) {
		if (strncmp(envp[n], "LD_PRELOAD=", 11) == 0)
			pre = envp[n] + 11;
		n++;
	}
	if (pre)
		prelen = strlen(pre);
	char prebuf[prelen + strlen(g_self) + 16];
	char *nenv[n + 4];
	size_t k = 0;
	int have_pre = 0, have_s = 0, have_r = 0;
	for (size_t i = 0; i < n; i++) {
		const char *v = envp[i];
		if (strncmp(v, "LD_PRELOAD=", 11) == 0) {
			if (have_pre)
				continue;
			have_pre = 1;
			if (!has_self(v + 11)) {
				snprintf(prebuf, sizeof prebuf, "LD_PRELOAD=%s%s%s", g_self, *pre ? ":" : "", pre);
				v = prebuf;
			}
		} else if (strncmp(v, MTM_ENV_SESSION "=", sizeof MTM_ENV_SESSION) == 0) {
			have_s = 1; /* kept: a `metamori run` nested in the job sets its own */
		} else if (strncmp(v, MTM_ENV_ROOT "=", sizeof MTM_ENV_ROOT) == 0) {
			have_r = 1;
		}
		nenv[k++] = (char *)v;
	}
	if (!have_pre) {
		snprintf(prebuf, sizeof prebuf, "LD_PRELOAD=%s", g_self);
		nenv[k++] = prebuf;
	}
	if (!have_s)
		nenv[k++] = g_env_session;
	if (!have_r)
		nenv[k++] = g_env_root;
	nenv[k] = NULL;

	int untracked = kind != X_DYN;
	if (untracked)
		sticky_scan(); /* it changes files where we cannot see */
	/* Keep our log (and its lock) open across exec: the new image adopts
	 * it; a program without the interposer holds it till it exits. */
	int spawn = x->how == XE_SPAWN || x->how == XE_SPAWNP;
	int keep = g_logfd >= 0 && (!spawn || untracked);
	int lfd = g_logfd;
	if (keep)
		REAL(fcntl)(lfd, F_SETFD, 0);
	/* The new image turns dispatch on itself, if it can: until then its
	 * log does not say so (its adoption records MTM_REC_CODE). */
	struct mtm_log_hdr *h = keep && !spawn ? LOAD(&g_hdr) : NULL;
	uint32_t said = h ? __atomic_exchange_n(&h->dispatch, 0, __ATOMIC_SEQ_CST) : 0;
	t_guard--;
	int r = xcall_real(x, nenv);
	int err = errno;
	if (said && dispatch_on())
		__atomic_store_n(&h->dispatch, said, __ATOMIC_SEQ_CST);
	if (keep)
		REAL(fcntl)(lfd, F_SETFD, FD_CLOEXEC);
	errno = err;
	return r;
}

int execve(const char *path, char *const argv[], char *const envp[])
{
	struct xcall x = {.how = XE_EXECVE, .path = path, .argv = argv, .envp = envp};
	return xcall_run(&x);
}

int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
	struct xcall x = {.how = XE_EXECVEAT, .dirfd = dirfd, .path = path, .argv = argv, .envp = envp, .flags = flags};
	return xcall_run(&x);
}

int fexecve(int fd, char *const argv[], char *const envp[])
{
	struct xcall x = {.how = XE_FEXECVE, .fd = fd, .argv = argv, .envp = envp};
	return xcall_run(&x);
}

int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

int execvpe(const char *file, char *const argv[], char *const envp[])
{
	struct xcall x = {.how = XE_EXECVPE, .path = file, .argv = argv, .envp = envp};
	return xcall_run(&x);
}

int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }

#define COLLECT_ARGS(arg0, last_is_env)                                           \
	va_list ap;                                                               \
	size_t argc = 1;                                                          \
	va_start(ap, arg0);                                                       \
	while (va_arg(ap, const char *))                                          \
		argc++;                                                           \
	va_end(ap);                                                               \
	char *argv[argc + 1];                                                     \
	argv[0] = (char *)arg0;                                                   \
	va_start(ap, arg0);                                                       \
	for (size_t i = 1; i <= argc; i++)                                        \
		argv[i] = va_arg(ap, char *);                                     \
	char *const *envp = last_is_env ? va_arg(ap, char *const *) : environ;    \
	va_end(ap);

int execl(const char *path, const char *arg0, ...)
{
	COLLECT_ARGS(arg0, 0);
	return execve(path, argv, envp);
}

int execle(const char *path, const char *arg0, ...)
{
	COLLECT_ARGS(arg0, 1);
	return execve(path, argv, envp);
}

int execlp(const char *file, const char *arg0, ...)
{
	COLLECT_ARGS(arg0, 0);
	return execvpe(file, argv, envp);
}

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct xcall x = {.how = XE_SPAWN, .pid = pid, .path = path, .fa = fa, .attr = attr, .argv = argv, .envp = envp};
	return xcall_run(&x);
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                 const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct xcall x = {.how = XE_SPAWNP, .pid = pid, .path = file, .fa = fa, .attr = attr, .argv = argv, .envp = envp};
	return xcall_run(&x);
}

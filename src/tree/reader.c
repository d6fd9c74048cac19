/* reader.c — see reader.h. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "metamori.h"
#include "io/io.h"
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* (Linux 5.14; an older kernel says EINVAL: the hashing faults them in) */
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#include "tree/reader.h"
#include "util/error.h"
#include "util/thread.h"
#include "util/xxh.h"

#define HUGE_PAGE ((size_t)2 << 20)

/* cachestat(2), Linux 6.5; glibc 2.36's headers do not have it yet. */
#ifndef SYS_cachestat
#define SYS_cachestat 451
#endif
struct cs_range {
	uint64_t off, len;
};
struct cs_stat {
	uint64_t cache, dirty, writeback, evicted, recently_evicted;
};

void (*reader_mapped_hook)(int fd, const unsigned char *win, size_t len);

/* Mapped reads: 1 once mtm_set_mapped_reads(1) installed the handler, 0
 * again if the kernel cannot say what is cached (cachestat: ENOSYS). */
static atomic_int map_reads;
static struct sigaction bus_old; /* SIGBUS as it was before ours */

/* While this thread touches a mapping: where to jump on a SIGBUS in it.
 * initial-exec: a signal handler must not be the first to touch a dynamic
 * TLS block (its lazy allocation is not async-signal-safe). */
#define TLS __thread __attribute__((tls_model("initial-exec")))
static TLS sigjmp_buf *bus_jmp;
static TLS const unsigned char *bus_lo, *bus_hi;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	const unsigned char *a = si->si_addr;
	if (bus_jmp && a >= bus_lo && a < bus_hi)
		siglongjmp(*bus_jmp, 1); /* our mapping: the file was shortened */
	/* not ours: as if we had not been here */
	if (bus_old.sa_flags & SA_SIGINFO) {
		bus_old.sa_sigaction(sig, si, uc);
	} else if (bus_old.sa_handler != SIG_DFL && bus_old.sa_handler != SIG_IGN) {
		bus_old.sa_handler(sig);
	} else {
		/* the default action: the faulting access runs again and kills */
		signal(SIGBUS, SIG_DFL);
	}
}

static atomic_int installed; /* our handler is SIGBUS's */

void reader_forget_handler(void)
{
	atomic_store(&installed, 0);
}

int mtm_set_mapped_reads(int on)
{
	/* the store's index too (io_index_map): SQLite maps it; a SIGBUS in that
	 * mapping (the file shortened by someone else, an I/O error) is not ours
	 * and goes to the disposition that was there before */
	io_set_index_map(on);
	if (on && !atomic_exchange(&installed, 1)) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = on_sigbus;
		/* SA_NODEFER: a jump out of the handler leaves SIGBUS unblocked
		 * without sigsetjmp saving the mask (a system call per piece) */
		sa.sa_flags = SA_SIGINFO | SA_NODEFER;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGBUS, &sa, &bus_old)) {
			atomic_store(&installed, 0);
			return errno;
		}
	}
	if (on) {
		struct cs_range r = {0, 1};
		struct cs_stat cs;
		if (syscall(SYS_cachestat, -1, &r, &cs, 0) && errno == ENOSYS) {
			atomic_store(&map_reads, 0);
			return ENOSYS;
		}
	}
	atomic_store(&map_reads, on != 0);
	return 0;
}

static void hash_blocks(const unsigned char *at, size_t got, uint64_t *h)
{
	size_t nblk = (got + MTM_BLOCK - 1) / MTM_BLOCK;
	for (size_t b = 0; b < nblk; b++) {
		const unsigned char *blk = at + b * MTM_BLOCK;
		size_t len = got - b * MTM_BLOCK;
		if (len < MTM_BLOCK) { /* the file's last block, zero-padded */
			unsigned char pad[MTM_BLOCK];
			memcpy(pad, blk, len);
			memset(pad + len, 0, MTM_BLOCK - len);
			h[b] = XXH3_64bits(pad, MTM_BLOCK);
		} else {
			h[b] = XXH3_64bits(blk, MTM_BLOCK);
		}
	}
}

/* Hashes len mapped bytes at at into h; 0, or -1 if the file was shortened
 * under them (a SIGBUS anywhere in [lo, hi), this thread's mapping). */
static int hash_mapped(const unsigned char *at, size_t len, uint64_t *h, const unsigned char *lo,
                       const unsigned char *hi)
{
	sigjmp_buf jb;
	if (sigsetjmp(jb, 0)) {
		bus_jmp = NULL;
		return -1;
	}
	/* its pages mapped first, in one call (each thread its own part: the
	 * mapping is made without MAP_POPULATE); EFAULT: past the file's end */
	if (madvise((void *)at, len, MADV_POPULATE_READ) && errno == EFAULT)
		return -1;
	bus_lo = lo;
	bus_hi = hi;
	bus_jmp = &jb;
	atomic_signal_fence(memory_order_seq_cst); /* (set before the first touch) */
	hash_blocks(at, len, h);
	atomic_signal_fence(memory_order_seq_cst);
	bus_jmp = NULL;
	return 0;
}

/* A second thread hashing part of a big window while we hash the rest:
 * warm, hashing is all a scan's reading costs once nothing is copied. */
struct hash_helper {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	const unsigned char *at, *lo, *hi;
	size_t len;
	uint64_t *h;
	/* a read job (fd >= 0): len bytes at off of fd read into buf and hashed */
	int fd;
	int64_t off;
	unsigned char *buf;
	int64_t ns; /* the job's CPU time, for pick mode */
	int posted, done, fault, quit;
};

static int64_t thread_ns(void);

/* Reads len bytes at off of fd into buf and hashes them into h, a piece
 * at a time (each hashed while it is still in the CPU's cache); 0, or -1
 * if the file ended early or could not be read (the caller reads again). */
static int read_hashed(int fd, unsigned char *buf, size_t len, int64_t off, uint64_t *h)
{
	for (size_t o = 0; o < len; o += READ_PIECE) {
		size_t n = len - o < READ_PIECE ? len - o : READ_PIECE, got;
		if (io_pread(fd, buf + o, n, (off_t)(off + (int64_t)o), &got) || got < n)
			return -1;
		hash_blocks(buf + o, n, h + o / MTM_BLOCK);
	}
	return 0;
}

static void *helper_main(void *arg)
{
	struct hash_helper *hh = arg;
	pthread_mutex_lock(&hh->mu);
	for (;;) {
		while (!hh->posted && !hh->quit)
			pthread_cond_wait(&hh->cv, &hh->mu);
		if (hh->quit)
			break;
		hh->posted = 0;
		pthread_mutex_unlock(&hh->mu);
		int64_t t0 = thread_ns();
		int fault = hh->fd >= 0 ? read_hashed(hh->fd, hh->buf, hh->len, hh->off, hh->h)
		                        : hash_mapped(hh->at, hh->len, hh->h, hh->lo, hh->hi);
		int64_t ns = thread_ns() - t0;
		pthread_mutex_lock(&hh->mu);
		hh->ns = ns;
		hh->fault = fault;
		hh->done = 1;
		pthread_cond_broadcast(&hh->cv);
	}
	pthread_mutex_unlock(&hh->mu);
	return NULL;
}

static struct hash_helper *helper_start(void)
{
	struct hash_helper *hh = calloc(1, sizeof *hh);
	if (!hh)
		return NULL;
	pthread_mutex_init(&hh->mu, NULL);
	pthread_cond_init(&hh->cv, NULL);
	int rc = thread_start_quiet(&hh->th, helper_main, hh);
	if (rc) {
		pthread_cond_destroy(&hh->cv);
		pthread_mutex_destroy(&hh->mu);
		free(hh);
		return NULL;
	}
	return hh;
}

static void helper_stop(struct hash_helper *hh)
{
	if (!hh)
		return;
	pthread_mutex_lock(&hh->mu);
	hh->quit = 1;
	pthread_cond_broadcast(&hh->cv);
	pthread_mutex_unlock(&hh->mu);
	pthread_join(hh->th, NULL);
	pthread_cond_destroy(&hh->cv);
	pthread_mutex_destroy(&hh->mu);
	free(hh);
}

/* Below this a window is hashed on one thread: the hand-off would cost
 * more than the half it saves (W2's 16 KiB files never wake the helper). */
#define SHARE_MIN ((size_t)1 << 20)

/* The window's blocks hashed into rd->win_h (read into it first from fd
 * when it is the buffer, rd->wbuf), on two threads when it is big; 0, or
 * -1 if the file was shortened under it (or, read, could not be read).
 * *helper_ns: the helper's CPU time for its part. */
static int hash_window(scan_reader *rd, int fd, int64_t *helper_ns)
{
	const unsigned char *lo = rd->win, *hi = rd->win + rd->win_len;
	int read = rd->win == rd->wbuf;
	*helper_ns = 0;
	if (rd->win_len < SHARE_MIN || rd->one_thread || (!rd->hh && !(rd->hh = helper_start())))
		return read ? read_hashed(fd, rd->wbuf, rd->win_len, rd->win_off, rd->win_h)
		            : hash_mapped(lo, rd->win_len, rd->win_h, lo, hi);
	struct hash_helper *hh = rd->hh;
	size_t nblk = (rd->win_len + MTM_BLOCK - 1) / MTM_BLOCK, mine = nblk / 2;
	pthread_mutex_lock(&hh->mu);
	hh->at = lo + mine * MTM_BLOCK;
	hh->len = rd->win_len - mine * MTM_BLOCK;
	hh->h = rd->win_h + mine;
	hh->lo = lo;
	hh->hi = hi;
	hh->fd = read ? fd : -1;
	hh->off = rd->win_off + (int64_t)(mine * MTM_BLOCK);
	hh->buf = rd->wbuf + mine * MTM_BLOCK;
	hh->done = hh->fault = 0;
	hh->posted = 1;
	pthread_cond_broadcast(&hh->cv);
	pthread_mutex_unlock(&hh->mu);
	int fault = read ? read_hashed(fd, rd->wbuf, mine * MTM_BLOCK, rd->win_off, rd->win_h)
	                 : hash_mapped(lo, mine * MTM_BLOCK, rd->win_h, lo, hi);
	pthread_mutex_lock(&hh->mu);
	while (!hh->done)
		pthread_cond_wait(&hh->cv, &hh->mu);
	fault |= hh->fault;
	*helper_ns = hh->ns;
	pthread_mutex_unlock(&hh->mu);
	return fault ? -1 : 0;
}

/* This thread's CPU time (ns), for pick mode. */
static int64_t thread_ns(void)
{
	struct timespec t;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t))
		return 0;
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* (a sample of no time, as when the clock fails, is not taken: with no
 * map cost, windows are mapped as without pick) */
static void smooth(double *cost, int64_t ns, size_t bytes)
{
	if (ns <= 0 || !bytes)
		return;
	double c = (double)ns / (double)bytes;
	*cost = *cost > 0 ? 0.75 * *cost + 0.25 * c : c;
}

int reader_pick_map(scan_reader *rd)
{
	if (!rd->pick)
		return 1;
	rd->windows++;
	if (rd->map_cost <= 0)
		return 1;
	if (rd->read_cost <= 0)
		return 0;
	int map = rd->map_cost <= rd->read_cost;
	/* now and then the other way, so its cost follows the machine's */
	return rd->windows % READER_PICK_EVERY ? map : !map;
}

void reader_init(scan_reader *rd)
{
	memset(rd, 0, sizeof *rd);
	rd->win_fd = -1;
}

void reader_end_file(scan_reader *rd)
{
	if (rd->win && rd->win == rd->wbuf) {
		if (rd->pick)
			smooth(&rd->read_cost, rd->win_ns, rd->win_len);
	} else if (rd->win) {
		int64_t t0 = rd->pick ? thread_ns() : 0;
		munmap(rd->win, rd->win_len);
		if (rd->pick) /* (unmapping is part of what mapping costs) */
			smooth(&rd->map_cost, rd->win_ns + thread_ns() - t0, rd->win_len);
	}
	rd->win = NULL;
	rd->declined = 0;
	rd->win_fd = -1;
	rd->win_off = 0;
	rd->win_len = 0;
}

/* rd->wbuf, a window's worth, made once: 0, or -1 if it cannot be. In
 * huge pages where the kernel has them, and faulted in at once (a fault is
 * dear in a virtual machine; not timed: it is paid once a reader, where a
 * mapping's faults and unmapping are paid each window). */
static int window_buffer(scan_reader *rd)
{
	if (rd->wbuf)
		return 0;
	void *b;
	if (posix_memalign(&b, HUGE_PAGE, MAP_WINDOW))
		return -1;
	madvise(b, MAP_WINDOW, MADV_HUGEPAGE);
	madvise(b, MAP_WINDOW, MADV_POPULATE_WRITE); /* (advice: else the first read faults them in) */
	rd->wbuf = b;
	return 0;
}

/* The window holding [off, off + want) of fd, mapped and hashed if all of
 * it is cached: the one we have, or a new one from off on (up to until). */
static void window_for(scan_reader *rd, int fd, int64_t off, size_t want, int64_t until)
{
	if (rd->win_fd == fd && off >= rd->win_off && off + (int64_t)want <= rd->win_off + (int64_t)rd->win_len)
		return;
	reader_end_file(rd);
	int64_t len = until - off;
	if (len > (int64_t)MAP_WINDOW)
		len = MAP_WINDOW;
	if (len < (int64_t)want)
		len = (int64_t)want;
	rd->win_fd = fd;
	rd->win_off = off;
	rd->win_len = (size_t)len;
	struct cs_range r = {(uint64_t)off, (uint64_t)len};
	struct cs_stat cs;
	uint64_t pages = ((uint64_t)len + 4095) / 4096;
	if (syscall(SYS_cachestat, fd, &r, &cs, 0) || cs.cache < pages)
		return; /* (not all cached: read; its read-ahead serves the cold case) */
	int map = reader_pick_map(rd);
	/* (under an injected fault plan, one thread: a fault the buffer's read
	 * meets is not reported but read again, and a test would miss it) */
	if (!map && (rd->one_thread || rd->win_len < SHARE_MIN || io_fault_plan_active() || window_buffer(rd))) {
		rd->declined = 1; /* (read piece by piece: its reads are timed) */
		return;
	}
	if (!rd->win_h) {
		if (!(rd->win_h = malloc(MAP_WINDOW / MTM_BLOCK * sizeof *rd->win_h)))
			return;
		memset(rd->win_h, 0, MAP_WINDOW / MTM_BLOCK * sizeof *rd->win_h); /* (its faults, not timed) */
	}
	/* the helper started before the clock: its start is not either way's cost */
	if (rd->pick && !rd->one_thread && !rd->hh && rd->win_len >= SHARE_MIN)
		rd->hh = helper_start();
	int64_t t0 = rd->pick ? thread_ns() : 0, helper_ns;
	if (map) {
		void *m = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, fd, (off_t)off);
		if (m == MAP_FAILED)
			return;
		rd->win = m;
		if (reader_mapped_hook)
			reader_mapped_hook(fd, rd->win, rd->win_len);
	} else {
		rd->win = rd->wbuf; /* read into it, on two threads, and served from it as a mapping is */
		if (reader_mapped_hook)
			reader_mapped_hook(fd, NULL, rd->win_len);
	}
	if (hash_window(rd, fd, &helper_ns)) {
		/* shortened under us: the window is read, as pread finds it now */
		if (map)
			munmap(rd->win, rd->win_len);
		rd->win = NULL;
		return;
	}
	if (rd->pick)
		rd->win_ns = thread_ns() - t0 + helper_ns;
}

int reader_reserve(scan_reader *rd, size_t cap)
{
	assert(cap > 0 && cap % MTM_BLOCK == 0 && cap <= READ_PIECE);
	if (cap <= rd->cap)
		return 0;
	free(rd->mem);
	rd->mem = NULL;
	rd->cap = 0;
	/* a 1 MiB piece in a huge page of its own, where the kernel has one:
	 * its first fill costs one page fault, not one per 4 KiB (a fault is
	 * dear in a virtual machine; a checkpoint is a short process) */
	size_t bytes = cap >= HUGE_PAGE / 2 ? HUGE_PAGE : cap;
	size_t align = bytes == HUGE_PAGE ? HUGE_PAGE : MTM_BLOCK;
	if (posix_memalign((void **)&rd->mem, align, bytes))
		return mtm_set_error(ENOMEM, "read");
	if (align == HUGE_PAGE)
		madvise(rd->mem, bytes, MADV_HUGEPAGE); /* (advice: without it, small pages) */
	if (!rd->p && !(rd->p = calloc(1, sizeof *rd->p)))
		return mtm_set_error(ENOMEM, "read");
	rd->p->buf = rd->mem;
	rd->cap = cap;
	return 0;
}

void reader_read(scan_reader *rd, file_src src, read_piece *p)
{
	assert(p->want <= READ_PIECE);
	assert(p->off % 4096 == 0); /* (mmap's offsets are page-aligned) */
	p->got = 0;
	p->map = NULL;
	if (atomic_load_explicit(&map_reads, memory_order_relaxed) && !src.mem && p->want > 0 &&
	    p->until >= p->off + (int64_t)p->want && (p->until - p->off >= (int64_t)MAP_MIN || rd->win_fd == src.fd)) {
		window_for(rd, src.fd, p->off, p->want, p->until);
		if (rd->win) {
			size_t first = (size_t)(p->off - rd->win_off) / MTM_BLOCK;
			p->map = rd->win + (p->off - rd->win_off);
			p->got = p->want;
			p->err = 0;
			/* (a piece ends at a block's end, or where the window does) */
			memcpy(p->h, rd->win_h + first, (p->want + MTM_BLOCK - 1) / MTM_BLOCK * sizeof *p->h);
			return;
		}
	}
	/* a cached window read by choice: what reading costs, timed */
	int timed = rd->declined && rd->win_fd == src.fd && p->off >= rd->win_off &&
	            p->off + (int64_t)p->want <= rd->win_off + (int64_t)rd->win_len;
	int64_t t0 = timed ? thread_ns() : 0;
	if ((p->err = src_pread(src, p->buf, p->want, p->off, &p->got)))
		return;
	hash_blocks(p->buf, p->got, p->h);
	if (timed && p->got)
		smooth(&rd->read_cost, thread_ns() - t0, p->got);
}

int reader_settle(read_piece *p, size_t b, size_t e)
{
	if (!p->map || b >= e)
		return 0;
	size_t from = b * MTM_BLOCK, to = e * MTM_BLOCK < p->got ? e * MTM_BLOCK : p->got;
	if (from >= to)
		return 0; /* (past what the piece holds) */
	sigjmp_buf jb;
	if (sigsetjmp(jb, 0)) {
		bus_jmp = NULL;
		p->got = from; /* nothing from b on can be read: as a short read */
		return -1;
	}
	bus_lo = p->map + from;
	bus_hi = p->map + to;
	bus_jmp = &jb;
	atomic_signal_fence(memory_order_seq_cst);
	memcpy(p->buf + from, p->map + from, to - from);
	atomic_signal_fence(memory_order_seq_cst);
	bus_jmp = NULL;
	hash_blocks(p->buf + from, to - from, p->h + b);
	return 0;
}

void reader_free(scan_reader *rd)
{
	reader_end_file(rd);
	helper_stop(rd->hh);
	free(rd->wbuf);
	free(rd->win_h);
	free(rd->p);
	free(rd->mem);
	memset(rd, 0, sizeof *rd);
}

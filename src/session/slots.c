/*
 * slots.c — the pre-copy's store of copied blocks (slots.h): found by
 * path, inode and block number, listed for writing ahead, freed.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "session/slots.h"
#include "util/error.h"

/* The pool: slots carved from slabs of SLAB_BYTES, aligned to their size
 * (a slot finds its slab by masking its address), each with a free list
 * linked through the free slots' first bytes. A slab is one huge page
 * where the kernel allows, faulted in when it is made, and it stays while
 * the busiest interval needs it. The session's
 * thread takes and drops slots; the lock is for whoever else may (cheap
 * when uncontended). */
#define SLAB_BYTES ((size_t)2 << 20)
#define SLAB_HEAD 64
#define SLAB_SLOTS ((SLAB_BYTES - SLAB_HEAD) / SLOT_LEN)

struct slab {
	struct slab *next, *prev;       /* every slab */
	struct slab *anext, *aprev;     /* the slabs with free slots (nfree > 0) */
	void *free;        /* its free slots */
	size_t nfree;
};

static struct {
	pthread_mutex_t mu;
	struct slab *slabs;  /* every slab */
	struct slab *avail;  /* those with free slots: taken from the first (O(1): a
	                      * search for one, at each slot taken once slabs had
	                      * one free slot each, was 25% of the session's CPU) */
	size_t nslabs;
	size_t used;         /* slots taken and not released */
	size_t peak;         /* the most taken at once since the last trim */
	size_t peaks[SLOT_POOL_KEEP]; /* the peaks of the last intervals (a ring) */
	size_t npeak;        /* trims so far (the ring's next place: npeak % SLOT_POOL_KEEP) */
	size_t made;         /* slabs made since slot_pool_made */
	int small_pages;     /* a huge page came cold: slabs are made of small ones (slab_new) */
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

#ifdef __SANITIZE_ADDRESS__
/* (the sanitizer build mallocs and frees each slot: a use after release is
 * caught) */
#define POOLED 0
#else
#define POOLED 1
#endif

static void avail_add(struct slab *sl)
{
	sl->aprev = NULL;
	sl->anext = pool.avail;
	if (pool.avail)
		pool.avail->aprev = sl;
	pool.avail = sl;
}

static void avail_remove(struct slab *sl)
{
	if (sl->aprev)
		sl->aprev->anext = sl->anext;
	else
		pool.avail = sl->anext;
	if (sl->anext)
		sl->anext->aprev = sl->aprev;
	sl->anext = sl->aprev = NULL;
}

static int64_t thread_cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts))
		return 0;
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct slab *slab_new(void)
{
	/* twice the size, then the unaligned ends cut off */
	unsigned char *m = mmap(NULL, 2 * SLAB_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	unsigned char *base = (unsigned char *)(((uintptr_t)m + SLAB_BYTES - 1) & ~(uintptr_t)(SLAB_BYTES - 1));
	if (base > m)
		munmap(m, (size_t)(base - m));
	if (base + SLAB_BYTES < m + 2 * SLAB_BYTES)
		munmap(base + SLAB_BYTES, (size_t)(m + 2 * SLAB_BYTES - (base + SLAB_BYTES)));
	/* One huge page where the kernel gives them (transparent_hugepage
	 * "madvise" or "always"), then faulted in at once. Hints both: else it
	 * is faulted in a page at a time as touched, which costs a trap to the
	 * hypervisor per 4 KiB on a VM with shadow page tables (13-50 ms per
	 * slab measured on the 2-CPU VM of BENCHMARKS.md; 0.2-2 ms as a huge
	 * page).
	 *
	 * But a huge page can come cold: a VM that reports free memory to its
	 * host (free page reporting, virtio-balloon; the benchmark VM reports
	 * free blocks of 8 MiB and more) has it taken back, and each of its
	 * 4 KiB is then faulted in again by the host as the kernel zeroes it:
	 * 5.3 ms of CPU per slab there (0.17-0.22 ms warm), against 0.8-0.9 ms
	 * for 4 KiB pages populated in one call (those come from the smaller
	 * free blocks, never reported). The session's first checkpoint under
	 * pgbench makes 26-38 slabs: 130-200 ms of zeroing, a third of that
	 * checkpoint's CPU (P16). So the populate is timed (CPU time, not
	 * preemption), and once a huge slab cost more than a small one would,
	 * the rest are small pages. */
	enum { COLD_NS = 1500000 };
	int huge = !pool.small_pages;
#ifdef MADV_HUGEPAGE
	if (huge)
		(void)madvise(base, SLAB_BYTES, MADV_HUGEPAGE);
#endif
#ifdef MADV_POPULATE_WRITE
	int64_t t0 = huge ? thread_cpu_ns() : 0;
	(void)madvise(base, SLAB_BYTES, MADV_POPULATE_WRITE);
	if (huge && thread_cpu_ns() - t0 > COLD_NS)
		pool.small_pages = 1;
#endif
	struct slab *sl = (struct slab *)base;
	sl->free = NULL;
	for (size_t i = SLAB_SLOTS; i-- > 0;) {
		void *slot = base + SLAB_HEAD + i * SLOT_LEN;
		*(void **)slot = sl->free;
		sl->free = slot;
	}
	sl->nfree = SLAB_SLOTS;
	sl->prev = NULL;
	sl->next = pool.slabs;
	if (pool.slabs)
		pool.slabs->prev = sl;
	pool.slabs = sl;
	pool.nslabs++;
	pool.made++;
	avail_add(sl);
	return sl;
}

static struct slab *slab_of(const void *slot)
{
	return (struct slab *)((uintptr_t)slot & ~(uintptr_t)(SLAB_BYTES - 1));
}

unsigned char *slot_alloc(void)
{
	if (!POOLED) {
		unsigned char *s = malloc(SLOT_LEN);
		pthread_mutex_lock(&pool.mu);
		pool.used += s != NULL;
		pthread_mutex_unlock(&pool.mu);
		return s;
	}
	pthread_mutex_lock(&pool.mu);
	struct slab *sl = pool.avail;
	if (!sl && !(sl = slab_new())) {
		pthread_mutex_unlock(&pool.mu);
		return NULL;
	}
	assert(sl->nfree > 0);
	void *s = sl->free;
	sl->free = *(void **)s;
	if (!--sl->nfree)
		avail_remove(sl);
	if (++pool.used > pool.peak)
		pool.peak = pool.used;
	pthread_mutex_unlock(&pool.mu);
	return s;
}

void slot_release(unsigned char *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&pool.mu);
	assert(pool.used > 0);
	pool.used--;
	if (POOLED) {
		struct slab *sl = slab_of(s);
		assert(sl->nfree < SLAB_SLOTS);
		*(void **)s = sl->free;
		sl->free = s;
		if (!sl->nfree++)
			avail_add(sl);
	}
	pthread_mutex_unlock(&pool.mu);
	if (!POOLED)
		free(s);
}

void slot_pool_trim(int all)
{
	pthread_mutex_lock(&pool.mu);
	/* keep as many slabs as the busiest moment of the last SLOT_POOL_KEEP
	 * intervals filled */
	pool.peaks[pool.npeak++ % SLOT_POOL_KEEP] = all ? 0 : pool.peak;
	size_t most = 0;
	for (size_t i = 0; i < SLOT_POOL_KEEP; i++)
		most = pool.peaks[i] > most ? pool.peaks[i] : most;
	if (all)
		memset(pool.peaks, 0, sizeof pool.peaks);
	size_t keep = all ? 0 : (most + SLAB_SLOTS - 1) / SLAB_SLOTS;
	for (struct slab *sl = pool.slabs, *next; sl && pool.nslabs > keep; sl = next) {
		next = sl->next;
		if (sl->nfree != SLAB_SLOTS)
			continue;
		if (sl->prev)
			sl->prev->next = sl->next;
		else
			pool.slabs = sl->next;
		if (sl->next)
			sl->next->prev = sl->prev;
		avail_remove(sl);
		pool.nslabs--;
		munmap(sl, SLAB_BYTES);
	}
	pool.peak = pool.used;
	pthread_mutex_unlock(&pool.mu);
}

size_t slot_pool_made(void)
{
	pthread_mutex_lock(&pool.mu);
	size_t n = pool.made;
	pool.made = 0;
	pthread_mutex_unlock(&pool.mu);
	return n;
}

void slot_pool_counts(size_t *used, size_t *pooled)
{
	pthread_mutex_lock(&pool.mu);
	*used = pool.used;
	*pooled = pool.nslabs * SLAB_SLOTS - (POOLED ? pool.used : 0);
	pthread_mutex_unlock(&pool.mu);
}

static const unsigned char *precopy_block(const precopy *pc, int64_t b)
{
	const uint64_t *v = pc ? keymap_get(&pc->blocks, b, 0) : NULL;
	return v ? (const unsigned char *)(uintptr_t)*v : NULL;
}

/* The slot for block b, new or the old copy's: its bytes are overwritten.
 * Layout: SLOT_LEN (session.h). */
unsigned char *slot_for(precopy *pc, int64_t b, int *fresh)
{
	uint64_t *v = keymap_put(&pc->blocks, b, 0, fresh);
	if (v && *fresh) {
		if (!(*v = (uint64_t)(uintptr_t)slot_alloc()))
			return NULL; /* (an empty slot: precopy_block finds no copy there) */
		*slot_meta((unsigned char *)(uintptr_t)*v) = 0;
	}
	return v ? (unsigned char *)(uintptr_t)*v : NULL;
}

size_t precopy_unwritten(const precopy *pc) { return pc->unwritten; }

int precopy_each_unwritten(const precopy *pc, vec *out)
{
	for (size_t i = 0; i < pc->blocks.cap; i++) {
		if (!pc->blocks.slots[i].used)
			continue;
		unsigned char *slot = (unsigned char *)(uintptr_t)pc->blocks.slots[i].val;
		if (!slot || *slot_meta(slot) != SLOT_WHOLE)
			continue;
		pending_blk *p = vec_push(out);
		if (!p)
			return mtm_set_error(ENOMEM, "writing ahead");
		*p = (pending_blk){pc->blocks.slots[i].a, slot};
	}
	return 0;
}

void precopy_mark_written(precopy *pc) { pc->unwritten = 0; }

/* The fds the passes and the compares ahead keep for the barrier, in the
 * whole process. */
static size_t kept_fds;

/* Whether a pass may keep one more fd: PRECOPY_FDS_MAX, and a quarter of
 * RLIMIT_NOFILE (the session's own fds, the logs', the watcher's and the
 * barrier's directories need the rest). */
static int may_keep_fd(void)
{
	static size_t cap;
	if (!cap) {
		struct rlimit rl;
		size_t c = PRECOPY_FDS_MAX;
		if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 4 < c)
			c = (size_t)(rl.rlim_cur / 4);
		__atomic_store_n(&cap, c ? c : 1, __ATOMIC_RELAXED);
	}
	return __atomic_load_n(&kept_fds, __ATOMIC_RELAXED) < __atomic_load_n(&cap, __ATOMIC_RELAXED);
}

int kept_fd_take(void)
{
	if (!may_keep_fd())
		return 0;
	__atomic_add_fetch(&kept_fds, 1, __ATOMIC_RELAXED);
	return 1;
}

void kept_fd_give(void)
{
	__atomic_sub_fetch(&kept_fds, 1, __ATOMIC_RELAXED);
}

int precopy_keep_fd(precopy *pc, int fd)
{
	if (pc->fd1 || !kept_fd_take())
		return 0;
	pc->fd1 = fd + 1;
	return 1;
}

static void drop_fd(precopy *pc)
{
	if (!pc->fd1)
		return;
	close(pc->fd1 - 1);
	pc->fd1 = 0;
	kept_fd_give();
}

void precopy_drop_fd(pathmap *pre, const char *path)
{
	precopy *pc = pre->n ? pathmap_get(pre, path) : NULL;
	if (pc)
		drop_fd(pc);
}

int precopy_take_fd(pathmap *pre, const char *path)
{
	precopy *pc = pre->n ? pathmap_get(pre, path) : NULL;
	if (!pc || !pc->fd1)
		return -1;
	int fd = pc->fd1 - 1;
	pc->fd1 = 0;
	kept_fd_give();
	return fd;
}

void precopy_free(void *p)
{
	precopy *pc = p;
	if (!pc)
		return;
	drop_fd(pc);
	for (size_t i = 0; i < pc->blocks.cap; i++)
		if (pc->blocks.slots[i].used)
			slot_release((unsigned char *)(uintptr_t)pc->blocks.slots[i].val);
	keymap_free(&pc->blocks);
	free(pc);
}

const unsigned char *precopy_get(const pathmap *pre, const char *path, int64_t dev, int64_t ino, int64_t b)
{
	const precopy *pc = pathmap_get(pre, path);
	return pc && pc->dev == dev && pc->ino == ino ? precopy_block(pc, b) : NULL;
}

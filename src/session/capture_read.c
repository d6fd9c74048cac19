/*
 * capture_read.c — the barrier's reads: the scattered blocks of the
 * captures, taken from the pre-copy where it holds them and read in maximal
 * pieces otherwise (several threads where CPUs are to spare), then each
 * capture pointed at its bytes (materialize).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/io.h"
#include "session/tctx.h"
#include "util/error.h"

/* The pre-copied block b of path, or NULL if it must be read again. */
static const unsigned char *precopied(tctx *t, const char *path, int64_t dev, int64_t ino, int64_t b)
{
	const file_change *post = pathmap_get(&t->post.files, path);
	if (post) {
		/* (many writes since the peek: read it all again rather than search) */
		if (post->whole || post->ranges.n > 64 || (post->trunc_min >= 0 && b >= post->trunc_min / MTM_BLOCK))
			return NULL;
		for (size_t k = 0; k < post->ranges.n; k++) {
			const byte_range *r = &VEC_AT(&post->ranges, byte_range, k);
			if (r->off < (b + 1) * MTM_BLOCK && r->off + r->len > b * MTM_BLOCK)
				return NULL;
		}
	}
	return precopy_get(&t->pre, path, dev, ino, b);
}

/* After the barrier: each capture read during it points at its blocks, in
 * the pre-copy or in the bytes read in the barrier (both live until the
 * checkpoint is recorded and its hashes kept). */
int materialize(tctx *t)
{
	for (size_t i = 0; i < t->deferred.n; i++) {
		deferred_copy *d = &VEC_AT(&t->deferred, deferred_copy, i);
		capture *cap = d->cap;
		size_t nblk = 0;
		for (size_t k = 0; k < cap->runs.n; k++)
			nblk += (size_t)VEC_AT(&cap->runs, blk_run, k).count;
		cap->blk = malloc((nblk ? nblk : 1) * sizeof *cap->blk);
		cap->first = malloc((cap->runs.n ? cap->runs.n : 1) * sizeof *cap->first);
		cap->hashed = calloc(nblk ? nblk : 1, 1);
		if (!cap->blk || !cap->first || !cap->hashed)
			return mtm_set_error(ENOMEM, "capture");
		cap->size = d->size;
		cap->fd = -1;
		const unsigned char *p = d->data;
		size_t n = 0;
		for (size_t k = 0; k < cap->runs.n; k++) {
			const blk_run *r = &VEC_AT(&cap->runs, blk_run, k);
			cap->first[k] = n;
			/* the same walk as read_deferred's: a block it took from the
			 * pre-copy has an untouched slot in data */
			for (int64_t blk = r->blkno, end = r->blkno + r->count; blk < end && blk * MTM_BLOCK < d->size; blk++) {
				const unsigned char *pre = d->src_precopy ? precopied(t, d->path, d->dev, d->ino, blk) : NULL;
				cap->hashed[n] = pre != NULL;
				cap->blk[n++] = pre ? pre : p;
				p += d->size - blk * MTM_BLOCK < MTM_BLOCK ? d->size - blk * MTM_BLOCK : MTM_BLOCK;
			}
		}
	}
	return 0;
}

void deferred_free(tctx *t)
{
	for (size_t i = 0; i < t->deferred.n; i++) {
		deferred_copy *d = &VEC_AT(&t->deferred, deferred_copy, i);
		if (d->owned)
			free(d->data);
		if (d->src >= 0)
			close(d->src);
	}
	vec_free(&t->deferred);
	for (size_t i = 0; i < t->slabs.n; i++)
		free(VEC_AT(&t->slabs, unsigned char *, i));
	vec_free(&t->slabs);
	t->slabs = (vec)VEC_INIT(unsigned char *);
	/* (the session's slab is free again: whatever the next captures are) */
	t->slab_at = t->ss->cap_slab;
	t->slab_left = t->ss->cap_slab ? CAP_SLAB_BYTES : 0;
}

/* The reads of the barrier: one pread per run, from several threads on a
 * machine with CPUs to spare (the program is held meanwhile), since a system
 * call per scattered block is what the pause is made of. */
typedef struct { int fd; int64_t off; size_t len; unsigned char *dst; } read_job;
typedef struct {
	const vec *jobs;
	size_t next; /* atomic */
	int err;     /* atomic: the first error */
} read_pool;

static void *read_worker(void *arg)
{
	read_pool *p = arg;
	for (;;) {
		size_t i = __atomic_fetch_add(&p->next, 16, __ATOMIC_RELAXED);
		if (i >= p->jobs->n || __atomic_load_n(&p->err, __ATOMIC_RELAXED))
			return NULL;
		for (size_t k = i; k < i + 16 && k < p->jobs->n; k++) {
			const read_job *j = &VEC_AT(p->jobs, read_job, k);
			size_t got;
			int rc = io_pread(j->fd, j->dst, j->len, j->off, &got);
			if (rc) {
				int zero = 0;
				__atomic_compare_exchange_n(&p->err, &zero, rc, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
				return NULL;
			}
			if (got < j->len) /* cut short meanwhile (outside the session): zeros */
				memset(j->dst + got, 0, j->len - got);
		}
	}
}

int read_deferred(tctx *t)
{
	vec jobs = VEC_INIT(read_job);
	int rc = 0;
	for (size_t i = 0; i < t->deferred.n && !rc; i++) {
		deferred_copy *d = &VEC_AT(&t->deferred, deferred_copy, i);
		if (d->src < 0)
			continue;
		unsigned char *p = d->data;
		for (size_t k = 0; k < d->cap->runs.n && !rc; k++) {
			const blk_run *r = &VEC_AT(&d->cap->runs, blk_run, k);
			/* block by block: pre-copied ones are taken from memory, the
			 * others read in maximal pieces */
			for (int64_t blk = r->blkno, end = r->blkno + r->count; blk < end && blk * MTM_BLOCK < d->size;) {
				const unsigned char *pre = d->src_precopy ? precopied(t, d->path, d->dev, d->ino, blk) : NULL;
				if (pre) {
					/* its slot in data stays untouched (never faulted in):
					 * materialize writes the pre-copy itself */
					size_t len = (size_t)(d->size - blk * MTM_BLOCK < MTM_BLOCK ? d->size - blk * MTM_BLOCK : MTM_BLOCK);
					p += len;
					blk++;
					t->precopied_blocks++;
					continue;
				}
				int64_t stop = blk + 1;
				while (stop < end && stop * MTM_BLOCK < d->size &&
				       (!d->src_precopy || !precopied(t, d->path, d->dev, d->ino, stop)))
					stop++;
				int64_t a = blk * MTM_BLOCK, b = stop * MTM_BLOCK < d->size ? stop * MTM_BLOCK : d->size;
				read_job *j = vec_push(&jobs);
				if (!j) {
					rc = mtm_set_error(ENOMEM, "checkpoint");
					break;
				}
				*j = (read_job){d->src, a, (size_t)(b - a), p};
				t->barrier_read += (uint64_t)(b - a);
				p += b - a;
				blk = stop;
			}
		}
	}
	read_pool pool = {&jobs, 0, 0};
	if (!rc && jobs.n) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		/* with 2 CPUs, measured: no gain (the other is rarely idle) */
		int nthreads = jobs.n < 256 || ncpu < 4 ? 0 : ncpu > 4 ? 3 : (int)ncpu - 1;
		const char *knob = secure_getenv("METAMORI_CAPTURE_THREADS"); /* tests */
		if (knob && *knob)
			nthreads = atoi(knob) < 0 ? 0 : atoi(knob) > 3 ? 3 : atoi(knob);
		pthread_t th[3];
		int started = 0;
		for (; started < nthreads; started++)
			if (pthread_create(&th[started], NULL, read_worker, &pool))
				break;
		read_worker(&pool);
		for (int i = 0; i < started; i++)
			pthread_join(th[i], NULL);
		if (pool.err)
			rc = mtm_set_errno(pool.err, "capture");
	}
	vec_free(&jobs);
	/* (the files stay open until deferred_free, after the answer: 200
	 * closes a W2 checkpoint are not the pause's) */
	return rc;
}

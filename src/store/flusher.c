/* flusher.c — the pack writer's second thread; see flusher.h. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <string.h>
#include <sys/uio.h>
#include "io/io.h"
#include "store/flusher.h"
#include "store/pack_record.h"
#include "util/error.h"
#include "util/human.h"
#include "util/thread.h"

/* The writer's second thread: writes one buffer while pack_putv fills the
 * other, and at the end fsyncs the packs while the checkpoint inserts its
 * last index rows (pack_writer_sync_begin). It does nothing after its first
 * failure; the writer reports that failure at its next hand-over, or in
 * pack_writer_finish, which the commit follows. */
enum { FAILED_WRITE = 1, FAILED_FSYNC, FAILED_DIR };
struct pack_flusher {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int inited, started, quit, busy;
	pack_writer *w;
	vec job;                   /* the segments handed over last (while busy: to write, perhaps none);
	                            * the writer takes the vector back at its next hand-over */
	size_t len;                /* their bytes */
	uint64_t off;
	int fd;
	int64_t pack_id;
	int sync;                  /* then fsync every pack touched (and the directory); FLUSH_SYNC_AHEAD, _EARLY: fd only */
	uint64_t drop_from, drop_to; /* FLUSH_SYNC_AHEAD, _EARLY: what leaves the page cache once durable */
	int synced;                /* that was done */
	int err;                   /* the first failure's errno */
	int err_what;              /* FAILED_* */
	int64_t err_pack;
	unsigned char *spare;      /* the buffer pack_putv is not filling (NULL: none made yet) */
	XXH3_state_t *check;       /* a record check over its segments */
	struct iovec *iov;         /* the job's segments, adjacent ones joined */
	size_t iov_cap;
};

/* Fills in the check of each record of the job (whole records only, after
 * the pack header for a new pack): header and payload, which may lie in
 * several segments. Done here, just before the write, rather than in
 * pack_putv: it is a pass over every stored byte, and this thread has the
 * time. */
static void seal_records(struct pack_flusher *f)
{
	unsigned char *hdr = NULL;
	for (size_t i = 0; i <= f->job.n; i++) {
		const struct pack_seg *sg = i < f->job.n ? &VEC_AT(&f->job, struct pack_seg, i) : NULL;
		if (hdr && (!sg || sg->kind != SEG_DATA)) {
			put64(hdr + 32, XXH3_64bits_digest(f->check));
			hdr = NULL;
		}
		if (!sg)
			break;
		if (sg->kind == SEG_HDR) {
			hdr = (unsigned char *)sg->p; /* in the writer's buffer, which is this thread's now */
			XXH3_64bits_reset_withSeed(f->check, XXH3_64bits(hdr, 32));
		} else if (sg->kind == SEG_DATA && hdr) {
			XXH3_64bits_update(f->check, sg->p, sg->len);
		}
	}
}

/* The job as an iovec array, segments that follow each other in memory
 * joined (a record copied into the buffer is one). */
static int job_iov(struct pack_flusher *f, int *n)
{
	if (f->iov_cap < f->job.n) {
		struct iovec *v = realloc(f->iov, f->job.n * sizeof *v);
		if (!v)
			return ENOMEM;
		f->iov = v;
		f->iov_cap = f->job.n;
	}
	int k = 0;
	for (size_t i = 0; i < f->job.n; i++) {
		const struct pack_seg *sg = &VEC_AT(&f->job, struct pack_seg, i);
		if (k && (const unsigned char *)f->iov[k - 1].iov_base + f->iov[k - 1].iov_len == sg->p) {
			f->iov[k - 1].iov_len += sg->len;
			continue;
		}
		f->iov[k].iov_base = (void *)sg->p;
		f->iov[k++].iov_len = sg->len;
	}
	*n = k;
	return 0;
}

/* The data must be durable before the index names it: every pack touched,
 * then the directory if a pack was created. (The writer's thread leaves the
 * touched list alone while this runs: it is inserting index rows.) */
static int sync_packs(pack_writer *w, int *what, int64_t *pack)
{
	int rc;
	for (size_t i = 0; i < w->touched.n; i++) {
		struct touched_pack *t = &VEC_AT(&w->touched, struct touched_pack, i);
		if (t->size == t->start)
			continue; /* nothing appended: what it holds was synced by its writer */
		if ((rc = io_fdatasync(t->fd))) {
			*what = FAILED_FSYNC;
			*pack = t->id;
			return rc;
		}
		/* A session's packs leave the page cache once durable (a hint):
		 * what a running program has cached is worth more than bytes a
		 * restore may read some day, and the pages freed are the ones the
		 * next checkpoint writes into. Fresh pages can cost several times
		 * more to fill (a VM's host hands them back cold: W1's 11.2 MiB
		 * took 26 ms to copy instead of 3). Not the last partial page:
		 * the next checkpoint starts by writing into it. */
		uint64_t keep = t->size & ~(uint64_t)4095;
		if (w->drop_cache && keep > t->start)
			(void)posix_fadvise(t->fd, (off_t)t->start, (off_t)(keep - t->start), POSIX_FADV_DONTNEED);
	}
	if (w->created_any && (rc = io_fsync_dirat(w->s->dirfd, "packs"))) {
		*what = FAILED_DIR;
		return rc;
	}
	return 0;
}

/* A session's room (pack_writer.room): bytes the file has past what was
 * written, made before the fsync ahead so that the same fsync makes them
 * durable. The order a commit relies on is unchanged (the pack durable
 * before the index COMMIT that names its records, FORMAT.md 8): the room
 * only makes the pack's own sync in the commit cheaper, an overwrite of
 * blocks already durable as part of the file (an fdatasync with no
 * journal commit), so the commit's two device flushes in a row become a
 * data flush and the WAL's. Overlapping the two instead (the WAL's sync
 * begun while the pack's runs) would let a power cut keep the COMMIT
 * without the bytes it names. 256 KiB: what a W2 checkpoint appends in
 * its pause (a heartbeat's block, ~4 KiB) many times over; a larger append
 * only grows the file past it, as every append did before. Made again when
 * less than half is left. fdatasync, not fsync, for every pack sync: an
 * fsync also commits the journal for the file's new mtime, which a write
 * changes (nothing reads a pack's times). */
enum { PACK_ROOM = 256 << 10 };

static int make_room(struct pack_flusher *f)
{
	struct stat sb;
	if (fstat(f->fd, &sb))
		return errno;
	uint64_t end = f->off + f->len, size = (uint64_t)sb.st_size;
	if (size >= end + PACK_ROOM / 2)
		return 0;
	uint64_t to = (end + PACK_ROOM + 4095) & ~(uint64_t)4095;
	return io_extend_zeros(f->fd, (off_t)(size > end ? size : end), (off_t)to);
}

static void *flusher_main(void *arg)
{
	struct pack_flusher *f = arg;
	pthread_mutex_lock(&f->mu);
	for (;;) {
		while (!f->busy && !f->quit)
			pthread_cond_wait(&f->cv, &f->mu);
		if (!f->busy)
			break;
		int failed = f->err, what = FAILED_WRITE, rc = 0;
		int64_t pack = f->pack_id;
		pthread_mutex_unlock(&f->mu);
		if (!failed && f->len) {
			int niov;
			int64_t t0 = now_ns();
			seal_records(f);
			rc = job_iov(f, &niov);
			if (!rc)
				rc = io_pwritev(f->fd, f->iov, niov, (off_t)f->off);
			/* A hint only (it promises nothing about durability): an
			 * error here shows again at the fsync, which is what decides.
			 * Not the last, partial page: the next piece starts in it;
			 * written back now, it would be written twice, and on a
			 * device that needs stable pages the next piece's write
			 * would wait for the disk. */
			uint64_t from = f->off & ~(uint64_t)4095, to = (f->off + f->len) & ~(uint64_t)4095;
			if (!rc && to > from)
				(void)sync_file_range(f->fd, (off_t)from, (off_t)(to - from), SYNC_FILE_RANGE_WRITE);
			f->w->write_ns += now_ns() - t0;
		}
		if (!failed && !rc && (f->sync == FLUSH_SYNC_AHEAD || f->sync == FLUSH_SYNC_EARLY)) {
			int64_t t0 = now_ns();
			/* (the room is a gain, not a need: zeros the disk has no
			 * space for fail nothing, the append then grows the file as
			 * every append did before. Only the writer ahead's own
			 * fsync, while the program runs: the checkpoint's early
			 * fsync of the records written ahead is one its pause's
			 * append waits for, and zeros there would be on its path) */
			if (f->sync == FLUSH_SYNC_AHEAD && f->w->room && !f->w->ahead_kept)
				(void)make_room(f);
			if ((rc = io_fdatasync(f->fd)))
				what = FAILED_FSYNC;
			else if (f->drop_to > f->drop_from) /* (a hint, as in sync_packs) */
				(void)posix_fadvise(f->fd, (off_t)f->drop_from, (off_t)(f->drop_to - f->drop_from),
				                    POSIX_FADV_DONTNEED);
			f->w->fsync_ns += now_ns() - t0;
		} else if (!failed && !rc && f->sync) {
			int64_t t0 = now_ns();
			rc = sync_packs(f->w, &what, &pack);
			f->w->fsync_ns += now_ns() - t0;
		}
		pthread_mutex_lock(&f->mu);
		if (rc) {
			f->err = rc;
			f->err_what = what;
			f->err_pack = pack;
		} else if (!failed && f->sync) {
			f->synced = 1;
		}
		f->busy = 0;
		pthread_cond_broadcast(&f->cv);
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

/* Waits until the flusher has done what it was given; its first failure. */
int flusher_wait(pack_writer *w)
{
	struct pack_flusher *f = w->fl;
	if (!f->started)
		return 0;
	int64_t t0 = now_ns();
	pthread_mutex_lock(&f->mu);
	while (f->busy)
		pthread_cond_wait(&f->cv, &f->mu);
	w->waited_ns += now_ns() - t0;
	int rc = f->err, what = f->err_what;
	int64_t pack = f->err_pack;
	pthread_mutex_unlock(&f->mu);
	if (!rc)
		return 0;
	if (what == FAILED_DIR)
		return mtm_set_errno(rc, "%s/.metamori/packs: fsync", w->s->root);
	return mtm_set_errno(rc, "%s/.metamori/packs: %s pack %lld", w->s->root,
	                     what == FAILED_FSYNC ? "fsync of" : "writing", (long long)pack);
}

static int flusher_start(pack_writer *w)
{
	struct pack_flusher *f = w->fl;
	int rc = thread_start_quiet(&f->thread, flusher_main, f);
	if (rc)
		return mtm_set_errno(rc, "pack writer: starting its thread");
	/* Woken for each piece, the thread would otherwise preempt the one
	 * that feeds it whenever no other CPU is free (both then take turns on
	 * one CPU: up to 4 ms of W1's record on 2 CPUs). A batch thread does
	 * not preempt on waking; it runs where a CPU is free, or when the
	 * writer waits for it. A hint: without it, all is the same but slower. */
	struct sched_param sp = {0};
	(void)pthread_setschedparam(f->thread, SCHED_BATCH, &sp);
	f->started = 1;
	return 0;
}

/* Hands the buffered bytes (perhaps none) to the flusher, with the final
 * fsyncs if sync, and takes its other buffer. */
int flusher_hand_over(pack_writer *w, int sync)
{
	struct pack_flusher *f = w->fl;
	MTM_TRY(flusher_wait(w));
	assert(!f->quit); /* (flusher_stop: nothing after) */
	if (!f->started)
		MTM_TRY(flusher_start(w));
	unsigned char *full = w->buf;
	vec segs = w->segs;
	pthread_mutex_lock(&f->mu);
	f->w = w;
	w->segs = f->job; /* the one the thread wrote last */
	w->segs.n = 0;
	f->job = segs;
	f->len = w->job_len;
	f->off = w->buf_off;
	f->fd = w->fd;
	f->pack_id = w->pack_id;
	f->sync = sync;
	f->synced = 0; /* (until this job's fsyncs: bytes handed over now are not covered by an earlier one) */
	f->drop_from = w->ahead.base;
	f->drop_to = w->drop_cache ? w->ahead.end & ~(uint64_t)4095 : 0; /* (not the last partial page) */
	if (sync == FLUSH_SYNC_EARLY) { /* (one pack: pack_writer_sync_early) */
		f->drop_from = VEC_AT(&w->touched, struct touched_pack, w->touched.n - 1).start;
		f->drop_to = w->drop_cache ? w->size & ~(uint64_t)4095 : 0;
	}
	f->busy = 1;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	w->buf = f->spare;
	f->spare = full;
	w->buf_off += w->job_len;
	w->buf_len = w->job_len = 0;
	return 0;
}

/* (here, below the writer: the writer and its flusher both take one) */
unsigned char *pack_wbuf_alloc(int huge)
{
	void *p;
	if (posix_memalign(&p, huge ? WBUF : MTM_BLOCK, WBUF))
		return NULL;
	if (huge)
		madvise(p, WBUF, MADV_HUGEPAGE); /* (advice: without it, small pages) */
	return p;
}

int flusher_init(pack_writer *w)
{
	struct pack_flusher *f = w->fl = calloc(1, sizeof *w->fl);
	/* (no spare buffer yet: the writer's is made when first needed, and
	 * the two are swapped at each hand-over) */
	if (!f || !(f->check = XXH3_createState()))
		return mtm_set_error(ENOMEM, "pack writer");
	f->job = (vec)VEC_INIT(struct pack_seg);
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	f->inited = 1;
	return 0;
}

int flusher_synced(const pack_writer *w) { return w->fl->synced; }

int flusher_busy(pack_writer *w)
{
	struct pack_flusher *f = w->fl;
	if (!f || !f->started)
		return 0;
	pthread_mutex_lock(&f->mu);
	int busy = f->busy;
	pthread_mutex_unlock(&f->mu);
	return busy;
}

void flusher_stop(pack_writer *w)
{
	struct pack_flusher *f = w->fl;
	if (!f || !f->started)
		return;
	pthread_mutex_lock(&f->mu);
	f->quit = 1;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

void flusher_free(pack_writer *w)
{
	struct pack_flusher *f = w->fl;
	if (!f)
		return;
	if (f->started) { /* after the job in hand, if any: the fds are its */
		flusher_stop(w);
		pthread_join(f->thread, NULL);
	}
	if (f->inited) {
		pthread_mutex_destroy(&f->mu);
		pthread_cond_destroy(&f->cv);
	}
	free(f->spare);
	vec_free(&f->job);
	XXH3_freeState(f->check);
	free(f->iov);
	free(f);
	w->fl = NULL;
}

/* flusher.c — the pack writer's second thread; see flusher.h. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "io/io.h"
#include "store/flusher.h"
#include "store/pack_record.h"
#include "util/error.h"

/* The writer's second thread: writes one buffer while pack_put fills the
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
	unsigned char *data;       /* the job, while busy: bytes to write (len may be 0) */
	size_t len;
	uint64_t off;
	int fd;
	int64_t pack_id;
	int sync;                  /* then fsync every pack touched (and the directory) */
	int synced;                /* that was done */
	int err;                   /* the first failure's errno */
	int err_what;              /* FAILED_* */
	int64_t err_pack;
	unsigned char *spare;      /* the buffer pack_put is not filling */
};

/* Fills in the record checks of the records in buf (a pack's bytes from
 * offset off, whole records only, after the pack header when off is 0).
 * Done here, just before the write, rather than in pack_put: it is a pass
 * over every stored byte, and this thread has the time. */
static void seal_records(unsigned char *buf, size_t len, uint64_t off)
{
	size_t at = off == 0 ? PACK_HEADER_LEN : 0;
	while (at + CHUNK_HEADER_LEN <= len) {
		unsigned char *h = buf + at;
		size_t clen = get32(h + 12);
		put64(h + 32, record_check(h, h + CHUNK_HEADER_LEN, clen));
		at += CHUNK_HEADER_LEN + clen;
	}
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
		if ((rc = io_fsync(t->fd))) {
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
			seal_records(f->data, f->len, f->off);
			rc = io_pwrite(f->fd, f->data, f->len, (off_t)f->off);
			/* A hint only (it promises nothing about durability): an
			 * error here shows again at the fsync, which is what decides.
			 * Not the last, partial page: the next piece starts in it;
			 * written back now, it would be written twice, and on a
			 * device that needs stable pages the next piece's write
			 * would wait for the disk. */
			uint64_t from = f->off & ~(uint64_t)4095, to = (f->off + f->len) & ~(uint64_t)4095;
			if (!rc && to > from)
				(void)sync_file_range(f->fd, (off_t)from, (off_t)(to - from), SYNC_FILE_RANGE_WRITE);
		}
		if (!failed && !rc && f->sync)
			rc = sync_packs(f->w, &what, &pack);
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
	pthread_mutex_lock(&f->mu);
	while (f->busy)
		pthread_cond_wait(&f->cv, &f->mu);
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
	/* the thread takes no signals: they stay with the threads that expect them */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&f->thread, NULL, flusher_main, f);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc)
		return mtm_set_errno(rc, "pack writer: starting its thread");
	f->started = 1;
	return 0;
}

/* Hands the buffered bytes (perhaps none) to the flusher, with the final
 * fsyncs if sync, and takes its other buffer. */
int flusher_hand_over(pack_writer *w, int sync)
{
	struct pack_flusher *f = w->fl;
	MTM_TRY(flusher_wait(w));
	if (!f->started)
		MTM_TRY(flusher_start(w));
	unsigned char *full = w->buf;
	pthread_mutex_lock(&f->mu);
	f->w = w;
	f->data = full;
	f->len = w->buf_len;
	f->off = w->buf_off;
	f->fd = w->fd;
	f->pack_id = w->pack_id;
	f->sync = sync;
	f->busy = 1;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	w->buf = f->spare;
	f->spare = full;
	w->buf_off += w->buf_len;
	w->buf_len = 0;
	return 0;
}

int flusher_init(pack_writer *w)
{
	struct pack_flusher *f = w->fl = calloc(1, sizeof *w->fl);
	if (!f || !(f->spare = malloc(WBUF)))
		return mtm_set_error(ENOMEM, "pack writer");
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	f->inited = 1;
	return 0;
}

int flusher_synced(const pack_writer *w) { return w->fl->synced; }

void flusher_free(pack_writer *w)
{
	struct pack_flusher *f = w->fl;
	if (!f)
		return;
	if (f->started) { /* after the job in hand, if any: the fds are its */
		pthread_mutex_lock(&f->mu);
		f->quit = 1;
		pthread_cond_broadcast(&f->cv);
		pthread_mutex_unlock(&f->mu);
		pthread_join(f->thread, NULL);
	}
	if (f->inited) {
		pthread_mutex_destroy(&f->mu);
		pthread_cond_destroy(&f->cv);
	}
	free(f->spare);
	free(f);
	w->fl = NULL;
}

/* reader.c — see reader.h. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "tree/reader.h"
#include "util/error.h"
#include "util/xxh.h"

#define HUGE_PAGE ((size_t)2 << 20)

void reader_init(scan_reader *rd, int threaded)
{
	memset(rd, 0, sizeof *rd);
	rd->threaded = threaded;
}

int reader_reserve(scan_reader *rd, size_t cap)
{
	assert(cap > 0 && cap % MTM_BLOCK == 0 && cap <= READ_PIECE);
	if (cap <= rd->cap)
		return 0;
	/* the thread is idle between files: its buffer may be replaced */
	assert(rd->job != READER_ASKED);
	free(rd->mem);
	rd->mem = NULL;
	rd->cap = 0;
	/* both buffers in one allocation, in a huge page where the kernel has
	 * them: their first fill costs one page fault, not one per 4 KiB (a
	 * fault is dear in a virtual machine; a checkpoint is a short process) */
	size_t align = 2 * cap >= HUGE_PAGE ? HUGE_PAGE : MTM_BLOCK;
	if (posix_memalign((void **)&rd->mem, align, 2 * cap))
		return mtm_set_error(ENOMEM, "read");
	if (align == HUGE_PAGE)
		madvise(rd->mem, 2 * cap, MADV_HUGEPAGE); /* (advice: without it, small pages) */
	for (int i = 0; i < 2; i++) {
		if (!rd->p[i] && !(rd->p[i] = calloc(1, sizeof *rd->p[i])))
			return mtm_set_error(ENOMEM, "read");
		rd->p[i]->buf = rd->mem + (size_t)i * cap;
	}
	rd->cap = cap;
	return 0;
}

void reader_read(file_src src, read_piece *p)
{
	assert(p->want <= READ_PIECE);
	p->got = 0;
	if ((p->err = src_pread(src, p->buf, p->want, p->off, &p->got)))
		return;
	size_t nblk = (p->got + MTM_BLOCK - 1) / MTM_BLOCK;
	for (size_t b = 0; b < nblk; b++) {
		const unsigned char *blk = p->buf + b * MTM_BLOCK;
		size_t len = p->got - b * MTM_BLOCK;
		if (len < MTM_BLOCK) { /* the file's last block, zero-padded */
			unsigned char pad[MTM_BLOCK];
			memcpy(pad, blk, len);
			memset(pad + len, 0, MTM_BLOCK - len);
			p->h[b] = XXH3_64bits(pad, MTM_BLOCK);
		} else {
			p->h[b] = XXH3_64bits(blk, MTM_BLOCK);
		}
	}
}

static void *reader_main(void *arg)
{
	scan_reader *rd = arg;
	pthread_mutex_lock(&rd->mu);
	for (;;) {
		while (!rd->quit && rd->job != READER_ASKED)
			pthread_cond_wait(&rd->cv, &rd->mu);
		if (rd->quit)
			break;
		pthread_mutex_unlock(&rd->mu);
		reader_read(rd->src, rd->p[1]);
		pthread_mutex_lock(&rd->mu);
		rd->job = READER_DONE;
		pthread_cond_broadcast(&rd->cv);
	}
	pthread_mutex_unlock(&rd->mu);
	return NULL;
}

int reader_ahead(scan_reader *rd, file_src src)
{
	assert(rd->cap && rd->job == READER_IDLE && !rd->quit);
	if (!rd->started && rd->threaded) {
		if (pthread_mutex_init(&rd->mu, NULL))
			rd->threaded = 0;
		else if (pthread_cond_init(&rd->cv, NULL)) {
			pthread_mutex_destroy(&rd->mu);
			rd->threaded = 0;
		} else if (pthread_create(&rd->thread, NULL, reader_main, rd)) {
			pthread_cond_destroy(&rd->cv);
			pthread_mutex_destroy(&rd->mu);
			rd->threaded = 0; /* no thread: the caller reads it all */
		} else {
			rd->started = 1;
		}
	}
	if (!rd->started)
		return 0;
	pthread_mutex_lock(&rd->mu);
	rd->src = src;
	rd->job = READER_ASKED;
	pthread_cond_broadcast(&rd->cv);
	pthread_mutex_unlock(&rd->mu);
	return 1;
}

void reader_wait(scan_reader *rd)
{
	assert(rd->started && rd->job != READER_IDLE);
	pthread_mutex_lock(&rd->mu);
	while (rd->job != READER_DONE)
		pthread_cond_wait(&rd->cv, &rd->mu);
	rd->job = READER_IDLE;
	pthread_mutex_unlock(&rd->mu);
}

void reader_stop(scan_reader *rd)
{
	if (!rd->started)
		return;
	pthread_mutex_lock(&rd->mu);
	rd->quit = 1;
	pthread_cond_broadcast(&rd->cv);
	pthread_mutex_unlock(&rd->mu);
}

void reader_free(scan_reader *rd)
{
	if (rd->started) {
		reader_stop(rd);
		pthread_join(rd->thread, NULL);
		pthread_cond_destroy(&rd->cv);
		pthread_mutex_destroy(&rd->mu);
	}
	for (int i = 0; i < 2; i++)
		free(rd->p[i]);
	free(rd->mem);
	memset(rd, 0, sizeof *rd);
}

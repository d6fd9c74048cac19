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

void reader_init(scan_reader *rd)
{
	memset(rd, 0, sizeof *rd);
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

void reader_free(scan_reader *rd)
{
	free(rd->p);
	free(rd->mem);
	memset(rd, 0, sizeof *rd);
}

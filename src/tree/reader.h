/*
 * reader.h — reading a file in pieces and hashing each piece's blocks
 * (internal to src/tree).
 *
 * A scan reads every byte of a changed file and hashes every 4 KiB block
 * of it; in scan mode that is nearly all of a checkpoint's CPU (W1: the
 * kernel's page-cache copy and XXH3, BENCHMARKS-ARCHIVE.md S11). One
 * thread reads, in file order: a second one that read and hashed every
 * other piece (until 2026-12-07) saved no time warm and cost time cold
 * (S19, S20: its reads, interleaved with ours on one open file, kept the
 * kernel's read-ahead from seeing one sequential stream). The buffer lives
 * as long as the reader: a fresh 1 MiB buffer per file cost a page fault
 * per 4 KiB on the copy (7% of a W1 scan's CPU on the benchmark VM).
 */
#ifndef MTM_TREE_READER_H
#define MTM_TREE_READER_H
#include <stddef.h>
#include <stdint.h>
#include "tree/source.h"

/* A multiple of the chunk group, so groups never straddle reads. 1 MiB: on
 * a quiet machine, cold cache, W1 (16 x 64 MiB) scanned in 524-648 ms with
 * it against 614-925 ms with 128 KiB pieces (S9, BENCHMARKS.md; the 128 KiB
 * pieces had looked cheaper in CPU under a load of 20). Warm, 512 KiB, 2 MiB
 * and 4 MiB pieces were all slower than 1 MiB (S15). */
#define READ_PIECE (1u << 20)

/* One piece of a file: [off, off + want) asked, got read, h[b] the XXH3-64
 * of block b of it (the last one zero-padded), err an errno. */
typedef struct {
	unsigned char *buf;
	int64_t off;
	size_t want, got;
	int err;
	uint64_t h[READ_PIECE / MTM_BLOCK];
} read_piece;

typedef struct scan_reader {
	read_piece *p;      /* the piece being read */
	unsigned char *mem; /* its buffer, cap bytes */
	size_t cap;
} scan_reader;

void reader_init(scan_reader *rd);
/* A buffer of at least cap bytes (a multiple of MTM_BLOCK, <= READ_PIECE). */
int reader_reserve(scan_reader *rd, size_t cap);
/* Reads and hashes p (its off and want set) from src, on this thread. */
void reader_read(file_src src, read_piece *p);
/* Frees the buffer. */
void reader_free(scan_reader *rd);
#endif

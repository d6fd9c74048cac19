/*
 * reader.h — reading a file in pieces and hashing each piece's blocks, on
 * two threads (internal to src/tree).
 *
 * A scan reads every byte of a changed file and hashes every 4 KiB block
 * of it; in scan mode that is nearly all of a checkpoint's CPU (W1: the
 * kernel's page-cache copy and XXH3, BENCHMARKS-ARCHIVE.md S11). A reader
 * has a second thread that reads and hashes the piece after the one the
 * caller is reading, so both cores copy and hash, and a cold file has two
 * reads in flight. Everything else (comparing with the parent's hashes,
 * storing) stays on the caller's thread, in file order. Its buffers live
 * as long as the reader: a fresh 1 MiB buffer per file cost a page fault
 * per 4 KiB on the copy (7% of a W1 scan's CPU on the benchmark VM).
 */
#ifndef MTM_TREE_READER_H
#define MTM_TREE_READER_H
#include <pthread.h>
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
	read_piece *p[2]; /* p[0] the caller's, p[1] the thread's */
	unsigned char *mem; /* both pieces' buffers, cap bytes each */
	size_t cap;       /* of each buffer */
	int threaded;     /* may start the thread */
	/* the thread, once started (reader_ahead) */
	pthread_t thread;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int job;          /* READER_IDLE, _ASKED (p[1] to read), _DONE */
	int quit;
	file_src src;     /* what the job reads */
} scan_reader;
enum { READER_IDLE, READER_ASKED, READER_DONE };

/* threaded: 0 for a reader that never starts a thread. */
void reader_init(scan_reader *rd, int threaded);
/* Buffers of at least cap bytes (a multiple of MTM_BLOCK, <= READ_PIECE). */
int reader_reserve(scan_reader *rd, size_t cap);
/* Reads and hashes p (its off and want set) from src, on this thread. */
void reader_read(file_src src, read_piece *p);
/* Asks the thread to read p[1] (off and want set) from src: 1 if it will
 * (reader_wait gives it back), 0 if there is no thread (read it yourself). */
int reader_ahead(scan_reader *rd, file_src src);
/* Waits for the piece reader_ahead asked for. */
void reader_wait(scan_reader *rd);
/* Lets the thread go (after its piece, without waiting for it): no piece
 * is asked for after, and reader_free's join then finds it gone, instead
 * of waking it then (up to ms on a loaded machine). */
void reader_stop(scan_reader *rd);
/* Stops the thread (after its piece) and frees the buffers. */
void reader_free(scan_reader *rd);
#endif

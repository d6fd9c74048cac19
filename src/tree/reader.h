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
 *
 * Mapped reads (mtm_set_mapped_reads, metamori.h): where a window of the
 * file is wholly in the page cache (cachestat(2)), it is mapped and hashed
 * where it lies, with no copy: warm, reading + hashing W1's 256 MiB took
 * 37.6-37.9 ms through the buffer and 21.9-23.4 ms mapped, against 19.6 ms
 * for the read alone (8 MiB windows; 1 MiB ones cost 38-53 ms in mapping
 * calls). A window with any page not cached is read as before (the read's
 * read-ahead is what makes a cold scan fast). Only the blocks that differ
 * from the parent are then copied out (reader_settle), so that what is
 * stored is what was hashed even if the file is written meanwhile; a file
 * shortened under the mapping raises SIGBUS, which the handler turns into
 * the short read a pread would have given.
 *
 * A cached window that is read rather than mapped (pick mode, below) by a
 * reader with a helper thread (not one_thread: a scan's) is read into a
 * window buffer on both threads, each its half, read and hashed a piece at
 * a time, and its pieces are served from it as from a mapping. On a
 * loaded PVM guest, W1 whose files were cached in small folios (as they
 * are after some rewrites) took 0.56-0.60x the CPU and 0.59-0.68x the wall
 * this way than mapped; freshly written files (2 MiB folios) about the
 * same either way (BENCHMARKS-ARCHIVE.md S31).
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

/* A mapped window's most: big enough that mapping calls cost little
 * (above), small enough to be taken back soon on a big file. */
#define MAP_WINDOW (8u << 20)
/* A window's least: below it a read is cheaper than cachestat, mmap and
 * munmap (W2's 16 KiB files, warm: 8 us a file read and hashed, 14-16 us
 * mapped; the copy a map saves is ~0.35 us per 4 KiB here). */
#define MAP_MIN (256u << 10)

/* One piece of a file: [off, off + want) asked, got read, h[b] the XXH3-64
 * of block b of it (the last one zero-padded), err an errno. until: the
 * caller reads on to there (a window may be mapped that far, never past
 * it: the file's size, or the end of its data before a hole). The bytes
 * are in buf, or, when map is not NULL, at map (a window of the file, in
 * the page cache): then buf holds only the blocks reader_settle copied. */
typedef struct {
	unsigned char *buf;
	const unsigned char *map;
	int64_t off, until;
	size_t want, got;
	int err;
	uint64_t h[READ_PIECE / MTM_BLOCK];
} read_piece;

typedef struct scan_reader {
	read_piece *p;      /* the piece being read */
	unsigned char *mem; /* its buffer, cap bytes */
	size_t cap;
	/* the file's window of mapped reads: [win_off, win_off + win_len) of
	 * win_fd, mapped at win, or NULL if not all of it was cached */
	int win_fd;
	int64_t win_off;
	size_t win_len;
	unsigned char *win;
	/* a cached window read rather than mapped, on two threads (not
	 * one_thread), is read into this buffer (MAP_WINDOW bytes) and win
	 * points at it: its pieces are served from it as from a mapping */
	unsigned char *wbuf;
	uint64_t *win_h;         /* the hashes of win's blocks (MAP_WINDOW / MTM_BLOCK) */
	struct hash_helper *hh;  /* the thread hashing part of a big window, once one came */
	int one_thread;          /* never that thread: the caller's CPU time counts, not its wait (a
	                          * session's compare ahead, beside the program it serves) */
	/* pick: a cached window is mapped only while mapping has cost this
	 * thread less CPU per byte than reading it into the buffer, each way
	 * timed as it runs (smoothed) and the other one tried again every
	 * READER_PICK_EVERY windows. What a mapping costs is the machine's:
	 * on the VM of BENCHMARKS-ARCHIVE.md P23 (a PVM guest, whose page
	 * tables the hypervisor shadows) mapping, hashing and unmapping a
	 * cached 128 MiB file took 71-92 ms of CPU, reading and hashing it
	 * 12-15 ms; on the one before, mapped was the cheaper (this header,
	 * above). A session's compare ahead reads ~150 MiB a checkpoint under
	 * pgbench, so it picks; so does a scan (S31: W1's windows mapped cost
	 * 0.06-0.2 ns of CPU a byte in 2 MiB folios and 0.5-0.9 in small ones,
	 * read 0.05-0.14 either way). A mapped window's cost is both threads'
	 * CPU, mapping, hashing and unmapping; a read one's both threads' too,
	 * reading and hashing (the helper's start and the buffer's faults are
	 * paid once, and counted in neither). */
	int pick;
	double map_cost, read_cost; /* ns of CPU per byte, smoothed; 0: not timed yet */
	unsigned windows;           /* cached windows picked for */
	int64_t win_ns;             /* the mapped window's CPU so far (map, hash) */
	int declined;               /* the window is cached, and read (not mapped) by choice */
} scan_reader;

/* In pick mode, a window the other way every this many. */
#define READER_PICK_EVERY 64u
/* Whether to map the next cached window, from the costs so far (pick mode). */
int reader_pick_map(scan_reader *rd);

void reader_init(scan_reader *rd);
/* A buffer of at least cap bytes (a multiple of MTM_BLOCK, <= READ_PIECE). */
int reader_reserve(scan_reader *rd, size_t cap);
/* Reads and hashes p (its off, want and until set) from src, on this
 * thread: mapped (p->map set) where mapped reads are on and the window is
 * cached, else into p->buf. */
void reader_read(scan_reader *rd, file_src src, read_piece *p);
/* A mapped piece's blocks [b, e) copied into p->buf and hashed again from
 * there (their h[] replaced): what is stored is then what was hashed. 0, or
 * -1 if the file was shortened under the mapping: nothing from block b on
 * can be read (p->got is cut there). Without a mapping, 0 and nothing done. */
int reader_settle(read_piece *p, size_t b, size_t e);
/* The file is done: its window unmapped (call before closing its fd). */
void reader_end_file(scan_reader *rd);
/* Frees the buffer. */
void reader_free(scan_reader *rd);
/* For tests: mtm_set_mapped_reads(1) installs its handler again (taking
 * the one there now as the one to pass other faults to). */
void reader_forget_handler(void);
/* For tests: called with the window just mapped, or with win NULL before
 * a window is read into the buffer (NULL: nothing). */
extern void (*reader_mapped_hook)(int fd, const unsigned char *win, size_t len);
#endif

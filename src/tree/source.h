/*
 * source.h — where a file's bytes are read from: a descriptor, or the
 * capture a session's barrier copied out (below scan.c and reader.c, which
 * both read through it).
 */
#ifndef MTM_TREE_SOURCE_H
#define MTM_TREE_SOURCE_H
#include <stddef.h>
#include <stdint.h>
#include "store/index.h"

/* A file's content copied out during a session's barrier (session/): the
 * whole file (whole) or only the blocks in runs. A big whole file is copied
 * into a memfd (fd); anything else stays in the memory it was read into
 * (fd = -1, blk): writing it to a memfd and reading it back cost more than
 * the rest of a tracked checkpoint. */
typedef struct capture {
	int fd;
	int whole;
	vec runs;       /* of blk_run, sorted; a whole file held in memory: [0, nblocks) */
	const unsigned char **blk; /* fd < 0: each block of runs in order (its bytes, clipped to size) */
	size_t *first;  /* per run, the index in blk of its first block */
	/* per block of blk, or NULL: 1 if the XXH3-64 of its MTM_BLOCK bytes
	 * follows them (a pre-copy slot, hashed when it was copied) */
	unsigned char *hashed;
	int64_t size;   /* fd < 0: the file's size when captured */
	/* only blocks (not whole): 1 if every change to the file since its last
	 * record is known to be among them (the session's watcher saw no other
	 * writer); else its stat cache row must not let a later scan skip it */
	int vouched;
} capture;

/* Block b's pre-copy slot (session.h's SLOT_LEN layout) if the capture
 * took it from the pre-copy, else NULL. */
const unsigned char *capture_slot(const capture *c, int64_t b);

/* Where a file's bytes are read from: a descriptor, or a capture in memory. */
typedef struct file_src { int fd; const capture *mem; } file_src;
#define FILE_SRC(fd) ((file_src){(fd), NULL})
/* pread(2) of either: got < len only at the end of the file. A block that a
 * capture does not hold is EIO (never read as zeros by mistake). */
int src_pread(file_src src, void *buf, size_t len, int64_t off, size_t *got);
/* The bytes [off, off + len) of a capture in memory, if they lie there in
 * one piece (block-aligned off, not past the end); else NULL: read them. */
const unsigned char *src_at(file_src src, int64_t off, size_t len);
/* The hash of block b of a capture, if it was taken when the block was
 * copied (a whole block only: a short last block is padded differently):
 * 1 and *h, else 0. */
int capture_hash(const capture *c, int64_t b, uint64_t *h);
#endif

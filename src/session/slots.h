/*
 * slots.h — the pre-copy's blocks of one file (slots.c): each a slot of
 * SLOT_LEN bytes (session.h), by block number, for one inode. Private to
 * src/session/ (precopy.c fills them, prewrite.c writes them ahead).
 */
#ifndef MTM_SESSION_SLOTS_H
#define MTM_SESSION_SLOTS_H
#include "session/session.h"
#include "util/keymap.h"

/* Block number -> its copy (MTM_BLOCK bytes, malloc'ed), of one inode. */
struct precopy {
	int64_t dev, ino;
	keymap blocks;
	size_t unwritten;    /* slots SLOT_WHOLE and not written ahead (prewrite.c) */
	int fd1;             /* the pass's fd of the file (dev, ino) + 1, kept for the barrier; 0: none */
};

/* A pass keeps the fd it opened a file with (pc->fd1), so that the barrier
 * need not look the path up again inside the pause (precopy_take_fd), at
 * most this many at once in the process, and a quarter of RLIMIT_NOFILE's
 * soft limit (the others are opened again by path in the barrier). */
#define PRECOPY_FDS_MAX 4096
/* pc keeps fd (1), or the caller closes it (0: pc keeps one already, or
 * the process keeps as many as it may). */
int precopy_keep_fd(precopy *pc, int fd);
/* The same count for any fd kept for the barrier (a compare ahead's,
 * ahead.c): 1 and counted, or 0 (as many kept as may be); kept_fd_give when
 * it is closed or taken. */
int kept_fd_take(void);
void kept_fd_give(void);

/* The slot for block b, new or the old copy's: its bytes are overwritten. */
unsigned char *slot_for(precopy *pc, int64_t b, int *fresh);

/* Slots (SLOT_LEN bytes) come from a pool the process keeps: a checkpoint
 * of a busy program takes and drops tens of thousands of them, and a fresh
 * malloc of each, its pages faulted in again once the heap was trimmed,
 * was 40% of the session's CPU under pgbench (BENCHMARKS.md P3). slot_alloc
 * returns NULL when out of memory; slot_release(NULL) does nothing. */
unsigned char *slot_alloc(void);
void slot_release(unsigned char *s);
/* Frees the pooled slots past the most that were in use at once in any of
 * the last SLOT_POOL_KEEP intervals (a trim ends one: what the next ones
 * will likely take again), and starts counting anew; all: every pooled slot
 * (the session ends). Called at the end of each checkpoint. Kept over
 * several intervals because a slab made again is a huge page the kernel
 * zeroes: under pgbench, whose intervals alternate between ~25,000 slots
 * and many more, the slabs freed after a quiet interval and made again in
 * the next busy one were 37% of the session's CPU (BENCHMARKS-ARCHIVE.md
 * P14). */
#define SLOT_POOL_KEEP 8
void slot_pool_trim(int all);
/* Slots in use, and pooled free (tests, debugging). */
void slot_pool_counts(size_t *used, size_t *pooled);
/* Slabs made (memory faulted in) since the last call (debugging, tests). */
size_t slot_pool_made(void);
#endif

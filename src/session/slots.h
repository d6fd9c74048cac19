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
};

/* The slot for block b, new or the old copy's: its bytes are overwritten. */
unsigned char *slot_for(precopy *pc, int64_t b, int *fresh);

/* Slots (SLOT_LEN bytes) come from a pool the process keeps: a checkpoint
 * of a busy program takes and drops tens of thousands of them, and a fresh
 * malloc of each, its pages faulted in again once the heap was trimmed,
 * was 40% of the session's CPU under pgbench (BENCHMARKS.md P3). slot_alloc
 * returns NULL when out of memory; slot_release(NULL) does nothing. */
unsigned char *slot_alloc(void);
void slot_release(unsigned char *s);
/* Frees the pooled slots past the most that were in use at once since the
 * last trim (what the next interval will likely take again), and starts
 * counting anew; all: every pooled slot (the session ends). Called at the
 * end of each checkpoint. */
void slot_pool_trim(int all);
/* Slots in use, and pooled free (tests, debugging). */
void slot_pool_counts(size_t *used, size_t *pooled);
#endif

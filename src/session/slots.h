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
#endif

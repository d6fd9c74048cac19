/*
 * slots.c — the pre-copy's store of copied blocks (slots.h): found by
 * path, inode and block number, listed for writing ahead, freed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include "session/slots.h"
#include "util/error.h"

static const unsigned char *precopy_block(const precopy *pc, int64_t b)
{
	const uint64_t *v = pc ? keymap_get(&pc->blocks, b, 0) : NULL;
	return v ? (const unsigned char *)(uintptr_t)*v : NULL;
}

/* The slot for block b, new or the old copy's: its bytes are overwritten.
 * Layout: SLOT_LEN (session.h). */
unsigned char *slot_for(precopy *pc, int64_t b, int *fresh)
{
	uint64_t *v = keymap_put(&pc->blocks, b, 0, fresh);
	if (v && *fresh) {
		if (!(*v = (uint64_t)(uintptr_t)malloc(SLOT_LEN)))
			return NULL; /* (an empty slot: precopy_block finds no copy there) */
		*slot_meta((unsigned char *)(uintptr_t)*v) = 0;
	}
	return v ? (unsigned char *)(uintptr_t)*v : NULL;
}

size_t precopy_unwritten(const precopy *pc) { return pc->unwritten; }

int precopy_each_unwritten(const precopy *pc, vec *out)
{
	for (size_t i = 0; i < pc->blocks.cap; i++) {
		if (!pc->blocks.slots[i].used)
			continue;
		unsigned char *slot = (unsigned char *)(uintptr_t)pc->blocks.slots[i].val;
		if (!slot || *slot_meta(slot) != SLOT_WHOLE)
			continue;
		pending_blk *p = vec_push(out);
		if (!p)
			return mtm_set_error(ENOMEM, "writing ahead");
		*p = (pending_blk){pc->blocks.slots[i].a, slot};
	}
	return 0;
}

void precopy_mark_written(precopy *pc) { pc->unwritten = 0; }

void precopy_free(void *p)
{
	precopy *pc = p;
	if (!pc)
		return;
	for (size_t i = 0; i < pc->blocks.cap; i++)
		if (pc->blocks.slots[i].used)
			free((void *)(uintptr_t)pc->blocks.slots[i].val);
	keymap_free(&pc->blocks);
	free(pc);
}

const unsigned char *precopy_get(const pathmap *pre, const char *path, int64_t dev, int64_t ino, int64_t b)
{
	const precopy *pc = pathmap_get(pre, path);
	return pc && pc->dev == dev && pc->ino == ino ? precopy_block(pc, b) : NULL;
}

/*
 * changed.c — what a scan checkpoint must record, without holding the tree:
 * the live tree, the parent checkpoint's entries and the stat cache merged
 * in path order (tree_merge, merge.c), as status reads them (diff/live.c).
 *
 * Only what differs is kept: a live item that is new, of another kind, or
 * not known to be unchanged (a file the stat cache cannot vouch for, any
 * other item whose entry differs), with the parent's entry at its path, and
 * the parent's entries that are gone. Everything else is counted (entries,
 * bytes) and dropped at once. At 1,000,000 files, holding the walk, the
 * parent's tree and the stat cache took 540-564 MiB in a session's scan
 * fallback; what is held now grows with what changed.
 *
 * The two sides come out in path order and hold the same paths but the
 * gone ones, as ckpt_record merges them: a gone file is still matched with
 * a new name by inode there (a rename keeps its history).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "tree/merge.h"
#include "util/error.h"

typedef struct {
	vec *live, *parent;
	tree_rest *rest;
	scan_tick_fn tick;
	void *tick_arg;
	uint64_t items;
} changed_scan;

static void tick(changed_scan *c)
{
	if (c->tick && c->items++ % SCAN_TICK_ITEMS == 0)
		c->tick(c->tick_arg);
}

/* The parent's entry taken into the parent side. */
static int keep_parent(changed_scan *c, entry *pe)
{
	entry *slot = vec_push(c->parent);
	if (!slot)
		return mtm_set_error(ENOMEM, "checkpoint");
	*slot = *pe;
	memset(pe, 0, sizeof *pe); /* (the cursor clears nothing now) */
	return 0;
}

static int on_gone(void *arg, entry *pe)
{
	tick(arg);
	return keep_parent(arg, pe);
}

/* 1 if the live item records exactly what the parent's entry pe does, as
 * ckpt_record would find it (a file: the stat cache vouches for it). */
static int unchanged(const live_item *it, const entry *pe, int fresh)
{
	if (!pe || pe->kind != it->kind)
		return 0;
	if (it->kind == KIND_FILE)
		return fresh;
	entry e;
	live_entry(it, &e);
	return entry_same(&e, pe);
}

static int on_live(void *arg, live_item *it, entry *pe, int fresh)
{
	changed_scan *c = arg;
	tick(c);
	if (unchanged(it, pe, fresh)) {
		c->rest->entries++;
		if (it->kind == KIND_FILE)
			c->rest->bytes += (uint64_t)it->st.st_size;
		live_item_free(it);
		return 0;
	}
	live_item *slot = vec_push(c->live);
	if (!slot) {
		live_item_free(it);
		return mtm_set_error(ENOMEM, "checkpoint");
	}
	*slot = *it; /* taken: only the shell is freed */
	free(it);
	return pe ? keep_parent(c, pe) : 0;
}

int scan_changed(mtm_store *s, const ignore_set *ign, mtm_id parent, int group_links, vec *live, vec *parent_out,
                 tree_rest *rest, scan_tick_fn tick_fn, void *tick_arg)
{
	*live = (vec)VEC_INIT(live_item);
	*parent_out = (vec)VEC_INIT(entry);
	memset(rest, 0, sizeof *rest);
	changed_scan c = {.live = live, .parent = parent_out, .rest = rest, .tick = tick_fn, .tick_arg = tick_arg};
	merge_fns fns = {.live = on_live, .gone = on_gone, .arg = &c, .group_links = group_links, .what = "checkpoint"};
	int rc = tree_merge(s, ign, parent, &fns);
	if (rc) {
		live_free(live);
		entries_free(parent_out);
	}
	return rc;
}

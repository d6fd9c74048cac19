/* merge.h — the live tree, a checkpoint's entries and the stat cache merged
 * in path order (merge.c), for what must stream over a tree of any size:
 * the scan checkpoint (changed.c) and status (diff/live.c). */
#ifndef MTM_TREE_MERGE_H
#define MTM_TREE_MERGE_H
#include "tree/scan.h"

/* A live item with the checkpoint's entry at its path (pe, NULL if none).
 * fresh: both are files and the stat cache vouches that the live file
 * holds pe's version; then only pe's path, ver and kind are read (the rest
 * is zero: tree_cursor, store/index.h), else all of it. The callback owns
 * it (live_item_free) and may take *pe's contents (leaving it zeroed); a
 * non-zero return stops the merge. */
typedef int (*merge_live_fn)(void *arg, live_item *it, entry *pe, int fresh);
/* A checkpoint entry with no live item at its path (gone); the callback
 * may take its contents. */
typedef int (*merge_gone_fn)(void *arg, entry *pe);

/* A directory under the root that could not be read (err: why; status's
 * no permission): its entries are neither live nor gone but unknown, and
 * given to neither callback. NULL in merge_fns: its error stops the merge
 * (a checkpoint must not record what it could not see). */
typedef int (*merge_unlisted_fn)(void *arg, const char *dir, int err);

typedef struct {
	merge_live_fn live;
	merge_gone_fn gone;
	merge_unlisted_fn unlisted;
	void *arg;
	int group_links; /* hard links grouped: a group's later names KIND_LINK to its first (live_group_links' rule) */
	const char *what; /* the context of an error ("checkpoint", "status") */
} merge_fns;

/* Streams the tree under s->root against checkpoint ckpt: every live item
 * to fns->live and every gone entry to fns->gone, in path order (a gone
 * entry before the live item that follows it). Holds only the cursors and
 * the names of files with several links. */
int tree_merge(mtm_store *s, const ignore_set *ign, mtm_id ckpt, const merge_fns *fns);
#endif

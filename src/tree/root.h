/*
 * root.h — the root directory's own metadata, which no entry holds (the
 * tree's entries are what lies under it): recorded with each checkpoint
 * (FORMAT.md 3.2, checkpoint.root_*), compared by status and diff, given
 * back by a whole-tree restore.
 */
#ifndef MTM_TREE_ROOT_H
#define MTM_TREE_ROOT_H
#include "store/index.h"
#include "store/store.h"

/* What a checkpoint recorded of its root, or what the live root has.
 * Older checkpoints recorded less: the mode since format 9, the owner,
 * mtime and extended attributes since format 11. */
typedef struct root_meta {
	int have_mode;
	int have_rest;
	entry e; /* path ".", kind KIND_DIR; xattrs malloc'd */
} root_meta;

/* The live root (rootfd): everything. 0 or an errno. */
int root_meta_live(int rootfd, root_meta *out);
/* What checkpoint k recorded (an unknown k: nothing). 0 or an error set. */
int root_meta_of(mtm_store *s, mtm_id k, root_meta *out);
/* 1 if a and b differ in what both recorded; like a directory entry's, the
 * mtime is not compared (it changes with every entry added or removed). */
int root_meta_changed(const root_meta *a, const root_meta *b);
void root_meta_free(root_meta *m);
#endif

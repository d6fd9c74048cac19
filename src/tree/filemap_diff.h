/*
 * filemap_diff.h — which blocks differ between two versions of a file, from
 * their block maps (sorted blockref vectors, store/index.h): what a diff
 * counts and what an in-place restore patches.
 */
#ifndef MTM_TREE_FILEMAP_DIFF_H
#define MTM_TREE_FILEMAP_DIFF_H
#include <stdint.h>
#include "store/index.h"

/* Appends to runs the blocks below a_size's end where version (a, a_size)
 * differs from version (b, b_size); b's blocks past b_size count as zeros. */
int filemap_diff(const vec *a, int64_t a_size, const vec *b, int64_t b_size, vec *runs, uint64_t *bytes);
/* Appends block blkno to runs (which must be in increasing order). */
int filemap_add_run(vec *runs, int64_t blkno);
#endif

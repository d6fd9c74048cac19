/*
 * lineage.h — which versioned rows a checkpoint sees.
 *
 * Checkpoints form a tree; a branch is a chain of them. A row written at
 * checkpoint c on branch b is visible at k when c is k or an ancestor of k,
 * and the visible version of a key is the visible row with the greatest c
 * (ancestors' ids increase along the path). k's ancestors are, per branch,
 * a prefix: on k's own branch every checkpoint up to k, on its parent branch
 * every checkpoint up to the fork, and so on. So a lookup is one index seek
 * per branch on the path, O(branch depth * log n), independent of how many
 * checkpoints or sibling branches exist.
 */
#ifndef MTM_STORE_LINEAGE_H
#define MTM_STORE_LINEAGE_H
#include <stddef.h>
#include <stdint.h>
#include "store/store.h"

typedef struct { int64_t branch, max; } lin_step;
typedef struct { lin_step *v; size_t n; } lineage;

/* k = 0 gives the empty lineage (nothing visible). MTM_ENOCKPT if k is unknown. */
int lineage_of(mtm_store *s, mtm_id k, lineage *out);
static inline int lineage_visible(const lineage *l, int64_t branch, int64_t ckpt)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].branch == branch)
			return ckpt <= l->v[i].max;
	return 0;
}
/* The last checkpoint of branch l sees (0: none of it; ids start at 1). */
static inline int64_t lineage_max(const lineage *l, int64_t branch)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].branch == branch)
			return l->v[i].max;
	return 0;
}
void lineage_free(lineage *l);
/* Branch of checkpoint k (MTM_ENOCKPT if none). */
int checkpoint_branch(mtm_store *s, mtm_id k, int64_t *out);
#endif

/* diff_live.h — a checkpoint against the live tree (live.c), for mtm_diff
 * (diff.c). */
#ifndef MTM_DIFF_LIVE_H
#define MTM_DIFF_LIVE_H
#include "metamori.h"
#include "store/store.h"
#include "tree/scan.h"

/* mtm_diff(s, a, MTM_LIVE, ...) (live.c). */
int diff_live(mtm_store *s, mtm_id a, const mtm_diff_opts *opts, mtm_change_fn fn, void *arg);
/* The root's own metadata, a against b (MTM_LIVE: the live root): a
 * change "." ('m') to fn if what both recorded differs (live.c: the live
 * diff calls it first, and mtm_diff). */
int diff_root(mtm_store *s, mtm_id a, mtm_id b, mtm_change_fn fn, void *arg);
#endif

/* diff_live.h — a checkpoint against the live tree (live.c), for mtm_diff
 * (diff.c). */
#ifndef MTM_DIFF_LIVE_H
#define MTM_DIFF_LIVE_H
#include "metamori.h"
#include "store/store.h"
#include "tree/scan.h"

/* mtm_diff(s, a, MTM_LIVE, ...) (live.c). */
int diff_live(mtm_store *s, mtm_id a, const mtm_diff_opts *opts, mtm_change_fn fn, void *arg);
#endif

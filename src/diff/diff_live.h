/* diff_live.h — the pieces of diff.c that live.c (a checkpoint against the
 * live tree) shares with it. */
#ifndef MTM_DIFF_LIVE_H
#define MTM_DIFF_LIVE_H
#include "metamori.h"
#include "store/store.h"
#include "tree/scan.h"

/* Progress of a diff against the live tree (mtm_set_progress, phase
 * "status"): bytes of the live files compared, of those that will be. */
typedef struct {
	mtm_store *s;
	uint64_t done, total;
} live_progress;

/* 1 if the live item's metadata differs from a's (contents aside). */
int diff_meta_changed_live(const entry *a, const live_item *it);
/* Compares version a of a file with the live file it, by content (the
 * stat cache could not vouch for it); fills ch->kind ('M', 'm' or 0) and
 * ch->bytes. */
int diff_live_content(mtm_store *s, const lineage *la, const entry *a, live_item *it, mtm_change *ch,
                      live_progress *pg);
/* mtm_diff(s, a, MTM_LIVE, ...) (live.c). */
int diff_live(mtm_store *s, mtm_id a, const mtm_diff_opts *opts, mtm_change_fn fn, void *arg);
#endif

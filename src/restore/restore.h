/*
 * restore.h — making a tree exactly what it was at a checkpoint.
 */
#ifndef MTM_RESTORE_H
#define MTM_RESTORE_H
#include "metamori.h"
/* Completes an interrupted in-place restore to id; the caller holds the
 * writer lock (store_lock calls this when it finds an intent). */
int restore_finish_intent(mtm_store *s, mtm_id id);
/* mtm_restore's work (api/restore.c). refuse, if given, is asked with the
 * writer lock held before an in-place restore changes the tree: an error
 * (set) stops it there (a running session: the tree must not change under
 * the traced program). */
int restore_checkpoint(mtm_store *s, mtm_id id, const mtm_restore_opts *opts, int (*refuse)(mtm_store *s),
                       mtm_restore_stats *out);
/* Copies each region registered on s that checkpoint id holds back into
 * its memory (all from one snapshot of the index, every length checked
 * before any byte is written: MTM_EINVAL), and keeps their hashes. */
int restore_regions(mtm_store *s, mtm_id id);
#endif

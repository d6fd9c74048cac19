/*
 * restore.h — making a tree exactly what it was at a checkpoint. The public
 * side is mtm_restore, mtm_restore_pending, mtm_restore_continue and
 * mtm_restore_abort (metamori.h; api/restore.c); an interrupted restore is
 * finished or abandoned only on request, never by opening the store or
 * taking its lock.
 */
#ifndef MTM_RESTORE_H
#define MTM_RESTORE_H

/* The message of the checkpoint an in-place restore saves a live tree that
 * differs from its head as (followed by the target id). mtm_recover never
 * takes such a save for the newest restart point. */
#define RESTORE_SAVE_MESSAGE "saved before restoring checkpoint "
#include "metamori.h"
/* mtm_restore's work. refuse, if given, is asked with the writer lock held
 * before an in-place restore changes the tree: an error (set) stops it
 * there (a running session: the tree must not change under the traced
 * program). */
int restore_checkpoint(mtm_store *s, mtm_id id, const mtm_restore_opts *opts, int (*refuse)(mtm_store *s),
                       mtm_restore_stats *out);
/* mtm_restore_continue (abort = 0) and mtm_restore_abort's work; refuse as
 * above. */
int restore_resume(mtm_store *s, int abort, const mtm_restore_opts *opts, int (*refuse)(mtm_store *s),
                   mtm_restore_stats *out);
/* Copies each region registered on s that checkpoint id holds back into
 * its memory (all from one snapshot of the index, every length checked
 * before any byte is written: MTM_EINVAL), and keeps their hashes. */
int restore_regions(mtm_store *s, mtm_id id);
#endif

/*
 * prune.h — retention: choosing what to keep, folding dropped checkpoints
 * into their children, and collecting the chunks and packs nothing uses.
 */
#ifndef MTM_PRUNE_H
#define MTM_PRUNE_H
#include "metamori.h"
#include "store/store.h"

/* Marks in keep[i] (parallel to the id-ordered list) what the policy keeps. */
int prune_select(mtm_store *s, const mtm_prune_opts *o, const mtm_checkpoint_info *list, size_t n, char *keep);
/* Folds checkpoint d into its children and deletes it; the chunks its rows
 * used are added to the temp table gc_candidate. Inside a transaction. */
int prune_fold(mtm_store *s, mtm_id d);
/* Frees candidate chunks no row uses any more (inside the transaction). */
int prune_free_chunks(mtm_store *s, mtm_prune_stats *st);
/* Rewrites packs whose dead fraction reaches threshold, removes unknown
 * pack files; its own transactions. Needs the writer lock. */
int gc_packs(mtm_store *s, double threshold, mtm_prune_stats *st);
/* Bytes the store occupies on disk (packs, index, WAL). */
uint64_t store_disk_bytes(mtm_store *s);
#endif

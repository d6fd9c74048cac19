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
/* Creates (empties) the temp tables folding uses; head: the store's head. */
int prune_fold_begin(mtm_store *s, mtm_id head);
/* Folds checkpoint d into its children and deletes it; the chunks its rows
 * used are added to the temp table gc_candidate. Inside a transaction, the
 * newest dropped checkpoint first (each row then moves once). */
int prune_fold(mtm_store *s, mtm_id d);
/* After the folds: points the stat cache at the versions' new checkpoints. */
int prune_fold_end(mtm_store *s);
/* Frees candidate chunks no row uses any more (inside the transaction). */
int prune_free_chunks(mtm_store *s, mtm_prune_stats *st);
/* Rewrites packs whose dead fraction reaches threshold, removes unknown
 * pack files; its own transactions. Needs the writer lock. */
int gc_packs(mtm_store *s, double threshold, mtm_prune_stats *st);
/* What gc_packs would do now (a dry run's estimate): packs it would rewrite,
 * live bytes it would copy, bytes it would return. */
int gc_estimate(mtm_store *s, double threshold, mtm_prune_stats *st);
/* Bytes the store occupies on disk (packs, index, WAL). */
uint64_t store_disk_bytes(mtm_store *s);
#endif

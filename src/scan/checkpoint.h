/*
 * checkpoint.h — the steps of making a checkpoint, for the two ways of
 * learning what changed: a scan of the whole tree (ckpt_scan), and a
 * session's tracked change set (session/tracked.c), which records only the
 * touched paths with ckpt_record(..., partial = 1).
 */
#ifndef MTM_SCAN_CHECKPOINT_H
#define MTM_SCAN_CHECKPOINT_H
#include "scan/scan.h"
#include "store/pack.h"

typedef struct ckpt_run ckpt_run;
/* Takes the writer lock, opens the index transaction, picks id and branch.
 * On error *out may be set: call ckpt_end on it. */
int ckpt_begin(mtm_store *s, const mtm_checkpoint_opts *opts, ckpt_run **out);
mtm_id ckpt_parent(const ckpt_run *r);
/* The pack writer's timings so far (pack.h), for METAMORI_DEBUG_SESSION. */
const pack_writer *ckpt_pack(const ckpt_run *r);
const lineage *ckpt_lineage(const ckpt_run *r);
const ignore_set *ckpt_ignore(const ckpt_run *r);
/* Records live against parent (both sorted by path). partial: they hold
 * only the touched paths; everything else is unchanged. */
int ckpt_record(ckpt_run *r, vec *parent, vec *live, int partial);
/* Makes the packs durable, then commits: the checkpoint exists. */
int ckpt_commit(ckpt_run *r, mtm_checkpoint_info *out);
/* Rolls back if not committed, frees, unlocks. */
void ckpt_end(ckpt_run *r);
/* The whole tree, scanned. */
int ckpt_scan(mtm_store *s, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out);
/* The same, but nothing is recorded (out->id = 0) when the tree has no
 * difference from the head (an in-place restore saves the tree with it). */
int ckpt_scan_if_changed(mtm_store *s, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out);
#endif

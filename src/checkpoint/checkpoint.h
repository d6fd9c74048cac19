/*
 * checkpoint.h — the one engine that records a checkpoint, for the two ways
 * of learning what changed: a scan of the whole tree (ckpt_scan), and a
 * session's tracked change set (session/tracked.c), which records only the
 * touched paths with ckpt_record. A scan too records only the paths that
 * may differ (ckpt_record_scanned; tree/changed.c finds them).
 *
 * The engine knows nothing of sessions: what a session lends it (blocks
 * written ahead, parent hashes looked up while the program ran) comes in
 * as hooks (ckpt_hooks), given by the layer above.
 */
#ifndef MTM_CHECKPOINT_H
#define MTM_CHECKPOINT_H
#include "tree/scan.h"
#include "store/pack.h"

/* A block written ahead into a pack before the checkpoint began: its
 * record and, once a checkpoint named it (pack_adopt), its chunk id. */
typedef struct ahead_rec {
	pack_loc loc;
	int64_t chunk;
} ahead_rec;

/* What the layer above lends the engine; a NULL hook is not called (a
 * plain scan passes NULL for all of them). */
typedef struct ckpt_hooks {
	void *arg;
	/* The records written ahead that this checkpoint's pack writer continues
	 * after (their writer closed), NULL if none can be used. */
	const pack_ahead *(*ahead)(void *arg);
	/* 1 if this pre-copy slot (tree/scan.h capture_slot) was written ahead:
	 * its record and its block's place in it (rec NULL: only whether). */
	int (*ahead_ref)(void *arg, const unsigned char *slot, ahead_rec **rec, int *boff);
	/* 1 and *out if the hash of block b of file_id at parent is known
	 * without asking the index. */
	int (*parent_hash)(void *arg, mtm_id parent, int64_t file_id, int64_t b, uint64_t *out);
	/* Asked with the writer lock held: 1 if someone else writes ahead into
	 * the store's last pack (a running session), so this checkpoint starts
	 * a pack of its own. */
	int (*pack_fresh)(mtm_store *s);
	/* The stat cache row of path as the layer above knows it without
	 * asking the index: one a session keeps in memory, not yet written
	 * (sc_kept), or one its passes read while the program ran, while parent
	 * is still the head they read at: 1 if it knows, *row then that row,
	 * or NULL if there is none. */
	int (*sc_pending)(void *arg, mtm_id parent, const char *path, const sc_row **row);
	/* Given, once the checkpoint is committed, the stat cache rows it did
	 * not write (path -> sc_row*, ver 0: the row deleted; the values are the
	 * callee's to keep, the keys are freed after): with this hook, a
	 * checkpoint's rows wait for the caller to write them (when the session
	 * is idle, ...), not in its own commit, where ~200 rows of random paths
	 * were ~150 index pages (W2): a stat cache row is a cache, not history
	 * (FORMAT.md 3.9: a row whose ver is not the visible entry's vouches for
	 * nothing, so one written late, or lost, only makes a scan read more). */
	void (*sc_kept)(void *arg, pathmap *rows);
} ckpt_hooks;

typedef struct ckpt_run ckpt_run;
/* Takes the writer lock, opens the index transaction, picks id and branch.
 * hooks (copied; may be NULL) serve until ckpt_end. On error *out may be
 * set: call ckpt_end on it. */
int ckpt_begin(mtm_store *s, const mtm_checkpoint_opts *opts, const ckpt_hooks *hooks, ckpt_run **out);
mtm_id ckpt_parent(const ckpt_run *r);
/* The pack writer's timings so far (pack.h), for METAMORI_DEBUG_SESSION. */
const pack_writer *ckpt_pack(const ckpt_run *r);
const lineage *ckpt_lineage(const ckpt_run *r);
const ignore_set *ckpt_ignore(const ckpt_run *r);
/* path's stat cache row as this checkpoint reads it (*out NULL: none; the
 * row lives until ckpt_end): a session's collect asks for each touched
 * file's, and ckpt_record then does not read it again. */
int ckpt_statcache_row(ckpt_run *r, const char *path, const sc_row **out);
/* This checkpoint writes its stat cache rows in its own commit, even with
 * an sc_kept hook (a session's checkpoint that scans: its rows may be the
 * whole tree's). */
void ckpt_statcache_direct(ckpt_run *r);
/* Records live against parent (both sorted by path), which hold only the
 * touched paths; everything else is unchanged. */
int ckpt_record(ckpt_run *r, vec *parent, vec *live);
/* The same for a scan found by scan_changed (tree/scan.h): live and parent
 * hold what may differ, rest counts the unchanged entries and bytes. */
int ckpt_record_scanned(ckpt_run *r, vec *parent, vec *live, const tree_rest *rest);
/* After ckpt_record: 1 if no entry differs from the parent's and there is a
 * parent (a first checkpoint is never "unchanged"). Regions not counted. */
int ckpt_unchanged(const ckpt_run *r);
/* A session's checkpoint: made from its tracked changes (or scanned) and
 * how long the writers were held; kept with the checkpoint (format 6). */
void ckpt_note_session(ckpt_run *r, int tracked, uint64_t pause_ns);
/* Makes the packs durable, then commits: the checkpoint exists. */
int ckpt_commit(ckpt_run *r, mtm_checkpoint_info *out);
/* Rolls back if not committed, frees, unlocks. */
void ckpt_end(ckpt_run *r);
/* The whole tree, scanned. */
int ckpt_scan(mtm_store *s, const mtm_checkpoint_opts *opts, const ckpt_hooks *hooks, mtm_checkpoint_info *out);
/* The same, but nothing is recorded (out->id = 0) when the tree has no
 * difference from the head (an in-place restore saves the tree with it). */
int ckpt_scan_if_changed(mtm_store *s, const mtm_checkpoint_opts *opts, const ckpt_hooks *hooks,
                         mtm_checkpoint_info *out);
#endif

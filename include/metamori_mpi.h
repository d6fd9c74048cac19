/*
 * metamori_mpi.h — coordinated checkpoints of MPI jobs (libmetamori_mpi).
 *
 * A separate library above the public API of libmetamori (which has no MPI
 * dependency). Every rank calls the collectives at the application's safe
 * point with the tree its files live in:
 *
 *  - Ranks that pass the same tree (same realpath) on the same host form a
 *    group; the group's lowest rank is its leader and checkpoints that
 *    tree's store: through the live `metamori run` session on the tree when
 *    there is one (a tracked checkpoint), else by a scan. A tree without a
 *    store gets one (mtm_init) at its first epoch.
 *  - Two phases: every leader checkpoints; only if every group succeeded is
 *    the epoch committed, each store tagging its checkpoint "mpi-e<epoch>".
 *    Otherwise no store keeps the tag and every rank returns the same error
 *    (mtm_mpi_last_error() gives the failing group's one-line detail).
 *  - Epochs are numbered 1, 2, ...: one more than the newest committed in
 *    any of the stores. A job killed between two epochs restarts from the
 *    newest epoch committed in every group (mtm_mpi_recover).
 *
 * Environment:
 *   METAMORI_MPI_MIRROR=DIR  after each committed epoch, each leader mirrors
 *       its store into DIR/rank<leader>/ in the background (mtm_push: only
 *       what the mirror lacks), and mtm_mpi_recover restores a tree whose
 *       store is gone from there (the job must be restarted with the same
 *       trees per rank). MPI_Finalize waits for a push under way.
 *   METAMORI_MPI_FAIL_GROUP=R  the group whose leader is rank R (in comm)
 *       fails its checkpoint (tests).
 *
 * Return values are those of libmetamori: 0, a negative MTM_E* code, or a
 * positive errno; MPI failures are MTM_EINVAL with the MPI error string.
 */
#ifndef METAMORI_MPI_H
#define METAMORI_MPI_H

#include <mpi.h>
#include <stdint.h>
#include "metamori.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Collective over comm: checkpoints every group's tree and commits the epoch
 * only if all succeeded. *epoch (if non-NULL) is the epoch, equal on all
 * ranks: committed on success, the one that was not committed on failure.
 * opts (may be NULL) is passed to each leader's checkpoint.
 */
MTM_API int mtm_mpi_checkpoint(MPI_Comm comm, const char *tree, const mtm_checkpoint_opts *opts, uint64_t *epoch);

/*
 * Collective over comm: finds the newest epoch committed in every group and
 * restores each group's tree to it in place (its store, or its mirror when
 * the store is gone). *epoch is that epoch, equal on all ranks; 0 when there
 * is none, and then nothing is restored. Tags of later epochs (committed in
 * some groups only: a job killed during a commit) stay, never chosen. Call it
 * outside a `metamori run` session on the tree (an in-place restore is
 * refused under one): before the job starts its tracked run.
 */
MTM_API int mtm_mpi_recover(MPI_Comm comm, const char *tree, uint64_t *epoch);

/* The calling thread's last mtm_mpi_* error as one line ("" if none). */
MTM_API const char *mtm_mpi_last_error(void);

#ifdef __cplusplus
}
#endif
#endif /* METAMORI_MPI_H */

/*
 * mpi_group.h — libmetamori_mpi's internals (above the public API: this
 * code includes metamori.h and metamori_mpi.h only, never src/).
 *
 * Split: group.c (who checkpoints which tree: the groups, cached on the
 * communicator; agreeing on an error), epoch.c (mtm_mpi_checkpoint: the
 * two phases), recover.c (mtm_mpi_recover), drain.c (the mirror: pushes
 * after an epoch, and pulling a lost store back).
 */
#ifndef MTM_MPI_GROUP_H
#define MTM_MPI_GROUP_H
#include <pthread.h>
#include <stdint.h>
#include "metamori_mpi.h"

#define MPI_TAG_PREFIX "mpi-e" /* each store tags a committed epoch's checkpoint "mpi-e<epoch>" */

/* The ranks of comm that pass the same tree (realpath) on the same host. */
typedef struct mpi_group {
	struct mpi_group *next;
	char *arg;          /* the tree as this rank passed it (the cache key) */
	char *tree;         /* its realpath */
	MPI_Comm group;     /* the group's ranks; the leader is rank 0 here */
	MPI_Comm leaders;   /* every group's leader (MPI_COMM_NULL on other ranks) */
	int rank;           /* this rank in comm */
	int leader;         /* the leader's rank in comm: names the group */
	int is_leader;
	/* the leader's background push to the mirror (drain.c) */
	pthread_t push;
	int pushing;        /* a push thread was started and not joined yet */
	int push_done;      /* set by it when it ends (atomic) */
	int push_skipped;   /* an epoch committed while it ran: push again at the end */
} mpi_group;

/* The group of this rank for tree, built (collectively) on first use and
 * cached on comm. Collective over comm: every rank passes the point only
 * when all have called it, which makes it the epoch's safe-point barrier.
 * On error every rank returns the same code. */
int mpi_group_get(MPI_Comm comm, const char *tree, mpi_group **out);

/* Every rank of comm returns the first failure (lowest rank) among the
 * ranks' rc, with its message (mtm_mpi_last_error), or 0. */
int mpi_agree(MPI_Comm comm, int rc);
/* The same, where only who (a rank of comm, known to all) has the message. */
int mpi_share_error(MPI_Comm comm, int rc, int who);

/* The thread's error line: returns err. */
int mpi_set_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* MPI failures: MTM_EINVAL with MPI's text. */
int mpi_fail(int mpi_rc, const char *what);

/* (rank, code) packed so that MPI_MIN finds the lowest failing rank;
 * MPI_PACK_OK when rc is 0. */
#define MPI_PACK_OK INT64_MAX
static inline int64_t mpi_pack(int rank, int rc)
{
	return rc ? ((int64_t)rank << 32) | (uint32_t)rc : MPI_PACK_OK;
}
static inline int mpi_unpack_rank(int64_t v) { return (int)(v >> 32); }
static inline int mpi_unpack_rc(int64_t v) { return (int)(uint32_t)(v & 0xffffffff); }

/* The newest epoch tagged in s (0: none); with below, the newest < below. */
int mpi_newest_epoch(mtm_store *s, uint64_t below, uint64_t *out);
/* mtm_tag, waiting out a busy writer lock (a session checkpoints or merges). */
int mpi_tag(mtm_store *s, uint64_t epoch, mtm_id id);

/* The mirror (drain.c): $METAMORI_MPI_MIRROR/rank<leader>, or NULL. */
char *mpi_mirror_dir(const mpi_group *g);
/* After a committed epoch: push g's store in the background (skipped while
 * the previous push runs: the next one copies what it did not). */
void mpi_drain_start(mpi_group *g);
/* Waits for g's push (before a recovery). */
void mpi_drain_wait(mpi_group *g);
/* At MPI_Finalize: waits, then pushes an epoch a busy push made skip. */
void mpi_drain_finish(mpi_group *g);
/* The leader's store, opened; a tree without one gets it from the mirror
 * (pull: 1 in *pulled) when there is one, else MTM_ENOSTORE. */
int mpi_open_or_pull(mpi_group *g, mtm_store **out, int *pulled);
#endif

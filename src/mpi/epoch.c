/*
 * epoch.c — mtm_mpi_checkpoint: one coordinated checkpoint of every tree.
 *
 * Messages per epoch (G groups, N ranks):
 *   1. MPI_Allreduce over comm (mpi_group_get): every rank is at its safe
 *      point (its writes for this step are done), and every group is known;
 *   2. each leader checkpoints its store (its session's tracked checkpoint,
 *      or a scan), then MPI_Allreduce over the leaders: the first failure
 *      (lowest leader rank) and the newest epoch any store committed;
 *   3. if none failed, each leader tags its checkpoint "mpi-e<epoch>" (the
 *      commit) and MPI_Allreduce over the leaders again: a leader that
 *      could not tag makes the others remove theirs (no store keeps an
 *      epoch as committed unless all do);
 *   4. MPI_Bcast in each group: the outcome; on failure one more MPI_Bcast
 *      over comm carries the failing group's message to every rank.
 * A job killed between 3's tags leaves the epoch tagged in some stores
 * only: mtm_mpi_recover takes the newest epoch tagged in every store.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mpi/mpi_group.h"

/* METAMORI_MPI_FAIL_GROUP=<leader rank>: that group's checkpoint fails. */
static int injected_failure(const mpi_group *g)
{
	const char *v = getenv("METAMORI_MPI_FAIL_GROUP");
	if (!v || !*v)
		return 0;
	char *end;
	long r = strtol(v, &end, 10);
	if (*end || r != g->leader)
		return 0;
	return mpi_set_error(MTM_EFAULT, "mpi: checkpoint of %s: injected failure (METAMORI_MPI_FAIL_GROUP=%ld)", g->tree,
	                     r);
}

/* Phase 1 at a leader: the checkpoint (not committed yet). */
static int leader_checkpoint(mpi_group *g, const mtm_checkpoint_opts *opts, mtm_store **s, mtm_id *id,
                             uint64_t *newest)
{
	int rc = mtm_open(s, g->tree);
	if (rc == MTM_ENOSTORE)
		rc = mtm_init(s, g->tree); /* the first epoch of a tree with no store */
	if (rc)
		return mpi_set_error(rc, "mpi: %s", mtm_last_error());
	if ((rc = mpi_newest_epoch(*s, 0, newest)) || (rc = injected_failure(g)))
		return rc;
	mtm_checkpoint_opts o = MTM_CHECKPOINT_OPTS_INIT;
	if (opts)
		o = *opts;
	if (!o.message)
		o.message = "mpi epoch";
	mtm_checkpoint_info ci;
	if ((rc = mtm_checkpoint(*s, &o, &ci)))
		return mpi_set_error(rc, "mpi: checkpoint of %s: %s", g->tree, mtm_last_error());
	*id = ci.id;
	mtm_free(ci.message);
	return 0;
}

int mtm_mpi_checkpoint(MPI_Comm comm, const char *tree, const mtm_checkpoint_opts *opts, uint64_t *epoch)
{
	if (epoch)
		*epoch = 0;
	if (!tree)
		return mpi_set_error(MTM_EINVAL, "mpi: checkpoint: no tree given");
	mpi_group *g;
	int rc = mpi_group_get(comm, tree, &g);
	if (rc)
		return rc;
	/* out[0]: the outcome (mpi_pack), out[1]: the epoch */
	int64_t out[2] = {MPI_PACK_OK, 0};
	int m;
	if (g->is_leader) {
		mtm_store *s = NULL;
		mtm_id id = 0;
		uint64_t newest = 0;
		rc = leader_checkpoint(g, opts, &s, &id, &newest);
		/* one reduction for both: MIN of the outcome and of -newest */
		int64_t mine[2] = {mpi_pack(g->rank, rc), -(int64_t)newest}, all[2];
		m = MPI_Allreduce(mine, all, 2, MPI_INT64_T, MPI_MIN, g->leaders);
		if (m != MPI_SUCCESS) {
			rc = mpi_fail(m, "checkpoint");
			all[0] = mpi_pack(g->rank, rc);
			all[1] = 0;
		}
		uint64_t e = (uint64_t)(-all[1]) + 1;
		int tagged = 0;
		if (all[0] == MPI_PACK_OK) {
			/* phase 2: commit */
			rc = mpi_tag(s, e, id);
			tagged = !rc;
			int64_t t = mpi_pack(g->rank, rc);
			m = MPI_Allreduce(&t, &all[0], 1, MPI_INT64_T, MPI_MIN, g->leaders);
			if (m != MPI_SUCCESS) {
				rc = mpi_fail(m, "checkpoint: commit");
				all[0] = mpi_pack(g->rank, rc);
			}
			if (all[0] != MPI_PACK_OK && tagged)
				mpi_tag(s, e, 0); /* another store could not commit: neither does this one */
		}
		out[0] = all[0];
		out[1] = (int64_t)e;
		mtm_close(s);
		if (out[0] == MPI_PACK_OK)
			mpi_drain_start(g);
	}
	m = MPI_Bcast(out, 2, MPI_INT64_T, 0, g->group);
	if (m != MPI_SUCCESS)
		return mpi_fail(m, "checkpoint: the outcome");
	if (epoch)
		*epoch = (uint64_t)out[1];
	if (out[0] == MPI_PACK_OK)
		return 0;
	/* every rank: the failing group's code and message */
	return mpi_share_error(comm, mpi_unpack_rc(out[0]), mpi_unpack_rank(out[0]));
}

/*
 * recover.c — mtm_mpi_recover: every tree back to the newest epoch
 * committed in all groups; and the epoch tags both collectives use.
 *
 * The leaders agree on the epoch by rounds of two MPI_Allreduce: the least
 * of each store's newest epoch (below the last candidate), then whether
 * every store has that one. A store missing an epoch others have (a job
 * killed while it committed) costs one more round; a round costs two
 * reductions over the leaders. Tags of later epochs (in some stores only)
 * stay: they are never in every store (the next epoch's number is one past
 * the newest in any store), and removing them would lose nothing but
 * evidence.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mpi/mpi_group.h"

/* The epoch a tag names, or 0. */
static uint64_t tag_epoch(const char *name)
{
	size_t n = strlen(MPI_TAG_PREFIX);
	if (strncmp(name, MPI_TAG_PREFIX, n) || !name[n])
		return 0;
	char *end;
	unsigned long long e = strtoull(name + n, &end, 10);
	return *end ? 0 : (uint64_t)e;
}

int mpi_newest_epoch(mtm_store *s, uint64_t below, uint64_t *out)
{
	*out = 0;
	mtm_tag_info *tags;
	size_t n;
	int rc = mtm_tags(s, &tags, &n);
	if (rc)
		return mpi_set_error(rc, "mpi: %s", mtm_last_error());
	for (size_t i = 0; i < n; i++) {
		uint64_t e = tag_epoch(tags[i].name);
		if (e > *out && (!below || e < below))
			*out = e;
	}
	mtm_tags_free(tags, n);
	return 0;
}

int mpi_tag(mtm_store *s, uint64_t epoch, mtm_id id)
{
	char name[48];
	snprintf(name, sizeof name, MPI_TAG_PREFIX "%llu", (unsigned long long)epoch);
	/* the writer lock is taken per checkpoint and by a session's idle
	 * merge: wait it out (10 s at most) */
	int rc = 0;
	for (int i = 0; i < 1000; i++) {
		if ((rc = mtm_tag(s, name, id)) != MTM_EBUSY)
			break;
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	}
	if (rc == MTM_EINVAL && !id)
		return 0; /* no such tag: nothing to remove */
	return rc ? mpi_set_error(rc, "mpi: %s: tag %s: %s", mtm_root(s), name, mtm_last_error()) : 0;
}

/* Rounds of agreement among the leaders: the newest epoch every store has.
 * s is NULL for a tree with no store (it has no epoch). */
static int common_epoch(mpi_group *g, mtm_store *s, uint64_t *out)
{
	uint64_t below = 0;
	for (;;) {
		uint64_t mine = 0, least;
		int rc = s ? mpi_newest_epoch(s, below, &mine) : 0;
		if (rc)
			mine = 0; /* reported after the rounds */
		int m = MPI_Allreduce(&mine, &least, 1, MPI_UINT64_T, MPI_MIN, g->leaders);
		if (m != MPI_SUCCESS)
			return mpi_fail(m, "recover");
		int have = 1, all;
		if (least) {
			uint64_t le = 0;
			have = s && !mpi_newest_epoch(s, least + 1, &le) && le == least;
		}
		m = MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, g->leaders);
		if (m != MPI_SUCCESS)
			return mpi_fail(m, "recover");
		if (all || !least) {
			*out = all ? least : 0;
			return rc;
		}
		below = least; /* someone lacks it: the next older one */
	}
}

static int leader_restore(mpi_group *g, mtm_store *s, uint64_t e)
{
	if (!e)
		return 0;
	int rc;
	char name[48];
	snprintf(name, sizeof name, MPI_TAG_PREFIX "%llu", (unsigned long long)e);
	mtm_id id;
	if ((rc = mtm_resolve(s, name, &id)))
		return mpi_set_error(rc, "mpi: recover %s: %s", g->tree, mtm_last_error());
	mtm_restore_stats st;
	if ((rc = mtm_restore(s, id, NULL, &st)))
		return mpi_set_error(rc, "mpi: recover %s: %s", g->tree, mtm_last_error());
	return 0;
}

int mtm_mpi_recover(MPI_Comm comm, const char *tree, uint64_t *epoch)
{
	if (epoch)
		*epoch = 0;
	if (!tree)
		return mpi_set_error(MTM_EINVAL, "mpi: recover: no tree given");
	mpi_group *g;
	int rc = mpi_group_get(comm, tree, &g);
	if (rc)
		return rc;
	int64_t out[2] = {MPI_PACK_OK, 0};
	if (g->is_leader) {
		mpi_drain_wait(g);
		mtm_store *s = NULL;
		int pulled = 0;
		rc = mpi_open_or_pull(g, &s, &pulled);
		if (rc == MTM_ENOSTORE)
			rc = 0; /* no store, no mirror: this group has no epoch */
		uint64_t e = 0;
		int r2 = common_epoch(g, rc ? NULL : s, &e);
		rc = rc ? rc : r2;
		if (!rc && s)
			rc = leader_restore(g, s, e);
		mtm_close(s);
		int64_t mine = mpi_pack(g->rank, rc);
		int m = MPI_Allreduce(&mine, &out[0], 1, MPI_INT64_T, MPI_MIN, g->leaders);
		if (m != MPI_SUCCESS)
			out[0] = mpi_pack(g->rank, mpi_fail(m, "recover"));
		out[1] = (int64_t)e;
	}
	int m = MPI_Bcast(out, 2, MPI_INT64_T, 0, g->group);
	if (m != MPI_SUCCESS)
		return mpi_fail(m, "recover: the outcome");
	if (out[0] != MPI_PACK_OK)
		return mpi_share_error(comm, mpi_unpack_rc(out[0]), mpi_unpack_rank(out[0]));
	if (epoch)
		*epoch = (uint64_t)out[1];
	return 0;
}

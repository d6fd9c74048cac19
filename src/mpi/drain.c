/*
 * drain.c — the mirror of each group's store on shared storage
 * ($METAMORI_MPI_MIRROR/rank<leader>): pushed in the background after each
 * committed epoch, pulled back when a node's store is gone.
 *
 * The push runs in a thread of the leader with a store handle of its own
 * (handles are per thread) and makes no MPI call. It only ever copies
 * committed state (mtm_push), so it may lag an epoch behind: a push still
 * running when the next epoch commits makes that epoch skip its push, and
 * the next one copies both. MPI_Finalize (group.c's hook) waits for it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "mpi/mpi_group.h"

char *mpi_mirror_dir(const mpi_group *g)
{
	const char *root = getenv("METAMORI_MPI_MIRROR");
	char *dir;
	if (!root || !*root || asprintf(&dir, "%s/rank%d", root, g->leader) < 0)
		return NULL;
	return dir;
}

static void *push_thread(void *arg)
{
	mpi_group *g = arg;
	char *dir = mpi_mirror_dir(g);
	mtm_store *s;
	if (dir && !mtm_open(&s, g->tree)) {
		mtm_push(s, dir, NULL); /* a failure leaves the last mirror whole; the next push retries */
		mtm_close(s);
	}
	free(dir);
	__atomic_store_n(&g->push_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

void mpi_drain_wait(mpi_group *g)
{
	if (!g->pushing)
		return;
	pthread_join(g->push, NULL);
	g->pushing = 0;
}

void mpi_drain_finish(mpi_group *g)
{
	mpi_drain_wait(g);
	if (g->push_skipped) {
		g->push_skipped = 0;
		push_thread(g); /* here, now: the last committed epoch reaches the mirror */
	}
}

void mpi_drain_start(mpi_group *g)
{
	const char *root = getenv("METAMORI_MPI_MIRROR");
	if (!root || !*root)
		return;
	if (g->pushing) {
		if (!__atomic_load_n(&g->push_done, __ATOMIC_ACQUIRE)) {
			g->push_skipped = 1; /* still copying an earlier epoch: mpi_drain_finish copies this one */
			return;
		}
		mpi_drain_wait(g);
	}
	g->push_done = 0;
	g->push_skipped = 0;
	if (!pthread_create(&g->push, NULL, push_thread, g))
		g->pushing = 1;
}

int mpi_open_or_pull(mpi_group *g, mtm_store **out, int *pulled)
{
	*pulled = 0;
	int rc = mtm_open(out, g->tree);
	if (rc != MTM_ENOSTORE)
		return rc ? mpi_set_error(rc, "mpi: %s", mtm_last_error()) : 0;
	char *dir = mpi_mirror_dir(g);
	char probe[4096];
	struct stat st;
	if (!dir || snprintf(probe, sizeof probe, "%s/.metamori/index.db", dir) >= (int)sizeof probe ||
	    stat(probe, &st)) {
		free(dir);
		return MTM_ENOSTORE;
	}
	/* the node's store is gone: the mirror, pushed into the tree, is it */
	mtm_store *m;
	if ((rc = mtm_open(&m, dir)) == 0) {
		rc = mtm_push(m, g->tree, NULL);
		mtm_close(m);
	}
	if (!rc)
		rc = mtm_open(out, g->tree);
	if (rc)
		rc = mpi_set_error(rc, "mpi: recovering %s from the mirror %s: %s", g->tree, dir, mtm_last_error());
	else
		*pulled = 1;
	free(dir);
	return rc;
}

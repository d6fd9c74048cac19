/*
 * group.c — which rank checkpoints which tree (errors are agreed on in error.c).
 *
 * A group is the ranks of comm that pass the same tree (same realpath) on
 * the same host: MPI_Comm_split_type(SHARED) splits comm by node, the ranks
 * of a node exchange their trees' paths (a node has tens of ranks, not
 * thousands), and each path's lowest rank gives its color. The group's rank
 * 0 is its leader; the leaders have a communicator of their own, so the
 * epoch's agreement costs O(log groups), not O(log ranks).
 *
 * Groups are built once per (comm, tree) and cached on comm (an attribute,
 * freed with comm). Whether every rank has its group cached is itself
 * agreed (one MPI_Allreduce over comm): a rank that passes a new tree makes
 * all rebuild, never leaves the others waiting in another collective.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mpi/mpi_group.h"

int mpi_agree(MPI_Comm comm, int rc)
{
	int rank;
	MPI_Comm_rank(comm, &rank);
	int64_t mine = mpi_pack(rank, rc), first;
	int m = MPI_Allreduce(&mine, &first, 1, MPI_INT64_T, MPI_MIN, comm);
	if (m != MPI_SUCCESS)
		return mpi_fail(m, "agreeing on an outcome");
	if (first == MPI_PACK_OK)
		return 0;
	return mpi_share_error(comm, mpi_unpack_rc(first), mpi_unpack_rank(first));
}

/* --- the cache --- */

static int cache_key = MPI_KEYVAL_INVALID;    /* on comm: the groups built for it */
static int finalize_key = MPI_KEYVAL_INVALID; /* on MPI_COMM_SELF: MPI_Finalize deletes it first */

/* The groups built for one comm (the attribute's value). */
typedef struct comm_cache { mpi_group *groups; } comm_cache;
static void free_groups(mpi_group *list)
{
	while (list) {
		mpi_group *g = list;
		list = g->next;
		mpi_drain_wait(g);
		int finalized = 0;
		MPI_Finalized(&finalized);
		if (!finalized) {
			if (g->group != MPI_COMM_NULL)
				MPI_Comm_free(&g->group);
			if (g->leaders != MPI_COMM_NULL)
				MPI_Comm_free(&g->leaders);
		}
		free(g->arg);
		free(g->tree);
		free(g);
	}
}

static comm_cache *live_caches[64]; /* for the MPI_Finalize hook */

static int cache_delete(MPI_Comm comm, int key, void *val, void *extra)
{
	(void)comm;
	(void)key;
	(void)extra;
	comm_cache *c = val;
	for (size_t i = 0; i < sizeof live_caches / sizeof live_caches[0]; i++)
		if (live_caches[i] == c)
			live_caches[i] = NULL;
	free_groups(c->groups);
	free(c);
	return MPI_SUCCESS;
}

/* MPI_Finalize deletes MPI_COMM_SELF's attributes first: a push under
 * way finishes before the process can exit. */
static int finalize_delete(MPI_Comm comm, int key, void *val, void *extra)
{
	(void)comm;
	(void)key;
	(void)val;
	(void)extra;
	for (size_t i = 0; i < sizeof live_caches / sizeof live_caches[0]; i++)
		for (mpi_group *g = live_caches[i] ? live_caches[i]->groups : NULL; g; g = g->next)
			mpi_drain_finish(g);
	return MPI_SUCCESS;
}

static int cache_init(void)
{
	if (cache_key != MPI_KEYVAL_INVALID)
		return 0;
	int m = MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, cache_delete, &cache_key, NULL);
	if (m == MPI_SUCCESS)
		m = MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, finalize_delete, &finalize_key, NULL);
	if (m == MPI_SUCCESS)
		m = MPI_Comm_set_attr(MPI_COMM_SELF, finalize_key, NULL);
	return m == MPI_SUCCESS ? 0 : mpi_fail(m, "caching groups");
}

static comm_cache *cache_of(MPI_Comm comm, int create)
{
	comm_cache *c = NULL;
	int flag = 0;
	if (MPI_Comm_get_attr(comm, cache_key, &c, &flag) == MPI_SUCCESS && flag)
		return c;
	if (!create || !(c = calloc(1, sizeof *c)))
		return NULL;
	if (MPI_Comm_set_attr(comm, cache_key, c) != MPI_SUCCESS) {
		free(c);
		return NULL;
	}
	for (size_t i = 0; i < sizeof live_caches / sizeof live_caches[0]; i++)
		if (!live_caches[i]) {
			live_caches[i] = c;
			break;
		}
	return c;
}

/* --- building a group --- */

/* This rank's color within its node: the lowest node rank with the same key. */
static int node_color(MPI_Comm node, const char *key, int *color)
{
	int nrank, nsize, m;
	MPI_Comm_rank(node, &nrank);
	MPI_Comm_size(node, &nsize);
	int len = (int)strlen(key) + 1;
	int *lens = calloc((size_t)nsize, sizeof *lens), *displs = calloc((size_t)nsize, sizeof *displs);
	char *all = NULL;
	int rc = 0;
	if (!lens || !displs) {
		rc = mpi_set_error(ENOMEM, "mpi: out of memory");
		len = 0; /* still take part */
	}
	int dummy[1];
	m = MPI_Allgather(&len, 1, MPI_INT, lens ? lens : dummy, 1, MPI_INT, node);
	if (m != MPI_SUCCESS) {
		rc = mpi_fail(m, "exchanging trees");
		goto out;
	}
	long total = 0;
	if (lens)
		for (int i = 0; i < nsize; i++) {
			displs[i] = (int)total;
			total += lens[i];
		}
	all = malloc(total > 0 ? (size_t)total : 1);
	m = MPI_Allgatherv(key, len, MPI_CHAR, all, lens, displs, MPI_CHAR, node);
	if (m != MPI_SUCCESS) {
		rc = mpi_fail(m, "exchanging trees");
		goto out;
	}
	*color = nrank;
	for (int i = 0; i < nsize; i++)
		if (!strcmp(all + displs[i], key)) {
			*color = i;
			break;
		}
out:
	free(lens);
	free(displs);
	free(all);
	return rc;
}

static int build(MPI_Comm comm, const char *tree, mpi_group **out)
{
	*out = NULL;
	mpi_group *g = calloc(1, sizeof *g);
	if (!g)
		return mpi_set_error(ENOMEM, "mpi: out of memory");
	g->group = g->leaders = MPI_COMM_NULL;
	MPI_Comm_rank(comm, &g->rank);
	int rc = 0;
	g->arg = strdup(tree);
	g->tree = realpath(tree, NULL);
	if (!g->tree)
		rc = mpi_set_error(errno, "mpi: %s: %s", tree, strerror(errno));
	else if (!g->arg)
		rc = mpi_set_error(ENOMEM, "mpi: out of memory");
	/* every rank goes through every collective, whatever failed */
	MPI_Comm node = MPI_COMM_NULL;
	int m = MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, g->rank, MPI_INFO_NULL, &node);
	int color = 0;
	if (m != MPI_SUCCESS)
		rc = rc ? rc : mpi_fail(m, "splitting by node");
	else {
		int c = node_color(node, g->tree ? g->tree : "", &color);
		rc = rc ? rc : c;
		m = MPI_Comm_split(node, color, g->rank, &g->group);
		if (m != MPI_SUCCESS)
			rc = rc ? rc : mpi_fail(m, "splitting by tree");
		MPI_Comm_free(&node);
	}
	int grank = 0;
	if (g->group != MPI_COMM_NULL)
		MPI_Comm_rank(g->group, &grank);
	g->is_leader = g->group != MPI_COMM_NULL && grank == 0;
	g->leader = g->rank;
	if (g->group != MPI_COMM_NULL && (m = MPI_Bcast(&g->leader, 1, MPI_INT, 0, g->group)) != MPI_SUCCESS)
		rc = rc ? rc : mpi_fail(m, "naming the leader");
	m = MPI_Comm_split(comm, g->is_leader ? 0 : MPI_UNDEFINED, g->rank, &g->leaders);
	if (m != MPI_SUCCESS)
		rc = rc ? rc : mpi_fail(m, "gathering the leaders");
	if ((rc = mpi_agree(comm, rc))) {
		if (g->group != MPI_COMM_NULL)
			MPI_Comm_free(&g->group);
		if (g->leaders != MPI_COMM_NULL)
			MPI_Comm_free(&g->leaders);
		free(g->arg);
		free(g->tree);
		free(g);
		return rc;
	}
	*out = g;
	return 0;
}

int mpi_group_get(MPI_Comm comm, const char *tree, mpi_group **out)
{
	*out = NULL;
	int rc = cache_init();
	comm_cache *c = rc ? NULL : cache_of(comm, 1);
	if (!rc && !c)
		rc = mpi_set_error(ENOMEM, "mpi: caching groups");
	mpi_group **slot = NULL;
	for (mpi_group **p = c ? &c->groups : NULL; p && *p; p = &(*p)->next)
		if (!strcmp((*p)->arg, tree)) {
			slot = p;
			break;
		}
	/* all cached, or all rebuild (and every rank learns any failure) */
	int mine = rc ? -1 : slot ? 1 : 0, least;
	int m = MPI_Allreduce(&mine, &least, 1, MPI_INT, MPI_MIN, comm);
	if (m != MPI_SUCCESS)
		return mpi_fail(m, "looking up the groups");
	if (least < 0)
		return mpi_agree(comm, rc);
	if (least == 1) {
		*out = *slot;
		return 0;
	}
	mpi_group *g;
	if ((rc = build(comm, tree, &g)))
		return rc;
	if (slot) { /* rebuilt because another rank's tree is new */
		mpi_group *old = *slot;
		*slot = old->next;
		old->next = NULL;
		free_groups(old);
	}
	g->next = c->groups;
	c->groups = g;
	*out = g;
	return 0;
}

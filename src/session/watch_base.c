/*
 * watch_base.c — what every part of the watcher shares: the pending
 * events (note, pend_merge), the tree's paths (in_tree), the cache of
 * resolved directories, the clock, and what a judgement writes into a
 * change set (mark_whole, carry).
 */
#include "session/watch_parts.h"

/* The held events dropped (their bytes freed; the vector kept). */
void held_drop(vec *held)
{
	for (size_t i = 0; i < held->n; i++)
		free(VEC_AT(held, held_event, i).ev);
	held->n = 0;
}

void dircache_free(void *p)
{
	if (p != OUTSIDE)
		free(p);
}

void dircache_clear(watcher *w)
{
	pathmap_free(&w->dircache, dircache_free);
	memset(&w->dircache, 0, sizeof w->dircache);
}

/* Records that something (kind) happened to path, by pid (0: unknown). */
int note(watcher *w, const char *path, int kind, int32_t pid)
{
	if (session_outside_tree(path))
		return 0;
	pend *p = pathmap_get(&w->pending, path);
	if (!p) {
		if (!(p = calloc(1, sizeof *p)) || pathmap_put(&w->pending, path, p)) {
			free(p);
			return ENOMEM;
		}
	}
	p->kinds |= (uint8_t)kind;
	for (int i = 0; i < p->npid; i++)
		if (p->pid[i] == pid)
			return 0;
	if (p->npid < PEND_PIDS)
		p->pid[p->npid++] = pid;
	else
		p->many = 1;
	return 0;
}

/* path relative to the root, or NULL if abs is not in the tree. */
const char *in_tree(const watcher *w, const char *abs)
{
	if (strncmp(abs, w->root, w->rootlen))
		return NULL;
	if (w->root[w->rootlen - 1] == '/') /* the tree is / */
		return abs + w->rootlen;
	return abs[w->rootlen] == '/' ? abs + w->rootlen + 1 : abs[w->rootlen] ? NULL : abs + w->rootlen;
}

int64_t elapsed_ns(const struct timespec *since)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)(now.tv_sec - since->tv_sec) * 1000000000 + (now.tv_nsec - since->tv_nsec);
}

int mark_whole(change_set *cs, const char *path)
{
	file_change *fc = change_set_file(cs, path);
	if (!fc)
		return ENOMEM;
	fc->whole = 1;
	return 0;
}

int carry(watcher *w, const char *path)
{
	return pathmap_get(&w->carry, path) ? 0 : pathmap_put(&w->carry, path, (void *)1);
}

/* p's pids added to q's (past PEND_PIDS: many). */
void pend_merge(pend *q, const pend *p)
{
	for (int i = 0; i < p->npid && !q->many; i++) {
		int seen = 0;
		for (int j = 0; j < q->npid && !seen; j++)
			seen = q->pid[j] == p->pid[i];
		if (!seen && q->npid < PEND_PIDS)
			q->pid[q->npid++] = p->pid[i];
		else if (!seen)
			q->many = 1;
	}
}

/*
 * change_set.c — what the logs (barrier.c) and the watcher (watch_*.c) say
 * changed since the last checkpoint: the files written (byte ranges,
 * truncations, whole), the paths whose metadata or namespace changed, and
 * whether only a scan is safe.
 */
#include <stdlib.h>
#include <string.h>
#include "session/session.h"

typedef struct { int64_t off, len; } byte_range; /* as in barrier.c */

static void file_change_free(void *p)
{
	file_change *fc = p;
	if (fc)
		vec_free(&fc->ranges);
	free(fc);
}

void change_set_free(change_set *cs)
{
	pathmap_free(&cs->files, file_change_free);
	pathmap_free(&cs->meta, NULL);
	pathmap_free(&cs->ns, NULL);
	memset(cs, 0, sizeof *cs);
}

file_change *change_set_file(change_set *cs, const char *path)
{
	file_change *fc = pathmap_get(&cs->files, path);
	if (fc)
		return fc;
	fc = calloc(1, sizeof *fc);
	if (!fc)
		return NULL;
	fc->ranges = (vec)VEC_INIT(byte_range);
	fc->trunc_min = -1;
	if (pathmap_put(&cs->files, path, fc)) {
		free(fc);
		return NULL;
	}
	return fc;
}

int change_set_mark(pathmap *m, const char *path)
{
	return pathmap_get(m, path) ? 0 : pathmap_put(m, path, (void *)1);
}

void change_set_scan(change_set *cs, const char *why)
{
	if (!cs->scan)
		cs->scan_why = why;
	cs->scan = 1;
}

/* The store and the restore's temporaries are never part of the tree. */
int session_outside_tree(const char *path)
{
	if (!strcmp(path, ".metamori") || !strncmp(path, ".metamori/", 10))
		return 1;
	const char *leaf = strrchr(path, '/');
	leaf = leaf ? leaf + 1 : path;
	return !strncmp(leaf, MTM_TMP_PREFIX, strlen(MTM_TMP_PREFIX));
}

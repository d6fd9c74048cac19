/*
 * parent.c — where a restore makes its changes: a path's parent directory,
 * opened beneath the root with no symlink followed; the directories whose
 * entries changed (fsynced at the end); the temporary names that entries
 * are made under before they are renamed into place.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/beneath.h"
#include "restore/rctx.h"
#include "util/error.h"

int open_parent(rctx *c, const char *path, int *dfd, const char **leaf)
{
	int rc = beneath_open_parent(c->rootfd, path, dfd, leaf);
	if (rc == ELOOP || rc == EXDEV || rc == ENOTDIR)
		return mtm_set_error(MTM_EUNSAFE, "%s: a symlink or non-directory is in the way; refusing to follow it", path);
	return rc ? mtm_set_errno(rc, "%s", path) : 0;
}

/* Adds path's parent directory ("." for the root) to dirs. */
void touch_dir_in(pathmap *dirs, const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
	if (dir && !pathmap_get(dirs, dir))
		pathmap_put(dirs, dir, (void *)1);
	free(dir);
}

void touch_dir(rctx *c, const char *path) { touch_dir_in(&c->dirs, path); }

void tmp_name(rctx *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s%d.%u", MTM_TMP_PREFIX, (int)getpid(), c->tmp_seq++);
}

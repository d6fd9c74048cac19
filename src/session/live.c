/*
 * live.c — the live tree as a tracked checkpoint sees it: every path opened
 * beneath the root through its directory's fd (each directory opened once
 * per checkpoint), never through a symlink.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/io.h"
#include "io/xattr.h"
#include "session/tctx.h"
#include "util/error.h"

/* The fd + 1 of directory dir (a tree path), or -errno: opened once per
 * checkpoint, one component under its parent's fd (itself cached), never
 * through a symlink. W2's 200 files in ~90 directories under m/: `m` is
 * opened once, not again for each directory below it (openat2 from the
 * root, then the directory, its fstat and m's close: four calls a
 * directory inside the pause, one now). */
static intptr_t dir_fd(tctx *t, const char *dir)
{
	intptr_t v = (intptr_t)pathmap_get(&t->dirfds, dir);
	if (v)
		return v;
	const char *slash = strrchr(dir, '/'), *leaf = slash ? slash + 1 : dir;
	int pfd = t->s->rootfd, rc = 0, fd = -1;
	if (!*leaf || !strcmp(leaf, ".") || !strcmp(leaf, "..")) {
		rc = EXDEV; /* (no log names such a path: the checkpoint scans, as after openat2's refusal) */
	} else if (slash) {
		char *up = strndup(dir, (size_t)(slash - dir));
		intptr_t pv = up ? dir_fd(t, up) : -(intptr_t)ENOMEM;
		free(up);
		if (pv < 0)
			rc = (int)-pv;
		else
			pfd = (int)(pv - 1);
	}
	if (!rc && (rc = io_openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, &fd)) == ENOTDIR) {
		/* a symlink is refused as openat2's RESOLVE_NO_SYMLINKS refuses it */
		struct stat st;
		if (!fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) && S_ISLNK(st.st_mode))
			rc = ELOOP;
	}
	if (rc == ENOMEM)
		return -(intptr_t)ENOMEM;
	v = rc ? -(intptr_t)rc : (intptr_t)fd + 1;
	if (pathmap_put(&t->dirfds, dir, (void *)v)) {
		if (!rc)
			close(fd);
		return -(intptr_t)ENOMEM;
	}
	return v;
}

int live_parent_fd(tctx *t, const char *path, int *dfd, const char **leaf)
{
	const char *slash = strrchr(path, '/');
	if (!slash) {
		*dfd = t->s->rootfd;
		*leaf = path;
		return 0;
	}
	char *dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return ENOMEM;
	intptr_t v = dir_fd(t, dir);
	free(dir);
	if (v < 0)
		return (int)-v;
	*dfd = (int)(v - 1);
	*leaf = slash + 1;
	return 0;
}

void dirfds_close(tctx *t)
{
	for (size_t i = 0; i < t->dirfds.cap; i++)
		if (t->dirfds.slots[i].key && (intptr_t)t->dirfds.slots[i].val > 0)
			close((int)((intptr_t)t->dirfds.slots[i].val - 1));
	pathmap_free(&t->dirfds, NULL);
	filefds_close(t);
}

void filefds_close(tctx *t)
{
	/* (files opened and not captured: no capture needed, or a restart) */
	for (size_t i = 0; i < t->filefds.cap; i++)
		if (t->filefds.slots[i].key && (intptr_t)t->filefds.slots[i].val > 0)
			close((int)((intptr_t)t->filefds.slots[i].val - 1));
	pathmap_free(&t->filefds, NULL);
	memset(&t->filefds, 0, sizeof t->filefds);
}

int live_take_fd(tctx *t, const char *path)
{
	intptr_t v = t->filefds.n ? (intptr_t)pathmap_get(&t->filefds, path) : 0;
	if (v <= 0)
		return -1;
	pathmap_put(&t->filefds, path, NULL); /* (replacing a value allocates nothing) */
	return (int)(v - 1);
}

/* Opens a live file for its capture; *st: its stat, which the open takes
 * anyway (a regular file or a directory: it must not block), so that the
 * caller needs no fstat of its own inside the pause. */
int open_live(tctx *t, const char *path, int *fd, struct stat *st)
{
	int dfd;
	const char *leaf;
	int rc = live_parent_fd(t, path, &dfd, &leaf);
	if (!rc)
		rc = io_open_plain(dfd, leaf, O_RDONLY | O_NOFOLLOW, fd, st);
	return rc == ENOTPLAIN ? ENOENT : rc; /* replaced by a FIFO or device: never blocks */
}

/* lstat of a tree path, never through a symlink (and its extended
 * attributes, but a regular file's). *found = 0 if it is not there. */
int live_stat(tctx *t, const char *path, live_item *it, int *found)
{
	*found = 0;
	int dfd;
	const char *leaf;
	int rc = live_parent_fd(t, path, &dfd, &leaf);
	if (rc == ENOENT || rc == ENOTDIR)
		return 0;
	if (rc == ELOOP || rc == EXDEV)
		return need_scan(t, "a recorded path goes through a symlink");
	if (rc)
		return mtm_set_errno(rc, "%s/%s", t->s->root, path);
	struct stat st;
	if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW)) {
		rc = errno;
		return rc == ENOENT ? 0 : mtm_set_errno(rc, "%s/%s", t->s->root, path);
	}
	int kind = kind_of_mode(st.st_mode);
	if (kind == KIND_NONE)
		return 0;
	if (kind == KIND_SYMLINK) {
		char buf[4096];
		ssize_t n = readlinkat(dfd, leaf, buf, sizeof buf - 1);
		if (n < 0)
			return mtm_set_errno(errno, "%s/%s", t->s->root, path);
		it->target = strndup(buf, (size_t)n);
	}
	if (kind != KIND_FILE) {
		if ((rc = xattr_read_at(dfd, leaf, &it->xattrs, &it->xattrs_len)) && rc != ENOENT) {
			free(it->target);
			it->target = NULL;
			return mtm_set_errno(rc, "%s/%s: reading extended attributes", t->s->root, path);
		}
		it->xattrs_read = 1;
	}
	it->st = st;
	it->kind = kind;
	*found = 1;
	return 0;
}

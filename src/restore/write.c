/*
 * write.c — a restore's file writes: a version written whole under a
 * temporary name and renamed in (old or new, never a mix), or a large
 * file's differing blocks patched (in a reflinked copy where the file
 * system shares extents, else in place under the intent, fsynced together
 * at the end); and the fsyncs of the directories changed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/io.h"
#include "restore/rctx.h"
#include "util/error.h"
#include "util/human.h"

static void progress(rctx *c, uint64_t add)
{
	c->done += add;
	if (c->rq && c->rq->progress)
		c->rq->progress(c->rq->progress_arg, "restore", c->done, c->total);
}

/* Writes a file version whole under a temporary name and renames it in. */
int write_whole(rctx *c, const plan_item *p)
{
	const entry *e = p->te;
	int dfd, fd, rc;
	const char *leaf;
	MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
	char tmp[64];
	tmp_name(c, tmp, sizeof tmp);
	rc = io_openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600, &fd);
	if (rc) {
		close(dfd);
		return mtm_set_errno(rc, "%s", e->path);
	}
	uint64_t before = c->st.bytes_written;
	rc = io_ftruncate(fd, (off_t)e->size);
	if (rc)
		mtm_set_errno(rc, "%s", e->path);
	else if ((rc = filemap_write(&c->pr, NULL, fd, &p->map, e->size, NULL, 0, 0, &c->st.bytes_written)))
		mtm_set_error(rc, "%s: %s", e->path, mtm_last_error());
	else if ((rc = set_meta_fd(c, fd, e)))
		mtm_set_errno(rc, "%s: setting metadata", e->path);
	else if (c->in_place) {
		int64_t t = now_ns();
		if ((rc = io_fsync(fd)))
			mtm_set_errno(rc, "%s: fsync", e->path);
		c->fsync_ns += now_ns() - t;
	}
	close(fd);
	if (!rc && (rc = io_renameat(dfd, tmp, dfd, leaf)))
		mtm_set_errno(rc, "%s: rename into place", e->path);
	if (rc)
		(void)io_unlinkat(dfd, tmp, 0); /* best effort: scans skip a left temporary */
	close(dfd);
	if (!rc) {
		touch_dir(c, e->path);
		c->st.files_written++;
		progress(c, c->st.bytes_written - before);
	}
	return rc;
}

/* Where the file system can share extents (btrfs, XFS), a large file is
 * patched in a reflinked copy renamed into place: old-or-new at the cost of
 * the differing bytes. Elsewhere it is patched in place, covered by the
 * intent. Returns the fd to patch, and in tmp the copy's name ("" if none). */
static int open_for_patch(rctx *c, const entry *e, int *dfd_out, const char **leaf, char *tmp, size_t tmplen, int *fd_out)
{
	int dfd, src, rc;
	MTM_TRY(open_parent(c, e->path, &dfd, leaf));
	tmp[0] = 0;
	if ((rc = io_open_regular(dfd, *leaf, O_RDONLY | O_NOFOLLOW, &src))) {
		close(dfd);
		return rc == ELOOP ? mtm_set_error(MTM_EUNSAFE, "%s: is a symlink now; refusing to follow it", e->path)
		                   : mtm_set_errno(rc, "%s", e->path);
	}
	tmp_name(c, tmp, tmplen);
	int fd = -1;
	if (!io_openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600, &fd)) {
		if (io_clone(fd, src) == 0) {
			close(src);
			*dfd_out = dfd;
			*fd_out = fd;
			return 0;
		}
		close(fd);
		(void)io_unlinkat(dfd, tmp, 0); /* best effort: scans skip a left temporary */
	}
	tmp[0] = 0;
	close(src);
	rc = io_open_regular(dfd, *leaf, O_WRONLY | O_NOFOLLOW, &fd);
	if (rc) {
		close(dfd);
		return mtm_set_errno(rc, "%s", e->path);
	}
	*dfd_out = dfd;
	*fd_out = fd;
	return 0;
}

/* fsyncs (and closes) the files patched in place so far. */
int sync_patched(rctx *c)
{
	int rc = 0;
	int64_t t = now_ns();
	for (size_t i = 0; i < c->unsynced.n; i++) {
		unsynced_file *u = &VEC_AT(&c->unsynced, unsynced_file, i);
		int err = rc ? 0 : io_fsync(u->fd);
		if (err)
			rc = mtm_set_errno(err, "%s: fsync", u->path);
		close(u->fd);
	}
	c->unsynced.n = 0;
	c->fsync_ns += now_ns() - t;
	return rc;
}

/* Rewrites only the differing blocks of a large file. */
int write_patch(rctx *c, const plan_item *p)
{
	const entry *e = p->te;
	int fd = -1, dfd = -1;
	const char *leaf;
	char tmp[64];
	int rc = open_for_patch(c, e, &dfd, &leaf, tmp, sizeof tmp, &fd);
	if (rc)
		return rc;
	uint64_t before = c->st.bytes_written;
	if ((rc = io_ftruncate(fd, (off_t)e->size)))
		mtm_set_errno(rc, "%s", e->path);
	else if ((rc = filemap_write(&c->pr, c->bc, fd, &p->map, e->size, &p->runs, 1, 0, &c->st.bytes_written)))
		mtm_set_error(rc, "%s: %s", e->path, mtm_last_error());
	else if ((rc = set_meta_fd(c, fd, e)))
		mtm_set_errno(rc, "%s: setting metadata", e->path);
	else if (!tmp[0] && (c->unsynced.n < UNSYNCED_MAX || !(rc = sync_patched(c)))) {
		unsynced_file *u = vec_push(&c->unsynced);
		if (u) {
			u->fd = fd;
			u->path = e->path;
			fd = -1;
		}
	}
	if (fd >= 0 && !rc) {
		int64_t t = now_ns();
		if ((rc = io_fsync(fd)))
			mtm_set_errno(rc, "%s: fsync", e->path);
		c->fsync_ns += now_ns() - t;
	}
	if (fd >= 0)
		close(fd);
	if (tmp[0]) {
		if (!rc && (rc = io_renameat(dfd, tmp, dfd, leaf)))
			mtm_set_errno(rc, "%s: rename into place", e->path);
		if (rc)
			(void)io_unlinkat(dfd, tmp, 0); /* best effort: scans skip a left temporary */
		else
			touch_dir(c, e->path);
	}
	close(dfd);
	if (!rc) {
		c->st.files_patched++;
		progress(c, c->st.bytes_written - before);
	}
	return rc;
}

int fsync_dirs(rctx *c)
{
	for (size_t i = 0; i < c->dirs.cap; i++) {
		const char *d = c->dirs.slots[i].key;
		if (!d)
			continue;
		int fd, rc;
		if (!strcmp(d, "."))
			rc = io_fsync_dirat(c->rootfd, ".");
		else if (!(rc = beneath_open(c->rootfd, d, O_RDONLY | O_DIRECTORY, &fd))) {
			rc = io_fsync(fd);
			close(fd);
		}
		/* a directory removed or replaced later in this restore: its
		 * parent holds that change and is fsynced itself */
		if (rc && rc != ENOENT && rc != ENOTDIR && rc != ELOOP)
			return mtm_set_errno(rc, "%s: fsync", d);
	}
	return 0;
}

/*
 * write.c — a restore's file writes: a version written whole under a
 * temporary name and renamed in (old or new, never a mix), or a large
 * file's differing blocks patched (in a reflinked copy where the file
 * system shares extents, else in place under the intent, fsynced together
 * at the end); and the fsyncs of the directories changed.
 */
#include <assert.h>
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
	else if (c->in_place) { /* fsynced with a batch, then renamed in (rename_written) */
		unrenamed_file *u = vec_push(&c->unrenamed);
		if (!u) {
			rc = mtm_set_error(ENOMEM, "restore");
		} else {
			*u = (unrenamed_file){dfd, fd, "", e->path, leaf};
			snprintf(u->tmp, sizeof u->tmp, "%s", tmp);
			progress(c, c->st.bytes_written - before);
			return c->unrenamed.n < UNSYNCED_MAX ? 0 : rename_written(c);
		}
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

/* A batch's files fsynced together (io_fsync_many); errs[i] for fds[i].
 * Counted in fsync_ns ($METAMORI_DEBUG_RESTORE). */
static void fsync_batch(rctx *c, const int *fds, size_t n, int *errs)
{
	int64_t t = now_ns();
	if (n)
		io_fsync_many(fds, n, errs);
	c->fsync_ns += now_ns() - t;
}

/* The batch's fsyncs at once; then each file renamed in, in plan order,
 * or (once one failed) its temporary removed. */
int rename_written(rctx *c)
{
	size_t n = c->unrenamed.n;
	int fds[UNSYNCED_MAX], errs[UNSYNCED_MAX], rc = 0;
	assert(n <= UNSYNCED_MAX); /* write_whole renames a full batch in */
	for (size_t i = 0; i < n; i++)
		fds[i] = VEC_AT(&c->unrenamed, unrenamed_file, i).fd;
	fsync_batch(c, fds, n, errs);
	for (size_t i = 0; i < n; i++) {
		unrenamed_file *u = &VEC_AT(&c->unrenamed, unrenamed_file, i);
		close(u->fd);
		if (!rc && errs[i])
			rc = mtm_set_errno(errs[i], "%s: fsync", u->path);
		if (!rc && (rc = io_renameat(u->dfd, u->tmp, u->dfd, u->leaf)))
			mtm_set_errno(rc, "%s: rename into place", u->path);
		if (rc)
			(void)io_unlinkat(u->dfd, u->tmp, 0); /* best effort: scans skip a left temporary */
		else {
			touch_dir(c, u->path);
			c->st.files_written++;
		}
		close(u->dfd);
	}
	c->unrenamed.n = 0;
	return rc;
}

void drop_unfinished(rctx *c)
{
	for (size_t i = 0; i < c->unsynced.n; i++)
		close(VEC_AT(&c->unsynced, unsynced_file, i).fd);
	c->unsynced.n = 0;
	for (size_t i = 0; i < c->unrenamed.n; i++) {
		unrenamed_file *u = &VEC_AT(&c->unrenamed, unrenamed_file, i);
		close(u->fd);
		(void)io_unlinkat(u->dfd, u->tmp, 0); /* best effort: scans skip a left temporary */
		close(u->dfd);
	}
	c->unrenamed.n = 0;
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

/* fsyncs (and closes) the files patched in place so far, together. */
int sync_patched(rctx *c)
{
	size_t n = c->unsynced.n;
	int fds[UNSYNCED_MAX], errs[UNSYNCED_MAX], rc = 0;
	assert(n <= UNSYNCED_MAX); /* write_patch syncs a full batch first */
	for (size_t i = 0; i < n; i++)
		fds[i] = VEC_AT(&c->unsynced, unsynced_file, i).fd;
	fsync_batch(c, fds, n, errs);
	for (size_t i = 0; i < n; i++) {
		unsynced_file *u = &VEC_AT(&c->unsynced, unsynced_file, i);
		if (!rc && errs[i])
			rc = mtm_set_errno(errs[i], "%s: fsync", u->path);
		close(u->fd);
	}
	c->unsynced.n = 0;
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

/* A directory removed or replaced later in this restore: its parent holds
 * that change and is fsynced itself. */
static int dir_gone(int rc) { return rc == ENOENT || rc == ENOTDIR || rc == ELOOP; }

/* fsyncs the batch's directories together; closes them. */
static int sync_dirs(int *fds, const char **names, size_t n)
{
	int errs[UNSYNCED_MAX] = {0}, rc = 0;
	io_fsync_many(fds, n, errs);
	for (size_t i = 0; i < n; i++) {
		close(fds[i]);
		if (!rc && errs[i])
			rc = mtm_set_errno(errs[i], "%s: fsync", names[i]);
	}
	return rc;
}

int fsync_dirs(rctx *c)
{
	int fds[UNSYNCED_MAX];
	const char *names[UNSYNCED_MAX];
	size_t n = 0;
	int rc = 0;
	for (size_t i = 0; i < c->dirs.cap && !rc; i++) {
		const char *d = c->dirs.slots[i].key;
		if (!d)
			continue;
		int fd;
		rc = !strcmp(d, ".") ? io_openat(c->rootfd, ".", O_RDONLY | O_DIRECTORY, 0, &fd)
		                     : beneath_open(c->rootfd, d, O_RDONLY | O_DIRECTORY, &fd);
		if (rc) {
			rc = dir_gone(rc) ? 0 : mtm_set_errno(rc, "%s: fsync", d);
			continue;
		}
		fds[n] = fd;
		names[n++] = d;
		if (n == UNSYNCED_MAX) {
			rc = sync_dirs(fds, names, n);
			n = 0;
		}
	}
	if (n) {
		int r = sync_dirs(fds, names, n);
		rc = rc ? rc : r;
	}
	return rc;
}

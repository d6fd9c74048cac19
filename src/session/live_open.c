/*
 * live_open.c — the barrier's open of a path the logs say was written
 * (live_open): through the fd a pre-copy pass or the compare ahead kept for
 * it when nothing can have replaced the file since, else beneath the root
 * (live.c). Above both the pre-copy and the compare ahead, which open live
 * files themselves, so that live.c stays below them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/io.h"
#include "session/tctx.h"
#include "util/error.h"

/* The fd a pre-copy pass opened path with (beneath the root, never
 * through a symlink, as here), if path names that file still: no entry was
 * created, removed or renamed at the path or above it in the interval. A
 * traced process's such call is in its log, read in the barrier once every
 * call is done; any other process's is a watcher's event, queued inside
 * the call and read in the barrier too: both are in cs->ns, so in nsdirs.
 * Without a watcher (METAMORI_WATCH=off) the path is looked up again, as a
 * process nobody watches may have moved it. -1: none; *st its stat now. */
static int kept_fd(tctx *t, const char *path, struct stat *st)
{
	if (!t->ss->watch || (!t->pre.n && !t->ahead.n) || pathmap_get(&t->nsdirs, path) ||
	    pathmap_under(&t->nsdirs, path))
		return -1;
	/* (or a compare ahead's: the same file by the same reasoning) */
	int fd = precopy_take_fd(&t->pre, path);
	if (fd < 0)
		fd = ahead_take_fd(t, path);
	if (fd < 0)
		return -1;
	if (fstat(fd, st) || !S_ISREG(st->st_mode) || st->st_nlink == 0) { /* (unlinked: what is there now) */
		close(fd);
		return -1;
	}
	t->kept_fds_used++;
	return fd;
}

int live_open(tctx *t, const char *path, live_item *it, int *found)
{
	*found = 0;
	int dfd, fd;
	const char *leaf;
	struct stat st;
	/* (what the pre-copy's passes open too: io_open_plain never blocks, on
	 * a FIFO or a device either, and keeps neither) */
	if ((fd = kept_fd(t, path, &st)) < 0 &&
	    (live_parent_fd(t, path, &dfd, &leaf) || io_open_plain(dfd, leaf, O_RDONLY | O_NOFOLLOW, &fd, &st)))
		return live_stat(t, path, it, found); /* gone, a symlink, a FIFO ...: as before */
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return live_stat(t, path, it, found);
	}
	intptr_t old = (intptr_t)pathmap_get(&t->filefds, path);
	if (pathmap_put(&t->filefds, path, (void *)((intptr_t)fd + 1))) {
		close(fd);
		return mtm_set_error(ENOMEM, "checkpoint");
	}
	if (old > 0)
		close((int)(old - 1));
	it->st = st;
	it->kind = KIND_FILE;
	*found = 1;
	return 0;
}

/*
 * watch_handle.c — fanotify: the tree's directory a file handle names
 * (fan_dir), resolved once (open_by_handle_at) and cached.
 */
#include "session/watch_parts.h"

/* The tree's directory a handle names: its path relative to the root ("" is
 * the root), OUTSIDE, NULL if it is gone (a removal, seen at its parent), or
 * BEING_FREED (ask again later: gone, or, were it a real allocation failure,
 * there then). */
void handle_key(char *key, const fsid_t *fsid, const struct file_handle *fh)
{
	/* (two table lookups a byte, not a sprintf: every event's directory
	 * and every file changed outside the tree is keyed, and under other
	 * programs' writes sprintf was ~8% of a W2 checkpoint's CPU) */
	static const char hex[] = "0123456789abcdef";
	char *k = key;
	const unsigned char *parts[] = {(const unsigned char *)fsid, (const unsigned char *)&fh->handle_type, fh->f_handle};
	size_t lens[] = {sizeof *fsid, sizeof fh->handle_type, fh->handle_bytes > MAX_HANDLE_SZ ? MAX_HANDLE_SZ : fh->handle_bytes};
	for (int i = 0; i < 3; i++)
		for (size_t j = 0; j < lens[i]; j++) {
			*k++ = hex[parts[i][j] >> 4];
			*k++ = hex[parts[i][j] & 15];
		}
	*k = 0;
}

/* The mark's directory on the file system fsid names, -1 if none. */
int mark_fd(const watcher *w, const fsid_t *fsid)
{
	for (size_t i = 0; i < w->marks.n; i++)
		if (!memcmp(&VEC_AT(&w->marks, fs_mark, i).fsid, fsid, sizeof *fsid))
			return VEC_AT(&w->marks, fs_mark, i).fd;
	return -1;
}

/* open_by_handle_at(O_PATH). The kernel answers ENOMEM for an inode it is
 * freeing (iget_locked finds it being freed: ext4 takes that for an
 * allocation failure) and ESTALE once it is gone: seen here on directories
 * removed right after an event in them (other programs' builds on the file
 * system), which made a session's checkpoints scan under load. So ENOMEM is
 * asked again, briefly, and then the caller asks again later (the freeing
 * may wait for the journal). */

/* Tests: whether fh is one of METAMORI_TEST_FREEING_HANDLES, whose removed
 * directories answer ENOMEM until test_freeing_us into the barrier's
 * settle. */
static int test_freeing(const watcher *w, const struct file_handle *fh)
{
	if (!w->test_freeing || w->test_freeing_us <= 0 || fh->handle_bytes > MAX_HANDLE_SZ)
		return 0;
	if (w->settle_at.tv_sec && elapsed_ns(&w->settle_at) >= w->test_freeing_us * 1000)
		return 0;
	char want[16 + 2 * MAX_HANDLE_SZ], *k = want + snprintf(want, 16, "%d:", fh->handle_type);
	for (unsigned i = 0; i < fh->handle_bytes; i++)
		k += sprintf(k, "%02x", fh->f_handle[i]);
	size_t n = strlen(want);
	for (const char *p = w->test_freeing; (p = strstr(p, want)); p += n)
		if ((p == w->test_freeing || p[-1] == ',') && (!p[n] || p[n] == ','))
			return 1;
	return 0;
}

/* (In the barrier's settle, fan_settle waits between its looks instead:
 * hundreds of held events, each waited for here, took seconds.) */
int open_handle(const watcher *w, int mfd, const struct file_handle *fh)
{
	int fd = open_by_handle_at(mfd, (struct file_handle *)fh, O_PATH | O_CLOEXEC);
	for (int i = 0; fd < 0 && errno == ENOMEM && i < 3 && !w->settle_at.tv_sec; i++) {
		usleep(100);
		fd = open_by_handle_at(mfd, (struct file_handle *)fh, O_PATH | O_CLOEXEC);
	}
	if (fd < 0 && errno == ESTALE && test_freeing(w, fh))
		errno = ENOMEM;
	return fd;
}

/* Whether the directory FD names is the tree's or below it, when the
 * kernel cannot print its path (longer than PATH_MAX: readlink of its
 * /proc/self/fd link answers ENAMETOOLONG; a neighbour's deep directories,
 * as e2e's test_long_path makes, on the tree's file system). Its parents
 * are walked up with "..", which crosses mounts upwards, until the tree's
 * root (inside) or the top, whose ".." is itself (outside). 1 inside, 0
 * outside, -1 not known (a parent could not be opened). */
static int deep_dir_inside(const watcher *w, int fd)
{
	struct stat st;
	if (fstat(fd, &st))
		return -1;
	int cur = fd, r = -1;
	/* a path of 1 MiB (MTM_PATH_MAX) has at most this many parents */
	for (int depth = 0; depth < (1 << 19); depth++) {
		if (st.st_dev == w->root_dev && st.st_ino == w->root_ino) {
			r = 1;
			break;
		}
		int up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		struct stat ust;
		if (up < 0 || fstat(up, &ust)) {
			if (up >= 0)
				close(up);
			break;
		}
		if (cur != fd)
			close(cur);
		cur = up;
		if (ust.st_dev == st.st_dev && ust.st_ino == st.st_ino) {
			r = 0; /* the top: its ".." is itself */
			break;
		}
		st = ust;
	}
	if (cur != fd)
		close(cur);
	return r;
}

const char *fan_dir(watcher *w, const fsid_t *fsid, const struct file_handle *fh)
{
	char key[HANDLE_KEY_LEN];
	handle_key(key, fsid, fh);
	const char *got = pathmap_get(&w->dircache, key);
	if (got)
		return got;
	int mfd = mark_fd(w, fsid);
	if (mfd < 0)
		return OUTSIDE;
	int fd = open_handle(w, mfd, fh);
	w->resolved++;
	if (fd < 0) {
		if (errno == ENOMEM)
			return BEING_FREED;
		/* gone (its removal is an event at its parent); anything else
		 * (no CAP_DAC_READ_SEARCH, say) would drop events unseen */
		if (errno != ESTALE && errno != ENOENT) {
			snprintf(w->lost_why, sizeof w->lost_why,
				 "the watcher could not resolve a directory (%s)", strerror(errno));
			w->lost = w->lost_why;
		}
		return NULL;
	}
	char link[64], abs[PATH_MAX + 1];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, abs, sizeof abs - 1);
	if (n <= 0 || n >= (ssize_t)sizeof abs - 1) {
		int err = n < 0 ? errno : ENAMETOOLONG;
		/* a directory outside whose path is too long to print is
		 * outside all the same; inside, its events cannot be placed
		 * by path: the session scans (it reads such paths) */
		int inside = err == ENAMETOOLONG ? deep_dir_inside(w, fd) : -1;
		close(fd);
		if (inside == 0) {
			if (w->dircache.n >= DIRCACHE_MAX)
				dircache_clear(w);
			(void)pathmap_put(&w->dircache, key, OUTSIDE); /* (not kept: resolved again) */
			return OUTSIDE;
		}
		snprintf(w->lost_why, sizeof w->lost_why,
			 "the watcher could not resolve a directory (its path: %s)",
			 inside == 1 ? "longer than PATH_MAX, in the tree" : strerror(err));
		w->lost = w->lost_why;
		return NULL;
	}
	close(fd);
	abs[n] = 0;
	if (n > 10 && !strcmp(abs + n - 10, " (deleted)"))
		return NULL;
	const char *rel = in_tree(w, abs);
	char *val = rel ? strdup(rel) : OUTSIDE;
	if (!val) {
		w->lost = "the watcher ran out of memory";
		return NULL;
	}
	if (w->dircache.n >= DIRCACHE_MAX)
		dircache_clear(w);
	if (pathmap_put(&w->dircache, key, val)) {
		/* NULL alone would say "gone", and the event would be dropped */
		dircache_free(val);
		w->lost = "the watcher ran out of memory";
		return NULL;
	}
	return val;
}

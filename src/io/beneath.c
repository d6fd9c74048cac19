/* beneath.c — see beneath.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/io.h"
#include "util/error.h"

int path_is_safe(const char *path, size_t len)
{
	if (len == 0 || len > MTM_PATH_MAX || memchr(path, 0, len) || path[0] == '/')
		return 0;
	const char *p = path, *end = path + len;
	while (p <= end) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		const char *c_end = slash ? slash : end;
		size_t n = (size_t)(c_end - p);
		if (n == 0 || n > 255 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return 0;
		if (!slash)
			break;
		p = slash + 1;
	}
	return 1;
}

static int have_openat2 = 1;

static int open_dir_beneath(int rootfd, const char *dir, int *out)
{
	int f = io_fault(IO_OPEN);
	if (f > 0 && f != EINTR) /* an injected EINTR is retried (io.h) */
		return f;
	/* openat2 resolves at most PATH_MAX bytes at once; a longer path (the
	 * tree may hold any) is walked component by component below */
	if (have_openat2 && strlen(dir) < PATH_MAX) {
		struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
		                       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
		long fd = syscall(SYS_openat2, rootfd, dir, &how, sizeof how);
		if (fd >= 0) {
			*out = (int)fd;
			return 0;
		}
		if (errno != ENOSYS && errno != EPERM)
			return errno;
		have_openat2 = 0; /* seccomp or an old kernel: walk by hand */
	}
	/* Component by component, never following a symlink. */
	char *copy = strdup(dir);
	if (!copy)
		return ENOMEM;
	int cur = dup(rootfd);
	int rc = cur < 0 ? errno : 0;
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c && !rc; c = strtok_r(NULL, "/", &save)) {
		int next = openat(cur, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
			rc = errno;
		close(cur);
		cur = next;
	}
	free(copy);
	if (rc)
		return rc;
	*out = cur;
	return 0;
}

int beneath_open_parent(int rootfd, const char *relpath, int *dirfd_out, const char **leaf_out)
{
	const char *slash = strrchr(relpath, '/');
	if (!slash) {
		int fd = dup(rootfd);
		if (fd < 0)
			return errno;
		*dirfd_out = fd;
		*leaf_out = relpath;
		return 0;
	}
	size_t n = (size_t)(slash - relpath);
	char *dir = strndup(relpath, n);
	if (!dir)
		return ENOMEM;
	int rc = open_dir_beneath(rootfd, dir, dirfd_out);
	free(dir);
	if (!rc)
		*leaf_out = slash + 1;
	return rc;
}

int beneath_open_st(int rootfd, const char *relpath, int flags, int *fd_out, struct stat *st)
{
	struct stat own;
	if (!st)
		st = &own;
	*fd_out = -1;
	/* One openat2 of the whole path, as io_open_plain opens (never blocks;
	 * a regular file or a directory, else ENOTPLAIN): a scan opens every
	 * changed file, and the parent's open and close cost as much again */
	if (have_openat2 && strlen(relpath) < PATH_MAX) {
		int f = io_fault(IO_OPEN);
		if (f > 0 && f != EINTR) /* an injected EINTR is retried (io.h) */
			return f;
		struct open_how how = {.flags = (uint64_t)(flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC),
		                       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
		long fd;
		do
			fd = syscall(SYS_openat2, rootfd, relpath, &how, sizeof how);
		while (fd < 0 && errno == EINTR);
		if (fd >= 0) {
			int rc = fstat((int)fd, st) ? errno : !S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode) ? ENOTPLAIN : 0;
			if (rc) {
				close((int)fd);
				return rc;
			}
			*fd_out = (int)fd;
			return 0;
		}
		if (errno != ENOSYS && errno != EPERM)
			return errno;
		/* seccomp or an old kernel (open_dir_beneath finds out), or a
		 * refusal of the file itself, which the open below gives again */
	}
	int dfd;
	const char *leaf;
	int rc = beneath_open_parent(rootfd, relpath, &dfd, &leaf);
	if (rc)
		return rc;
	rc = io_open_plain(dfd, leaf, flags | O_NOFOLLOW, fd_out, st);
	close(dfd);
	return rc;
}

int beneath_open(int rootfd, const char *relpath, int flags, int *fd_out)
{
	return beneath_open_st(rootfd, relpath, flags, fd_out, NULL);
}

/* preflight.c — see preflight.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/io.h"
#include "restore/preflight.h"
#include "store/store.h"
#include "util/error.h"
#include "util/human.h"

/* 1 if a is b or under b (as paths). */
static int under(const char *a, const char *b)
{
	size_t n = strlen(b);
	return !strncmp(a, b, n) && (a[n] == 0 || a[n] == '/');
}

int scope_of(char *const *paths, size_t n, const char *path)
{
	if (!n)
		return SCOPE_IN;
	int above = 0;
	for (size_t i = 0; i < n; i++) {
		if (!*paths[i] || under(path, paths[i]))
			return SCOPE_IN;
		if (under(paths[i], path))
			above = 1;
	}
	return above ? SCOPE_ABOVE : SCOPE_OUT;
}

static int is_other(mode_t m) { return !S_ISREG(m) && !S_ISDIR(m) && !S_ISLNK(m); }

int preflight_other_at(int rootfd, const char *path, struct stat *st)
{
	int dfd;
	const char *leaf;
	if (beneath_open_parent(rootfd, path, &dfd, &leaf))
		return 0; /* its parent is not there (yet): nothing in the way */
	int found = !fstatat(dfd, leaf, st, AT_SYMLINK_NOFOLLOW) && is_other(st->st_mode);
	close(dfd);
	return found;
}

int preflight_others_in(int rootfd, const char *dir, strvec *out)
{
	int fd, rc = beneath_open(rootfd, dir, O_RDONLY | O_DIRECTORY, &fd);
	if (rc)
		return rc == ENOENT ? 0 : mtm_set_errno(rc, "%s", dir);
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return mtm_set_errno(errno, "%s", dir);
	}
	struct dirent *de;
	rc = 0;
	int lerr = 0;
	while (!rc && !(lerr = io_readdir(d, &de)) && de) {
		struct stat st;
		if (de->d_type != DT_UNKNOWN && de->d_type != DT_FIFO && de->d_type != DT_SOCK && de->d_type != DT_CHR &&
		    de->d_type != DT_BLK)
			continue;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) || !is_other(st.st_mode))
			continue;
		char *p = path_join(dir, de->d_name);
		rc = p ? strvec_push(out, p) : ENOMEM;
		free(p);
		if (rc)
			rc = mtm_set_error(rc, "%s", dir);
	}
	if (!rc && lerr)
		rc = mtm_set_errno(lerr, "%s: listing", dir);
	closedir(d);
	return rc;
}

int preflight_space(int rootfd, uint64_t need)
{
	struct statvfs v;
	if (fstatvfs(rootfd, &v))
		return 0; /* unknown: the writes will tell */
	uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
	if (need <= avail)
		return 0;
	char a[32], b[32];
	return mtm_set_error(ENOSPC, "restore: not enough free space: it writes %s and %s is free; the tree was not changed",
	                     human_size(a, sizeof a, need), human_size(b, sizeof b, avail));
}

int preflight_access(int rootfd, const pathmap *dirs, vec *out)
{
	for (size_t i = 0; i < dirs->cap; i++) {
		const char *d = dirs->slots[i].key;
		if (!d)
			continue;
		struct stat st;
		int fd, rc = !strcmp(d, ".") ? ((fd = dup(rootfd)) < 0 ? errno : 0) : beneath_open(rootfd, d, O_RDONLY | O_DIRECTORY, &fd);
		if (rc)
			continue; /* made by this restore, or not a directory yet: its parent is checked */
		int ok = !faccessat(fd, ".", W_OK | X_OK, AT_EACCESS);
		rc = ok ? 0 : fstat(fd, &st) ? errno : 0;
		close(fd);
		if (ok)
			continue;
		if (rc)
			return mtm_set_errno(rc, "%s", d);
		if (st.st_uid != geteuid())
			return mtm_set_error(EACCES, "%s: cannot restore, the tree was not changed: no permission to change this "
			                     "directory (owned by uid %u, mode %04o)", d, (unsigned)st.st_uid,
			                     (unsigned)(st.st_mode & 07777));
		opened_dir *o = vec_push(out);
		if (!o || !(o->path = strdup(d)))
			return mtm_set_error(ENOMEM, "restore");
		o->mode = st.st_mode & 07777;
	}
	return 0;
}

int preflight_frozen_at(int rootfd, const char *path)
{
	struct statx sx;
	int flags = AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC;
	if (!strcmp(path, ".") ? statx(rootfd, "", flags | AT_EMPTY_PATH, 0, &sx) : statx(rootfd, path, flags, 0, &sx))
		return 0; /* gone, or no statx: the restore's own calls will tell */
	const char *what = (sx.stx_attributes & STATX_ATTR_IMMUTABLE) ? "immutable (chattr +i)"
	                   : (sx.stx_attributes & STATX_ATTR_APPEND) ? "append-only (chattr +a)" : NULL;
	if (!what)
		return 0;
	return mtm_set_error(EPERM, "%s: cannot restore, the tree was not changed: it is %s", path, what);
}

static int chmod_dir(int rootfd, const char *path, mode_t mode)
{
	int fd, rc = !strcmp(path, ".") ? ((fd = dup(rootfd)) < 0 ? errno : 0) : beneath_open(rootfd, path, O_RDONLY | O_DIRECTORY, &fd);
	if (rc)
		return rc;
	rc = fchmod(fd, mode) ? errno : 0;
	close(fd);
	return rc;
}

int preflight_open_dirs(int rootfd, const vec *dirs)
{
	for (size_t i = 0; i < dirs->n; i++) {
		const opened_dir *o = &VEC_AT(dirs, opened_dir, i);
		int rc = chmod_dir(rootfd, o->path, o->mode | S_IRWXU);
		if (rc)
			return mtm_set_errno(rc, "%s: opening for the restore", o->path);
	}
	return 0;
}

void preflight_close_dirs(int rootfd, vec *dirs)
{
	for (size_t i = dirs->n; i-- > 0;) {
		opened_dir *o = &VEC_AT(dirs, opened_dir, i);
		chmod_dir(rootfd, o->path, o->mode);
		free(o->path);
	}
	vec_free(dirs);
}

/* 1 if name is a restore temporary of a process that is gone. */
static int stale_temp(const char *name)
{
	size_t n = strlen(MTM_TMP_PREFIX);
	if (strncmp(name, MTM_TMP_PREFIX, n))
		return 0;
	char *end;
	long pid = strtol(name + n, &end, 10);
	if (end == name + n || *end != '.' || pid <= 0)
		return 0;
	return pid != (long)getpid() && kill((pid_t)pid, 0) && errno == ESRCH;
}

static int clean_dir(int dfd, const char *rel, uint64_t *count, int depth)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return 0;
	}
	struct dirent *de;
	int rc = 0;
	/* (a listing that fails ends the cleaning: it is tidying, and the
	 * temporary files it would have removed are never taken for the tree's) */
	while (!rc && !io_readdir(d, &de) && de) {
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, "..") || (!depth && !strcmp(name, ".metamori")))
			continue;
		if (stale_temp(name)) {
			struct stat st;
			int isdir = !fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) && S_ISDIR(st.st_mode);
			int err = isdir ? 0 : io_unlinkat(dirfd(d), name, 0);
			if (!err && !isdir)
				(*count)++;
			else if (err && err != ENOENT)
				rc = mtm_set_errno(err, "%s%s%s: removing a restore's temporary file", rel, *rel ? "/" : "", name);
			continue;
		}
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		int sub;
		if (io_openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, &sub))
			continue; /* not a directory, or not ours to read */
		char *p = path_join(rel, name);
		rc = p ? clean_dir(sub, p, count, depth + 1) : (close(sub), mtm_set_error(ENOMEM, "restore"));
		free(p);
	}
	closedir(d);
	return rc;
}

int preflight_clean_temps(int rootfd, uint64_t *n)
{
	*n = 0;
	/* a new open of the root, not a dup: readdir must not move rootfd's offset */
	int fd, rc = io_openat(rootfd, ".", O_RDONLY | O_DIRECTORY, 0, &fd);
	if (rc)
		return mtm_set_errno(rc, "restore");
	return clean_dir(fd, "", n, 0);
}

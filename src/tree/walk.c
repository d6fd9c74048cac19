/* walk.c — the live tree, as stat data, in path order. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/beneath.h"
#include "tree/scan.h"
#include "store/store.h"
#include "util/error.h"

int64_t st_mtime_ns(const struct stat *st) { return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec; }
int64_t st_ctime_ns(const struct stat *st) { return (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec; }

static int cmp_item(const void *a, const void *b)
{
	return strcmp(((const live_item *)a)->path, ((const live_item *)b)->path);
}

static int walk_dir(mtm_store *s, const ignore_set *ign, int dfd, const char *rel, vec *out)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		int e = errno;
		close(dfd);
		return mtm_set_errno(e, "%s/%s", s->root, rel);
	}
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		if (!*rel && !strcmp(name, ".metamori"))
			continue; /* the store is never part of the tree */
		if (!strncmp(name, MTM_TMP_PREFIX, strlen(MTM_TMP_PREFIX)))
			continue; /* a restore's temporary file */
		struct stat st;
		if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW)) {
			if (errno == ENOENT)
				continue; /* removed while we looked */
			rc = mtm_set_errno(errno, "%s/%s%s%s", s->root, rel, *rel ? "/" : "", name);
			break;
		}
		int kind = S_ISREG(st.st_mode) ? KIND_FILE : S_ISDIR(st.st_mode) ? KIND_DIR
		         : S_ISLNK(st.st_mode) ? KIND_SYMLINK : KIND_NONE;
		if (kind == KIND_NONE)
			continue; /* sockets, FIFOs, devices are not recorded */
		char *path = path_join(rel, name);
		if (ignore_match(ign, path, kind == KIND_DIR)) {
			free(path);
			continue;
		}
		live_item *it = vec_push(out);
		if (!it) {
			free(path);
			rc = mtm_set_error(ENOMEM, "walk");
			break;
		}
		it->path = path;
		it->st = st;
		it->kind = kind;
		if (kind == KIND_SYMLINK) {
			char buf[4096];
			ssize_t n = readlinkat(dirfd(d), name, buf, sizeof buf - 1);
			if (n < 0) {
				rc = mtm_set_errno(errno, "%s/%s", s->root, path);
				break;
			}
			it->target = strndup(buf, (size_t)n);
		}
		if (kind == KIND_DIR) {
			int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				rc = mtm_set_errno(errno, "%s/%s", s->root, path);
				break;
			}
			char *sub_rel = xstrdup(path); /* out may move when it grows */
			rc = walk_dir(s, ign, sub, sub_rel, out);
			free(sub_rel);
			if (rc)
				break;
		}
	}
	closedir(d);
	return rc;
}

int walk_tree(mtm_store *s, const ignore_set *ign, vec *out)
{
	*out = (vec)VEC_INIT(live_item);
	int dfd = openat(s->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return mtm_set_errno(errno, "%s", s->root);
	int rc = walk_dir(s, ign, dfd, "", out);
	if (rc) {
		live_free(out);
		return rc;
	}
	if (out->n) /* an empty tree: no array at all */
		qsort(out->v, out->n, sizeof(live_item), cmp_item);
	return 0;
}

int walk_subtree(mtm_store *s, const ignore_set *ign, const char *rel, vec *out)
{
	int dfd;
	int rc = beneath_open(s->rootfd, rel, O_RDONLY | O_DIRECTORY, &dfd);
	if (rc)
		return rc == ENOENT || rc == ENOTDIR || rc == ELOOP ? 0 : mtm_set_errno(rc, "%s/%s", s->root, rel);
	return walk_dir(s, ign, dfd, rel, out);
}

void capture_free(capture *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	vec_free(&c->runs);
	free(c->blk);
	free(c->first);
	free(c->hashed);
	free(c);
}

void live_free(vec *v)
{
	for (size_t i = 0; i < v->n; i++) {
		free(VEC_AT(v, live_item, i).path);
		free(VEC_AT(v, live_item, i).target);
		capture_free(VEC_AT(v, live_item, i).cap);
	}
	vec_free(v);
}

/* walk.c — the live tree, as stat data, in path order. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/io.h"
#include "io/xattr.h"
#include "tree/scan.h"
#include "store/store.h"
#include "util/error.h"

/* Nanoseconds since the epoch, for the stat cache and the racy rule: past
 * 2262 they wrap (unsigned arithmetic, no overflow); the cache only
 * compares them for equality, and a wrapped value makes a file at most
 * look racy, which costs a read. Entries keep seconds and nanoseconds. */
static int64_t ts_ns(struct timespec t)
{
	return (int64_t)((uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec);
}
int64_t st_mtime_ns(const struct stat *st) { return ts_ns(st->st_mtim); }
int64_t st_ctime_ns(const struct stat *st) { return ts_ns(st->st_ctim); }

int kind_of_mode(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return KIND_FILE;
	case S_IFDIR: return KIND_DIR;
	case S_IFLNK: return KIND_SYMLINK;
	case S_IFIFO: return KIND_FIFO;
	case S_IFSOCK: return KIND_SOCKET;
	case S_IFCHR: return KIND_CHR;
	case S_IFBLK: return KIND_BLK;
	}
	return KIND_NONE;
}

static int cmp_inode(const void *a, const void *b)
{
	const live_item *x = *(live_item *const *)a, *y = *(live_item *const *)b;
	if (x->st.st_dev != y->st.st_dev)
		return x->st.st_dev < y->st.st_dev ? -1 : 1;
	if (x->st.st_ino != y->st.st_ino)
		return x->st.st_ino < y->st.st_ino ? -1 : 1;
	return x < y ? -1 : x > y; /* path order (live is sorted) */
}

int live_group_links(vec *live, const ignore_set *ign)
{
	size_t n = 0;
	for (size_t i = 0; i < live->n; i++) {
		live_item *it = &VEC_AT(live, live_item, i);
		n += it->kind == KIND_FILE && it->st.st_nlink > 1;
	}
	if (n < 2)
		return 0;
	live_item **v = malloc(n * sizeof *v);
	if (!v)
		return mtm_set_error(ENOMEM, "walk");
	n = 0;
	for (size_t i = 0; i < live->n; i++) {
		live_item *it = &VEC_AT(live, live_item, i);
		if (it->kind == KIND_FILE && it->st.st_nlink > 1 && !(ign && ignore_path(ign, it->path, 0)))
			v[n++] = it;
	}
	qsort(v, n, sizeof *v, cmp_inode);
	int rc = 0;
	for (size_t i = 0; i < n && !rc;) {
		size_t j = i + 1;
		for (; j < n && v[j]->st.st_dev == v[i]->st.st_dev && v[j]->st.st_ino == v[i]->st.st_ino; j++) {
			assert(strcmp(v[i]->path, v[j]->path) < 0); /* the first name is the group's file */
			v[j]->kind = KIND_LINK;
			if (!(v[j]->target = strdup(v[i]->path)))
				rc = mtm_set_error(ENOMEM, "walk");
		}
		i = j;
	}
	free(v);
	return rc;
}

void live_entry(const live_item *it, entry *e)
{
	memset(e, 0, sizeof *e);
	e->path = it->path;
	e->kind = it->kind;
	if (it->kind == KIND_LINK) { /* all of it but the name is the group's file's */
		e->target = it->target;
		return;
	}
	e->mode = it->kind == KIND_SYMLINK ? 0777 : (uint32_t)(it->st.st_mode & 07777);
	e->uid = it->st.st_uid;
	e->gid = it->st.st_gid;
	e->size = it->kind == KIND_FILE ? (int64_t)it->st.st_size : 0;
	e->mtime_s = (int64_t)it->st.st_mtim.tv_sec;
	e->mtime_nsec = (int32_t)it->st.st_mtim.tv_nsec;
	e->rdev = it->kind == KIND_CHR || it->kind == KIND_BLK ? (uint64_t)it->st.st_rdev : 0;
	e->target = it->target;
	e->xattrs = it->xattrs;
	e->xattrs_len = it->xattrs_len;
}

int entry_meta_changed(const entry *a, const entry *b)
{
	if (a->mode != b->mode || a->uid != b->uid || a->gid != b->gid || a->rdev != b->rdev ||
	    a->xattrs_len != b->xattrs_len || (a->xattrs_len && memcmp(a->xattrs, b->xattrs, a->xattrs_len)))
		return 1;
	return a->kind != KIND_DIR && (a->mtime_s != b->mtime_s || a->mtime_nsec != b->mtime_nsec);
}

struct timespec entry_mtime(const entry *e)
{
	return (struct timespec){.tv_sec = (time_t)e->mtime_s, .tv_nsec = e->mtime_nsec};
}

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
		return mtm_set_errno(e, "%s", *rel ? rel : s->root);
	}
	int rc = 0, lerr;
	struct dirent *de;
	/* a listing that fails is an error: a directory that looked emptier than
	 * it is would put deletions in the checkpoint */
	while (!(lerr = io_readdir(d, &de)) && de) {
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		if (!strcmp(name, ".metamori") && (!*rel || de->d_type == DT_DIR || de->d_type == DT_UNKNOWN)) {
			/* the store is never part of the tree, nor is a store nested in
			 * it (its own tree's checkpoints would be rolled back with ours) */
			struct stat nst;
			if (!*rel || (!fstatat(dirfd(d), name, &nst, AT_SYMLINK_NOFOLLOW) && S_ISDIR(nst.st_mode)))
				continue;
		}
		if (!strncmp(name, MTM_TMP_PREFIX, strlen(MTM_TMP_PREFIX)))
			continue; /* a restore's temporary file */
		struct stat st;
		if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW)) {
			if (errno == ENOENT)
				continue; /* removed while we looked */
			/* EACCES: the directory is listed but not searchable */
			rc = errno == EACCES ? mtm_set_errno(errno, "%s", *rel ? rel : s->root)
			                     : mtm_set_errno(errno, "%s%s%s", rel, *rel ? "/" : "", name);
			break;
		}
		int kind = kind_of_mode(st.st_mode);
		if (kind == KIND_NONE)
			continue; /* (no other type exists on Linux) */
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
				rc = mtm_set_errno(errno, "%s", path);
				break;
			}
			it->target = strndup(buf, (size_t)n);
		}
		if (kind != KIND_FILE) { /* (a file's are read with its content) */
			int e = xattr_read_at(dirfd(d), name, &it->xattrs, &it->xattrs_len);
			if (e && e != ENOENT) {
				rc = mtm_set_errno(e, "%s: reading extended attributes", path);
				break;
			}
			it->xattrs_read = 1;
		}
		if (kind == KIND_DIR) {
			int sub, e = io_openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, &sub);
			if (e) {
				rc = mtm_set_errno(e, "%s", path);
				break;
			}
			char *sub_rel = xstrdup(path); /* out may move when it grows */
			rc = walk_dir(s, ign, sub, sub_rel, out);
			free(sub_rel);
			if (rc)
				break;
		}
	}
	if (!rc && lerr)
		rc = mtm_set_errno(lerr, "%s: listing", *rel ? rel : s->root);
	closedir(d);
	return rc;
}

int walk_tree(mtm_store *s, const ignore_set *ign, vec *out)
{
	*out = (vec)VEC_INIT(live_item);
	int dfd, e = io_openat(s->rootfd, ".", O_RDONLY | O_DIRECTORY, 0, &dfd);
	if (e)
		return mtm_set_errno(e, "%s", s->root);
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
		return rc == ENOENT || rc == ENOTDIR || rc == ELOOP ? 0 : mtm_set_errno(rc, "%s", rel);
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
		free(VEC_AT(v, live_item, i).xattrs);
		capture_free(VEC_AT(v, live_item, i).cap);
	}
	vec_free(v);
}

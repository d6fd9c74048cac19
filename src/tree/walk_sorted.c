/*
 * walk_sorted.c — the live tree handed out one item at a time, in path
 * order (strcmp of the whole relative path), without holding the tree.
 *
 * walk_tree collects every item and sorts them all: at 1,000,000 files that
 * is ~500 MiB and a sort of structs. Here each directory is read, stat'ed
 * and sorted on its own, and its items are handed out as they come. The one
 * subtlety is where a subdirectory's contents fall: "a/x" sorts after "a-b"
 * ('-' < '/') but before "a0", so a directory's subtree is not next to the
 * directory itself. Each directory child therefore gets two keys: its name
 * (the item itself) and its name followed by '/' (its subtree, walked when
 * that key comes up); sorting the keys of one directory gives exactly the
 * global order, since every path below a directory shares its prefix.
 * Memory: the keys of the directories on the current path only.
 */
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
#include "tree/stat_pool.h"
#include "util/error.h"

/* One key of a directory: an item (sub == 0) or a directory's subtree. */
typedef struct {
	char *key;       /* the name, or the name and '/' */
	live_item *item; /* sub == 0: the item, owned until handed out; sub == 1: NULL */
	int sub;
} dkey;

static int cmp_key(const void *a, const void *b)
{
	return strcmp(((const dkey *)a)->key, ((const dkey *)b)->key);
}

void live_item_free(live_item *it)
{
	if (!it)
		return;
	free(it->path);
	free(it->target);
	free(it->xattrs);
	capture_free(it->cap);
	free(it);
}

typedef struct {
	mtm_store *s;
	const ignore_set *ign;
	walk_fn fn;
	void *arg;
	stat_pool *pool; /* the names' lstats on a second thread (stat_pool.h) */
} walker;

/* The item for name (with its lstat) in directory dfd (rel its path), or
 * NULL when it is not part of the tree. */
static int read_item(walker *w, int dfd, const char *rel, const dname *dn, live_item **out)
{
	*out = NULL;
	const char *name = dn->name;
	if (!strcmp(name, ".metamori") && (!*rel || (!dn->err && S_ISDIR(dn->st.st_mode))))
		return 0; /* the store is never part of the tree, nor is a store nested in it */
	if (!strncmp(name, MTM_TMP_PREFIX, strlen(MTM_TMP_PREFIX)))
		return 0; /* a restore's temporary file */
	if (dn->err)
		return dn->err == ENOENT ? 0 /* removed while we looked */
		                         : mtm_set_errno(dn->err, "%s/%s%s%s", w->s->root, rel, *rel ? "/" : "", name);
	const struct stat st = dn->st;
	int kind = kind_of_mode(st.st_mode);
	if (kind == KIND_NONE)
		return 0;
	char *path = path_join(rel, name);
	if (ignore_match(w->ign, path, kind == KIND_DIR)) {
		free(path);
		return 0;
	}
	live_item *it = calloc(1, sizeof *it);
	if (!it) {
		free(path);
		return mtm_set_error(ENOMEM, "walk");
	}
	it->path = path;
	it->st = st;
	it->kind = kind;
	if (kind == KIND_SYMLINK) {
		char buf[4096];
		ssize_t n = readlinkat(dfd, name, buf, sizeof buf - 1);
		if (n < 0 || !(it->target = strndup(buf, n < 0 ? 0 : (size_t)n))) {
			int e = n < 0 ? errno : ENOMEM;
			live_item_free(it);
			return mtm_set_errno(e, "%s/%s", w->s->root, path);
		}
	}
	if (kind != KIND_FILE) { /* (a file's are read with its content) */
		int e = xattr_read_at(dfd, name, &it->xattrs, &it->xattrs_len);
		if (e && e != ENOENT) {
			live_item_free(it);
			return mtm_set_errno(e, "%s/%s: reading extended attributes", w->s->root, path);
		}
		it->xattrs_read = 1;
	}
	*out = it;
	return 0;
}

static void names_free(dname *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

/* The names of directory d, but "." and "..". */
static int list_names(walker *w, DIR *d, const char *rel, dname **out, size_t *nout)
{
	dname *v = NULL;
	size_t n = 0, cap = 0;
	int lerr;
	struct dirent *de;
	/* a listing that fails is an error: a directory that looked emptier than
	 * it is would show its files as removed */
	while (!(lerr = io_readdir(d, &de)) && de) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			dname *nv = realloc(v, nc * sizeof *nv);
			if (!nv) {
				lerr = ENOMEM;
				break;
			}
			v = nv;
			cap = nc;
		}
		if (!(v[n].name = strdup(de->d_name))) {
			lerr = ENOMEM;
			break;
		}
		v[n++].d_type = de->d_type;
	}
	*out = v;
	*nout = n;
	if (lerr == ENOMEM)
		return mtm_set_error(ENOMEM, "walk");
	return lerr ? mtm_set_errno(lerr, "%s%s%s: listing", w->s->root, *rel ? "/" : "", rel) : 0;
}

/* Reads directory dfd (taken) into keys, sorted. */
static int read_dir(walker *w, int dfd, const char *rel, dkey **out, size_t *nout, DIR **dout)
{
	*out = NULL;
	*nout = 0;
	DIR *d = fdopendir(dfd);
	if (!d) {
		int e = errno;
		close(dfd);
		return mtm_set_errno(e, "%s/%s", w->s->root, rel);
	}
	*dout = d;
	dname *names;
	size_t nn;
	int rc = list_names(w, d, rel, &names, &nn);
	if (!rc)
		stat_pool_run(&w->pool, dirfd(d), names, nn);
	dkey *k = NULL;
	size_t n = 0;
	if (!rc && nn && !(k = malloc(2 * nn * sizeof *k)))
		rc = mtm_set_error(ENOMEM, "walk");
	for (size_t i = 0; i < nn && !rc; i++) {
		live_item *it;
		if ((rc = read_item(w, dirfd(d), rel, &names[i], &it)) || !it)
			continue;
		/* the name is the item's key; a directory's subtree is at name/ */
		size_t len = strlen(names[i].name);
		k[n++] = (dkey){names[i].name, it, 0};
		names[i].name = NULL;
		if (it->kind == KIND_DIR) {
			char *sub = malloc(len + 2);
			if (!sub) {
				rc = mtm_set_error(ENOMEM, "walk");
				break;
			}
			memcpy(sub, k[n - 1].key, len);
			memcpy(sub + len, "/", 2);
			k[n++] = (dkey){sub, NULL, 1};
		}
	}
	names_free(names, nn);
	if (!rc && n > 1)
		qsort(k, n, sizeof *k, cmp_key);
	*out = k;
	*nout = n;
	return rc;
}

static void keys_free(dkey *k, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(k[i].key);
		if (!k[i].sub)
			live_item_free(k[i].item);
	}
	free(k);
}

/* dfd is taken. */
static int walk_dir_sorted(walker *w, int dfd, const char *rel)
{
	dkey *k;
	size_t n;
	DIR *d = NULL;
	int rc = read_dir(w, dfd, rel, &k, &n, &d);
	for (size_t i = 0; i < n && !rc; i++) {
		if (!k[i].sub) {
			live_item *it = k[i].item;
			k[i].item = NULL; /* the callback's now */
			rc = w->fn(w->arg, it);
			continue;
		}
		/* the subtree of directory k[i].key without its '/' */
		size_t len = strlen(k[i].key);
		k[i].key[len - 1] = 0;
		char *sub_rel = path_join(rel, k[i].key);
		int sub;
		int e = io_openat(dirfd(d), k[i].key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, &sub);
		if (e == ENOENT || e == ENOTDIR || e == ELOOP) {
			free(sub_rel); /* gone or replaced since it was read: as if gone */
			continue;
		}
		if (e) {
			rc = mtm_set_errno(e, "%s/%s", w->s->root, sub_rel);
			free(sub_rel);
			break;
		}
		rc = walk_dir_sorted(w, sub, sub_rel);
		free(sub_rel);
	}
	if (d)
		closedir(d);
	keys_free(k, n);
	return rc;
}

int walk_sorted(mtm_store *s, const ignore_set *ign, walk_fn fn, void *arg)
{
	int dfd, e = io_openat(s->rootfd, ".", O_RDONLY | O_DIRECTORY, 0, &dfd);
	if (e)
		return mtm_set_errno(e, "%s", s->root);
	walker w = {s, ign, fn, arg, NULL};
	int rc = walk_dir_sorted(&w, dfd, "");
	stat_pool_free(w.pool);
	return rc;
}

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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/io.h"
#include "io/xattr.h"
#include "tree/scan.h"
#include "tree/stat_pool.h"
#include "util/error.h"

/* One key of a directory: an item (sub == 0) or a directory's subtree
 * (sub == 1): its name followed by '/' (the '/' implied, not stored). */
typedef struct {
	uint64_t pre;     /* the key's first 8 bytes (key_prefix) */
	const char *name; /* in the directory's names buffer */
	live_item *item;  /* sub == 0: the item, owned until handed out */
	size_t job;       /* sub == 1: its subdirectory's job */
	int sub;
} dkey;

/* strcmp of the keys with their '/': names hold no '/', so past the first
 * byte where one name ends or the names differ, that byte decides. */
static int cmp_key(const void *x, const void *y)
{
	const dkey *a = x, *b = y;
	const unsigned char *p = (const unsigned char *)a->name, *q = (const unsigned char *)b->name;
	while (*p && *p == *q)
		p++, q++;
	int ca = *p ? *p : a->sub ? '/' : 0, cb = *q ? *q : b->sub ? '/' : 0;
	return ca - cb;
}

/* The first 8 bytes of k's key (its name, then '/' for a subtree), as one
 * big-endian number, 0 past the key's end: two keys whose numbers differ
 * compare as the numbers do (a key that ends first has 0 where the other
 * has a byte, as strcmp has its NUL); equal numbers are keys of 8 bytes or
 * more that share them (a directory's names are distinct). */
static uint64_t key_prefix(const dkey *k)
{
	const unsigned char *p = (const unsigned char *)k->name;
	uint64_t v = 0;
	int i = 0;
	for (; i < 8 && p[i]; i++)
		v |= (uint64_t)p[i] << (56 - 8 * i);
	if (i < 8 && k->sub)
		v |= (uint64_t)'/' << (56 - 8 * i);
	return v;
}

static inline int key_before(const dkey *a, const dkey *b)
{
	return a->pre != b->pre ? a->pre < b->pre : cmp_key(a, b) < 0;
}

/* Sorts k[0..n) by key, tmp holding n more: a merge sort with the prefix
 * compared inline (qsort's calls of cmp_key were ~10% of a W2 walk's user
 * instructions: 200 names of 11 bytes a directory). */
static void sort_keys(dkey *k, dkey *tmp, size_t n)
{
	enum { RUN = 8 };
	for (size_t lo = 0; lo < n; lo += RUN) { /* insertion sort of each run */
		size_t hi = lo + RUN < n ? lo + RUN : n;
		for (size_t i = lo + 1; i < hi; i++) {
			dkey x = k[i];
			size_t j = i;
			for (; j > lo && key_before(&x, &k[j - 1]); j--)
				k[j] = k[j - 1];
			k[j] = x;
		}
	}
	dkey *from = k, *to = tmp;
	for (size_t w = RUN; w < n; w *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * w) {
			size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
			size_t a = lo, b = mid, o = lo;
			while (a < mid && b < hi)
				to[o++] = key_before(&from[b], &from[a]) ? from[b++] : from[a++];
			while (a < mid)
				to[o++] = from[a++];
			while (b < hi)
				to[o++] = from[b++];
		}
		dkey *t = from;
		from = to;
		to = t;
	}
	if (from != k)
		memcpy(k, from, n * sizeof *k);
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
	walk_unlisted_fn unlisted; /* NULL: a directory that cannot be read stops the walk */
	void *arg;
	stat_pool *pool; /* directories read ahead on a second thread (stat_pool.h) */
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
	if (dn->err == ENOENT)
		return 0; /* removed while we looked */
	if (dn->err == EACCES) /* (an lstat's: the directory listed is not searchable) */
		return mtm_set_errno(dn->err, "%s", *rel ? rel : w->s->root);
	if (dn->err)
		return mtm_set_errno(dn->err, "%s%s%s", rel, *rel ? "/" : "", name);
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
			return mtm_set_errno(e, "%s", path);
		}
	}
	if (kind != KIND_FILE) { /* (a file's are read with its content) */
		int e = xattr_read_at(dfd, name, &it->xattrs, &it->xattrs_len);
		if (e && e != ENOENT) {
			live_item_free(it);
			return mtm_set_errno(e, "%s: reading extended attributes", path);
		}
		it->xattrs_read = 1;
	}
	*out = it;
	return 0;
}

/* Reads directory j (its names and their lstats, with the pool) into
 * keys, sorted; rel is its path. The names stay in j's buffer. *own: the
 * error is the directory's own (its listing, or an entry it holds that
 * cannot be looked at: a directory readable but not searchable), not a
 * lack of memory. */
static int read_dir(walker *w, dirjob *j, const char *rel, dkey **out, size_t *nout, int *own)
{
	*out = NULL;
	*nout = 0;
	*own = 0;
	if (j->list_err) {
		*own = j->list_err != ENOMEM;
		return j->list_err == ENOMEM ? mtm_set_error(ENOMEM, "walk")
		                             : mtm_set_errno(j->list_err, "%s: listing", *rel ? rel : w->s->root);
	}
	dkey *k = NULL;
	size_t n = 0, nn = j->n;
	int rc = 0;
	if (nn && !(k = malloc(2 * nn * sizeof *k)))
		return mtm_set_error(ENOMEM, "walk");
	for (size_t i = 0; i < nn && !rc; i++) {
		live_item *it;
		if ((rc = read_item(w, dirfd(j->d), rel, &j->v[i], &it)) || !it) {
			*own = rc && rc != ENOMEM;
			continue;
		}
		/* the name is the item's key; a directory's subtree is at name/ */
		k[n] = (dkey){0, j->v[i].name, it, 0, 0};
		k[n].pre = key_prefix(&k[n]);
		n++;
		if (it->kind == KIND_DIR) {
			k[n] = (dkey){0, j->v[i].name, NULL, 0, 1};
			k[n].pre = key_prefix(&k[n]);
			n++;
		}
	}
	/* the lstats are in the items now: only the names are kept */
	free(j->v);
	j->v = NULL;
	j->n = 0;
	if (!rc && n > 1) {
		dkey *tmp = malloc(n * sizeof *tmp); /* (as qsort took) */
		if (!tmp)
			rc = mtm_set_error(ENOMEM, "walk");
		else
			sort_keys(k, tmp, n);
		free(tmp);
	}
	*out = k;
	*nout = n;
	return rc;
}

static void keys_free(dkey *k, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!k[i].sub)
			live_item_free(k[i].item);
	free(k);
}

/* Reads and walks directory j (freed here), whose path is rel. */
static int walk_dir_sorted(walker *w, dirjob *j, const char *rel)
{
	stat_pool_take(w->pool, j);
	if (j->open_err) {
		int e = j->open_err;
		dirjob_free(j);
		if (*rel && (e == ENOENT || e == ENOTDIR || e == ELOOP))
			return 0; /* gone or replaced since it was read: as if gone */
		if (*rel && w->unlisted && e != ENOMEM)
			return w->unlisted(w->arg, rel, e);
		return mtm_set_errno(e, "%s", *rel ? rel : w->s->root);
	}
	dkey *k;
	size_t n;
	int own;
	int rc = read_dir(w, j, rel, &k, &n, &own);
	if (rc && own && *rel && w->unlisted) { /* (none of its items handed out yet) */
		keys_free(k, n);
		dirjob_free(j);
		return w->unlisted(w->arg, rel, rc);
	}
	/* the subdirectories, in the order they are walked, offered ahead */
	dirjob *jobs = NULL;
	size_t nj = 0;
	for (size_t i = 0; i < n; i++)
		nj += k[i].sub;
	if (!rc && nj && !(jobs = calloc(nj, sizeof *jobs)))
		rc = mtm_set_error(ENOMEM, "walk");
	for (size_t i = 0, m = 0; !rc && i < n; i++)
		if (k[i].sub) {
			jobs[m] = (dirjob){.pfd = dirfd(j->d), .name = k[i].name};
			k[i].job = m++;
		}
	int pushed = 0;
	if (!rc && !(rc = stat_pool_push(w->pool, jobs, nj) ? mtm_set_error(ENOMEM, "walk") : 0))
		pushed = 1;
	for (size_t i = 0; i < n && !rc; i++) {
		if (!k[i].sub) {
			live_item *it = k[i].item;
			k[i].item = NULL; /* the callback's now */
			rc = w->fn(w->arg, it);
			continue;
		}
		char *sub_rel = path_join(rel, k[i].name);
		rc = walk_dir_sorted(w, &jobs[k[i].job], sub_rel);
		free(sub_rel);
	}
	if (pushed)
		stat_pool_pop(w->pool);
	for (size_t i = 0; i < nj; i++)
		dirjob_free(&jobs[i]); /* (the walk stopped: read ahead, never taken) */
	free(jobs);
	keys_free(k, n);
	dirjob_free(j);
	return rc;
}

int walk_sorted(mtm_store *s, const ignore_set *ign, walk_fn fn, walk_unlisted_fn unlisted, void *arg)
{
	walker w = {s, ign, fn, unlisted, arg, stat_pool_new()};
	dirjob root = {.pfd = s->rootfd, .name = "."};
	int rc = walk_dir_sorted(&w, &root, "");
	stat_pool_free(w.pool);
	return rc;
}

/* test_walk.c — the sorted walk reads directories ahead on a second thread
 * (tree/stat_pool.c) and hands out exactly what it hands out on one thread
 * (METAMORI_SCAN_THREADS=1) and what walk_tree finds (the whole tree
 * collected, then sorted), in the same order, with the same stat data; and a
 * scan checkpoint's merged streams (scan_changed: the live items that may
 * differ, the parent's entries at their paths and the gone ones) are the
 * same either way. The tree has what the order and the merge must get
 * right: names that sort around '/' ("a", "a-b", "a.b", "a/x", "a0"), odd
 * bytes (spaces, a newline, UTF-8, a leading '-' or '.'), hard links,
 * symlinks (one to a directory, not followed), a FIFO, ignored directories
 * and files, a nested store, empty and deep directories, directories wide
 * enough to be shared (32 names and more) and many of them; then renames,
 * deletes, new files, new links, a directory renamed and one removed. Each
 * walk is repeated: the threads interleave differently every time. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "metamori.h"
#include "tree/scan.h"
#include "store/store.h"

static char dir[] = "/tmp/mtm-walk-XXXXXX";
static mtm_store *S;
static ignore_set IGN;

#define REPEAT 25

static void put(const char *rel, const char *data)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	for (char *q = p + strlen(dir) + 1; (q = strchr(q, '/')); q++) {
		*q = 0;
		mkdir(p, 0755);
		*q = '/';
	}
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(data, f);
	assert_int_equal(fclose(f), 0);
}

static void at(char *out, const char *rel)
{
	snprintf(out, 4096, "%s/%s", dir, rel);
}

static void mkd(const char *rel)
{
	char p[4096];
	at(p, rel);
	assert_int_equal(mkdir(p, 0755), 0);
}

static void lnk(const char *from, const char *to)
{
	char a[4096], b[4096];
	at(a, from);
	at(b, to);
	assert_int_equal(link(a, b), 0);
}

static void mv(const char *from, const char *to)
{
	char a[4096], b[4096];
	at(a, from);
	at(b, to);
	assert_int_equal(rename(a, b), 0);
}

static void rm(const char *rel)
{
	char p[4096];
	at(p, rel);
	assert_int_equal(unlink(p), 0);
}

/* What the walk hands out, one line per item: the path, kind, stat fields,
 * target and xattrs' length. */
static int collect(void *arg, live_item *it)
{
	vec *v = arg;
	char line[8192];
	snprintf(line, sizeof line, "%s|%d|%llu|%llu|%llu|%o|%lld|%lld.%09ld|%s|%zu|%d", it->path, it->kind,
	         (unsigned long long)it->st.st_dev, (unsigned long long)it->st.st_ino,
	         (unsigned long long)it->st.st_nlink, (unsigned)it->st.st_mode, (long long)it->st.st_size,
	         (long long)it->st.st_mtim.tv_sec, it->st.st_mtim.tv_nsec, it->target ? it->target : "-",
	         it->xattrs_len, it->xattrs_read);
	char **slot = vec_push(v);
	assert_non_null(slot);
	*slot = strdup(line);
	live_item_free(it);
	return 0;
}

static void lines_free(vec *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(VEC_AT(v, char *, i));
	vec_free(v);
}

static void same_lines(const vec *a, const vec *b, const char *what)
{
	size_t n = a->n < b->n ? a->n : b->n;
	for (size_t i = 0; i < n; i++)
		if (strcmp(VEC_AT(a, char *, i), VEC_AT(b, char *, i))) {
			print_error("%s: item %zu: '%s' against '%s'\n", what, i, VEC_AT(a, char *, i), VEC_AT(b, char *, i));
			fail();
		}
	if (a->n != b->n) {
		print_error("%s: %zu items against %zu\n", what, a->n, b->n);
		fail();
	}
}

static void walk_lines(vec *out)
{
	*out = (vec)VEC_INIT(char *);
	assert_int_equal(walk_sorted(S, &IGN, collect, NULL, out), 0);
}

/* The three walks agree, every time. */
static void check_walks(void)
{
	vec ref = VEC_INIT(char *), all;
	assert_int_equal(walk_tree(S, &IGN, &all), 0);
	for (size_t i = 0; i < all.n; i++) {
		live_item *it = malloc(sizeof *it);
		assert_non_null(it);
		*it = VEC_AT(&all, live_item, i);
		collect(&ref, it);
	}
	vec_free(&all);
	assert_true(ref.n > 1500);
	for (int r = 0; r < REPEAT; r++) {
		vec v;
		walk_lines(&v);
		same_lines(&ref, &v, "walk_sorted (threads) against walk_tree");
		lines_free(&v);
	}
	setenv("METAMORI_SCAN_THREADS", "1", 1);
	vec one;
	walk_lines(&one);
	unsetenv("METAMORI_SCAN_THREADS");
	same_lines(&ref, &one, "walk_sorted (one thread) against walk_tree");
	lines_free(&one);
	lines_free(&ref);
}

/* scan_changed's two sides, as lines. */
static void changed_lines(vec *out, tree_rest *rest)
{
	mtm_id head;
	assert_int_equal(mtm_head(S, &head), 0);
	vec live, parent;
	assert_int_equal(scan_changed(S, &IGN, head, 1, &live, &parent, rest, NULL, NULL), 0);
	*out = (vec)VEC_INIT(char *);
	for (size_t i = 0; i < live.n; i++) {
		live_item *it = malloc(sizeof *it);
		assert_non_null(it);
		*it = VEC_AT(&live, live_item, i);
		collect(out, it);
	}
	vec_free(&live);
	for (size_t i = 0; i < parent.n; i++) {
		const entry *e = &VEC_AT(&parent, entry, i);
		char line[8192];
		snprintf(line, sizeof line, "parent %s|%d|%lld|%lld|%s", e->path, e->kind, (long long)e->ver,
		         (long long)e->size, e->target ? e->target : "-");
		char **slot = vec_push(out);
		assert_non_null(slot);
		*slot = strdup(line);
	}
	entries_free(&parent);
}

static void check_changed(size_t min_lines)
{
	vec ref;
	tree_rest rr;
	setenv("METAMORI_SCAN_THREADS", "1", 1);
	changed_lines(&ref, &rr);
	unsetenv("METAMORI_SCAN_THREADS");
	assert_true(ref.n >= min_lines);
	for (int r = 0; r < REPEAT; r++) {
		vec v;
		tree_rest t;
		changed_lines(&v, &t);
		same_lines(&ref, &v, "scan_changed (threads) against one thread");
		assert_int_equal(t.entries, rr.entries);
		assert_int_equal(t.bytes, rr.bytes);
		lines_free(&v);
	}
	lines_free(&ref);
}

static void checkpoint(void)
{
	mtm_checkpoint_info info;
	assert_int_equal(mtm_checkpoint(S, NULL, &info), 0);
	mtm_free(info.message);
}

static void threads_walk_as_one(void **state)
{
	(void)state;
	check_walks();
	check_changed(1500); /* no checkpoint yet: everything is new */
	checkpoint();
	check_changed(0);
	/* renames, deletes, new files and links, a directory renamed, one removed */
	mv("d02/f000", "d02/f000.moved");
	mv("d03/f007", "d10/f007");
	rm("d04/f010");
	rm("a-b/x");
	put("d39/new", "new\n");
	put("d06/f005", "changed content, longer than before\n");
	lnk("d09/f001", "d09/f001.hl");
	lnk("d11/f003", "zz-link");
	mv("d07", "d07x");
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s/d08'", dir);
	assert_int_equal(system(cmd), 0);
	check_walks();
	check_changed(40);
	checkpoint();
	check_changed(0);
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	char name[64], data[64];
	/* wide and many: shared between the threads, read ahead */
	for (int d = 0; d < 40; d++)
		for (int f = 0; f < (d % 3 ? 50 : 33); f++) {
			snprintf(name, sizeof name, "d%02d/f%03d", d, f);
			snprintf(data, sizeof data, "%d.%d\n", d, f);
			put(name, data);
		}
	/* names that sort around '/' and odd bytes */
	const char *odd[] = {"a/x", "a/x-y/z", "a/x.y", "a/x0", "a-b/x", "a.b", "a0/z", "a b", "a\nb", "\xc3\xa9t\xc3\xa9",
	                     "-dash", ".hidden", "d05/a", "d05/a-b", "d05/a.b/c", "d05/a0", "deep/1/2/3/4/5/6/7/8/f",
	                     "d01/.metamori", /* a file: kept */
	                     "d12/.metamori/index.db", /* a nested store: skipped */
	                     "ign/a", "ign/b/c", "d13/x.tmp", "d13/keep", "d14/skip-me"};
	for (size_t i = 0; i < sizeof odd / sizeof *odd; i++)
		put(odd[i], "odd\n");
	mkd("empty");
	mkd("e1");
	mkd("e1/e2");
	char p[4096];
	at(p, "link");
	if (symlink("d00/f000", p))
		return -1;
	at(p, "dlink");
	if (symlink("d01", p))
		return -1;
	at(p, "fifo");
	if (mkfifo(p, 0644))
		return -1;
	lnk("d00/f001", "hl1");
	lnk("d00/f001", "d05/h2");
	if (ignore_add(&IGN, "ign/") || ignore_add(&IGN, "*.tmp") || ignore_add(&IGN, "d14/skip*"))
		return -1;
	return mtm_init(&S, dir) ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	mtm_close(S);
	ignore_free(&IGN);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(threads_walk_as_one),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

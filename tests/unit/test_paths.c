/* test_paths.c — which store paths are safe to use beneath a root, and
 * what opening one beneath it gives. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "io/beneath.h"
#include "util/error.h"

static int safe(const char *p) { return path_is_safe(p, strlen(p)); }

static void safe_paths(void **state)
{
	(void)state;
	assert_true(safe("a"));
	assert_true(safe("a/b/c.txt"));
	assert_true(safe("..a/b.."));
	assert_true(safe(".hidden/x"));
}

static void unsafe_paths(void **state)
{
	(void)state;
	assert_false(safe(""));
	assert_false(safe("/etc/passwd"));
	assert_false(safe(".."));
	assert_false(safe("../x"));
	assert_false(safe("a/../../x"));
	assert_false(safe("a/.."));
	assert_false(safe("."));
	assert_false(safe("a/./b"));
	assert_false(safe("a//b"));
	assert_false(safe("a/"));
	assert_false(path_is_safe("a\0b", 3)); /* embedded NUL */
	char longname[300];
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = 0;
	assert_false(safe(longname)); /* a component over NAME_MAX */
}

/* beneath_open_st (one openat2 of the whole path) opens what the walk by
 * components opened: a file or a directory, never through a symlink,
 * nothing but those two kinds; its stat is the opened file's. */
static int open_st(int root, const char *p, int flags, struct stat *st)
{
	int fd, rc = beneath_open_st(root, p, flags, &fd, st);
	if (!rc) {
		struct stat own;
		assert_int_equal(fstat(fd, &own), 0);
		assert_int_equal(own.st_ino, st->st_ino);
		close(fd);
	} else {
		assert_int_equal(fd, -1);
	}
	return rc;
}

static void open_beneath(void **state)
{
	(void)state;
	char dir[] = "/tmp/mtm-paths-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char p[PATH_MAX + 64];
	snprintf(p, sizeof p, "%s/d", dir);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof p, "%s/d/f", dir);
	int fd = open(p, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "12345", 5), 5);
	close(fd);
	snprintf(p, sizeof p, "%s/d/l", dir);
	assert_int_equal(symlink("f", p), 0);
	snprintf(p, sizeof p, "%s/s", dir);
	assert_int_equal(symlink("d", p), 0);
	snprintf(p, sizeof p, "%s/d/p", dir);
	assert_int_equal(mkfifo(p, 0600), 0);
	int root = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(root >= 0);
	struct stat st;
	assert_int_equal(open_st(root, "d/f", O_RDONLY, &st), 0);
	assert_true(S_ISREG(st.st_mode) && st.st_size == 5);
	assert_int_equal(open_st(root, "d", O_RDONLY | O_DIRECTORY, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(open_st(root, "d/l", O_RDONLY, &st), ELOOP);   /* a symlink, not followed */
	assert_int_equal(open_st(root, "s/f", O_RDONLY, &st), ELOOP);   /* nor one on the way */
	assert_int_equal(open_st(root, "d/p", O_RDONLY, &st), ENOTPLAIN); /* a FIFO: refused, never waited on */
	assert_int_equal(open_st(root, "d/none", O_RDONLY, &st), ENOENT);
	assert_int_equal(open_st(root, "d/f/x", O_RDONLY, &st), ENOTDIR);
	/* a path longer than PATH_MAX: opened component by component */
	char rel[PATH_MAX + 64] = "";
	size_t rn = 0;
	while (rn < PATH_MAX + 8) {
		memcpy(rel + rn, "dddddddddddddddddddddddddddddddddddddddddddddddddd", 50);
		rn += 50;
		rel[rn] = 0;
		int dfd;
		const char *leaf;
		assert_int_equal(beneath_open_parent(root, rel, &dfd, &leaf), 0);
		assert_int_equal(mkdirat(dfd, leaf, 0700), 0);
		close(dfd);
		rel[rn++] = '/';
	}
	memcpy(rel + rn, "f", 2);
	int dfd;
	const char *leaf;
	assert_int_equal(beneath_open_parent(root, rel, &dfd, &leaf), 0);
	fd = openat(dfd, leaf, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	close(dfd);
	assert_true(strlen(rel) >= PATH_MAX);
	assert_int_equal(open_st(root, rel, O_RDONLY, &st), 0);
	assert_true(S_ISREG(st.st_mode) && st.st_size == 0);
	close(root);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(safe_paths), cmocka_unit_test(unsafe_paths),
	                                   cmocka_unit_test(open_beneath)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_ignore.c — gitignore-syntax matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "tree/ignore.h"

static void glob_basics(void **state)
{
	(void)state;
	assert_true(glob_match("*.log", "a.log"));
	assert_false(glob_match("*.log", "dir/a.log")); /* '*' does not cross '/' */
	assert_true(glob_match("a?c", "abc"));
	assert_false(glob_match("a?c", "a/c"));
	assert_true(glob_match("[a-c]x", "bx"));
	assert_false(glob_match("[!a-c]x", "bx"));
	assert_true(glob_match("**/cache", "cache"));
	assert_true(glob_match("**/cache", "a/b/cache"));
	assert_true(glob_match("build/**", "build/x/y"));
	assert_true(glob_match("a/**/b", "a/b"));
	assert_true(glob_match("a/**/b", "a/x/y/b"));
	assert_false(glob_match("a/**/b", "a/x/y/c"));
	assert_true(glob_match("\\*lit", "*lit"));
	assert_false(glob_match("\\*lit", "xlit"));
}

static void rules(void **state)
{
	(void)state;
	ignore_set s = {0};
	assert_int_equal(ignore_add(&s, "# comment\n"), 0);
	assert_int_equal(ignore_add(&s, "*.tmp\n"), 0);
	assert_int_equal(ignore_add(&s, "!keep.tmp"), 0);
	assert_int_equal(ignore_add(&s, "scratch/"), 0);
	assert_int_equal(ignore_add(&s, "/top.txt"), 0);
	assert_int_equal(ignore_add(&s, "logs/*.log"), 0);
	assert_int_equal(s.n, 5);
	assert_true(ignore_match(&s, "a.tmp", 0));
	assert_true(ignore_match(&s, "d/e/a.tmp", 0));
	assert_false(ignore_match(&s, "d/keep.tmp", 0));      /* negation, last match wins */
	assert_true(ignore_match(&s, "scratch", 1));
	assert_false(ignore_match(&s, "scratch", 0));         /* dir-only pattern */
	assert_true(ignore_path(&s, "scratch/deep/file", 0)); /* inside an ignored dir */
	assert_true(ignore_match(&s, "top.txt", 0));
	assert_false(ignore_match(&s, "sub/top.txt", 0));     /* anchored */
	assert_true(ignore_match(&s, "logs/x.log", 0));
	assert_false(ignore_match(&s, "other/logs/x.log", 0));
	assert_false(ignore_match(&s, "plain.txt", 0));
	ignore_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(glob_basics), cmocka_unit_test(rules)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

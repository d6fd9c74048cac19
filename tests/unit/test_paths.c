/* test_paths.c — which store paths are safe to use beneath a root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include "io/beneath.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(safe_paths), cmocka_unit_test(unsafe_paths)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

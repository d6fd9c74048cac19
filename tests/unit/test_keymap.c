/* test_keymap.c — the pair-keyed map the session's pre-copy keeps its
 * block copies and parent hashes in: every key put is found again with its
 * value, across growth, and no key that was not put is found. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "util/keymap.h"

static void put_get_across_growth(void **state)
{
	(void)state;
	keymap m = {0};
	int fresh;
	assert_null(keymap_get(&m, 1, 2));
	for (int64_t a = 0; a < 40; a++)
		for (int64_t b = 0; b < 250; b++) {
			uint64_t *v = keymap_put(&m, a, b * 7, &fresh);
			assert_non_null(v);
			assert_true(fresh);
			assert_int_equal(*v, 0);
			*v = (uint64_t)(a * 1000 + b);
		}
	assert_int_equal(m.n, 40 * 250);
	for (int64_t a = 0; a < 40; a++)
		for (int64_t b = 0; b < 250; b++) {
			const uint64_t *v = keymap_get(&m, a, b * 7);
			assert_non_null(v);
			assert_int_equal(*v, (uint64_t)(a * 1000 + b));
			assert_null(keymap_get(&m, a, b * 7 + 1));
		}
	/* putting a key again finds its slot and value */
	uint64_t *v = keymap_put(&m, 3, 21, &fresh);
	assert_false(fresh);
	assert_int_equal(*v, 3003);
	assert_int_equal(m.n, 40 * 250);
	keymap_free(&m);
	assert_null(keymap_get(&m, 3, 21));
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(put_get_across_growth)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

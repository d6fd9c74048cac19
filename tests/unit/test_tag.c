/* test_tag.c — tags through the public API (issue 20): mtm_tag never moves
 * a name that already names another checkpoint (MTM_EEXIST, the tag and
 * the checkpoint it pins are left as they were); mtm_tag_move does, as
 * `git tag -f`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "metamori.h"

static char root[64];

static mtm_id ckpt(mtm_store *s)
{
	mtm_checkpoint_info info;
	assert_int_equal(mtm_checkpoint(s, NULL, &info), 0);
	mtm_free(info.message);
	return info.id;
}

static mtm_id named(mtm_store *s, const char *name)
{
	mtm_id id;
	assert_int_equal(mtm_resolve(s, name, &id), 0);
	return id;
}

static void tags_do_not_move(void **state)
{
	(void)state;
	strcpy(root, "/tmp/mtm-tag-XXXXXX");
	assert_non_null(mkdtemp(root));
	mtm_store *s;
	assert_int_equal(mtm_init(&s, root), 0);
	mtm_id c1 = ckpt(s), c2 = ckpt(s);

	assert_int_equal(mtm_tag(s, "base", c1), 0);
	assert_int_equal(mtm_tag(s, "base", c1), 0); /* naming the same checkpoint again: nothing to do */
	assert_int_equal(mtm_tag(s, "base", c2), MTM_EEXIST);
	assert_string_equal(mtm_last_error(), "tag 'base': already names checkpoint 1");
	assert_int_equal(named(s, "base"), c1);

	/* moving is asked for by name */
	assert_int_equal(mtm_tag_move(s, "base", c2), 0);
	assert_int_equal(named(s, "base"), c2);
	assert_int_equal(mtm_tag_move(s, "fresh", c1), 0); /* or creates */
	assert_int_equal(named(s, "fresh"), c1);
	assert_int_equal(mtm_tag_move(s, "base", 0), MTM_EINVAL);
	assert_int_equal(mtm_tag_move(s, "base", 99), MTM_ENOCKPT);
	assert_int_equal(named(s, "base"), c2);

	/* id 0 still removes a name */
	assert_int_equal(mtm_tag(s, "base", 0), 0);
	mtm_id id;
	assert_int_equal(mtm_resolve(s, "base", &id), MTM_ENOCKPT);
	assert_int_equal(mtm_tag(s, "base", c1), 0);
	assert_int_equal(named(s, "base"), c1);

	mtm_close(s);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(tags_do_not_move)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

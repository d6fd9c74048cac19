/* tmp_store.h — a unit test group's store in a fresh directory under /tmp
 * (the group's setup and teardown). Include after cmocka.h and store.h. */
#ifndef MTM_TEST_TMP_STORE_H
#define MTM_TEST_TMP_STORE_H
#include <stdio.h>
#include <stdlib.h>

static char dir[] = "/tmp/mtm-unit-XXXXXX";
static mtm_store *S;

/* The directory only (a test that puts files in it before the store). */
static inline int tmp_dir(void) { return mkdtemp(dir) ? 0 : -1; }

static inline int tmp_store_setup(void **state)
{
	(void)state;
	if (tmp_dir())
		return -1;
	return mtm_init(&S, dir) ? -1 : 0;
}

static inline int tmp_store_teardown(void **state)
{
	(void)state;
	mtm_close(S);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd);
}
#endif

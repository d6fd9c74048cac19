/* test_api_misuse.c — every function of include/metamori.h given a NULL it
 * cannot do without (a store, a place for its answer, a list said to hold
 * n items) returns MTM_EINVAL and says which argument ("CALL: ARG is
 * NULL"); none crashes. Before, most of them dereferenced it (SIGSEGV). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "metamori.h"
#include "tmp_store.h"

#define EINVAL_SAYS(call, said) \
	do { \
		assert_int_equal((call), MTM_EINVAL); \
		assert_string_equal(mtm_last_error(), said); \
	} while (0)

static void no_store(void **state)
{
	(void)state;
	mtm_id id = 7;
	mtm_checkpoint_info *log;
	mtm_entry_info e, *list;
	mtm_file *f = (mtm_file *)&id;
	mtm_tag_info *tags;
	mtm_du_entry *du;
	mtm_du_totals tot;
	size_t n;
	EINVAL_SAYS(mtm_checkpoint(NULL, NULL, NULL), "checkpoint: s is NULL");
	EINVAL_SAYS(mtm_head(NULL, &id), "head: s is NULL");
	EINVAL_SAYS(mtm_log(NULL, &log, &n), "log: s is NULL");
	EINVAL_SAYS(mtm_stat(NULL, 1, "a", &e), "stat: s is NULL");
	EINVAL_SAYS(mtm_ls(NULL, 1, "", &list, &n), "ls: s is NULL");
	EINVAL_SAYS(mtm_file_open(&f, NULL, 1, "a"), "open: s is NULL");
	assert_null(f);
	EINVAL_SAYS(mtm_diff(NULL, 1, 2, NULL, NULL, NULL), "diff: s is NULL");
	EINVAL_SAYS(mtm_verify(NULL, 0, NULL, NULL, NULL), "verify: s is NULL");
	EINVAL_SAYS(mtm_recover(NULL, 0, &id), "recover: s is NULL");
	assert_int_equal(id, 0);
	EINVAL_SAYS(mtm_run(NULL, NULL, (char *const[]){"true", NULL}, NULL), "run: s is NULL");
	EINVAL_SAYS(mtm_prune(NULL, NULL, NULL, NULL, NULL), "prune: s is NULL");
	EINVAL_SAYS(mtm_tag(NULL, "x", 1), "tag: s is NULL");
	EINVAL_SAYS(mtm_tag_move(NULL, "x", 1), "tag: s is NULL");
	EINVAL_SAYS(mtm_tags(NULL, &tags, &n), "tags: s is NULL");
	EINVAL_SAYS(mtm_resolve(NULL, "head", &id), "resolve: s is NULL");
	EINVAL_SAYS(mtm_du(NULL, &du, &n, &tot), "du: s is NULL");
	EINVAL_SAYS(mtm_push(NULL, "/nonexistent", NULL), "push: s is NULL");
	EINVAL_SAYS(mtm_restore(NULL, 1, NULL, NULL), "restore: s is NULL");
	EINVAL_SAYS(mtm_restore_pending(NULL, &id, NULL), "restore: s is NULL");
	EINVAL_SAYS(mtm_restore_continue(NULL, NULL, NULL), "restore: s is NULL");
	EINVAL_SAYS(mtm_restore_abort(NULL, NULL, NULL), "restore: s is NULL");
	size_t got = 5;
	char buf[8];
	EINVAL_SAYS(mtm_file_pread(NULL, buf, sizeof buf, 0, &got), "read: f is NULL");
	assert_int_equal(got, 0);
	/* the functions without an error code do nothing */
	assert_null(mtm_root(NULL));
	assert_int_equal(mtm_file_size(NULL), 0);
	mtm_set_progress(NULL, NULL, NULL);
}

static void no_place_for_the_answer(void **state)
{
	(void)state;
	mtm_checkpoint_info *log;
	mtm_entry_info *list;
	mtm_tag_info *tags;
	mtm_du_entry *du;
	mtm_du_totals tot;
	mtm_id id;
	size_t n;
	assert_int_equal(mtm_checkpoint(S, NULL, NULL), 0);
	EINVAL_SAYS(mtm_init(NULL, dir), "init: out is NULL");
	EINVAL_SAYS(mtm_open(NULL, dir), "open: out is NULL");
	EINVAL_SAYS(mtm_head(S, NULL), "head: out is NULL");
	EINVAL_SAYS(mtm_log(S, NULL, &n), "log: out is NULL");
	EINVAL_SAYS(mtm_log(S, &log, NULL), "log: n_out is NULL");
	EINVAL_SAYS(mtm_stat(S, 1, "", NULL), "stat: out is NULL");
	EINVAL_SAYS(mtm_ls(S, 1, "", NULL, &n), "ls: out is NULL");
	EINVAL_SAYS(mtm_ls(S, 1, "", &list, NULL), "ls: n_out is NULL");
	EINVAL_SAYS(mtm_file_open(NULL, S, 1, "a"), "open: out is NULL");
	EINVAL_SAYS(mtm_tags(S, NULL, &n), "tags: out is NULL");
	EINVAL_SAYS(mtm_tags(S, &tags, NULL), "tags: n_out is NULL");
	EINVAL_SAYS(mtm_resolve(S, "head", NULL), "resolve: out is NULL");
	EINVAL_SAYS(mtm_resolve(S, NULL, &id), "resolve: text is NULL");
	EINVAL_SAYS(mtm_du(S, NULL, &n, &tot), "du: out is NULL");
	EINVAL_SAYS(mtm_du(S, &du, NULL, &tot), "du: n_out is NULL");
	EINVAL_SAYS(mtm_du(S, &du, &n, NULL), "du: t is NULL");
	EINVAL_SAYS(mtm_restore_pending(S, NULL, &id), "restore: target is NULL");

	mtm_file *f;
	FILE *w = fopen(strcat(strcpy((char[128]){0}, dir), "/a"), "w");
	assert_non_null(w);
	fputs("hello", w);
	fclose(w);
	mtm_checkpoint_info info;
	assert_int_equal(mtm_checkpoint(S, NULL, &info), 0);
	mtm_free(info.message);
	assert_int_equal(mtm_file_open(&f, S, info.id, "a"), 0);
	char buf[8];
	size_t got;
	EINVAL_SAYS(mtm_file_pread(f, buf, sizeof buf, 0, NULL), "read: got is NULL");
	EINVAL_SAYS(mtm_file_pread(f, NULL, sizeof buf, 0, &got), "read: buf is NULL");
	assert_int_equal(mtm_file_pread(f, NULL, 0, 0, &got), 0); /* nothing asked: no buffer needed */
	assert_int_equal(mtm_file_pread(f, buf, sizeof buf, 0, &got), 0);
	assert_int_equal(got, 5);
	assert_memory_equal(buf, "hello", 5);
	mtm_file_close(f);
}

static void lists_said_to_hold_items(void **state)
{
	(void)state;
	mtm_id before, head;
	assert_int_equal(mtm_head(S, &before), 0);
	mtm_checkpoint_opts co = MTM_CHECKPOINT_OPTS_INIT;
	co.n_excludes = 2;
	EINVAL_SAYS(mtm_checkpoint(S, &co, NULL), "checkpoint: opts->excludes is NULL");
	EINVAL_SAYS(mtm_checkpoint_at(dir, &co, NULL), "checkpoint: opts->excludes is NULL");
	co.excludes = (const char *const[]){"*.o", NULL};
	EINVAL_SAYS(mtm_checkpoint(S, &co, NULL), "checkpoint: opts->excludes[1] is NULL");
	assert_int_equal(mtm_head(S, &head), 0);
	assert_int_equal(head, before); /* nothing recorded */

	mtm_restore_opts ro = MTM_RESTORE_OPTS_INIT;
	ro.n_paths = 1;
	EINVAL_SAYS(mtm_restore(S, before, &ro, NULL), "restore: opts->paths is NULL");
	ro.n_paths = 0;
	ro.n_excludes = 1;
	EINVAL_SAYS(mtm_restore(S, before, &ro, NULL), "restore: opts->excludes is NULL");
	ro.version = 1;
	EINVAL_SAYS(mtm_restore(S, before, &ro, NULL), "restore: opts->excludes is NULL");

	mtm_diff_opts dop = MTM_DIFF_OPTS_INIT;
	dop.n_excludes = 1;
	EINVAL_SAYS(mtm_diff(S, before, MTM_LIVE, &dop, NULL, NULL), "diff: opts->excludes is NULL");

	mtm_run_opts rop = MTM_RUN_OPTS_INIT;
	rop.n_excludes = 1;
	EINVAL_SAYS(mtm_run(S, &rop, (char *const[]){"true", NULL}, NULL), "run: opts->excludes is NULL");

	mtm_prune_opts po = MTM_PRUNE_OPTS_INIT;
	po.n_keep = 3;
	EINVAL_SAYS(mtm_prune(S, &po, NULL, NULL, NULL), "prune: keep is NULL");
	assert_int_equal(mtm_head(S, &head), 0);
	assert_int_equal(head, before);
}

/* A NULL path is no misuse for the three calls that find a tree: it is the
 * current directory (metamori.h), as the CLI's default is. */
static void null_path_is_the_current_directory(void **state)
{
	(void)state;
	char here[] = "/tmp/mtm-unit-cwd-XXXXXX", old[4096], cmd[128];
	assert_non_null(getcwd(old, sizeof old));
	assert_non_null(mkdtemp(here));
	assert_int_equal(chdir(here), 0);
	mtm_store *s, *again;
	assert_int_equal(mtm_init(&s, NULL), 0);
	assert_string_equal(mtm_root(s), here);
	assert_int_equal(mtm_open(&again, NULL), 0);
	assert_string_equal(mtm_root(again), here);
	FILE *f = fopen("f", "w");
	assert_non_null(f);
	fputs("data", f);
	fclose(f);
	mtm_checkpoint_info info;
	assert_int_equal(mtm_checkpoint_at(NULL, NULL, &info), 0);
	assert_int_equal(info.id, 1);
	assert_int_equal(info.files_added, 1);
	mtm_free(info.message);
	mtm_close(again);
	mtm_close(s);
	assert_int_equal(chdir(old), 0);
	snprintf(cmd, sizeof cmd, "rm -rf %s", here);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(no_store),
		cmocka_unit_test(no_place_for_the_answer),
		cmocka_unit_test(lists_said_to_hold_items),
		cmocka_unit_test(null_path_is_the_current_directory),
	};
	return cmocka_run_group_tests(tests, tmp_store_setup, tmp_store_teardown);
}

/* test_browse.c — reading checkpoints through the public API without
 * restoring them (mtm_stat, mtm_ls, mtm_file_*): every byte read equals the
 * byte the file held at that checkpoint, at any offset, across holes, after
 * later checkpoints changed the file and after a prune folded the rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "metamori.h"

static char root[64];

static void put(const char *rel, const unsigned char *data, size_t len, off_t at, int trunc)
{
	char p[256];
	snprintf(p, sizeof p, "%s/%s", root, rel);
	int fd = open(p, O_WRONLY | O_CREAT | (trunc ? O_TRUNC : 0), 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, len, at), (ssize_t)len);
	close(fd);
}

static mtm_id ckpt(mtm_store *s)
{
	mtm_checkpoint_info info;
	assert_int_equal(mtm_checkpoint(s, NULL, &info), 0);
	mtm_free(info.message);
	return info.id;
}

/* Reads [off, off + len) of path at id and compares with want. */
static void expect_bytes(mtm_store *s, mtm_id id, const char *path, const unsigned char *want, size_t size,
                         uint64_t off, size_t len)
{
	mtm_file *f;
	assert_int_equal(mtm_file_open(&f, s, id, path), 0);
	assert_int_equal(mtm_file_size(f), size);
	unsigned char *buf = malloc(len + 1);
	size_t got;
	assert_int_equal(mtm_file_pread(f, buf, len, off, &got), 0);
	size_t expect = off >= size ? 0 : size - off < len ? size - off : len;
	assert_int_equal(got, expect);
	if (expect)
		assert_memory_equal(buf, want + off, expect);
	free(buf);
	mtm_file_close(f);
}

static void read_at_checkpoints(void **state)
{
	(void)state;
	strcpy(root, "/tmp/mtm-browse-XXXXXX");
	assert_non_null(mkdtemp(root));
	mtm_store *s;
	assert_int_equal(mtm_init(&s, root), 0);

	enum { SIZE = 300000 };
	unsigned char *v1 = malloc(SIZE), *v2 = malloc(SIZE);
	for (size_t i = 0; i < SIZE; i++)
		v1[i] = (unsigned char)(i * 7 + i / 4096);
	memcpy(v2, v1, SIZE);
	memset(v2 + 5000, 0xAB, 9000); /* blocks 1..3 change in checkpoint 2 */
	char p[256];
	snprintf(p, sizeof p, "%s/dir", root);
	assert_int_equal(mkdir(p, 0750), 0);
	snprintf(p, sizeof p, "%s/dir/sub", root);
	assert_int_equal(mkdir(p, 0700), 0);
	put("dir/big", v1, SIZE, 0, 1);
	put("dir/sub/deep", (const unsigned char *)"deep\n", 5, 0, 1);
	put("top", (const unsigned char *)"top\n", 4, 0, 1);
	snprintf(p, sizeof p, "%s/link", root);
	assert_int_equal(symlink("dir/big", p), 0);
	/* a sparse file: data, a hole of 3 blocks, data */
	unsigned char sparse[20480] = {0};
	memset(sparse, 'x', 4096);
	memset(sparse + 16384, 'y', 4096);
	put("sparse", sparse, 4096, 0, 1);
	put("sparse", sparse + 16384, 4096, 16384, 0);
	mtm_id c1 = ckpt(s);

	put("dir/big", v2, SIZE, 0, 1);
	snprintf(p, sizeof p, "%s/top", root);
	assert_int_equal(unlink(p), 0);
	mtm_id c2 = ckpt(s);
	put("dir/big", (const unsigned char *)"gone", 4, 0, 1);
	mtm_id c3 = ckpt(s);

	/* bytes at every checkpoint, at unaligned offsets and across block ends */
	uint64_t offs[] = {0, 1, 4095, 4096, 5000, 13999, 299999, 300000, 400000};
	for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
		expect_bytes(s, c1, "dir/big", v1, SIZE, offs[i], 10000);
		expect_bytes(s, c2, "/dir/big", v2, SIZE, offs[i], 10000);
	}
	expect_bytes(s, c1, "./dir/big", v1, SIZE, 0, SIZE);
	expect_bytes(s, c3, "dir/big", (const unsigned char *)"gone", 4, 0, 100);
	expect_bytes(s, c1, "sparse", sparse, sizeof sparse, 0, sizeof sparse);
	expect_bytes(s, c1, "sparse", sparse, sizeof sparse, 8000, 10000);

	/* stat: kinds, metadata, absence */
	mtm_entry_info e;
	assert_int_equal(mtm_stat(s, c1, "dir/", &e), 0);
	assert_int_equal(e.kind, 'd');
	assert_int_equal(e.mode, 0750);
	assert_string_equal(e.name, "dir");
	mtm_entry_info_clear(&e);
	assert_int_equal(mtm_stat(s, c1, "link", &e), 0);
	assert_int_equal(e.kind, 'l');
	assert_string_equal(e.target, "dir/big");
	assert_int_equal(e.size, 7);
	mtm_entry_info_clear(&e);
	assert_int_equal(mtm_stat(s, c1, "", &e), 0);
	assert_int_equal(e.kind, 'd');
	mtm_entry_info_clear(&e);
	assert_int_equal(mtm_stat(s, c1, "top", &e), 0);
	assert_int_equal(e.size, 4);
	assert_int_equal(e.version, c1);
	mtm_entry_info_clear(&e);
	assert_int_equal(mtm_stat(s, c2, "top", &e), ENOENT);
	assert_int_equal(mtm_stat(s, 99, "top", &e), MTM_ENOCKPT);
	assert_int_equal(mtm_stat(s, c1, "dir/../top", &e), MTM_EINVAL);

	/* ls: direct children only, sorted */
	mtm_entry_info *v;
	size_t n;
	assert_int_equal(mtm_ls(s, c1, ".", &v, &n), 0);
	assert_int_equal(n, 4);
	const char *names[] = {"dir", "link", "sparse", "top"};
	for (size_t i = 0; i < n; i++)
		assert_string_equal(v[i].name, names[i]);
	mtm_ls_free(v, n);
	assert_int_equal(mtm_ls(s, c2, "dir", &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].path, "dir/big");
	assert_int_equal(v[0].size, SIZE);
	assert_string_equal(v[1].name, "sub");
	assert_int_equal(v[1].kind, 'd');
	mtm_ls_free(v, n);
	assert_int_equal(mtm_ls(s, c1, "top", &v, &n), ENOTDIR);
	assert_int_equal(mtm_ls(s, c2, "top", &v, &n), ENOENT);

	/* opening what is not a regular file */
	mtm_file *f;
	assert_int_equal(mtm_file_open(&f, s, c1, "dir"), EISDIR);
	assert_int_equal(mtm_file_open(&f, s, c1, "link"), EINVAL);
	assert_int_equal(mtm_file_open(&f, s, c2, "top"), ENOENT);

	/* a handle opened before a prune that folds checkpoint 1 into 2 and
	 * rewrites the packs still reads checkpoint 2's bytes */
	assert_int_equal(mtm_file_open(&f, s, c2, "dir/big"), 0);
	mtm_prune_opts po = MTM_PRUNE_OPTS_INIT;
	po.keep = &c2;
	po.n_keep = 1;
	po.gc_threshold = 0.0;
	mtm_id *dropped;
	size_t nd;
	mtm_prune_stats ps;
	assert_int_equal(mtm_prune(s, &po, &dropped, &nd, &ps), 0);
	mtm_free(dropped);
	unsigned char *buf = malloc(SIZE);
	size_t got;
	assert_int_equal(mtm_file_pread(f, buf, SIZE, 0, &got), 0);
	assert_int_equal(got, SIZE);
	assert_memory_equal(buf, v2, SIZE);
	mtm_file_close(f);
	assert_int_equal(mtm_file_open(&f, s, c1, "dir/big"), MTM_ENOCKPT);
	free(buf);

	mtm_close(s);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
	free(v1);
	free(v2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(read_at_checkpoints)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

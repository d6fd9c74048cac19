/* test_pwritev.c — io_pwritev completes short writes across its iovecs.
 * The pack's thread writes each 1 MiB piece with one call over many
 * segments (src/store/flusher.c); every write here is made short (halved)
 * by the fault injection of io.c, so each call writes part of one iovec and
 * the rest must follow, in order, at the right offsets. */
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>
#include "io/io.h"

/* Writes n iovecs of the given sizes (0 allowed) at off into a new file and
 * checks the file holds their bytes there, and nothing was left unwritten. */
static void check_write(const size_t *sizes, int n, off_t off)
{
	char path[] = "/tmp/mtm-pwritev-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	struct iovec *iov = calloc((size_t)n, sizeof *iov);
	size_t total = 0;
	for (int i = 0; i < n; i++)
		total += sizes[i];
	unsigned char *want = malloc(total + 1), *got = malloc(total + 1);
	assert_non_null(iov);
	assert_non_null(want);
	assert_non_null(got);
	for (size_t i = 0; i < total; i++)
		want[i] = (unsigned char)(i * 7 + i / 251);
	for (int i = 0, at = 0; i < n; at += (int)sizes[i], i++) {
		iov[i].iov_base = want + at;
		iov[i].iov_len = sizes[i];
	}
	assert_int_equal(io_pwritev(fd, iov, n, off), 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(iov[i].iov_len, 0); /* advanced past all it wrote */
	assert_int_equal(lseek(fd, 0, SEEK_END), off + (off_t)total);
	assert_int_equal(pread(fd, got, total, off), (ssize_t)total);
	assert_memory_equal(got, want, total);
	close(fd);
	free(iov);
	free(want);
	free(got);
}

static void segments_of_all_sizes(void **state)
{
	(void)state;
	size_t sizes[] = {40, 4096, 0, 4096, 1, 4095, 0, 0, 65536, 40, 4096, 3};
	check_write(sizes, (int)(sizeof sizes / sizeof *sizes), 0);
	check_write(sizes, (int)(sizeof sizes / sizeof *sizes), 12345);
}

static void more_segments_than_one_call_takes(void **state)
{
	(void)state;
	int n = IOV_MAX + 300;
	size_t *sizes = malloc((size_t)n * sizeof *sizes);
	assert_non_null(sizes);
	for (int i = 0; i < n; i++)
		sizes[i] = i % 3 == 0 ? 40 : i % 3 == 1 ? 4096 : 7;
	check_write(sizes, n, 16);
	free(sizes);
}

int main(void)
{
	/* every write from the first on is short (io.c reads this once) */
	setenv("METAMORI_FAULT", "write:1:short:always", 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(segments_of_all_sizes),
		cmocka_unit_test(more_segments_than_one_call_takes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

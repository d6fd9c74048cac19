/* test_mapped_read.c — mapped reads (tree/reader.h, mtm_set_mapped_reads):
 * a piece hashed where it lies in the page cache gives the hashes a read
 * gives; a window not all cached is read, not mapped; a file shortened
 * under the mapping, while it is hashed or while its changed blocks are
 * copied out, reads as pread would have read it (no crash); in pick mode,
 * a window is mapped or read as the costs timed say, and read on two
 * threads into a buffer by a reader that has two; and a SIGBUS
 * that is not ours still reaches the handler that was there before, or
 * the default action. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include "metamori.h"
#include "tree/reader.h"
#include "util/xxh.h"

static char path[] = "/tmp/mtm-mapped-XXXXXX";
static int fd = -1;
static unsigned char *content;
#define SIZE ((size_t)(3u << 20) + 1000) /* three pieces and a short block */

static int setup(void **state)
{
	(void)state;
	if (mtm_set_mapped_reads(1) == ENOSYS)
		return 0; /* (each test skips: the kernel cannot say what is cached) */
	fd = mkstemp(path);
	content = malloc(SIZE);
	if (fd < 0 || !content)
		return -1;
	for (size_t i = 0; i < SIZE; i++)
		content[i] = (unsigned char)(i * 2654435761u >> 13);
	return pwrite(fd, content, SIZE, 0) == (ssize_t)SIZE ? 0 : -1; /* (now in the page cache) */
}

static int teardown(void **state)
{
	(void)state;
	if (fd >= 0)
		close(fd), unlink(path);
	free(content);
	return 0;
}

static void need_mapping(void)
{
	if (fd < 0)
		skip(); /* reported as skipped, not passed */
	/* cmocka puts a handler of its own on SIGBUS around each test: ours
	 * goes over it (and passes it the faults that are not ours) */
	reader_forget_handler();
	assert_int_equal(mtm_set_mapped_reads(1), 0);
}

/* The hashes of [off, off + got) of content, as a read would give them. */
static void expect_hashes(const read_piece *p, size_t got)
{
	assert_int_equal(p->got, got);
	for (size_t b = 0; b * MTM_BLOCK < got; b++) {
		unsigned char blk[MTM_BLOCK] = {0};
		size_t len = got - b * MTM_BLOCK < MTM_BLOCK ? got - b * MTM_BLOCK : MTM_BLOCK;
		memcpy(blk, content + p->off + b * MTM_BLOCK, len);
		assert_true(p->h[b] == XXH3_64bits(blk, MTM_BLOCK));
	}
}

static void read_at(scan_reader *rd, int64_t off, size_t want, int64_t until)
{
	assert_int_equal(reader_reserve(rd, READ_PIECE), 0);
	rd->p->off = off;
	rd->p->want = want;
	rd->p->until = until;
	reader_read(rd, FILE_SRC(fd), rd->p);
	assert_int_equal(rd->p->err, 0);
}

/* The file's pages in the page cache again (a neighbour's drop_caches, a
 * benchmark's, may have evicted them: the window is then read, not mapped,
 * and the hook never runs). */
static void warm(void)
{
	unsigned char *tmp = malloc(SIZE);
	assert_non_null(tmp);
	assert_int_equal(pread(fd, tmp, SIZE, 0), (ssize_t)SIZE);
	free(tmp);
}

/* The file read piece by piece, each served from a window (mapped, or
 * with buffered the reader's buffer): the bytes and hashes a read gives,
 * and the changed blocks copied out hash the same from the copy. */
static void read_all_served_as_mapped(scan_reader *rd, int buffered)
{
	for (int64_t off = 0; off < (int64_t)SIZE; off += READ_PIECE) {
		size_t want = SIZE - (size_t)off < READ_PIECE ? SIZE - (size_t)off : READ_PIECE;
		read_at(rd, off, want, (int64_t)SIZE);
		assert_non_null(rd->p->map);
		if (buffered)
			assert_true(rd->wbuf && rd->win == rd->wbuf && rd->p->map == rd->wbuf + off);
		assert_memory_equal(rd->p->map, content + off, want);
		expect_hashes(rd->p, want);
		if (want < 3 * MTM_BLOCK)
			continue; /* (the short last piece) */
		assert_int_equal(reader_settle(rd->p, 1, 3), 0);
		assert_memory_equal(rd->p->buf + MTM_BLOCK, content + off + MTM_BLOCK, 2 * MTM_BLOCK);
		expect_hashes(rd->p, want);
	}
}

static void cached_pieces_are_mapped_and_hash_as_read(void **state)
{
	(void)state;
	need_mapping();
	scan_reader rd;
	reader_init(&rd);
	read_all_served_as_mapped(&rd, 0);
	reader_end_file(&rd);
	assert_null(rd.win);
	reader_free(&rd);
}

static void uncached_window_is_read(void **state)
{
	(void)state;
	need_mapping();
	assert_int_equal(fdatasync(fd), 0);
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	scan_reader rd;
	reader_init(&rd);
	read_at(&rd, 0, READ_PIECE, (int64_t)SIZE);
	assert_null(rd.p->map);
	expect_hashes(rd.p, READ_PIECE);
	assert_memory_equal(rd.p->buf, content, READ_PIECE);
	reader_free(&rd);
	warm(); /* cached again for the tests after */
}

/* One window of pick mode (the whole file is one): mapped or read, and
 * either way the bytes and hashes a read gives. A window found not all
 * cached is tried again: a page of the file can be out of the cache for a
 * moment just after warm() (a neighbour's drop_caches; or, it seems, a
 * folio being migrated while the kernel compacts memory for huge pages:
 * 1 run in ~20 here at load 20 saw it, with no drop_caches). */
static int pick_window(scan_reader *rd)
{
	for (int tries = 0;; tries++) {
		assert_true(tries < 5);
		warm();
		read_at(rd, 0, READ_PIECE, (int64_t)SIZE);
		if (rd->p->map || rd->declined)
			break; /* (found cached: picked) */
		reader_end_file(rd);
	}
	int mapped = rd->p->map != NULL;
	assert_memory_equal(mapped ? rd->p->map : rd->p->buf, content, READ_PIECE);
	expect_hashes(rd->p, READ_PIECE);
	reader_end_file(rd);
	return mapped;
}

/* pick mode (a session's compare ahead): a cached window is mapped while
 * mapping has cost less CPU a byte than reading, read otherwise, each cost
 * timed as it runs, and the other way taken every READER_PICK_EVERY
 * windows; a scan's reader (no pick) maps whatever the costs. */
static void pick_mode_maps_or_reads_as_the_costs_say(void **state)
{
	(void)state;
	need_mapping();
	scan_reader rd;
	reader_init(&rd);
	rd.one_thread = 1;
	rd.pick = 1;
	assert_true(pick_window(&rd)); /* nothing timed: mapped first */
	assert_true(rd.map_cost > 0);
	assert_false(pick_window(&rd)); /* then read, to time it */
	assert_true(rd.read_cost > 0);
	/* mapping dearer: read, but for every READER_PICK_EVERY-th window */
	rd.map_cost = 1e6;
	rd.read_cost = 1e-9;
	unsigned other = 0;
	for (unsigned i = 0; i < 2 * READER_PICK_EVERY; i++) {
		int expect = (rd.windows + 1) % READER_PICK_EVERY == 0;
		assert_int_equal(pick_window(&rd), expect);
		other += (unsigned)expect;
	}
	assert_int_equal(other, 2);
	/* reading dearer: mapped, but for every READER_PICK_EVERY-th window */
	rd.map_cost = 1e-9;
	rd.read_cost = 1e6;
	other = 0;
	for (unsigned i = 0; i < 2 * READER_PICK_EVERY; i++) {
		int expect = (rd.windows + 1) % READER_PICK_EVERY != 0;
		assert_int_equal(pick_window(&rd), expect);
		other += (unsigned)!expect;
	}
	assert_int_equal(other, 2);
	reader_free(&rd);
	/* no pick: mapped whatever the costs, none timed */
	reader_init(&rd);
	rd.map_cost = 1e6;
	rd.read_cost = 1e-9;
	assert_true(pick_window(&rd));
	assert_true(pick_window(&rd));
	assert_true(rd.map_cost == 1e6 && rd.read_cost == 1e-9 && rd.windows == 0);
	reader_free(&rd);
}

/* A reader with its helper thread (a scan's), in pick mode, reading the
 * cheaper. */
static void reader_that_reads(scan_reader *rd)
{
	need_mapping();
	reader_init(rd);
	rd->pick = 1;
	rd->map_cost = 1e6;
	rd->read_cost = 1e-9;
}

/* A reader with its helper thread (a scan's) that picks reading: each
 * cached window is read into its buffer on both threads, and its pieces
 * are served from there with the bytes and hashes a read gives, the
 * changed blocks copied out as from a mapping; what it cost is timed. */
static void two_threads_read_a_window_into_the_buffer(void **state)
{
	(void)state;
	scan_reader rd;
	reader_that_reads(&rd);
	warm();
	read_all_served_as_mapped(&rd, 1);
	assert_non_null(rd.hh); /* (the window, 3 MiB, was shared) */
	reader_end_file(&rd);
	assert_null(rd.win);
	assert_true(rd.read_cost > 1e-9); /* timed */
	assert_int_equal(rd.windows, 1);
	reader_free(&rd);
}

static size_t cut_to;
static int cut_done;
static void cut_file(int f, const unsigned char *win, size_t len)
{
	(void)win, (void)len;
	assert_int_equal(ftruncate(f, (off_t)cut_to), 0);
	cut_done = 1;
}

/* read_at with the hook cut_file, until the window was mapped (and so cut):
 * a few tries, each after warming the cache. */
static void read_cut(scan_reader *rd, int64_t off)
{
	for (int tries = 0;; tries++) {
		assert_true(tries < 5);
		reader_end_file(rd);
		warm();
		cut_done = 0;
		reader_mapped_hook = cut_file;
		read_at(rd, off, READ_PIECE, (int64_t)SIZE);
		reader_mapped_hook = NULL;
		if (cut_done)
			return;
	}
}

static void restore_file(void)
{
	assert_int_equal(pwrite(fd, content, SIZE, 0), (ssize_t)SIZE);
}

static void shortened_while_hashed_reads_as_pread(void **state)
{
	(void)state;
	need_mapping();
	scan_reader rd;
	reader_init(&rd);
	/* cut in the middle of the second piece: the window (from 1 MiB) was
	 * mapped whole, then its pages past the new end are gone */
	cut_to = READ_PIECE + 5 * MTM_BLOCK + 100;
	read_cut(&rd, READ_PIECE);
	assert_null(rd.p->map);
	expect_hashes(rd.p, 5 * MTM_BLOCK + 100);
	/* and a piece wholly past the new end reads nothing (the window that
	 * faulted is read to its end, not mapped again: a new file's is) */
	reader_end_file(&rd);
	cut_to = 0;
	restore_file();
	read_cut(&rd, 2 * READ_PIECE);
	assert_int_equal(rd.p->got, 0);
	reader_free(&rd);
	restore_file();
}

/* A file shortened after its window was found cached, before it was read
 * into the buffer: read as pread finds it now. */
static void shortened_before_the_buffer_is_read_reads_as_pread(void **state)
{
	(void)state;
	scan_reader rd;
	reader_that_reads(&rd);
	cut_to = READ_PIECE + 5 * MTM_BLOCK + 100;
	read_cut(&rd, 0);
	assert_null(rd.p->map);
	assert_null(rd.win);
	expect_hashes(rd.p, READ_PIECE);
	assert_memory_equal(rd.p->buf, content, READ_PIECE);
	read_at(&rd, READ_PIECE, READ_PIECE, (int64_t)SIZE);
	assert_null(rd.p->map);
	expect_hashes(rd.p, 5 * MTM_BLOCK + 100);
	reader_free(&rd);
	restore_file();
}

static void shortened_before_the_copy_cuts_the_piece(void **state)
{
	(void)state;
	need_mapping();
	scan_reader rd;
	reader_init(&rd);
	read_at(&rd, 0, READ_PIECE, (int64_t)SIZE);
	assert_non_null(rd.p->map);
	assert_int_equal(ftruncate(fd, 8 * MTM_BLOCK), 0);
	/* blocks 2-3 still there: copied; blocks 20-24 gone: the piece ends at 20 */
	assert_int_equal(reader_settle(rd.p, 2, 4), 0);
	assert_memory_equal(rd.p->buf + 2 * MTM_BLOCK, content + 2 * MTM_BLOCK, 2 * MTM_BLOCK);
	assert_int_equal(reader_settle(rd.p, 20, 25), -1);
	assert_int_equal(rd.p->got, 20 * MTM_BLOCK);
	reader_free(&rd);
	restore_file();
}

/* In a child: a SIGBUS of its own mapping (not the reader's). */
static void own_fault(void)
{
	int f = open(path, O_RDWR);
	unsigned char *m = mmap(NULL, 2 * MTM_BLOCK, PROT_READ, MAP_SHARED, f, 0);
	if (m == MAP_FAILED)
		_exit(3);
	if (ftruncate(f, 0))
		_exit(6);
	volatile unsigned char c = m[MTM_BLOCK]; /* past the end: SIGBUS */
	(void)c;
	_exit(4);
}

static void on_bus_exit(int sig)
{
	(void)sig;
	_exit(42);
}

static void other_faults_go_where_they_went(void **state)
{
	(void)state;
	need_mapping();
	int st;
	pid_t pid = fork();
	if (!pid) {
		/* the default action before ours (not cmocka's handler): killed */
		signal(SIGBUS, SIG_DFL);
		reader_forget_handler();
		if (mtm_set_mapped_reads(1))
			_exit(5);
		own_fault();
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS);
	restore_file();
	pid = fork();
	if (!pid) {
		/* a handler of the program's, installed before ours: still called */
		struct sigaction sa = {0};
		sa.sa_handler = on_bus_exit;
		sigaction(SIGBUS, &sa, NULL);
		reader_forget_handler();
		if (mtm_set_mapped_reads(1))
			_exit(5);
		own_fault();
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 42))
		print_error("child: exited %d, status %d, signal %d\n", WIFEXITED(st), WEXITSTATUS(st), WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 42);
	restore_file();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(cached_pieces_are_mapped_and_hash_as_read),
	    cmocka_unit_test(uncached_window_is_read),
	    cmocka_unit_test(pick_mode_maps_or_reads_as_the_costs_say),
	    cmocka_unit_test(two_threads_read_a_window_into_the_buffer),
	    cmocka_unit_test(shortened_before_the_buffer_is_read_reads_as_pread),
	    cmocka_unit_test(shortened_while_hashed_reads_as_pread),
	    cmocka_unit_test(shortened_before_the_copy_cuts_the_piece),
	    cmocka_unit_test(other_faults_go_where_they_went),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

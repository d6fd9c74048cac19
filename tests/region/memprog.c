/*
 * memprog.c — a program whose state is half memory, half files, made
 * restartable with mtm_protect + mtm_recover (issue 18).
 *
 *   memprog DIR STEPS EVERY
 *
 * DIR is the tree (a store is created in it on the first start). Each step
 * changes a few scattered 4 KiB blocks of a 4 MiB grid and a small state
 * struct in memory, appends a line to journal.txt, overwrites a block of
 * data.bin and rewrites state.txt; every EVERY steps it checkpoints. On a
 * start it recovers the newest checkpoint (memory and files) and goes on
 * from the step saved in memory. At the end it writes result.txt (a digest
 * of the grid and the state) and prints it. An uninterrupted run and a run
 * killed any number of times must leave identical trees and print the same.
 *
 * MEMPROG_DIE="STEP:PHASE" makes it SIGKILL itself at that step: PHASE m
 * after changing memory, f after writing the files, c right after the
 * checkpoint (or its place, when the step makes none).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>
#include "metamori.h"

#define GRID_BYTES (4u << 20)
#define DATA_BLOCKS 64

struct state {
	uint64_t step;
	uint64_t rng;
	uint64_t sum;
};

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "memprog: %s: %s (%s)\n", what, mtm_strerror(rc), mtm_last_error());
	exit(2);
}

static void maybe_die(uint64_t step, char phase)
{
	const char *d = getenv("MEMPROG_DIE");
	char want[64];
	snprintf(want, sizeof want, "%llu:%c", (unsigned long long)step, phase);
	if (d && !strcmp(d, want))
		raise(SIGKILL);
}

static void write_file(const char *dir, const char *name, const void *buf, size_t len, off_t off, int flags)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | flags, 0644);
	if (fd < 0 || (flags & O_APPEND ? write(fd, buf, len) : pwrite(fd, buf, len, off)) != (ssize_t)len || close(fd)) {
		perror(path);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: memprog DIR STEPS EVERY\n");
		return 2;
	}
	const char *dir = argv[1];
	uint64_t steps = strtoull(argv[2], NULL, 10), every = strtoull(argv[3], NULL, 10);
	mtm_store *s;
	int rc = mtm_open(&s, dir);
	if (rc == MTM_ENOSTORE)
		rc = mtm_init(&s, dir);
	if (rc)
		die("open", rc);
	static struct state st;
	unsigned char *grid = aligned_alloc(4096, GRID_BYTES);
	if (!grid)
		return 2;
	memset(grid, 0xee, GRID_BYTES); /* what a fresh start would not have: recovery must overwrite it */
	if ((rc = mtm_protect(s, "state", &st, sizeof st)) || (rc = mtm_protect(s, "grid", grid, GRID_BYTES)))
		die("protect", rc);
	mtm_id from;
	if ((rc = mtm_recover(s, 0, &from)))
		die("recover", rc);
	if (!from) { /* first start */
		st.step = 0;
		st.rng = 0x9e3779b97f4a7c15ull;
		for (size_t i = 0; i < GRID_BYTES / 8; i++)
			((uint64_t *)grid)[i] = i * 2654435761u;
		write_file(dir, "journal.txt", "start\n", 6, 0, O_TRUNC);
		mtm_checkpoint_opts o = MTM_CHECKPOINT_OPTS_INIT;
		o.message = "step 0";
		if ((rc = mtm_checkpoint(s, &o, NULL)))
			die("checkpoint", rc);
	}
	while (st.step < steps) {
		uint64_t step = ++st.step;
		/* memory: 3 scattered blocks of the grid, and the state */
		for (int k = 0; k < 3; k++) {
			size_t blk = (size_t)(next(&st.rng) % (GRID_BYTES / 4096));
			uint64_t *p = (uint64_t *)(grid + blk * 4096);
			for (int i = 0; i < 512; i++)
				p[i] = p[i] * 6364136223846793005ull + step + (uint64_t)i;
			st.sum += p[step % 512];
		}
		maybe_die(step, 'm');
		/* files: a line, a block, the step */
		char line[128];
		int n = snprintf(line, sizeof line, "step %llu sum %016llx\n", (unsigned long long)step,
		                 (unsigned long long)st.sum);
		write_file(dir, "journal.txt", line, (size_t)n, 0, O_APPEND);
		unsigned char blk[4096];
		memcpy(blk, grid + (step % (GRID_BYTES / 4096)) * 4096, sizeof blk);
		write_file(dir, "data.bin", blk, sizeof blk, (off_t)(next(&st.rng) % DATA_BLOCKS) * 4096, 0);
		n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)step);
		write_file(dir, "state.txt", line, (size_t)n, 0, O_TRUNC);
		maybe_die(step, 'f');
		if (step % every == 0) {
			mtm_checkpoint_opts o = MTM_CHECKPOINT_OPTS_INIT;
			char msg[64];
			snprintf(msg, sizeof msg, "step %llu", (unsigned long long)step);
			o.message = msg;
			if ((rc = mtm_checkpoint(s, &o, NULL)))
				die("checkpoint", rc);
		}
		maybe_die(step, 'c');
	}
	char out[128];
	int n = snprintf(out, sizeof out, "steps %llu grid %016llx sum %016llx\n", (unsigned long long)st.step,
	                 (unsigned long long)XXH3_64bits(grid, GRID_BYTES), (unsigned long long)st.sum);
	write_file(dir, "result.txt", out, (size_t)n, 0, O_TRUNC);
	fputs(out, stdout);
	printf("recovered from %lld\n", (long long)from);
	mtm_close(s);
	free(grid);
	return 0;
}

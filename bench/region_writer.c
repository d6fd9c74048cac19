/*
 * region_writer.c — the program bench_regions.py measures (issue 18).
 *
 *   region_writer metamori DIR MIB PCT ROUNDS
 *     MIB MiB of incompressible memory registered with mtm_protect; a first
 *     checkpoint (all of it), then ROUNDS times: PCT% of its 4 KiB blocks,
 *     picked at random, rewritten, then
 *       - mtm_checkpoint(), timed (hash every block, store the changed ones,
 *         fsync, commit);
 *       - the floor: the same number of changed blocks written once with
 *         pwrite to DIR/../floor.bin and fsynced, timed.
 *     One line per round: "round R changed BYTES ckpt_ms X floor_ms Y stored BYTES".
 *
 *   region_writer hold MIB
 *     the same memory, filled the same way, then waits for a line on stdin:
 *     what DMTCP checkpoints (its image of the whole process) for the
 *     comparison. Prints "ready" once the memory is filled.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "metamori.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void fill(unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = next();
		memcpy(p + i, &v, 8);
	}
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "hold")) {
		size_t len = (size_t)atoi(argv[2]) << 20;
		unsigned char *mem = aligned_alloc(4096, len);
		fill(mem, len);
		printf("ready\n");
		fflush(stdout);
		char line[64];
		if (!fgets(line, sizeof line, stdin))
			return 0;
		printf("%02x\n", mem[len / 2]);
		return 0;
	}
	if (argc != 6) {
		fprintf(stderr, "usage: region_writer metamori DIR MIB PCT ROUNDS | region_writer hold MIB\n");
		return 2;
	}
	const char *dir = argv[2];
	size_t len = (size_t)atoi(argv[3]) << 20, nblk = len / 4096;
	double pct = atof(argv[4]);
	int rounds = atoi(argv[5]);
	mtm_store *s;
	int rc = mtm_open(&s, dir);
	if (rc == MTM_ENOSTORE)
		rc = mtm_init(&s, dir);
	if (rc) {
		fprintf(stderr, "region_writer: %s\n", mtm_last_error());
		return 1;
	}
	unsigned char *mem = aligned_alloc(4096, len), *scratch = aligned_alloc(4096, len);
	fill(mem, len);
	mtm_checkpoint_info ci;
	double t0 = now_ms();
	if ((rc = mtm_protect(s, "mem", mem, len)) || (rc = mtm_checkpoint(s, NULL, &ci))) {
		fprintf(stderr, "region_writer: %s\n", mtm_last_error());
		return 1;
	}
	printf("first changed %llu ckpt_ms %.1f stored %llu\n", (unsigned long long)ci.region_bytes_changed,
	       now_ms() - t0, (unsigned long long)ci.bytes_stored);
	mtm_free(ci.message);
	char floor_path[4096];
	snprintf(floor_path, sizeof floor_path, "%s/../floor.bin", dir);
	for (int r = 0; r < rounds; r++) {
		size_t n = (size_t)((double)nblk * pct / 100.0);
		for (size_t k = 0; k < n; k++)
			fill(mem + (next() % nblk) * 4096, 4096);
		t0 = now_ms();
		if ((rc = mtm_checkpoint(s, NULL, &ci))) {
			fprintf(stderr, "region_writer: %s\n", mtm_last_error());
			return 1;
		}
		double ckpt = now_ms() - t0;
		mtm_free(ci.message);
		/* the floor: the changed bytes, written once, made durable */
		size_t bytes = (size_t)ci.region_bytes_changed;
		memcpy(scratch, mem, bytes); /* (not timed: the bytes to write, from memory) */
		int fd = open(floor_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		t0 = now_ms();
		if (fd < 0 || pwrite(fd, scratch, bytes, 0) != (ssize_t)bytes || fsync(fd)) {
			perror(floor_path);
			return 1;
		}
		double floor = now_ms() - t0;
		close(fd);
		printf("round %d changed %zu ckpt_ms %.1f floor_ms %.1f stored %llu\n", r, bytes, ckpt, floor,
		       (unsigned long long)ci.bytes_stored);
		fflush(stdout);
	}
	unlink(floor_path);
	mtm_close(s);
	return 0;
}

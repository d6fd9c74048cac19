/* call_cost.c — the time one write call takes, to put a figure on what the
 * interposer adds to each call, below the noise of a throughput test.
 *
 *   call_cost FILE BYTES CALLS ROUNDS
 *
 * Writes BYTES (1 to 4096; 1: the kernel's share stays small and steady) at
 * offsets that walk the first 1 MiB of FILE in 4 KiB steps (pages that stay
 * cached), CALLS times per round, and prints each round's mean ns per call,
 * one per line. Run once
 * plainly and once under `metamori run`: the difference is the interposer's
 * cost per call, which does not depend on the size written. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: call_cost FILE BYTES CALLS ROUNDS\n");
		return 2;
	}
	size_t bytes = (size_t)atol(argv[2]);
	long calls = atol(argv[3]), rounds = atol(argv[4]);
	int fd = open(argv[1], O_WRONLY | O_CREAT, 0644);
	if (fd < 0 || bytes == 0 || bytes > 4096) {
		perror(argv[1]);
		return 1;
	}
	static char buf[4096];
	memset(buf, 'x', sizeof buf);
	const long steps = 256; /* 1 MiB: pages that stay cached and hot */
	for (long r = 0; r < rounds; r++) {
		double t0 = now_ns();
		for (long i = 0; i < calls; i++)
			if (pwrite(fd, buf, bytes, (off_t)((i * 7919) % steps) * 4096) != (ssize_t)bytes) {
				perror("pwrite");
				return 1;
			}
		printf("%.1f\n", (now_ns() - t0) / (double)calls);
	}
	close(fd);
	return 0;
}

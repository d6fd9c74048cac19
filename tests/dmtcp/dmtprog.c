/*
 * dmtprog.c — a program with state in memory and in files, knowing nothing
 * of checkpoints: what DMTCP + Metamori's plugin must restart (issue 18).
 *
 *   dmtprog DIR STEPS
 *
 * Each step changes scattered blocks of a 4 MiB grid in memory, appends to
 * DIR/journal.txt, overwrites a block of DIR/data.bin and rewrites
 * DIR/state.txt. At the end it writes DIR/result.txt (a digest of the grid)
 * and prints it. DMTPROG_CTL=CTLDIR DMTPROG_PAUSE=N[,M...]: after step N it
 * creates CTLDIR/ready.N and waits until CTLDIR/go.N exists (so that a
 * checkpoint is taken at a known step); DMTPROG_DIE=N: SIGKILL itself after
 * step N, once (CTLDIR/died says it did).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GRID_BYTES (4u << 20)

static void put(const char *dir, const char *name, const void *buf, size_t len, off_t off, int flags)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | flags, 0644);
	if (fd < 0 || (flags & O_APPEND ? write(fd, buf, len) : pwrite(fd, buf, len, off)) != (ssize_t)len || close(fd)) {
		perror(path);
		exit(2);
	}
}

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* step is in the comma-separated list */
static int paused_at(const char *list, long step)
{
	for (const char *p = list; *p;) {
		char *end;
		if (strtol(p, &end, 10) == step)
			return 1;
		p = *end == ',' ? end + 1 : end + strlen(end);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: dmtprog DIR STEPS\n");
		return 2;
	}
	const char *dir = argv[1];
	long steps = atol(argv[2]);
	const char *ctl = getenv("DMTPROG_CTL");
	const char *pauses = getenv("DMTPROG_PAUSE");
	long die_at = getenv("DMTPROG_DIE") ? atol(getenv("DMTPROG_DIE")) : -1;
	uint64_t *grid = malloc(GRID_BYTES), rng = 0x9e3779b97f4a7c15ull, sum = 0;
	for (size_t i = 0; i < GRID_BYTES / 8; i++)
		grid[i] = i * 2654435761u;
	put(dir, "journal.txt", "start\n", 6, 0, O_TRUNC);
	for (long step = 1; step <= steps; step++) {
		for (int k = 0; k < 3; k++) {
			uint64_t *p = grid + (next(&rng) % (GRID_BYTES / 4096)) * 512;
			for (int i = 0; i < 512; i++)
				p[i] = p[i] * 6364136223846793005ull + (uint64_t)step + (uint64_t)i;
			sum += p[step % 512];
		}
		char line[128];
		int n = snprintf(line, sizeof line, "step %ld sum %016llx\n", step, (unsigned long long)sum);
		put(dir, "journal.txt", line, (size_t)n, 0, O_APPEND);
		put(dir, "data.bin", grid + (step % 1024) * 512, 4096, (off_t)(next(&rng) % 64) * 4096, 0);
		n = snprintf(line, sizeof line, "%ld\n", step);
		put(dir, "state.txt", line, (size_t)n, 0, O_TRUNC);
		if (ctl && pauses && paused_at(pauses, step)) {
			char p[4096];
			snprintf(p, sizeof p, "%s/ready.%ld", ctl, step);
			close(open(p, O_WRONLY | O_CREAT, 0644));
			snprintf(p, sizeof p, "%s/go.%ld", ctl, step);
			while (access(p, F_OK))
				nanosleep(&(struct timespec){0, 10000000}, NULL);
		}
		if (step == die_at && ctl) { /* once: a restarted copy goes on */
			char p[4096];
			snprintf(p, sizeof p, "%s/died", ctl);
			if (access(p, F_OK)) {
				close(open(p, O_WRONLY | O_CREAT, 0644));
				raise(SIGKILL);
			}
		}
	}
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < GRID_BYTES / 8; i++)
		h = (h ^ grid[i]) * 1099511628211ull;
	char out[128];
	int n = snprintf(out, sizeof out, "steps %ld grid %016llx sum %016llx\n", steps, (unsigned long long)h,
	                 (unsigned long long)sum);
	put(dir, "result.txt", out, (size_t)n, 0, O_TRUNC);
	fputs(out, stdout);
	free(grid);
	return 0;
}

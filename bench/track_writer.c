/*
 * track_writer.c — the application of bench_track.py, run unmodified under
 * `metamori run`. It waits for commands on a FIFO (one per line) and answers
 * on another, so the driver can ask for a checkpoint between intervals while
 * the writer is alive and idle, and can measure the pause the writer sees.
 *
 *   interval            W1: rewrite 1% of all 4 KiB blocks of f00..f(N-1).bin at
 *                       random with new random data (pwrite), append APPEND bytes
 *                       to log.txt (O_APPEND write). Answers "ok BYTES BLOCKS" and
 *                       writes the blocks ("file block" lines) to BLOCKS_DIR/N.
 *   touch K [RANGE]     many-files: pwrite one random 4 KiB block into K random
 *                       files m/dXXX/fYYYYYY among the first RANGE (default: all).
 *                       Answers "ok BYTES".
 *   probe start         a thread pwrites 8 bytes at offset 0 of heartbeat.bin
 *                       every ~100 us, timing each call.
 *   probe stop          answers "ok MAX_NS CALLS SLOW_CALLS" (calls > 1 ms).
 *   memcpy BYTES        answers "ok NS": one memcpy of BYTES (pre-faulted buffers).
 *   quit                exits 0.
 *
 * usage: track_writer CMD_FIFO RESP_FIFO ROOT NFILES FILE_SIZE APPEND SEED BLOCKS_DIR [MANY]
 * Build: cc -O2 -pthread -o track_writer track_writer.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096

static uint64_t rng_state;
static uint64_t rnd(void) /* splitmix64 */
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
static void fill(void *p, size_t n)
{
	uint64_t *q = p;
	for (size_t i = 0; i < n / 8; i++)
		q[i] = rnd();
}
static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static void die(const char *what)
{
	fprintf(stderr, "track_writer: %s: %s\n", what, strerror(errno));
	exit(1);
}

static const char *root;
static int nfiles, many;
static long long file_size, append_bytes;
static const char *blocks_dir;
static int interval_no;

static atomic_int probe_run;
static uint64_t probe_max, probe_calls, probe_slow;
static void *probe(void *arg)
{
	(void)arg;
	char path[4096];
	snprintf(path, sizeof path, "%s/heartbeat.bin", root);
	int fd = open(path, O_WRONLY | O_CREAT, 0644);
	if (fd < 0)
		die("heartbeat.bin");
	uint64_t mx = 0, calls = 0, slow = 0;
	while (atomic_load(&probe_run)) {
		uint64_t t0 = now_ns();
		if (pwrite(fd, &t0, sizeof t0, 0) != sizeof t0)
			die("pwrite heartbeat");
		uint64_t d = now_ns() - t0;
		if (d > mx)
			mx = d;
		if (d > 1000000)
			slow++;
		calls++;
		struct timespec ts = {0, 100000};
		nanosleep(&ts, NULL);
	}
	close(fd);
	probe_max = mx, probe_calls = calls, probe_slow = slow;
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void do_interval(FILE *resp)
{
	long long bpf = file_size / BLOCK, nblocks = bpf * nfiles;
	long long k = (nblocks + 50) / 100;
	if (k < 1)
		k = 1;
	/* k distinct blocks: draw, sort, drop duplicates, top up */
	uint64_t *pick = malloc(sizeof *pick * (size_t)k);
	long long have = 0;
	while (have < k) {
		for (long long i = have; i < k; i++)
			pick[i] = rnd() % (uint64_t)nblocks;
		qsort(pick, (size_t)k, sizeof *pick, cmp_u64);
		have = 0;
		for (long long i = 0; i < k; i++)
			if (!have || pick[i] != pick[have - 1])
				pick[have++] = pick[i];
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/%d", blocks_dir, ++interval_no);
	FILE *bl = fopen(path, "w");
	if (!bl)
		die(path);
	unsigned char buf[BLOCK];
	int fd = -1, cur = -1;
	for (long long i = 0; i < k; i++) {
		int fi = (int)(pick[i] / (uint64_t)bpf);
		long long bi = (long long)(pick[i] % (uint64_t)bpf);
		if (fi != cur) {
			if (fd >= 0)
				close(fd);
			snprintf(path, sizeof path, "%s/f%02d.bin", root, fi);
			if ((fd = open(path, O_WRONLY)) < 0)
				die(path);
			cur = fi;
		}
		fill(buf, BLOCK);
		if (pwrite(fd, buf, BLOCK, bi * BLOCK) != BLOCK)
			die("pwrite");
		fprintf(bl, "%d %lld\n", fi, bi);
	}
	if (fd >= 0)
		close(fd);
	fclose(bl);
	free(pick);
	snprintf(path, sizeof path, "%s/log.txt", root);
	if ((fd = open(path, O_WRONLY | O_APPEND)) < 0)
		die(path);
	unsigned char *ab = malloc((size_t)append_bytes);
	fill(ab, (size_t)append_bytes);
	if (write(fd, ab, (size_t)append_bytes) != append_bytes)
		die("append");
	close(fd);
	free(ab);
	fprintf(resp, "ok %lld %lld\n", k * BLOCK + append_bytes, k);
}

static void do_touch(FILE *resp, long k, long range)
{
	char path[4096];
	unsigned char buf[BLOCK];
	long long bytes = 0;
	for (long i = 0; i < k; i++) {
		long f = (long)(rnd() % (uint64_t)(range > 0 && range < many ? range : many));
		snprintf(path, sizeof path, "%s/m/d%03ld/f%06ld", root, f / 200, f);
		int fd = open(path, O_WRONLY);
		if (fd < 0)
			die(path);
		fill(buf, BLOCK);
		if (pwrite(fd, buf, BLOCK, (off_t)(rnd() % 4) * BLOCK) != BLOCK)
			die("pwrite");
		close(fd);
		bytes += BLOCK;
	}
	fprintf(resp, "ok %lld\n", bytes);
}

int main(int argc, char **argv)
{
	if (argc < 9) {
		fprintf(stderr, "usage: track_writer CMD_FIFO RESP_FIFO ROOT NFILES FILE_SIZE APPEND SEED BLOCKS_DIR [MANY]\n");
		return 2;
	}
	root = argv[3];
	nfiles = atoi(argv[4]);
	file_size = atoll(argv[5]);
	append_bytes = atoll(argv[6]);
	rng_state = strtoull(argv[7], NULL, 10);
	blocks_dir = argv[8];
	many = argc > 9 ? atoi(argv[9]) : 0;
	FILE *cmd = fopen(argv[1], "r");
	if (!cmd)
		die(argv[1]);
	FILE *resp = fopen(argv[2], "w");
	if (!resp)
		die(argv[2]);
	setvbuf(resp, NULL, _IOLBF, 0);
	pthread_t th;
	char line[256];
	while (fgets(line, sizeof line, cmd)) {
		long long n, range = 0;
		if (!strncmp(line, "interval", 8)) {
			do_interval(resp);
		} else if (sscanf(line, "touch %lld %lld", &n, &range) >= 1) {
			do_touch(resp, (long)n, (long)range);
		} else if (!strncmp(line, "probe start", 11)) {
			atomic_store(&probe_run, 1);
			pthread_create(&th, NULL, probe, NULL);
			fprintf(resp, "ok\n");
		} else if (!strncmp(line, "probe stop", 10)) {
			atomic_store(&probe_run, 0);
			pthread_join(th, NULL);
			fprintf(resp, "ok %llu %llu %llu\n", (unsigned long long)probe_max,
			        (unsigned long long)probe_calls, (unsigned long long)probe_slow);
		} else if (sscanf(line, "memcpy %lld", &n) == 1) {
			char *a = malloc((size_t)n), *b = malloc((size_t)n);
			memset(a, 1, (size_t)n);
			memset(b, 2, (size_t)n);
			uint64_t best = UINT64_MAX;
			for (int r = 0; r < 5; r++) {
				uint64_t t0 = now_ns();
				memcpy(b, a, (size_t)n);
				__asm__ volatile("" ::"r"(b) : "memory");
				uint64_t d = now_ns() - t0;
				if (d < best)
					best = d;
			}
			free(a);
			free(b);
			fprintf(resp, "ok %llu\n", (unsigned long long)best);
		} else if (!strncmp(line, "quit", 4)) {
			fprintf(resp, "ok\n");
			return 0;
		} else {
			fprintf(resp, "error unknown command\n");
		}
	}
	return 0;
}

/*
 * mpi_job.c — a small MPI job for tests/mpi: each rank keeps its state in
 * files under its tree (ranks r < size/2 share TREE_A, the others TREE_B:
 * two simulated nodes), exchanges a value with its neighbours every step,
 * and calls mtm_mpi_checkpoint at the end of each step (the safe point).
 *
 *   mpi_job TREE_A TREE_B STEPS [--recover] [--no-checkpoint] [--sleep MS]
 *
 * Files per rank (in its tree): r<N>/state.bin (64 KiB: one 4 KiB block
 * rewritten per step, from the old state and the neighbours' values),
 * r<N>/log.txt (a line appended per step), r<N>/step (the last step done).
 * The result depends only on STEPS: a run killed and recovered must end
 * with the same bytes as one that was not. --recover first calls
 * mtm_mpi_recover and continues from the step the restored files hold
 * (from scratch when no epoch was committed). Prints "epoch E" per step on
 * rank 0, and "recovered E" after a recovery; exits 3 on a checkpoint error
 * after printing it (rank 0).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "metamori_mpi.h"

#define STATE (64 * 1024)
#define BLK 4096

static char dir[4096];

static void path(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", dir, name); }

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

static int read_step(void)
{
	char p[4200];
	path(p, sizeof p, "step");
	FILE *f = fopen(p, "r");
	int s = 0;
	if (f) {
		if (fscanf(f, "%d", &s) != 1)
			s = 0;
		fclose(f);
	}
	return s;
}

static void die(const char *what)
{
	fprintf(stderr, "mpi_job: %s: %s\n", what, strerror(errno));
	MPI_Abort(MPI_COMM_WORLD, 2);
}

/* A fresh start: no committed epoch, whatever a killed run left goes. */
static void reset(void)
{
	const char *names[] = {"state.bin", "log.txt", "step"};
	for (int i = 0; i < 3; i++) {
		char p[4200];
		path(p, sizeof p, names[i]);
		unlink(p);
	}
}

static void do_step(int step, int rank, int size)
{
	char p[4200];
	path(p, sizeof p, "state.bin");
	int fd = open(p, O_RDWR | O_CREAT, 0644);
	if (fd < 0 || ftruncate(fd, STATE))
		die(p);
	unsigned char blk[BLK];
	int b = step % (STATE / BLK);
	if (pread(fd, blk, BLK, (off_t)b * BLK) != BLK)
		die("read state");
	uint64_t mine = mix((uint64_t)step * 1000003u + (uint64_t)rank), left = 0, right = 0;
	memcpy(&mine, blk, 8); /* the state's first word feeds the exchange */
	mine = mix(mine + (uint64_t)step);
	int l = (rank + size - 1) % size, r = (rank + 1) % size;
	MPI_Sendrecv(&mine, 1, MPI_UINT64_T, r, 1, &left, 1, MPI_UINT64_T, l, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
	MPI_Sendrecv(&mine, 1, MPI_UINT64_T, l, 2, &right, 1, MPI_UINT64_T, r, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
	uint64_t x = mine ^ mix(left) ^ mix(right + 1);
	for (int i = 0; i < BLK; i += 8) {
		x = mix(x + (uint64_t)i);
		memcpy(blk + i, &x, 8);
	}
	if (pwrite(fd, blk, BLK, (off_t)b * BLK) != BLK || close(fd))
		die("write state");
	path(p, sizeof p, "log.txt");
	FILE *f = fopen(p, "a");
	if (!f || fprintf(f, "step %d rank %d left %016llx right %016llx\n", step, rank, (unsigned long long)left,
	                  (unsigned long long)right) < 0 || fclose(f))
		die("log");
	path(p, sizeof p, "step");
	f = fopen(p, "w");
	if (!f || fprintf(f, "%d\n", step) < 0 || fclose(f))
		die("step");
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	int rank, size;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if (argc < 4) {
		if (!rank)
			fprintf(stderr, "usage: mpi_job TREE_A TREE_B STEPS [--recover] [--no-checkpoint] [--sleep MS]\n");
		MPI_Finalize();
		return 2;
	}
	const char *tree = rank < size / 2 ? argv[1] : argv[2];
	int steps = atoi(argv[3]), recover = 0, ckpt = 1, sleep_ms = 0;
	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--recover"))
			recover = 1;
		else if (!strcmp(argv[i], "--no-checkpoint"))
			ckpt = 0;
		else if (!strcmp(argv[i], "--sleep") && i + 1 < argc)
			sleep_ms = atoi(argv[++i]);
	}
	snprintf(dir, sizeof dir, "%s/r%d", tree, rank);
	if (mkdir(dir, 0755) && errno != EEXIST)
		die(dir);
	int start = 0;
	if (recover) {
		uint64_t e = 0;
		int rc = mtm_mpi_recover(MPI_COMM_WORLD, tree, &e);
		if (rc) {
			if (!rank)
				printf("recover failed: %d: %s\n", rc, mtm_mpi_last_error());
			MPI_Finalize();
			return 3;
		}
		if (!e)
			reset();
		start = e ? read_step() : 0;
		if (!rank)
			printf("recovered %llu\n", (unsigned long long)e);
	}
	int status = 0;
	for (int step = start + 1; step <= steps; step++) {
		do_step(step, rank, size);
		if (ckpt) {
			uint64_t e = 0;
			int rc = mtm_mpi_checkpoint(MPI_COMM_WORLD, tree, NULL, &e);
			if (rc) {
				/* every rank has the same code and text */
				printf("rank %d: checkpoint failed (epoch %llu): %d: %s\n", rank, (unsigned long long)e, rc,
				       mtm_mpi_last_error());
				status = 3;
				break;
			}
			if (!rank)
				printf("epoch %llu\n", (unsigned long long)e);
		}
		fflush(stdout);
		if (sleep_ms)
			nanosleep(&(struct timespec){sleep_ms / 1000, (sleep_ms % 1000) * 1000000L}, NULL);
	}
	MPI_Finalize();
	return status;
}

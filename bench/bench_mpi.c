/*
 * bench_mpi.c — the cost of mtm_mpi_checkpoint (bench_mpi.py compiles and
 * runs it under mpirun). Ranks r < size/2 write into TREE_A, the others
 * into TREE_B (two simulated nodes); each rank rewrites 64 KiB of its file
 * per iteration, then:
 *   one:  MPI_Barrier, rank 0 checkpoints TREE_A's store (mtm_checkpoint,
 *         the single-store checkpoint), MPI_Barrier
 *   each: MPI_Barrier, each tree's first rank checkpoints its store (two
 *         single-store checkpoints at once, uncoordinated: no commit),
 *         MPI_Barrier
 *   mpi:  mtm_mpi_checkpoint (both stores, two phases, tags)
 * Prints per mode the median and p90 wall time of an iteration's
 * checkpoint step on rank 0, in ms.
 *   bench_mpi TREE_A TREE_B ITERS
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "metamori_mpi.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void write_step(const char *file, int it)
{
	int fd = open(file, O_RDWR | O_CREAT, 0644);
	static char buf[65536];
	memset(buf, 'a' + it % 26, sizeof buf);
	snprintf(buf, 32, "iteration %d", it);
	if (fd < 0 || pwrite(fd, buf, sizeof buf, (off_t)((it % 16 + 16) % 16) * (off_t)sizeof buf) != (ssize_t)sizeof buf) {
		perror(file);
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	close(fd);
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	int rank, size;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if (argc != 4) {
		MPI_Finalize();
		return 2;
	}
	const char *tree = rank < size / 2 ? argv[1] : argv[2];
	int iters = atoi(argv[3]);
	char file[4096];
	snprintf(file, sizeof file, "%s/rank%d.bin", tree, rank);
	double *t = calloc((size_t)iters, sizeof *t);
	const char *modes[] = {"one", "each", "mpi"};
	/* the first rank of each tree (the group's leader in mtm_mpi_checkpoint) */
	int first = rank == 0 || rank == size / 2;
	for (int mode = 0; mode < 3; mode++) {
		for (int it = -2; it < iters; it++) { /* two warm-up iterations */
			write_step(file, it + 100 * mode);
			double t0 = now_ms();
			if (mode < 2) {
				MPI_Barrier(MPI_COMM_WORLD);
				if (mode == 0 ? rank == 0 : first) {
					mtm_store *s;
					mtm_checkpoint_info ci;
					if (mtm_open(&s, tree) || mtm_checkpoint(s, NULL, &ci)) {
						fprintf(stderr, "bench_mpi: %s\n", mtm_last_error());
						MPI_Abort(MPI_COMM_WORLD, 3);
					}
					mtm_free(ci.message);
					mtm_close(s);
				}
				MPI_Barrier(MPI_COMM_WORLD);
			} else {
				uint64_t e;
				if (mtm_mpi_checkpoint(MPI_COMM_WORLD, tree, NULL, &e)) {
					fprintf(stderr, "bench_mpi: %s\n", mtm_mpi_last_error());
					MPI_Abort(MPI_COMM_WORLD, 3);
				}
			}
			if (it >= 0)
				t[it] = now_ms() - t0;
		}
		if (rank == 0) {
			qsort(t, (size_t)iters, sizeof *t, cmp);
			printf("%s %d %.3f %.3f\n", modes[mode], size, t[iters / 2], t[(iters * 9) / 10]);
			fflush(stdout);
		}
	}
	free(t);
	MPI_Finalize();
	return 0;
}

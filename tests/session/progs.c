/*
 * progs.c — small writers for the session tests, each a way programs change
 * files: threads, fork, stdio, O_APPEND, and a lockstep pair for the
 * consistency test. Built by the test with the system compiler.
 *
 *   progs threads N     per "step" line on stdin: N threads pwrite records into
 *                       threads.dat and write() their own t<i>.log; prints "ok"
 *   progs fork N        a long-lived child plus, per step, N short-lived children
 *                       writing fork<i>.dat and pwrite into fork.dat; "ok"
 *   progs stdio         a FILE* kept open; per step fprintf lines, fflush on odd
 *                       steps only (the rest stays in the buffer); "ok"
 *   progs append        an O_APPEND log, a line per step; "ok"
 *   progs mmap          a shared writable mapping of mmap.dat, changed per step; "ok"
 *   progs lockstep      until stdin closes: write the counter into every block of
 *                       A, then of B (one pwrite each)
 *   progs scatter [B [U]]  until stdin closes: block (n * 2654435761) % B (256 if
 *                       not given) of D gets n, then J gets n; U us of sleep every
 *                       64 writes (inotify's queue keeps up)
 *   progs letgo         per "step" line: db opened read-write, a block read, closed
 *                       (nothing written); per "map" line: m opened read-write,
 *                       "MAPW" written at 4096 through a shared mapping, unmapped,
 *                       closed; "ok" after each
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int step_wait(void)
{
	char line[64];
	if (!fgets(line, sizeof line, stdin))
		return 0;
	return strncmp(line, "step", 4) == 0;
}

static void ok(void)
{
	printf("ok\n");
	fflush(stdout);
}

static void die(const char *what)
{
	perror(what);
	exit(2);
}

typedef struct { int id, step; } targ;

static void *thread_main(void *p)
{
	targ *a = p;
	int fd = open("threads.dat", O_WRONLY | O_CREAT, 0644);
	char path[32];
	snprintf(path, sizeof path, "t%d.log", a->id);
	int lfd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0 || lfd < 0)
		die("open");
	for (int k = 0; k < 37; k++) {
		char rec[100];
		memset(rec, 'a' + a->id % 26, sizeof rec);
		int n = snprintf(rec, sizeof rec, "thread %d step %d rec %d", a->id, a->step, k);
		rec[n] = ' ';
		off_t off = ((off_t)a->id * 1000 + (off_t)a->step * 37 + k) * (off_t)sizeof rec;
		if (pwrite(fd, rec, sizeof rec, off) != (ssize_t)sizeof rec || write(lfd, rec, 40) != 40)
			die("write");
	}
	close(fd);
	close(lfd);
	return NULL;
}

static int threads(int n)
{
	for (int step = 0; step_wait(); step++) {
		pthread_t th[64];
		targ args[64];
		for (int i = 0; i < n; i++) {
			args[i] = (targ){i, step};
			pthread_create(&th[i], NULL, thread_main, &args[i]);
		}
		for (int i = 0; i < n; i++)
			pthread_join(th[i], NULL);
		ok();
	}
	return 0;
}

static void child_write(int id, int step)
{
	char path[32], buf[3000];
	snprintf(path, sizeof path, "fork%d.dat", id);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int sfd = open("fork.dat", O_WRONLY | O_CREAT, 0644);
	if (fd < 0 || sfd < 0)
		die("open");
	memset(buf, '0' + (id + step) % 10, sizeof buf);
	snprintf(buf, 40, "child %d step %d", id, step);
	if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf ||
	    pwrite(sfd, buf, 512, (off_t)id * 8192 + (off_t)step * 512) != 512)
		die("write");
	close(fd);
	close(sfd);
}

static int forks(int n)
{
	/* a child that lives through every step: it writes after each "step" it
	 * is told of through a pipe, and acks through another */
	int to[2], from[2];
	if (pipe(to) || pipe(from))
		die("pipe");
	pid_t keeper = fork();
	if (keeper == 0) {
		close(to[1]);
		close(from[0]);
		char c;
		for (int step = 0; read(to[0], &c, 1) == 1; step++) {
			int fd = open("keeper.dat", O_WRONLY | O_CREAT | O_APPEND, 0644);
			char line[64];
			int len = snprintf(line, sizeof line, "keeper step %d\n", step);
			if (fd < 0 || write(fd, line, (size_t)len) != len)
				die("keeper");
			close(fd);
			if (write(from[1], "k", 1) != 1)
				die("ack");
		}
		_exit(0);
	}
	close(to[0]);
	close(from[1]);
	for (int step = 0; step_wait(); step++) {
		for (int i = 0; i < n; i++) {
			pid_t p = fork();
			if (p == 0) {
				child_write(i, step);
				_exit(0);
			}
		}
		for (int i = 0; i < n; i++)
			wait(NULL);
		char c;
		if (write(to[1], "s", 1) != 1 || read(from[0], &c, 1) != 1)
			die("keeper pipe");
		ok();
	}
	close(to[1]);
	waitpid(keeper, NULL, 0);
	return 0;
}

static int stdio_writer(void)
{
	FILE *f = fopen("stdio.txt", "w");
	if (!f)
		die("fopen");
	for (int step = 0; step_wait(); step++) {
		for (int i = 0; i < 200; i++)
			fprintf(f, "stdio step %d line %d\n", step, i);
		if (step % 2)
			fflush(f);
		ok();
	}
	fclose(f);
	return 0;
}

static int appender(void)
{
	int fd = open("append.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0)
		die("open");
	for (int step = 0; step_wait(); step++) {
		for (int i = 0; i < 50; i++) {
			char line[64];
			int n = snprintf(line, sizeof line, "log step %d entry %d\n", step, i);
			if (write(fd, line, (size_t)n) != n)
				die("write");
		}
		ok();
	}
	close(fd);
	return 0;
}

static int mapper(void)
{
	const size_t len = 64 * 4096;
	int fd = open("mmap.dat", O_RDWR | O_CREAT, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)len))
		die("open");
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	close(fd);
	for (int step = 0; step_wait(); step++) {
		for (int i = 0; i < 5; i++)
			snprintf(p + ((size_t)(step * 7 + i * 13) % 64) * 4096 + 100, 64, "mapped step %d write %d", step, i);
		ok();
	}
	munmap(p, len);
	return 0;
}

static int letgo(void)
{
	char line[64], buf[4096];
	while (fgets(line, sizeof line, stdin)) {
		int map = !strncmp(line, "map", 3);
		int fd = open(map ? "m" : "db", O_RDWR);
		if (fd < 0)
			die("open");
		if (map) {
			char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			if (p == MAP_FAILED)
				die("mmap");
			memcpy(p + 4096, "MAPW", 4);
			munmap(p, 8192);
		} else if (pread(fd, buf, sizeof buf, 0) < 0) {
			die("pread");
		}
		close(fd);
		ok();
	}
	return 0;
}

static int stdin_closed(void)
{
	struct pollfd pf = {0, POLLIN, 0};
	if (poll(&pf, 1, 0) <= 0)
		return 0;
	char c;
	return read(0, &c, 1) <= 0;
}

static int lockstep(void)
{
	const size_t blocks = 64, len = blocks * 4096;
	uint64_t *buf = malloc(len);
	int a = open("A", O_WRONLY | O_CREAT, 0644), b = open("B", O_WRONLY | O_CREAT, 0644);
	if (!buf || a < 0 || b < 0)
		die("open");
	for (uint64_t n = 1;; n++) {
		for (size_t i = 0; i < len / 8; i++)
			buf[i] = n;
		if (pwrite(a, buf, len, 0) != (ssize_t)len || pwrite(b, buf, len, 0) != (ssize_t)len)
			die("pwrite");
		if (n % 64 == 0 && stdin_closed())
			break;
	}
	return 0;
}

/* Blocks of D written one at a time in a fixed pseudo-random order, the
 * number of the last one done written to J after each: at any consistent
 * moment J says which value every block of D holds. */
static int scatter(int blocks, int pause_us)
{
	uint64_t buf[512];
	int d = open("D", O_WRONLY | O_CREAT, 0644), j = open("J", O_WRONLY | O_CREAT, 0644);
	if (d < 0 || j < 0 || ftruncate(d, (off_t)blocks * 4096))
		die("open");
	for (uint64_t n = 1;; n++) {
		for (int i = 0; i < 512; i++)
			buf[i] = n;
		off_t k = (off_t)((n * 2654435761u) % (uint64_t)blocks);
		if (pwrite(d, buf, 4096, k * 4096) != 4096 || pwrite(j, buf, 8, 0) != 8)
			die("pwrite");
		if (pause_us && n % 64 == 0)
			usleep((useconds_t)pause_us);
		if (n % 256 == 0 && stdin_closed())
			break;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int n = argc > 2 ? atoi(argv[2]) : 4;
	if (!strcmp(argv[1], "threads"))
		return threads(n);
	if (!strcmp(argv[1], "fork"))
		return forks(n);
	if (!strcmp(argv[1], "stdio"))
		return stdio_writer();
	if (!strcmp(argv[1], "append"))
		return appender();
	if (!strcmp(argv[1], "mmap"))
		return mapper();
	if (!strcmp(argv[1], "lockstep"))
		return lockstep();
	if (!strcmp(argv[1], "letgo"))
		return letgo();
	if (!strcmp(argv[1], "scatter"))
		return scatter(argc > 2 ? n : 256, argc > 3 ? atoi(argv[3]) : 0);
	return 2;
}

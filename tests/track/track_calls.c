/*
 * track_calls.c — one modifying call (or a small scenario) per subcommand,
 * run in the tracked tree by test_track.py under the interposer, which then
 * checks the records. Built three ways (see CMakeLists.txt): with
 * _FILE_OFFSET_BITS=64 (open64, pwrite64, ...), without it (open, pwrite),
 * and with _FORTIFY_SOURCE=2 (__open_2 and friends).
 *
 * Exit 0: done; 77: not supported here (printed reason); else failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utime.h>

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif

extern char **environ;

static void die(const char *what)
{
	fprintf(stderr, "track_calls: %s: %s\n", what, strerror(errno));
	exit(1);
}
#define CK(x) \
	do { \
		if ((x) < 0) \
			die(#x); \
	} while (0)
static void skip(const char *why)
{
	printf("skip: %s\n", why);
	exit(77);
}

static char buf[1 << 16];
static volatile int vflags; /* non-constant flags: fortified open becomes __open_2 */

static int rw(const char *p) { int fd = open(p, O_RDWR); CK(fd); return fd; }

static int c_open_creat(char **a) { int fd = open("a", O_WRONLY | O_CREAT, 0644); CK(fd); return close(fd); }
static int c_open_excl(char **a) { int fd = open("a", O_WRONLY | O_CREAT | O_EXCL, 0644); CK(fd); return close(fd); }
static int c_open_trunc(char **a) { int fd = open("a", O_WRONLY | O_TRUNC); CK(fd); return close(fd); }
static int c_open_rdonly(char **a) { int fd = open("a", O_RDONLY); CK(fd); CK(read(fd, buf, 10)); return close(fd); }
static int c_open_var(char **a)
{
	vflags = O_WRONLY | O_TRUNC;
	int fd = open("a", vflags); /* __open_2 when fortified */
	CK(fd);
	return close(fd);
}
static int c_openat_var(char **a)
{
	int d = open("d", O_RDONLY | O_DIRECTORY);
	CK(d);
	vflags = O_WRONLY | O_TRUNC;
	int fd = openat(d, "b", vflags); /* __openat_2 when fortified */
	CK(fd);
	return close(fd);
}
static int c_openat_creat(char **a)
{
	int d = open("d", O_RDONLY | O_DIRECTORY);
	CK(d);
	int fd = openat(d, "b", O_WRONLY | O_CREAT, 0644);
	CK(fd);
	CK(write(fd, "0123456789", 10));
	return close(fd);
}
static int c_creat(char **a) { int fd = creat("c", 0644); CK(fd); CK(write(fd, "xy", 2)); return close(fd); }
static int c_write(char **a)
{
	int fd = rw("a");
	CK(lseek(fd, 5000, SEEK_SET));
	CK(write(fd, buf, 100));
	return close(fd);
}
static int c_pwrite(char **a) { int fd = rw("a"); CK(pwrite(fd, buf, 100, 8192)); return close(fd); }
static int c_writev(char **a)
{
	int fd = rw("a");
	struct iovec iov[2] = {{buf, 10}, {buf, 20}};
	CK(lseek(fd, 100, SEEK_SET));
	CK(writev(fd, iov, 2));
	return close(fd);
}
static int c_pwritev(char **a)
{
	int fd = rw("a");
	struct iovec iov[2] = {{buf, 10}, {buf, 20}};
	CK(pwritev(fd, iov, 2, 4096));
	return close(fd);
}
static int c_pwritev2(char **a)
{
	int fd = rw("a");
	struct iovec iov[1] = {{buf, 30}};
	CK(pwritev2(fd, iov, 1, 20000, 0));
	CK(lseek(fd, 300, SEEK_SET));
	CK(pwritev2(fd, iov, 1, -1, 0)); /* at the position */
	return close(fd);
}
static int c_append(char **a)
{
	int fd = open("a", O_WRONLY | O_APPEND);
	CK(fd);
	CK(write(fd, buf, 10));
	CK(write(fd, buf, 10));
	return close(fd);
}
static int c_append_setfl(char **a)
{
	int fd = rw("a");
	CK(fcntl(fd, F_SETFL, O_APPEND));
	CK(write(fd, buf, 7));
	return close(fd);
}
static int c_ftruncate(char **a) { int fd = rw("a"); CK(ftruncate(fd, 123)); return close(fd); }
static int c_truncate(char **a) { return truncate("a", 77); }
static int c_fallocate(char **a)
{
	int fd = rw("a");
	if (fallocate(fd, 0, 4096, 8192) != 0)
		skip("fallocate not supported here");
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) != 0)
		skip("punch hole not supported here");
	return close(fd);
}
static int c_posix_fallocate(char **a)
{
	int fd = rw("a");
	if (posix_fallocate(fd, 0, 16384) != 0)
		die("posix_fallocate");
	return close(fd);
}
static int c_copy_file_range(char **a)
{
	int in = open("src", O_RDONLY), out = rw("a");
	CK(in);
	off_t io = 0, oo = 4096;
	ssize_t n = copy_file_range(in, &io, out, &oo, 1000, 0);
	if (n < 0 && (errno == ENOSYS || errno == EXDEV || errno == EOPNOTSUPP))
		skip("copy_file_range not supported here");
	CK(n);
	/* and at the position */
	CK(lseek(out, 50000, SEEK_SET));
	CK(copy_file_range(in, NULL, out, NULL, 100, 0));
	close(in);
	return close(out);
}
static int c_sendfile(char **a)
{
	int in = open("src", O_RDONLY), out = rw("a");
	CK(in);
	CK(lseek(out, 100, SEEK_SET));
	off_t o = 0;
	ssize_t n = sendfile(out, in, &o, 500);
	if (n < 0 && errno == EINVAL)
		skip("sendfile to a file not supported here");
	CK(n);
	close(in);
	return close(out);
}
static int c_splice(char **a)
{
	int p[2];
	CK(pipe(p));
	CK(write(p[1], buf, 300));
	int out = rw("a");
	loff_t o = 8192;
	CK(splice(p[0], NULL, out, &o, 300, 0));
	return close(out);
}
static int c_rename(char **a) { return rename("a", "b"); }
static int c_renameat(char **a)
{
	int d = open("d", O_RDONLY | O_DIRECTORY);
	CK(d);
	return renameat(AT_FDCWD, "a", d, "moved");
}
static int c_renameat2(char **a) { return renameat2(AT_FDCWD, "a", AT_FDCWD, "b", RENAME_NOREPLACE); }
static int c_rename_open(char **a)
{
	int fd = rw("a");
	CK(rename("a", "b"));
	CK(pwrite(fd, buf, 10, 40)); /* lands in b */
	return close(fd);
}
static int c_unlink(char **a) { return unlink("a"); }
static int c_unlinkat(char **a) { CK(unlinkat(AT_FDCWD, "a", 0)); return unlinkat(AT_FDCWD, "d", AT_REMOVEDIR); }
static int c_remove(char **a) { return remove("a"); }
static int c_mkdir(char **a) { CK(mkdir("n", 0755)); return mkdirat(AT_FDCWD, "n/m", 0755); }
static int c_rmdir(char **a) { return rmdir("d"); }
static int c_link(char **a) { CK(link("a", "l1")); return linkat(AT_FDCWD, "a", AT_FDCWD, "l2", 0); }
static int c_symlink(char **a) { CK(symlink("a", "s1")); return symlinkat("a", AT_FDCWD, "s2"); }
static int c_mknod(char **a) { CK(mknod("fifo1", S_IFIFO | 0644, 0)); return mkfifo("fifo2", 0644); }
static int c_chmod(char **a)
{
	CK(chmod("a", 0600));
	int fd = rw("src");
	CK(fchmod(fd, 0640));
	close(fd);
	return fchmodat(AT_FDCWD, "d", 0700, 0);
}
static int c_chown(char **a)
{
	/* a[0], a[1]: owner and group (default: ours, which changes nothing) */
	uid_t u = a[0] && a[1] ? (uid_t)atoi(a[0]) : getuid();
	gid_t g = a[0] && a[1] ? (gid_t)atoi(a[1]) : getgid();
	CK(chown("a", u, g));
	int fd = rw("src");
	CK(fchown(fd, u, g));
	close(fd);
	CK(lchown("d", u, g));
	return fchownat(AT_FDCWD, "d/b", u, g, AT_SYMLINK_NOFOLLOW);
}
static int c_utimes(char **a)
{
	struct timespec ts[2] = {{1000, 0}, {2000, 0}};
	struct timeval tv[2] = {{1000, 0}, {2000, 0}};
	struct utimbuf ub = {1000, 2000};
	CK(utimensat(AT_FDCWD, "a", ts, 0));
	CK(utime("src", &ub));
	CK(utimes("d", tv));
	CK(lutimes("d/b", tv));
	int fd = rw("c");
	CK(futimens(fd, ts));
	CK(futimes(fd, tv));
	return close(fd);
}
static int c_stdio(char **a)
{
	FILE *f = fopen("s", "w");
	if (!f)
		die("fopen");
	fprintf(f, "hello %d\n", 42);
	return fclose(f);
}
static int c_stdio_append(char **a)
{
	FILE *f = fopen("a", "a");
	if (!f)
		die("fopen");
	fputs("more\n", f);
	return fclose(f);
}
static int c_freopen(char **a)
{
	if (!freopen("s2", "w", stdout))
		die("freopen");
	printf("to s2\n");
	return 0; /* flushed at exit, never fclosed */
}
static int c_fexecve(char **a)
{
	/* a[0]: a program to run through an fd (a static one in the tests) */
	printf("%d\n", (int)getpid());
	fflush(stdout);
	int fd = open(a[0], O_RDONLY | O_CLOEXEC);
	CK(fd);
	fexecve(fd, a, environ);
	die("fexecve");
	return 1;
}
static int c_dup2_stdout(char **a)
{
	/* stdout pointed at a file of the tree by dup2, and by close + open */
	int fd = open("o1", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CK(fd);
	CK(dup2(fd, 1));
	printf("one\n");
	fflush(stdout);
	close(fd);
	close(1);
	fd = open("o2", O_WRONLY | O_CREAT | O_TRUNC, 0644); /* gets 1 */
	if (fd != 1)
		die("open did not get fd 1");
	printf("two\n");
	return 0;
}
static int c_fdopen(char **a)
{
	FILE *f = fdopen(rw("a"), "r+");
	if (!f)
		die("fdopen");
	fputs("zz", f);
	return fclose(f);
}
static int c_mmap(char **a)
{
	int fd = rw("a");
	CK(ftruncate(fd, 8192));
	char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	memcpy(p + 4096, "mapped", 6);
	CK(msync(p, 8192, MS_SYNC));
	CK(munmap(p, 8192));
	return close(fd);
}
static int c_mremap(char **a)
{
	int fd = rw("a");
	CK(ftruncate(fd, 16384));
	char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	char *q = mremap(p, 4096, 16384, MREMAP_MAYMOVE);
	if (q == MAP_FAILED)
		die("mremap");
	memcpy(q + 12288, "moved", 5);
	CK(munmap(q, 16384));
	return close(fd);
}
static int c_mmap_private(char **a)
{
	int fd = rw("a");
	char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	p[0] = 'x';
	CK(munmap(p, 4096));
	return close(fd);
}
static int c_outside(char **a)
{
	/* a[0]: a directory outside the root; nothing here may be recorded */
	char p[4096];
	snprintf(p, sizeof p, "%s/out", a[0]);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CK(fd);
	CK(write(fd, buf, 100));
	close(fd);
	snprintf(p, sizeof p, "%s/out2", a[0]);
	CK(mkdir(p, 0755));
	CK(rmdir(p));
	fd = open(".metamori/x", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CK(fd);
	CK(write(fd, buf, 100));
	return close(fd);
}
static int c_relative(char **a)
{
	CK(chdir("d"));
	int fd = open("../a", O_WRONLY);
	CK(fd);
	CK(pwrite(fd, buf, 10, 0));
	close(fd);
	fd = open("./sub/../b", O_WRONLY | O_CREAT, 0644); /* sub does not exist: ENOENT */
	if (fd >= 0)
		close(fd);
	fd = open("b", O_WRONLY | O_CREAT, 0644);
	CK(fd);
	return close(fd);
}
static int c_symlinked_dir(char **a)
{
	/* dl -> d (inside the root): the change is recorded as d/... */
	int fd = open("dl/b", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CK(fd);
	CK(write(fd, buf, 5));
	close(fd);
	CK(chmod("dl/b", 0600));
	return unlink("dl/b");
}
static int c_tmpfile(char **a)
{
	int fd = open(".", O_TMPFILE | O_WRONLY, 0644);
	if (fd < 0)
		skip("O_TMPFILE not supported here");
	CK(write(fd, buf, 10));
	char p[64];
	snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
	CK(linkat(AT_FDCWD, p, AT_FDCWD, "t", AT_SYMLINK_FOLLOW));
	CK(pwrite(fd, buf, 10, 4096));
	return close(fd);
}
static int c_mkstemp(char **a)
{
	char t[] = "tmpXXXXXX";
	int fd = mkstemp(t);
	CK(fd);
	CK(write(fd, buf, 10));
	printf("%s\n", t);
	char d[] = "dirXXXXXX";
	if (!mkdtemp(d))
		die("mkdtemp");
	printf("%s\n", d);
	return close(fd);
}
static int c_mkostemps_append(char **a)
{
	/* the flags are mkostemps' third argument (its second is the suffix's
	 * length): on an O_APPEND fd, Linux's pwrite appends, whatever the offset */
	char t[] = "tmpXXXXXX.dat";
	int fd = mkostemps(t, 4, O_APPEND);
	CK(fd);
	CK(write(fd, buf, 10));
	CK(pwrite(fd, buf, 10, 0));
	printf("%s\n", t);
	return close(fd);
}
static int c_hardlink(char **a)
{
	/* a change through one name of a file with several */
	CK(link("a", "h"));
	int fd = rw("h");
	CK(pwrite(fd, "other name", 10, 0));
	close(fd);
	CK(chmod("h", 0600));
	return unlink("h");
}
static int c_dup(char **a)
{
	int fd = rw("a");
	int d1 = dup(fd);
	CK(d1);
	CK(dup2(fd, 50));
	int d3 = fcntl(fd, F_DUPFD_CLOEXEC, 60);
	CK(d3);
	close(fd);
	CK(pwrite(d1, buf, 1, 0));
	CK(pwrite(50, buf, 1, 4096));
	CK(pwrite(d3, buf, 1, 8192));
	/* dup2 an untracked fd over a tracked one: no longer tracked */
	int nul = open("/dev/null", O_WRONLY);
	CK(dup2(nul, 50));
	CK(write(50, buf, 10));
	return 0;
}
static int c_closefrom(char **a)
{
	/* a program closing every fd must not close the log (and its lock) */
	closefrom(3);
	int fd = rw("a");
	CK(pwrite(fd, buf, 10, 0));
	close(fd);
	for (int i = 3; i < 64; i++)
		close(i);
	fd = rw("a");
	CK(pwrite(fd, buf, 10, 100));
	return close(fd);
}

struct tharg { int fd, i; };
static void *th(void *p)
{
	struct tharg *t = p;
	char b[4096];
	memset(b, 'a' + t->i, sizeof b);
	for (int k = 0; k < 64; k++)
		if (pwrite(t->fd, b, sizeof b, ((off_t)k * 8 + t->i) * 4096) != 4096)
			die("pwrite");
	return NULL;
}
static int c_threads(char **a)
{
	int fd = open("a", O_RDWR | O_CREAT | O_TRUNC, 0644);
	CK(fd);
	pthread_t t[8];
	struct tharg ar[8];
	for (int i = 0; i < 8; i++) {
		ar[i] = (struct tharg){fd, i};
		pthread_create(&t[i], NULL, th, &ar[i]);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	/* and sequential writes from several threads on one fd */
	return close(fd);
}
static int c_fork(char **a)
{
	int fd = rw("a");
	CK(pwrite(fd, buf, 10, 0));
	pid_t p = fork();
	CK(p);
	if (p == 0) {
		if (pwrite(fd, buf, 10, 100) != 10)
			_exit(1);
		int f2 = open("child", O_WRONLY | O_CREAT, 0644);
		_exit(f2 < 0);
	}
	int st;
	waitpid(p, &st, 0);
	printf("%d\n", (int)p);
	CK(pwrite(fd, buf, 10, 200));
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
static int c_vfork(char **a)
{
	int fd = rw("a");
	pid_t p = vfork();
	CK(p);
	if (p == 0) {
		char *argv[] = {"sh", "-c", "echo v > vf", NULL};
		execv("/bin/sh", argv);
		_exit(127);
	}
	int st;
	waitpid(p, &st, 0);
	CK(pwrite(fd, buf, 10, 300)); /* the parent's table survived the child */
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
static int c_exec_env(char **a)
{
	/* a custom environment without LD_PRELOAD: the child stays tracked */
	char *argv[] = {"sh", "-c", "echo e > e1", NULL};
	char *envp[] = {"PATH=/usr/bin:/bin", NULL};
	pid_t p = fork();
	CK(p);
	if (p == 0) {
		execve("/bin/sh", argv, envp);
		_exit(127);
	}
	int st;
	waitpid(p, &st, 0);
	/* posix_spawn with an empty environment */
	char *argv2[] = {"sh", "-c", "echo e > e2", NULL};
	char *empty[] = {NULL};
	pid_t q;
	if (posix_spawn(&q, "/bin/sh", NULL, NULL, argv2, empty) != 0)
		die("posix_spawn");
	waitpid(q, &st, 0);
	/* execlp with the environment emptied */
	p = fork();
	CK(p);
	if (p == 0) {
		clearenv();
		setenv("PATH", "/usr/bin:/bin", 1);
		execlp("sh", "sh", "-c", "echo e > e3", (char *)NULL);
		_exit(127);
	}
	waitpid(p, &st, 0);
	return 0;
}
static int c_exec(char **a)
{
	/* a[0]: the program to exec (a static one in the tests); a[1..]: its args */
	printf("%d\n", (int)getpid());
	fflush(stdout);
	int fd = rw("a");
	CK(pwrite(fd, buf, 10, 0)); /* creates our log before exec */
	close(fd);
	execv(a[0], a);
	die("execv");
	return 1;
}
static int c_spawn_static(char **a)
{
	pid_t q;
	int st;
	if (posix_spawn(&q, a[0], NULL, NULL, a, environ) != 0)
		die("posix_spawn");
	waitpid(q, &st, 0);
	printf("%d\n", (int)getpid());
	return 0;
}
static int c_io_uring(char **a)
{
	char params[120];
	memset(params, 0, sizeof params);
	long r = syscall(SYS_io_uring_setup, 4, params);
	if (r < 0)
		skip("io_uring_setup not permitted here");
	return close((int)r);
}
static int c_wait_write(char **a)
{
	/* opens, says so, then writes: the harness holds the gate meanwhile */
	int fd = rw("a");
	printf("ready\n");
	fflush(stdout);
	char c;
	if (read(0, &c, 1) != 1) /* go */
		die("read");
	CK(pwrite(fd, "BARRIER!", 8, 0));
	printf("done\n");
	fflush(stdout);
	return close(fd);
}
static int c_fifo(char **a)
{
	/* a FIFO in the tree: writing to it changes no file, and a write that
	 * blocks must not be inside the in-flight region */
	int fd = open("p", O_RDWR);
	CK(fd);
	printf("ready\n");
	fflush(stdout);
	static char big[200000];
	CK(write(fd, big, sizeof big)); /* blocks until the harness reads */
	int f2 = rw("a");
	CK(pwrite(f2, "z", 1, 0));
	return close(fd);
}
static int c_sticky_overflow(char **a)
{
	/* the log fills up, then a stream is opened: its sticky WHOLE is lost
	 * until the session empties the log, and must be said again then */
	int fd = open("a", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CK(fd);
	long n = atol(a[0]);
	for (long i = 0; i < n; i++)
		CK(pwrite(fd, buf, 1, (i & 1) * 8192));
	FILE *f = fopen("s", "w");
	if (!f)
		die("fopen");
	fputs("stream\n", f);
	fflush(f);
	printf("full\n");
	fflush(stdout);
	char c;
	if (read(0, &c, 1) != 1)
		die("read");
	CK(pwrite(fd, buf, 1, 100));
	printf("done\n");
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	fclose(f);
	return close(fd);
}
static int c_hold(char **a)
{
	/* write, then wait for stdin to close: the log is locked meanwhile */
	int fd = rw("a");
	CK(pwrite(fd, buf, 10, 0));
	printf("ready\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		;
	return close(fd);
}
static int c_stdout(char **a)
{
	/* stdout redirected into the tree before exec */
	printf("via stdio\n");
	fflush(stdout);
	CK(write(1, "via write\n", 10));
	return 0;
}
static int c_many(char **a)
{
	/* sequential writes coalesce into one record */
	int fd = open("a", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CK(fd);
	for (int i = 0; i < 1000; i++)
		CK(write(fd, buf, 4096));
	return close(fd);
}
static int c_overflow(char **a)
{
	/* more records than the log holds: hdr->overflow */
	int fd = open("a", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CK(fd);
	long n = atol(a[0]);
	for (long i = 0; i < n; i++)
		CK(pwrite(fd, buf, 1, (i & 1) * 8192)); /* never next to the last one */
	return close(fd);
}

/* churn: threads and a child process writing while the harness runs
 * barriers; every change between two barriers must be in the records read
 * at the second. */
static void *churn_th(void *p)
{
	struct tharg *t = p;
	unsigned seed = 1234u + (unsigned)t->i;
	char b[4096];
	for (int k = 0; k < 20000; k++) {
		memset(b, (int)(rand_r(&seed) & 0xff), sizeof b);
		off_t blk = rand_r(&seed) % 256;
		if (t->i == 0) {
			/* sequential writes at the position of a private fd */
			if (lseek(t->fd, blk * 4096, SEEK_SET) < 0 || write(t->fd, b, 1000) != 1000)
				die("write");
		} else if (pwrite(t->fd, b, 4096 - (size_t)t->i * 100, blk * 4096 + t->i * 7) < 0) {
			die("pwrite");
		}
	}
	return NULL;
}
static void *churn_app(void *p)
{
	int fd = open("log", O_WRONLY | O_APPEND | O_CREAT, 0644);
	char line[64];
	CK(fd);
	for (int k = 0; k < 20000; k++) {
		int n = snprintf(line, sizeof line, "line %d\n", k);
		CK(write(fd, line, (size_t)n));
	}
	close(fd);
	return NULL;
}
static void churn_shared(int fd, char c)
{
	/* parent and child write through one open file: a shared position */
	char b[100];
	memset(b, c, sizeof b);
	for (int k = 0; k < 5000; k++)
		if (write(fd, b, sizeof b) != (ssize_t)sizeof b)
			die("write shared");
}
static int c_churn(char **a)
{
	int shared = open("c", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CK(shared);
	pid_t child = fork();
	CK(child);
	if (child == 0) {
		int fd = open("b", O_RDWR);
		CK(fd);
		struct tharg t = {fd, 5};
		churn_shared(shared, 'C');
		churn_th(&t);
		_exit(0);
	}
	churn_shared(shared, 'P');
	pthread_t t[5];
	struct tharg ar[4];
	for (int i = 0; i < 4; i++) {
		ar[i] = (struct tharg){open("a", O_RDWR), i};
		CK(ar[i].fd);
		pthread_create(&t[i], NULL, churn_th, &ar[i]);
	}
	pthread_create(&t[4], NULL, churn_app, NULL);
	for (int i = 0; i < 5; i++)
		pthread_join(t[i], NULL);
	int st;
	waitpid(child, &st, 0);
	return !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static const struct {
	const char *name;
	int (*fn)(char **);
} cmds[] = {
#define C(x) {#x, c_##x}
	C(open_creat), C(open_excl), C(open_trunc), C(open_rdonly), C(open_var), C(openat_var),
	C(openat_creat), C(creat), C(write), C(pwrite), C(writev), C(pwritev), C(pwritev2),
	C(append), C(append_setfl), C(ftruncate), C(truncate), C(fallocate), C(posix_fallocate),
	C(copy_file_range), C(sendfile), C(splice), C(rename), C(renameat), C(renameat2),
	C(rename_open), C(unlink), C(unlinkat), C(remove), C(mkdir), C(rmdir), C(link), C(symlink),
	C(mknod), C(chmod), C(chown), C(utimes), C(stdio), C(stdio_append), C(freopen), C(dup2_stdout), C(fexecve), C(fdopen), C(mmap),
	C(mmap_private), C(mremap), C(outside), C(relative), C(symlinked_dir), C(tmpfile), C(mkstemp), C(mkostemps_append), C(hardlink), C(dup),
	C(closefrom), C(threads), C(fork), C(vfork), C(exec_env), C(exec), C(spawn_static),
	C(io_uring), C(wait_write), C(fifo), C(sticky_overflow), C(hold), C(stdout), C(many), C(overflow), C(churn),
#undef C
};

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: track_calls CMD [ARGS]\n");
		return 2;
	}
	memset(buf, 'q', sizeof buf);
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (strcmp(cmds[i].name, argv[1]) == 0) {
			if (cmds[i].fn(argv + 2) != 0)
				die(argv[1]);
			return 0;
		}
	fprintf(stderr, "track_calls: unknown command %s\n", argv[1]);
	return 2;
}

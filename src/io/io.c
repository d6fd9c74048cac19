/* io.c — system calls with fault injection; see io.h for the contract. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/io.h"

static struct {
	int loaded;
	int op;            /* -1: any */
	uint64_t nth;      /* 0: no fault */
	int err;           /* errno, or -1 for a short transfer */
	int always;
	uint64_t crash_at; /* 0: never */
	uint64_t seen[IO_NOPS + 1];
	uint64_t mutations;
	char count_file[512];
} plan;

static const char *op_names[IO_NOPS] = {"open", "read", "write", "fsync", "rename", "truncate", "unlink", "mkdir"};

static void write_count(void)
{
	FILE *f = fopen(plan.count_file, "w");
	if (f) {
		fprintf(f, "%llu\n", (unsigned long long)plan.mutations);
		fclose(f);
	}
}

static void load_plan(void)
{
	plan.loaded = 1;
	if (getauxval(AT_SECURE))
		return;
	const char *f = getenv("METAMORI_FAULT");
	if (f && *f) {
		char op[16] = "", err[16] = "", mode[16] = "";
		unsigned long long n = 0;
		if (sscanf(f, "%15[a-z]:%llu:%15[A-Za-z]:%15s", op, &n, err, mode) >= 3) {
			plan.op = -2;
			if (!strcmp(op, "any"))
				plan.op = -1;
			for (int i = 0; i < IO_NOPS; i++)
				if (!strcmp(op, op_names[i]))
					plan.op = i;
			plan.nth = plan.op == -2 ? 0 : n;
			plan.err = !strcmp(err, "ENOSPC") ? ENOSPC : !strcmp(err, "EINTR") ? EINTR
			         : !strcmp(err, "EDQUOT") ? EDQUOT : !strcmp(err, "short") ? -1 : EIO;
			plan.always = !strcmp(mode, "always");
		}
	}
	const char *c = getenv("METAMORI_CRASH_AT");
	if (c && *c)
		plan.crash_at = strtoull(c, NULL, 10);
	const char *cf = getenv("METAMORI_IO_COUNT");
	if (cf && *cf && strlen(cf) < sizeof plan.count_file) {
		strcpy(plan.count_file, cf);
		atexit(write_count);
	}
}

uint64_t io_mutations(void) { return plan.mutations; }

int io_fault(enum io_op op)
{
	if (!plan.loaded)
		load_plan();
	if (op != IO_OPEN && op != IO_READ) {
		plan.mutations++;
		if (plan.crash_at && plan.mutations == plan.crash_at) {
			if (plan.count_file[0])
				write_count();
			kill(getpid(), SIGKILL);
		}
	}
	if (!plan.nth)
		return 0;
	uint64_t n = ++plan.seen[op];
	uint64_t any = ++plan.seen[IO_NOPS];
	uint64_t k = plan.op == -1 ? any : (plan.op == (int)op ? n : 0);
	if (k && (k == plan.nth || (plan.always && k > plan.nth)))
		return plan.err;
	return 0;
}

int io_openat(int dirfd, const char *path, int flags, mode_t mode, int *fd_out)
{
	int f = io_fault(IO_OPEN);
	if (f > 0)
		return f;
	int fd;
	do
		fd = openat(dirfd, path, flags | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return errno;
	*fd_out = fd;
	return 0;
}

int io_close(int fd) { return close(fd) ? errno : 0; }

int io_pread(int fd, void *buf, size_t len, off_t off, size_t *got)
{
	size_t done = 0;
	while (done < len) {
		int f = io_fault(IO_READ);
		if (f > 0 && f != EINTR)
			return f;
		size_t want = len - done;
		if (f == -1 && want > 1)
			want /= 2; /* injected short read: the loop must carry on */
		ssize_t r = f == EINTR ? (errno = EINTR, -1) : pread(fd, (char *)buf + done, want, off + (off_t)done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	*got = done;
	return 0;
}

int io_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	size_t done = 0;
	while (done < len) {
		int f = io_fault(IO_WRITE);
		if (f > 0 && f != EINTR)
			return f;
		size_t want = len - done;
		if (f == -1 && want > 1)
			want /= 2; /* injected short write */
		ssize_t r = f == EINTR ? (errno = EINTR, -1) : pwrite(fd, (const char *)buf + done, want, off + (off_t)done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (r == 0)
			return EIO;
		done += (size_t)r;
	}
	return 0;
}

/* A failed fsync is reported, never retried: the kernel may already have
 * marked the failed pages clean, so a second fsync could "succeed" while
 * the data is gone. EINTR cannot happen for fsync on Linux. */
int io_fsync(int fd)
{
	int f = io_fault(IO_FSYNC);
	if (f > 0)
		return f == EINTR ? EIO : f;
	return fsync(fd) ? errno : 0;
}

int io_fdatasync(int fd)
{
	int f = io_fault(IO_FSYNC);
	if (f > 0)
		return f == EINTR ? EIO : f;
	return fdatasync(fd) ? errno : 0;
}

int io_renameat(int olddir, const char *oldpath, int newdir, const char *newpath)
{
	int f = io_fault(IO_RENAME);
	if (f > 0)
		return f == EINTR ? EIO : f;
	return renameat(olddir, oldpath, newdir, newpath) ? errno : 0;
}

int io_ftruncate(int fd, off_t len)
{
	int f = io_fault(IO_TRUNCATE);
	if (f > 0)
		return f == EINTR ? EIO : f;
	int r;
	do
		r = ftruncate(fd, len);
	while (r && errno == EINTR);
	return r ? errno : 0;
}

int io_unlinkat(int dirfd, const char *path, int flags)
{
	int f = io_fault(IO_UNLINK);
	if (f > 0)
		return f == EINTR ? EIO : f;
	return unlinkat(dirfd, path, flags) ? errno : 0;
}

int io_mkdirat(int dirfd, const char *path, mode_t mode)
{
	int f = io_fault(IO_MKDIR);
	if (f > 0)
		return f == EINTR ? EIO : f;
	return mkdirat(dirfd, path, mode) ? errno : 0;
}

int io_symlinkat(const char *target, int dirfd, const char *path)
{
	int f = io_fault(IO_MKDIR);
	if (f > 0)
		return f == EINTR ? EIO : f;
	return symlinkat(target, dirfd, path) ? errno : 0;
}

int io_punch_hole(int fd, off_t off, off_t len)
{
	int f = io_fault(IO_WRITE);
	if (f > 0 && f != EINTR && f != -1)
		return f;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return errno;
	static const char zeros[65536];
	while (len > 0) {
		size_t n = len > (off_t)sizeof zeros ? sizeof zeros : (size_t)len;
		int rc = io_pwrite(fd, zeros, n, off);
		if (rc)
			return rc;
		off += (off_t)n;
		len -= (off_t)n;
	}
	return 0;
}

int io_fsync_dirat(int dirfd, const char *path)
{
	int fd, rc = io_openat(dirfd, path, O_RDONLY | O_DIRECTORY, 0, &fd);
	if (rc)
		return rc;
	rc = io_fsync(fd);
	close(fd);
	return rc;
}

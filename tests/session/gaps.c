/*
 * gaps.c — writes through the ways the interposer's wrappers may not see
 * (tests/session/test_session_sound.py): each subcommand writes "GAP!" at
 * offset 4096 of FILE by one mechanism, after a plain (recorded) pwrite of
 * "REC!" at offset 0 of the same file, so the session cannot take the file's
 * recorded write as the only one.
 *
 *   gaps aio FILE      libaio's io_submit        gaps lio FILE   lio_listio
 *   gaps rawsys FILE   an inline syscall instruction (x86-64), without the
 *                      recorded write first (no wrapper can see it: the
 *                      session's watcher must)
 *   gaps mixed FILE [READY GO]  the recorded pwrite, then the inline syscall:
 *                      one process, one file, one interval, two ways (with
 *                      READY GO: creates READY, then waits for GO to exist,
 *                      so that the checkpoint finds the writer alive)
 *   gaps sys FILE      syscall(SYS_pwritev)      gaps procfd FILE  a reopen of /proc/self/fd/N
 *   gaps sysopen FILE [READY GO]  the file opened again with syscall(SYS_openat),
 *                      written through that fd
 *   gaps sysmmap FILE [READY GO]  the file mapped with syscall(SYS_mmap), written
 *                      through the mapping
 *   gaps handle FILE [READY GO]  the file opened again by its handle
 *                      (open_by_handle_at: root), written through that fd
 *   gaps scm FILE      an fd received over a unix socket (SCM_RIGHTS)
 *   gaps pidfd FILE    an fd taken from a child by pidfd_getfd
 *   gaps later FILE OTHER READY GO DONE END  lives across checkpoints: writes
 *                      FILE, creates READY, waits for GO, then the recorded pwrite on FILE
 *                      and the inline syscall on OTHER, creates DONE, waits
 *                      for END (syscall user dispatch: both recorded)
 *   gaps later FILE OTHER READY GO DONE END dlopen   the same, loading a
 *                      library (new code) after GO, before the writes
 */
#define _GNU_SOURCE
#include <aio.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <libaio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static const char GAP[] = "GAP!";

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void gap_aio(int fd)
{
	io_context_t ctx = 0;
	if (io_setup(4, &ctx))
		die("io_setup");
	struct iocb cb, *cbs[1] = {&cb};
	io_prep_pwrite(&cb, fd, (void *)GAP, 4, 4096);
	if (io_submit(ctx, 1, cbs) != 1)
		die("io_submit");
	struct io_event ev;
	if (io_getevents(ctx, 1, 1, &ev, NULL) != 1)
		die("io_getevents");
	io_destroy(ctx);
}

static void gap_lio(int fd)
{
	struct aiocb cb;
	memset(&cb, 0, sizeof cb);
	cb.aio_fildes = fd;
	cb.aio_buf = (void *)GAP;
	cb.aio_nbytes = 4;
	cb.aio_offset = 4096;
	cb.aio_lio_opcode = LIO_WRITE;
	struct aiocb *list[1] = {&cb};
	if (lio_listio(LIO_WAIT, list, 1, NULL))
		die("lio_listio");
}

static void gap_rawsys(int fd)
{
#if defined(__x86_64__)
	long ret;
	long off = 4096;
	__asm__ volatile("mov %5, %%r10\n\tsyscall"
	                 : "=a"(ret)
	                 : "0"(SYS_pwrite64), "D"(fd), "S"(GAP), "d"(4L), "r"(off)
	                 : "rcx", "r11", "r10", "memory");
	if (ret != 4)
		die("raw pwrite64");
#else
	exit(77);
#endif
}

static void gap_sys(int fd)
{
	struct iovec iov = {(void *)GAP, 4};
	if (syscall(SYS_pwritev, fd, &iov, 1, 4096L, 0L) != 4)
		die("syscall(SYS_pwritev)");
}

/* glibc's syscall() is a function the interposer wraps: what it opens or
 * maps is tracked as open() and mmap() are */
static void gap_sysopen(const char *file)
{
	int fd = (int)syscall(SYS_openat, AT_FDCWD, file, O_WRONLY, 0);
	if (fd < 0 || pwrite(fd, GAP, 4, 4096) != 4)
		die("syscall(SYS_openat)");
	close(fd);
}

static void gap_sysmmap(const char *file)
{
	int fd = open(file, O_RDWR);
	char *p = fd < 0 ? MAP_FAILED : (char *)syscall(SYS_mmap, NULL, 8192L, (long)(PROT_READ | PROT_WRITE),
	                                               (long)MAP_SHARED, (long)fd, 0L);
	if (p == MAP_FAILED)
		die("syscall(SYS_mmap)");
	memcpy(p + 4096, GAP, 4);
	munmap(p, 8192);
	close(fd);
}

static void gap_handle(const char *file)
{
	struct file_handle *fh = malloc(sizeof *fh + MAX_HANDLE_SZ);
	int mount_id, mfd = open(file, O_RDONLY);
	fh->handle_bytes = MAX_HANDLE_SZ;
	if (mfd < 0 || name_to_handle_at(AT_FDCWD, file, fh, &mount_id, 0))
		die("name_to_handle_at");
	int fd = open_by_handle_at(mfd, fh, O_WRONLY);
	if (fd < 0 || pwrite(fd, GAP, 4, 4096) != 4)
		die("open_by_handle_at");
	close(fd);
	close(mfd);
	free(fh);
}

static void gap_procfd(const char *file)
{
	int ro = open(file, O_RDONLY);
	char p[64];
	snprintf(p, sizeof p, "/proc/self/fd/%d", ro);
	int fd = open(p, O_WRONLY);
	if (ro < 0 || fd < 0)
		die("open /proc/self/fd/N");
	if (pwrite(fd, GAP, 4, 4096) != 4)
		die("pwrite");
	close(fd);
	close(ro);
}

static void gap_scm(const char *file)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		die("socketpair");
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(file, O_WRONLY);
		char c = 'x';
		struct iovec iov = {&c, 1};
		union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } u;
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof fd);
		_exit(sendmsg(sv[1], &m, 0) == 1 ? 0 : 1);
	}
	char c;
	struct iovec iov = {&c, 1};
	union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } u;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
	if (recvmsg(sv[0], &m, 0) != 1)
		die("recvmsg");
	int fd;
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
	waitpid(pid, NULL, 0);
	if (pwrite(fd, GAP, 4, 4096) != 4)
		die("pwrite");
	close(fd);
}

static void gap_pidfd(const char *file)
{
	int pipefd[2];
	if (pipe(pipefd))
		die("pipe");
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(file, O_WRONLY);
		if (write(pipefd[1], &fd, sizeof fd) != sizeof fd)
			_exit(1);
		pause();
		_exit(0);
	}
	int target;
	if (read(pipefd[0], &target, sizeof target) != sizeof target)
		die("read");
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int fd = pfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pfd, target, 0);
	if (fd < 0)
		die("pidfd_getfd");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	if (pwrite(fd, GAP, 4, 4096) != 4)
		die("pwrite");
	close(fd);
}

static void wait_for(const char *path)
{
	while (access(path, F_OK))
		usleep(10000);
}

int main(int argc, char **argv)
{
	if ((argc == 8 || (argc == 9 && !strcmp(argv[8], "dlopen"))) && !strcmp(argv[1], "later")) {
		int fd = open(argv[2], O_WRONLY), other = open(argv[3], O_WRONLY);
		if (fd < 0 || other < 0 || pwrite(fd, "BORN", 4, 8192) != 4) /* its log made: known at once */
			die("open");
		close(creat(argv[4], 0644));
		wait_for(argv[5]);
		if (argc == 9 && !dlopen("libm.so.6", RTLD_NOW)) /* (not linked in: its code is mapped now) */
			die("dlopen");
		if (pwrite(fd, "REC!", 4, 0) != 4)
			die("pwrite");
		gap_rawsys(other);
		close(creat(argv[6], 0644));
		wait_for(argv[7]);
		return 0;
	}
	if (argc != 3 && argc != 5)
		return 2;
	const char *how = argv[1], *file = argv[2];
	int fd = open(file, O_WRONLY);
	if (fd < 0 || (strcmp(how, "rawsys") && pwrite(fd, "REC!", 4, 0) != 4))
		die(file);
	if (!strcmp(how, "aio"))
		gap_aio(fd);
	else if (!strcmp(how, "lio"))
		gap_lio(fd);
	else if (!strcmp(how, "rawsys") || !strcmp(how, "mixed"))
		gap_rawsys(fd);
	else if (!strcmp(how, "sys"))
		gap_sys(fd);
	else if (!strcmp(how, "procfd"))
		gap_procfd(file);
	else if (!strcmp(how, "sysopen"))
		gap_sysopen(file);
	else if (!strcmp(how, "sysmmap"))
		gap_sysmmap(file);
	else if (!strcmp(how, "handle"))
		gap_handle(file);
	else if (!strcmp(how, "scm"))
		gap_scm(file);
	else if (!strcmp(how, "pidfd"))
		gap_pidfd(file);
	else
		return 2;
	close(fd);
	if (argc == 5) {
		close(creat(argv[3], 0644));
		while (access(argv[4], F_OK))
			usleep(10000);
	}
	return 0;
}

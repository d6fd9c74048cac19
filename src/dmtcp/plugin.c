/*
 * plugin.c — libmetamori-dmtcp.so, Metamori's DMTCP plugin (issue 18):
 * DMTCP checkpoints a program's memory, Metamori its files, and each DMTCP
 * checkpoint is paired with one file checkpoint made at its barrier.
 *
 *   METAMORI_DMTCP_TREE=DIR METAMORI_DMTCP_CLI=/path/to/metamori \
 *     dmtcp_launch --with-plugin libmetamori-dmtcp.so PROG ...
 *
 * PRECHECKPOINT (every user thread is suspended, nothing writes the tree):
 *   `metamori -C DIR checkpoint -q -m "dmtcp image: IMAGE"` runs, and the id
 *   it prints is kept in this library's memory, which is in the image: the
 *   image carries the id of the file checkpoint that agrees with it, and the
 *   checkpoint's message names the image.
 * RESTART (before any user thread runs again):
 *   `metamori -C DIR restore ID` puts the tree back as it was at the image's
 *   checkpoint. An image whose file checkpoint failed has no id: its
 *   restart is refused (the process exits 75 with one line on stderr), so a
 *   failed file checkpoint fails the pair.
 *
 * The CLI is a separate process: a thread of ours in the program would be
 * refused by DMTCP at its barrier (the pack writer's flusher is one). It is
 * started with raw system calls (clone, execve, wait4), not through libc's
 * fork/waitpid that DMTCP wraps (their locks are held at the barrier, and
 * its pid virtualisation must not see our child), and with an environment
 * without DMTCP's preload, so it does not join the computation.
 *
 * Links only against DMTCP's installed header; the library never prints
 * except the one refusal line (it is the program's stderr then).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dmtcp.h> /* DMTCP's installed header (build/deps/include) */

#define EXIT_REFUSED 75

/* In the image: the file checkpoint paired with it (0: none, -1: failed). */
static long long paired_id;
static char tree[4096], cli[4096];

extern char **environ;

/* A system call that no wrapper sees: DMTCP wraps libc's syscall() too (and
 * refuses clone through it). */
#if defined(__x86_64__)
static long raw(long n, long a, long b, long c, long d)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = 0;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
	return ret;
}
#else
#error "libmetamori-dmtcp: raw system calls are written for x86_64 only"
#endif

/* Runs CLI with args (NULL-terminated, argv[0] included); its stdout (up to
 * outlen - 1 bytes) into out. Returns its exit status, or -1. */
static int run_cli(char *const argv[], char *out, size_t outlen)
{
	char tmpl[] = "/tmp/metamori-dmtcp-XXXXXX";
	int fd = mkstemp(tmpl);
	if (fd < 0)
		return -1;
	unlink(tmpl);
	/* the environment without DMTCP's hooks */
	static char *env[256];
	size_t n = 0;
	for (char **e = environ; *e && n < 255; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "DMTCP_", 6))
			env[n++] = *e;
	env[n] = NULL;
	/* no exit signal: the program's SIGCHLD handler (and DMTCP, which would
	 * raise a pending SIGCHLD again on restart) never hear of our child */
	long pid = raw(SYS_clone, 0, 0, 0, 0);
	if (pid == 0) {
		raw(SYS_dup2, fd, 1, 0, 0);
		raw(SYS_execve, (long)cli, (long)argv, (long)env, 0);
		raw(SYS_exit_group, 127, 0, 0, 0);
	}
	int status = -1;
	if (pid > 0) {
		long w;
		while ((w = raw(SYS_wait4, pid, (long)&status, __WALL, 0)) == -EINTR)
			;
		if (w != pid)
			status = -1;
	}
	ssize_t got = pread(fd, out, outlen - 1, 0);
	out[got > 0 ? got : 0] = 0;
	close(fd);
	if (pid <= 0 || status == -1 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void precheckpoint(void)
{
	if (!tree[0])
		return;
	const char *image = dmtcp_get_ckpt_filename();
	char msg[4200], out[64];
	snprintf(msg, sizeof msg, "dmtcp image: %s", image ? image : "?");
	char *argv[] = {cli, "-C", tree, "checkpoint", "-q", "-m", msg, NULL};
	int rc = run_cli(argv, out, sizeof out);
	long long id = rc == 0 ? strtoll(out, NULL, 10) : 0;
	paired_id = id > 0 ? id : -1;
}

static void restart(void)
{
	if (!tree[0])
		return;
	char id[32], out[64];
	if (paired_id <= 0) {
		dprintf(2, "metamori: restart: %s: this image has no file checkpoint (it failed when the image was made)\n",
		        tree);
		raw(SYS_exit_group, EXIT_REFUSED, 0, 0, 0);
	}
	snprintf(id, sizeof id, "%lld", paired_id);
	char *argv[] = {cli, "-C", tree, "restore", id, NULL};
	if (run_cli(argv, out, sizeof out) != 0) {
		dprintf(2, "metamori: restart: %s: could not restore checkpoint %s\n", tree, id);
		raw(SYS_exit_group, EXIT_REFUSED, 0, 0, 0);
	}
}

static void init(void)
{
	const char *t = getenv("METAMORI_DMTCP_TREE"), *c = getenv("METAMORI_DMTCP_CLI");
	if (!t || !c || strlen(t) >= sizeof tree || strlen(c) >= sizeof cli)
		return; /* not configured: a plain DMTCP run */
	strcpy(tree, t);
	strcpy(cli, c);
}

static void hook(DmtcpEvent_t event, DmtcpEventData_t *data)
{
	(void)data;
	switch (event) {
	case DMTCP_EVENT_INIT:
		init();
		break;
	case DMTCP_EVENT_PRECHECKPOINT:
		precheckpoint();
		break;
	case DMTCP_EVENT_RESTART:
		restart();
		break;
	default:
		break;
	}
}

static DmtcpPluginDescriptor_t metamori_plugin = {
	DMTCP_PLUGIN_API_VERSION, DMTCP_PACKAGE_VERSION, "metamori", "Metamori", "metamori@localhost",
	"pairs each DMTCP checkpoint with a Metamori file checkpoint", hook};

DMTCP_DECL_PLUGIN(metamori_plugin);

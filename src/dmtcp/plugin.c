/*
 * plugin.c — libmetamori-dmtcp.so, Metamori's DMTCP plugin (issue 18):
 * DMTCP checkpoints a program's memory, Metamori its files, and each DMTCP
 * checkpoint is paired with one file checkpoint made at its barrier.
 * `metamori run --dmtcp -- CMD` starts CMD so (src/cli/dmtcp_pair.c):
 *
 *   METAMORI_DMTCP_TREE=DIR METAMORI_DMTCP_CLI=/path/to/metamori \
 *     dmtcp_launch --with-plugin libmetamori-dmtcp.so PROG ...
 *
 * PRECHECKPOINT (every user thread is suspended, nothing writes the tree;
 * the interposer keeps DMTCP from suspending a thread inside its in-flight
 * region):
 *   `metamori -C DIR checkpoint -q -m dmtcp` runs (a running session makes
 *   it, tracked), and the id it prints is kept in this library's memory,
 *   which is in the image: the image carries the id of the file checkpoint
 *   that agrees with it. The image is written into DIR/.metamori/dmtcp/ID/
 *   (dmtcp_set_ckpt_dir). Then the interposer detaches from the session:
 *   its ctl and log are unmapped, so they are in no image. This plugin
 *   registers before DMTCP's own (DMTCP_DECL_PLUGIN calls the next
 *   library's registration after its own, and plugins come first in
 *   LD_PRELOAD), so its PRECHECKPOINT runs before DMTCP's file plugin lists
 *   the shared mappings it would save (and write back at restart, over the
 *   next session's files), and its RESUME and RESTART run after DMTCP has
 *   put the program's own descriptors and mappings back.
 * RESUME (the image is complete): the interposer attaches again; the tag
 *   dmtcp-ID names the checkpoint, which says "its image is complete, in
 *   .metamori/dmtcp/ID" and pins it against prune; DIR/.metamori/dmtcp/last
 *   says how the pair went, for the `metamori checkpoint` that asked.
 * RESTART (before any user thread runs again):
 *   the tree must be as it was at the image's checkpoint (`metamori
 *   restart` restores it first): it is compared with `metamori diff ID`,
 *   and if it differs the restart is refused (the process exits 75 with
 *   one line and the list of differences on stderr). An image whose file
 *   checkpoint failed has no id and is refused too, so a failed file
 *   checkpoint fails the pair. Then the interposer attaches to the session
 *   `metamori restart` started, so later checkpoints work as before.
 *
 * Only the process dmtcp_launch started pairs (the variables are removed
 * from its environment; a forked child forgets them).
 *
 * The CLI is a separate process: a thread of ours in the program would be
 * refused by DMTCP at its barrier (the pack writer's flusher is one). It is
 * started with raw system calls (clone, execve, wait4), not through libc's
 * fork/waitpid that DMTCP wraps (their locks are held at the barrier, and
 * its pid virtualisation must not see our child), and with an environment
 * without DMTCP's preload, so it does not join the computation. Files are
 * written with raw system calls too: DMTCP's wrappers would count them as
 * the program's.
 *
 * Links only against DMTCP's installed header; the library never prints
 * except the refusal (it is the program's stderr then).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dlfcn.h>
#include <dmtcp.h> /* DMTCP's installed header (build/deps/include) */

#define EXIT_REFUSED 75
#define OUT_MAX 65536 /* what is kept of the CLI's output */
#define TAG_TRIES 250   /* x 20 ms */

/* In the image: the file checkpoint paired with it (0: none, -1: failed). */
static long long paired_id;
static char tree[PATH_MAX], cli[PATH_MAX];
static char failure[512]; /* why the last file checkpoint failed */
static char out[OUT_MAX];

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

/* Runs the CLI with args (NULL-terminated, argv[0] included), its stdout
 * and stderr into out. Returns its exit status, or -1. */
static int run_cli(char *const argv[])
{
	out[0] = 0;
	int fd = (int)raw(SYS_memfd_create, (long)"metamori-dmtcp", MFD_CLOEXEC, 0, 0);
	if (fd < 0)
		return -1;
	/* the environment without DMTCP's hooks; the CLI knows it is the
	 * pairing's own request (not one that asks DMTCP for a checkpoint) */
	static char *env[256];
	static char barrier[] = "METAMORI_DMTCP_BARRIER=1";
	size_t n = 0;
	for (char **e = environ; *e && n < 254; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "DMTCP_", 6))
			env[n++] = *e;
	env[n++] = barrier;
	env[n] = NULL;
	/* no exit signal: the program's SIGCHLD handler (and DMTCP, which would
	 * raise a pending SIGCHLD again on restart) never hear of our child */
	long pid = raw(SYS_clone, 0, 0, 0, 0);
	if (pid == 0) {
		raw(SYS_dup2, fd, 1, 0, 0);
		raw(SYS_dup2, fd, 2, 0, 0);
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
	long got = raw(SYS_pread64, fd, (long)out, OUT_MAX - 1, 0);
	out[got > 0 ? got : 0] = 0;
	raw(SYS_close, fd, 0, 0, 0);
	if (pid <= 0 || status == -1 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* TREE/.metamori/dmtcp[/ID] */
static void images_dir(char *buf, size_t len, long long id)
{
	if (id > 0)
		snprintf(buf, len, "%s/.metamori/dmtcp/%lld", tree, id);
	else
		snprintf(buf, len, "%s/.metamori/dmtcp", tree);
}

/* DIR/.metamori/dmtcp/last: "ok ID" or "failed WHY", replaced atomically. */
static void write_result(void)
{
	char dir[PATH_MAX + 64], tmp[PATH_MAX + 96], final[PATH_MAX + 96], line[700];
	images_dir(dir, sizeof dir, 0);
	snprintf(tmp, sizeof tmp, "%s/last.tmp", dir);
	snprintf(final, sizeof final, "%s/last", dir);
	int n = paired_id > 0 ? snprintf(line, sizeof line, "ok %lld\n", paired_id)
	                      : snprintf(line, sizeof line, "failed %s\n", failure);
	long fd = raw(SYS_open, (long)tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600, 0);
	if (fd < 0)
		return;
	long w = raw(SYS_write, fd, (long)line, n, 0);
	raw(SYS_close, fd, 0, 0, 0);
	if (w == n)
		raw(SYS_rename, (long)tmp, (long)final, 0, 0);
}

/* The interposer (libmetamori-preload.so, in the same process): detach
 * from the session around the image, attach after. Absent (not traced by a
 * session): nothing to do. */
static void interposer(const char *name, int arg)
{
	void (*fn)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, name);
	if (fn)
		fn(arg);
}

static void precheckpoint(void)
{
	if (!tree[0]) {
		interposer("metamori_preload_detach", 0);
		return;
	}
	paired_id = -1;
	/* `metamori checkpoint -m MSG` left MSG here before it asked DMTCP */
	char msg[600] = "dmtcp", path[PATH_MAX + 64], given[512];
	images_dir(path, sizeof path, 0);
	strcat(path, "/message");
	long fd = raw(SYS_open, (long)path, O_RDONLY | O_CLOEXEC, 0, 0);
	if (fd >= 0) {
		long n = raw(SYS_read, fd, (long)given, sizeof given - 1, 0);
		raw(SYS_close, fd, 0, 0, 0);
		raw(SYS_unlink, (long)path, 0, 0, 0);
		if (n > 0) {
			given[n] = 0;
			snprintf(msg, sizeof msg, "dmtcp: %s", given);
		}
	}
	char *argv[] = {cli, "-C", tree, "checkpoint", "-q", "-m", msg, NULL};
	int rc = run_cli(argv);
	long long id = rc == 0 ? strtoll(out, NULL, 10) : 0;
	if (id > 0) {
		char dir[PATH_MAX + 64];
		images_dir(dir, sizeof dir, 0);
		raw(SYS_mkdir, (long)dir, 0700, 0, 0);
		images_dir(dir, sizeof dir, id);
		long m = raw(SYS_mkdir, (long)dir, 0700, 0, 0);
		if ((m == 0 || m == -EEXIST) && dmtcp_set_ckpt_dir(dir) == DMTCP_IS_PRESENT)
			paired_id = id;
		else
			snprintf(failure, sizeof failure, "%.400s: cannot hold the image", dir);
	} else {
		/* the CLI's own one-line error, without its "metamori: " */
		char *line = out, *nl = strchr(out, '\n');
		if (nl)
			*nl = 0;
		if (!strncmp(line, "metamori: ", 10))
			line += 10;
		snprintf(failure, sizeof failure, "%.500s", *line ? line : rc < 0 ? "the command could not run" : "no id");
	}
	interposer("metamori_preload_detach", 0);
}

static void resume(void)
{
	interposer("metamori_preload_attach", 0);
	if (!tree[0])
		return;
	if (paired_id > 0) {
		char id[32], name[48];
		snprintf(id, sizeof id, "%lld", paired_id);
		snprintf(name, sizeof name, "dmtcp-%lld", paired_id);
		char *argv[] = {cli, "-C", tree, "tag", "-f", id, name, NULL};
		/* the session may hold the store's writer lock a moment (its idle
		 * merge, a checkpoint of its own): tag fails at once then */
		int rc = -1;
		for (int tries = 0; tries < TAG_TRIES && (rc = run_cli(argv)) != 0; tries++) {
			struct timespec wait = {0, 20000000};
			raw(SYS_nanosleep, (long)&wait, 0, 0, 0);
		}
		if (rc != 0) {
			char *why = out, *nl = strchr(out, '\n');
			if (nl)
				*nl = 0;
			if (!strncmp(why, "metamori: ", 10))
				why += 10;
			snprintf(failure, sizeof failure, "could not tag checkpoint %lld as %s: %.400s", paired_id, name, why);
			paired_id = -1;
		}
	}
	write_result();
}

static void refuse(const char *why, const char *list)
{
	dprintf(2, "metamori: restart: %s: %s\n", tree, why);
	if (list && *list)
		dprintf(2, "%s", list);
	raw(SYS_exit_group, EXIT_REFUSED, 0, 0, 0);
}

static void restart(void)
{
	if (!tree[0]) {
		interposer("metamori_preload_attach", 1);
		return;
	}
	if (paired_id <= 0)
		refuse("this image has no file checkpoint (it failed when the image was made)", NULL);
	char id[32], why[200];
	snprintf(id, sizeof id, "%lld", paired_id);
	char *argv[] = {cli, "-C", tree, "diff", id, NULL};
	int rc = run_cli(argv);
	if (rc != 0 || out[0]) {
		snprintf(why, sizeof why,
		         rc == 0 ? "the tree differs from checkpoint %lld, the image's (metamori restart %lld restores it first):"
		                 : "cannot compare the tree with checkpoint %lld, the image's:",
		         paired_id, paired_id);
		refuse(why, out);
	}
	interposer("metamori_preload_attach", 1);
}

static void init(void)
{
	interposer("metamori_preload_dmtcp_init", 0);
	const char *t = getenv("METAMORI_DMTCP_TREE"), *c = getenv("METAMORI_DMTCP_CLI");
	if (!t || !c || strlen(c) >= sizeof cli || !realpath(t, tree)) {
		tree[0] = 0;
		return; /* not configured: a plain DMTCP run */
	}
	strcpy(cli, c);
	/* only this process pairs: programs it runs are not asked again */
	unsetenv("METAMORI_DMTCP_TREE");
	unsetenv("METAMORI_DMTCP_CLI");
}

static void hook(DmtcpEvent_t event, DmtcpEventData_t *data)
{
	(void)data;
	switch (event) {
	case DMTCP_EVENT_INIT:
		init();
		break;
	case DMTCP_EVENT_ATFORK_CHILD:
		tree[0] = 0; /* the parent pairs */
		break;
	case DMTCP_EVENT_PRECHECKPOINT:
		precheckpoint();
		break;
	case DMTCP_EVENT_RESUME:
		resume();
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

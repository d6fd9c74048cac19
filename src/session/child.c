/*
 * child.c — the program a session runs: where the interposer is, the
 * program's environment (ours with the interposer and the session added;
 * a joiner's program gets the same, join.c), whether the program can load
 * the interposer at all, and its start (fork and exec, an exec failure
 * reported back through a pipe).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "session/run.h"
#include "session/session.h"
#include "track/protocol.h"
#include "util/error.h"

#define PRELOAD_NAME "libmetamori-preload.so"

/* The interposer: opts->preload, $METAMORI_PRELOAD, or next to the running
 * executable (the build directory, or an install's bin/../lib). */
int run_find_preload(const mtm_run_opts *opts, char **out)
{
	const char *p = opts->preload ? opts->preload : secure_getenv("METAMORI_PRELOAD");
	if (p && *p) {
		if (access(p, R_OK))
			return mtm_set_errno(errno, "run: %s", p);
		*out = realpath(p, NULL);
		return *out ? 0 : mtm_set_errno(errno, "run: %s", p);
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			const char *cands[] = {"%s/" PRELOAD_NAME, "%s/../lib/" PRELOAD_NAME, "%s/../lib/metamori/" PRELOAD_NAME};
			for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
				char path[PATH_MAX + 64];
				snprintf(path, sizeof path, cands[i], exe);
				if (!access(path, R_OK) && (*out = realpath(path, NULL)))
					return 0;
			}
		}
	}
	return mtm_set_error(ENOENT, "run: %s not found next to the metamori executable (set METAMORI_PRELOAD)",
	                     PRELOAD_NAME);
}

/* The file execvp would run for name, or NULL. */
static char *resolve_cmd(const char *name)
{
	if (strchr(name, '/'))
		return strdup(name);
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/bin:/usr/bin";
	while (*path) {
		const char *end = strchr(path, ':');
		size_t n = end ? (size_t)(end - path) : strlen(path);
		char *cand;
		if (asprintf(&cand, "%.*s/%s", (int)n, n ? path : ".", name) >= 0) {
			if (!access(cand, X_OK))
				return cand;
			free(cand);
		}
		path += n + (end ? 1 : 0);
	}
	return NULL;
}

/* 1 if the program cannot load the interposer: an ELF file with no
 * interpreter (static), or a script whose interpreter is one. */
static int is_untraceable(const char *file, int depth)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	unsigned char h[256];
	ssize_t n = pread(fd, h, sizeof h, 0);
	int result = 0;
	if (n >= 4 && !memcmp(h, "\177ELF", 4) && n >= 64) {
		int is64 = h[4] == 2;
		uint64_t phoff;
		uint16_t phentsize, phnum;
		if (is64) {
			memcpy(&phoff, h + 32, 8);
			memcpy(&phentsize, h + 54, 2);
			memcpy(&phnum, h + 56, 2);
		} else {
			uint32_t o;
			memcpy(&o, h + 28, 4);
			phoff = o;
			memcpy(&phentsize, h + 42, 2);
			memcpy(&phnum, h + 44, 2);
		}
		result = 1; /* static until a PT_INTERP is found */
		for (uint16_t i = 0; i < phnum && phentsize >= 4 && phentsize <= 64; i++) {
			uint32_t type;
			if (pread(fd, &type, 4, (off_t)(phoff + (uint64_t)i * phentsize)) != 4)
				break;
			if (type == 3 /* PT_INTERP */) {
				result = 0;
				break;
			}
		}
	} else if (n > 2 && h[0] == '#' && h[1] == '!' && depth < 2) {
		h[n < (ssize_t)sizeof h ? n : (ssize_t)sizeof h - 1] = 0;
		char *p = (char *)h + 2;
		while (*p == ' ' || *p == '\t')
			p++;
		char *e = p;
		while (*e && *e != ' ' && *e != '\t' && *e != '\n')
			e++;
		*e = 0;
		if (*p)
			result = is_untraceable(p, depth + 1);
	}
	close(fd);
	return result;
}

static char *env_pair(const char *name, const char *value)
{
	char *p;
	return asprintf(&p, "%s=%s", name, value) < 0 ? NULL : p;
}

/* environ for the program: ours, with the interposer and the session added. */
char **run_child_env(const char *preload, const char *session_dir, const char *root)
{
	extern char **environ;
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 4, sizeof *env);
	if (!env)
		return NULL;
	size_t k = 0;
	const char *old_preload = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!strncmp(environ[i], "LD_PRELOAD=", 11))
			old_preload = environ[i] + 11;
		else if (strncmp(environ[i], MTM_ENV_SESSION "=", strlen(MTM_ENV_SESSION) + 1) &&
		         strncmp(environ[i], MTM_ENV_ROOT "=", strlen(MTM_ENV_ROOT) + 1))
			env[k++] = environ[i];
	}
	char *pl;
	if (old_preload && *old_preload ? asprintf(&pl, "LD_PRELOAD=%s %s", old_preload, preload) < 0
	                                : asprintf(&pl, "LD_PRELOAD=%s", preload) < 0)
		pl = NULL;
	env[k++] = pl;
	env[k++] = env_pair(MTM_ENV_SESSION, session_dir);
	env[k++] = env_pair(MTM_ENV_ROOT, root);
	if (!env[k - 1] || !env[k - 2] || !env[k - 3])
		return NULL; /* the child exits on this */
	return env;
}

void run_child_env_free(char **env)
{
	if (!env)
		return;
	for (size_t i = 0; env[i]; i++)
		if (!strncmp(env[i], "LD_PRELOAD=", 11) || !strncmp(env[i], MTM_ENV_SESSION "=", strlen(MTM_ENV_SESSION) + 1) ||
		    !strncmp(env[i], MTM_ENV_ROOT "=", strlen(MTM_ENV_ROOT) + 1))
			free(env[i]);
	free(env);
}

int run_is_untraceable_cmd(const char *argv0)
{
	char *cmd = resolve_cmd(argv0);
	int r = cmd && is_untraceable(cmd, 0);
	free(cmd);
	return r;
}

/* In the child: exec the program, or write errno to the pipe (closed on a
 * successful exec: O_CLOEXEC) and exit 127. */
static void exec_or_report(char *const argv[], char **env, int wr) __attribute__((noreturn));
static void exec_or_report(char *const argv[], char **env, int wr)
{
	execvpe(argv[0], argv, env);
	int e = errno;
	if (write(wr, &e, sizeof e) < 0)
		_exit(127);
	_exit(127);
}

/* In the parent, after fork: closes both ends of the pipe; the errno the
 * child could not exec with (the child then reaped), or 0 once it ran. */
static int exec_error(int errpipe[2], pid_t pid)
{
	close(errpipe[1]);
	int exec_err = 0;
	ssize_t got;
	do
		got = read(errpipe[0], &exec_err, sizeof exec_err);
	while (got < 0 && errno == EINTR);
	close(errpipe[0]);
	if (got != (ssize_t)sizeof exec_err)
		return 0;
	waitpid(pid, NULL, 0);
	return exec_err ? exec_err : EIO;
}

int run_fork_exec(char *const argv[], char **env, void (*prepare)(const void *), const void *arg, pid_t *out,
                  int *exec_err)
{
	*exec_err = 0;
	int errpipe[2];
	if (pipe2(errpipe, O_CLOEXEC))
		return mtm_set_errno(errno, "run");
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(errpipe[0]);
		close(errpipe[1]);
		return mtm_set_errno(e, "run: fork");
	}
	if (pid == 0) {
		prepare(arg);
		exec_or_report(argv, env, errpipe[1]);
	}
	if ((*exec_err = exec_error(errpipe, pid)))
		return mtm_set_errno(*exec_err, "run: %s", argv[0]);
	*out = pid;
	return 0;
}

/* In the child: the program gets the signal state we were given. */
static void restore_signals(const void *arg)
{
	const run_signals *rs = arg;
	const int sigs[] = RUN_SIGNALS;
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		signal(sigs[i], SIG_DFL);
	pthread_sigmask(SIG_SETMASK, &rs->old, NULL);
	sigaction(SIGPIPE, &rs->old_pipe, NULL);
}

int run_spawn(char *const argv[], char **env, const run_signals *rs, pid_t *out, int *exit_status)
{
	int exec_err, rc = run_fork_exec(argv, env, restore_signals, rs, out, &exec_err);
	/* what a shell reports for a command it could not start */
	if (exec_err && exit_status)
		*exit_status = exec_err == ENOENT ? 127 : 126;
	return rc;
}

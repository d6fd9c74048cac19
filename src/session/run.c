/*
 * run.c — mtm_run: start the program under the interposer and serve
 * checkpoints until it exits.
 *
 * One thread, one poll loop over: the listening socket (requests from any
 * process), a signalfd (SIGUSR1: checkpoint; SIGCHLD: the program ended;
 * SIGTERM/SIGHUP: passed on to the program; SIGINT/SIGQUIT: ignored here,
 * the terminal delivers them to the program, which decides), and a timerfd
 * for --every. Checkpoints are made one at a time, in this thread.
 */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>
#include "checkpoint/checkpoint.h"
#include "session/session.h"
#include "session/watch.h"
#include "track/protocol.h"
#include "util/error.h"
#include "util/log.h"
#include "util/human.h"

#define PRELOAD_NAME "libmetamori-preload.so"
#define RUN_START_TRIES 150 /* x 20 ms: how long a start waits for a busy writer lock */
#define WATCH_READ_MS 5 /* the watcher's queue is read at most this often while the program runs */

/* The interposer: opts->preload, $METAMORI_PRELOAD, or next to the running
 * executable (the build directory, or an install's bin/../lib). */
static int find_preload(const mtm_run_opts *opts, char **out)
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

/* 1 if the tree differs from the head (or there is no head): the logs only
 * know what happens from now on, so the first checkpoint must scan. */
typedef struct { int any; } dirty_arg;
static int note_change(void *arg, const mtm_change *c)
{
	(void)c;
	((dirty_arg *)arg)->any = 1;
	return 1; /* stop at the first */
}

static int baseline_dirty(mtm_store *s, const mtm_run_opts *opts, int *dirty)
{
	mtm_id head;
	MTM_TRY(mtm_head(s, &head));
	if (!head) {
		*dirty = 1;
		return 0;
	}
	mtm_diff_opts d = MTM_DIFF_OPTS_INIT;
	d.excludes = opts->excludes;
	d.n_excludes = opts->n_excludes;
	dirty_arg a = {0};
	int rc = mtm_diff(s, head, MTM_LIVE, &d, note_change, &a);
	if (rc && rc != 1)
		return rc;
	*dirty = a.any;
	return 0;
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

static void report(mtm_session *ss, int rc, const mtm_checkpoint_info *ci)
{
	if (!ss->verbose || (!rc && !ci->id)) /* (nothing changed: nothing recorded, nothing to say) */
		return;
	char line[512];
	if (rc)
		log_msg(MTM_LOG_ERROR, "%s", mtm_last_error());
	else
		log_msg(MTM_LOG_INFO, "%s", session_describe(line, sizeof line, ci, ss->scan_why));
}

/* only_if_changed: the timer's ticks and the last checkpoint at exit
 * record nothing when nothing changed (unless mtm_run_opts.keep_empty). */
static void local_checkpoint(mtm_session *ss, const char *why, int only_if_changed)
{
	mtm_checkpoint_opts o = MTM_CHECKPOINT_OPTS_INIT;
	o.message = why;
	mtm_checkpoint_info ci = {0};
	int rc = only_if_changed ? session_tracked_checkpoint_if_changed(ss, &o, &ci)
	                         : session_tracked_checkpoint(ss, &o, &ci);
	report(ss, rc, &ci);
	free(ci.message);
}

int mtm_run(mtm_store *s, const mtm_run_opts *opts, char *const argv[], int *exit_status)
{
	mtm_run_opts o = MTM_RUN_OPTS_INIT;
	if (opts && opts->version == 1) /* version 1 ends before no_final */
		memcpy(&o, opts, offsetof(mtm_run_opts, no_final));
	else if (opts && opts->version == 2) /* version 2 ends before keep_empty */
		memcpy(&o, opts, offsetof(mtm_run_opts, keep_empty));
	else if (opts && opts->version == MTM_RUN_OPTS_VERSION)
		o = *opts;
	else if (opts)
		return mtm_set_error(MTM_EINVAL, "run: unsupported options version %d", opts->version);
	o.version = MTM_RUN_OPTS_VERSION;
	opts = &o;
	if (!argv || !argv[0] || !*argv[0])
		return mtm_set_error(MTM_EINVAL, "run: no command given");
	if (opts->every_seconds < 0 || opts->every_seconds > 1e9)
		return mtm_set_error(MTM_EINVAL, "run: --every must be a positive number of seconds");
	if (exit_status)
		*exit_status = 0;
	char *preload = NULL;
	MTM_TRY(find_preload(opts, &preload));
	/* A live session on this tree (another rank's `metamori run`, under
	 * mpirun): join it (join.c). Otherwise start one, with the writer lock
	 * while it starts: an in-place restore running now either finished or
	 * sees the session (it checks with the lock held); one interrupted
	 * earlier stays pending (issue 16) for `restore --continue` after it. The lock is busy
	 * while a session starts or checkpoints, and a session may be ending:
	 * try again for a few seconds. */
	int rc;
	mtm_session *ss = NULL;
	for (int attempt = 0;; attempt++) {
		if (session_alive(s)) {
			rc = session_join_run(s, preload, argv, opts->quiet, exit_status);
			if (rc != MTM_ENOSESSION) {
				free(preload);
				return rc;
			}
		}
		rc = store_lock(s);
		if (!rc) {
			rc = session_start(s, opts->excludes, opts->n_excludes, &ss);
			store_unlock(s);
		}
		if (rc != MTM_EBUSY || attempt == RUN_START_TRIES)
			break;
		usleep(20000);
	}
	if (rc) {
		free(preload);
		return rc;
	}
	ss->verbose = !opts->quiet;
	/* the watcher first: a change made after the baseline below is seen by
	 * it, one made before by the baseline */
	int64_t tw = now_ns();
	if ((rc = watch_start(ss, &ss->watch_why))) {
		session_stop(ss);
		free(preload);
		return rc;
	}
	ss->watch_off = !ss->watch && ss->watch_why && !strcmp(ss->watch_why, "METAMORI_WATCH=off");
	if (ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: watcher: %s, set up in %.1f ms",
		        ss->watch ? watch_kind(ss->watch) : "none", (double)(now_ns() - tw) / 1e6);
	if (!ss->watch && !ss->watch_off && !opts->quiet)
		log_msg(MTM_LOG_WARNING, "run: %s: every checkpoint will scan", ss->watch_why);
	/* if the tree cannot be compared now (an unreadable file, say), the first
	 * checkpoint scans and says why; the program runs all the same */
	int dirty = 1;
	if (baseline_dirty(s, opts, &dirty))
		dirty = 1;
	ss->force_scan = dirty;
	ss->force_why = "the tree had changed before the session";
	if (run_is_untraceable_cmd(argv[0])) {
		ss->always_scan = 1;
		if (!opts->quiet)
			log_msg(MTM_LOG_WARNING, "run: %s is statically linked: every checkpoint will scan", argv[0]);
	}
	session_members members = {0};

	sigset_t mask, old;
	sigemptyset(&mask);
	int sigs[] = {SIGUSR1, SIGCHLD, SIGTERM, SIGHUP, SIGINT, SIGQUIT};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaddset(&mask, sigs[i]);
	pthread_sigmask(SIG_BLOCK, &mask, &old);
	/* a closed stderr (run ... 2>&1 | head) must not kill the session */
	struct sigaction ign, old_pipe;
	memset(&ign, 0, sizeof ign);
	ign.sa_handler = SIG_IGN;
	sigemptyset(&ign.sa_mask);
	sigaction(SIGPIPE, &ign, &old_pipe);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK), tfd = -1;
	int errpipe[2] = {-1, -1};
	char **env = run_child_env(preload, ss->dir, s->root);
	pid_t pid = -1;
	if (sfd < 0 || pipe2(errpipe, O_CLOEXEC) || !env) {
		rc = mtm_set_errno(env ? errno : ENOMEM, "run");
		goto out;
	}
	if (opts->every_seconds > 0) {
		tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		struct itimerspec its = {0};
		its.it_value.tv_sec = (time_t)opts->every_seconds;
		its.it_value.tv_nsec = (long)((opts->every_seconds - (double)its.it_value.tv_sec) * 1e9);
		if (!its.it_value.tv_sec && its.it_value.tv_nsec < 1000000)
			its.it_value.tv_nsec = 1000000;
		its.it_interval = its.it_value;
		if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL)) {
			rc = mtm_set_errno(errno, "run: timer");
			goto out;
		}
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		rc = mtm_set_errno(errno, "run: fork");
		goto out;
	}
	if (pid == 0) {
		/* the program gets the signal state we were given */
		for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
			signal(sigs[i], SIG_DFL);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		sigaction(SIGPIPE, &old_pipe, NULL);
		execvpe(argv[0], argv, env);
		int e = errno;
		if (write(errpipe[1], &e, sizeof e) < 0)
			_exit(127);
		_exit(127);
	}
	close(errpipe[1]);
	errpipe[1] = -1;
	int exec_err = 0;
	ssize_t got;
	do
		got = read(errpipe[0], &exec_err, sizeof exec_err);
	while (got < 0 && errno == EINTR);
	if (got == (ssize_t)sizeof exec_err) {
		waitpid(pid, NULL, 0);
		pid = -1;
		rc = mtm_set_errno(exec_err, "run: %s", argv[0]);
		/* what a shell reports for a command it could not start */
		if (exit_status)
			*exit_status = exec_err == ENOENT ? 127 : 126;
		goto out;
	}
	int status = 0;
	const char *idle_knob = secure_getenv("METAMORI_TEST_IDLE_MS"); /* tests: read rows before the merge */
	int idle_ms = idle_knob && *idle_knob ? atoi(idle_knob) : SESSION_IDLE_MS;
	int64_t last_busy = now_ns(); /* the last request, signal or timer: idle counts from it */
	int64_t watch_next = 0; /* the watcher's queue is read at most every WATCH_READ_MS */
	/* The loop ends when the program has ended and no joined `metamori run`
	 * is still running one (members, join.c, polled after the 4 fixed fds). */
	int child_done = 0;
	for (;;) {
		if (child_done && !members.n)
			break;
		struct pollfd pf[4 + members.n];
		pf[0] = (struct pollfd){sfd, POLLIN, 0};
		pf[1] = (struct pollfd){ss->listenfd, POLLIN, 0};
		pf[2] = (struct pollfd){tfd, POLLIN, 0};
		pf[3] = (struct pollfd){-1, POLLIN, 0};
		size_t npf = 4 + members_pollfds(&members, pf + 4);
		/* two clocks: the pre-copy's passes while the program writes, and the
		 * idle work (block_log merge, WAL copy) once nothing was asked for a while */
		int timeout = session_precopy_tick(ss);
		/* a program writing all the time would wake us at every write: the
		 * queue is read in batches (the kernel merges a file's events meanwhile) */
		int64_t wait_watch = (watch_next - now_ns()) / 1000000;
		if (ss->watch && wait_watch <= 0)
			pf[3].fd = watch_fd(ss->watch);
		else if (ss->watch && (timeout < 0 || wait_watch + 1 < timeout))
			timeout = (int)wait_watch + 1;
		if (ss->wal_frames > 0 || s->log_rows > 0) {
			int64_t left = (int64_t)idle_ms - (now_ns() - last_busy) / 1000000;
			if (left <= 0) {
				session_wal_maintain(ss, 1);
				last_busy = now_ns();
				continue;
			}
			if (timeout < 0 || left < timeout)
				timeout = (int)left;
		}
		if (tfd < 0) { /* (keep the array dense for poll) */
			pf[2] = pf[3];
			pf[3].fd = -1;
		}
		int ready = poll(pf, npf, timeout);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			rc = mtm_set_errno(errno, "run: poll");
			break;
		}
		int wi = tfd < 0 ? 2 : 3;
		if (pf[wi].fd >= 0 && (pf[wi].revents & POLLIN)) {
			watch_drain(ss->watch);
			watch_next = now_ns() + (int64_t)WATCH_READ_MS * 1000000;
			if (ready == 1)
				continue; /* the program's own writes: not a request (idle goes on) */
		}
		if (ready == 0)
			continue;
		last_busy = now_ns();
		int want_ckpt = 0;
		if (pf[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
				if (si.ssi_signo == SIGUSR1)
					want_ckpt = 1;
				else if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGHUP) && !child_done)
					kill(pid, (int)si.ssi_signo);
			}
			if (!child_done && waitpid(pid, &status, WNOHANG) == pid)
				child_done = 1;
		}
		members_reap(&members, pf + 4);
		if (child_done && !members.n)
			break;
		if (want_ckpt)
			local_checkpoint(ss, "SIGUSR1", 0);
		if (tfd >= 0 && pf[2].fd == tfd && (pf[2].revents & POLLIN)) {
			uint64_t ticks;
			if (read(tfd, &ticks, sizeof ticks) == (ssize_t)sizeof ticks)
				local_checkpoint(ss, "every", !opts->keep_empty);
		}
		if (pf[1].revents & POLLIN) {
			int c;
			while ((c = accept4(ss->listenfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
				if (session_serve(ss, c) != 1 || members_add(&members, c))
					close(c);
			}
		}
		session_wal_maintain(ss, 0);
		/* SIGCHLD may have come while a checkpoint ran */
		if (!child_done && waitpid(pid, &status, WNOHANG) == pid)
			child_done = 1;
	}
	if (!rc && exit_status)
		*exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
	pid = -1;
	/* periodic checkpoints end with one of the program's final state (what
	 * it wrote after the last tick would otherwise be in none) */
	if (opts->every_seconds > 0 && !opts->no_final)
		local_checkpoint(ss, "exit", !opts->keep_empty);
out:
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
	run_child_env_free(env);
	members_free(&members);
	if (errpipe[0] >= 0)
		close(errpipe[0]);
	if (errpipe[1] >= 0)
		close(errpipe[1]);
	if (tfd >= 0)
		close(tfd);
	if (sfd >= 0) {
		close(sfd);
		/* drop what arrived for us (a late SIGUSR1 must not kill the caller) */
		struct timespec zero = {0, 0};
		siginfo_t si;
		while (sigtimedwait(&mask, &si, &zero) > 0)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	sigaction(SIGPIPE, &old_pipe, NULL);
	session_stop(ss);
	free(preload);
	return rc;
}

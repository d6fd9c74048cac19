/* wrap_exec.c — wrappers: children (fork, vfork, exec, posix_spawn). */
#include "track/preload.h"

/* vfork's child shares our memory: our tables would be its tables. A fork
 * is a vfork with more copying, which POSIX allows. */
pid_t vfork(void) { return REAL(fork)(); }

enum { X_DYN = 0, X_STATIC = 1, X_NOPRELOAD = 2, X_UNKNOWN = 3 };

static int inspect_path(int dirfd, const char *path, int depth);

/* Will the interposer load in a program run from fd? */
static int inspect_fd(int fd, int depth)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return X_UNKNOWN;
	if (st.st_mode & (S_ISUID | S_ISGID))
		return X_NOPRELOAD; /* AT_SECURE: the loader and we stand aside */
	if (fgetxattr(fd, "security.capability", NULL, 0) >= 0)
		return X_NOPRELOAD;
	unsigned char buf[256];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	if (n < 4)
		return X_DYN; /* exec fails */
	if (buf[0] == '#' && buf[1] == '!') {
		if (depth > 3)
			return X_UNKNOWN;
		buf[n] = 0;
		char *p = (char *)buf + 2;
		while (*p == ' ' || *p == '\t')
			p++;
		char *q = p;
		while (*q && *q != ' ' && *q != '\t' && *q != '\n')
			q++;
		*q = 0;
		return *p == '/' ? inspect_path(AT_FDCWD, p, depth + 1) : X_DYN;
	}
	if (n < (ssize_t)sizeof(Elf64_Ehdr) || memcmp(buf, ELFMAG, SELFMAG) != 0)
		return X_DYN; /* the kernel will not run it itself (execvp hands it to sh) */
	Elf64_Ehdr eh;
	memcpy(&eh, buf, sizeof eh);
#if defined(__x86_64__)
	const int machine = EM_X86_64;
#elif defined(__aarch64__)
	const int machine = EM_AARCH64;
#else
	const int machine = eh.e_machine;
#endif
	if (buf[EI_CLASS] != ELFCLASS64 || eh.e_machine != machine)
		return X_NOPRELOAD;
	for (int i = 0; i < eh.e_phnum && i < 256; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * eh.e_phentsize)) != (ssize_t)sizeof ph)
			return X_UNKNOWN;
		if (ph.p_type == PT_INTERP)
			return X_DYN;
	}
	return X_STATIC;
}

static int inspect_path(int dirfd, const char *path, int depth)
{
	int fd = REAL(openat)(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		/* execute-only: cannot look, so assume the worst if it exists */
		return faccessat(dirfd, path, X_OK, 0) == 0 ? X_UNKNOWN : X_DYN;
	}
	int k = inspect_fd(fd, depth);
	REAL(close)(fd);
	return k;
}

/* The file execvp would run for file (PATH search), into out. */
static const char *search_path(const char *file, char *out)
{
	if (strchr(file, '/'))
		return file;
	const char *p = getenv("PATH");
	if (!p)
		p = "/bin:/usr/bin";
	size_t fl = strlen(file);
	while (*p) {
		const char *c = strchr(p, ':');
		size_t dl = c ? (size_t)(c - p) : strlen(p);
		if (dl + fl + 2 < PATH_MAX) {
			if (dl) {
				memcpy(out, p, dl);
				out[dl] = '/';
				memcpy(out + dl + 1, file, fl + 1);
			} else {
				memcpy(out, file, fl + 1);
			}
			if (access(out, X_OK) == 0)
				return out;
		}
		if (!c)
			break;
		p = c + 1;
	}
	return NULL;
}

enum { XE_EXECVE, XE_EXECVPE, XE_FEXECVE, XE_EXECVEAT, XE_SPAWN, XE_SPAWNP };
struct xcall {
	int how;
	int dirfd, fd, flags;
	const char *path;
	char *const *argv;
	char *const *envp;
	pid_t *pid;
	const posix_spawn_file_actions_t *fa;
	const posix_spawnattr_t *attr;
};

static int xcall_real(const struct xcall *x, char *const *envp)
{
	switch (x->how) {
	case XE_EXECVE:
		return REAL(execve)(x->path, x->argv, envp);
	case XE_EXECVPE:
		return REAL(execvpe)(x->path, x->argv, envp);
	case XE_FEXECVE:
		return REAL(fexecve)(x->fd, x->argv, envp);
	case XE_EXECVEAT:
		return REAL(execveat)(x->dirfd, x->path, x->argv, envp, x->flags);
	case XE_SPAWN:
		return REAL(posix_spawn)(x->pid, x->path, x->fa, x->attr, x->argv, envp);
	default:
		return REAL(posix_spawnp)(x->pid, x->path, x->fa, x->attr, x->argv, envp);
	}
}

static int xcall_classify(const struct xcall *x)
{
	char buf[PATH_MAX];
	const char *p;
	switch (x->how) {
	case XE_FEXECVE:
		return inspect_fd(x->fd, 0);
	case XE_EXECVEAT:
		if (x->path && !*x->path && (x->flags & AT_EMPTY_PATH))
			return inspect_fd(x->dirfd, 0);
		return inspect_path(x->dirfd, x->path, 0);
	case XE_EXECVPE:
	case XE_SPAWNP:
		p = search_path(x->path, buf);
		return p ? inspect_path(AT_FDCWD, p, 0) : X_DYN;
	default:
		return inspect_path(AT_FDCWD, x->path, 0);
	}
}

static int has_self(const char *list)
{
	const char *base = strrchr(g_self, '/');
	base = base ? base + 1 : g_self;
	return *base && strstr(list, base) != NULL;
}

/* Run the exec or spawn with an environment that keeps the interposer and
 * the session settings, whatever envp the caller built; declare programs
 * the interposer will not load into. */
static int xcall_run(const struct xcall *x)
{
	if (LOAD(&g_state) != ST_ON || t_guard || !g_self[0])
		return xcall_real(x, x->envp);
	t_guard++;
	int kind = xcall_classify(x);
	char *const *envp = x->envp ? x->envp : (char *const *)(char *[]){NULL};
	size_t n = 0, prelen = 0;
	const char *pre = NULL;
	while (envp[n]) {
		if (strncmp(envp[n], "LD_PRELOAD=", 11) == 0)
			pre = envp[n] + 11;
		n++;
	}
	if (pre)
		prelen = strlen(pre);
	char prebuf[prelen + strlen(g_self) + 16];
	char *nenv[n + 4];
	size_t k = 0;
	int have_pre = 0, have_s = 0, have_r = 0;
	for (size_t i = 0; i < n; i++) {
		const char *v = envp[i];
		if (strncmp(v, "LD_PRELOAD=", 11) == 0) {
			if (have_pre)
				continue;
			have_pre = 1;
			if (!has_self(v + 11)) {
				snprintf(prebuf, sizeof prebuf, "LD_PRELOAD=%s%s%s", g_self, *pre ? ":" : "", pre);
				v = prebuf;
			}
		} else if (strncmp(v, MTM_ENV_SESSION "=", sizeof MTM_ENV_SESSION) == 0) {
			have_s = 1; /* kept: a `metamori run` nested in the job sets its own */
		} else if (strncmp(v, MTM_ENV_ROOT "=", sizeof MTM_ENV_ROOT) == 0) {
			have_r = 1;
		}
		nenv[k++] = (char *)v;
	}
	if (!have_pre) {
		snprintf(prebuf, sizeof prebuf, "LD_PRELOAD=%s", g_self);
		nenv[k++] = prebuf;
	}
	if (!have_s)
		nenv[k++] = g_env_session;
	if (!have_r)
		nenv[k++] = g_env_root;
	nenv[k] = NULL;

	int untracked = kind != X_DYN;
	if (untracked)
		sticky_scan(); /* it changes files where we cannot see */
	/* Keep our log (and its lock) open across exec: the new image adopts
	 * it; a program without the interposer holds it till it exits. */
	int spawn = x->how == XE_SPAWN || x->how == XE_SPAWNP;
	int keep = g_logfd >= 0 && (!spawn || untracked);
	int lfd = g_logfd;
	if (keep)
		REAL(fcntl)(lfd, F_SETFD, 0);
	/* The new image turns dispatch on itself, if it can: until then its
	 * log does not say so (its adoption records MTM_REC_CODE). */
	struct mtm_log_hdr *h = keep && !spawn ? LOAD(&g_hdr) : NULL;
	uint32_t said = h ? __atomic_exchange_n(&h->dispatch, 0, __ATOMIC_SEQ_CST) : 0;
	t_guard--;
	int r = xcall_real(x, nenv);
	int err = errno;
	if (said && dispatch_on())
		__atomic_store_n(&h->dispatch, said, __ATOMIC_SEQ_CST);
	if (keep)
		REAL(fcntl)(lfd, F_SETFD, FD_CLOEXEC);
	errno = err;
	return r;
}

int execve(const char *path, char *const argv[], char *const envp[])
{
	struct xcall x = {.how = XE_EXECVE, .path = path, .argv = argv, .envp = envp};
	return xcall_run(&x);
}

int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
	struct xcall x = {.how = XE_EXECVEAT, .dirfd = dirfd, .path = path, .argv = argv, .envp = envp, .flags = flags};
	return xcall_run(&x);
}

int fexecve(int fd, char *const argv[], char *const envp[])
{
	struct xcall x = {.how = XE_FEXECVE, .fd = fd, .argv = argv, .envp = envp};
	return xcall_run(&x);
}

int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

int execvpe(const char *file, char *const argv[], char *const envp[])
{
	struct xcall x = {.how = XE_EXECVPE, .path = file, .argv = argv, .envp = envp};
	return xcall_run(&x);
}

int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }

#define COLLECT_ARGS(arg0, last_is_env)                                           \
	va_list ap;                                                               \
	size_t argc = 1;                                                          \
	va_start(ap, arg0);                                                       \
	while (va_arg(ap, const char *))                                          \
		argc++;                                                           \
	va_end(ap);                                                               \
	char *argv[argc + 1];                                                     \
	argv[0] = (char *)arg0;                                                   \
	va_start(ap, arg0);                                                       \
	for (size_t i = 1; i <= argc; i++)                                        \
		argv[i] = va_arg(ap, char *);                                     \
	char *const *envp = last_is_env ? va_arg(ap, char *const *) : environ;    \
	va_end(ap);

int execl(const char *path, const char *arg0, ...)
{
	COLLECT_ARGS(arg0, 0);
	return execve(path, argv, envp);
}

int execle(const char *path, const char *arg0, ...)
{
	COLLECT_ARGS(arg0, 1);
	return execve(path, argv, envp);
}

int execlp(const char *file, const char *arg0, ...)
{
	COLLECT_ARGS(arg0, 0);
	return execvpe(file, argv, envp);
}

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct xcall x = {.how = XE_SPAWN, .pid = pid, .path = path, .fa = fa, .attr = attr, .argv = argv, .envp = envp};
	return xcall_run(&x);
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                 const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct xcall x = {.how = XE_SPAWNP, .pid = pid, .path = file, .fa = fa, .attr = attr, .argv = argv, .envp = envp};
	return xcall_run(&x);
}

/* init.c — initialisation, fork, and DMTCP's detach and attach. */
#include "track/dispatch.h"
#include "track/init.h"
#include "track/adopt.h"

static void atfork_prepare(void)
{
	lock(&g_log_lock);
	lock(&g_st_lock);
	lock(&g_cwd_lock);
	lock(&g_slab_lock);
}

static void atfork_parent(void)
{
	unlock(&g_slab_lock);
	unlock(&g_cwd_lock);
	unlock(&g_st_lock);
	unlock(&g_log_lock);
}

static void atfork_child(void)
{
	g_slab_lock = g_cwd_lock = g_st_lock = g_log_lock = 0;
	t_held = 0;
	if (LOAD(&g_state) != ST_ON)
		return;
	/* The parent's log stays the parent's: its lock must not outlive it
	 * through us. Ours is opened when we first record. */
	if (g_hdr) {
		REAL(munmap)(g_hdr, LOG_MAP_SIZE);
		g_hdr = NULL;
	}
	if (g_logfd >= 0) {
		REAL(close)(g_logfd);
		g_logfd = -1;
	}
	g_log_failed = 0;
	g_multi_ep = 0;
	g_log_gen++;
	t_last.r = NULL;
	dispatch_fork_child(); /* clone turned it off in this thread, the only one */
	/* What we inherited and cannot see (streams, mappings, a ring) stays
	 * ours to declare, for as long as we live. */
	if ((g_sticky_scan || LOAD(&g_st_n)) && enter()) {
		restick();
		leave();
	}
}

/* Called by Metamori's DMTCP plugin at DMTCP_EVENT_INIT, once DMTCP knows
 * this process's threads (its checkpoint lock may be taken from then on;
 * our constructor ran before DMTCP's). */
void metamori_preload_dmtcp_init(void)
{
	/* a C++ function of DMTCP's (bool dmtcp_is_ckpt_thread()) */
	_Bool (*is_ckpt)(void) = (_Bool (*)(void))dlsym(RTLD_DEFAULT, "_Z20dmtcp_is_ckpt_threadv");
	void (*on)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "dmtcp_plugin_enable_ckpt");
	int (*off)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "dmtcp_plugin_disable_ckpt");
	if (!is_ckpt || !on || !off)
		return;
	g_is_ckpt_thread = is_ckpt;
	g_ckpt_on = on;
	STORE(&g_ckpt_off, off);
}

/* Called by Metamori's DMTCP plugin (src/dmtcp/plugin.c), in DMTCP's
 * checkpoint thread while every other thread is suspended, never inside the
 * in-flight region (enter() keeps DMTCP out of it).
 *
 * Detach, once the paired file checkpoint is made and before the image is
 * written: the log is dropped (unmapped and closed: the session reads it as
 * a dead process's, already emptied by that checkpoint) and an anonymous
 * page, gate open, takes the place of ctl, so that no image holds the
 * session's files, and a thread that restarts from the image never touches
 * a mapping that is not there (the log, and ctl, of a session that is
 * gone). Until attach, enter() records nothing. */
void metamori_preload_detach(void)
{
	if (LOAD(&g_state) != ST_ON || LOAD(&g_detached))
		return;
	/* DMTCP's image does not carry the kernel's dispatch setting: a
	 * restarted process has it in no thread */
	dispatch_lose();
	STORE(&g_detached, 1);
	lock(&g_log_lock);
	if (g_hdr) {
		REAL(munmap)(g_hdr, LOG_MAP_SIZE);
		STORE(&g_hdr, NULL);
	}
	if (g_logfd >= 0) {
		REAL(close)(g_logfd);
		g_logfd = -1;
	}
	g_log_failed = 0;
	g_multi_ep = 0;
	__atomic_fetch_add(&g_log_gen, 1, __ATOMIC_SEQ_CST);
	unlock(&g_log_lock);
	REAL(mmap)(g_ctl, sizeof(struct mtm_ctl), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
	           -1, 0);
}

/* Attach, after the image is written (the same session goes on) or after
 * a restart from it (`metamori restart` started a new session on the same
 * tree, at the same path): the session's ctl is mapped where the page was,
 * the next record creates a new log, and what is sticky is said again
 * there. After a restart, what happened before this call is unknown: the
 * next checkpoint scans (MTM_REC_SCAN a = 2, which also ends the sticky
 * SCAN of the static mtcp_restart that became us). No session (a plain
 * dmtcp_restart): stay detached, untracked. */
void metamori_preload_attach(int restarted)
{
	if (LOAD(&g_state) != ST_ON || !LOAD(&g_detached))
		return;
	char p[PATH_MAX + 8];
	snprintf(p, sizeof p, "%s/ctl", g_session);
	int fd = REAL(open)(p, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return;
	void *m = REAL(mmap)(g_ctl, sizeof(struct mtm_ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	REAL(close)(fd);
	if (m == MAP_FAILED)
		return;
	if (g_ctl->magic != MTM_TRACK_MAGIC || g_ctl->version != MTM_TRACK_VERSION) {
		REAL(mmap)(g_ctl, sizeof(struct mtm_ctl), PROT_READ | PROT_WRITE,
		           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		return;
	}
	g_gone = 0;
	STORE(&g_detached, 0);
	/* Restarted: DMTCP's mtcp_restart, a static program, became this
	 * process under our pid, and the exec of it made every checkpoint scan
	 * while the pid lives (a sticky SCAN): we are back, so that ends (this
	 * checkpoint still scans). */
	if (restarted && enter()) {
		rec(MTM_REC_SCAN, 2, 0, NULL, 0);
		leave();
	} else if (restarted) {
		__atomic_store_n(&g_ctl->scan_needed, 1, __ATOMIC_SEQ_CST);
	}
	if ((g_sticky_scan || LOAD(&g_st_n)) && enter()) {
		restick();
		leave();
	}
}

static void scan_inherited(void)
{
	DIR *d = REAL(opendir)("/proc/self/fd");
	if (!d)
		return;
	int self = dirfd(d);
	int stdio[3] = {0, 0, 0};
	int others[64], nothers = 0;
	char link[PATH_MAX];
	struct dirent *de;
	pid_t me = real_pid();
	int exec_seen = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		int fd = atoi(de->d_name);
		if (fd == self || fdpath(fd, link) < 0)
			continue;
		if (strncmp(link, g_session, g_sessionlen) == 0 &&
		    strncmp(link + g_sessionlen, "/log.", 5) == 0) {
			/* Our own log, kept open across exec so its lock never
			 * lapsed; anyone else's is not ours to hold. */
			if (atoi(link + g_sessionlen + 5) == (int)me && g_logfd < 0) {
				REAL(fcntl)(fd, F_SETFD, FD_CLOEXEC);
				if (log_attach(fd) != 0)
					REAL(close)(fd);
				else
					exec_seen = 1;
			} else {
				REAL(close)(fd);
			}
			continue;
		}
		size_t rl;
		const char *rel = in_root(link, &rl);
		if (!rel)
			continue;
		int fl = REAL(fcntl)(fd, F_GETFL);
		struct stat st;
		if (fl < 0 || fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
			continue;
		fd_set_path(fd, rel, rl, (uint32_t)fl | (S_ISREG(st.st_mode) && st.st_nlink > 1 ? ENT_MULTI : 0));
		if ((fl & O_ACCMODE) == O_RDONLY || !S_ISREG(st.st_mode))
			continue;
		if (fd == 1 || fd == 2)
			stdio[fd] = 1;
		else if (nothers < 64)
			others[nothers++] = fd;
	}
	REAL(closedir)(d);
	/* our pid ran another image before this one in this interval, maybe
	 * one with code of its own that the session can no longer look at */
	if (exec_seen)
		code_changed();
	if (!stdio[1] && !stdio[2] && !nothers)
		return;
	if (!enter())
		return;
	/* stdout/stderr into a tracked file: stdio writes them unseen. */
	for (int fd = 1; fd <= 2; fd++) {
		struct ent *e = fd_get(fd);
		if (stdio[fd] && e)
			sticky_add(SK_STREAM, (uintptr_t)(fd == 1 ? stdout : stderr), 0, 1, e->path, e->len);
	}
	/* Opened for us before exec by someone we may not have seen
	 * (posix_spawn file actions): rescan the entry. */
	for (int i = 0; i < nothers; i++) {
		struct ent *e = fd_get(others[i]);
		if (e)
			rec(MTM_REC_NS, 0, 0, e->path, e->len);
	}
	leave();
}

void do_init(void)
{
	t_guard++;
	int ok = 0;
	const char *s = secure_getenv(MTM_ENV_SESSION);
	const char *r = secure_getenv(MTM_ENV_ROOT);
	if (getauxval(AT_SECURE) || !s || !r || s[0] != '/' || r[0] != '/' || strlen(s) >= PATH_MAX - 64 ||
	    strlen(r) >= PATH_MAX - 64)
		goto out;
	snprintf(g_env_session, sizeof g_env_session, "%s=%s", MTM_ENV_SESSION, s);
	snprintf(g_env_root, sizeof g_env_root, "%s=%s", MTM_ENV_ROOT, r);
	/* canonical, as the kernel names open files (/proc/self/fd) */
	if (!realpath(r, g_root))
		strcpy(g_root, r);
	g_rootlen = normalize(g_root);
	if (!realpath(s, g_session))
		strcpy(g_session, s);
	g_sessionlen = normalize(g_session);
	const char *cap = secure_getenv("METAMORI_TRACK_LOG_CAPACITY");
	if (cap) {
		unsigned long long c = strtoull(cap, NULL, 10) & ~7ull;
		if (c >= 4096 && c <= MTM_LOG_CAPACITY)
			g_log_cap = c;
	}
	g_quick_skip = !(strncmp(g_root, "/proc", 5) == 0 || strncmp(g_root, "/sys", 4) == 0 ||
	                 strncmp(g_root, "/dev", 4) == 0);

	char p[PATH_MAX + 8];
	snprintf(p, sizeof p, "%s/ctl", g_session);
	int fd = REAL(open)(p, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		goto out;
	void *m = REAL(mmap)(NULL, sizeof(struct mtm_ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REAL(close)(fd);
	if (m == MAP_FAILED)
		goto out;
	struct mtm_ctl *c = m;
	if (c->magic != MTM_TRACK_MAGIC || c->version != MTM_TRACK_VERSION) {
		REAL(munmap)(m, sizeof(struct mtm_ctl));
		goto out;
	}
	g_ctl = c;
	g_moved_seen = LOAD(&c->moved_in); /* (the fds inherited are looked at below) */

	Dl_info info;
	if (!dladdr((void *)do_init, &info) || !info.dli_fname || !realpath(info.dli_fname, g_self))
		g_self[0] = 0;

	struct rlimit rl;
	rlim_t n = 1024;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		n = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (1u << 20) ? (1u << 20) : rl.rlim_max;
	if (n < 1024)
		n = 1024;
	void *t = REAL(mmap)(NULL, n * sizeof(struct ent *), PROT_READ | PROT_WRITE,
	                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (t == MAP_FAILED)
		goto out;
	g_fds = t;
	g_nfds = (int)n;
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	ok = 1;
out:
	STORE(&g_state, ok ? ST_ON : ST_OFF);
	if (ok)
		scan_inherited(); /* (trap.c's constructor then turns dispatch on) */
	t_guard--;
}


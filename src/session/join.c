/*
 * join.c — one session per tree, however many `metamori run` commands share
 * it: a second `metamori run` on a tree whose session is alive (mpirun starts
 * one per rank, and ranks on a node often share a tree) joins that session
 * instead of failing.
 *
 * The joiner asks the session's socket to join (client.c), then runs its
 * program with the session's environment (the interposer, the session's
 * directory, the root), so the program's changes are logged into the
 * session's directory like those of the session's own program, and every
 * checkpoint holds both at its barrier. The joiner keeps the connection
 * open while its program runs: the session counts it as a member and lives
 * until its own program and every member have ended (the kernel closes the
 * connection however the joiner dies). The joiner's own options (--every,
 * --exclude) do not apply: the session's do.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "session/session.h"
#include "util/error.h"
#include "util/log.h"

int members_add(session_members *m, int fd)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 8;
		int *p = realloc(m->fd, cap * sizeof *p);
		if (!p)
			return ENOMEM; /* the caller closes fd: that joiner's program then starts a session of its own */
		m->fd = p;
		m->cap = cap;
	}
	m->fd[m->n++] = fd;
	return 0;
}

size_t members_pollfds(const session_members *m, struct pollfd *pf)
{
	for (size_t i = 0; i < m->n; i++)
		pf[i] = (struct pollfd){m->fd[i], POLLIN, 0};
	return m->n;
}

/* A member says nothing after joining: readable means closed (or junk, which
 * is read and ignored). */
void members_reap(session_members *m, const struct pollfd *pf)
{
	size_t n = m->n, k = 0;
	for (size_t i = 0; i < n; i++) {
		/* pf was filled from m before the poll, and m changes only here */
		assert(pf[i].fd == m->fd[i]);
		int gone = 0;
		if (pf[i].revents & (POLLHUP | POLLERR | POLLNVAL)) {
			gone = 1;
		} else if (pf[i].revents & POLLIN) {
			char buf[64];
			ssize_t r = recv(m->fd[i], buf, sizeof buf, MSG_DONTWAIT);
			gone = r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
		}
		if (gone)
			close(m->fd[i]);
		else
			m->fd[k++] = m->fd[i];
	}
	m->n = k;
}

void members_free(session_members *m)
{
	for (size_t i = 0; i < m->n; i++)
		close(m->fd[i]);
	free(m->fd);
	memset(m, 0, sizeof *m);
}

/* In the child: the program gets the signal mask we were given. */
static void restore_mask(const void *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

int session_join_run(mtm_store *s, const char *preload, char *const argv[], int quiet, int *exit_status)
{
	int fd;
	int rc = session_connect(s, &fd);
	if (rc)
		return rc; /* MTM_ENOSESSION: start one */
	int untraceable = run_is_untraceable_cmd(argv[0]);
	if ((rc = session_join_request(fd, untraceable ? SESSION_JOIN_STATIC : 0))) {
		close(fd);
		return rc;
	}
	if (untraceable && !quiet)
		log_msg(MTM_LOG_WARNING, "run: %s is statically linked: every checkpoint will scan", argv[0]);
	char *dir;
	if (asprintf(&dir, "%s/.metamori/session", s->root) < 0)
		dir = NULL;
	char **env = dir ? run_child_env(preload, dir, s->root) : NULL;
	free(dir);
	if (!env) {
		close(fd);
		return mtm_set_error(ENOMEM, "run");
	}
	/* as mtm_run: SIGTERM and SIGHUP are passed on; SIGINT and SIGQUIT
	 * reach the program from the terminal, which decides */
	sigset_t mask, old;
	sigemptyset(&mask);
	int sigs[] = {SIGCHLD, SIGTERM, SIGHUP, SIGINT, SIGQUIT};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaddset(&mask, sigs[i]);
	pthread_sigmask(SIG_BLOCK, &mask, &old);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	pid_t pid = -1;
	int exec_err;
	if (sfd < 0)
		rc = mtm_set_errno(errno, "run");
	else
		rc = run_fork_exec(argv, env, restore_mask, &old, &pid, &exec_err);
	int status = 0;
	while (!rc) {
		struct signalfd_siginfo si;
		ssize_t r = read(sfd, &si, sizeof si);
		if (r != (ssize_t)sizeof si) {
			if (r < 0 && errno == EINTR)
				continue;
			rc = mtm_set_errno(r < 0 ? errno : EIO, "run: signalfd");
			kill(pid, SIGTERM);
			waitpid(pid, NULL, 0);
			break;
		}
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGHUP)
			kill(pid, (int)si.ssi_signo);
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
	}
	if (!rc && exit_status)
		*exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
	close(fd); /* no longer a member: the session may end */
	if (sfd >= 0) {
		close(sfd);
		struct timespec zero = {0, 0};
		siginfo_t si;
		while (sigtimedwait(&mask, &si, &zero) > 0)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	run_child_env_free(env);
	return rc;
}

/* stat_pool.c — a directory's lstats on two threads; see stat_pool.h. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include "tree/stat_pool.h"

/* Below this many names the wake-up costs more than the half it saves */
#define SHARE_MIN 32
/* Names taken at a time: ~8 path lookups, a few tens of microseconds */
#define PIECE 8

struct stat_pool {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	/* the directory being read: set under mu while the helper is idle */
	int dfd;
	dname *v;
	size_t n;
	atomic_size_t next; /* the next name not taken */
	int posted;         /* a directory waits for the helper to take it */
	int busy;           /* the helper took it and may still be taking names */
	int quit;
};

static void take_names(stat_pool *p, int dfd, dname *v, size_t n)
{
	for (;;) {
		size_t i = atomic_fetch_add(&p->next, PIECE);
		if (i >= n)
			return;
		size_t to = i + PIECE < n ? i + PIECE : n;
		for (; i < to; i++)
			v[i].err = fstatat(dfd, v[i].name, &v[i].st, AT_SYMLINK_NOFOLLOW) ? errno : 0;
	}
}

static void *helper(void *arg)
{
	stat_pool *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->posted && !p->quit)
			pthread_cond_wait(&p->work, &p->mu);
		if (p->quit)
			break;
		/* taken under mu: the walk's thread either sees busy and waits, or
		 * took the directory back (posted = 0) before we could */
		p->posted = 0;
		p->busy = 1;
		int dfd = p->dfd;
		dname *v = p->v;
		size_t n = p->n;
		pthread_mutex_unlock(&p->mu);
		take_names(p, dfd, v, n);
		pthread_mutex_lock(&p->mu);
		p->busy = 0;
		pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static stat_pool *pool_new(void)
{
	static long ncpu;
	if (!ncpu)
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu < 2)
		return NULL;
	stat_pool *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	/* the thread takes no signals (they stay with the threads that expect
	 * them), and does not preempt the walk's thread when woken: it runs
	 * where a CPU is free (SCHED_BATCH; a hint, as for the pack's flusher) */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&p->th, NULL, helper, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!rc) {
		struct sched_param sp = {0};
		(void)pthread_setschedparam(p->th, SCHED_BATCH, &sp);
	}
	if (rc) {
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->work);
		pthread_cond_destroy(&p->done);
		free(p);
		return NULL;
	}
	return p;
}

void stat_pool_run(stat_pool **pool, int dfd, dname *v, size_t n)
{
	if (n >= SHARE_MIN && !*pool)
		*pool = pool_new();
	stat_pool *p = *pool;
	if (n < SHARE_MIN || !p) {
		for (size_t i = 0; i < n; i++)
			v[i].err = fstatat(dfd, v[i].name, &v[i].st, AT_SYMLINK_NOFOLLOW) ? errno : 0;
		return;
	}
	pthread_mutex_lock(&p->mu);
	assert(!p->posted && !p->busy); /* one directory at a time */
	p->dfd = dfd;
	p->v = v;
	p->n = n;
	atomic_store(&p->next, 0);
	p->posted = 1;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
	take_names(p, dfd, v, n);
	/* every name is taken; wait for the helper's last piece, unless it never
	 * took the directory (then it never will: posted is cleared) */
	pthread_mutex_lock(&p->mu);
	p->posted = 0;
	while (p->busy)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

void stat_pool_free(stat_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->quit = 1;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->th, NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p);
}

/* lowprio.c — work handed to a thread of lower priority (lowprio.h). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "util/error.h"
#include "util/lowprio.h"
#include "util/thread.h"

struct lowprio {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int prio, nice;
	int (*fn)(void *); /* the work waiting, NULL when none */
	void *arg;
	int done, rc, stop;
	char err[1024]; /* the thread's last error after a failure */
};

static void *lowprio_main(void *p)
{
	lowprio *lp = p;
	/* Linux: PRIO_PROCESS 0 is this thread alone. Best effort: at the
	 * caller's priority the work is only what it was. */
	if (lp->prio == LOWPRIO_IDLE) {
		struct sched_param sp = {0};
		sched_setscheduler(0, SCHED_IDLE, &sp);
	} else {
		errno = 0;
		int cur = getpriority(PRIO_PROCESS, 0);
		if (!errno)
			setpriority(PRIO_PROCESS, 0, cur + lp->prio > 19 ? 19 : cur + lp->prio);
	}
	pthread_mutex_lock(&lp->mu);
	errno = 0;
	lp->nice = getpriority(PRIO_PROCESS, 0);
	lp->done = 1; /* (started: lowprio_start waits for this) */
	pthread_cond_broadcast(&lp->cv);
	for (;;) {
		while (!lp->fn && !lp->stop)
			pthread_cond_wait(&lp->cv, &lp->mu);
		if (!lp->fn)
			break;
		int (*fn)(void *) = lp->fn;
		void *arg = lp->arg;
		pthread_mutex_unlock(&lp->mu);
		mtm_clear_error();
		int rc = fn(arg);
		pthread_mutex_lock(&lp->mu);
		lp->rc = rc;
		if (rc) {
			strncpy(lp->err, mtm_last_error(), sizeof lp->err - 1);
			lp->err[sizeof lp->err - 1] = 0;
		}
		lp->fn = NULL;
		lp->done = 1;
		pthread_cond_broadcast(&lp->cv);
	}
	pthread_mutex_unlock(&lp->mu);
	return NULL;
}

int lowprio_start(lowprio **out, int prio)
{
	*out = NULL;
	lowprio *lp = calloc(1, sizeof *lp);
	if (!lp)
		return ENOMEM;
	lp->prio = prio;
	pthread_mutex_init(&lp->mu, NULL);
	pthread_cond_init(&lp->cv, NULL);
	int rc = thread_start_quiet(&lp->th, lowprio_main, lp); /* (the mapped reads catch SIGBUS on it) */
	if (rc) {
		pthread_cond_destroy(&lp->cv);
		pthread_mutex_destroy(&lp->mu);
		free(lp);
		return rc;
	}
	pthread_mutex_lock(&lp->mu);
	while (!lp->done)
		pthread_cond_wait(&lp->cv, &lp->mu);
	pthread_mutex_unlock(&lp->mu);
	*out = lp;
	return 0;
}

int lowprio_call(lowprio *lp, int (*fn)(void *), void *arg)
{
	return lowprio_call_tick(lp, fn, arg, NULL, NULL, 0);
}

int lowprio_call_tick(lowprio *lp, int (*fn)(void *), void *arg, void (*tick)(void *), void *tick_arg, int ms)
{
	if (!lp)
		return fn(arg);
	pthread_mutex_lock(&lp->mu);
	lp->fn = fn;
	lp->arg = arg;
	lp->done = 0;
	pthread_cond_broadcast(&lp->cv);
	while (!lp->done) {
		if (!tick) {
			pthread_cond_wait(&lp->cv, &lp->mu);
			continue;
		}
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until); /* (the condition's clock) */
		until.tv_nsec += (long)ms * 1000000;
		until.tv_sec += until.tv_nsec / 1000000000;
		until.tv_nsec %= 1000000000;
		if (pthread_cond_timedwait(&lp->cv, &lp->mu, &until) == ETIMEDOUT && !lp->done) {
			pthread_mutex_unlock(&lp->mu);
			tick(tick_arg);
			pthread_mutex_lock(&lp->mu);
		}
	}
	int rc = lp->rc;
	pthread_mutex_unlock(&lp->mu);
	if (rc)
		mtm_set_error(rc, "%s", lp->err);
	return rc;
}

int lowprio_nice(const lowprio *lp) { return lp ? lp->nice : 0; }

void lowprio_stop(lowprio *lp)
{
	if (!lp)
		return;
	pthread_mutex_lock(&lp->mu);
	lp->stop = 1;
	pthread_cond_broadcast(&lp->cv);
	pthread_mutex_unlock(&lp->mu);
	pthread_join(lp->th, NULL);
	pthread_cond_destroy(&lp->cv);
	pthread_mutex_destroy(&lp->mu);
	free(lp);
}

int lowprio_from_env(const char *value, int dflt)
{
	if (!value || !*value)
		return dflt;
	if (!strcmp(value, "off"))
		return 0;
	if (!strcmp(value, "idle"))
		return LOWPRIO_IDLE;
	char *end;
	long n = strtol(value, &end, 10);
	if (*end || n < 0 || n > 19)
		return dflt;
	return (int)n;
}

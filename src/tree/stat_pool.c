/* stat_pool.c — a sorted walk's directories read ahead; see stat_pool.h. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/io.h"
#include "tree/stat_pool.h"
#include "util/thread.h"

/* A directory of fewer names is not worth waking the helper to share */
#define SHARE_MIN 32
/* Names taken at a time: ~8 path lookups, a few tens of microseconds */
#define PIECE 8
/* Read ahead and not yet taken by the walk: at most this many directories
 * and (about) this many names (~200 bytes each with their lstat) */
#define AHEAD_DIRS 16
#define AHEAD_NAMES 16384
/* The helper starts once the walk has offered this many directories (or
 * read one of SHARE_MIN names): a small tree is walked on one thread. */
#define START_JOBS 4

enum { J_FREE, J_LISTING, J_LISTED, J_TAKEN };

typedef struct {
	dirjob *jobs;
	size_t n, next; /* next: the first job the walk has not taken */
} frame;

struct stat_pool {
	pthread_t th;
	int started; /* the helper runs (0: not yet, or it could not be made) */
	int can_start;
	size_t offered;
	pthread_mutex_t mu;
	pthread_cond_t work; /* the helper: something to do (or quit) */
	pthread_cond_t done; /* the walk: a job it waits for moved on */
	frame *fr;
	size_t nfr, capfr;
	dirjob *cur;      /* the job the walk's thread is reading (the helper may join) */
	dirjob *helping;  /* the job the helper is in (outside mu) */
	size_t ahead_dirs, ahead_names; /* read by the helper, not yet taken */
	int idle;         /* the helper waits on work */
	int waiting;      /* the walk's thread waits on done */
	int quit;
};

/* Opens and lists j (no lock held): the names, not their lstats. */
static void list_job(dirjob *j)
{
	int fd, e = io_openat(j->pfd, j->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, &fd);
	if (e) {
		j->open_err = e;
		return;
	}
	if (!(j->d = fdopendir(fd))) {
		j->open_err = errno;
		close(fd);
		return;
	}
	size_t n = 0, cap = 0, blen = 0, bcap = 0;
	dname *v = NULL;
	char *buf = NULL;
	struct dirent *de;
	int lerr;
	/* a listing that fails is an error: a directory that looked emptier than
	 * it is would show its files as removed */
	while (!(lerr = io_readdir(j->d, &de)) && de) {
		const char *nm = de->d_name;
		if (nm[0] == '.' && (!nm[1] || (nm[1] == '.' && !nm[2])))
			continue;
		size_t len = strlen(nm) + 1;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			dname *nv = realloc(v, nc * sizeof *nv);
			if (!nv) {
				lerr = ENOMEM;
				break;
			}
			v = nv;
			cap = nc;
		}
		if (blen + len > bcap) {
			size_t nc = bcap ? bcap * 2 : 4096;
			while (nc < blen + len)
				nc *= 2;
			char *nb = realloc(buf, nc);
			if (!nb) {
				lerr = ENOMEM;
				break;
			}
			buf = nb;
			bcap = nc;
		}
		memcpy(buf + blen, nm, len);
		v[n].name = (char *)(uintptr_t)blen; /* an offset until buf stops moving */
		v[n].d_type = de->d_type;
		v[n].err = 0;
		n++;
		blen += len;
	}
	for (size_t i = 0; i < n; i++)
		v[i].name = buf + (uintptr_t)v[i].name;
	j->v = v;
	j->n = n;
	j->buf = buf;
	j->list_err = lerr;
	if (lerr) /* nothing to stat: the walk reports the listing */
		j->n = 0;
}

static void take_names(dirjob *j)
{
	int dfd = dirfd(j->d);
	for (;;) {
		size_t i = atomic_fetch_add(&j->next, PIECE);
		if (i >= j->n)
			return;
		size_t to = i + PIECE < j->n ? i + PIECE : j->n;
		for (; i < to; i++)
			j->v[i].err = fstatat(dfd, j->v[i].name, &j->v[i].st, AT_SYMLINK_NOFOLLOW) ? errno : 0;
	}
}

/* Under mu: j's names may be taken (listed, opened, some left). */
static int joinable(dirjob *j)
{
	return j && j->state == J_LISTED && j->d && atomic_load(&j->next) < j->n;
}

/* Under mu: the first job nobody took, the deepest frame first, within
 * what may be read ahead; else a listed job with names left to share. */
static dirjob *find_work(stat_pool *p, int *claim)
{
	dirjob *join = joinable(p->cur) && p->cur->n >= SHARE_MIN ? p->cur : NULL;
	int room = p->ahead_dirs < AHEAD_DIRS && p->ahead_names < AHEAD_NAMES;
	for (size_t f = p->nfr; f-- > 0;) {
		frame *fr = &p->fr[f];
		for (size_t i = fr->next; i < fr->n; i++) {
			dirjob *j = &fr->jobs[i];
			if (j->state == J_FREE) {
				if (room) {
					*claim = 1;
					return j;
				}
				goto none;
			}
			if (!join && joinable(j))
				join = j;
		}
	}
none:
	*claim = 0;
	return join;
}

static void *helper(void *arg)
{
	stat_pool *p = arg;
	pthread_mutex_lock(&p->mu);
	while (!p->quit) {
		int claim;
		dirjob *j = find_work(p, &claim);
		if (!j) {
			p->idle = 1;
			pthread_cond_wait(&p->work, &p->mu);
			p->idle = 0;
			continue;
		}
		p->helping = j;
		if (claim) {
			j->state = J_LISTING;
			j->by_helper = 1;
			p->ahead_dirs++;
			pthread_mutex_unlock(&p->mu);
			list_job(j);
			pthread_mutex_lock(&p->mu);
			j->state = J_LISTED;
			p->ahead_names += j->n;
			if (p->waiting)
				pthread_cond_broadcast(&p->done);
			if (!j->d || p->quit) {
				p->helping = NULL;
				continue;
			}
		}
		j->workers++;
		pthread_mutex_unlock(&p->mu);
		take_names(j);
		pthread_mutex_lock(&p->mu);
		j->workers--;
		p->helping = NULL;
		if (p->waiting)
			pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

stat_pool *stat_pool_new(void)
{
	stat_pool *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	static long ncpu;
	if (!ncpu)
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	/* METAMORI_SCAN_THREADS=1: the walk on its own thread (the tests
	 * compare the two) */
	const char *one = secure_getenv("METAMORI_SCAN_THREADS");
	p->can_start = ncpu >= 2 && !(one && !strcmp(one, "1"));
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	return p;
}

/* Under mu: the helper, once the walk looks worth it. */
static void start(stat_pool *p)
{
	if (p->started || !p->can_start)
		return;
	p->can_start = 0; /* one try */
	/* the thread does not preempt the walk's thread when woken: it runs
	 * where a CPU is free (SCHED_BATCH; a hint, as for the pack's flusher) */
	int rc = thread_start_quiet(&p->th, helper, p);
	if (rc)
		return;
	struct sched_param sp = {0};
	(void)pthread_setschedparam(p->th, SCHED_BATCH, &sp);
	p->started = 1;
}

static void wake(stat_pool *p)
{
	if (p->idle)
		pthread_cond_signal(&p->work);
}

int stat_pool_push(stat_pool *p, dirjob *jobs, size_t n)
{
	if (!p)
		return 0;
	pthread_mutex_lock(&p->mu);
	if (p->nfr == p->capfr) {
		size_t nc = p->capfr ? p->capfr * 2 : 16;
		frame *nf = realloc(p->fr, nc * sizeof *nf);
		if (!nf) {
			pthread_mutex_unlock(&p->mu);
			return ENOMEM;
		}
		p->fr = nf;
		p->capfr = nc;
	}
	p->fr[p->nfr++] = (frame){jobs, n, 0};
	if (n) {
		p->offered += n;
		if (p->offered >= START_JOBS)
			start(p);
		if (p->ahead_dirs < AHEAD_DIRS && p->ahead_names < AHEAD_NAMES)
			wake(p); /* (else it is woken when there is room) */
	}
	pthread_mutex_unlock(&p->mu);
	return 0;
}

void stat_pool_pop(stat_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	assert(p->nfr > 0);
	frame *fr = &p->fr[--p->nfr];
	/* the helper is out of this frame's jobs before they may be freed */
	while (p->helping && p->helping >= fr->jobs && p->helping < fr->jobs + fr->n) {
		p->waiting = 1;
		pthread_cond_wait(&p->done, &p->mu);
	}
	p->waiting = 0;
	for (size_t i = fr->next; i < fr->n; i++)
		if (fr->jobs[i].by_helper) { /* read ahead, never taken (the walk stopped) */
			p->ahead_dirs--;
			p->ahead_names -= fr->jobs[i].n;
			fr->jobs[i].by_helper = 0;
		}
	pthread_mutex_unlock(&p->mu);
}

static void stat_all(dirjob *j)
{
	int dfd = dirfd(j->d);
	for (size_t i = 0; i < j->n; i++)
		j->v[i].err = fstatat(dfd, j->v[i].name, &j->v[i].st, AT_SYMLINK_NOFOLLOW) ? errno : 0;
}

void stat_pool_take(stat_pool *p, dirjob *j)
{
	if (!p) {
		list_job(j);
		if (j->d)
			stat_all(j);
		j->state = J_TAKEN;
		return;
	}
	pthread_mutex_lock(&p->mu);
	if (p->nfr) { /* (the root is no frame's) */
		frame *fr = &p->fr[p->nfr - 1];
		assert(fr->next < fr->n && j == &fr->jobs[fr->next]);
		fr->next++;
	}
	if (j->state == J_FREE) {
		j->state = J_LISTING;
		pthread_mutex_unlock(&p->mu);
		list_job(j);
		pthread_mutex_lock(&p->mu);
		j->state = J_LISTED;
		if (j->n >= SHARE_MIN)
			start(p);
	}
	while (j->state == J_LISTING) { /* the helper lists it */
		p->waiting = 1;
		pthread_cond_wait(&p->done, &p->mu);
	}
	if (j->d && j->n >= SHARE_MIN && atomic_load(&j->next) < j->n) {
		p->cur = j; /* the helper may join us */
		wake(p);
	}
	if (j->d) {
		j->workers++;
		pthread_mutex_unlock(&p->mu);
		take_names(j);
		pthread_mutex_lock(&p->mu);
		j->workers--;
		while (j->workers) { /* the helper's last piece */
			p->waiting = 1;
			pthread_cond_wait(&p->done, &p->mu);
		}
	}
	p->waiting = 0;
	if (p->cur == j)
		p->cur = NULL;
	if (j->by_helper) {
		p->ahead_dirs--;
		p->ahead_names -= j->n;
		j->by_helper = 0;
		/* room ahead again: woken once half is taken, not per directory
		 * (a tree of many small directories) */
		if (p->ahead_dirs <= AHEAD_DIRS / 2 && p->ahead_names <= AHEAD_NAMES / 2)
			wake(p);
	}
	j->state = J_TAKEN;
	pthread_mutex_unlock(&p->mu);
}

void stat_pool_free(stat_pool *p)
{
	if (!p)
		return;
	if (p->started) {
		pthread_mutex_lock(&p->mu);
		p->quit = 1;
		pthread_cond_signal(&p->work);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->th, NULL);
	}
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p->fr);
	free(p);
}

void dirjob_free(dirjob *j)
{
	if (j->d)
		closedir(j->d);
	free(j->v);
	free(j->buf);
	memset(j, 0, sizeof *j);
}

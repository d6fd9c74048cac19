/*
 * stat_pool.h — the directories of a sorted walk read ahead on a second
 * thread: each opened, listed and its names lstat'ed, whole.
 *
 * A scan of many small files is mostly its kernel's path lookups (one
 * fstatat per name: W2's 20,000 files in directories of 200), and its walk's
 * thread also merges what it finds with the index (SQLite reads, the stat
 * cache). One helper lives for a whole walk. The walk offers it the
 * directories it will enter, in the order it will enter them (a directory's
 * subdirectories once the directory is read: a stack of frames, the deepest
 * first); the helper takes the first one nobody took and reads it while the
 * walk's thread merges the ones before. The walk's thread reads a directory
 * the helper has not taken itself; one the helper is reading it joins, names
 * taken in small pieces from one counter (as the helper joins a directory
 * the walk's thread is reading when it has nothing ahead), so a helper the
 * scheduler does not run (a loaded machine) costs at most the piece it is
 * in. What is read ahead is bounded (AHEAD_DIRS directories, AHEAD_NAMES
 * names): the walk holds only the directories on its path and a few more.
 */
#ifndef MTM_TREE_STAT_POOL_H
#define MTM_TREE_STAT_POOL_H

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/stat.h>

/* One name of a directory, and its lstat (err: its errno, 0 if none). */
typedef struct {
	char *name; /* in the directory's names buffer */
	unsigned char d_type;
	int err;
	struct stat st;
} dname;

/* A directory to read: its parent's fd and its name there (for the root,
 * the root's fd and "."). The walk makes it; stat_pool_take fills it. */
typedef struct dirjob {
	int pfd;
	const char *name;
	/* the result */
	DIR *d;        /* opened (NULL: open_err) */
	int open_err;  /* errno of opening it */
	int list_err;  /* errno of listing it (ENOMEM too); its names so far are kept */
	dname *v;      /* its names but "." and "..", with their lstats */
	size_t n;
	char *buf;     /* the names' bytes */
	/* private to stat_pool.c */
	int state, workers, by_helper;
	atomic_size_t next;
} dirjob;

typedef struct stat_pool stat_pool;

/* Makes the helper (NULL: not possible, one CPU: stat_pool_take does all). */
stat_pool *stat_pool_new(void);
/* Offers the helper the n directories of jobs (zeroed but for pfd and name),
 * which the walk will take in this order, before any offered earlier: the
 * subdirectories of the directory it just read. They stay offered until
 * stat_pool_pop; jobs must not move until then. p may be NULL. */
int stat_pool_push(stat_pool *p, dirjob *jobs, size_t n); /* 0, or ENOMEM (not pushed) */
/* Withdraws the last frame pushed: the helper is out of its jobs when this
 * returns. Jobs the walk never took may hold what the helper read
 * (dirjob_free frees it). */
void stat_pool_pop(stat_pool *p);
/* Reads job j (with the helper's help, or taken from it), on the walk's
 * thread. j: the root, or the next job of the last frame pushed. */
void stat_pool_take(stat_pool *p, dirjob *j);
/* Ends the helper (NULL: nothing to do). */
void stat_pool_free(stat_pool *p);
/* What a read job holds: its directory, names. */
void dirjob_free(dirjob *j);

#endif

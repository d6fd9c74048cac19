/*
 * stat_pool.h — the lstat of a directory's names, shared with a second
 * thread that lives for a whole walk.
 *
 * A scan of many small files is mostly its kernel's path lookups (one
 * fstatat per name): W2's 20,000 files in directories of 200. A thread
 * made per directory cost more than it saved below 256 names; one helper
 * for the walk, woken per directory, takes names in small pieces from the
 * same counter as the walk's thread, so that a helper the scheduler does
 * not run (a loaded machine) costs nothing but the wake-up: the walk's
 * thread takes the names it left (one taken off its CPU in the middle of
 * its few names is waited for).
 */
#ifndef MTM_TREE_STAT_POOL_H
#define MTM_TREE_STAT_POOL_H

#include <pthread.h>
#include <stddef.h>
#include <sys/stat.h>

/* One name of a directory, and its lstat (err: its errno, 0 if none). */
typedef struct {
	char *name;
	unsigned char d_type;
	int err;
	struct stat st;
} dname;

typedef struct stat_pool stat_pool;

/* Fills v[i].st / v[i].err for the n names of directory dfd. *pool is made
 * at the first directory worth sharing (NULL: not yet, or not possible:
 * then this thread does all). */
void stat_pool_run(stat_pool **pool, int dfd, dname *v, size_t n);

/* Ends the helper (NULL: nothing to do). */
void stat_pool_free(stat_pool *pool);

#endif

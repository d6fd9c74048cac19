/*
 * preflight.h — what an in-place restore checks and prepares before it
 * writes its intent, so that a restore that cannot complete is refused with
 * the tree as it was, instead of failing half-way and wedging the store:
 * the request's scope, entries of other types in the way, free space, write
 * access to the directories that change; and the temporary files a killed
 * restore left behind.
 */
#ifndef MTM_RESTORE_PREFLIGHT_H
#define MTM_RESTORE_PREFLIGHT_H
#include <stdint.h>
#include <sys/stat.h>
#include "util/pathmap.h"
#include "util/strvec.h"

/* Where path lies against a request's paths (sorted, normalized; none:
 * the whole tree): SCOPE_IN (one of them or under one), SCOPE_ABOVE (a
 * directory above one), SCOPE_OUT. */
enum { SCOPE_OUT = 0, SCOPE_ABOVE = 1, SCOPE_IN = 2 };
int scope_of(char *const *paths, size_t n, const char *path);
/* Whether a request takes an entry at scope: in it, or a directory above
 * it (made if missing). */
static inline int scope_takes(int scope, int is_dir)
{
	return scope == SCOPE_IN || (scope == SCOPE_ABOVE && is_dir);
}

/* An entry at path that the walk does not list (a FIFO, socket or device
 * node: not recorded): *st and 1, or 0 if there is none (or it is listed). */
int preflight_other_at(int rootfd, const char *path, struct stat *st);
/* The names of the entries of other types directly in directory dir
 * (paths relative to the root, appended to out). */
int preflight_others_in(int rootfd, const char *dir, strvec *out);

/* ENOSPC, with the figures, if the file system of the tree has less than
 * need bytes free. */
int preflight_space(int rootfd, uint64_t need);

/* EPERM, naming path, if the entry at path is marked immutable or
 * append-only (chattr +i, +a): even root can then neither replace, remove
 * nor change it, nor (a directory) rename a file into it, so a restore
 * that must would fail half-way. One statx, the entry not opened. */
int preflight_frozen_at(int rootfd, const char *path);

/* A directory the restore changes that we may not write: ours, so opened
 * (u+wx) for the restore and its mode put back after. */
typedef struct { char *path; mode_t mode; } opened_dir;
/* Checks write access to every directory in dirs (keys: paths relative to
 * the root, "." for the root); appends to out those to open. EACCES, naming
 * the directory, for one that is not ours. */
int preflight_access(int rootfd, const pathmap *dirs, vec *out /* of opened_dir */);
int preflight_open_dirs(int rootfd, const vec *dirs);
/* Puts the modes back (of those still there); best effort. */
void preflight_close_dirs(int rootfd, vec *dirs);

/* Removes the temporary files (MTM_TMP_PREFIX PID.N) that restores which
 * are no longer running left anywhere in the tree. *n counts them. */
int preflight_clean_temps(int rootfd, uint64_t *n);
#endif

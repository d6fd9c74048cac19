/*
 * ignore.h — what is left out of checkpoints on purpose.
 *
 * Patterns come from .metamoriignore at the tree's root and from --exclude,
 * in gitignore syntax: '#' comments, '!' negation (the last matching pattern
 * wins), a trailing '/' matches directories only, a pattern with a '/' other
 * than a trailing one is anchored at the root, otherwise it matches a name at
 * any depth; '*' and '?' do not match '/', '**' matches across directories,
 * '[...]' classes, '\' escapes. An ignored directory's contents are ignored.
 */
#ifndef MTM_SCAN_IGNORE_H
#define MTM_SCAN_IGNORE_H
#include <stddef.h>

typedef struct { char *pat; int negate, dir_only, anchored; } ignore_rule;
typedef struct { ignore_rule *v; size_t n; } ignore_set;

/* Adds one pattern line (comments and blank lines are skipped). */
int ignore_add(ignore_set *set, const char *line);
/* Loads rootfd/.metamoriignore (if present) then the extra patterns. */
int ignore_load(ignore_set *set, int rootfd, const char *const *extra, size_t n_extra);
/* 1 if relpath (is_dir: a directory) is ignored, itself or through a parent. */
int ignore_path(const ignore_set *set, const char *relpath, int is_dir);
/* 1 if relpath itself matches (parents not considered): for tree walks. */
int ignore_match(const ignore_set *set, const char *relpath, int is_dir);
void ignore_free(ignore_set *set);
/* gitignore-style glob match of a whole string. */
int glob_match(const char *pat, const char *str);
#endif

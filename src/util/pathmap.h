/* pathmap.h — an open-addressing hash map from string keys to pointers.
 * Used for the parent checkpoint's entries during a scan (one lookup per
 * live path) and for the stat cache. Keys are copied. */
#ifndef MTM_UTIL_PATHMAP_H
#define MTM_UTIL_PATHMAP_H
#include <stddef.h>
typedef struct { char *key; void *val; } pathmap_slot;
typedef struct { pathmap_slot *slots; size_t cap, n; } pathmap;
int pathmap_put(pathmap *m, const char *key, void *val); /* 0 or ENOMEM; replaces */
void *pathmap_get(const pathmap *m, const char *key);
/* 1 if a strict ancestor of path ("a" and "a/b" of "a/b/c") is a key of m.
 * Also 1 when out of memory: the session asks it of the directories whose
 * names changed, where "yes" is the cautious answer (the file is read whole). */
int pathmap_under(const pathmap *m, const char *path);
/* Frees keys, and each value with free_val if non-NULL. */
void pathmap_free(pathmap *m, void (*free_val)(void *));
#endif

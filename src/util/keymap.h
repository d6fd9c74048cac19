/* keymap.h — an open-addressing hash map from a pair of integers to a
 * 64-bit value. Used by the session's pre-copy: block number -> its copy,
 * and (file id, block number) -> the parent's hash of the block. */
#ifndef MTM_UTIL_KEYMAP_H
#define MTM_UTIL_KEYMAP_H
#include <stddef.h>
#include <stdint.h>
typedef struct { int64_t a, b; uint64_t val; int used; } keymap_slot;
typedef struct { keymap_slot *slots; size_t cap, n; } keymap;
/* The value of (a, b), or NULL if absent. */
uint64_t *keymap_get(const keymap *m, int64_t a, int64_t b);
/* The value of (a, b), added (0, *fresh = 1) if absent; NULL: ENOMEM. */
uint64_t *keymap_put(keymap *m, int64_t a, int64_t b, int *fresh);
void keymap_free(keymap *m);
#endif

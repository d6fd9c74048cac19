/* strvec.h — a growable array of owned strings, and a growable byte buffer. */
#ifndef MTM_UTIL_STRVEC_H
#define MTM_UTIL_STRVEC_H
#include <stddef.h>

typedef struct { char **v; size_t n, cap; } strvec;
int strvec_push(strvec *sv, const char *s);   /* copies s; returns 0 or ENOMEM */
void strvec_free(strvec *sv);

/* Growable array of fixed-size items. */
typedef struct { void *v; size_t n, cap, size; } vec;
#define VEC_INIT(T) {NULL, 0, 0, sizeof(T)}
void *vec_push(vec *a);                 /* returns a zeroed new slot or NULL */
void vec_free(vec *a);
#define VEC_AT(a, T, i) (((T *)(a)->v)[i])

char *xstrdup(const char *s);           /* aborts on ENOMEM: tiny allocations only */
char *path_join(const char *dir, const char *name); /* "dir/name", or name if dir is "" */
#endif

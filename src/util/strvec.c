/* strvec.c — small containers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/strvec.h"

int strvec_push(strvec *sv, const char *s)
{
	if (sv->n == sv->cap) {
		size_t cap = sv->cap ? sv->cap * 2 : 16;
		char **v = realloc(sv->v, cap * sizeof *v);
		if (!v)
			return ENOMEM;
		sv->v = v;
		sv->cap = cap;
	}
	char *c = strdup(s);
	if (!c)
		return ENOMEM;
	sv->v[sv->n++] = c;
	return 0;
}

void strvec_free(strvec *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = sv->cap = 0;
}

void *vec_push(vec *a)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		void *v = realloc(a->v, cap * a->size);
		if (!v)
			return NULL;
		a->v = v;
		a->cap = cap;
	}
	void *slot = (char *)a->v + a->n * a->size;
	memset(slot, 0, a->size);
	a->n++;
	return slot;
}

void vec_free(vec *a)
{
	free(a->v);
	a->v = NULL;
	a->n = a->cap = 0;
}

char *xstrdup(const char *s)
{
	char *c = strdup(s);
	if (!c)
		abort();
	return c;
}

char *path_join(const char *dir, const char *name)
{
	if (!dir || !*dir)
		return xstrdup(name);
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);
	if (!p)
		abort();
	memcpy(p, dir, a);
	p[a] = '/';
	memcpy(p + a + 1, name, b + 1);
	return p;
}

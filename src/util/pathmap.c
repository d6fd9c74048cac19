/* pathmap.c — linear-probing hash table keyed by NUL-terminated strings. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "util/pathmap.h"
#include "util/xxh.h"

static size_t slot_of(const pathmap *m, const char *key)
{
	size_t mask = m->cap - 1;
	size_t i = (size_t)XXH3_64bits(key, strlen(key)) & mask;
	while (m->slots[i].key && strcmp(m->slots[i].key, key) != 0)
		i = (i + 1) & mask;
	return i;
}

int pathmap_under(const pathmap *m, const char *path)
{
	if (!m->n)
		return 0;
	char *buf = strdup(path); /* (paths may be longer than PATH_MAX) */
	if (!buf)
		return 1;
	int found = 0;
	for (char *p = buf + strlen(buf); p > buf && !found; p--) {
		if (*p != '/')
			continue;
		*p = 0;
		found = pathmap_get(m, buf) != NULL;
	}
	free(buf);
	return found;
}

static int grow(pathmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 1024;
	pathmap_slot *old = m->slots;
	size_t oldcap = m->cap;
	m->slots = calloc(cap, sizeof *m->slots);
	if (!m->slots) {
		m->slots = old;
		return ENOMEM;
	}
	m->cap = cap;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].key)
			m->slots[slot_of(m, old[i].key)] = old[i];
	free(old);
	return 0;
}

int pathmap_put(pathmap *m, const char *key, void *val)
{
	if ((m->n + 1) * 2 > m->cap && grow(m))
		return ENOMEM;
	size_t i = slot_of(m, key);
	if (!m->slots[i].key) {
		m->slots[i].key = strdup(key);
		if (!m->slots[i].key)
			return ENOMEM;
		m->n++;
	}
	m->slots[i].val = val;
	/* probing masks with cap - 1 and ends on a free slot: at most half full */
	assert(!(m->cap & (m->cap - 1)) && m->n * 2 <= m->cap);
	return 0;
}

void *pathmap_get(const pathmap *m, const char *key)
{
	if (!m->cap)
		return NULL;
	size_t i = slot_of(m, key);
	return m->slots[i].key ? m->slots[i].val : NULL;
}

void pathmap_free(pathmap *m, void (*free_val)(void *))
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key) {
			free(m->slots[i].key);
			if (free_val)
				free_val(m->slots[i].val);
		}
	free(m->slots);
	m->slots = NULL;
	m->cap = m->n = 0;
}

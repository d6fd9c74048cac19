/* keymap.c — see keymap.h. Linear probing, at most half full. */
#include <assert.h>
#include <stdlib.h>
#include "util/keymap.h"

static size_t slot_of(size_t cap, int64_t a, int64_t b)
{
	uint64_t h = ((uint64_t)a * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)b * 0xC2B2AE3D27D4EB4Full);
	return (size_t)(h >> 17) & (cap - 1);
}

static keymap_slot *find(keymap_slot *slots, size_t cap, int64_t a, int64_t b)
{
	size_t i = slot_of(cap, a, b);
	while (slots[i].used && !(slots[i].a == a && slots[i].b == b))
		i = (i + 1) & (cap - 1);
	return &slots[i];
}

uint64_t *keymap_get(const keymap *m, int64_t a, int64_t b)
{
	if (!m->cap)
		return NULL;
	keymap_slot *s = find(m->slots, m->cap, a, b);
	return s->used ? &s->val : NULL;
}

uint64_t *keymap_put(keymap *m, int64_t a, int64_t b, int *fresh)
{
	if ((m->n + 1) * 2 > m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 256;
		keymap_slot *ns = calloc(ncap, sizeof *ns);
		if (!ns)
			return NULL;
		for (size_t i = 0; i < m->cap; i++)
			if (m->slots[i].used)
				*find(ns, ncap, m->slots[i].a, m->slots[i].b) = m->slots[i];
		free(m->slots);
		m->slots = ns;
		m->cap = ncap;
	}
	keymap_slot *s = find(m->slots, m->cap, a, b);
	*fresh = !s->used;
	if (*fresh) {
		*s = (keymap_slot){a, b, 0, 1};
		m->n++;
	}
	/* probing masks with cap - 1 and ends on a free slot */
	assert(!(m->cap & (m->cap - 1)) && m->n * 2 <= m->cap);
	return &s->val;
}

void keymap_free(keymap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->n = 0;
}

/* sticky.c — sticky WHOLE records: writable stdio streams, shared writable
 * mappings, AIO. */
#include "track/preload.h"

struct sticky g_st[NSTICKY];
int g_st_n, g_st_maps;
int g_st_hi;

/* Record a sticky WHOLE for e's path and remember key (inside the region). */
void sticky_add(int kind, uintptr_t key, size_t len, int writable, const char *path, size_t plen)
{
	if (writable)
		rec_sticky(MTM_REC_WHOLE, path, plen);
	struct ent *e = ent_new(path, plen, 0);
	if (!e)
		return; /* never released: compared until death, which is safe */
	if (!lock(&g_st_lock)) {
		ent_free(e);
		return;
	}
	for (int i = 0; i < NSTICKY; i++) {
		if (!g_st[i].key) {
			g_st[i] = (struct sticky){key, len, (uint8_t)kind, (uint8_t)writable, e};
			if (i >= g_st_hi)
				g_st_hi = i + 1;
			__atomic_fetch_add(&g_st_n, 1, __ATOMIC_ACQ_REL);
			if (kind == SK_MAP)
				__atomic_fetch_add(&g_st_maps, 1, __ATOMIC_ACQ_REL);
			e = NULL;
			break;
		}
	}
	unlock(&g_st_lock);
	if (e)
		ent_free(e);
}

int sticky_path_used(const struct ent *e)
{
	for (int i = 0; i < g_st_hi; i++)
		if (g_st[i].key && g_st[i].writable && g_st[i].e->len == e->len &&
		    memcmp(g_st[i].e->path, e->path, e->len) == 0)
			return 1;
	return 0;
}

/* Drop slot i (g_st_lock held); returns the entry if the sticky WHOLE for
 * its path ends (the caller records WHOLE 0 + RELEASE, then frees it). */
struct ent *sticky_drop(int i)
{
	struct sticky s = g_st[i];
	g_st[i].key = 0;
	__atomic_fetch_sub(&g_st_n, 1, __ATOMIC_ACQ_REL);
	if (s.kind == SK_MAP)
		__atomic_fetch_sub(&g_st_maps, 1, __ATOMIC_ACQ_REL);
	if (s.writable && !sticky_path_used(s.e))
		return s.e;
	ent_free(s.e);
	return NULL;
}

/* The last writer is gone: compare once more, then stop (inside the region). */
void release(struct ent *e, int in)
{
	if (in) {
		rec(MTM_REC_WHOLE, 0, 0, e->path, e->len);
		rec(MTM_REC_RELEASE, 0, 0, e->path, e->len);
	}
	ent_free(e);
}

/* After a rename of old to new by this process: fds and sticky paths follow. */
static int path_under(const char *p, size_t pl, const char *dir, size_t dl)
{
	if (dl == 0)
		return 0; /* the root itself is never renamed */
	return pl >= dl && memcmp(p, dir, dl) == 0 && (pl == dl || p[dl] == '/');
}

static struct ent *ent_moved(const struct ent *e, const char *o, size_t ol, const char *n, size_t nl)
{
	char buf[PATH_MAX];
	size_t rest = e->len - ol;
	if (!n || nl + rest >= PATH_MAX)
		return NULL;
	memcpy(buf, n, nl);
	memcpy(buf + nl, e->path + ol, rest);
	return ent_new(buf, nl + rest, e->flags);
}

void paths_moved(const char *o, size_t ol, const char *n, size_t nl, int in)
{
	int max = LOAD(&g_maxfd);
	for (int fd = 0; fd <= max && fd < g_nfds; fd++) {
		struct ent *e = fd_get(fd);
		if (e && path_under(e->path, e->len, o, ol))
			fd_put(fd, ent_moved(e, o, ol, n, nl));
	}
	if (!LOAD(&g_st_n))
		return;
	if (!lock(&g_st_lock)) {
		note_untrackable();
		return;
	}
	for (int i = 0; i < g_st_hi; i++) {
		struct sticky *s = &g_st[i];
		if (!s->key || !path_under(s->e->path, s->e->len, o, ol))
			continue;
		struct ent *ne = ent_moved(s->e, o, ol, n, nl);
		if (s->writable && in) {
			rec(MTM_REC_RELEASE, 0, 0, s->e->path, s->e->len);
			if (ne)
				rec_sticky(MTM_REC_WHOLE, ne->path, ne->len);
		}
		if (ne) {
			ent_free(s->e);
			s->e = ne;
		} /* else moved outside the root: keep the old name, harmless */
	}
	unlock(&g_st_lock);
}

/* Declare every sticky thing again (inside the region): in a new child's
 * log, or after one was lost to a full log. */
void restick(void)
{
	g_sticky_lost = 0;
	if (g_sticky_scan)
		rec_sticky(MTM_REC_SCAN, NULL, 0);
	if (!LOAD(&g_st_n) || !lock(&g_st_lock))
		return;
	for (int i = 0; i < g_st_hi; i++)
		if (g_st[i].key && g_st[i].writable)
			rec_sticky(MTM_REC_WHOLE, g_st[i].e->path, g_st[i].e->len);
	unlock(&g_st_lock);
}

/* fd_table.c — the fd table: one pointer per fd, entries from a slab (no
 * malloc). */
#include "track/preload.h"

#define NCLS 8 /* 64 .. 8192 bytes */
static struct ent *g_free[NCLS];
static char *g_chunk;
static size_t g_chunk_left;
struct ent **g_fds;
int g_nfds;
int g_maxfd = -1;

struct ent *ent_new(const char *rel, size_t len, uint32_t flags)
{
	size_t need = sizeof(struct ent) + len + 1;
	int c = 0;
	while (c < NCLS && ((size_t)64 << c) < need)
		c++;
	if (c == NCLS)
		return NULL;
	size_t sz = (size_t)64 << c;
	if (!lock(&g_slab_lock)) {
		note_untrackable();
		return NULL;
	}
	struct ent *e = g_free[c];
	if (e) {
		memcpy(&g_free[c], e->path, sizeof(struct ent *));
	} else {
		if (g_chunk_left < sz) {
			size_t csz = 256 << 10;
			void *p = REAL(mmap)(NULL, csz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED) {
				unlock(&g_slab_lock);
				return NULL;
			}
			g_chunk = p;
			g_chunk_left = csz;
		}
		e = (struct ent *)g_chunk;
		g_chunk += sz;
		g_chunk_left -= sz;
	}
	unlock(&g_slab_lock);
	e->cls = (uint8_t)c;
	e->flags = flags;
	e->len = (uint16_t)len;
	memcpy(e->path, rel, len);
	e->path[len] = 0;
	return e;
}

void ent_free(struct ent *e)
{
	if (!lock(&g_slab_lock))
		return; /* a few bytes lost, once in a blue moon */
	memcpy(e->path, &g_free[e->cls], sizeof(struct ent *));
	g_free[e->cls] = e;
	unlock(&g_slab_lock);
}

void fd_put(int fd, struct ent *e)
{
	if ((unsigned)fd >= (unsigned)g_nfds) {
		if (e)
			ent_free(e);
		return;
	}
	struct ent *old = __atomic_exchange_n(&g_fds[fd], e, __ATOMIC_ACQ_REL);
	if (old)
		ent_free(old);
	if (e) {
		int m = LOAD(&g_maxfd);
		while (fd > m && !__atomic_compare_exchange_n(&g_maxfd, &m, fd, 0, __ATOMIC_ACQ_REL,
		                                              __ATOMIC_ACQUIRE))
			;
	}
}

void fd_clear(int fd)
{
	if (fd_get(fd))
		fd_put(fd, NULL);
}

void fd_set_path(int fd, const char *rel, size_t len, uint32_t flags)
{
	fd_put(fd, ent_new(rel, len, flags));
	/* A file of the tree open for writing: the log made now, not at the
	 * first record, so the session knows this process is traced when the
	 * file is let go unwritten (FAN_CLOSE_WRITE): no record then means no
	 * write (session/watch_parts.h, EV_LET_GO), where a process with no log
	 * could be any process's, its file compared whole */
	if ((flags & O_ACCMODE) != O_RDONLY)
		ensure_log();
}

void fd_copy(int from, int to)
{
	struct ent *e = fd_get(from);
	if (e)
		fd_set_path(to, e->path, e->len, e->flags);
	else
		fd_clear(to);
}

/* wrap_mmap.c — wrappers: shared writable mappings. */
#include "track/adopt.h"

static void *mmap_impl(void *addr, size_t len, int prot, int flags, int fd, off_t off, int how)
{
#define MMAP_CALL (how ? REAL(mmap64)(addr, len, prot, flags, fd, off) : REAL(mmap)(addr, len, prot, flags, fd, off))
	int type = flags & MAP_TYPE;
	if ((type != MAP_SHARED && type != MAP_SHARED_VALIDATE) || t_guard)
		return MMAP_CALL;
	struct ent *e = fd_get_w(fd);
	if (LIKELY(!e)) {
		/* a move into the tree while it mapped: caught up, and a mapping
		 * of a file now the tree's recorded as mappings are */
		uint32_t g = moved_gen();
		void *p = MMAP_CALL;
		if (UNLIKELY(moved_gen() != g) && p != MAP_FAILED) {
			int err = errno;
			moved_in_catch_up(moved_gen());
			if ((e = fd_get(fd)) && ((prot & PROT_WRITE) || (LOAD(&e->flags) & O_ACCMODE) == O_RDWR)) {
				t_guard++;
				if (enter()) {
					sticky_add(SK_MAP, (uintptr_t)p, len, (prot & PROT_WRITE) != 0, e->path, e->len);
					leave();
				}
				t_guard--;
			}
			errno = err;
		}
		return p;
	}
	int writable = (prot & PROT_WRITE) != 0;
	if (!writable && (LOAD(&e->flags) & O_ACCMODE) != O_RDWR)
		return MMAP_CALL; /* can never become writable */
	t_guard++;
	int in = enter();
	void *p = MMAP_CALL;
	int err = errno;
	if (in) {
		if (p != MAP_FAILED)
			sticky_add(SK_MAP, (uintptr_t)p, len, writable, e->path, e->len);
		if (p != MAP_FAILED && writable && MULTI(e))
			multi_sticky();
		leave();
	}
	t_guard--;
	errno = err;
	return p;
#undef MMAP_CALL
}

/* Code mapped at run time (a JIT, a loader of its own): see code_changed. */
static void *mmap_exec(void *p, int prot)
{
	if (UNLIKELY(prot & PROT_EXEC) && p != MAP_FAILED && !t_guard) {
		int err = errno;
		code_changed();
		errno = err;
	}
	return p;
}

/* mmap and mmap64: mmap_impl's two faces (calls.def's W_FORWARD_MMAP
 * rows). */
#define W_FORWARD_MMAP(ret, name, params, call) \
	ret name params { return call; }
#include "track/calls.def"

int munmap(void *addr, size_t len)
{
	if (LIKELY(!LOAD(&g_st_maps)) || t_guard)
		return REAL(munmap)(addr, len);
	uintptr_t a = (uintptr_t)addr, z = a + len;
	int hit = 0;
	if (!lock(&g_st_lock))
		return REAL(munmap)(addr, len);
	for (int i = 0; i < g_st_hi && !hit; i++)
		hit = g_st[i].key && g_st[i].kind == SK_MAP && g_st[i].key >= a && g_st[i].key + g_st[i].len <= z;
	unlock(&g_st_lock);
	if (!hit)
		return REAL(munmap)(addr, len);
	t_guard++;
	int in = enter();
	int r = REAL(munmap)(addr, len);
	int err = errno;
	if (r == 0) {
		struct ent *gone[16];
		int ng = 0;
		if (lock(&g_st_lock)) {
			for (int i = 0; i < g_st_hi && ng < 16; i++)
				if (g_st[i].key && g_st[i].kind == SK_MAP && g_st[i].key >= a &&
				    g_st[i].key + g_st[i].len <= z) {
					struct ent *e = sticky_drop(i);
					if (e)
						gone[ng++] = e;
				}
			unlock(&g_st_lock);
		}
		for (int i = 0; i < ng; i++)
			release(gone[i], in);
	}
	if (in)
		leave();
	t_guard--;
	errno = err;
	return r;
}

/* A moved or resized mapping keeps its sticky entry (SQLite grows its
 * mappings this way). */
void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	void *want = va_arg(ap, void *);
	va_end(ap);
	void *p = REAL(mremap)(old, oldlen, newlen, flags, want);
	if (p != MAP_FAILED && LOAD(&g_st_maps) && lock(&g_st_lock)) {
		for (int i = 0; i < g_st_hi; i++)
			if (g_st[i].key == (uintptr_t)old && g_st[i].kind == SK_MAP) {
				g_st[i].key = (uintptr_t)p;
				g_st[i].len = newlen;
				break;
			}
		unlock(&g_st_lock);
	}
	return p;
}

/* The mapping that contains [addr, addr+len): its path into rel, or -1. */
static int map_find(uintptr_t a, size_t len, int want_ro, char *rel, int mark_writable)
{
	int rl = -1;
	if (!lock(&g_st_lock)) {
		note_untrackable();
		return -1;
	}
	for (int i = 0; i < g_st_hi; i++) {
		struct sticky *s = &g_st[i];
		if (!s->key || s->kind != SK_MAP || a + len <= s->key || a >= s->key + s->len)
			continue;
		if (want_ro && s->writable)
			continue;
		memcpy(rel, s->e->path, s->e->len + 1u);
		rl = s->e->len;
		if (mark_writable)
			s->writable = 1;
		break;
	}
	unlock(&g_st_lock);
	return rl;
}

int msync(void *addr, size_t len, int flags)
{
	if (LIKELY(!LOAD(&g_st_maps)) || t_guard)
		return REAL(msync)(addr, len, flags);
	char rel[PATH_MAX];
	int rl = map_find((uintptr_t)addr, len, 0, rel, 0);
	if (rl < 0)
		return REAL(msync)(addr, len, flags);
	t_guard++;
	int in = enter();
	int r = REAL(msync)(addr, len, flags);
	int err = errno;
	if (in) {
		rec(MTM_REC_WHOLE, 0, 0, rel, (size_t)rl);
		leave();
	}
	t_guard--;
	errno = err;
	return r;
}

static int mprotect_impl(void *addr, size_t len, int prot)
{
	if (LIKELY(!LOAD(&g_st_maps)) || t_guard || !(prot & PROT_WRITE))
		return REAL(mprotect)(addr, len, prot);
	char rel[PATH_MAX];
	int rl = map_find((uintptr_t)addr, len, 1, rel, 0);
	if (rl < 0)
		return REAL(mprotect)(addr, len, prot);
	t_guard++;
	int in = enter();
	int r = REAL(mprotect)(addr, len, prot);
	int err = errno;
	if (r == 0 && (rl = map_find((uintptr_t)addr, len, 1, rel, 1)) >= 0 && in)
		rec_sticky(MTM_REC_WHOLE, rel, (size_t)rl);
	if (in)
		leave();
	t_guard--;
	errno = err;
	return r;
}

int mprotect(void *addr, size_t len, int prot)
{
	int r = mprotect_impl(addr, len, prot);
	if (UNLIKELY(prot & PROT_EXEC) && r == 0 && !t_guard) {
		int err = errno;
		code_changed();
		errno = err;
	}
	return r;
}

/* A library unloaded: its code may have run in this interval. (dlopen is
 * not wrapped: the loader takes its caller for the search path, and what it
 * maps is still there at the checkpoint for the session to look at.) */
int dlclose(void *handle)
{
	int r = REAL(dlclose)(handle);
	int err = errno;
	if (!t_guard)
		code_changed();
	errno = err;
	return r;
}

/* wrap_stdio.c — wrappers: stdio streams, which glibc writes internally,
 * unseen. */
#include "track/init.h"

static int mode_writes(const char *mode) { return mode && strpbrk(mode, "wa+") != NULL; }

/* Forget stream f (before it is closed); returns its entry when the sticky
 * WHOLE of its path ends. found: set if f was one of ours. */
struct ent *stream_forget(FILE *f, int *found)
{
	struct ent *rel = NULL;
	*found = 0;
	if (!LOAD(&g_st_n) || !lock(&g_st_lock))
		return NULL;
	for (int i = 0; i < g_st_hi; i++)
		if (g_st[i].key == (uintptr_t)f && g_st[i].kind == SK_STREAM) {
			*found = 1;
			rel = sticky_drop(i);
			break;
		}
	unlock(&g_st_lock);
	return rel;
}

static FILE *fopen_impl(const char *path, const char *mode, FILE *old, int how)
{
#define FOPEN_CALL                                                             \
	(how == 0 ? REAL(fopen)(path, mode) : how == 1 ? REAL(fopen64)(path, mode) \
	 : how == 2 ? REAL(freopen)(path, mode, old) : REAL(freopen64)(path, mode, old))
	if (!active() || t_guard)
		return FOPEN_CALL;
	t_guard++;
	char rel[PATH_MAX];
	int rl = -1, in = 0, existed = 1, found = 0;
	struct ent *gone = NULL;
	if (old) {
		if (path || !mode_writes(mode))
			gone = stream_forget(old, &found);
		fd_clear(fileno(old));
		if (found)
			in = enter();
	}
	if (path && mode_writes(mode) && (rl = resolve_at(AT_FDCWD, path, 1, rel)) >= 0) {
		struct stat st;
		existed = stat(path, &st) == 0;
		if (existed && !S_ISREG(st.st_mode))
			rl = -1; /* a FIFO (opening it may wait for a reader) or a device */
		else if (!in)
			in = enter();
	}
	FILE *f = FOPEN_CALL;
	int err = errno;
	if (gone)
		release(gone, in);
	if (f) {
		int fd = fileno(f);
		if (rl >= 0) {
			fd_set_path(fd, rel, (size_t)rl, mode[0] == 'a' ? O_APPEND | O_WRONLY : O_RDWR);
			if (in) {
				if (!existed)
					rec(MTM_REC_NS, 0, 0, rel, (size_t)rl);
				else if (mode[0] == 'w')
					rec(MTM_REC_TRUNC, 0, 0, rel, (size_t)rl);
				sticky_add(SK_STREAM, (uintptr_t)f, 0, 1, rel, (size_t)rl);
				struct stat st;
				if (fstat(fd, &st) == 0 && st.st_nlink > 1)
					multi_sticky();
			}
		} else if (!path && old && found) {
			/* freopen(NULL, mode, f): same file, new mode; still ours */
		} else {
			fd_clear(fd);
		}
	}
	if (in)
		leave();
	t_guard--;
	errno = err;
	return f;
#undef FOPEN_CALL
}


FILE *fdopen(int fd, const char *mode)
{
	struct ent *e = fd_get(fd);
	if (LIKELY(!e) || t_guard || !mode_writes(mode))
		return REAL(fdopen)(fd, mode);
	t_guard++;
	int in = enter();
	FILE *f = REAL(fdopen)(fd, mode);
	int err = errno;
	if (in) {
		if (f)
			sticky_add(SK_STREAM, (uintptr_t)f, 0, 1, e->path, e->len);
		if (f && MULTI(e))
			multi_sticky();
		leave();
	}
	t_guard--;
	errno = err;
	return f;
}

int fclose(FILE *f)
{
	if (!g_nfds || t_guard || !f)
		return REAL(fclose)(f);
	int fd = fileno(f);
	if (fd >= 0 && fd == g_logfd)
		return REAL(fclose)(f); /* cannot be: we never fdopen it */
	fd_clear(fd); /* before: once closed, another thread may reuse the number */
	int found;
	struct ent *gone = stream_forget(f, &found);
	if (!found)
		return REAL(fclose)(f);
	t_guard++;
	int in = enter();
	int r = REAL(fclose)(f);
	int err = errno;
	if (gone)
		release(gone, in);
	if (in)
		leave();
	t_guard--;
	errno = err;
	return r;
}

/* fopen, freopen and their 64 twins: fopen_impl's faces
 * (calls.def's W_FORWARD_STDIO rows). */
#define W_FORWARD_STDIO(ret, name, params, call) \
	ret name params { return call; }
#include "track/calls.def"

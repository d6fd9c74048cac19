/* paths.c — paths: the canonical name, relative to the root, of what a call
 * touches. */
#include "track/preload.h"

/* Lexical normalisation of an absolute path, in place; returns its length.
 * Each output component ("/name") is no longer than the input it came from,
 * so the writer never overtakes the reader. */
size_t normalize(char *p)
{
	char *w = p;
	const char *r = p;
	while (*r) {
		while (*r == '/')
			r++;
		if (!*r)
			break;
		const char *s = r;
		while (*r && *r != '/')
			r++;
		size_t n = (size_t)(r - s);
		if (n == 1 && s[0] == '.')
			continue;
		if (n == 2 && s[0] == '.' && s[1] == '.') {
			while (w > p && *--w != '/')
				;
			continue;
		}
		*w++ = '/';
		memmove(w, s, n);
		w += n;
	}
	if (w == p)
		*w++ = '/';
	*w = 0;
	return (size_t)(w - p);
}

/* The part of abs (normalised, absolute) under the root, or NULL: outside,
 * or the store. The root itself is "" (length 0). */
const char *in_root(const char *abs, size_t *len)
{
	if (strncmp(abs, g_root, g_rootlen) != 0)
		return NULL;
	const char *r = abs + g_rootlen;
	if (g_rootlen == 1)
		r = abs + 1; /* root "/" */
	else if (*r == '/')
		r++;
	else if (*r)
		return NULL;
	if (!*r) {
		*len = 0;
		return r;
	}
	if (strncmp(r, ".metamori", 9) == 0 && (r[9] == 0 || r[9] == '/'))
		return NULL;
	*len = strlen(r);
	return r;
}

/* The kernel's path of an open fd; -1 if unknown or deleted. */
int fdpath(int fd, char *out)
{
	char link[32] = "/proc/self/fd/";
	char num[12];
	int n = 0;
	unsigned v = (unsigned)fd;
	do
		num[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	int k = 14;
	while (n)
		link[k++] = num[--n];
	link[k] = 0;
	ssize_t l = readlink(link, out, PATH_MAX - 1);
	if (l <= 0 || out[0] != '/')
		return -1;
	out[l] = 0;
	if (l > 10 && memcmp(out + l - 10, " (deleted)", 10) == 0)
		return -1;
	return (int)l;
}

static char g_cwd[PATH_MAX];
static int g_cwd_ok;

static int cwd_get(char *out)
{
	if (!lock(&g_cwd_lock)) {
		note_untrackable();
		return -1;
	}
	if (!g_cwd_ok && getcwd(g_cwd, sizeof g_cwd) && g_cwd[0] == '/')
		g_cwd_ok = 1;
	int ok = g_cwd_ok;
	if (ok)
		strcpy(out, g_cwd);
	unlock(&g_cwd_lock);
	return ok ? (int)strlen(out) : -1;
}

void cwd_forget(void)
{
	int l = lock(&g_cwd_lock);
	g_cwd_ok = 0;
	if (l)
		unlock(&g_cwd_lock);
}

/* Absolute path of dirfd (canonical). */
static int base_abs(int dirfd, char *out)
{
	if (dirfd == AT_FDCWD)
		return cwd_get(out);
	struct ent *e = fd_get(dirfd);
	if (e) {
		if (e->len == 0) {
			strcpy(out, g_root);
			return (int)g_rootlen;
		}
		if (g_rootlen + 1 + e->len >= PATH_MAX)
			return -1;
		memcpy(out, g_root, g_rootlen);
		size_t n = g_rootlen;
		if (n > 1)
			out[n++] = '/';
		memcpy(out + n, e->path, e->len + 1u);
		return (int)(n + e->len);
	}
	return fdpath(dirfd, out);
}

static int join(char *out, int blen, const char *name)
{
	size_t nl = strlen(name);
	if ((size_t)blen + 1 + nl >= PATH_MAX)
		return -1;
	out[blen] = '/';
	memcpy(out + blen + 1, name, nl + 1);
	return (int)normalize(out);
}

/* Lexical absolute path of (dirfd, path): no system call unless dirfd is an
 * fd we do not know. */
int lex_abs(int dirfd, const char *path, char *out)
{
	if (!path || !*path)
		return -1;
	if (path[0] == '/') {
		size_t n = strlen(path);
		if (n >= PATH_MAX)
			return -1;
		memcpy(out, path, n + 1);
		return (int)normalize(out);
	}
	int b = base_abs(dirfd, out);
	if (b < 0)
		return -1;
	return join(out, b, path);
}

int quick_outside(const char *p)
{
	if (!g_quick_skip)
		return 0;
	return (strncmp(p, "/proc", 5) == 0 && (p[5] == '/' || !p[5])) ||
	       (strncmp(p, "/sys", 4) == 0 && (p[4] == '/' || !p[4])) ||
	       (strncmp(p, "/dev", 4) == 0 && (p[4] == '/' || !p[4]));
}

/* /proc/self/fd/N and the like: a path that names an open file, which may
 * be in the tree (its new fd's kernel path says). */
int fd_link(const char *p)
{
	if (!strncmp(p, "/dev/fd/", 8) || !strncmp(p, "/proc/self/fd/", 14) || !strncmp(p, "/proc/thread-self/fd/", 21))
		return 1;
	if (strncmp(p, "/proc/", 6) || p[6] < '0' || p[6] > '9')
		return 0;
	for (p += 6; *p >= '0' && *p <= '9'; p++)
		;
	return !strncmp(p, "/fd/", 4) || (!strncmp(p, "/task/", 6) && strstr(p, "/fd/"));
}

/* Canonical absolute path of directory dir relative to dirfd (dir NULL:
 * dirfd itself). */
static int canon_dir(int dirfd, const char *dir, char *out)
{
	if (!dir)
		return base_abs(dirfd, out);
	int fd = REAL(openat)(dirfd, dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int n = fdpath(fd, out);
	REAL(close)(fd);
	return n;
}

/*
 * The path relative to the root that a path call on (dirfd, path) acts on,
 * into rel (PATH_MAX); its length, or -1 when outside the root or unknown.
 * The parent is resolved by the kernel (symlinks and all); the final
 * component is followed only when follow is set and it is a symlink.
 */
/* abs names a symlink: where it leads (kept apart: its buffer is needed
 * only then, and signal handlers may run on small stacks). */
static __attribute__((noinline)) void follow_link(char *abs)
{
	struct stat st;
	char rp[PATH_MAX];
	if (lstat(abs, &st) == 0 && S_ISLNK(st.st_mode) && realpath(abs, rp))
		strcpy(abs, rp);
}

int resolve_at(int dirfd, const char *path, int follow, char *rel)
{
	if (!path || !*path)
		return -1;
	if (path[0] == '/' && quick_outside(path))
		return -1;
	/* rel (PATH_MAX) holds a copy of path until the result goes there */
	char abs[PATH_MAX], *buf = rel;
	size_t n = strlen(path);
	if (n >= PATH_MAX)
		return -1;
	memcpy(buf, path, n + 1);
	while (n > 1 && buf[n - 1] == '/')
		buf[--n] = 0;
	char *slash = strrchr(buf, '/');
	const char *name;
	int l;
	if (!slash) {
		name = buf;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			l = canon_dir(dirfd, name, abs);
		else if ((l = canon_dir(dirfd, NULL, abs)) >= 0)
			l = join(abs, l, name);
	} else {
		name = slash + 1;
		if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
			l = canon_dir(dirfd, buf, abs);
		} else {
			if (slash == buf)
				l = canon_dir(dirfd, "/", abs);
			else {
				*slash = 0;
				l = canon_dir(dirfd, buf, abs);
			}
			if (l >= 0)
				l = join(abs, l, name);
		}
	}
	if (l < 0)
		return -1;
	if (follow)
		follow_link(abs);
	size_t rl;
	const char *r = in_root(abs, &rl);
	if (!r)
		return -1;
	memcpy(rel, r, rl + 1);
	return (int)rl;
}

/* rel of an fd (table, else the kernel's view): for the rarer fd calls. */
int fd_rel(int fd, char *rel)
{
	struct ent *e = fd_get(fd);
	if (e) {
		memcpy(rel, e->path, e->len + 1u);
		return e->len;
	}
	char abs[PATH_MAX];
	size_t rl;
	const char *r;
	if (fdpath(fd, abs) < 0 || !(r = in_root(abs, &rl)))
		return -1;
	memcpy(rel, r, rl + 1);
	return (int)rl;
}

/* Only regular files and directories are tracked: a write to a FIFO or a
 * device changes no file, and one that blocks must not hold a checkpoint's
 * barrier for ever. */
int trackable(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
		return 0;
	return S_ISREG(st.st_mode) && st.st_nlink > 1 ? 2 : 1;
}

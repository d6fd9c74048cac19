/* xattr.c — see xattr.h. Paths go through /proc/self/fd/DFD/NAME with the
 * l*xattr calls: Linux has no *xattrat before 6.13, and this reaches a name
 * under any directory descriptor, whatever the depth, never following a
 * symlink in the last component. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>
#include "io/io.h"
#include "io/xattr.h"

/* One file's attribute calls, by fd or by path. */
typedef struct {
	int fd;
	char path[64 + 256];
} xtarget;

static ssize_t x_list(const xtarget *t, char *buf, size_t n)
{
	return t->fd >= 0 ? flistxattr(t->fd, buf, n) : llistxattr(t->path, buf, n);
}
static ssize_t x_get(const xtarget *t, const char *name, void *buf, size_t n)
{
	return t->fd >= 0 ? fgetxattr(t->fd, name, buf, n) : lgetxattr(t->path, name, buf, n);
}
/* Setting or removing an attribute is an IO_META fault and crash point,
 * as chmod is (io.h); an injected EINTR is retried, as a real one. */
static int meta_point(void)
{
	int f = io_fault(IO_META);
	if (f > 0 && f != EINTR) {
		errno = f;
		return -1;
	}
	return 0;
}
static int x_set(const xtarget *t, const char *name, const void *v, size_t n)
{
	if (meta_point())
		return -1;
	int r;
	do
		r = t->fd >= 0 ? fsetxattr(t->fd, name, v, n, 0) : lsetxattr(t->path, name, v, n, 0);
	while (r && errno == EINTR);
	return r;
}
static int x_remove(const xtarget *t, const char *name)
{
	if (meta_point())
		return -1;
	int r;
	do
		r = t->fd >= 0 ? fremovexattr(t->fd, name) : lremovexattr(t->path, name);
	while (r && errno == EINTR);
	return r;
}

static int kept(const char *name)
{
	if (!strncmp(name, "user.", 5) || !strcmp(name, "system.posix_acl_access") ||
	    !strcmp(name, "system.posix_acl_default"))
		return 1;
	return geteuid() == 0 && (!strncmp(name, "trusted.", 8) || !strncmp(name, "security.", 9));
}

static int unsupported(int e) { return e == ENOTSUP || e == EOPNOTSUPP || e == ENOSYS; }

static uint32_t get_u32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

int xattr_blob_valid(const unsigned char *blob, size_t len)
{
	size_t off = 0, prev_off = 0, prev_len = 0;
	while (off < len) {
		size_t nl = blob[off];
		if (nl == 0 || off + 1 + nl + 4 > len || memchr(blob + off + 1, 0, nl))
			return 0;
		const unsigned char *name = blob + off + 1;
		if (prev_len) { /* strictly increasing names */
			size_t m = nl < prev_len ? nl : prev_len;
			int c = memcmp(blob + prev_off, name, m);
			if (c > 0 || (c == 0 && prev_len >= nl))
				return 0;
		}
		uint32_t vl = get_u32(name + nl);
		if (vl > XATTR_VALUE_MAX || off + 1 + nl + 4 + vl > len)
			return 0;
		prev_off = off + 1;
		prev_len = nl;
		off += 1 + nl + 4 + vl;
	}
	return 1;
}

/* The names listed for t (NUL-separated), malloc'd; *n = 0 when none. */
static int list_names(const xtarget *t, char **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	for (;;) {
		ssize_t want = x_list(t, NULL, 0);
		if (want < 0)
			return unsupported(errno) ? 0 : errno;
		if (want == 0)
			return 0;
		char *buf = malloc((size_t)want);
		if (!buf)
			return ENOMEM;
		ssize_t got = x_list(t, buf, (size_t)want);
		if (got >= 0) {
			*out = buf;
			*n = (size_t)got;
			return 0;
		}
		free(buf);
		if (errno != ERANGE) /* ERANGE: one was added meanwhile, ask again */
			return unsupported(errno) ? 0 : errno;
	}
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int read_target(const xtarget *t, unsigned char **blob, size_t *len)
{
	*blob = NULL;
	*len = 0;
	char *names;
	size_t n;
	int rc = list_names(t, &names, &n);
	if (rc || !n)
		return rc;
	size_t count = 0;
	for (size_t i = 0; i < n; i += strlen(names + i) + 1)
		count++;
	char **v = malloc(count * sizeof *v);
	unsigned char *val = malloc(XATTR_VALUE_MAX);
	if (!v || !val) {
		free(v);
		free(val);
		free(names);
		return ENOMEM;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i += strlen(names + i) + 1)
		if (kept(names + i) && strlen(names + i) <= 255)
			v[k++] = names + i;
	qsort(v, k, sizeof *v, cmp_name);
	unsigned char *out = NULL;
	size_t olen = 0;
	for (size_t i = 0; i < k && !rc; i++) {
		ssize_t vl = x_get(t, v[i], val, XATTR_VALUE_MAX);
		if (vl < 0) {
			if (errno == ENODATA) /* removed meanwhile */
				continue;
			rc = errno;
			break;
		}
		size_t nl = strlen(v[i]);
		unsigned char *grown = realloc(out, olen + 1 + nl + 4 + (size_t)vl);
		if (!grown) {
			rc = ENOMEM;
			break;
		}
		out = grown;
		unsigned char *p = out + olen;
		*p++ = (unsigned char)nl;
		memcpy(p, v[i], nl);
		p += nl;
		for (int b = 0; b < 4; b++)
			*p++ = (unsigned char)((uint32_t)vl >> (8 * b));
		memcpy(p, val, (size_t)vl);
		olen += 1 + nl + 4 + (size_t)vl;
	}
	free(v);
	free(val);
	free(names);
	if (rc) {
		free(out);
		return rc;
	}
	*blob = out;
	*len = olen;
	return 0;
}

static int at_target(xtarget *t, int dfd, const char *name)
{
	t->fd = -1;
	int n = snprintf(t->path, sizeof t->path, "/proc/self/fd/%d/%s", dfd, name);
	return n > 0 && (size_t)n < sizeof t->path ? 0 : ENAMETOOLONG;
}

int xattr_read_fd(int fd, unsigned char **blob, size_t *len)
{
	xtarget t = {.fd = fd};
	return read_target(&t, blob, len);
}

int xattr_read_at(int dfd, const char *name, unsigned char **blob, size_t *len)
{
	xtarget t;
	*blob = NULL;
	*len = 0;
	int rc = at_target(&t, dfd, name);
	return rc ? rc : read_target(&t, blob, len);
}

/* The value of name in blob: its offset and length, or -1. */
static long find_in_blob(const unsigned char *blob, size_t len, const char *name, uint32_t *vlen)
{
	size_t nl = strlen(name);
	for (size_t off = 0; off < len;) {
		size_t l = blob[off];
		uint32_t vl = get_u32(blob + off + 1 + l);
		if (l == nl && !memcmp(blob + off + 1, name, nl)) {
			*vlen = vl;
			return (long)(off + 1 + l + 4);
		}
		off += 1 + l + 4 + vl;
	}
	return -1;
}

static int apply_target(const xtarget *t, const unsigned char *blob, size_t len, unsigned *skipped)
{
	char *names;
	size_t n;
	int rc = list_names(t, &names, &n);
	if (rc)
		return rc;
	if (!n && !len)
		return 0;
	unsigned char *cur = malloc(XATTR_VALUE_MAX);
	if (!cur) {
		free(names);
		return ENOMEM;
	}
	/* remove what blob does not hold */
	for (size_t i = 0; i < n && !rc; i += strlen(names + i) + 1) {
		uint32_t vl;
		if (!kept(names + i) || find_in_blob(blob, len, names + i, &vl) >= 0)
			continue;
		if (x_remove(t, names + i) && errno != ENODATA) {
			if (unsupported(errno) || errno == EPERM)
				(*skipped)++;
			else
				rc = errno;
		}
	}
	/* set what differs */
	for (size_t off = 0; off < len && !rc;) {
		char name[256];
		size_t l = blob[off];
		memcpy(name, blob + off + 1, l);
		name[l] = 0;
		uint32_t vl = get_u32(blob + off + 1 + l);
		const unsigned char *v = blob + off + 1 + l + 4;
		off += 1 + l + 4 + vl;
		ssize_t have = x_get(t, name, cur, XATTR_VALUE_MAX);
		if (have == (ssize_t)vl && !memcmp(cur, v, vl))
			continue;
		if (x_set(t, name, v, vl)) {
			if (unsupported(errno) || errno == EPERM)
				(*skipped)++;
			else
				rc = errno;
		}
	}
	free(cur);
	free(names);
	return rc;
}

int xattr_apply_fd(int fd, const unsigned char *blob, size_t len, unsigned *skipped)
{
	xtarget t = {.fd = fd};
	return apply_target(&t, blob, len, skipped);
}

int xattr_apply_at(int dfd, const char *name, const unsigned char *blob, size_t len, unsigned *skipped)
{
	xtarget t;
	int rc = at_target(&t, dfd, name);
	return rc ? rc : apply_target(&t, blob, len, skipped);
}

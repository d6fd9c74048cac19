/* ignore.c — see ignore.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "scan/ignore.h"
#include "util/error.h"

static int class_match(const char **pp, char c)
{
	const char *p = *pp + 1; /* after '[' */
	int negate = 0, matched = 0;
	if (*p == '!' || *p == '^') {
		negate = 1;
		p++;
	}
	int first = 1;
	while (*p && (first || *p != ']')) {
		first = 0;
		char lo = *p;
		if (lo == '\\' && p[1])
			lo = *++p;
		if (p[1] == '-' && p[2] && p[2] != ']') {
			char hi = p[2];
			if (hi == '\\' && p[3]) {
				hi = p[3];
				p++;
			}
			if (c >= lo && c <= hi)
				matched = 1;
			p += 3;
		} else {
			if (c == lo)
				matched = 1;
			p++;
		}
	}
	if (*p != ']')
		return -1; /* unterminated: treat '[' literally */
	*pp = p + 1;
	return matched != negate;
}

int glob_match(const char *p, const char *s)
{
	while (*p) {
		if (p[0] == '*' && p[1] == '*') {
			const char *rest = p + 2;
			if (*rest == '/') {
				/* "**" followed by "/": zero or more whole directories */
				if (glob_match(rest + 1, s))
					return 1;
				for (const char *q = s; *q; q++)
					if (*q == '/' && glob_match(rest + 1, q + 1))
						return 1;
				return 0;
			}
			for (const char *q = s;; q++) {
				if (glob_match(rest, q))
					return 1;
				if (!*q)
					return 0;
			}
		}
		if (*p == '*') {
			for (const char *q = s;; q++) {
				if (glob_match(p + 1, q))
					return 1;
				if (!*q || *q == '/')
					return 0;
			}
		}
		if (!*s)
			return 0;
		if (*p == '?') {
			if (*s == '/')
				return 0;
		} else if (*p == '[') {
			const char *q = p;
			int m = *s == '/' ? 0 : class_match(&q, *s);
			if (m >= 0) {
				if (!m)
					return 0;
				p = q;
				s++;
				continue;
			}
			if (*s != '[')
				return 0;
		} else {
			if (*p == '\\' && p[1])
				p++;
			if (*p != *s)
				return 0;
		}
		p++;
		s++;
	}
	return *s == 0;
}

int ignore_add(ignore_set *set, const char *line)
{
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	while (n && line[n - 1] == ' ' && !(n >= 2 && line[n - 2] == '\\'))
		n--; /* trailing spaces are ignored unless escaped */
	if (!n || line[0] == '#')
		return 0;
	ignore_rule r = {0};
	if (line[0] == '!') {
		r.negate = 1;
		line++;
		n--;
	}
	if (n && line[n - 1] == '/') {
		r.dir_only = 1;
		n--;
	}
	if (n && line[0] == '/') {
		r.anchored = 1;
		line++;
		n--;
	}
	if (!n)
		return 0;
	if (memchr(line, '/', n))
		r.anchored = 1;
	r.pat = strndup(line, n);
	if (!r.pat)
		return ENOMEM;
	ignore_rule *v = realloc(set->v, (set->n + 1) * sizeof *v);
	if (!v) {
		free(r.pat);
		return ENOMEM;
	}
	set->v = v;
	set->v[set->n++] = r;
	return 0;
}

int ignore_load(ignore_set *set, int rootfd, const char *const *extra, size_t n_extra)
{
	int fd = openat(rootfd, ".metamoriignore", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		FILE *f = fdopen(fd, "r");
		if (!f) {
			close(fd);
			return mtm_set_errno(errno, ".metamoriignore");
		}
		char line[4096];
		while (fgets(line, sizeof line, f))
			if (ignore_add(set, line)) {
				fclose(f);
				return mtm_set_error(ENOMEM, ".metamoriignore");
			}
		fclose(f);
	} else if (errno != ENOENT) {
		return mtm_set_errno(errno, ".metamoriignore");
	}
	for (size_t i = 0; i < n_extra; i++)
		if (ignore_add(set, extra[i]))
			return mtm_set_error(ENOMEM, "--exclude");
	return 0;
}

int ignore_match(const ignore_set *set, const char *relpath, int is_dir)
{
	const char *base = strrchr(relpath, '/');
	base = base ? base + 1 : relpath;
	int ignored = 0;
	for (size_t i = 0; i < set->n; i++) {
		const ignore_rule *r = &set->v[i];
		if (r->dir_only && !is_dir)
			continue;
		if (glob_match(r->pat, r->anchored ? relpath : base))
			ignored = !r->negate;
	}
	return ignored;
}

int ignore_path(const ignore_set *set, const char *relpath, int is_dir)
{
	if (!set->n)
		return 0;
	char buf[4096];
	size_t n = strlen(relpath);
	if (n >= sizeof buf)
		return 0;
	memcpy(buf, relpath, n + 1);
	for (char *p = buf; (p = strchr(p, '/')); p++) {
		*p = 0;
		int hit = ignore_match(set, buf, 1);
		*p = '/';
		if (hit)
			return 1;
	}
	return ignore_match(set, relpath, is_dir);
}

void ignore_free(ignore_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		free(set->v[i].pat);
	free(set->v);
	set->v = NULL;
	set->n = 0;
}

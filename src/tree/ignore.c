/* ignore.c — see ignore.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/io.h"
#include "tree/ignore.h"
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

/* Length of the pattern token at p: "**", "*", "?", a "[...]" class, a "\x"
 * escape, or one literal character (an unterminated '[' is literal). */
static size_t token_len(const char *p)
{
	if (p[0] == '*')
		return p[1] == '*' ? 2 : 1;
	if (p[0] == '[') {
		const char *q = p;
		return class_match(&q, 'a') >= 0 ? (size_t)(q - p) : 1;
	}
	if (p[0] == '\\' && p[1])
		return 2;
	return 1;
}

/* Whether the token at p consumes c (star tokens: whether they absorb it). */
static int token_eats(const char *p, char c)
{
	if (p[0] == '*')
		return p[1] == '*' || c != '/'; /* "**" crosses directories, "*" does not */
	if (p[0] == '?')
		return c != '/';
	if (p[0] == '[') {
		const char *q = p;
		int m = class_match(&q, c);
		if (m >= 0)
			return c != '/' && m;
		return c == '[';
	}
	if (p[0] == '\\' && p[1])
		return c == p[1];
	return c == p[0];
}

/* States: start[i] == 1 at the start of each token; a "**" token at i has a
 * second state i + 1 (start 2) for "has absorbed at least one character".
 * Adds the positions reachable without consuming anything: a star may match
 * nothing, and a fresh "**" before a '/' may match no directory at all (but
 * once it absorbed something it must still see its '/'). Targets lie after their
 * source, so one ascending pass suffices. */
static void closure(const char *p, size_t m, const unsigned char *start, unsigned char *set)
{
	for (size_t i = 0; i < m; i++) {
		if (!set[i] || !start[i] || p[i] != '*')
			continue;
		if (start[i] == 2) { /* inside "**" */
			set[i + 1] = 1;
			continue;
		}
		size_t n = token_len(p + i);
		set[i + n] = 1;
		if (n == 2 && p[i + 2] == '/')
			set[i + 3] = 1;
	}
}

/* gitignore-style match of the whole string, as an NFA simulation over the
 * pattern's positions: O(len(p) * len(s)) for any pattern. (A backtracking
 * matcher takes exponential time on patterns such as "*a*a*a*a*b", which a
 * .metamoriignore in a tracked tree could hold; found by fuzz/fuzz_ignore.) */
int glob_match(const char *p, const char *s)
{
	size_t m = strlen(p);
	unsigned char small[3 * 257];
	unsigned char *buf = m < 257 ? small : malloc(3 * (m + 1));
	if (!buf)
		return 0;
	unsigned char *start = buf, *cur = buf + m + 1, *next = buf + 2 * (m + 1);
	memset(buf, 0, 3 * (m + 1));
	for (size_t i = 0; i < m; i += token_len(p + i)) {
		start[i] = 1;
		if (p[i] == '*' && p[i + 1] == '*')
			start[i + 1] = 2;
	}
	cur[0] = 1;
	closure(p, m, start, cur);
	int alive = 1;
	for (; *s && alive; s++) {
		memset(next, 0, m + 1);
		alive = 0;
		for (size_t i = 0; i < m; i++) {
			if (!cur[i] || !start[i])
				continue;
			if (start[i] == 2 || (p[i] == '*' && p[i + 1] == '*'))
				next[start[i] == 2 ? i : i + 1] = 1; /* "**" absorbs anything */
			else if (!token_eats(p + i, *s))
				continue;
			else /* "*" stays to absorb more; any other token moves past itself */
				next[p[i] == '*' ? i : i + token_len(p + i)] = 1;
			alive = 1;
		}
		closure(p, m, start, next);
		unsigned char *t = cur;
		cur = next;
		next = t;
	}
	int r = alive && cur[m];
	if (buf != small)
		free(buf);
	return r;
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
	/* never blocks on a FIFO planted there: only a regular file holds patterns */
	int fd, rc = io_open_regular(rootfd, ".metamoriignore", O_RDONLY | O_NOFOLLOW, &fd);
	if (!rc) {
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
	} else if (rc != ENOENT && rc != ENOTPLAIN && rc != ELOOP) {
		return mtm_set_errno(rc, ".metamoriignore");
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

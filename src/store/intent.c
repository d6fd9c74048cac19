/* intent.c — see intent.h. The file is text, one field a line:
 *   metamori-intent 1
 *   target 7
 *   from 6
 *   exclude PATTERN     (any number, in order)
 *   path PATH           (any number)
 * with '\' written "\\" and a newline "\n" in patterns and paths. The format
 * of older versions, the target id alone ("7\n"), is still read (legacy). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/io.h"
#include "store/intent.h"
#include "util/error.h"

#define INTENT_MAGIC "metamori-intent 1"
#define INTENT_MAX (64u << 20) /* larger is damage */

static int put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t nc = (*cap ? *cap * 2 : 256);
		while (nc < *len + n + 1)
			nc *= 2;
		char *b = realloc(*buf, nc);
		if (!b)
			return ENOMEM;
		*buf = b;
		*cap = nc;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	return 0;
}

static int put_field(char **buf, size_t *len, size_t *cap, const char *key, const char *value)
{
	int rc = put(buf, len, cap, key, strlen(key));
	for (const char *p = value; !rc && *p; p++)
		rc = *p == '\\' ? put(buf, len, cap, "\\\\", 2) : *p == '\n' ? put(buf, len, cap, "\\n", 2) : put(buf, len, cap, p, 1);
	return rc ? rc : put(buf, len, cap, "\n", 1);
}

int intent_write(mtm_store *s, const intent *in)
{
	char *buf = NULL, num[64];
	size_t len = 0, cap = 0;
	int rc = put(&buf, &len, &cap, INTENT_MAGIC "\n", strlen(INTENT_MAGIC) + 1);
	snprintf(num, sizeof num, "%lld", (long long)in->target);
	rc = rc ? rc : put_field(&buf, &len, &cap, "target ", num);
	snprintf(num, sizeof num, "%lld", (long long)in->from);
	rc = rc ? rc : put_field(&buf, &len, &cap, "from ", num);
	for (size_t i = 0; !rc && i < in->excludes.n; i++)
		rc = put_field(&buf, &len, &cap, "exclude ", in->excludes.v[i]);
	for (size_t i = 0; !rc && i < in->paths.n; i++)
		rc = put_field(&buf, &len, &cap, "path ", in->paths.v[i]);
	if (rc) {
		free(buf);
		return mtm_set_error(rc, "%s/.metamori/intent", s->root);
	}
	int fd;
	rc = io_openat(s->dirfd, "intent.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600, &fd);
	if (!rc) {
		rc = io_pwrite(fd, buf, len, 0);
		if (!rc)
			rc = io_fsync(fd);
		close(fd);
	}
	free(buf);
	if (!rc)
		rc = io_renameat(s->dirfd, "intent.tmp", s->dirfd, "intent");
	if (!rc)
		rc = io_fsync(s->dirfd);
	return rc ? mtm_set_errno(rc, "%s/.metamori/intent", s->root) : 0;
}

void intent_free(intent *in)
{
	strvec_free(&in->excludes);
	strvec_free(&in->paths);
	memset(in, 0, sizeof *in);
}

static int parse_id(const char *text, mtm_id *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (end == text || *end || errno || v < 0)
		return -1;
	*out = v;
	return 0;
}

/* Undoes put_field's escapes in place. */
static int unescape(char *p)
{
	char *o = p;
	for (; *p; p++) {
		if (*p != '\\') {
			*o++ = *p;
			continue;
		}
		p++;
		if (*p == '\\')
			*o++ = '\\';
		else if (*p == 'n')
			*o++ = '\n';
		else
			return -1;
	}
	*o = 0;
	return 0;
}

static int parse(char *text, intent *in)
{
	char *save = NULL, *line = strtok_r(text, "\n", &save);
	if (!line)
		return -1;
	if (strcmp(line, INTENT_MAGIC)) { /* the older format: the id alone */
		if (parse_id(line, &in->target) || !in->target || strtok_r(NULL, "\n", &save))
			return -1;
		in->legacy = 1;
		return 0;
	}
	while ((line = strtok_r(NULL, "\n", &save))) {
		char *sp = strchr(line, ' ');
		if (!sp)
			return -1;
		*sp = 0;
		char *value = sp + 1;
		if (!strcmp(line, "target")) {
			if (parse_id(value, &in->target))
				return -1;
		} else if (!strcmp(line, "from")) {
			if (parse_id(value, &in->from))
				return -1;
		} else if (!strcmp(line, "exclude") || !strcmp(line, "path")) {
			if (unescape(value) || strvec_push(*line == 'e' ? &in->excludes : &in->paths, value))
				return -1;
		} else {
			return -1; /* a field this version does not know: refuse, never half-read */
		}
	}
	return in->target > 0 ? 0 : -1;
}

int intent_read(mtm_store *s, intent *in)
{
	memset(in, 0, sizeof *in);
	int fd, rc = io_open_regular(s->dirfd, "intent", O_RDONLY | O_NOFOLLOW, &fd); /* not a FIFO or device: never block */
	if (rc == ENOENT)
		return 0;
	if (rc)
		return mtm_set_errno(rc, "%s/.metamori/intent", s->root);
	struct stat st;
	if (fstat(fd, &st) || st.st_size > INTENT_MAX) {
		close(fd);
		return mtm_set_error(MTM_ECORRUPT, "%s/.metamori/intent: damaged restore intent", s->root);
	}
	char *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	rc = buf ? io_pread(fd, buf, (size_t)st.st_size, 0, &got) : ENOMEM;
	close(fd);
	if (rc) {
		free(buf);
		return mtm_set_errno(rc, "%s/.metamori/intent", s->root);
	}
	buf[got] = 0;
	if (strlen(buf) != got || parse(buf, in)) {
		free(buf);
		intent_free(in);
		return mtm_set_error(MTM_ECORRUPT, "%s/.metamori/intent: damaged restore intent (remove it if no restore "
		                     "was interrupted)", s->root);
	}
	free(buf);
	return 0;
}

int intent_clear(mtm_store *s)
{
	int rc = io_unlinkat(s->dirfd, "intent", 0);
	if (rc && rc != ENOENT)
		return mtm_set_errno(rc, "%s/.metamori/intent", s->root);
	rc = io_fsync(s->dirfd);
	return rc ? mtm_set_errno(rc, "%s/.metamori", s->root) : 0;
}

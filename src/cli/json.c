/* json.c — a streaming JSON writer with comma bookkeeping (see json.h). */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include "cli/cli.h"
#include "cli/json.h"
#include "cli/utf8.h"

void json_init(json *j, FILE *f)
{
	j->out = f;
	j->buf = NULL;
	j->len = 0;
	j->f = open_memstream(&j->buf, &j->len);
	if (!j->f) { /* (out of memory: written as it goes, as before) */
		j->f = f;
		j->out = NULL;
	}
	j->depth = 0;
	j->first[0] = 1;
	j->after_key = 0;
}

/* Before any value or key: the comma (none right after a key). */
static void sep(json *j)
{
	if (j->after_key) {
		j->after_key = 0;
		return;
	}
	if (!j->first[j->depth])
		fputs(", ", j->f);
	j->first[j->depth] = 0;
}

static void open(json *j, char c)
{
	sep(j);
	assert(j->depth + 1 < JSON_MAX_DEPTH);
	fputc(c, j->f);
	j->first[++j->depth] = 1;
}

static void close_(json *j, char c)
{
	assert(j->depth > 0 && !j->after_key);
	j->depth--;
	fputc(c, j->f);
}

void json_obj(json *j) { open(j, '{'); }
void json_obj_end(json *j) { close_(j, '}'); }
void json_arr(json *j) { open(j, '['); }
void json_arr_end(json *j) { close_(j, ']'); }

static void put_string(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	fputc('"', f);
	while (*p) {
		uint32_t cp;
		int n = utf8_len(p, &cp);
		if (!n) { /* not text: the byte as a lone surrogate (surrogateescape) */
			fprintf(f, "\\udc%02x", *p++);
			continue;
		}
		if (cp == '"' || cp == '\\')
			fprintf(f, "\\%c", (int)cp);
		else if (cp == '\n')
			fputs("\\n", f);
		else if (cp == '\t')
			fputs("\\t", f);
		else if (cp < 0x20 || cp == 0x7f)
			fprintf(f, "\\u%04x", cp);
		else
			fwrite(p, 1, (size_t)n, f);
		p += n;
	}
	fputc('"', f);
}

void json_key(json *j, const char *key)
{
	sep(j);
	put_string(j->f, key);
	fputs(": ", j->f);
	j->after_key = 1;
}

void json_str(json *j, const char *s)
{
	if (!s) {
		json_null(j);
		return;
	}
	sep(j);
	put_string(j->f, s);
}

void json_int(json *j, int64_t v)
{
	sep(j);
	fprintf(j->f, "%" PRId64, v);
}

void json_uint(json *j, uint64_t v)
{
	sep(j);
	fprintf(j->f, "%" PRIu64, v);
}

void json_bool(json *j, int v)
{
	sep(j);
	fputs(v ? "true" : "false", j->f);
}

void json_null(json *j)
{
	sep(j);
	fputs("null", j->f);
}

void json_real(json *j, double v)
{
	sep(j);
	fprintf(j->f, "%.3f", v);
}

void json_done(json *j)
{
	assert(j->depth == 0);
	fputc('\n', j->f);
	if (j->out) {
		fclose(j->f);
		fwrite(j->buf, 1, j->len, j->out);
		free(j->buf);
		j->f = j->out;
		j->out = NULL;
	}
	fflush(j->f);
}

void json_discard(json *j)
{
	if (j->out) {
		fclose(j->f);
		free(j->buf);
		j->f = j->out;
		j->out = NULL;
	}
}

void json_base64(json *j, const void *data, size_t len)
{
	static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = data;
	sep(j);
	fputc('"', j->f);
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (i + 1 < len ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < len ? p[i + 2] : 0);
		fputc(digits[v >> 18 & 63], j->f);
		fputc(digits[v >> 12 & 63], j->f);
		fputc(i + 1 < len ? digits[v >> 6 & 63] : '=', j->f);
		fputc(i + 2 < len ? digits[v & 63] : '=', j->f);
	}
	fputc('"', j->f);
}

void json_kstr(json *j, const char *key, const char *s) { json_key(j, key); json_str(j, s); }
void json_kint(json *j, const char *key, int64_t v) { json_key(j, key); json_int(j, v); }
void json_kuint(json *j, const char *key, uint64_t v) { json_key(j, key); json_uint(j, v); }
void json_kbool(json *j, const char *key, int v) { json_key(j, key); json_bool(j, v); }

void json_string(const char *s)
{
	put_string(stdout, s);
}

/* json.h — the one JSON writer behind every `--json` (schema: man page,
 * section JSON OUTPUT). Output is always valid UTF-8: strings are escaped
 * as JSON requires, and a byte that is not part of well-formed UTF-8 (a
 * file name is bytes) is written as \udcNN, the lone low surrogate that
 * Python's surrogateescape uses, so os.fsencode(name) gives the bytes back.
 * The document is built in memory and written out by json_done only: a
 * command that fails half-way calls json_discard and prints no JSON at all
 * (a script never reads half a document). */
#ifndef MTM_CLI_JSON_H
#define MTM_CLI_JSON_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

typedef struct {
	FILE *f;                             /* the document so far (in memory) */
	FILE *out;                           /* where json_done writes it */
	char *buf;
	size_t len;
	int depth;
	unsigned char first[JSON_MAX_DEPTH]; /* nothing written yet at this level */
	int after_key;                       /* a key was written: the value follows, no comma */
} json;

/* Starts a document for f. */
void json_init(json *j, FILE *f);
void json_obj(json *j);
void json_obj_end(json *j);
void json_arr(json *j);
void json_arr_end(json *j);
void json_key(json *j, const char *key);
void json_str(json *j, const char *s); /* NULL: null */
void json_int(json *j, int64_t v);
void json_uint(json *j, uint64_t v);
void json_bool(json *j, int v);
void json_null(json *j);
void json_real(json *j, double v); /* three decimals */
void json_base64(json *j, const void *data, size_t len); /* bytes as a base64 string (RFC 4648, padded) */
/* Ends the document with a newline and writes it to f (flushed). */
void json_done(json *j);
/* Drops the document unwritten (the command failed). */
void json_discard(json *j);

/* key and value in one call */
void json_kstr(json *j, const char *key, const char *s);
void json_kint(json *j, const char *key, int64_t v);
void json_kuint(json *j, const char *key, uint64_t v);
void json_kbool(json *j, const char *key, int v);
#endif

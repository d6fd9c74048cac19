/*
 * fuzz_ignore.c — ignore patterns (FORMAT section 10): the input is pattern
 * lines, a NUL byte, then path lines; every pattern is parsed and every path
 * matched (ignore_path, and glob_match against each pattern).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tree/ignore.h"

static char *line_at(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
	const uint8_t *e = nl ? nl : end;
	char *s = malloc((size_t)(e - *p) + 1);
	memcpy(s, *p, (size_t)(e - *p));
	s[e - *p] = 0;
	*p = nl ? nl + 1 : end;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *sep = memchr(data, 0, size);
	const uint8_t *pe = sep ? sep : data + size, *p = data;
	ignore_set set = {0};
	char *pats[64];
	int np = 0;
	while (p < pe && np < 64) {
		char *line = line_at(&p, pe);
		ignore_add(&set, line);
		pats[np++] = line;
	}
	if (sep) {
		const uint8_t *q = sep + 1, *end = data + size;
		for (int k = 0; q < end && k < 64; k++) {
			char *path = line_at(&q, end);
			size_t len = strlen(path);
			ignore_path(&set, path, (int)(len & 1));
			ignore_match(&set, path, !(len & 1));
			for (int i = 0; i < np; i++)
				glob_match(pats[i], path);
			free(path);
		}
	}
	for (int i = 0; i < np; i++)
		free(pats[i]);
	ignore_free(&set);
	return 0;
}

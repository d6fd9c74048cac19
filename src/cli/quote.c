/* quote.c — git-style quoting of names for the terminal (see quote.h). */
#include <stdint.h>
#include "cli/quote.h"
#include "cli/utf8.h"

/* Characters that cannot be shown as themselves: C0 and C1 controls (C1
 * includes the one-byte CSI of some terminals) and DEL. */
static int is_control(uint32_t cp)
{
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0);
}

int quote_needed(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		uint32_t cp;
		int n = utf8_len(p, &cp);
		if (!n || is_control(cp) || cp == '"' || cp == '\\')
			return 1;
		p += n;
	}
	return 0;
}

static void put_byte_escaped(FILE *f, unsigned char c)
{
	static const char from[] = "\a\b\t\n\v\f\r\"\\", to[] = "abtnvfr\"\\";
	for (int i = 0; from[i]; i++) {
		if (c == (unsigned char)from[i]) {
			fputc('\\', f);
			fputc(to[i], f);
			return;
		}
	}
	fprintf(f, "\\%03o", c);
}

void quote_line(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		uint32_t cp;
		int n = utf8_len(p, &cp);
		if (n && !is_control(cp)) {
			fwrite(p, 1, (size_t)n, f);
			p += n;
			continue;
		}
		int bytes = n ? n : 1;
		for (int i = 0; i < bytes; i++)
			put_byte_escaped(f, p[i]);
		p += bytes;
	}
}

void quote_put(FILE *f, const char *s)
{
	if (!quote_needed(s)) {
		fputs(s, f);
		return;
	}
	const unsigned char *p = (const unsigned char *)s;
	fputc('"', f);
	while (*p) {
		uint32_t cp;
		int n = utf8_len(p, &cp);
		if (n && !is_control(cp) && cp != '"' && cp != '\\') {
			fwrite(p, 1, (size_t)n, f);
			p += n;
			continue;
		}
		/* a control character or a byte that is not text: each byte escaped */
		int bytes = n ? n : 1;
		for (int i = 0; i < bytes; i++)
			put_byte_escaped(f, p[i]);
		p += bytes;
	}
	fputc('"', f);
}

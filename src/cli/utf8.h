/* utf8.h — how long the valid UTF-8 character at s is (the CLI's quoting and
 * JSON both need to tell text from bytes that are not text). */
#ifndef MTM_CLI_UTF8_H
#define MTM_CLI_UTF8_H
#include <stdint.h>

/* Length (1-4) of the well-formed UTF-8 sequence at s, or 0 if the byte at s
 * does not start one (stray continuation, overlong form, surrogate, past
 * U+10FFFF, cut short by the NUL). *cp receives the code point. */
int utf8_len(const unsigned char *s, uint32_t *cp);
#endif

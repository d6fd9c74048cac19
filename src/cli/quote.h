/* quote.h — names and messages on a terminal, quoted as git quotes paths:
 * a name with a control character, '"', '\\' or bytes that are not UTF-8
 * is printed in double quotes with C escapes (\t, \n, \\, \", \NNN octal),
 * so no escape sequence from a file name ever reaches the terminal. Plain
 * names (including printable UTF-8) are printed as they are. */
#ifndef MTM_CLI_QUOTE_H
#define MTM_CLI_QUOTE_H
#include <stdio.h>

/* 1 if s must be quoted. */
int quote_needed(const char *s);
/* Writes s to f, quoted when needed. */
void quote_put(FILE *f, const char *s);
/* Writes a message line that may hold names (an error: "PATH: why") with
 * its control characters and bytes that are not UTF-8 escaped as quote_put
 * escapes them, but no quotes added: it stays one line, and no escape
 * sequence from a name reaches the terminal. */
void quote_line(FILE *f, const char *s);
#endif

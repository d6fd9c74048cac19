/* log.c — see log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "util/log.h"

/* Installed once, before the library is used (metamori.h): read by every
 * thread, written by none after that. */
static mtm_log_fn handler;
static void *handler_arg;

void mtm_set_log_handler(mtm_log_fn fn, void *arg)
{
	handler = fn;
	handler_arg = arg;
}

void log_msg(int level, const char *fmt, ...)
{
	mtm_log_fn fn = handler;
	if (!fn)
		return;
	char buf[1024], *line = buf;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof buf) { /* a long path: format it again at its length */
		va_start(ap, fmt);
		if (vasprintf(&line, fmt, ap) < 0)
			line = buf; /* (the line, cut at sizeof buf) */
		va_end(ap);
	}
	if (n >= 0)
		fn(handler_arg, level, line);
	if (line != buf)
		free(line);
}

/*
 * log.h — the library's lines for people. It never prints: a line goes to
 * the handler the application installed (mtm_set_log_handler, metamori.h),
 * or nowhere.
 */
#ifndef MTM_UTIL_LOG_H
#define MTM_UTIL_LOG_H
#include "metamori.h"

/* One line (no newline) at level (MTM_LOG_*) to the handler, if any. */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif

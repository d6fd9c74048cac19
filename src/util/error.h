/* error.h — the per-thread "last error" line and helpers to set it.
 * Every failing internal function sets the detail once, at the place that
 * knows what failed, and returns a code; callers propagate the code. */
#ifndef MTM_UTIL_ERROR_H
#define MTM_UTIL_ERROR_H
#include "metamori.h"

/* Sets the thread's last error to "what: why" formatted; returns err. */
int mtm_set_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like mtm_set_error, with ": strerror(err)" appended. */
int mtm_set_errno(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mtm_clear_error(void);

/* A positive "errno" of our own: something opened to be read (a tree file,
 * a pack, the intent) turned out to be neither a regular file nor a
 * directory (a FIFO, a device, a socket). io_open_plain returns it. */
#define ENOTPLAIN 4201

/* An argument an API call cannot do without is NULL: MTM_EINVAL ("call: arg
 * is NULL"), never a crash (include/metamori.h's functions all check theirs). */
#define MTM_NEED(arg, call) \
	do { \
		if (!(arg)) \
			return mtm_set_error(MTM_EINVAL, "%s: %s is NULL", call, #arg); \
	} while (0)

/* The same for a list of n strings (NULL allowed only when n is 0), named
 * as the caller knows it (opts->excludes). */
#define MTM_NEED_LIST(list, n, call, name) \
	do { \
		if ((n) && !(list)) \
			return mtm_set_error(MTM_EINVAL, "%s: %s is NULL", call, name); \
		for (size_t i_ = 0; i_ < (n); i_++) \
			if (!(list)[i_]) \
				return mtm_set_error(MTM_EINVAL, "%s: %s[%zu] is NULL", call, name, i_); \
	} while (0)

#define MTM_TRY(expr) do { int rc_ = (expr); if (rc_) return rc_; } while (0)
#endif

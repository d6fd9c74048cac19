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

#define MTM_TRY(expr) do { int rc_ = (expr); if (rc_) return rc_; } while (0)
#endif

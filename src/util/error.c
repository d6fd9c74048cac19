/* error.c — error codes to text, and the per-thread last-error line. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/error.h"

static __thread char last_error[1024];

const char *mtm_strerror(int err)
{
	switch (err) {
	case MTM_OK: return "success";
	case MTM_ENOSTORE: return "no metamori store found (run 'metamori init')";
	case MTM_EEXIST: return "already exists (a store there, or a tag naming another checkpoint)";
	case MTM_ENEWER: return "store was written by a newer version of metamori";
	case MTM_EFOREIGN: return "not a metamori store";
	case MTM_ECORRUPT: return "store is damaged";
	case MTM_ENOCKPT: return "no such checkpoint";
	case MTM_EBUSY: return "another metamori command is writing this store";
	case MTM_EINVAL: return "invalid argument";
	case MTM_EUNSAFE: return "unsafe path";
	case MTM_ENOTEMPTY: return "directory is not empty";
	case MTM_EINDEX: return "index error";
	case MTM_EPERM: return "unsafe store permissions";
	case MTM_EFAULT: return "injected fault";
	}
	if (err == ENOTPLAIN)
		return "not a regular file";
	if (err > 0)
		return strerror(err);
	return "unknown error";
}

const char *mtm_last_error(void) { return last_error; }
void mtm_clear_error(void) { last_error[0] = 0; }

/* Formats into a local buffer first: callers often wrap the previous detail
 * ("%s: %s", what, mtm_last_error()), which must not overlap the output. */
static int vset(int err, int with_errno, const char *fmt, va_list ap)
{
	char buf[sizeof last_error];
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof buf)
		n = sizeof buf - 1;
	if (with_errno)
		snprintf(buf + n, sizeof buf - (size_t)n, ": %s", mtm_strerror(err));
	memcpy(last_error, buf, sizeof buf);
	return err;
}

int mtm_set_error(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset(err, 0, fmt, ap);
	va_end(ap);
	return err;
}

int mtm_set_errno(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset(err, 1, fmt, ap);
	va_end(ap);
	return err;
}

void mtm_free(void *p) { free(p); }

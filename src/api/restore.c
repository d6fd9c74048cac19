/*
 * restore.c — mtm_restore, mtm_restore_continue, mtm_restore_abort: a restore (restore/), refused in place while a
 * session (session/) tracks the tree: it would change under the traced
 * program, behind the interposer's back (asked with the writer lock held:
 * a session starts only while holding it too).
 */
#include "restore/restore.h"
#include "session/session.h"
#include "util/error.h"

int mtm_restore(mtm_store *s, mtm_id id, const mtm_restore_opts *opts, mtm_restore_stats *out)
{
	MTM_NEED(s, "restore");
	return restore_checkpoint(s, id, opts, session_refuse_restore, out);
}

int mtm_restore_continue(mtm_store *s, const mtm_restore_opts *opts, mtm_restore_stats *out)
{
	MTM_NEED(s, "restore");
	return restore_resume(s, 0, opts, session_refuse_restore, out);
}

int mtm_restore_abort(mtm_store *s, const mtm_restore_opts *opts, mtm_restore_stats *out)
{
	MTM_NEED(s, "restore");
	return restore_resume(s, 1, opts, session_refuse_restore, out);
}

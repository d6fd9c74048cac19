/*
 * checkpoint.c — mtm_checkpoint: which engine makes a checkpoint. Inside
 * `metamori run` the session makes it (consistent, tracked); from anywhere
 * else a running session is asked to; with no session, the tree is scanned.
 */
#include <string.h>
#include "checkpoint/checkpoint.h"
#include "session/session.h"
#include "util/error.h"

int mtm_checkpoint(mtm_store *s, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out)
{
	if (out)
		memset(out, 0, sizeof *out);
	if (opts && opts->version != MTM_CHECKPOINT_OPTS_VERSION)
		return mtm_set_error(MTM_EINVAL, "checkpoint: unsupported options version %d", opts->version);
	int rc = session_checkpoint(s, opts, out);
	if (rc != MTM_ENOSESSION)
		return rc;
	/* while a session runs (it may start any time we do not hold the
	 * lock), our pack is one of our own: the session writes ahead into its */
	ckpt_hooks hooks = session_ckpt_hooks(NULL);
	return ckpt_scan(s, opts, &hooks, out);
}

int mtm_checkpoint_at(const char *path, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out)
{
	/* a running session makes it: its client need not open the index */
	int rc = session_checkpoint_at(path, opts, out);
	if (rc != MTM_ENOSESSION)
		return rc;
	mtm_store *s;
	if ((rc = mtm_open(&s, path)))
		return rc;
	rc = mtm_checkpoint(s, opts, out);
	mtm_close(s);
	return rc;
}

/*
 * checkpoint.c — mtm_checkpoint: which engine makes a checkpoint. Inside
 * `metamori run` the session makes it (consistent, tracked); from anywhere
 * else a running session is asked to; with no session (or with memory
 * regions registered, which only this process can read), the tree is
 * scanned here.
 */
#include <string.h>
#include "checkpoint/checkpoint.h"
#include "session/session.h"
#include "util/error.h"

static int opts_check(const mtm_checkpoint_opts *opts)
{
	if (opts && opts->version != MTM_CHECKPOINT_OPTS_VERSION)
		return mtm_set_error(MTM_EINVAL, "checkpoint: unsupported options version %d", opts->version);
	if (opts)
		MTM_NEED_LIST(opts->excludes, opts->n_excludes, "checkpoint", "opts->excludes");
	return 0;
}

int mtm_checkpoint(mtm_store *s, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out)
{
	if (out)
		memset(out, 0, sizeof *out);
	MTM_NEED(s, "checkpoint");
	MTM_TRY(opts_check(opts));
	/* while a session runs (it may start any time we do not hold the
	 * lock), our pack is one of our own: the session writes ahead into its */
	ckpt_hooks hooks = session_ckpt_hooks(NULL);
	/* a session cannot read this process's memory: with regions, the
	 * checkpoint is made here, or not at all while a session runs */
	if (s->n_regions) {
		if (session_alive(s))
			return mtm_set_error(MTM_EINVAL, "checkpoint: memory regions cannot be saved while `metamori run` runs on %s",
			                     s->root);
		return ckpt_scan(s, opts, &hooks, out);
	}
	int rc = session_checkpoint(s, opts, out);
	if (rc != MTM_ENOSESSION)
		return rc;
	return ckpt_scan(s, opts, &hooks, out);
}

int mtm_checkpoint_at(const char *path, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out)
{
	if (out)
		memset(out, 0, sizeof *out);
	MTM_TRY(opts_check(opts));
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

/*
 * client.c — mtm_checkpoint's way to a running `metamori run` session.
 * Until a session exists for the store, checkpoints are made by scanning.
 */
#include "session/session.h"

int session_checkpoint(mtm_store *s, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out)
{
	(void)s; (void)opts; (void)out;
	return MTM_ENOSESSION;
}

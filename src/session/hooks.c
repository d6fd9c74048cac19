/*
 * hooks.c — what a session lends the checkpoint engine (ckpt_hooks,
 * checkpoint/checkpoint.h): the records it wrote ahead into the pack and
 * the parent hashes its passes looked up; anyone else's checkpoint, while
 * a session runs, only starts a pack of its own.
 */
#include "session/session.h"

static const pack_ahead *hook_ahead(void *arg) { return prewrite_ahead(arg); }

static int hook_ahead_ref(void *arg, const unsigned char *slot, ahead_rec **rec, int *boff)
{
	return prewrite_ref(arg, slot, rec, boff);
}

static int hook_parent_hash(void *arg, mtm_id parent, int64_t file_id, int64_t b, uint64_t *out)
{
	const mtm_session *ss = arg;
	return parent_hashes_get(ss->bg_ph, parent, file_id, b, out);
}

ckpt_hooks session_ckpt_hooks(mtm_session *ss)
{
	if (!ss)
		return (ckpt_hooks){.pack_fresh = session_alive};
	return (ckpt_hooks){.arg = ss, .ahead = hook_ahead, .ahead_ref = hook_ahead_ref, .parent_hash = hook_parent_hash};
}

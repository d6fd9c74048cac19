/*
 * hooks.c — what a session lends the checkpoint engine (ckpt_hooks,
 * checkpoint/checkpoint.h): the records it wrote ahead into the pack and
 * the parent hashes its passes looked up; anyone else's checkpoint, while
 * a session runs, only starts a pack of its own.
 */
#include <stdlib.h>
#include <string.h>
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

static int hook_sc_pending(void *arg, mtm_id parent, const char *path, const sc_row **row)
{
	const mtm_session *ss = arg;
	const sc_row *r = ss->sc_kept.n ? pathmap_get(&ss->sc_kept, path) : NULL;
	if (!r)
		return parent_sc_get(ss->bg_ph, parent, path, row);
	*row = r->ver ? r : NULL;
	return 1;
}

/* A checkpoint committed: the rows it kept join the session's (a newer row
 * replaces an older one of the same path). A row lost to ENOMEM leaves the
 * older one, which vouches for nothing newer (FORMAT.md 3.9). */
static void hook_sc_kept(void *arg, pathmap *rows)
{
	mtm_session *ss = arg;
	if (ss->sc_in_tx) { /* they were written in the commit that made it */
		pathmap_free(&ss->sc_kept, free);
		memset(&ss->sc_kept, 0, sizeof ss->sc_kept);
		ss->sc_in_tx = 0;
	}
	for (size_t i = 0; i < rows->cap; i++) {
		pathmap_slot *sl = &rows->slots[i];
		if (!sl->key)
			continue;
		void *old = pathmap_get(&ss->sc_kept, sl->key);
		if (pathmap_put(&ss->sc_kept, sl->key, sl->val))
			free(sl->val);
		else
			free(old);
		sl->val = NULL;
	}
}

ckpt_hooks session_ckpt_hooks(mtm_session *ss)
{
	if (!ss)
		return (ckpt_hooks){.pack_fresh = session_alive};
	return (ckpt_hooks){.arg = ss, .ahead = hook_ahead, .ahead_ref = hook_ahead_ref, .parent_hash = hook_parent_hash,
	                    .sc_pending = hook_sc_pending, .sc_kept = hook_sc_kept};
}

/*
 * diff.c — what differs between two checkpoints, or a checkpoint and the
 * live tree (status). Directory mtimes are not reported: they change with
 * every entry added or removed and would only repeat those lines. The root
 * directory's own metadata (mode, owner, attributes: tree/root.h) is
 * reported first, as "." ('m').
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "diff/diff_live.h"
#include "tree/filemap_diff.h"
#include "tree/scan.h"
#include "util/error.h"

static int diff_versions(mtm_store *s, const lineage *la, const entry *a, const lineage *lb, const entry *b, mtm_change *ch)
{
	if (a->ver == b->ver && a->file_id == b->file_id)
		return 0;
	if (a->kind == KIND_FILE) {
		vec ma, mb, runs = VEC_INIT(blk_run);
		MTM_TRY(index_file_map(s, a->file_id, la, &ma));
		int rc = index_file_map(s, b->file_id, lb, &mb);
		uint64_t bytes = 0;
		if (!rc)
			rc = filemap_diff(&mb, b->size, &ma, a->size, &runs, &bytes);
		vec_free(&ma);
		vec_free(&mb);
		vec_free(&runs);
		MTM_TRY(rc);
		if (bytes || a->size != b->size) {
			ch->kind = 'M';
			ch->bytes = bytes;
			return 0;
		}
	}
	if ((a->kind == KIND_SYMLINK || a->kind == KIND_LINK) && strcmp(a->target, b->target) != 0)
		ch->kind = 'M';
	else if (entry_meta_changed(a, b))
		ch->kind = 'm';
	return 0;
}

int mtm_diff(mtm_store *s, mtm_id a, mtm_id b, const mtm_diff_opts *opts, mtm_change_fn fn, void *arg)
{
	MTM_NEED(s, "diff");
	if (opts && opts->version != MTM_DIFF_OPTS_VERSION)
		return mtm_set_error(MTM_EINVAL, "diff: unsupported options version %d", opts->version);
	if (opts)
		MTM_NEED_LIST(opts->excludes, opts->n_excludes, "diff", "opts->excludes");
	if (b == MTM_LIVE)
		return diff_live(s, a, opts, fn, arg);
	vec ta = VEC_INIT(entry), tb = VEC_INIT(entry);
	lineage la = {0}, lb = {0};
	int rc;
	if ((rc = diff_root(s, a, b, fn, arg)) || (rc = index_load_tree(s, a, &ta)) || (rc = lineage_of(s, a, &la)) || (rc = index_load_tree(s, b, &tb)) ||
	    (rc = lineage_of(s, b, &lb)))
		goto done;
	for (size_t i = 0, j = 0; (i < ta.n || j < tb.n) && !rc;) {
		entry *ea = i < ta.n ? &VEC_AT(&ta, entry, i) : NULL;
		entry *eb = j < tb.n ? &VEC_AT(&tb, entry, j) : NULL;
		int cmp = !ea ? 1 : !eb ? -1 : strcmp(ea->path, eb->path);
		mtm_change ch = {0};
		if (cmp < 0) {
			ch.kind = 'D';
			ch.path = ea->path;
			i++;
		} else if (cmp > 0) {
			ch.kind = 'A';
			ch.path = eb->path;
			if (eb->kind == KIND_FILE) /* a new file: all its bytes changed */
				ch.bytes = (uint64_t)eb->size;
			j++;
		} else {
			ch.path = ea->path;
			if (eb->kind != ea->kind)
				ch.kind = 'T';
			else
				rc = diff_versions(s, &la, ea, &lb, eb, &ch);
			i++;
			j++;
		}
		if (!rc && ch.kind)
			rc = fn(arg, &ch);
	}
done:
	entries_free(&ta);
	entries_free(&tb);
	lineage_free(&la);
	lineage_free(&lb);
	return rc;
}

/*
 * diff.c — what differs between two checkpoints, or a checkpoint and the
 * live tree (status). Directory mtimes are not reported: they change with
 * every entry added or removed and would only repeat those lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "diff/diff_live.h"
#include "io/beneath.h"
#include "io/xattr.h"
#include "tree/filemap_diff.h"
#include "tree/scan.h"
#include "util/error.h"

/* Metadata differences between two versions of one kind (contents aside). */
static int meta_changed(const entry *a, const entry *b)
{
	if (a->mode != b->mode || a->uid != b->uid || a->gid != b->gid || a->rdev != b->rdev ||
	    a->xattrs_len != b->xattrs_len || (a->xattrs_len && memcmp(a->xattrs, b->xattrs, a->xattrs_len)))
		return 1;
	return a->kind != KIND_DIR && (a->mtime_s != b->mtime_s || a->mtime_nsec != b->mtime_nsec);
}

/* A live item's metadata as an entry (symlinks: mode 0777, as recorded). */
int diff_meta_changed_live(const entry *a, const live_item *it)
{
	entry b;
	live_entry(it, &b);
	return meta_changed(a, &b);
}

static void progress_tick(void *arg, uint64_t bytes)
{
	live_progress *p = arg;
	p->done += bytes;
	if (p->s->progress) /* (the callback limits its own redraws) */
		p->s->progress(p->s->progress_arg, "status", p->done < p->total ? p->done : p->total, p->total);
}

typedef struct { uint64_t bytes; } count_ctx;
static int count_run(void *arg, int64_t blkno, int nblocks, const unsigned char *data, size_t len,
                     const uint64_t *hashes, int zero, int lasting)
{
	((count_ctx *)arg)->bytes += len;
	return 0;
}

int diff_live_content(mtm_store *s, const lineage *la, const entry *a, live_item *it, mtm_change *ch,
                      live_progress *pg)
{
	uint64_t done_after = pg->done + (uint64_t)it->st.st_size; /* (holes are not read) */
	vec map;
	MTM_TRY(index_file_map(s, a->file_id, la, &map));
	int fd, rc = beneath_open(s->rootfd, it->path, O_RDONLY, &fd);
	if (rc) {
		vec_free(&map);
		return rc == ENOENT || rc == ENOTPLAIN ? 0 : mtm_set_errno(rc, "%s", it->path);
	}
	count_ctx cc = {0};
	int64_t got;
	rc = compare_file_ticking(FILE_SRC(fd), (int64_t)it->st.st_size, &map, count_run, &cc, &got,
	                          s->progress ? progress_tick : NULL, pg);
	if (s->progress && pg->done < done_after)
		progress_tick(pg, done_after - pg->done);
	if (!rc && !it->xattrs_read) {
		int e = xattr_read_fd(fd, &it->xattrs, &it->xattrs_len);
		if (e)
			rc = mtm_set_errno(e, "reading extended attributes");
		it->xattrs_read = !e;
	}
	close(fd);
	/* Blocks of a past the live end are not counted: the size is the live
	 * file's bytes that differ, as diff between checkpoints and a checkpoint
	 * count it (a shorter file is reported by its size changing). */
	vec_free(&map);
	if (rc)
		return mtm_set_error(rc, "%s: %s", it->path, mtm_last_error());
	if (cc.bytes || got != a->size) {
		ch->kind = 'M';
		ch->bytes = cc.bytes;
	} else if (diff_meta_changed_live(a, it)) {
		ch->kind = 'm';
	}
	return 0;
}

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
	else if (meta_changed(a, b))
		ch->kind = 'm';
	return 0;
}

int mtm_diff(mtm_store *s, mtm_id a, mtm_id b, const mtm_diff_opts *opts, mtm_change_fn fn, void *arg)
{
	if (opts && opts->version != MTM_DIFF_OPTS_VERSION)
		return mtm_set_error(MTM_EINVAL, "diff: unsupported options version %d", opts->version);
	if (b == MTM_LIVE)
		return diff_live(s, a, opts, fn, arg);
	vec ta = VEC_INIT(entry), tb = VEC_INIT(entry);
	lineage la = {0}, lb = {0};
	int rc;
	if ((rc = index_load_tree(s, a, &ta)) || (rc = lineage_of(s, a, &la)) || (rc = index_load_tree(s, b, &tb)) ||
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

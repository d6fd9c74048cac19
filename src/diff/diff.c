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
static int meta_changed_live(const entry *a, const live_item *it)
{
	entry b;
	live_entry(it, &b);
	return meta_changed(a, &b);
}

/* Progress of a diff against the live tree (mtm_set_progress, phase
 * "status"): bytes of the live files compared, of those that will be. */
typedef struct {
	mtm_store *s;
	uint64_t done, total;
} live_progress;

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

/* Compares version a with the live file it; fills ch. */
static int diff_live_file(mtm_store *s, const lineage *la, const entry *a, live_item *it, pathmap *sc, mtm_change *ch,
                          live_progress *pg)
{
	if (statcache_fresh(pathmap_get(sc, it->path), &it->st, a->ver))
		return 0;
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
	} else if (meta_changed_live(a, it)) {
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

/* What the walk below will read (progress): the live regular files found
 * in a as regular files whose stat cache row does not vouch for them. */
static uint64_t live_bytes_to_compare(const vec *ta, const vec *live, pathmap *sc)
{
	uint64_t total = 0;
	for (size_t i = 0, j = 0; i < ta->n && j < live->n;) {
		const entry *ea = &VEC_AT(ta, entry, i);
		const live_item *it = &VEC_AT(live, live_item, j);
		int cmp = strcmp(ea->path, it->path);
		if (cmp == 0 && ea->kind == KIND_FILE && it->kind == KIND_FILE &&
		    !statcache_fresh(pathmap_get(sc, it->path), &it->st, ea->ver))
			total += (uint64_t)it->st.st_size;
		i += cmp <= 0;
		j += cmp >= 0;
	}
	return total;
}

int mtm_diff(mtm_store *s, mtm_id a, mtm_id b, const mtm_diff_opts *opts, mtm_change_fn fn, void *arg)
{
	if (opts && opts->version != MTM_DIFF_OPTS_VERSION)
		return mtm_set_error(MTM_EINVAL, "diff: unsupported options version %d", opts->version);
	vec ta = VEC_INIT(entry), tb = VEC_INIT(entry), live = VEC_INIT(live_item);
	lineage la = {0}, lb = {0};
	pathmap sc = {0};
	ignore_set ign = {0};
	int rc;
	if ((rc = index_load_tree(s, a, &ta)) || (rc = lineage_of(s, a, &la)))
		goto done;
	int is_live = b == MTM_LIVE;
	if (is_live) {
		if ((rc = ignore_load(&ign, s->rootfd, opts ? opts->excludes : NULL, opts ? opts->n_excludes : 0)) ||
		    (rc = statcache_load(s, &sc)) || (rc = walk_tree(s, &ign, &live)) || (rc = live_group_links(&live, NULL)))
			goto done;
	} else if ((rc = index_load_tree(s, b, &tb)) || (rc = lineage_of(s, b, &lb))) {
		goto done;
	}
	live_progress pg = {s, 0, is_live && s->progress ? live_bytes_to_compare(&ta, &live, &sc) : 0};
	size_t nb = is_live ? live.n : tb.n;
	for (size_t i = 0, j = 0; (i < ta.n || j < nb) && !rc;) {
		entry *ea = i < ta.n ? &VEC_AT(&ta, entry, i) : NULL;
		const char *pb = j < nb ? (is_live ? VEC_AT(&live, live_item, j).path : VEC_AT(&tb, entry, j).path) : NULL;
		int cmp = !ea ? 1 : !pb ? -1 : strcmp(ea->path, pb);
		mtm_change ch = {0};
		if (cmp < 0) {
			ch.kind = 'D';
			ch.path = ea->path;
			i++;
		} else if (cmp > 0) {
			ch.kind = 'A';
			ch.path = pb;
			/* a new file: all its bytes changed (as a checkpoint counts them) */
			if (is_live && VEC_AT(&live, live_item, j).kind == KIND_FILE)
				ch.bytes = (uint64_t)VEC_AT(&live, live_item, j).st.st_size;
			else if (!is_live && VEC_AT(&tb, entry, j).kind == KIND_FILE)
				ch.bytes = (uint64_t)VEC_AT(&tb, entry, j).size;
			j++;
		} else {
			ch.path = ea->path;
			int kind_b = is_live ? VEC_AT(&live, live_item, j).kind : VEC_AT(&tb, entry, j).kind;
			if (kind_b != ea->kind)
				ch.kind = 'T';
			else if (is_live) {
				live_item *it = &VEC_AT(&live, live_item, j);
				if (ea->kind == KIND_FILE)
					rc = diff_live_file(s, &la, ea, it, &sc, &ch, &pg);
				else if ((ea->kind == KIND_SYMLINK || ea->kind == KIND_LINK) && strcmp(ea->target, it->target) != 0)
					ch.kind = 'M';
				else if (meta_changed_live(ea, it))
					ch.kind = 'm';
			} else {
				rc = diff_versions(s, &la, ea, &lb, &VEC_AT(&tb, entry, j), &ch);
			}
			i++;
			j++;
		}
		if (!rc && ch.kind)
			rc = fn(arg, &ch);
	}
done:
	entries_free(&ta);
	entries_free(&tb);
	live_free(&live);
	lineage_free(&la);
	lineage_free(&lb);
	pathmap_free(&sc, free);
	ignore_free(&ign);
	return rc;
}

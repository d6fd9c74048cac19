/*
 * live.c — what differs between a checkpoint and the live tree (status,
 * `diff K`), in time and memory proportional to what changed, besides one
 * stat per live path and one pass over the checkpoint's and the stat
 * cache's rows.
 *
 * Three streams in path order are merged (tree_merge, tree/merge.c): the
 * live tree, the checkpoint's entries and the stat cache. Nothing
 * of the tree is held: at 1,000,000 files the earlier way (load all three,
 * then sort the walk) took ~500 MiB and most of its time in malloc, the
 * sort and the hash map. What is held is what changed: changes wait (in
 * order) only behind a file whose content must be compared, and those are
 * compared after the walk, when their total is known for the progress line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "diff/diff_live.h"
#include "io/beneath.h"
#include "io/xattr.h"
#include "tree/filemap_diff.h"
#include "tree/merge.h"
#include "tree/root.h"
#include "util/error.h"

/* Progress of a diff against the live tree (mtm_set_progress, phase
 * "status"): bytes of the live files compared, of those that will be. */
typedef struct {
	mtm_store *s;
	uint64_t done, total;
} live_progress;

/* 1 if the live item's metadata differs from a's (contents aside; symlinks:
 * mode 0777, as recorded). */
static int meta_changed_live(const entry *a, const live_item *it)
{
	entry b;
	live_entry(it, &b);
	return entry_meta_changed(a, &b);
}

/* Compares version a of a file with the live file it, by content (the
 * stat cache could not vouch for it); fills ch->kind ('M', 'm' or 0) and
 * ch->bytes. */
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

/* *unreadable is set when the error returned is the live file's own (it
 * could not be opened or read): the caller goes on with the other files. */
static int diff_live_content(mtm_store *s, const lineage *la, const entry *a, live_item *it, mtm_change *ch,
                             live_progress *pg, int *unreadable)
{
	uint64_t done_after = pg->done + (uint64_t)it->st.st_size; /* (holes are not read) */
	vec map;
	*unreadable = 0;
	MTM_TRY(index_file_map(s, a->file_id, la, &map));
	int fd, rc = beneath_open(s->rootfd, it->path, O_RDONLY, &fd);
	if (rc) {
		vec_free(&map);
		*unreadable = rc != ENOENT && rc != ENOTPLAIN && rc != ENOMEM;
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
	*unreadable = rc && rc != ENOMEM;
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

/* A change found by the merge, kept until those before it are out. */
typedef struct {
	mtm_change ch;   /* ch.path: owned (it->path when compare) */
	entry e;         /* compare: the checkpoint's version */
	live_item *it;   /* compare: the live file, its content to be compared */
} held_change;

typedef struct {
	mtm_store *s;
	lineage la;
	mtm_change_fn fn;
	void *arg;
	vec held;         /* of held_change, in path order */
	uint64_t compare_total;
	/* what could not be read (a file, a directory), the first one's error
	 * kept: the rest is reported, then this (a checkpoint would fail on it) */
	size_t n_unreadable;
	int first_rc;
	char first[512];
} live_diff;

static void note_unreadable(live_diff *d, int rc)
{
	if (!d->n_unreadable++) {
		d->first_rc = rc;
		snprintf(d->first, sizeof d->first, "%s", mtm_last_error());
	}
}

/* A directory that could not be read: what it holds is not known, so none
 * of it is reported (not as removed either); its error is, at the end. */
static int on_unlisted(void *arg, const char *dir, int err)
{
	note_unreadable(arg, mtm_set_errno(err, "%s", dir));
	return 0;
}

static void held_free(held_change *h)
{
	if (h->it)
		live_item_free(h->it); /* (ch.path is its path) */
	else
		free((char *)h->ch.path);
	entry_clear(&h->e);
}

/* A change: out at once unless something before it waits. */
static int put_change(live_diff *d, const mtm_change *ch, entry *e, live_item *it)
{
	if (!d->held.n && !it)
		return d->fn(d->arg, ch);
	held_change *h = vec_push(&d->held);
	if (!h)
		return mtm_set_error(ENOMEM, "status");
	h->ch = *ch;
	h->it = it;
	if (it) {
		h->ch.path = it->path;
		h->e = *e; /* taken */
		memset(e, 0, sizeof *e);
		d->compare_total += (uint64_t)it->st.st_size;
	} else if (!(h->ch.path = strdup(ch->path))) {
		d->held.n--;
		return mtm_set_error(ENOMEM, "status");
	}
	return 0;
}

/* A checkpoint entry with no live item at its path: removed. */
static int on_gone(void *arg, entry *ea)
{
	mtm_change ch = {.kind = 'D', .path = ea->path};
	return put_change(arg, &ch, NULL, NULL);
}

/* One live item against the checkpoint's entry at its path (ea, if any). */
static int on_live(void *arg, live_item *it, entry *ea, int fresh)
{
	live_diff *d = arg;
	int rc = 0;
	mtm_change ch = {.path = it->path};
	if (!ea) {
		ch.kind = 'A'; /* a new file: all its bytes changed (as a checkpoint counts them) */
		ch.bytes = it->kind == KIND_FILE ? (uint64_t)it->st.st_size : 0;
	} else if (it->kind != ea->kind) {
		ch.kind = 'T';
	} else if (ea->kind == KIND_FILE) {
		if (!fresh) { /* the stat cache cannot vouch for it: compared after the walk */
			if ((rc = put_change(d, &ch, ea, it)))
				live_item_free(it);
			return rc;
		}
	} else if ((ea->kind == KIND_SYMLINK || ea->kind == KIND_LINK) && strcmp(ea->target, it->target) != 0) {
		ch.kind = 'M';
	} else if (meta_changed_live(ea, it)) {
		ch.kind = 'm';
	}
	if (ch.kind)
		rc = put_change(d, &ch, NULL, NULL);
	live_item_free(it);
	return rc;
}

int diff_root(mtm_store *s, mtm_id a, mtm_id b, mtm_change_fn fn, void *arg)
{
	root_meta ra, rb = {0};
	int rc = root_meta_of(s, a, &ra);
	if (!rc && b == MTM_LIVE && (rc = root_meta_live(s->rootfd, &rb)))
		rc = mtm_set_errno(rc, "the tree's root");
	else if (!rc && b != MTM_LIVE)
		rc = root_meta_of(s, b, &rb);
	mtm_change ch = {.kind = 'm', .path = "."};
	if (!rc && root_meta_changed(&ra, &rb))
		rc = fn(arg, &ch);
	root_meta_free(&ra);
	root_meta_free(&rb);
	return rc;
}

int diff_live(mtm_store *s, mtm_id a, const mtm_diff_opts *opts, mtm_change_fn fn, void *arg)
{
	live_diff d = {.s = s, .fn = fn, .arg = arg, .held = VEC_INIT(held_change)};
	merge_fns fns = {.live = on_live, .gone = on_gone, .unlisted = on_unlisted, .arg = &d, .group_links = 1,
	                 .what = "status"};
	ignore_set ign = {0};
	int rc;
	if ((rc = ignore_load(&ign, s->rootfd, opts ? opts->excludes : NULL, opts ? opts->n_excludes : 0)) ||
	    (rc = lineage_of(s, a, &d.la)) || (rc = diff_root(s, a, MTM_LIVE, fn, arg)) || (rc = tree_merge(s, &ign, a, &fns)))
		goto done;
	/* the files whose content must be compared, and what waited behind
	 * them. A file that cannot be read (no permission, an I/O error) does
	 * not hide the rest, nor does a directory (on_unlisted): it is left
	 * out, every other change is reported, and the first such error is
	 * returned at the end, with a count of the others (a checkpoint would
	 * fail on it). */
	live_progress pg = {s, 0, d.compare_total};
	for (size_t i = 0; i < d.held.n && !rc; i++) {
		held_change *h = &VEC_AT(&d.held, held_change, i);
		int unreadable = 0;
		if (h->it && (rc = diff_live_content(s, &d.la, &h->e, h->it, &h->ch, &pg, &unreadable)) && unreadable) {
			note_unreadable(&d, rc);
			rc = 0;
			continue;
		}
		if (h->it && !rc && !h->ch.kind)
			continue;
		if (!rc)
			rc = fn(arg, &h->ch);
	}
	if (!rc && d.n_unreadable > 1)
		rc = mtm_set_error(d.first_rc, "%s (%zu more file%s could not be read)", d.first, d.n_unreadable - 1,
		                   d.n_unreadable > 2 ? "s" : "");
	else if (!rc && d.n_unreadable)
		rc = mtm_set_error(d.first_rc, "%s", d.first);
done:
	for (size_t i = 0; i < d.held.n; i++)
		held_free(&VEC_AT(&d.held, held_change, i));
	vec_free(&d.held);
	lineage_free(&d.la);
	ignore_free(&ign);
	return rc;
}

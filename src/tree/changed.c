/*
 * changed.c — what a scan checkpoint must record, without holding the tree:
 * the live tree (walk_sorted), the parent checkpoint's entries (tree_cursor)
 * and the stat cache (in path order: a WITHOUT ROWID table keyed by path)
 * merged as three streams, the way status does it (diff/live.c).
 *
 * Only what differs is kept: a live item that is new, of another kind, or
 * not known to be unchanged (a file the stat cache cannot vouch for, any
 * other item whose entry differs), with the parent's entry at its path, and
 * the parent's entries that are gone. Everything else is counted (entries,
 * bytes) and dropped at once. At 1,000,000 files, holding the walk, the
 * parent's tree and the stat cache took 540-564 MiB in a session's scan
 * fallback; what is held now grows with what changed.
 *
 * The two sides come out in path order and hold the same paths but the
 * gone ones, as ckpt_record merges them: a gone file is still matched with
 * a new name by inode there (a rename keeps its history).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tree/scan.h"
#include "util/error.h"

typedef struct {
	mtm_store *s;
	tree_cursor tc;
	entry *pe;        /* the cursor's current entry, NULL at the end */
	sqlite3_stmt *sc; /* the stat cache in path order */
	int sc_row;       /* sc is on a row (not past the end) */
	int group;        /* hard links grouped (live_group_links' rule) */
	pathmap links;    /* "dev:ino" of live files with several names -> their first name */
	vec *live, *parent;
	tree_rest *rest;
} changed_scan;

/* The cursor's entry taken into the parent side; the cursor moves on. */
static int keep_parent(changed_scan *c)
{
	entry *slot = vec_push(c->parent);
	if (!slot)
		return mtm_set_error(ENOMEM, "checkpoint");
	*slot = *c->pe;
	memset(c->pe, 0, sizeof *c->pe); /* (the cursor clears nothing now) */
	return tree_cursor_next(&c->tc, &c->pe);
}

/* The parent's entries before path (NULL: all that are left): gone. */
static int gone_before(changed_scan *c, const char *path)
{
	int rc = 0;
	while (!rc && c->pe && (!path || strcmp(c->pe->path, path) < 0))
		rc = keep_parent(c);
	return rc;
}

/* The stat cache row of path, if there is one (the rows before it are
 * passed: the live paths come in order). */
static int sc_row_of(changed_scan *c, const char *path, sc_row *out, int *found)
{
	*found = 0;
	while (c->sc_row) {
		const char *p = (const char *)sqlite3_column_text(c->sc, 0);
		int cmp = p ? strcmp(p, path) : -1;
		if (cmp > 0)
			return 0;
		if (cmp == 0) {
			statcache_row_read(c->sc, 1, out);
			*found = 1;
			return 0;
		}
		int rc = sqlite3_step(c->sc);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return db_error(c->s, rc, "index");
		c->sc_row = rc == SQLITE_ROW;
	}
	return 0;
}

/* Hard links: the first name of a group in path order holds the file, the
 * others become KIND_LINK to it; the walk comes in path order, so the first
 * name met is the first. Only files with several names are remembered. */
static int group_link(changed_scan *c, live_item *it)
{
	if (!c->group || it->kind != KIND_FILE || it->st.st_nlink < 2)
		return 0;
	char key[48];
	snprintf(key, sizeof key, "%" PRIu64 ":%" PRIu64, (uint64_t)it->st.st_dev, (uint64_t)it->st.st_ino);
	const char *first = pathmap_get(&c->links, key);
	if (first) {
		it->kind = KIND_LINK;
		return (it->target = strdup(first)) ? 0 : mtm_set_error(ENOMEM, "checkpoint");
	}
	char *name = strdup(it->path);
	if (!name || pathmap_put(&c->links, key, name)) {
		free(name);
		return mtm_set_error(ENOMEM, "checkpoint");
	}
	return 0;
}

/* 1 if the live item records exactly what the parent's entry pe does, as
 * ckpt_record would find it (a file: the stat cache vouches for it). */
static int unchanged(changed_scan *c, const live_item *it, const entry *pe, int *out)
{
	*out = 0;
	if (!pe || pe->kind != it->kind)
		return 0;
	if (it->kind == KIND_FILE) {
		sc_row row;
		int found;
		MTM_TRY(sc_row_of(c, it->path, &row, &found));
		*out = found && statcache_fresh(&row, &it->st, pe->ver);
		return 0;
	}
	entry e;
	live_entry(it, &e);
	*out = entry_same(&e, pe);
	return 0;
}

static int on_live(void *arg, live_item *it)
{
	changed_scan *c = arg;
	int rc, same = 0;
	if ((rc = group_link(c, it)) || (rc = gone_before(c, it->path)))
		goto out;
	entry *pe = c->pe && !strcmp(c->pe->path, it->path) ? c->pe : NULL;
	if ((rc = unchanged(c, it, pe, &same)))
		goto out;
	if (same) {
		c->rest->entries++;
		if (it->kind == KIND_FILE)
			c->rest->bytes += (uint64_t)it->st.st_size;
		rc = tree_cursor_next(&c->tc, &c->pe);
		goto out;
	}
	live_item *slot = vec_push(c->live);
	if (!slot) {
		rc = mtm_set_error(ENOMEM, "checkpoint");
		goto out;
	}
	*slot = *it; /* taken: only the shell is freed */
	free(it);
	it = NULL;
	if (pe)
		rc = keep_parent(c);
out:
	live_item_free(it);
	return rc;
}

int scan_changed(mtm_store *s, const ignore_set *ign, mtm_id parent, int group_links, vec *live, vec *parent_out,
                 tree_rest *rest)
{
	*live = (vec)VEC_INIT(live_item);
	*parent_out = (vec)VEC_INIT(entry);
	memset(rest, 0, sizeof *rest);
	changed_scan c = {.s = s, .group = group_links, .live = live, .parent = parent_out, .rest = rest};
	int rc;
	if ((rc = tree_cursor_open(s, parent, &c.tc)) || (rc = tree_cursor_next(&c.tc, &c.pe)))
		goto done;
	if ((rc = sqlite3_prepare_v2(s->db,
	                             "SELECT path, ver, size, mtime_ns, ctime_ns, ino, dev, mode, uid, gid, racy FROM statcache "
	                             "ORDER BY path",
	                             -1, &c.sc, NULL)) != SQLITE_OK) {
		rc = db_error(s, rc, "index");
		goto done;
	}
	rc = sqlite3_step(c.sc);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		rc = db_error(s, rc, "index");
		goto done;
	}
	c.sc_row = rc == SQLITE_ROW;
	rc = walk_sorted(s, ign, on_live, &c);
	if (!rc)
		rc = gone_before(&c, NULL);
done:
	sqlite3_finalize(c.sc);
	tree_cursor_close(&c.tc);
	pathmap_free(&c.links, free);
	if (rc) {
		live_free(live);
		entries_free(parent_out);
	}
	return rc;
}

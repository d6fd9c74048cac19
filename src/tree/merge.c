/*
 * merge.c — the three streams a scan and status both read, merged in path
 * order without holding the tree: the live tree (walk_sorted), a
 * checkpoint's entries (tree_cursor) and the stat cache (a WITHOUT ROWID
 * table keyed by path, so read in order with no sort). At 1,000,000 files,
 * loading all three took ~500 MiB; what the callers keep now is what
 * changed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tree/merge.h"
#include "util/error.h"

typedef struct {
	mtm_store *s;
	const merge_fns *fns;
	tree_cursor tc;
	entry *pe;        /* the cursor's current entry, NULL at the end */
	sqlite3_stmt *sc; /* the stat cache in path order */
	int sc_row;       /* sc is on a row (not past the end) */
	pathmap links;    /* "dev:ino" of live files with several names -> their first name */
} merger;

/* The checkpoint's entries before path (NULL: all that are left): gone. */
static int gone_before(merger *m, const char *path)
{
	int rc = 0;
	while (!rc && m->pe && (!path || strcmp(m->pe->path, path) < 0))
		if (!(rc = tree_cursor_fill(&m->tc)) && !(rc = m->fns->gone(m->fns->arg, m->pe)))
			rc = tree_cursor_next(&m->tc, &m->pe);
	return rc;
}

/* The stat cache row of path, if there is one (the rows before it are
 * passed: the live paths come in order). */
static int sc_row_of(merger *m, const char *path, sc_row *out, int *found)
{
	*found = 0;
	while (m->sc_row) {
		const char *p = (const char *)sqlite3_column_text(m->sc, 0);
		int cmp = p ? strcmp(p, path) : -1;
		if (cmp > 0)
			return 0;
		if (cmp == 0) {
			*found = !statcache_row_read(m->sc, 1, out);
			return 0;
		}
		int rc = sqlite3_step(m->sc);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return db_error(m->s, rc, "index");
		m->sc_row = rc == SQLITE_ROW;
	}
	return 0;
}

/* Hard links: the first name of a group in path order holds the file, the
 * others become KIND_LINK to it; the walk comes in path order, so the first
 * name met is the first. Only files with several names are remembered. */
static int group_link(merger *m, live_item *it)
{
	if (!m->fns->group_links || it->kind != KIND_FILE || it->st.st_nlink < 2)
		return 0;
	char key[48];
	snprintf(key, sizeof key, "%" PRIu64 ":%" PRIu64, (uint64_t)it->st.st_dev, (uint64_t)it->st.st_ino);
	const char *first = pathmap_get(&m->links, key);
	if (first) {
		it->kind = KIND_LINK;
		return (it->target = strdup(first)) ? 0 : mtm_set_error(ENOMEM, "%s", m->fns->what);
	}
	char *name = strdup(it->path);
	if (!name || pathmap_put(&m->links, key, name)) {
		free(name);
		return mtm_set_error(ENOMEM, "%s", m->fns->what);
	}
	return 0;
}

static int on_live(void *arg, live_item *it)
{
	merger *m = arg;
	int rc, fresh = 0;
	if ((rc = group_link(m, it)) || (rc = gone_before(m, it->path))) {
		live_item_free(it);
		return rc;
	}
	entry *pe = m->pe && !strcmp(m->pe->path, it->path) ? m->pe : NULL;
	if (pe && pe->kind == KIND_FILE && it->kind == KIND_FILE) {
		sc_row row;
		int found;
		if ((rc = sc_row_of(m, it->path, &row, &found))) {
			live_item_free(it);
			return rc;
		}
		fresh = found && statcache_fresh(&row, &it->st, pe->ver);
	}
	/* a file the stat cache vouches for needs no more of its entry */
	if (pe && !fresh && (rc = tree_cursor_fill(&m->tc))) {
		live_item_free(it);
		return rc;
	}
	if ((rc = m->fns->live(m->fns->arg, it, pe, fresh)))
		return rc;
	return pe ? tree_cursor_next(&m->tc, &m->pe) : 0;
}

/* A directory the walk could not read: the checkpoint's entries before
 * its subtree are gone (the walk is past them), those in it unknown. */
static int on_unlisted(void *arg, const char *dir, int err)
{
	merger *m = arg;
	size_t n = strlen(dir);
	char *sub = malloc(n + 2);
	if (!sub)
		return mtm_set_error(ENOMEM, "%s", m->fns->what);
	memcpy(sub, dir, n);
	memcpy(sub + n, "/", 2);
	int rc = gone_before(m, sub);
	while (!rc && m->pe && !strncmp(m->pe->path, sub, n + 1))
		rc = tree_cursor_next(&m->tc, &m->pe);
	free(sub);
	return rc ? rc : m->fns->unlisted(m->fns->arg, dir, err);
}

int tree_merge(mtm_store *s, const ignore_set *ign, mtm_id ckpt, const merge_fns *fns)
{
	merger m = {.s = s, .fns = fns};
	int rc;
	if ((rc = tree_cursor_open(s, ckpt, &m.tc)) || (rc = tree_cursor_next(&m.tc, &m.pe)))
		goto done;
	if ((rc = sqlite3_prepare_v2(s->db,
	                             "SELECT path, ver, st FROM statcache ORDER BY path",
	                             -1, &m.sc, NULL)) != SQLITE_OK) {
		rc = db_error(s, rc, "index");
		goto done;
	}
	rc = sqlite3_step(m.sc);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		rc = db_error(s, rc, "index");
		goto done;
	}
	m.sc_row = rc == SQLITE_ROW;
	if (!(rc = walk_sorted(s, ign, on_live, fns->unlisted ? on_unlisted : NULL, &m)))
		rc = gone_before(&m, NULL);
done:
	sqlite3_finalize(m.sc);
	tree_cursor_close(&m.tc);
	pathmap_free(&m.links, free);
	return rc;
}

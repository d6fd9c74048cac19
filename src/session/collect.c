/*
 * collect.c — inside the barrier: the paths the logs name, on both sides
 * (the live tree and the parent's entries), and the capture of each touched
 * file; when the logs cannot be trusted (NEED_SCAN), the whole tree.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "session/tctx.h"
#include "session/watch.h"
#include "store/index.h"
#include "tree/ignore.h"
#include "util/error.h"
#include "util/human.h"

static int cmp_live(const void *a, const void *b)
{
	return strcmp(((const live_item *)a)->path, ((const live_item *)b)->path);
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const entry *)a)->path, ((const entry *)b)->path);
}

static live_item *live_find(const vec *live, const char *path)
{
	live_item key = {.path = (char *)path};
	if (!live->n)
		return NULL;
	return bsearch(&key, live->v, live->n, sizeof(live_item), cmp_live);
}

/* Whether some checkpoint recorded another name of the file at path. Asked
 * for every touched file inside the pause: the statement is prepared once
 * a store handle (W2: 200 preparations were ~13% of the barrier's collect). */
static int has_links(tctx *t, const char *path, int *out)
{
	/* (entry_log's rows too: FORMAT.md 3.4.1) */
	static const char sql[] = "SELECT 1 FROM entry WHERE kind = 8 AND target = ?1 UNION ALL "
	                          "SELECT 1 FROM entry_log WHERE kind = 8 AND target = ?1 LIMIT 1";
	sqlite3_stmt *st;
	MTM_TRY(db_cached(t->s, sql, sql, &st));
	sqlite3_bind_blob(st, 1, path, (int)strlen(path), SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_reset(st); /* (and path is no longer bound's business) */
	sqlite3_clear_bindings(st);
	*out = rc == SQLITE_ROW;
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(t->s, rc, "index");
}

/* The parent's entries strictly under directory path (its subtree). */
static int add_parent_subtree(tctx *t, const char *path)
{
	size_t from = t->parent->n;
	int rc = index_entries_under(t->s, path, t->lin, t->parent);
	if (rc)
		return rc;
	/* what the ignore rules leave out now was left out then, as a rule; if
	 * they changed, the checkpoint scans (.metamoriignore is watched) */
	size_t keep = from;
	for (size_t i = from; i < t->parent->n; i++) {
		entry *e = &VEC_AT(t->parent, entry, i);
		if (ignore_path(t->ign, e->path, e->kind == KIND_DIR)) {
			entry_clear(e);
			continue;
		}
		VEC_AT(t->parent, entry, keep++) = *e;
	}
	t->parent->n = keep;
	return 0;
}

/* One touched path that no listed subtree covers: both sides, point
 * lookups. subtree (a namespace change there): its subtrees too, the live
 * one if it is a directory now, the parent's if it was one then. */
static int add_point(tctx *t, const char *path, int subtree)
{
	live_item it = {0};
	int have_live, have_pe, rc;
	entry pe;
	/* a written file (not a namespace change): opened once, for both its
	 * stat and its capture */
	if ((rc = !subtree && pathmap_get(&t->cs->files, path) ? live_open(t, path, &it, &have_live)
	                                                       : live_stat(t, path, &it, &have_live)))
		return rc;
	/* the passes looked the parent's entry up already, for the blocks they
	 * copied (only the session moves the head; prune keeps what it reads) */
	if ((have_pe = parent_entry_get(t->ss->bg_ph, t->parent_id, path, &pe)))
		rc = 0;
	else if ((rc = index_entry_at(t->s, path, t->lin, &pe, &have_pe))) {
		free(it.target);
		free(it.xattrs);
		return rc;
	}
	int kind = have_live ? it.kind : have_pe ? pe.kind : KIND_NONE;
	if (kind == KIND_NONE || ignore_path(t->ign, path, kind == KIND_DIR)) {
		free(it.target);
		free(it.xattrs);
		if (have_pe)
			entry_clear(&pe);
		return 0;
	}
	if (subtree && ((have_live && it.kind == KIND_DIR && (rc = walk_subtree(t->s, t->ign, path, t->live))) ||
	                (have_pe && pe.kind == KIND_DIR && (rc = add_parent_subtree(t, path))))) {
		free(it.target);
		free(it.xattrs);
		entry_clear(&pe);
		return rc;
	}
	if (have_live) {
		live_item *slot = vec_push(t->live);
		if (!slot || !(it.path = strdup(path))) {
			free(it.target);
			free(it.xattrs);
			if (have_pe)
				entry_clear(&pe);
			return mtm_set_error(ENOMEM, "checkpoint");
		}
		*slot = it;
	}
	if (have_pe) {
		entry *slot = vec_push(t->parent);
		if (!slot) {
			entry_clear(&pe);
			return mtm_set_error(ENOMEM, "checkpoint");
		}
		*slot = pe;
	}
	return 0;
}

static int put_point(tctx *t, const char *path)
{
	return pathmap_get(&t->points, path) || !pathmap_put(&t->points, path, (void *)1) ? 0
	       : mtm_set_error(ENOMEM, "checkpoint");
}

/* The stat cache row the parent's version left for path: its inode. The
 * row is read through the checkpoint, which keeps it for its record (one
 * lookup a touched file, not two). */
static int sc_inode(tctx *t, const char *path, int64_t ver, int64_t *dev, int64_t *ino, int *found)
{
	const sc_row *row;
	*found = 0;
	MTM_TRY(ckpt_statcache_row(t->run, path, &row));
	if (row && row->ver == ver) {
		*dev = row->dev;
		*ino = row->ino;
		*found = 1;
	}
	return 0;
}

/* Namespace changes: whole subtrees, unless an ancestor's covers them, and
 * each one's parent directory (an entry came or went: its mtime changed). */
static int collect_namespace(tctx *t)
{
	change_set *cs = t->cs;
	int rc;
	for (size_t i = 0; i < cs->ns.cap; i++) {
		const char *p = cs->ns.slots[i].key;
		if (p && pathmap_put(&t->nsdirs, p, (void *)1))
			return mtm_set_error(ENOMEM, "checkpoint");
	}
	for (size_t i = 0; i < cs->ns.cap; i++) {
		const char *p = cs->ns.slots[i].key;
		if (!p || pathmap_under(&t->nsdirs, p))
			continue;
		if ((rc = add_point(t, p, 1)))
			return rc;
		const char *slash = strrchr(p, '/');
		if (slash) {
			char *dir = strndup(p, (size_t)(slash - p));
			rc = dir ? put_point(t, dir) : mtm_set_error(ENOMEM, "checkpoint");
			free(dir);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* The paths written or changed in their metadata (and the directories
 * collect_namespace named), each looked up on both sides. */
static int collect_points(tctx *t)
{
	change_set *cs = t->cs;
	int rc;
	pathmap *sets[] = {&cs->files, &cs->meta};
	for (size_t k = 0; k < 2; k++)
		for (size_t i = 0; i < sets[k]->cap; i++)
			if (sets[k]->slots[i].key && (rc = put_point(t, sets[k]->slots[i].key)))
				return rc;
	for (size_t i = 0; i < t->points.cap; i++) {
		const char *p = t->points.slots[i].key;
		/* namespace paths were done above (or are inside a listed subtree) */
		if (p && !pathmap_get(&t->nsdirs, p) && !pathmap_under(&t->nsdirs, p) && (rc = add_point(t, p, 0)))
			return rc;
	}
	return 0;
}

/* Both sides sorted by path, as ckpt_record merges them. */
static int sort_sides(tctx *t)
{
	if (t->live->n > 1)
		qsort(t->live->v, t->live->n, sizeof(live_item), cmp_live);
	if (t->parent->n > 1)
		qsort(t->parent->v, t->parent->n, sizeof(entry), cmp_entry);
	for (size_t i = 1; i < t->live->n; i++)
		if (!strcmp(VEC_AT(t->live, live_item, i - 1).path, VEC_AT(t->live, live_item, i).path))
			return mtm_set_error(MTM_EINVAL, "checkpoint: '%s' listed twice", VEC_AT(t->live, live_item, i).path);
	return 0;
}

/* A new entry's directory must be in the tree: if the records missed its
 * creation, they cannot be trusted, and the checkpoint scans. */
static int check_new_dirs(tctx *t)
{
	int rc = 0;
	for (size_t i = 0; i < t->live->n; i++) {
		const char *path = VEC_AT(t->live, live_item, i).path, *slash = strrchr(path, '/');
		if (!slash || tree_find(t->parent, path))
			continue;
		char *dir = strndup(path, (size_t)(slash - path));
		if (!dir)
			return mtm_set_error(ENOMEM, "checkpoint");
		const live_item *d = live_find(t->live, dir);
		int ok = d && d->kind == KIND_DIR, found = 0;
		entry de;
		if (!d && !(rc = index_entry_at(t->s, dir, t->lin, &de, &found)) && found) {
			ok = de.kind == KIND_DIR;
			entry_clear(&de);
		}
		free(dir);
		if (rc)
			return rc;
		if (!ok)
			return need_scan(t, "a new entry's directory was not recorded");
	}
	return 0;
}

/* A link group is recorded from all of its names (ckpt_scan): a touched
 * name that was a hard link, or a file that had some, needs a scan. */
static int check_parent_links(tctx *t)
{
	int rc = 0, any = 0;
	/* no link row in any version: no touched file has other names (one
	 * query on entry_links, which holds exactly those rows, instead of one
	 * a touched file inside the pause) */
	/* (prepared once a store handle: the pause is no place for SQL parsing) */
	static const char sql[] = "SELECT 1 FROM entry INDEXED BY entry_links WHERE kind = 8 UNION ALL "
	                          "SELECT 1 FROM entry_log INDEXED BY entry_log_links WHERE kind = 8 LIMIT 1";
	sqlite3_stmt *st;
	MTM_TRY(db_cached(t->s, sql, sql, &st));
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_error(t->s, rc, "index");
	any = rc == SQLITE_ROW;
	rc = 0;
	for (size_t i = 0; i < t->parent->n && !rc; i++) {
		const entry *pe = &VEC_AT(t->parent, entry, i);
		int linked = pe->kind == KIND_LINK;
		if (any && pe->kind == KIND_FILE && (rc = has_links(t, pe->path, &linked)))
			break;
		if (linked)
			rc = need_scan(t, "a touched file is or was hard-linked");
	}
	return rc;
}

/* One touched live file's capture: its dirty blocks when it is the file
 * the parent recorded, the blocks that differ from its hashes when it is
 * compared whole, all of it otherwise. */
static int capture_touched(tctx *t, live_item *it)
{
	entry *pe = tree_find(t->parent, it->path);
	const file_change *fc = pathmap_get(&t->cs->files, it->path);
	int same = 0, found, rc;
	int64_t dev, ino;
	/* the file the parent recorded here, written only where the records
	 * say? Not if an entry was created, removed or renamed at its path
	 * (or above): an inode freed there may have been reused by a file
	 * written under another name. Then it is read whole; a rename keeps
	 * its history all the same (ckpt_record matches it by inode). */
	int ns = pathmap_get(&t->nsdirs, it->path) || pathmap_under(&t->nsdirs, it->path);
	if (pe && pe->kind == KIND_FILE && !ns) {
		if ((rc = sc_inode(t, it->path, pe->ver, &dev, &ino, &found)))
			return rc;
		same = found && dev == (int64_t)it->st.st_dev && ino == (int64_t)it->st.st_ino;
	}
	capture *cap = calloc(1, sizeof *cap);
	if (!cap)
		return mtm_set_error(ENOMEM, "checkpoint");
	cap->fd = -1;
	cap->runs = (vec)VEC_INIT(blk_run);
	it->cap = cap;
	if (same && fc && fc->whole) {
		/* compared before the gate closed (ahead.c): only what was written
		 * since is read now */
		int done;
		rc = capture_ahead(t, it, cap, 0, &done);
		return rc || done ? rc : capture_hashed(t, it, cap);
	}
	cap->whole = !same || (fc && fc->whole);
	/* the blocks the logs name are all that changed only if the watcher
	 * saw no other writer (it marked the file whole otherwise) */
	cap->vouched = t->ss->watch != NULL && !watch_carried(t->ss->watch, it->path);
	if (!cap->whole && dirty_runs(fc, pe ? pe->size : 0, (int64_t)it->st.st_size, &cap->runs))
		return mtm_set_error(ENOMEM, "checkpoint");
	if (!same) { /* read before the gate closed, if it is the same inode */
		int done;
		rc = capture_ahead(t, it, cap, 1, &done);
		if (rc || done)
			return rc;
	}
	if (cap->whole || cap->runs.n || (int64_t)it->st.st_size != pe->size)
		return capture_file(t, it, cap);
	return 0;
}

/* Inside the barrier: the touched paths, both sides, and the captures. */
int collect_tracked(tctx *t)
{
	change_set *cs = t->cs;
	int rc;
	if (pathmap_get(&cs->files, ".metamoriignore") || pathmap_get(&cs->ns, ".metamoriignore") ||
	    pathmap_get(&cs->meta, ".metamoriignore"))
		return need_scan(t, ".metamoriignore changed");
	t->col_t0 = now_ns();
	if ((rc = collect_namespace(t)) || (rc = collect_points(t)))
		return rc;
	t->col_points = now_ns();
	if ((rc = sort_sides(t)) || (rc = check_new_dirs(t)) || (rc = check_parent_links(t)))
		return rc;
	t->col_checks = now_ns();
	for (size_t i = 0; i < t->live->n && !rc; i++) {
		live_item *it = &VEC_AT(t->live, live_item, i);
		if (it->kind != KIND_FILE)
			continue;
		if (it->st.st_nlink > 1)
			return need_scan(t, "a touched file has other hard links");
		int64_t c0 = t->ss->debug ? now_ns() : 0; /* (the slowest, for the debug line only) */
		rc = capture_touched(t, it);
		if (c0 && now_ns() - c0 > t->cap_max_ns) {
			t->cap_max_ns = now_ns() - c0;
			t->cap_max_path = it->path;
		}
	}
	return rc;
}

typedef struct {
	mtm_session *ss;
	const char *gate; /* METAMORI_TEST_SCAN_GATE */
} scan_ticks;

/* Every few items of the walk: the watcher's queue read on (watch_read_on:
 * at 1,000,000 files the walk takes seconds, and a busy file system
 * overflowed the queue meanwhile: the next checkpoint scanned too, and so
 * on). Tests: the walk waits at its first item while the file
 * METAMORI_TEST_SCAN_GATE names exists (a long walk, events coming
 * meanwhile). */
static void scan_tick(void *arg)
{
	scan_ticks *st = arg;
	if (st->ss->watch)
		watch_read_on(st->ss->watch);
	while (st->gate && !access(st->gate, F_OK)) {
		usleep(1000);
		if (st->ss->watch)
			watch_read_on(st->ss->watch);
	}
	st->gate = NULL;
}

/* Inside the barrier, when the logs are not enough: the whole tree, walked
 * without holding it (scan_changed): what may differ is kept, the rest
 * counted in t->rest. Files the stat cache cannot vouch for are copied out,
 * unless that is more than the budget: then t->hold says to record before
 * opening the barrier. */
int collect_scan(tctx *t, mtm_id parent)
{
	assert(!t->live->n && !t->parent->n); /* (restart_as_scan dropped the tracked sides) */
	live_free(t->live);
	entries_free(t->parent);
	/* the walk trusts the stat cache as the index holds it: the rows the
	 * session kept go in first, and this record's rows (the whole tree's,
	 * it may be) are written, not kept */
	MTM_TRY(session_sc_write(t->ss));
	ckpt_statcache_direct(t->run);
	scan_ticks st = {.ss = t->ss, .gate = secure_getenv("METAMORI_TEST_SCAN_GATE")};
	MTM_TRY(scan_changed(t->s, t->ign, parent, 0, t->live, t->parent, &t->rest, scan_tick, &st));
	/* every file kept is new, replaced or not vouched for: all are read */
	uint64_t total = 0;
	for (size_t i = 0; i < t->live->n; i++) {
		live_item *it = &VEC_AT(t->live, live_item, i);
		if (it->kind == KIND_FILE)
			total += (uint64_t)it->st.st_size;
	}
	if (total > t->budget) {
		t->hold = 1; /* read in place while the barrier holds */
		return 0;
	}
	int rc = 0;
	for (size_t i = 0; i < t->live->n && !rc; i++) {
		live_item *it = &VEC_AT(t->live, live_item, i);
		if (it->kind != KIND_FILE)
			continue;
		capture *cap = calloc(1, sizeof *cap);
		if (!cap)
			return mtm_set_error(ENOMEM, "checkpoint");
		cap->fd = -1;
		cap->whole = 1;
		cap->runs = (vec)VEC_INIT(blk_run);
		it->cap = cap;
		rc = capture_file(t, it, cap);
		if (rc == NEED_SCAN) { /* changed by an untraced process: read it as it comes */
			capture_free(cap);
			it->cap = NULL;
			rc = 0;
		}
	}
	return rc;
}

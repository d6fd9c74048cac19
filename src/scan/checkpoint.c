/*
 * checkpoint.c — recording the tree as a new checkpoint (scan mode).
 *
 * Order of events, which is what makes a crash at any point harmless:
 *   1. take the writer lock; open an IMMEDIATE index transaction;
 *   2. walk the tree; for each file whose stat is not known-fresh, compare
 *      its blocks with the parent's block map and append the changed runs to
 *      a pack (the rows naming them go into the open transaction);
 *   3. flush and fsync the packs (and the packs directory for a new pack);
 *   4. COMMIT. That commit is the checkpoint. Before it, a crash leaves only
 *      an unreferenced pack tail (cut off by the next writer); after it,
 *      nothing can be lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/io.h"
#include "scan/scan.h"
#include "store/pack.h"
#include "util/error.h"
#include "util/human.h"

typedef struct {
	mtm_store *s;
	pack_writer pw;
	index_writer iw;
	int64_t id, branch;
	int64_t next_file_id; /* allocator for new files */
	int64_t cur_file;     /* the file store_run is recording */
	uint64_t bytes_changed, blocks_changed;
} ckpt_ctx;

static int store_run(void *arg, int64_t blkno, int nblocks, const unsigned char *data, size_t len,
                     const uint64_t *hashes, int zero)
{
	ckpt_ctx *c = arg;
	int64_t chunk = 0;
	if (!zero)
		MTM_TRY(pack_put(&c->pw, data, len, &chunk));
	for (int i = 0; i < nblocks; i++)
		MTM_TRY(index_put_block(&c->iw, c->cur_file, blkno + i, c->branch, c->id, hashes[i], chunk, zero ? 0 : i));
	c->bytes_changed += len;
	c->blocks_changed += (uint64_t)nblocks;
	return 0;
}

static void entry_from_stat(entry *e, const live_item *it)
{
	e->path = it->path;
	e->kind = it->kind;
	e->mode = it->kind == KIND_SYMLINK ? 0777 : (uint32_t)(it->st.st_mode & 07777);
	e->uid = it->st.st_uid;
	e->gid = it->st.st_gid;
	e->size = it->kind == KIND_FILE ? (int64_t)it->st.st_size : 0;
	e->mtime_ns = st_mtime_ns(&it->st);
	e->target = it->target;
}

static int meta_equal(const entry *a, const entry *b)
{
	return a->kind == b->kind && a->mode == b->mode && a->uid == b->uid && a->gid == b->gid && a->size == b->size &&
	       a->mtime_ns == b->mtime_ns && ((!a->target && !b->target) || (a->target && b->target && !strcmp(a->target, b->target)));
}

/* Picks the branch for a child of head: head's own branch if head is its
 * tip, otherwise a new branch forking after head. */
static int choose_branch(mtm_store *s, mtm_id head, int64_t *out)
{
	int64_t hb = 0;
	if (head) {
		MTM_TRY(checkpoint_branch(s, head, &hb));
		sqlite3_stmt *st;
		int rc = sqlite3_prepare_v2(s->db, "SELECT 1 FROM checkpoint WHERE branch=? AND id>? LIMIT 1", -1, &st, NULL);
		if (rc != SQLITE_OK)
			return db_error(s, rc, "index");
		sqlite3_bind_int64(st, 1, hb);
		sqlite3_bind_int64(st, 2, head);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc == SQLITE_DONE) {
			*out = hb;
			return 0;
		}
		if (rc != SQLITE_ROW)
			return db_error(s, rc, "index");
	}
	int64_t nb = s->n_branches > 0 ? s->n_branches : 1;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "INSERT INTO branch VALUES(?,?,?)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_bind_int64(st, 1, nb);
	sqlite3_bind_int64(st, 2, hb);
	sqlite3_bind_int64(st, 3, head);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_error(s, rc, "index");
	*out = nb;
	return 0;
}

static int insert_checkpoint(mtm_store *s, const mtm_checkpoint_info *ci, int64_t branch)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "INSERT INTO checkpoint VALUES(?,?,?,?,?,?,?,?,?,?,?,?)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_bind_int64(st, 1, ci->id);
	sqlite3_bind_int64(st, 2, ci->parent);
	sqlite3_bind_int64(st, 3, branch);
	sqlite3_bind_int64(st, 4, ci->time_ns);
	sqlite3_bind_text(st, 5, ci->message ? ci->message : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, (int64_t)ci->files_added);
	sqlite3_bind_int64(st, 7, (int64_t)ci->files_changed);
	sqlite3_bind_int64(st, 8, (int64_t)ci->files_removed);
	sqlite3_bind_int64(st, 9, (int64_t)ci->bytes_changed);
	sqlite3_bind_int64(st, 10, (int64_t)ci->bytes_stored);
	sqlite3_bind_int64(st, 11, (int64_t)ci->entries);
	sqlite3_bind_int64(st, 12, (int64_t)ci->tree_bytes);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

/* A removed file's (dev, ino), to recognise it under a new name (a rename)
 * and keep its block history instead of storing it again. */
typedef struct { int64_t dev, ino; entry *e; int used; } gone_file;

static gone_file *find_gone(vec *gone, const struct stat *st)
{
	for (size_t i = 0; i < gone->n; i++) {
		gone_file *g = &VEC_AT(gone, gone_file, i);
		if (!g->used && g->dev == (int64_t)st->st_dev && g->ino == (int64_t)st->st_ino)
			return g;
	}
	return NULL;
}

typedef struct {
	mtm_store *s;
	ckpt_ctx *c;
	lineage parent_lin;
	pathmap sc;
	sqlite3_stmt *sc_put, *sc_del;
	int64_t t0;
	mtm_checkpoint_info *ci;
	const mtm_checkpoint_opts *opts;
	uint64_t done_bytes, total_bytes;
} run_state;

/* Records one live regular file: compares its content with its history. */
static int record_file(run_state *r, live_item *it, entry *pe, gone_file *renamed)
{
	ckpt_ctx *c = r->c;
	int fd, rc = beneath_open(r->s->rootfd, it->path, O_RDONLY, &fd);
	if (rc == ENOENT || rc == ELOOP)
		return ENOENT; /* vanished or replaced since the walk */
	if (rc)
		return mtm_set_errno(rc, "%s/%s", r->s->root, it->path);
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return ENOENT;
	}
	it->st = st; /* the stat of what we actually read */
	int64_t file_id = pe && pe->kind == KIND_FILE ? pe->file_id : renamed ? renamed->e->file_id : 0;
	vec map = VEC_INIT(blockref);
	if (file_id && (rc = index_file_map(r->s, file_id, &r->parent_lin, &map))) {
		close(fd);
		return rc;
	}
	if (!file_id)
		file_id = c->next_file_id++;
	uint64_t before = c->blocks_changed;
	int64_t size_read;
	c->cur_file = file_id;
	rc = compare_file(fd, (int64_t)st.st_size, &map, store_run, c, &size_read);
	close(fd);
	vec_free(&map);
	if (rc)
		return mtm_set_error(rc, "%s/%s: %s", r->s->root, it->path, mtm_last_error());
	r->done_bytes += (uint64_t)size_read;
	if (r->opts && r->opts->progress)
		r->opts->progress(r->opts->progress_arg, "checkpoint", r->done_bytes, r->total_bytes);

	entry e = {0};
	entry_from_stat(&e, it);
	e.size = size_read;
	e.file_id = file_id;
	int64_t ver;
	int content_changed = c->blocks_changed != before;
	if (!pe || pe->kind != KIND_FILE || pe->file_id != file_id || content_changed || !meta_equal(&e, pe)) {
		MTM_TRY(index_put_entry(&c->iw, c->branch, c->id, &e));
		ver = c->id;
		if (!pe)
			r->ci->files_added++;
		else
			r->ci->files_changed++;
	} else {
		ver = pe->ver;
	}
	r->ci->tree_bytes += (uint64_t)size_read;
	return statcache_put(r->s, &r->sc_put, it->path, ver, &st, r->t0);
}

static int record_other(run_state *r, const live_item *it, const entry *pe)
{
	entry e = {0};
	entry_from_stat(&e, it);
	if (pe && meta_equal(&e, pe))
		return 0;
	MTM_TRY(index_put_entry(&r->c->iw, r->c->branch, r->c->id, &e));
	if (!pe)
		r->ci->files_added++;
	else
		r->ci->files_changed++;
	return 0;
}

static int record_removal(run_state *r, const entry *pe)
{
	entry t = {.path = pe->path, .kind = KIND_NONE};
	MTM_TRY(index_put_entry(&r->c->iw, r->c->branch, r->c->id, &t));
	r->ci->files_removed++;
	return pe->kind == KIND_FILE ? statcache_del(r->s, &r->sc_del, pe->path) : 0;
}

static int scan_and_record(run_state *r, vec *parent, vec *live)
{
	int rc = 0;
	/* Removed regular files, by inode, for rename detection. */
	vec gone = VEC_INIT(gone_file);
	size_t li = 0;
	for (size_t pi = 0; pi < parent->n; pi++) {
		entry *pe = &VEC_AT(parent, entry, pi);
		while (li < live->n && strcmp(VEC_AT(live, live_item, li).path, pe->path) < 0)
			li++;
		int present = li < live->n && !strcmp(VEC_AT(live, live_item, li).path, pe->path);
		if (present || pe->kind != KIND_FILE)
			continue;
		sc_row *sr = pathmap_get(&r->sc, pe->path);
		if (sr && sr->ver == pe->ver) {
			gone_file *g = vec_push(&gone);
			if (!g)
				return mtm_set_error(ENOMEM, "checkpoint");
			g->dev = sr->dev;
			g->ino = sr->ino;
			g->e = pe;
		}
	}
	for (size_t i = 0; i < live->n; i++) {
		live_item *it = &VEC_AT(live, live_item, i);
		entry *pe = tree_find(parent, it->path);
		if (it->kind == KIND_FILE) {
			sc_row *sr = pathmap_get(&r->sc, it->path);
			if (!(pe && pe->kind == KIND_FILE && statcache_fresh(sr, &it->st, pe->ver)))
				r->total_bytes += (uint64_t)it->st.st_size;
		}
	}
	for (size_t i = 0, pi = 0; i < live->n || pi < parent->n;) {
		live_item *it = i < live->n ? &VEC_AT(live, live_item, i) : NULL;
		entry *pe = pi < parent->n ? &VEC_AT(parent, entry, pi) : NULL;
		int cmp = !it ? 1 : !pe ? -1 : strcmp(it->path, pe->path);
		if (cmp > 0) { /* only in the parent: removed */
			if ((rc = record_removal(r, pe)))
				break;
			pi++;
			continue;
		}
		if (cmp == 0)
			pi++;
		else
			pe = NULL;
		i++;
		r->ci->entries++;
		if (pe && pe->kind != it->kind && pe->kind == KIND_FILE && (rc = statcache_del(r->s, &r->sc_del, pe->path)))
			break;
		if (it->kind != KIND_FILE) {
			if ((rc = record_other(r, it, pe)))
				break;
			continue;
		}
		if (pe && pe->kind == KIND_FILE && statcache_fresh(pathmap_get(&r->sc, it->path), &it->st, pe->ver)) {
			r->ci->tree_bytes += (uint64_t)it->st.st_size;
			continue; /* unchanged: no read at all */
		}
		gone_file *g = !pe || pe->kind != KIND_FILE ? find_gone(&gone, &it->st) : NULL;
		if (g)
			g->used = 1;
		rc = record_file(r, it, pe, g);
		if (rc == ENOENT) { /* vanished after the walk */
			r->ci->entries--;
			rc = pe ? record_removal(r, pe) : 0;
		}
		if (rc)
			break;
	}
	vec_free(&gone);
	return rc;
}

int mtm_checkpoint(mtm_store *s, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out)
{
	if (opts && opts->version != MTM_CHECKPOINT_OPTS_VERSION)
		return mtm_set_error(MTM_EINVAL, "checkpoint: unsupported options version %d", opts->version);
	if (out)
		memset(out, 0, sizeof *out);
	MTM_TRY(store_lock(s));
	mtm_checkpoint_info ci = {0};
	ckpt_ctx c = {.s = s};
	run_state r = {.s = s, .c = &c, .ci = &ci, .opts = opts};
	ignore_set ign = {0};
	vec parent = VEC_INIT(entry), live = VEC_INIT(live_item);
	int in_tx = 0, rc;
	r.t0 = now_ns();
	ci.time_ns = r.t0;
	ci.message = (char *)(opts && opts->message ? opts->message : "");

	if ((rc = ignore_load(&ign, s->rootfd, opts ? opts->excludes : NULL, opts ? opts->n_excludes : 0)))
		goto done;
	if ((rc = mtm_head(s, &ci.parent)) || (rc = index_load_tree(s, ci.parent, &parent)) ||
	    (rc = lineage_of(s, ci.parent, &r.parent_lin)) || (rc = statcache_load(s, &r.sc)))
		goto done;
	if ((rc = walk_tree(s, &ign, &live)))
		goto done;
	if ((rc = db_exec(s, "BEGIN IMMEDIATE")))
		goto done;
	in_tx = 1;
	if ((rc = meta_get_int(s, "next_id", &ci.id)) || (rc = meta_get_int(s, "next_file_id", &c.next_file_id)) ||
	    (rc = choose_branch(s, ci.parent, &c.branch)))
		goto done;
	c.id = ci.id;
	if ((rc = pack_writer_begin(&c.pw, s)) || (rc = index_writer_init(&c.iw, s)))
		goto done;
	if ((rc = scan_and_record(&r, &parent, &live)))
		goto done;
	ci.bytes_changed = c.bytes_changed;
	ci.bytes_stored = c.pw.bytes_stored;
	if ((rc = insert_checkpoint(s, &ci, c.branch)) || (rc = meta_set_int(s, "head", ci.id)) ||
	    (rc = meta_set_int(s, "next_id", ci.id + 1)) || (rc = meta_set_int(s, "next_file_id", c.next_file_id)))
		goto done;
	/* packs durable first; then the commit that names them */
	if ((rc = pack_writer_finish(&c.pw)))
		goto done;
	if ((rc = db_exec(s, "COMMIT")))
		goto done;
	in_tx = 0;
done:
	if (in_tx)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_finalize(r.sc_put);
	sqlite3_finalize(r.sc_del);
	pack_writer_free(&c.pw);
	index_writer_free(&c.iw);
	pathmap_free(&r.sc, free);
	lineage_free(&r.parent_lin);
	entries_free(&parent);
	live_free(&live);
	ignore_free(&ign);
	store_load_branches(s);
	store_unlock(s);
	if (!rc && out) {
		*out = ci;
		out->message = strdup(ci.message);
	}
	return rc;
}

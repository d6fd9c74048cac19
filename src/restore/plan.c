/*
 * plan.c — an in-place restore's plan: the target's entries and the live
 * tree merged in path order into a step per path (plan_file.c decides each
 * file's), what goes, and the refusals that must come before any change (a
 * path asked for that neither side has, a directory that must go but holds
 * excluded files). The steps are listed for --dry-run and the preflight.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "restore/browse.h"
#include "restore/preflight.h"
#include "restore/rctx.h"
#include "store/index.h"
#include "util/error.h"

void plan_free(vec *plan)
{
	for (size_t i = 0; i < plan->n; i++) {
		vec_free(&VEC_AT(plan, plan_item, i).map);
		vec_free(&VEC_AT(plan, plan_item, i).runs);
	}
	vec_free(plan);
}

static int push_removed(vec *removed, live_item *li)
{
	live_item **slot = vec_push(removed);
	if (!slot)
		return mtm_set_error(ENOMEM, "restore");
	*slot = li;
	return 0;
}

static int by_path(const void *a, const void *b)
{
	return strcmp((*(live_item *const *)a)->path, (*(live_item *const *)b)->path);
}

/* An entry of another type (FIFO, socket, device node) that the walk does
 * not list but that is in the way: removed like any other difference. */
static int add_other(vec *removed, vec *others, const char *path, const struct stat *st)
{
	live_item **o = vec_push(others), *li = calloc(1, sizeof *li);
	if (!o || !li || !(li->path = strdup(path))) {
		free(li);
		return mtm_set_error(ENOMEM, "restore");
	}
	*o = li;
	li->st = *st;
	li->kind = KIND_NONE;
	return push_removed(removed, li);
}

static live_item *live_find(const vec *live, const char *path)
{
	size_t lo = 0, hi = live->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(VEC_AT(live, live_item, mid).path, path);
		if (!cmp)
			return &VEC_AT(live, live_item, mid);
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int report_step(rctx *c, char action, const char *path, uint64_t bytes)
{
	if (!c->rq->on_step)
		return 0;
	mtm_restore_step st = {action, path, bytes};
	return c->rq->on_step(c->rq->step_arg, &st);
}

/* Lists the plan's steps (on_step), and collects the directories whose
 * entries it changes (for the access check) and the bytes it writes. */
int plan_steps(rctx *c, const vec *plan, const vec *removed, pathmap *dirs, uint64_t *need)
{
	int rc = 0;
	for (size_t i = 0; i < removed->n && !rc; i++) {
		live_item *li = VEC_AT(removed, live_item *, i);
		touch_dir_in(dirs, li->path);
		rc = report_step(c, 'R', li->path, 0);
	}
	for (size_t i = 0; i < plan->n && !rc; i++) {
		const plan_item *p = &VEC_AT(plan, plan_item, i);
		const entry *e = p->te;
		uint64_t bytes = 0;
		char a = 0;
		switch (p->action) {
		case ACT_NONE:
			continue;
		case ACT_META:
			a = 'm';
			break;
		case ACT_CREATE:
			if (e->kind == KIND_FILE) {
				a = 'W';
				bytes = (uint64_t)e->size;
			} else {
				a = 'C';
			}
			touch_dir_in(dirs, e->path);
			break;
		case ACT_REWRITE:
			a = 'W';
			bytes = (uint64_t)e->size;
			touch_dir_in(dirs, e->path);
			break;
		case ACT_PATCH:
			a = 'P';
			for (size_t r = 0; r < p->runs.n; r++)
				bytes += (uint64_t)VEC_AT(&p->runs, blk_run, r).count * MTM_BLOCK;
			touch_dir_in(dirs, e->path); /* a reflinked copy is renamed in */
			break;
		}
		*need += bytes;
		rc = report_step(c, a, e->path, bytes);
	}
	return rc;
}

/* What to do to live item li (or NULL) to make it target entry p->te. */
static int plan_action(rctx *c, inplace *w, plan_item *p, live_item *li)
{
	entry *te = p->te;
	p->li = li;
	if (!li) {
		p->action = ACT_CREATE;
		if (te->kind == KIND_FILE) {
			MTM_TRY(index_file_map(c->s, te->file_id, &c->lin_k, &p->map));
			c->total += (uint64_t)te->size;
		}
	} else if (p->above) {
		p->action = ACT_NONE; /* a directory there already: left as it is */
	} else if (te->kind == KIND_FILE) {
		MTM_TRY(plan_file(c, p, &w->head_tree, &w->sc));
	} else if (te->kind == KIND_LINK) { /* (made or checked by make_links) */
		p->action = strcmp(te->target, li->target) ? ACT_CREATE : ACT_NONE;
	} else if (te->kind == KIND_SYMLINK && strcmp(te->target, li->target ? li->target : "") != 0) {
		p->action = ACT_CREATE;
	} else if ((te->kind == KIND_CHR || te->kind == KIND_BLK) && (uint64_t)li->st.st_rdev != te->rdev) {
		p->action = ACT_CREATE;
	} else {
		p->action = meta_differs(te, &li->st) || xattrs_differ(te, li->xattrs, li->xattrs_len) ? ACT_META : ACT_NONE;
	}
	return 0;
}

/* A target entry the walk did not find: something it does not list may
 * be there (only if its parent is: one lookup per entry created in a live
 * directory), to be removed first. */
static int other_in_the_way(rctx *c, inplace *w, const entry *te)
{
	const char *slash = strrchr(te->path, '/');
	char *parent = slash ? strndup(te->path, (size_t)(slash - te->path)) : NULL;
	live_item *pl = parent ? live_find(&w->live, parent) : NULL;
	free(parent);
	struct stat st;
	if ((!slash || (pl && pl->kind == KIND_DIR)) && preflight_other_at(c->s->rootfd, te->path, &st))
		return add_other(&w->removed, &w->others, te->path, &st);
	return 0;
}

typedef struct { const rreq *rq; const ignore_set *ign; } takes_arg;

/* Whether the request takes target entry te: neither excluded nor outside
 * its paths (a directory above them is taken: made if missing). */
static int takes(void *arg, const entry *te)
{
	const takes_arg *t = arg;
	return !ignore_path(t->ign, te->path, te->kind == KIND_DIR) &&
	       scope_takes(scope_of(t->rq->paths, t->rq->n_paths, te->path), te->kind == KIND_DIR);
}

/* Merges target and live, both in path order. */
static int plan_merge(rctx *c, inplace *w)
{
	const rreq *rq = c->rq;
	int rc;
	for (size_t i = 0, j = 0; i < w->target.n || j < w->live.n;) {
		entry *te = i < w->target.n ? &VEC_AT(&w->target, entry, i) : NULL;
		live_item *li = j < w->live.n ? &VEC_AT(&w->live, live_item, j) : NULL;
		int cmp = !te ? 1 : !li ? -1 : strcmp(te->path, li->path);
		if (cmp > 0) { /* live only: remove unless excluded from checkpoints or outside the request */
			j++;
			if (!ignore_path(&w->ign, li->path, li->kind == KIND_DIR) &&
			    scope_of(rq->paths, rq->n_paths, li->path) == SCOPE_IN && (rc = push_removed(&w->removed, li)))
				return rc;
			continue;
		}
		int scope = scope_of(rq->paths, rq->n_paths, te->path);
		if (ignore_path(&w->ign, te->path, te->kind == KIND_DIR) || !scope_takes(scope, te->kind == KIND_DIR)) {
			/* excluded or outside the request: neither restored nor removed, whatever is live there */
			i++;
			j += cmp == 0;
			continue;
		}
		plan_item *p = vec_push(&w->plan);
		if (!p)
			return mtm_set_error(ENOMEM, "restore");
		p->map = (vec)VEC_INIT(blockref);
		p->runs = (vec)VEC_INIT(blk_run);
		p->te = te;
		p->above = scope == SCOPE_ABOVE;
		i++;
		if (cmp == 0) {
			j++;
			if (li->kind != te->kind) {
				if ((rc = push_removed(&w->removed, li)))
					return rc;
				li = NULL;
			}
		} else {
			li = NULL;
			if ((rc = other_in_the_way(c, w, te)))
				return rc;
		}
		if ((rc = plan_action(c, w, p, li)))
			return rc;
	}
	return 0;
}

/* A path asked for that neither the checkpoint nor the tree has. */
static int check_asked(const rreq *rq, const inplace *w, mtm_id k)
{
	for (size_t i = 0; i < rq->n_paths; i++) {
		const char *q = rq->paths[i];
		if (*q && !tree_find(&w->target, q) && !live_find(&w->live, q))
			return mtm_set_error(ENOENT, "%s: not in checkpoint %lld, nor in the tree", browse_asked(q), (long long)k);
	}
	return 0;
}

/* A file patched in place must be writable; one that is not (mode 0444)
 * is rewritten whole instead, through a new name. */
static int unwritable_rewritten(rctx *c, inplace *w)
{
	for (size_t i = 0; i < w->plan.n; i++) {
		plan_item *p = &VEC_AT(&w->plan, plan_item, i);
		if (p->action != ACT_PATCH || !faccessat(c->s->rootfd, p->te->path, W_OK, AT_EACCESS | AT_SYMLINK_NOFOLLOW))
			continue;
		vec_free(&p->map);
		vec_free(&p->runs);
		p->map = (vec)VEC_INIT(blockref);
		p->runs = (vec)VEC_INIT(blk_run);
		p->action = ACT_REWRITE;
		c->total += (uint64_t)p->te->size;
		MTM_TRY(index_file_map(c->s, p->te->file_id, &c->lin_k, &p->map));
	}
	return 0;
}

/* Entries of other types inside directories that go: removed first. */
static int others_in_removed_dirs(rctx *c, inplace *w)
{
	strvec odd = {0};
	int rc = 0;
	for (size_t i = 0, n = w->removed.n; i < n && !rc; i++) {
		live_item *li = VEC_AT(&w->removed, live_item *, i);
		if (li->kind != KIND_DIR)
			continue;
		odd.n ? strvec_free(&odd) : (void)0;
		if ((rc = preflight_others_in(c->s->rootfd, li->path, &odd)))
			break;
		for (size_t j = 0; j < odd.n && !rc; j++) {
			struct stat st;
			if (preflight_other_at(c->s->rootfd, odd.v[j], &st))
				rc = add_other(&w->removed, &w->others, odd.v[j], &st);
		}
	}
	strvec_free(&odd);
	return rc;
}

/* A directory that must give way to another type but holds excluded
 * files cannot be removed (they are not ours): fail before any change. */
static int check_excluded_inside(const inplace *w)
{
	for (size_t i = 0; i < w->removed.n; i++) {
		live_item *li = VEC_AT(&w->removed, live_item *, i);
		if (li->kind != KIND_DIR || !tree_find(&w->target, li->path))
			continue;
		size_t n = strlen(li->path);
		for (size_t j = 0; j < w->live.n; j++) {
			live_item *x = &VEC_AT(&w->live, live_item, j);
			if (!strncmp(x->path, li->path, n) && x->path[n] == '/' && ignore_path(&w->ign, x->path, x->kind == KIND_DIR))
				return mtm_set_error(MTM_ENOTEMPTY, "%s: cannot restore, the tree was not changed: this directory "
				                     "holds %s, which is excluded from checkpoints; move it away first",
				                     li->path, x->path);
		}
	}
	return 0;
}

int plan_frozen(rctx *c, const inplace *w)
{
	for (size_t i = 0; i < w->removed.n; i++)
		MTM_TRY(preflight_frozen_at(c->s->rootfd, VEC_AT(&w->removed, live_item *, i)->path));
	for (size_t i = 0; i < w->plan.n; i++) {
		const plan_item *p = &VEC_AT(&w->plan, plan_item, i);
		if (p->li && p->action != ACT_NONE)
			MTM_TRY(preflight_frozen_at(c->s->rootfd, p->li->path));
	}
	for (size_t i = 0; i < w->dirs.cap; i++)
		if (w->dirs.slots[i].key)
			MTM_TRY(preflight_frozen_at(c->s->rootfd, w->dirs.slots[i].key));
	return 0;
}

int plan_in_place(rctx *c, inplace *w, mtm_id k)
{
	takes_arg ta = {c->rq, &w->ign};
	MTM_TRY(reroot_links(&w->target, takes, &ta));
	MTM_TRY(plan_merge(c, w));
	MTM_TRY(check_asked(c->rq, w, k));
	MTM_TRY(unwritable_rewritten(c, w));
	MTM_TRY(others_in_removed_dirs(c, w));
	if (w->removed.n)
		qsort(w->removed.v, w->removed.n, sizeof(live_item *), by_path);
	return check_excluded_inside(w);
}

/*
 * to_dir.c — a restore into an empty (or new) directory: every entry of
 * the checkpoint (or of the paths asked for) written, one syncfs at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/io.h"
#include "restore/browse.h"
#include "restore/rctx.h"
#include "restore/preflight.h"
#include "store/index.h"
#include "util/error.h"

/* 0 (and *empty) or an errno; a new open of the directory, not a dup: the
 * listing must not move fd's offset */
static int dir_is_empty(int fd, int *empty)
{
	DIR *d;
	int rc = io_opendirat(fd, ".", &d);
	*empty = 1;
	struct dirent *de;
	while (!rc && !(rc = io_readdir(d, &de)) && de)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			*empty = 0;
			break;
		}
	if (d)
		closedir(d);
	return rc;
}

/* Whether the request's paths take e (a directory above them: made). */
static int takes_scope(void *arg, const entry *e)
{
	const rreq *rq = arg;
	return scope_takes(scope_of(rq->paths, rq->n_paths, e->path), e->kind == KIND_DIR);
}

int restore_to_dir(rctx *c, mtm_id k, const char *to)
{
	const rreq *rq = c->rq;
	vec target = VEC_INIT(entry);
	/* One read transaction, as in place: the block rows and the chunk rows
	 * they name come from one snapshot (a concurrent gc may compact a chunk:
	 * FORMAT.md section 7), and no chunk lookup locks the database alone. */
	int rc = db_exec(c->s, "BEGIN");
	if (rc)
		return rc;
	if ((rc = index_load_tree(c->s, k, &target)) || (rc = lineage_of(c->s, k, &c->lin_k)))
		goto done;
	/* with paths: those, and the directories above them */
	if (rq->n_paths && (rc = reroot_links(&target, takes_scope, (void *)rq)))
		goto done;
	size_t keep = 0;
	for (size_t i = 0; i < target.n; i++) {
		entry *e = &VEC_AT(&target, entry, i);
		if (takes_scope((void *)rq, e))
			VEC_AT(&target, entry, keep++) = *e;
		else
			entry_clear(e);
	}
	target.n = keep;
	for (size_t i = 0; i < rq->n_paths; i++)
		if (*rq->paths[i] && !tree_find(&target, rq->paths[i])) {
			rc = mtm_set_error(ENOENT, "%s: not in checkpoint %lld", browse_asked(rq->paths[i]), (long long)k);
			goto done;
		}
	for (size_t i = 0; i < target.n && !rc; i++) {
		entry *e = &VEC_AT(&target, entry, i);
		if (rq->on_step && e->kind != KIND_DIR)
			rc = report_step(c, e->kind == KIND_FILE ? 'W' : 'C', e->path, e->kind == KIND_FILE ? (uint64_t)e->size : 0);
	}
	if (rc || rq->dry_run)
		goto done;
	int inside;
	if ((rc = store_holds_dir(c->s, to, &inside)))
		goto done;
	if (inside) {
		rc = mtm_set_error(MTM_EINVAL, "%s: cannot restore into the store", to);
		goto done;
	}
	if (mkdir(to, 0700) && errno != EEXIST) {
		rc = mtm_set_errno(errno, "%s", to);
		goto done;
	}
	if ((rc = io_openat(AT_FDCWD, to, O_RDONLY | O_DIRECTORY, 0, &c->rootfd))) {
		rc = mtm_set_errno(rc, "%s", to);
		goto done;
	}
	int empty, err = dir_is_empty(c->rootfd, &empty);
	if (err) {
		rc = mtm_set_errno(err, "%s: listing", to);
		goto done;
	}
	if (!empty) {
		rc = mtm_set_error(MTM_ENOTEMPTY, "%s: restore target is not an empty directory", to);
		goto done;
	}
	for (size_t i = 0; i < target.n; i++)
		if (VEC_AT(&target, entry, i).kind == KIND_FILE)
			c->total += (uint64_t)VEC_AT(&target, entry, i).size;
	for (size_t i = 0; i < target.n && !rc; i++) {
		entry *e = &VEC_AT(&target, entry, i);
		if (e->kind == KIND_DIR) {
			rc = make_dir(c, e);
		} else if (e->kind == KIND_FILE) {
			plan_item p = {.te = e, .map = VEC_INIT(blockref)};
			if (!(rc = index_file_map(c->s, e->file_id, &c->lin_k, &p.map)))
				rc = write_whole(c, &p);
			vec_free(&p.map);
		}
	}
	if (!rc)
		rc = make_links(c, &target, NULL);
	for (size_t i = 0; i < target.n && !rc; i++) {
		entry *e = &VEC_AT(&target, entry, i);
		if (e->kind == KIND_SYMLINK)
			rc = make_symlink(c, e);
		else if (e->kind >= KIND_FIFO && e->kind <= KIND_BLK)
			rc = make_node(c, e);
	}
	if (!rc)
		rc = fix_dirs(c, &target, NULL);
	if (!rc && !rq->n_paths)
		rc = set_root_meta(c, k);
	/* one syncfs instead of an fsync per file: the directory was empty, so
	 * there is no old version to protect, only durability at the end */
	if (!rc && syncfs(c->rootfd))
		rc = mtm_set_errno(errno, "%s: sync", to);
done:
	db_exec(c->s, "COMMIT");
	entries_free(&target);
	lineage_free(&c->lin_k);
	return rc;
}

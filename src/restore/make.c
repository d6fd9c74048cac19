/*
 * make.c — the entries a restore makes other than files' content:
 * directories, the other names of hard-linked files, symlinks, FIFOs,
 * sockets and device nodes (each made under a temporary name and renamed
 * over what is there); and the entries it removes.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/io.h"
#include "restore/rctx.h"
#include "util/error.h"
#include "util/log.h"

/* The end of making e: the entry made as tmp in dfd (rc its making's
 * error, 0 if made) renamed over leaf and given e's metadata; dfd closed. */
static int put_in_place(rctx *c, const entry *e, int dfd, const char *tmp, const char *leaf, int rc)
{
	if (!rc && (rc = io_renameat(dfd, tmp, dfd, leaf)))
		(void)io_unlinkat(dfd, tmp, 0); /* best effort: scans skip a left temporary */
	if (!rc)
		rc = set_meta_at(c, dfd, leaf, e);
	close(dfd);
	if (rc)
		return mtm_set_errno(rc, "%s", e->path);
	touch_dir(c, e->path);
	c->st.entries_created++;
	return 0;
}

int make_symlink(rctx *c, const entry *e)
{
	int dfd;
	const char *leaf;
	MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
	char tmp[64];
	tmp_name(c, tmp, sizeof tmp);
	return put_in_place(c, e, dfd, tmp, leaf, io_symlinkat(e->target, dfd, tmp));
}

/* Another name of a hard-linked file: a link to the group's file, which
 * the file pass wrote (FORMAT.md 3.4). Nothing if the name is already that
 * file (same inode); else a link made under a temporary name and renamed
 * over whatever is there, so a rerun after a crash finishes it. */
static int make_link(rctx *c, const vec *target, const entry *e)
{
	const entry *f = tree_find(target, e->target);
	if (!f || f->kind != KIND_FILE)
		return mtm_set_error(MTM_ECORRUPT, "index: hard link '%s' names '%s', which is no file of the checkpoint",
		                     e->path, e->target);
	int dfd, fdfd, rc;
	const char *leaf, *fleaf;
	MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
	if ((rc = open_parent(c, f->path, &fdfd, &fleaf))) {
		close(dfd);
		return rc;
	}
	struct stat have, want;
	if (fstatat(fdfd, fleaf, &want, AT_SYMLINK_NOFOLLOW))
		rc = errno;
	else if (!S_ISREG(want.st_mode))
		rc = ENOTPLAIN;
	else if (!fstatat(dfd, leaf, &have, AT_SYMLINK_NOFOLLOW) && have.st_dev == want.st_dev && have.st_ino == want.st_ino)
		rc = -1; /* already one of its names */
	if (!rc) {
		char tmp[64];
		tmp_name(c, tmp, sizeof tmp);
		rc = io_linkat(fdfd, fleaf, dfd, tmp);
		if (!rc && (rc = io_renameat(dfd, tmp, dfd, leaf)))
			(void)io_unlinkat(dfd, tmp, 0);
		if (!rc) {
			touch_dir(c, e->path);
			c->st.entries_created++;
		}
	}
	close(dfd);
	close(fdfd);
	return rc > 0 ? mtm_set_errno(rc, "%s: linking to %s", e->path, f->path) : 0;
}

int make_links(rctx *c, const vec *target, const vec *plan)
{
	if (!plan) {
		for (size_t i = 0; i < target->n; i++)
			if (VEC_AT(target, entry, i).kind == KIND_LINK)
				MTM_TRY(make_link(c, target, &VEC_AT(target, entry, i)));
		return 0;
	}
	for (size_t i = 0; i < plan->n; i++) {
		const plan_item *p = &VEC_AT(plan, plan_item, i);
		if (p->te->kind == KIND_LINK)
			MTM_TRY(make_link(c, target, p->te));
	}
	return 0;
}

/* Makes link e the group's file f: f's content and metadata under e's
 * path. ver 0: a version no stat cache row may name (record.c), and that
 * plan_file never takes for the one the live file holds. */
static int link_as_file(entry *e, const entry *f)
{
	unsigned char *x = NULL;
	if (f->xattrs_len && !(x = malloc(f->xattrs_len)))
		return mtm_set_error(ENOMEM, "restore");
	if (x)
		memcpy(x, f->xattrs, f->xattrs_len);
	char *path = e->path;
	free(e->target);
	free(e->xattrs);
	*e = *f;
	e->path = path;
	e->target = NULL;
	e->xattrs = x;
	e->ver = 0;
	return 0;
}

int reroot_links(vec *target, int (*taken)(void *arg, const entry *e), void *arg)
{
	pathmap roots = {0}; /* group file left out -> the name made its file */
	int rc = 0;
	for (size_t i = 0; i < target->n && !rc; i++) {
		entry *e = &VEC_AT(target, entry, i);
		if (e->kind != KIND_LINK || !taken(arg, e))
			continue;
		const entry *f = tree_find(target, e->target);
		if (!f || f->kind != KIND_FILE || taken(arg, f))
			continue; /* (no file: make_link says the index is damaged) */
		const char *root = pathmap_get(&roots, f->path);
		if (root) {
			char *t = strdup(root);
			if (!t) {
				rc = mtm_set_error(ENOMEM, "restore");
				break;
			}
			free(e->target);
			e->target = t;
		} else if (!(rc = link_as_file(e, f)) && pathmap_put(&roots, f->path, e->path)) {
			rc = mtm_set_error(ENOMEM, "restore");
		}
	}
	pathmap_free(&roots, NULL);
	return rc;
}

/* A FIFO, socket or device node, made as what it was (a socket as an
 * inode, with nothing listening: only a program can bind one). Device
 * nodes need root; anyone else gets a count in nodes_skipped. */
int make_node(rctx *c, const entry *e)
{
	static const mode_t type[] = {[KIND_FIFO] = S_IFIFO, [KIND_SOCKET] = S_IFSOCK, [KIND_CHR] = S_IFCHR,
	                              [KIND_BLK] = S_IFBLK};
	assert(e->kind >= KIND_FIFO && e->kind <= KIND_BLK);
	int dfd, rc;
	const char *leaf;
	MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
	char tmp[64];
	tmp_name(c, tmp, sizeof tmp);
	rc = io_mknodat(dfd, tmp, type[e->kind] | 0600, (dev_t)e->rdev);
	if (rc == EPERM && (e->kind == KIND_CHR || e->kind == KIND_BLK) && geteuid()) {
		close(dfd);
		c->st.nodes_skipped++;
		return 0;
	}
	return put_in_place(c, e, dfd, tmp, leaf, rc);
}

int make_dir(rctx *c, const entry *e)
{
	int dfd, rc;
	const char *leaf;
	MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
	rc = io_mkdirat(dfd, leaf, 0700);
	if (rc == EEXIST) {
		struct stat st;
		rc = fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) ? errno : S_ISDIR(st.st_mode) ? 0 : EEXIST;
	} else if (!rc) {
		c->st.entries_created++;
		touch_dir(c, e->path);
	}
	close(dfd);
	return rc ? mtm_set_errno(rc, "%s", e->path) : 0;
}

int remove_path(rctx *c, const live_item *li, int must)
{
	int dfd, rc;
	const char *leaf;
	MTM_TRY(open_parent(c, li->path, &dfd, &leaf));
	rc = io_unlinkat(dfd, leaf, li->kind == KIND_DIR ? AT_REMOVEDIR : 0);
	close(dfd);
	if (rc == ENOENT)
		return 0;
	if ((rc == ENOTEMPTY || rc == EEXIST) && !must) {
		/* it still holds ignored files: they are not ours to delete */
		log_msg(MTM_LOG_WARNING, "%s: kept (holds files excluded from checkpoints)", li->path);
		return 0;
	}
	if (rc)
		return mtm_set_errno(rc, "%s: removing", li->path);
	touch_dir(c, li->path);
	c->st.entries_removed++;
	return 0;
}

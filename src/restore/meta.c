/*
 * meta.c — a restored entry's metadata: owner, extended attributes, mode
 * and modification time, set through the file's fd or by no-follow calls
 * on its name, in the order that keeps each (see set_meta_fd); and whether
 * a live entry's differ from a checkpoint's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/io.h"
#include "io/xattr.h"
#include "restore/rctx.h"
#include "tree/root.h"
#include "util/error.h"
#include "util/log.h"

/* Sets owner, extended attributes, mode and mtime, in that order, through
 * an fd (files) or no-follow calls: a chown clears capabilities and set-id
 * bits, so they come after it; setting an ACL rewrites the group bits,
 * which the mode (recorded with that ACL) then sets to what they were. */
int set_meta_fd(rctx *c, int fd, const entry *e)
{
	struct stat st;
	if (fstat(fd, &st))
		return errno;
	int rc;
	if ((st.st_uid != e->uid || st.st_gid != e->gid) && (rc = io_fchown(fd, e->uid, e->gid)) &&
	    !(rc == EPERM && geteuid()))
		return rc; /* an unprivileged user cannot give files away: keep ours */
	unsigned skipped = 0;
	rc = xattr_apply_fd(fd, e->xattrs, e->xattrs_len, &skipped);
	c->st.attrs_skipped += skipped;
	if (rc)
		return rc;
	if ((rc = io_fchmod(fd, e->mode)))
		return rc;
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, entry_mtime(e)};
	return io_futimens(fd, ts);
}

/* The root as set_meta_fd sets an entry, but only what differs, and what
 * its owner alone may set (mode, mtime) kept with a warning when this user
 * is not its owner: the tree's files are all restored by then, and a
 * shared directory the user may write in but does not own must not fail
 * every restore at its last step (before format 11 only a mode that
 * differed was set). */
static int set_root_fd(rctx *c, const root_meta *m)
{
	struct stat st;
	if (fstat(c->rootfd, &st))
		return errno;
	int rc, denied = 0;
	if (m->have_rest) {
		if ((st.st_uid != m->e.uid || st.st_gid != m->e.gid) && (rc = io_fchown(c->rootfd, m->e.uid, m->e.gid)) &&
		    !(rc == EPERM && geteuid()))
			return rc; /* an unprivileged user cannot give files away: keep ours */
		unsigned skipped = 0;
		rc = xattr_apply_fd(c->rootfd, m->e.xattrs, m->e.xattrs_len, &skipped);
		c->st.attrs_skipped += skipped;
		/* a chown clears set-id bits, an ACL sets the group bits */
		if (rc || fstat(c->rootfd, &st))
			return rc ? rc : errno;
	}
	if ((uint32_t)(st.st_mode & 07777) != m->e.mode && (rc = io_fchmod(c->rootfd, m->e.mode))) {
		if (!(rc == EPERM && geteuid()))
			return rc;
		denied = 1;
	}
	if (m->have_rest && (st.st_mtim.tv_sec != m->e.mtime_s || st.st_mtim.tv_nsec != m->e.mtime_nsec)) {
		struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, entry_mtime(&m->e)};
		if ((rc = io_futimens(c->rootfd, ts)) && !(rc == EPERM && geteuid()))
			return rc;
		denied |= rc != 0;
	}
	if (denied)
		log_msg(MTM_LOG_WARNING, "warning: the tree's root: its mode and modification time were left as they are "
		        "(owned by uid %u: only its owner or root may set them)", (unsigned)st.st_uid);
	return 0;
}

int set_root_meta(rctx *c, mtm_id k)
{
	root_meta m;
	int rc = root_meta_of(c->s, k, &m);
	if (!rc && m.have_mode && (rc = set_root_fd(c, &m)))
		rc = mtm_set_errno(rc, "the tree's root: setting its metadata");
	root_meta_free(&m);
	return rc;
}

int set_meta_at(rctx *c, int dfd, const char *leaf, const entry *e)
{
	struct stat st;
	if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW))
		return errno;
	int chowned = 0, rc;
	if (st.st_uid != e->uid || st.st_gid != e->gid) {
		if (!(rc = io_fchownat(dfd, leaf, e->uid, e->gid, AT_SYMLINK_NOFOLLOW)))
			chowned = 1;
		else if (!(rc == EPERM && geteuid()))
			return rc;
	}
	unsigned skipped = 0;
	rc = xattr_apply_at(dfd, leaf, e->xattrs, e->xattrs_len, &skipped);
	c->st.attrs_skipped += skipped;
	if (rc)
		return rc;
	/* a chown clears set-id bits, an ACL sets the group bits: the mode is
	 * set again after either */
	if (e->xattrs_len && fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW))
		return errno;
	if (e->kind != KIND_SYMLINK && (chowned || (st.st_mode & 07777) != e->mode) &&
	    (rc = io_fchmodat(dfd, leaf, e->mode, AT_SYMLINK_NOFOLLOW)))
		return rc;
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, entry_mtime(e)};
	return io_utimensat(dfd, leaf, ts, AT_SYMLINK_NOFOLLOW);
}

int set_meta_path(rctx *c, const entry *e)
{
	int dfd, rc;
	const char *leaf;
	MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
	rc = set_meta_at(c, dfd, leaf, e);
	close(dfd);
	return rc ? mtm_set_errno(rc, "%s: setting metadata", e->path) : 0;
}

int meta_differs(const entry *e, const struct stat *st)
{
	return (e->kind != KIND_SYMLINK && (uint32_t)(st->st_mode & 07777) != e->mode) || st->st_uid != e->uid ||
	       st->st_gid != e->gid || (int64_t)st->st_mtim.tv_sec != e->mtime_s || st->st_mtim.tv_nsec != e->mtime_nsec ||
	       (e->kind == KIND_FILE && (int64_t)st->st_size != e->size);
}

int xattrs_differ(const entry *e, const unsigned char *x, size_t len)
{
	return e->xattrs_len != len || (len && memcmp(e->xattrs, x, len));
}

/* Applies directory metadata last, deepest first: creating entries in a
 * directory changes its mtime, so nothing may follow this. */
int fix_dirs(rctx *c, vec *target, const vec *plan)
{
	for (size_t i = plan ? plan->n : target->n; i-- > 0;) {
		const plan_item *p = plan ? &VEC_AT(plan, plan_item, i) : NULL;
		entry *e = p ? p->te : &VEC_AT(target, entry, i);
		if (e->kind != KIND_DIR || (p && p->above && p->action != ACT_CREATE))
			continue; /* above the request's paths: only made if missing */
		int dfd;
		const char *leaf;
		MTM_TRY(open_parent(c, e->path, &dfd, &leaf));
		struct stat st;
		int rc = fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) ? errno : 0;
		unsigned char *x = NULL;
		size_t xlen = 0;
		if (!rc && !meta_differs(e, &st))
			rc = xattr_read_at(dfd, leaf, &x, &xlen);
		if (!rc && (meta_differs(e, &st) || xattrs_differ(e, x, xlen)))
			rc = set_meta_at(c, dfd, leaf, e);
		free(x);
		close(dfd);
		if (rc)
			return mtm_set_errno(rc, "%s: setting metadata", e->path);
	}
	return 0;
}

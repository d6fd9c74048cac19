/*
 * mountfs.c — a read-only FUSE 3 view of the store.
 *
 * With an id, the mount point is that checkpoint's tree. Without one, it
 * holds a directory per checkpoint (named by its id), a symlink per tag
 * ("baseline" -> "3") and "head" -> the head's id, as borg and restic mount.
 * The list of checkpoints is read when the root is listed or looked up, so
 * checkpoints made while mounted appear.
 *
 * Every kind of entry a checkpoint holds is shown as restore makes it: FIFOs,
 * sockets and device nodes (the mount is nodev: a device node cannot be
 * opened through it), a hard-linked file's names with its link count,
 * extended attributes through getxattr/listxattr (ACLs and capabilities
 * among them), modes, owners and times.
 *
 * Every request runs on one thread (fuse_loop, not fuse_loop_mt): a store
 * handle is used by one thread at a time. Reads go through mtm_file_pread,
 * which checks each block against its hash: a damaged chunk is EIO, never
 * wrong bytes. Nothing is written anywhere: the mount is "ro" and every
 * open for writing is EROFS.
 */
#define FUSE_USE_VERSION 31
#include <dlfcn.h>
#include <errno.h>
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli/cli.h"
#include "cli/mountfs.h"

/* libfuse3 is loaded when a mount starts, not linked into the CLI: every
 * other command paid for loading it at its start, ~40 page faults and
 * ~1.5 ms of CPU on the 2-CPU VM of BENCHMARKS-ARCHIVE.md T41 (a
 * `metamori checkpoint` that a running session answers takes ~25 ms in
 * all there). Its functions are taken at the versions the header names. */
static struct {
	struct fuse_context *(*get_context)(void);
	struct fuse *(*new_fs)(struct fuse_args *, const struct fuse_operations *, size_t, void *);
	int (*mount)(struct fuse *, const char *);
	int (*daemonize)(int);
	void (*unmount)(struct fuse *);
	void (*destroy)(struct fuse *);
	struct fuse_session *(*get_session)(struct fuse *);
	int (*set_signal_handlers)(struct fuse_session *);
	void (*remove_signal_handlers)(struct fuse_session *);
	int (*loop)(struct fuse *);
} fz;

/* name at version, else its default version (a libfuse3 built without
 * versioned symbols), else plain (fuse_new's own name in such a build) */
static void *fuse_sym(void *h, const char *name, const char *version, const char *plain)
{
	void *p = dlvsym(h, name, version);
	if (!p)
		p = dlsym(h, name);
	if (!p && plain)
		p = dlsym(h, plain);
	return p;
}

static int load_fuse(void)
{
	void *h = dlopen("libfuse3.so.3", RTLD_NOW | RTLD_LOCAL); /* (kept: the process serves the mount) */
	if (!h)
		return cli_error("mount", "could not load libfuse3.so.3 (is FUSE 3 installed?)");
	struct { void **slot; const char *name, *version, *plain; } want[] = {
		{(void **)&fz.get_context, "fuse_get_context", "FUSE_3.0", NULL},
		{(void **)&fz.new_fs, "fuse_new", "FUSE_3.1", "fuse_new_31"},
		{(void **)&fz.mount, "fuse_mount", "FUSE_3.0", NULL},
		{(void **)&fz.daemonize, "fuse_daemonize", "FUSE_3.0", NULL},
		{(void **)&fz.unmount, "fuse_unmount", "FUSE_3.0", NULL},
		{(void **)&fz.destroy, "fuse_destroy", "FUSE_3.0", NULL},
		{(void **)&fz.get_session, "fuse_get_session", "FUSE_3.0", NULL},
		{(void **)&fz.set_signal_handlers, "fuse_set_signal_handlers", "FUSE_3.0", NULL},
		{(void **)&fz.remove_signal_handlers, "fuse_remove_signal_handlers", "FUSE_3.0", NULL},
		{(void **)&fz.loop, "fuse_loop", "FUSE_3.0", NULL},
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		if (!(*want[i].slot = fuse_sym(h, want[i].name, want[i].version, want[i].plain))) {
			char why[128];
			snprintf(why, sizeof why, "libfuse3.so.3 has no %s", want[i].name);
			return cli_error("mount", why);
		}
	return 0;
}

typedef struct {
	mtm_store *s;
	mtm_id id; /* 0: every checkpoint */
	uid_t uid;
	gid_t gid;
	int64_t mounted_ns; /* time of the synthetic directories */
} fs_state;

static fs_state *state(void) { return fz.get_context()->private_data; }

/* The library's codes as errno for the kernel. */
static int to_errno(int rc)
{
	if (rc > 0)
		return -rc;
	switch (rc) {
	case MTM_ENOCKPT: return -ENOENT;
	case MTM_EINVAL: return -EINVAL;
	case MTM_EBUSY: return -EBUSY;
	default: return -EIO; /* MTM_ECORRUPT, MTM_EINDEX, ...: the bytes cannot be given */
	}
}

/* Splits a mount path into (checkpoint, path inside it). Returns 0, or 1 for
 * the root of an all-checkpoints mount (*name then holds the first
 * component, or "" for the root itself). */
static int split(fs_state *fs, const char *path, mtm_id *id, const char **rest, char *name, size_t cap)
{
	while (*path == '/')
		path++;
	if (fs->id) {
		*id = fs->id;
		*rest = path;
		return 0;
	}
	const char *slash = strchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : strlen(path);
	if (n >= cap)
		n = cap - 1;
	memcpy(name, path, n);
	name[n] = 0;
	if (!*path)
		return 1;
	char *end;
	long long v = strtoll(name, &end, 10);
	if (*end || v <= 0 || name[0] < '1' || name[0] > '9') /* one name a checkpoint: no blanks, sign, zeros */
		return 1; /* a tag or "head": a symlink at the top */
	*id = v;
	*rest = slash ? slash + 1 : "";
	return 0;
}

static void fill_synthetic_dir(fs_state *fs, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_mode = S_IFDIR | 0555;
	st->st_nlink = 2;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_mtim.tv_sec = fs->mounted_ns / 1000000000;
	st->st_mtim.tv_nsec = fs->mounted_ns % 1000000000;
	st->st_atim = st->st_ctim = st->st_mtim;
}

/* The file type of a kind (mtm_entry_info.kind); 0 for one this mount
 * does not know (a newer store's): left out of listings. */
static mode_t kind_type(char kind)
{
	switch (kind) {
	case 'f': return S_IFREG;
	case 'd': return S_IFDIR;
	case 'l': return S_IFLNK;
	case 'p': return S_IFIFO;
	case 's': return S_IFSOCK;
	case 'c': return S_IFCHR;
	case 'b': return S_IFBLK;
	default: return 0;
	}
}

static void fill_entry(const mtm_entry_info *e, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_mode = kind_type(e->kind) | (e->mode & 07777);
	if (e->kind == 'l')
		st->st_mode = S_IFLNK | 0777;
	/* (a directory's count of subdirectories is not recorded: 2, as many
	 * file systems without it say) */
	st->st_nlink = e->kind == 'd' ? 2 : e->nlink;
	st->st_rdev = (dev_t)e->rdev;
	st->st_uid = e->uid;
	st->st_gid = e->gid;
	st->st_size = (off_t)e->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((e->size + 511) / 512);
	st->st_mtim.tv_sec = e->mtime_ns / 1000000000;
	st->st_mtim.tv_nsec = e->mtime_ns % 1000000000;
	st->st_atim = st->st_ctim = st->st_mtim;
}

/* What a top-level name (all-checkpoints mount) links to: "head" or a tag. */
static int top_link(fs_state *fs, const char *name, mtm_id *out)
{
	if (cli_is_decimal(name, 0))
		return -ENOENT; /* "01": a number that is not its checkpoint's one name (no tag is a number) */
	int rc = mtm_resolve(fs->s, name, out);
	if (rc)
		return rc == MTM_ENOCKPT || rc == MTM_EINVAL ? -ENOENT : to_errno(rc);
	return *out ? 0 : -ENOENT; /* no head yet */
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	fs_state *fs = state();
	mtm_id id;
	const char *rest;
	char name[256];
	if (split(fs, path, &id, &rest, name, sizeof name)) {
		if (!*name) {
			fill_synthetic_dir(fs, st);
			return 0;
		}
		mtm_id to;
		int err = top_link(fs, name, &to);
		if (err)
			return err;
		fill_synthetic_dir(fs, st);
		char text[32];
		st->st_mode = S_IFLNK | 0777;
		st->st_nlink = 1;
		st->st_size = snprintf(text, sizeof text, "%lld", (long long)to);
		return 0;
	}
	mtm_entry_info e;
	int rc = mtm_stat(fs->s, id, rest, &e);
	if (rc)
		return to_errno(rc);
	if (!kind_type(e.kind)) {
		mtm_entry_info_clear(&e);
		return -ENOENT;
	}
	if (!*rest) { /* a checkpoint's root is not recorded: it is the directory */
		fill_synthetic_dir(fs, st);
	} else {
		fill_entry(&e, st);
	}
	mtm_entry_info_clear(&e);
	return 0;
}

static int fs_readlink(const char *path, char *buf, size_t size)
{
	fs_state *fs = state();
	mtm_id id;
	const char *rest;
	char name[256];
	if (!size)
		return -EINVAL;
	if (split(fs, path, &id, &rest, name, sizeof name)) {
		mtm_id to;
		int err = *name ? top_link(fs, name, &to) : -EINVAL;
		if (err)
			return err;
		snprintf(buf, size, "%lld", (long long)to);
		return 0;
	}
	mtm_entry_info e;
	int rc = mtm_stat(fs->s, id, rest, &e);
	if (rc)
		return to_errno(rc);
	int err = e.kind == 'l' && e.target ? 0 : -EINVAL;
	if (!err)
		snprintf(buf, size, "%s", e.target); /* truncated to size, as readlink(2) */
	mtm_entry_info_clear(&e);
	return err;
}

static int list_top(fs_state *fs, void *buf, fuse_fill_dir_t filler)
{
	mtm_checkpoint_info *v;
	size_t n;
	int rc = mtm_log(fs->s, &v, &n);
	if (rc)
		return to_errno(rc);
	for (size_t i = 0; i < n; i++) {
		char name[32];
		snprintf(name, sizeof name, "%lld", (long long)v[i].id);
		filler(buf, name, NULL, 0, 0);
	}
	mtm_log_free(v, n);
	mtm_id head;
	if (!mtm_head(fs->s, &head) && head)
		filler(buf, "head", NULL, 0, 0);
	mtm_tag_info *t;
	if (!mtm_tags(fs->s, &t, &n)) {
		for (size_t i = 0; i < n; i++)
			filler(buf, t[i].name, NULL, 0, 0);
		mtm_tags_free(t, n);
	}
	return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags)
{
	fs_state *fs = state();
	mtm_id id;
	const char *rest;
	char name[256];
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	if (split(fs, path, &id, &rest, name, sizeof name))
		return *name ? -ENOTDIR : list_top(fs, buf, filler);
	mtm_entry_info *v;
	size_t n;
	int rc = mtm_ls(fs->s, id, rest, &v, &n);
	if (rc)
		return to_errno(rc);
	for (size_t i = 0; i < n; i++)
		if (kind_type(v[i].kind))
			filler(buf, v[i].name, NULL, 0, 0);
	mtm_ls_free(v, n);
	return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		return -EROFS;
	fs_state *fs = state();
	mtm_id id;
	const char *rest;
	char name[256];
	if (split(fs, path, &id, &rest, name, sizeof name))
		return -EISDIR;
	mtm_file *f;
	int rc = mtm_file_open(&f, fs->s, id, rest);
	if (rc)
		return to_errno(rc);
	fi->fh = (uint64_t)(uintptr_t)f;
	fi->keep_cache = 1; /* a checkpoint never changes */
	return 0;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	mtm_file *f = (mtm_file *)(uintptr_t)fi->fh;
	size_t got = 0;
	if (off < 0)
		return -EINVAL;
	int rc = mtm_file_pread(f, buf, size, (uint64_t)off, &got);
	return rc ? to_errno(rc) : (int)got;
}

static int fs_release(const char *path, struct fuse_file_info *fi)
{
	mtm_file_close((mtm_file *)(uintptr_t)fi->fh);
	return 0;
}

/* The recorded extended attributes of path: 1 and *e (clear it), 0 for a
 * synthetic name (none), or -errno. */
static int entry_of(const char *path, mtm_entry_info *e)
{
	fs_state *fs = state();
	mtm_id id;
	const char *rest;
	char name[256];
	if (split(fs, path, &id, &rest, name, sizeof name) || !*rest)
		return 0;
	int rc = mtm_stat(fs->s, id, rest, e);
	return rc ? to_errno(rc) : 1;
}

/* listxattr(2): the names, each ended by NUL; size 0 asks for the length. */
static int fs_listxattr(const char *path, char *list, size_t size)
{
	mtm_entry_info e;
	int got = entry_of(path, &e);
	if (got <= 0)
		return got;
	size_t need = 0;
	for (size_t i = 0; i < e.n_xattrs; i++)
		need += strlen(e.xattrs[i].name) + 1;
	int rc = (int)need;
	if (size && need > size) {
		rc = -ERANGE;
	} else if (size) {
		for (size_t i = 0, o = 0; i < e.n_xattrs; i++) {
			size_t n = strlen(e.xattrs[i].name) + 1;
			memcpy(list + o, e.xattrs[i].name, n);
			o += n;
		}
	}
	mtm_entry_info_clear(&e);
	return rc;
}

static int fs_getxattr(const char *path, const char *name, char *value, size_t size)
{
	mtm_entry_info e;
	int got = entry_of(path, &e);
	if (got <= 0)
		return got ? got : -ENODATA;
	int rc = -ENODATA;
	for (size_t i = 0; i < e.n_xattrs; i++) {
		if (strcmp(e.xattrs[i].name, name))
			continue;
		size_t len = e.xattrs[i].len;
		if (size && len > size) {
			rc = -ERANGE;
		} else {
			if (size)
				memcpy(value, e.xattrs[i].value, len);
			rc = (int)len;
		}
		break;
	}
	mtm_entry_info_clear(&e);
	return rc;
}

static const struct fuse_operations ops = {
	.getattr = fs_getattr,
	.readlink = fs_readlink,
	.readdir = fs_readdir,
	.open = fs_open,
	.read = fs_read,
	.release = fs_release,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
};

int mountfs_run(const mountfs_opts *o)
{
	if (load_fuse())
		return 1;
	static fs_state fs;
	fs.id = o->id;
	fs.uid = getuid();
	fs.gid = getgid();
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	fs.mounted_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	char *args[] = {"metamori", "-o", "ro,default_permissions,fsname=metamori,subtype=metamori", NULL};
	struct fuse_args fa = FUSE_ARGS_INIT(3, args);
	struct fuse *f = fz.new_fs(&fa, &ops, sizeof ops, &fs);
	if (!f)
		return cli_error("mount", "could not start FUSE");
	if (fz.mount(f, o->mountpoint)) {
		fz.destroy(f);
		return cli_error(o->mountpoint, "could not mount (is /dev/fuse there, and fusermount3 installed?)");
	}
	/* the store is opened after the fork (a handle is not shared across
	 * fork), and the parent returns once the child is serving */
	if (!o->foreground && fz.daemonize(0)) {
		fz.unmount(f);
		fz.destroy(f);
		return cli_error("mount", "could not go to the background");
	}
	int rc = mtm_open(&fs.s, o->store_dir);
	if (rc) {
		cli_fail(rc);
		fz.unmount(f);
		fz.destroy(f);
		return 1;
	}
	struct fuse_session *se = fz.get_session(f);
	if (fz.set_signal_handlers(se)) {
		mtm_close(fs.s);
		fz.unmount(f);
		fz.destroy(f);
		return cli_error("mount", "could not set signal handlers");
	}
	rc = fz.loop(f);
	fz.remove_signal_handlers(se);
	fz.unmount(f);
	fz.destroy(f);
	mtm_close(fs.s);
	return rc ? 1 : 0;
}

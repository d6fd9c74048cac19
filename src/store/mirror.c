/*
 * mirror.c — mtm_push: an incremental copy of a store into DIR/.metamori
 * (draining checkpoints to shared storage, SCR/FTI's levels; issue 19).
 *
 * The mirror is itself a store (mtm_open(DIR) reads it; a push from it back
 * into a tree recreates a lost store). What a push copies:
 *  - the index: the rows added since the mirror's last push, in one
 *    transaction on the mirror's index.db (store/mirror_rows.c), committed
 *    last; or, for a new mirror or when prune or gc rewrote history since,
 *    a consistent snapshot through SQLite's backup API, written to
 *    index.db.push and renamed over index.db last;
 *  - of each pack the snapshot names, only the committed bytes the mirror
 *    lacks: packs are append-only below their committed size (FORMAT 5), so
 *    the mirror's copy of a pack is a prefix of the store's. A copy that is
 *    not (longer than the committed size, or its header or last 4 KiB
 *    differ: another store's mirror) is copied again whole. Bytes past the
 *    committed size (a session writing ahead, an interrupted checkpoint's
 *    tail) are never copied: they may still change.
 * Order: packs (each fdatasynced), then the index (commit or rename), then packs no
 * longer named (gc rewrote them) are removed. A push interrupted anywhere
 * leaves the previous mirror's index naming bytes that are all there.
 * A mirror holds a marker file, `mirror`; a push refuses any other store
 * (it would overwrite its history), and holds the mirror's writer lock.
 * A mirror's own first write of history (a checkpoint in it, an in-place
 * restore, a tag: a store recreated from a mirror and worked in) removes
 * the marker (store_unmirror): from then it is a store, and its
 * checkpoints are never overwritten by a push.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/io.h"
#include "store/mirror_rows.h"
#include "store/store.h"
#include "util/error.h"

#define MIRROR_MARK "mirror"
#define PUSH_TMP "index.db.push"
#define COPY_BUF (1u << 20)

typedef struct { int64_t id, size; } pack_row;

typedef struct {
	mtm_store *s;
	const char *dir; /* for messages: DIR/.metamori */
	int mfd;         /* DIR/.metamori */
	pack_row *packs;
	size_t n_packs;
	unsigned char *buf, *cmp;
	mtm_push_stats st;
	uint64_t done, total; /* progress (phase "push"): pack bytes the mirror holds, of the store's */
} push_ctx;

static void push_progress(push_ctx *c)
{
	if (c->s->progress) /* (the callback limits its own redraws) */
		c->s->progress(c->s->progress_arg, "push", c->done < c->total ? c->done : c->total, c->total);
}

/* DIR/.metamori, created as a mirror, or an existing mirror. */
static int open_mirror(push_ctx *c, const char *dir, int *lockfd)
{
	int inside, rc = store_holds_dir(c->s, dir, &inside);
	if (rc)
		return rc;
	if (inside) /* (the mirror would be files the store does not know: damage to verify) */
		return mtm_set_error(MTM_EINVAL, "push: %s: cannot push into the store", dir);
	rc = io_mkdirat(AT_FDCWD, dir, 0700);
	if (rc && rc != EEXIST)
		return mtm_set_errno(rc, "push: %s", dir);
	int dfd;
	if ((rc = io_openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0, &dfd)))
		return mtm_set_errno(rc, "push: %s", dir);
	int created = 0;
	rc = io_mkdirat(dfd, ".metamori", 0700);
	if (!rc)
		created = 1;
	else if (rc != EEXIST) {
		io_close(dfd);
		return mtm_set_errno(rc, "push: %s", c->dir);
	}
	rc = io_openat(dfd, ".metamori", O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, &c->mfd);
	if (!rc && created)
		rc = io_fsync_dirat(dfd, ".");
	io_close(dfd);
	if (rc)
		return mtm_set_errno(rc, "push: %s", c->dir);
	fchmod(c->mfd, 0700);
	int fd;
	if (created) {
		if ((rc = io_mkdirat(c->mfd, "packs", 0700)) ||
		    (rc = io_openat(c->mfd, MIRROR_MARK, O_WRONLY | O_CREAT, 0600, &fd)))
			return mtm_set_errno(rc, "push: %s", c->dir);
		io_close(fd);
		if ((rc = io_fsync(c->mfd)))
			return mtm_set_errno(rc, "push: %s", c->dir);
	} else if (faccessat(c->mfd, MIRROR_MARK, F_OK, AT_SYMLINK_NOFOLLOW)) {
		return mtm_set_error(MTM_EEXIST, "push: %s: a store that is not a mirror (push writes into a new "
		                     "directory or a mirror)", c->dir);
	}
	if ((rc = io_openat(c->mfd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW, 0600, lockfd)))
		return mtm_set_errno(rc, "push: %s/lock", c->dir);
	if (flock(*lockfd, LOCK_EX | LOCK_NB))
		return errno == EWOULDBLOCK ? mtm_set_error(MTM_EBUSY, "push: %s: another command is writing the mirror", c->dir)
		                            : mtm_set_errno(errno, "push: %s/lock", c->dir);
	return 0;
}

int store_unmirror(mtm_store *s)
{
	assert(s->locked);
	if (s->unmirrored) /* (once a handle: a session checkpoints often) */
		return 0;
	if (unlinkat(s->dirfd, MIRROR_MARK, 0)) {
		if (errno != ENOENT)
			return mtm_set_errno(errno, "%s/.metamori/" MIRROR_MARK, s->root);
	} else {
		int rc = io_fsync(s->dirfd); /* (gone before the write it allows) */
		if (rc)
			return mtm_set_errno(rc, "%s/.metamori", s->root);
	}
	s->unmirrored = 1;
	return 0;
}

/* The packs the index db names, and their committed sizes. */
static int read_packs(push_ctx *c, sqlite3 *db)
{
	sqlite3_stmt *st;
	size_t cap = 0;
	int src = sqlite3_prepare_v2(db, "SELECT id, size FROM main.pack ORDER BY id", -1, &st, NULL);
	while (src == SQLITE_OK || src == SQLITE_ROW) {
		if ((src = sqlite3_step(st)) != SQLITE_ROW)
			break;
		if (c->n_packs == cap) {
			cap = cap ? cap * 2 : 64;
			pack_row *p = realloc(c->packs, cap * sizeof *p);
			if (!p) {
				src = SQLITE_NOMEM;
				break;
			}
			c->packs = p;
		}
		c->packs[c->n_packs++] = (pack_row){sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1)};
	}
	sqlite3_finalize(st);
	return src == SQLITE_DONE ? 0 : mtm_set_error(MTM_EINDEX, "push: reading the index copy: %s", sqlite3_errstr(src));
}

/* The index as of now into .metamori/index.db.push (not yet in place), and
 * the packs it names. */
static int snapshot_index(push_ctx *c)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/" PUSH_TMP, c->dir);
	/* an interrupted push's copy (and its journal) is started over */
	static const char *const leftovers[] = {PUSH_TMP "-journal", PUSH_TMP "-wal", PUSH_TMP "-shm", PUSH_TMP};
	int rc = 0;
	for (size_t i = 0; i < sizeof leftovers / sizeof leftovers[0] && (!rc || rc == ENOENT); i++)
		rc = io_unlinkat(c->mfd, leftovers[i], 0);
	if (rc && rc != ENOENT)
		return mtm_set_errno(rc, "push: %s", path);
	sqlite3 *db;
	int src = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                          io_sqlite_vfs());
	if (src != SQLITE_OK) {
		rc = mtm_set_error(MTM_EINDEX, "push: %s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
		sqlite3_close_v2(db);
		return rc;
	}
	sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
	/* one step: a single read transaction on the store's index, so the
	 * copy is one committed state however the store changes meanwhile */
	sqlite3_backup *b = sqlite3_backup_init(db, "main", c->s->db, "main");
	if (!b) {
		rc = mtm_set_error(MTM_EINDEX, "push: %s: %s", path, sqlite3_errmsg(db));
		sqlite3_close_v2(db);
		return rc;
	}
	src = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (src != SQLITE_DONE) {
		rc = mtm_set_error(MTM_EINDEX, "push: copying the index: %s", sqlite3_errstr(src));
		sqlite3_close_v2(db);
		return rc;
	}
	rc = read_packs(c, db);
	struct stat sb;
	if (!rc && !stat(path, &sb))
		c->st.index_bytes = (uint64_t)sb.st_size;
	if (sqlite3_close_v2(db) != SQLITE_OK && !rc)
		rc = mtm_set_error(MTM_EINDEX, "push: %s: closing", path);
	return rc;
}

static int same_bytes(push_ctx *c, int sfd, int dfd, off_t off, size_t len)
{
	size_t a = 0, b = 0;
	if (io_pread(sfd, c->buf, len, off, &a) || io_pread(dfd, c->cmp, len, off, &b))
		return 0;
	return a == len && b == len && !memcmp(c->buf, c->cmp, len);
}

/* Brings the mirror's copy of pack p up to its committed size. */
static int copy_pack(push_ctx *c, const pack_row *p)
{
	char name[64];
	snprintf(name, sizeof name, "packs/%08lld.pack", (long long)p->id);
	int sfd, dfd, rc;
	if ((rc = io_openat(c->s->dirfd, name, O_RDONLY, 0, &sfd)))
		return mtm_set_errno(rc, "push: %s/.metamori/%s", c->s->root, name);
	if ((rc = io_openat(c->mfd, name, O_RDWR | O_CREAT, 0600, &dfd))) {
		io_close(sfd);
		return mtm_set_errno(rc, "push: %s/%s", c->dir, name);
	}
	struct stat sb;
	off_t have = fstat(dfd, &sb) ? 0 : sb.st_size;
	/* a prefix of the store's pack, or copied again whole */
	if (have > p->size || (have > 0 && (!same_bytes(c, sfd, dfd, 0, have < 16 ? (size_t)have : 16) ||
	                                    !same_bytes(c, sfd, dfd, have - (have < 4096 ? have : 4096),
	                                                have < 4096 ? (size_t)have : 4096)))) {
		if ((rc = io_ftruncate(dfd, 0)))
			goto out;
		have = 0;
	}
	if (have < p->size)
		c->st.packs++;
	c->done += (uint64_t)have;
	push_progress(c);
	for (off_t off = have; off < p->size;) {
		size_t want = (size_t)(p->size - off) < COPY_BUF ? (size_t)(p->size - off) : COPY_BUF, got = 0;
		if ((rc = io_pread(sfd, c->buf, want, off, &got)))
			goto out;
		if (got != want) {
			rc = mtm_set_error(MTM_ECORRUPT, "push: %s/.metamori/%s: shorter than its committed size %lld",
			                   c->s->root, name, (long long)p->size);
			goto done;
		}
		if ((rc = io_pwrite(dfd, c->buf, want, off)))
			goto out;
		off += (off_t)want;
		c->st.bytes += want;
		c->done += want;
		push_progress(c);
	}
	if (have < p->size)
		rc = io_fdatasync(dfd);
out:
	if (rc)
		mtm_set_errno(rc, "push: %s/%s", c->dir, name);
done:
	io_close(sfd);
	io_close(dfd);
	return rc;
}

static int named(const push_ctx *c, int64_t id)
{
	for (size_t i = 0; i < c->n_packs; i++)
		if (c->packs[i].id == id)
			return 1;
	return 0;
}

/* After the index moved: packs it no longer names (gc replaced them). */
static int remove_unnamed(push_ctx *c)
{
	int pfd;
	int rc = io_openat(c->mfd, "packs", O_RDONLY | O_DIRECTORY, 0, &pfd);
	if (rc)
		return mtm_set_errno(rc, "push: %s/packs", c->dir);
	DIR *d = fdopendir(pfd);
	if (!d) {
		io_close(pfd);
		return mtm_set_errno(errno, "push: %s/packs", c->dir);
	}
	struct dirent *de;
	int removed = 0, lerr = 0;
	while (!rc && !(lerr = io_readdir(d, &de)) && de) {
		char *end;
		long long id = strtoll(de->d_name, &end, 10);
		if (end == de->d_name || strcmp(end, ".pack") || named(c, id))
			continue;
		if ((rc = io_unlinkat(dirfd(d), de->d_name, 0)))
			mtm_set_errno(rc, "push: %s/packs/%s", c->dir, de->d_name);
		removed++;
		c->st.packs_removed++;
	}
	if (!rc && lerr)
		rc = mtm_set_errno(lerr, "push: %s/packs: listing", c->dir);
	if (!rc && removed)
		rc = io_fsync(dirfd(d));
	closedir(d);
	return rc;
}

int mtm_push(mtm_store *s, const char *dir, mtm_push_stats *out)
{
	if (out)
		memset(out, 0, sizeof *out);
	MTM_NEED(s, "push");
	if (!dir || !*dir)
		return mtm_set_error(MTM_EINVAL, "push: no directory given");
	push_ctx c = {.s = s, .mfd = -1};
	mirror_rows rows = {0};
	char *mdir = NULL;
	int lockfd = -1, rc;
	if (asprintf(&mdir, "%s/.metamori", dir) < 0)
		return mtm_set_error(ENOMEM, "push");
	c.dir = mdir;
	c.buf = malloc(COPY_BUF);
	c.cmp = malloc(4096);
	if (!c.buf || !c.cmp) {
		rc = mtm_set_error(ENOMEM, "push");
		goto out;
	}
	if ((rc = open_mirror(&c, dir, &lockfd)) || (rc = mirror_rows_begin(s, c.mfd, mdir, &rows, &c.st.index_whole)))
		goto out;
	if ((rc = c.st.index_whole ? snapshot_index(&c) : read_packs(&c, rows.db)))
		goto out;
	for (size_t i = 0; i < c.n_packs; i++)
		c.total += (uint64_t)c.packs[i].size;
	for (size_t i = 0; i < c.n_packs && !rc; i++)
		rc = copy_pack(&c, &c.packs[i]);
	if (rc)
		goto out;
	if ((rc = io_fsync_dirat(c.mfd, "packs"))) {
		mtm_set_errno(rc, "push: %s/packs", mdir);
		goto out;
	}
	if (!c.st.index_whole) {
		c.st.index_rows = rows.rows;
		if ((rc = mirror_rows_commit(&rows, mdir)))
			goto out;
	/* a WAL left by someone who opened the mirror belongs to the old index
	 * (mirror_rows_begin folded its commits into index.db) */
	} else if (((rc = io_unlinkat(c.mfd, "index.db-wal", 0)) && rc != ENOENT) ||
	    ((rc = io_unlinkat(c.mfd, "index.db-shm", 0)) && rc != ENOENT) ||
	    (rc = io_renameat(c.mfd, PUSH_TMP, c.mfd, "index.db")) || (rc = io_fsync(c.mfd))) {
		mtm_set_errno(rc, "push: %s/index.db", mdir);
		goto out;
	}
	rc = remove_unnamed(&c);
out:
	mirror_rows_abort(&rows);
	if (rc == 0 && out)
		*out = c.st;
	if (lockfd >= 0)
		io_close(lockfd); /* drops the flock */
	if (c.mfd >= 0)
		io_close(c.mfd);
	free(c.packs);
	free(c.buf);
	free(c.cmp);
	free(mdir);
	return rc;
}

/*
 * open.c — creating, finding, opening and closing a store.
 *
 * Permissions are set explicitly (directories 0700, files 0600), never left
 * to the umask: a store holds copies of every tracked file. A store owned by
 * another user, or writable by group or others, is refused.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "io/io.h"
#include "store/index.h"
#include "store/region.h"
#include "store/store.h"
#include "util/error.h"
#include "util/human.h"
#include "util/log.h"

/* Every checkpoint's parent is older than it (FORMAT.md 3.2), which is what
 * makes every walk up the history end. A damaged or hostile index that
 * breaks it (a checkpoint its own parent, two that are each other's) would
 * make such walks loop: every command refuses the store at open instead. */
static int check_history(mtm_store *s)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "SELECT id, parent FROM checkpoint WHERE parent >= id OR parent < 0 LIMIT 1", -1,
	                            &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	rc = sqlite3_step(st);
	int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0, parent = rc == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return mtm_set_error(MTM_ECORRUPT,
		                     "%s/.metamori/index.db: checkpoint %lld has parent %lld, not an older checkpoint: the "
		                     "history has a cycle (the store is damaged)",
		                     s->root, (long long)id, (long long)parent);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

/* Why nothing can be written in .metamori (an errno: EROFS, EACCES or
 * ENOSPC for a disk too full for SQLite's WAL index, -shm, 32 KiB at
 * first), or 0 if it can. Reading must still work there, and a refused
 * write must name the real cause. */
static int store_unwritable(mtm_store *s)
{
	struct statvfs vfs;
	if (faccessat(s->dirfd, ".", W_OK, AT_EACCESS))
		return errno == EROFS || errno == EACCES || errno == EPERM ? errno : EACCES;
	if (fstatvfs(s->dirfd, &vfs))
		return 0;
	if (vfs.f_flag & ST_RDONLY)
		return EROFS;
	uint64_t avail = (uint64_t)(geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail) * vfs.f_frsize;
	return avail < (256u << 10) ? ENOSPC : 0;
}

/* "file:" URI of path, percent-encoding what a URI gives meaning to. */
static void uri_of(char *out, size_t cap, const char *path, const char *query)
{
	size_t n = (size_t)snprintf(out, cap, "file:");
	for (const unsigned char *p = (const unsigned char *)path; *p && n + 4 < cap; p++) {
		if (*p == '%' || *p == '?' || *p == '#' || *p < 0x21 || *p >= 0x7f)
			n += (size_t)snprintf(out + n, cap - n, "%%%02X", *p);
		else
			out[n++] = (char)*p;
	}
	snprintf(out + n, cap - n, "?%s", query);
}

/* The index opened for reading only. Without a WAL to read, as immutable:
 * SQLite then needs no -shm file and takes no lock (there is nothing to
 * write them to). With one (a writer elsewhere, or one that died), mode=ro
 * reads it through an existing -shm. */
static int open_db_readonly(mtm_store *s, const char *path, int why)
{
	struct stat st;
	int has_wal = !fstatat(s->dirfd, "index.db-wal", &st, AT_SYMLINK_NOFOLLOW) && st.st_size > 0;
	char uri[3 * PATH_MAX + 32];
	uri_of(uri, sizeof uri, path, has_wal ? "mode=ro" : "immutable=1");
	int rc = sqlite3_open_v2(uri, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
	                         io_sqlite_vfs());
	if (rc != SQLITE_OK)
		return db_error(s, rc, path);
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, 10000);
	/* reads the header: a file that is not SQLite fails here, as in open_db */
	int err = db_exec(s, "PRAGMA cache_size=-32768; SELECT count(*) FROM sqlite_master;");
	if (err)
		return mtm_set_error(err == MTM_ECORRUPT ? MTM_EFOREIGN : err, "%s: %s", path,
		                     err == MTM_ECORRUPT ? "not a metamori index (or damaged)" : mtm_last_error());
	s->readonly = why;
	return 0;
}

static int open_db(mtm_store *s, int create)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/.metamori/index.db", s->root);
	int why = create ? 0 : store_unwritable(s);
	if (why)
		return open_db_readonly(s, path, why);
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
	/* the index's file I/O goes through our fault points too (io/sqlite_vfs.c) */
	int rc = sqlite3_open_v2(path, &s->db, flags, io_sqlite_vfs());
	if (rc != SQLITE_OK) {
		if ((rc & 0xff) == SQLITE_CANTOPEN)
			return mtm_set_error(MTM_ECORRUPT, "%s: index is missing or unreadable", path);
		return db_error(s, rc, path);
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, 10000);
	if (create && (rc = io_fchmodat(AT_FDCWD, path, 0600, 0)))
		return mtm_set_errno(rc, "%s", path);
	/* auto_vacuum only takes on an empty file: before journal_mode=WAL
	 * writes the first page (prune's incremental_vacuum needs it) */
	int av = create ? db_exec(s, "PRAGMA auto_vacuum=INCREMENTAL") : 0;
	if (av)
		return av;
	/* WAL: one writer, readers alongside. synchronous=FULL: the WAL is
	 * fsynced at every commit, so a returned commit is durable. */
	int err = db_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-32768;");
	if (err) {
		/* a file that is not SQLite at all fails here */
		return mtm_set_error(err == MTM_ECORRUPT ? MTM_EFOREIGN : err, "%s: %s", path,
		                     err == MTM_ECORRUPT ? "not a metamori index (or damaged)" : mtm_last_error());
	}
	/* the WAL is open now (the pragma read the header): its writes can be
	 * gathered in the VFS shim, made before index.db's locks change */
	io_sqlite_link(s->db);
	/* pages read where they lie in the page cache (a process that chose
	 * mapped reads: mtm_set_mapped_reads), not copied into SQLite's cache */
	const char *map = io_sqlite_map_pragma();
	if (map && (err = db_exec(s, map)))
		return err;
	return 0;
}

static void store_free(mtm_store *s)
{
	if (!s)
		return;
	index_lookups_free(s);
	regions_free(s);
	if (s->db)
		sqlite3_close_v2(s->db);
	if (s->rootfd >= 0)
		close(s->rootfd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	if (s->lockfd >= 0)
		close(s->lockfd);
	free(s->branches);
	free(s->root);
	free(s);
}

static mtm_store *store_new(const char *root)
{
	mtm_store *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->rootfd = s->dirfd = s->lockfd = -1;
	s->root = strdup(root);
	if (!s->root) {
		free(s);
		return NULL;
	}
	return s;
}

/* Refuses a store another user could tamper with. */
static int check_owner(mtm_store *s)
{
	struct stat st;
	if (fstat(s->dirfd, &st))
		return mtm_set_errno(errno, "%s/.metamori", s->root);
	if (st.st_uid != geteuid())
		return mtm_set_error(MTM_EPERM, "%s/.metamori: store is owned by uid %u, not by you", s->root,
		                     (unsigned)st.st_uid);
	if (st.st_mode & 022)
		return mtm_set_error(MTM_EPERM, "%s/.metamori: store is writable by group or others (mode %03o)",
		                     s->root, (unsigned)(st.st_mode & 0777));
	return 0;
}

/* --- a store whose creation was killed ---
 * mtm_init makes .metamori, packs/, the lock and the index, and commits the
 * schema in one transaction (schema_create). Killed before that commit, it
 * leaves a store with no index, or an index with no table and no
 * application id, and no pack: nothing in it can be lost, and it counts as
 * no store (MTM_ENOSTORE); mtm_init makes it afresh. A store with a pack is
 * never taken for one, whatever its index. */

#define UNFINISHED_MESSAGE "%s/.metamori: the store's creation did not finish (run 'metamori init')"

/* 1 if .metamori/packs is missing or empty. */
static int packs_empty(mtm_store *s)
{
	DIR *d;
	int rc = io_opendirat(s->dirfd, "packs", &d);
	if (rc)
		return rc == ENOENT;
	int empty = 1;
	struct dirent *de;
	while (empty && !(rc = io_readdir(d, &de)) && de)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			empty = 0;
	closedir(d);
	return empty && !rc; /* (a listing cut short: perhaps a pack) */
}

/* 1 if s's index (open, or missing: s->db NULL) is what a killed mtm_init
 * leaves: no table and no application id; and there is no pack. */
static int store_unfinished(mtm_store *s)
{
	if (s->db) {
		/* (sqlite3 directly: the caller's error line stays) */
		sqlite3_stmt *st;
		int empty = 0;
		if (sqlite3_prepare_v2(s->db, "SELECT (SELECT application_id FROM pragma_application_id) = 0"
		                              " AND (SELECT count(*) FROM sqlite_master) = 0", -1, &st, NULL) == SQLITE_OK &&
		    sqlite3_step(st) == SQLITE_ROW)
			empty = sqlite3_column_int(st, 0) == 1;
		sqlite3_finalize(st);
		if (!empty)
			return 0;
	} else {
		struct stat st;
		if (!fstatat(s->dirfd, "index.db", &st, AT_SYMLINK_NOFOLLOW))
			return 0;
	}
	return packs_empty(s);
}

/* mtm_init on an existing .metamori: 0 (with s->dirfd and the lock, held)
 * if it is an unfinished store, now emptied of its index; else
 * MTM_EEXIST. The lock makes sure no mtm_init is still making it. */
static int reclaim_unfinished(mtm_store *s)
{
	int rc = io_openat(s->rootfd, ".metamori", O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, &s->dirfd);
	if (!rc && !check_owner(s) &&
	    !(rc = io_openat(s->dirfd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW, 0600, &s->lockfd)) &&
	    !flock(s->lockfd, LOCK_EX | LOCK_NB)) {
		struct stat st;
		int has_index = !fstatat(s->dirfd, "index.db", &st, AT_SYMLINK_NOFOLLOW);
		int unfinished = (!has_index || !open_db(s, 0)) && store_unfinished(s);
		if (s->db) {
			index_lookups_free(s);
			sqlite3_close_v2(s->db);
			s->db = NULL;
		}
		if (unfinished) {
			const char *leftovers[] = {"index.db", "index.db-wal", "index.db-shm"};
			for (size_t i = 0; i < sizeof leftovers / sizeof leftovers[0]; i++)
				if ((rc = io_unlinkat(s->dirfd, leftovers[i], 0)) && rc != ENOENT)
					return mtm_set_errno(rc, "%s/.metamori/%s", s->root, leftovers[i]);
			return 0;
		}
	}
	return mtm_set_error(MTM_EEXIST, "%s/.metamori: a store already exists", s->root);
}

/* MTM_EINVAL if root (a real path) is a store's directory or under one: a
 * store made there would be files that store does not know (damage to
 * verify), and its tree left out of every checkpoint. */
static int refuse_inside_a_store(const char *root)
{
	for (const char *p = strstr(root, "/.metamori"); p; p = strstr(p + 1, "/.metamori")) {
		if (p[10] != '/' && p[10])
			continue;
		char index[PATH_MAX];
		struct stat st;
		if (snprintf(index, sizeof index, "%.*s/index.db", (int)(p + 10 - root), root) < (int)sizeof index &&
		    !lstat(index, &st))
			return mtm_set_error(MTM_EINVAL, "%s: inside the store %.*s", root, (int)(p + 10 - root), root);
	}
	return 0;
}

int mtm_init(mtm_store **out, const char *dir)
{
	char root[PATH_MAX];
	MTM_NEED(out, "init");
	*out = NULL;
	if (!realpath(dir ? dir : ".", root))
		return mtm_set_errno(errno, "%s", dir ? dir : ".");
	MTM_TRY(refuse_inside_a_store(root));
	struct stat st;
	if (stat(root, &st) || !S_ISDIR(st.st_mode))
		return mtm_set_error(ENOTDIR, "%s: not a directory", root);
	mtm_store *s = store_new(root);
	if (!s)
		return mtm_set_error(ENOMEM, "init");
	int rc;
	if ((rc = io_openat(AT_FDCWD, root, O_RDONLY | O_DIRECTORY, 0, &s->rootfd)))
		goto fail_errno;
	rc = io_mkdirat(s->rootfd, ".metamori", 0700);
	int reclaimed = rc == EEXIST;
	if (reclaimed && (rc = reclaim_unfinished(s)))
		goto fail;
	if (!reclaimed && (rc || (rc = io_openat(s->rootfd, ".metamori", O_RDONLY | O_DIRECTORY, 0, &s->dirfd))))
		goto fail_errno;
	if ((rc = io_fchmod(s->dirfd, 0700)) || ((rc = io_mkdirat(s->dirfd, "packs", 0700)) && !(reclaimed && rc == EEXIST)))
		goto fail_errno;
	/* held until the schema is committed: a second mtm_init meanwhile does
	 * not take this store for an unfinished one */
	if (!reclaimed) {
		if ((rc = io_openat(s->dirfd, "lock", O_RDWR | O_CREAT | O_EXCL, 0600, &s->lockfd)))
			goto fail_errno;
		if (flock(s->lockfd, LOCK_EX | LOCK_NB)) {
			mtm_set_error(MTM_EEXIST, "%s/.metamori: a store already exists", root);
			rc = MTM_EEXIST;
			goto fail;
		}
	}
	if ((rc = io_fchmod(s->lockfd, 0600)))
		goto fail_errno;
	if ((rc = open_db(s, 1)) || (rc = schema_create(s)))
		goto fail;
	if ((rc = io_fsync(s->dirfd)) || (rc = io_fsync_dirat(s->rootfd, ".")))
		goto fail_errno;
	flock(s->lockfd, LOCK_UN); /* a new store is not being written */
	*out = s;
	return 0;
fail_errno:
	mtm_set_errno(rc, "%s/.metamori", root);
fail:
	store_free(s);
	return rc;
}

/* (walked up by ".." to the root, comparing each directory with the
 * store's, so that any name of it counts) */
int store_holds_dir(const mtm_store *s, const char *to, int *inside)
{
	struct stat st, store_st;
	*inside = 0;
	if (fstat(s->dirfd, &store_st))
		return mtm_set_errno(errno, "restore");
	int fd = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		char *parent = strdup(to), *end = parent ? parent + strlen(parent) : NULL;
		if (!parent)
			return mtm_set_error(ENOMEM, "restore");
		while (end > parent + 1 && end[-1] == '/') /* "a/b/": the parent of b */
			*--end = 0;
		char *slash = strrchr(parent, '/');
		if (slash)
			slash[slash == parent] = 0;
		fd = open(slash ? parent : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		free(parent);
	}
	if (fd < 0)
		return 0; /* not a directory there: mkdir or open will say why */
	for (;;) {
		if (fstat(fd, &st))
			break;
		if (st.st_dev == store_st.st_dev && st.st_ino == store_st.st_ino) {
			*inside = 1;
			break;
		}
		int up = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		struct stat ust;
		int top = up < 0 || fstat(up, &ust) || (ust.st_dev == st.st_dev && ust.st_ino == st.st_ino);
		close(fd);
		fd = up;
		if (top)
			break;
	}
	if (fd >= 0)
		close(fd);
	return 0;
}

/* The store's directories, found from path upwards, without its index. */
int store_open_dirs(mtm_store **out, const char *path)
{
	char dir[PATH_MAX];
	*out = NULL;
	if (!realpath(path ? path : ".", dir))
		return mtm_set_errno(errno, "%s", path ? path : ".");
	/* walk up to the first directory that holds .metamori */
	for (;;) {
		char probe[PATH_MAX + 16];
		struct stat st;
		snprintf(probe, sizeof probe, "%s/.metamori", strcmp(dir, "/") ? dir : "");
		if (lstat(probe, &st) == 0 && S_ISDIR(st.st_mode))
			break;
		char *slash = strrchr(dir, '/');
		if (!slash || slash == dir) {
			if (strcmp(dir, "/") == 0 || !slash)
				return mtm_set_error(MTM_ENOSTORE, "%s: no metamori store here or in any parent "
				                     "(run 'metamori init')", path ? path : ".");
			dir[1] = 0;
			continue;
		}
		*slash = 0;
	}
	mtm_store *s = store_new(dir);
	if (!s)
		return mtm_set_error(ENOMEM, "open");
	int rc;
	if ((rc = io_openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0, &s->rootfd)) ||
	    (rc = io_openat(s->rootfd, ".metamori", O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, &s->dirfd))) {
		mtm_set_errno(rc, "%s/.metamori", dir);
		goto fail;
	}
	if ((rc = check_owner(s)))
		goto fail;
	struct stat st;
	if (fstatat(s->dirfd, "index.db", &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode)) {
		/* (store_unfinished: no index at all, and no pack) */
		if (store_unfinished(s))
			rc = mtm_set_error(MTM_ENOSTORE, UNFINISHED_MESSAGE, dir);
		else
			rc = mtm_set_error(MTM_ECORRUPT, "%s/.metamori/index.db: index is missing", dir);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	store_free(s);
	return rc;
}

int mtm_open(mtm_store **out, const char *path)
{
	mtm_store *s;
	MTM_NEED(out, "open");
	int64_t t0 = now_ns();
	int rc = store_open_dirs(&s, path);
	*out = NULL;
	if (rc)
		return rc;
	if ((rc = open_db(s, 0)) || (rc = schema_check(s)) || (rc = store_load_branches(s)) || (rc = check_history(s))) {
		if (rc == MTM_EFOREIGN && store_unfinished(s))
			rc = mtm_set_error(MTM_ENOSTORE, UNFINISHED_MESSAGE, s->root);
		goto fail;
	}
	/* An interrupted in-place restore (an intent) is not finished here:
	 * opening a store never changes the tree. The user finishes or abandons
	 * it (mtm_restore_continue, mtm_restore_abort); until then every command
	 * works on the tree as it is (mtm_restore_pending says so). */
	*out = s;
	if (secure_getenv("METAMORI_DEBUG_CHECKPOINT"))
		log_msg(MTM_LOG_DEBUG, "open: %.1f ms", (now_ns() - t0) / 1e6);
	return 0;
fail:
	store_free(s);
	return rc;
}

/* A store opened by store_open_dirs (or mtm_open) is closed the same way. */
void mtm_close(mtm_store *s)
{
	int64_t t0 = now_ns();
	if (s && s->db && !s->wal_kept_by_session && !s->readonly)
		/* fold the WAL back into the database when we are the last user */
		sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	int64_t t1 = now_ns();
	store_free(s);
	if (secure_getenv("METAMORI_DEBUG_CHECKPOINT"))
		log_msg(MTM_LOG_DEBUG, "close: fold %.1f ms, close %.1f ms", (t1 - t0) / 1e6, (now_ns() - t1) / 1e6);
}

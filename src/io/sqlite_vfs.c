/*
 * sqlite_vfs.c — the index's I/O through the same fault points as ours.
 *
 * A shim VFS named "metamori" wraps SQLite's default unix VFS. Reads, writes,
 * truncates, syncs, opens and deletes of index.db and its WAL consult
 * io_fault() first, so crash and fault tests cover the index commit itself,
 * not only the packs; with METAMORI_IO_TRACE the writes and syncs are traced
 * too (for the power-loss simulation). Everything else passes through.
 *
 * The WAL of a connection that asks for it (io_sqlite_buffer_wal: the
 * store's, synchronous=FULL) is written in large pieces: SQLite writes each
 * frame as two calls (its 24-byte header, then the page), so a W2 tracked
 * checkpoint's commit of ~350 pages was ~700 pwrite calls (1.3-2 ms here,
 * against 0.2 ms for the same bytes in 128 KiB pieces). The contiguous
 * frames gather in a buffer that reaches the file before anything that
 * could look at it: a sync (with synchronous=FULL every commit syncs its
 * WAL before the wal-index names its frames, so no other connection reads
 * a frame still held here), a read, a size, a truncate, a file control,
 * the close, a write elsewhere in the file; and, should a commit ever come
 * without a sync, the wal-index header's update (the database file's shm
 * barrier). Nothing is durable that was not before: only a sync makes it
 * so, and what a sync covers has reached the file first. A process killed
 * with frames held loses them, as it loses an uncommitted transaction.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include "io/io.h"

enum { WAL_BUF = 128 << 10 };

typedef struct shim_file shim_file;
struct shim_file {
	sqlite3_file base;
	const char *name;     /* owned by SQLite, valid while open */
	sqlite3_file *real;   /* the wrapped file, placed right after this struct */
	int dirsync;          /* the unix VFS fsyncs the directory at the first sync */
	/* a database file: */
	int buffer_wal;       /* its WAL may be buffered (io_sqlite_buffer_wal) */
	shim_file *wal;       /* its WAL, while open */
	/* a WAL file: */
	shim_file *db;        /* its database file */
	unsigned char *buf;   /* frames not yet written: len bytes for offset at */
	size_t len;
	sqlite3_int64 at;
	int werr;             /* a write of held frames failed (in the shm barrier): said at the next call */
};

static sqlite3_vfs *real_vfs;

static int fault_rc(int err, int ioerr)
{
	return err == ENOSPC || err == EDQUOT ? SQLITE_FULL : ioerr;
}

/* The frames held reach the file (traced as written there). */
static int flush_wal(shim_file *p)
{
	if (p->werr) {
		int rc = p->werr;
		p->werr = 0;
		return rc;
	}
	if (!p->len)
		return SQLITE_OK;
	int rc = p->real->pMethods->xWrite(p->real, p->buf, (int)p->len, p->at);
	if (rc == SQLITE_OK)
		io_trace_write(p->name, p->buf, p->len, p->at);
	p->len = 0; /* (after a failure: SQLite writes the transaction's frames again, or rolls it back) */
	return rc;
}

/* Whether a write to p is held: a WAL of a connection that asked, a piece
 * that continues the held ones (or the first) and fits. */
static int hold_write(shim_file *p, const void *buf, int n, sqlite3_int64 off, int *rc)
{
	*rc = SQLITE_OK;
	if (!p->db || !p->db->buffer_wal || n <= 0 || (size_t)n > WAL_BUF)
		return 0;
	if (p->len && (off != p->at + (sqlite3_int64)p->len || p->len + (size_t)n > WAL_BUF) &&
	    (*rc = flush_wal(p)) != SQLITE_OK)
		return 1;
	if (!p->buf && !(p->buf = malloc(WAL_BUF)))
		return 0; /* (written as it comes) */
	if (!p->len)
		p->at = off;
	memcpy(p->buf + p->len, buf, (size_t)n);
	p->len += (size_t)n;
	return 1;
}

static int x_close(sqlite3_file *f)
{
	shim_file *p = (shim_file *)f;
	int frc = flush_wal(p);
	if (p->db)
		p->db->wal = NULL;
	if (p->wal)
		p->wal->db = NULL;
	free(p->buf);
	p->buf = NULL;
	int rc = p->real->pMethods->xClose(p->real);
	return rc == SQLITE_OK ? frc : rc;
}
static int x_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	shim_file *p = (shim_file *)f;
	int frc = flush_wal(p);
	if (frc != SQLITE_OK)
		return frc;
	int e = io_fault(IO_READ);
	if (e > 0 && e != EINTR)
		return fault_rc(e, SQLITE_IOERR_READ);
	return p->real->pMethods->xRead(p->real, buf, n, off);
}
static int x_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	shim_file *p = (shim_file *)f;
	int e = io_fault(IO_WRITE), rc;
	if ((e == 0 || e == EINTR) && hold_write(p, buf, n, off, &rc))
		return rc;
	/* the frames held go first, as they came */
	if ((rc = flush_wal(p)) != SQLITE_OK)
		return rc;
	if (e > 0 && e != EINTR)
		return fault_rc(e, SQLITE_IOERR_WRITE);
	if (e == -1 && n > 1) {
		/* an injected short write: half reaches the file, and SQLite hears
		 * what the unix VFS says after a short write (the disk is full) */
		if (p->real->pMethods->xWrite(p->real, buf, n / 2, off) == SQLITE_OK)
			io_trace_write(p->name, buf, (size_t)(n / 2), off);
		return SQLITE_FULL;
	}
	rc = p->real->pMethods->xWrite(p->real, buf, n, off);
	if (rc == SQLITE_OK) /* traced only once it happened */
		io_trace_write(p->name, buf, (size_t)n, off);
	return rc;
}
static int x_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	shim_file *p = (shim_file *)f;
	int frc = flush_wal(p);
	if (frc != SQLITE_OK)
		return frc;
	int e = io_fault(IO_TRUNCATE);
	if (e > 0 && e != EINTR)
		return fault_rc(e, SQLITE_IOERR_TRUNCATE);
	int rc = p->real->pMethods->xTruncate(p->real, size);
	if (rc == SQLITE_OK)
		io_trace_truncate(p->name, size);
	return rc;
}
static int x_sync(sqlite3_file *f, int flags)
{
	shim_file *p = (shim_file *)f;
	int frc = flush_wal(p);
	if (frc != SQLITE_OK)
		return frc;
	int e = io_fault(IO_FSYNC);
	if (e > 0)
		return SQLITE_IOERR_FSYNC;
	int rc = p->real->pMethods->xSync(p->real, flags);
	if (rc == SQLITE_OK && p->name) {
		io_trace_sync(p->name);
		if (p->dirsync) {
			/* SQLite's unix VFS fsyncs the directory at the first sync of a
			 * journal or WAL it created (UNIXFILE_DIRSYNC): the new name is
			 * durable from here on, and the power-loss replay must know it */
			p->dirsync = 0;
			const char *slash = strrchr(p->name, '/');
			if (slash && slash > p->name && (size_t)(slash - p->name) < 4096) {
				char dir[4096];
				memcpy(dir, p->name, (size_t)(slash - p->name));
				dir[slash - p->name] = 0;
				io_trace_sync(dir);
			}
		}
	}
	return rc;
}
static int x_size(sqlite3_file *f, sqlite3_int64 *out)
{
	shim_file *p = (shim_file *)f;
	int frc = flush_wal(p);
	return frc != SQLITE_OK ? frc : p->real->pMethods->xFileSize(p->real, out);
}
static int x_lock(sqlite3_file *f, int l) { shim_file *p = (shim_file *)f; return p->real->pMethods->xLock(p->real, l); }
static int x_unlock(sqlite3_file *f, int l) { shim_file *p = (shim_file *)f; return p->real->pMethods->xUnlock(p->real, l); }
static int x_check(sqlite3_file *f, int *out) { shim_file *p = (shim_file *)f; return p->real->pMethods->xCheckReservedLock(p->real, out); }
static int x_fcntl(sqlite3_file *f, int op, void *arg)
{
	shim_file *p = (shim_file *)f;
	if (op == IO_FCNTL_BUFFER_WAL) {
		p->buffer_wal = 1;
		return SQLITE_OK;
	}
	int frc = flush_wal(p);
	return frc != SQLITE_OK ? frc : p->real->pMethods->xFileControl(p->real, op, arg);
}
static int x_sector(sqlite3_file *f) { shim_file *p = (shim_file *)f; return p->real->pMethods->xSectorSize(p->real); }
static int x_devchar(sqlite3_file *f) { shim_file *p = (shim_file *)f; return p->real->pMethods->xDeviceCharacteristics(p->real); }
static int x_shm_map(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
	shim_file *p = (shim_file *)f;
	return p->real->pMethods->xShmMap(p->real, pg, sz, ext, pp);
}
/* The wal-index header is written around a barrier (and a lock): the
 * frames it may name are in the WAL file by then. (With synchronous=FULL
 * the commit's sync wrote them already.) A failure is said at the WAL's
 * next call. */
static void wal_to_file(shim_file *p)
{
	if (p->wal && p->wal->len) {
		int rc = flush_wal(p->wal);
		if (rc != SQLITE_OK)
			p->wal->werr = rc;
	}
}
static int x_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	shim_file *p = (shim_file *)f;
	wal_to_file(p);
	return p->real->pMethods->xShmLock(p->real, off, n, flags);
}
static void x_shm_barrier(sqlite3_file *f)
{
	shim_file *p = (shim_file *)f;
	wal_to_file(p);
	p->real->pMethods->xShmBarrier(p->real);
}
static int x_shm_unmap(sqlite3_file *f, int del) { shim_file *p = (shim_file *)f; return p->real->pMethods->xShmUnmap(p->real, del); }
static int x_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
	*pp = NULL; /* no memory-mapped reads: every read goes through x_read */
	(void)f; (void)off; (void)n;
	return SQLITE_OK;
}
static int x_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) { (void)f; (void)off; (void)p; return SQLITE_OK; }

static const sqlite3_io_methods shim_methods = {
	3, x_close, x_read, x_write, x_truncate, x_sync, x_size, x_lock, x_unlock, x_check, x_fcntl, x_sector,
	x_devchar, x_shm_map, x_shm_lock, x_shm_barrier, x_shm_unmap, x_fetch, x_unfetch,
};

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
	(void)vfs;
	shim_file *p = (shim_file *)f;
	int e = io_fault(IO_OPEN);
	if (e > 0 && e != EINTR)
		return SQLITE_CANTOPEN;
	memset(p, 0, sizeof *p);
	p->real = (sqlite3_file *)(p + 1);
	p->name = name;
	p->dirsync = (flags & SQLITE_OPEN_CREATE) &&
	             (flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_SUPER_JOURNAL | SQLITE_OPEN_WAL));
	int rc = real_vfs->xOpen(real_vfs, name, p->real, flags, out_flags);
	p->base.pMethods = rc == SQLITE_OK && p->real->pMethods ? &shim_methods : NULL;
	if (p->base.pMethods && name && (flags & SQLITE_OPEN_WAL)) {
		/* the database file it belongs to: opened through this VFS too */
		sqlite3_file *db = sqlite3_database_file_object(name);
		if (db && db->pMethods == &shim_methods) {
			p->db = (shim_file *)db;
			p->db->wal = p;
		}
	}
	if (rc == SQLITE_OK && name && (flags & SQLITE_OPEN_CREATE))
		io_trace_create(name);
	return rc;
}
static int v_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	(void)vfs;
	int e = io_fault(IO_UNLINK);
	if (e > 0 && e != EINTR)
		return SQLITE_IOERR_DELETE;
	int rc = real_vfs->xDelete(real_vfs, name, sync_dir);
	if (rc == SQLITE_OK && name) {
		io_trace_unlink(name);
		const char *slash = strrchr(name, '/');
		if (sync_dir && slash && slash > name && (size_t)(slash - name) < 4096) {
			char dir[4096]; /* the unix VFS fsynced the directory */
			memcpy(dir, name, (size_t)(slash - name));
			dir[slash - name] = 0;
			io_trace_sync(dir);
		}
	}
	return rc;
}
static int v_access(sqlite3_vfs *v, const char *n, int fl, int *out) { (void)v; return real_vfs->xAccess(real_vfs, n, fl, out); }
static int v_full(sqlite3_vfs *v, const char *n, int len, char *out) { (void)v; return real_vfs->xFullPathname(real_vfs, n, len, out); }
static void *v_dlopen(sqlite3_vfs *v, const char *n) { (void)v; return real_vfs->xDlOpen(real_vfs, n); }
static void v_dlerror(sqlite3_vfs *v, int n, char *m) { (void)v; real_vfs->xDlError(real_vfs, n, m); }
static void (*v_dlsym(sqlite3_vfs *v, void *h, const char *s))(void) { (void)v; return real_vfs->xDlSym(real_vfs, h, s); }
static void v_dlclose(sqlite3_vfs *v, void *h) { (void)v; real_vfs->xDlClose(real_vfs, h); }
static int v_random(sqlite3_vfs *v, int n, char *out) { (void)v; return real_vfs->xRandomness(real_vfs, n, out); }
static int v_sleep(sqlite3_vfs *v, int us) { (void)v; return real_vfs->xSleep(real_vfs, us); }
static int v_time(sqlite3_vfs *v, double *out) { (void)v; return real_vfs->xCurrentTime(real_vfs, out); }
static int v_lasterr(sqlite3_vfs *v, int n, char *m) { (void)v; return real_vfs->xGetLastError(real_vfs, n, m); }
static int v_time64(sqlite3_vfs *v, sqlite3_int64 *out) { (void)v; return real_vfs->xCurrentTimeInt64(real_vfs, out); }

static sqlite3_vfs shim_vfs = {
	2, 0, 0, NULL, "metamori", NULL, v_open, v_delete, v_access, v_full, v_dlopen, v_dlerror, v_dlsym,
	v_dlclose, v_random, v_sleep, v_time, v_lasterr, v_time64, NULL, NULL, NULL,
};

static int registered;

static void register_shim(void)
{
	sqlite3_vfs *real = sqlite3_vfs_find(NULL);
	if (!real)
		return;
	real_vfs = real;
	shim_vfs.szOsFile = (int)sizeof(shim_file) + real_vfs->szOsFile;
	shim_vfs.mxPathname = real_vfs->mxPathname;
	registered = sqlite3_vfs_register(&shim_vfs, 0) == SQLITE_OK;
}

/* Registered once per process: separate store handles may open at once
 * (include/metamori.h), and a second registration would race the first. */
const char *io_sqlite_vfs(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, register_shim);
	return registered ? shim_vfs.zName : NULL;
}

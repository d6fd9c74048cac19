/*
 * sqlite_vfs.c — the index's I/O through the same fault points as ours.
 *
 * A shim VFS named "metamori" wraps SQLite's default unix VFS. Reads, writes,
 * truncates, syncs, opens and deletes of index.db and its WAL consult
 * io_fault() first, so crash and fault tests cover the index commit itself,
 * not only the packs; with METAMORI_IO_TRACE the writes and syncs are traced
 * too (for the power-loss simulation). Everything else passes through.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include "io/io.h"

typedef struct {
	sqlite3_file base;
	const char *name;     /* owned by SQLite, valid while open */
	sqlite3_file *real;   /* the wrapped file, placed right after this struct */
	int dirsync;          /* the unix VFS fsyncs the directory at the first sync */
} shim_file;

static sqlite3_vfs *real_vfs;

static int fault_rc(int err, int ioerr)
{
	return err == ENOSPC || err == EDQUOT ? SQLITE_FULL : ioerr;
}

static int x_close(sqlite3_file *f)
{
	shim_file *p = (shim_file *)f;
	return p->real->pMethods->xClose(p->real);
}
static int x_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	shim_file *p = (shim_file *)f;
	int e = io_fault(IO_READ);
	if (e > 0 && e != EINTR)
		return fault_rc(e, SQLITE_IOERR_READ);
	return p->real->pMethods->xRead(p->real, buf, n, off);
}
static int x_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	shim_file *p = (shim_file *)f;
	int e = io_fault(IO_WRITE);
	if (e > 0 && e != EINTR)
		return fault_rc(e, SQLITE_IOERR_WRITE);
	if (e == -1 && n > 1) {
		/* an injected short write: half reaches the file, and SQLite hears
		 * what the unix VFS says after a short write (the disk is full) */
		if (p->real->pMethods->xWrite(p->real, buf, n / 2, off) == SQLITE_OK)
			io_trace_write(p->name, buf, (size_t)(n / 2), off);
		return SQLITE_FULL;
	}
	int rc = p->real->pMethods->xWrite(p->real, buf, n, off);
	if (rc == SQLITE_OK) /* traced only once it happened */
		io_trace_write(p->name, buf, (size_t)n, off);
	return rc;
}
static int x_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	shim_file *p = (shim_file *)f;
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
static int x_size(sqlite3_file *f, sqlite3_int64 *out) { shim_file *p = (shim_file *)f; return p->real->pMethods->xFileSize(p->real, out); }
static int x_lock(sqlite3_file *f, int l) { shim_file *p = (shim_file *)f; return p->real->pMethods->xLock(p->real, l); }
static int x_unlock(sqlite3_file *f, int l) { shim_file *p = (shim_file *)f; return p->real->pMethods->xUnlock(p->real, l); }
static int x_check(sqlite3_file *f, int *out) { shim_file *p = (shim_file *)f; return p->real->pMethods->xCheckReservedLock(p->real, out); }
static int x_fcntl(sqlite3_file *f, int op, void *arg) { shim_file *p = (shim_file *)f; return p->real->pMethods->xFileControl(p->real, op, arg); }
static int x_sector(sqlite3_file *f) { shim_file *p = (shim_file *)f; return p->real->pMethods->xSectorSize(p->real); }
static int x_devchar(sqlite3_file *f) { shim_file *p = (shim_file *)f; return p->real->pMethods->xDeviceCharacteristics(p->real); }
static int x_shm_map(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
	shim_file *p = (shim_file *)f;
	return p->real->pMethods->xShmMap(p->real, pg, sz, ext, pp);
}
static int x_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	shim_file *p = (shim_file *)f;
	return p->real->pMethods->xShmLock(p->real, off, n, flags);
}
static void x_shm_barrier(sqlite3_file *f) { shim_file *p = (shim_file *)f; p->real->pMethods->xShmBarrier(p->real); }
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
	p->real = (sqlite3_file *)(p + 1);
	p->name = name;
	p->dirsync = (flags & SQLITE_OPEN_CREATE) &&
	             (flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_SUPER_JOURNAL | SQLITE_OPEN_WAL));
	int rc = real_vfs->xOpen(real_vfs, name, p->real, flags, out_flags);
	p->base.pMethods = rc == SQLITE_OK && p->real->pMethods ? &shim_methods : NULL;
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

/*
 * sqlite_vfs.c — the index's I/O through the same fault points as ours.
 *
 * A shim VFS named "metamori" wraps SQLite's default unix VFS. Reads, writes,
 * truncates, syncs, opens and deletes of index.db and its WAL consult
 * io_fault() first, so crash and fault tests cover the index commit itself,
 * not only the packs; with METAMORI_IO_TRACE the writes and syncs are traced
 * too (for the power-loss simulation). A sync of a file not written through
 * its handle since that handle's last sync is not done, and writes that
 * follow one another are handed to the kernel together (both below).
 * Everything else passes through.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sqlite3.h>
#include "io/io.h"

typedef struct shim_file shim_file;
struct shim_file {
	sqlite3_file base;
	const char *name;     /* owned by SQLite, valid while open */
	sqlite3_file *real;   /* the wrapped file, placed right after this struct */
	int dirsync;          /* the unix VFS fsyncs the directory at the first sync */
	int dirty;            /* written or truncated through this handle since its last sync (or never synced) */
	int gather;           /* its writes are gathered (below) */
	int lost;             /* a gathered write failed since the last sync or truncate (its error): lost_write */
	int is_wal;
	shim_file *peer;      /* a linked pair: index.db's handle and its connection's WAL (io_sqlite_link) */
	/* Writes gathered, not yet made: [at, at + len) of the file, as n
	 * pieces (their lengths, each a write SQLite made, traced as such) */
	unsigned char *buf;
	sqlite3_int64 at;
	int len, n;
	int piece[128];
};

/* Writes that follow one another are gathered and made as one (issue 21):
 * SQLite writes a WAL frame as two writes (its 24-byte header, then the
 * page), a commit's frames one after the other (453 writes in one run for
 * a 4 x 64 MiB scan checkpoint), and the fold of the WAL into index.db at
 * close the pages in order, often next to each other (226 writes in 53
 * runs); on this kind of VM 900 small writes cost 2.5 ms, one of the same
 * bytes 0.3 ms. The gathered writes are made before anything that could
 * see them: a read of the range, a sync, a truncate, the size, a lock
 * change of the file or of the WAL index (shm), a file control, the close.
 * That is enough because nothing another connection reads from either file
 * is published before a sync of ours: frames become visible when the
 * commit that synced them is, index.db's copies when the checkpoint that
 * synced them is (every connection of ours runs with synchronous=FULL).
 * A crash that loses gathered writes loses writes not synced, which SQLite
 * expects a power cut to lose. A WAL's writes are gathered only once it is
 * linked to its index.db handle (io_sqlite_link): a transaction rolled back
 * after spilling frames releases the WAL's write lock through index.db's
 * handle, and its frames are made before that, not later over another
 * writer's. */
/* (SQLite's unix VFS writes at most 128 KiB at a time: it masks a write's
 * length with 0x1ffff, and takes a longer one for a full disk) */
#define GATHER_BYTES (124 << 10)

static sqlite3_vfs *real_vfs;

static int fault_rc(int err, int ioerr)
{
	return err == ENOSPC || err == EDQUOT ? SQLITE_FULL : ioerr;
}

/* Makes the gathered writes (the unix VFS writes all or says why not: a
 * short write is SQLITE_FULL). Traced piece by piece once made. */
static int flush(shim_file *p)
{
	if (!p->len)
		return SQLITE_OK;
	int rc = p->real->pMethods->xWrite(p->real, p->buf, p->len, p->at);
	if (rc == SQLITE_OK) {
		sqlite3_int64 off = p->at;
		for (int i = 0; i < p->n; i++) {
			io_trace_write(p->name, p->buf + (off - p->at), (size_t)p->piece[i], off);
			off += p->piece[i];
		}
	} else if (!p->lost) {
		p->lost = rc;
	}
	p->len = p->n = 0;
	return rc;
}

/* A gathered write that failed is not made again later (another
 * connection may own those bytes by then: a lock change makes them), but
 * the next sync or truncate of the file says it failed. SQLite ignores what
 * some calls return (the file control that ends a checkpoint, whose flush
 * of the copies into index.db once met a full disk): the checkpoint's
 * truncate and sync that follow succeeded, SQLite took the WAL as copied
 * and deleted it, and the pages were lost (test_full_disk, W2l). Told
 * once: the failed checkpoint (or commit) is done again from its start. */
static int lost_write(shim_file *p)
{
	int rc = p->lost;
	p->lost = 0;
	return rc;
}

/* 1 if the write was gathered (it follows the gathered ones, or starts
 * them), 0 if it is to be made now (after flush). */
static int gathered(shim_file *p, const void *buf, int n, sqlite3_int64 off)
{
	if (!p->gather || n > GATHER_BYTES / 2)
		return 0;
	if (p->len && (off != p->at + p->len || p->len + n > GATHER_BYTES || p->n == (int)(sizeof p->piece / sizeof p->piece[0])))
		return 0;
	if (!p->buf && !(p->buf = malloc(GATHER_BYTES)))
		return 0;
	if (!p->len)
		p->at = off;
	memcpy(p->buf + p->len, buf, (size_t)n);
	p->len += n;
	p->piece[p->n++] = n;
	return 1;
}

/* The writes gathered for both files of a linked pair. */
static int flush_pair(shim_file *p)
{
	int rc = p->peer ? flush(p->peer) : SQLITE_OK;
	return rc != SQLITE_OK ? rc : flush(p);
}

static int x_close(sqlite3_file *f)
{
	shim_file *p = (shim_file *)f;
	int frc = flush(p);
	if (p->peer) {
		p->peer->peer = NULL;
		p->peer = NULL;
	}
	free(p->buf);
	p->buf = NULL;
	int rc = p->real->pMethods->xClose(p->real);
	return frc != SQLITE_OK ? frc : rc;
}
static int x_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	shim_file *p = (shim_file *)f;
	int e = io_fault(IO_READ);
	if (e > 0 && e != EINTR)
		return fault_rc(e, SQLITE_IOERR_READ);
	if (p->len && off < p->at + p->len && off + n > p->at && flush(p) != SQLITE_OK)
		return lost_write(p); /* (told here: SQLite heeds a read's failure) */
	return p->real->pMethods->xRead(p->real, buf, n, off);
}
static int x_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	shim_file *p = (shim_file *)f;
	int e = io_fault(IO_WRITE);
	if (e > 0 && e != EINTR)
		return fault_rc(e, SQLITE_IOERR_WRITE);
	p->dirty = 1;
	if (e != -1 && gathered(p, buf, n, off))
		return SQLITE_OK;
	if (flush(p) != SQLITE_OK)
		return lost_write(p); /* (told here: SQLite heeds a write's failure) */
	if (e != -1 && gathered(p, buf, n, off))
		return SQLITE_OK;
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
	p->dirty = 1;
	flush(p);
	int rc = lost_write(p);
	if (rc != SQLITE_OK)
		return rc;
	rc = p->real->pMethods->xTruncate(p->real, size);
	if (rc == SQLITE_OK)
		io_trace_truncate(p->name, size);
	return rc;
}
/* A sync with nothing written through this handle since its last one is
 * not done: what it would make durable already is. The case is the fold of
 * the WAL into index.db as a command closes the store: SQLite syncs the WAL
 * before it copies frames out, and the commit (synchronous=FULL) synced
 * exactly those frames (issue 21: 1-3 ms of every scan checkpoint). Frames
 * another connection wrote are synced by that connection's commit before
 * they become visible to a checkpointer (every connection of ours runs with
 * synchronous=FULL), and fsync works on the file, not on the handle. The
 * first sync of a handle is always done (an older writer's frames, the
 * directory sync of a new WAL). */
/* 1 if all there is of the WAL is the header of a new one, gathered: SQLite
 * syncs it before the first frames so that new frames after a restart are
 * never read with an old header (its ticket ff5be73dee), but an empty file
 * has no old frames: header and frames are synced together by the commit
 * (and the new WAL's directory entry with them, at that first real sync),
 * and a crash before that leaves no commit either way. */
static int new_wal_header(shim_file *p)
{
	sqlite3_int64 size;
	return p->is_wal && p->n == 1 && p->at == 0 && p->len == 32 &&
	       p->real->pMethods->xFileSize(p->real, &size) == SQLITE_OK && size == 0;
}

static int x_sync(sqlite3_file *f, int flags)
{
	shim_file *p = (shim_file *)f;
	if (p->lost)
		return lost_write(p);
	if (!p->dirty || new_wal_header(p))
		return SQLITE_OK;
	int e = io_fault(IO_FSYNC);
	if (e > 0)
		return SQLITE_IOERR_FSYNC;
	int rc = flush(p);
	if (rc != SQLITE_OK)
		return lost_write(p);
	rc = p->real->pMethods->xSync(p->real, flags);
	if (rc == SQLITE_OK)
		p->dirty = 0;
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
/* (the gathered writes are made first: see flush) */
static int x_size(sqlite3_file *f, sqlite3_int64 *out)
{
	shim_file *p = (shim_file *)f;
	int rc = flush(p);
	return rc != SQLITE_OK ? rc : p->real->pMethods->xFileSize(p->real, out);
}
static int x_lock(sqlite3_file *f, int l)
{
	shim_file *p = (shim_file *)f;
	int rc = flush_pair(p);
	return rc != SQLITE_OK ? rc : p->real->pMethods->xLock(p->real, l);
}
static int x_unlock(sqlite3_file *f, int l)
{
	shim_file *p = (shim_file *)f;
	int rc = flush_pair(p);
	return rc != SQLITE_OK ? rc : p->real->pMethods->xUnlock(p->real, l);
}
static int x_check(sqlite3_file *f, int *out) { shim_file *p = (shim_file *)f; return p->real->pMethods->xCheckReservedLock(p->real, out); }
static int x_fcntl(sqlite3_file *f, int op, void *arg)
{
	shim_file *p = (shim_file *)f;
	int rc = flush(p);
	return rc != SQLITE_OK ? rc : p->real->pMethods->xFileControl(p->real, op, arg);
}
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
	int rc = flush_pair(p); /* (a checkpoint's copies, a rolled back transaction's frames: before its lock goes) */
	if (rc != SQLITE_OK)
		return rc;
	return p->real->pMethods->xShmLock(p->real, off, n, flags);
}
static void x_shm_barrier(sqlite3_file *f) { shim_file *p = (shim_file *)f; p->real->pMethods->xShmBarrier(p->real); }
static int x_shm_unmap(sqlite3_file *f, int del) { shim_file *p = (shim_file *)f; return p->real->pMethods->xShmUnmap(p->real, del); }
/* Memory-mapped reads of index.db (issue 21): only where the connection
 * asked for them (PRAGMA mmap_size, io_sqlite_map_pragma: never while a fault
 * plan counts reads, which must all go through x_read). A W2 scan reads
 * ~1,500 pages of the index: as pread copies into pages SQLite allocates
 * and the kernel zeroes first, that was ~8% of its CPU. The map sees what
 * was written through the file (one page cache); gathered writes it would
 * read are made first, as for x_read. */
static int x_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
	shim_file *p = (shim_file *)f;
	*pp = NULL;
	if (p->len && off < p->at + p->len && off + n > p->at && flush(p) != SQLITE_OK)
		return lost_write(p);
	return p->real->pMethods->xFetch(p->real, off, n, pp);
}
static int x_unfetch(sqlite3_file *f, sqlite3_int64 off, void *pg)
{
	shim_file *p = (shim_file *)f;
	return p->real->pMethods->xUnfetch(p->real, off, pg);
}

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
	p->dirty = 1;
	p->gather = !!(flags & SQLITE_OPEN_MAIN_DB);
	p->lost = 0;
	p->is_wal = !!(flags & SQLITE_OPEN_WAL);
	p->peer = NULL;
	p->buf = NULL;
	p->len = p->n = 0;
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

void io_sqlite_link(sqlite3 *db)
{
	sqlite3_file *f = NULL, *w = NULL;
	if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK ||
	    sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &w) != SQLITE_OK || !f || !w ||
	    f->pMethods != &shim_methods || w->pMethods != &shim_methods)
		return;
	shim_file *pf = (shim_file *)f, *pw = (shim_file *)w;
	if (pf->is_wal || !pw->is_wal || pf->peer || pw->peer)
		return;
	pf->peer = pw;
	pw->peer = pf;
	pw->gather = 1;
}

/* The WAL's handle of a connection (our shim), or NULL. */
static shim_file *wal_of(sqlite3 *db)
{
	sqlite3_file *w = NULL;
	if (sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &w) != SQLITE_OK || !w ||
	    w->pMethods != &shim_methods || !((shim_file *)w)->is_wal)
		return NULL;
	return (shim_file *)w;
}

/* The WAL's frame length (from its header: its page size) and its size; 0
 * when it has no header yet (a new WAL: its first commit writes one). */
static int wal_geometry(shim_file *p, sqlite3_int64 *frame, sqlite3_int64 *size)
{
	unsigned char h[32];
	if (p->len || p->real->pMethods->xFileSize(p->real, size) != SQLITE_OK || *size < 32 ||
	    p->real->pMethods->xRead(p->real, h, 32, 0) != SQLITE_OK)
		return 0;
	uint32_t magic = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
	uint32_t psz = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 8 | h[11];
	if ((magic & ~1u) != 0x377f0682u || psz < 512 || psz > 65536 || (psz & (psz - 1)))
		return 0;
	*frame = 24 + (sqlite3_int64)psz;
	return 1;
}

int io_sqlite_wal_short(sqlite3 *db, int64_t end_frames, int64_t room_frames)
{
	shim_file *p = wal_of(db);
	sqlite3_int64 frame, size;
	if (!p || !wal_geometry(p, &frame, &size))
		return 0;
	return size < 32 + (end_frames + room_frames) * frame;
}

int io_sqlite_wal_reserve(sqlite3 *db, int64_t end_frames)
{
	shim_file *p = wal_of(db);
	sqlite3_int64 frame, size;
	if (!p || !wal_geometry(p, &frame, &size))
		return 0;
	sqlite3_int64 want = 32 + end_frames * frame;
	if (size >= want)
		return 0;
	/* the zeros go where no frame is yet (past the file's end): nothing
	 * SQLite reads from them is a frame (a frame needs the header's salts).
	 * Each write is a fault point; the power-loss trace is told of them as
	 * the file extended with zeros (one small record: the tests that read
	 * the trace while the session writes it met megabytes of zeros) */
	static const unsigned char zeros[64 << 10];
	int rc = SQLITE_OK;
	for (sqlite3_int64 off = size; rc == SQLITE_OK && off < want; off += (sqlite3_int64)sizeof zeros) {
		int n = want - off < (sqlite3_int64)sizeof zeros ? (int)(want - off) : (int)sizeof zeros;
		int e = io_fault(IO_WRITE);
		p->dirty = 1;
		rc = e > 0 && e != EINTR ? SQLITE_IOERR_WRITE : e == -1 ? SQLITE_FULL
		     : p->real->pMethods->xWrite(p->real, zeros, n, off);
	}
	if (rc == SQLITE_OK) {
		io_trace_truncate(p->name, want);
		rc = x_sync(&p->base, SQLITE_SYNC_NORMAL);
	}
	return rc == SQLITE_OK ? 0 : EIO;
}

const char *io_sqlite_map_pragma(void)
{
	/* (a 32-bit process keeps its address space: reads stay copies) */
	return sizeof(void *) >= 8 && io_index_map() ? "PRAGMA mmap_size=1073741824;" : NULL;
}

/* Registered once per process: separate store handles may open at once
 * (include/metamori.h), and a second registration would race the first. */
const char *io_sqlite_vfs(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, register_shim);
	return registered ? shim_vfs.zName : NULL;
}

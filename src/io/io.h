/*
 * io.h — the one I/O layer under the store and restore code.
 *
 * Every open, read, write, fsync, rename, truncate, unlink and mkdir that the
 * store or a restore performs goes through these functions (as SQLite's VFS),
 * so that tests can count the operations and fail, cut or kill at the Nth.
 * All functions return 0 or a positive errno; they retry EINTR and short
 * transfers themselves, but never retry a failed fsync: after a failed fsync
 * the kernel may have dropped the dirty pages, so the caller must fail (an
 * injected EINTR on fsync is reported as EIO; on every other operation it
 * is retried like a real one, so it must be invisible).
 *
 * Fault injection (honoured only when the process is not AT_SECURE), from
 * the environment:
 *   METAMORI_FAULT="OP:N:ERR[:always]"  OP is open|read|write|fsync|rename|
 *       truncate|unlink|mkdir|meta|clone|any (meta: chown, chmod, utimens
 *       and extended attribute calls; clone: FICLONE; open and read include
 *       directory listings); the Nth such call (1-based) fails with ERR
 *       (EIO, ENOSPC, EINTR, EDQUOT, short — a short transfer); with
 *       ":always" every call from the Nth on fails.
 *   METAMORI_CRASH_AT=N   SIGKILL the process just before its Nth mutating
 *       operation (write, fsync, rename, truncate, unlink, mkdir).
 *   METAMORI_CRASH_OP=OP  METAMORI_CRASH_AT (and METAMORI_IO_COUNT) count
 *       the calls of OP only (a name as in METAMORI_FAULT): meta makes the
 *       metadata calls crash points, enumerated apart from the data
 *       mutations so that each matrix stays its own size.
 *   METAMORI_IO_COUNT=FILE  at exit, write the number of mutating operations
 *       (of METAMORI_CRASH_OP, if set) done to FILE (to enumerate crash points).
 *   METAMORI_IO_TRACE=FILE  append a record of every successful mutating
 *       operation (with the data written) to FILE, for the power-loss
 *       simulation (tests/reliability/powerloss.py reads the format:
 *       u8 op, u32 len + path, u32 len + path2, u64 off, u64 len, data;
 *       integers little-endian, paths absolute). op is 'W' write (len bytes
 *       of data follow), 'S' fsync/fdatasync of a file or directory, 'R'
 *       rename path -> path2, 'T' truncate to len, 'U' unlink, 'D' rmdir,
 *       'M' mkdir, 'C' open with O_CREAT (the file may have existed), 'L'
 *       symlink path -> target path2, 'P' punch a hole [off, off+len). The
 *       SQLite shim records its writes, truncates and syncs the same way,
 *       and the directory fsync SQLite's unix VFS does at the first sync of
 *       a WAL or journal it created, or on a delete with sync_dir.
 *       Open with O_TRUNC records 'C' (if O_CREAT) and then 'T' with len 0.
 */
#ifndef MTM_IO_H
#define MTM_IO_H
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <sys/uio.h>

/* IO_META (owner, mode, times, extended attributes) are fault points, and
 * crash points counted apart (METAMORI_CRASH_OP=meta): a kill just before
 * one leaves a file whose content is new and whose metadata is not yet,
 * which the intent finishes. IO_CLONE (FICLONE into a temporary file not
 * renamed in yet) is a fault point only: a kill before it leaves what a
 * kill after the temporary's creation leaves. */
enum io_op { IO_OPEN, IO_READ, IO_WRITE, IO_FSYNC, IO_RENAME, IO_TRUNCATE, IO_UNLINK, IO_MKDIR, IO_META, IO_CLONE,
             IO_NOPS };

/* Consults the fault plan before an operation: 0 to proceed, or an errno to
 * fail with. Exported for the SQLite VFS shim, which shares the counters. */
int io_fault(enum io_op op);
/* The number of mutating operations done so far. */
uint64_t io_mutations(void);
/* 1 if a test's plan counts reads (METAMORI_FAULT, METAMORI_IO_COUNT, a
 * METAMORI_CRASH_OP of read): every read must then go through io_fault(),
 * none through a mapping, so that counted runs and faulted runs agree. */
int io_fault_plan_active(void);
/* Whether this process reads its stores' index through a memory mapping
 * (SQLite's mmap_size; sqlite_vfs.c): set with mtm_set_mapped_reads, never
 * while a fault plan counts reads (io_fault_plan_active). */
void io_set_index_map(int on);
int io_index_map(void);

int io_openat(int dirfd, const char *path, int flags, mode_t mode, int *fd_out);
/* Opens path to read it without ever blocking: O_NONBLOCK and O_NOCTTY
 * (a FIFO or a device opens at once instead of waiting for a writer, a
 * terminal never becomes ours), then fstat: anything but a regular file or
 * a directory is closed again and refused with ENOTPLAIN (util/error.h).
 * O_NONBLOCK does nothing to a regular file's reads. *st: its stat, or NULL. */
int io_open_plain(int dirfd, const char *path, int flags, int *fd_out, struct stat *st);
/* The same for a file that must be a regular file (a store's pack, intent):
 * a directory is ENOTPLAIN too. */
int io_open_regular(int dirfd, const char *path, int flags, int *fd_out);
int io_close(int fd);
/* A directory listing: dirfd/path opened with O_DIRECTORY | O_NOFOLLOW
 * (an IO_OPEN fault point); each entry read is an IO_READ fault point
 * (*out NULL at the end). Closed with closedir. */
int io_opendirat(int dirfd, const char *path, DIR **out);
int io_readdir(DIR *d, struct dirent **out);
/* Reads up to len bytes at off; *got is what was read (short only at EOF). */
int io_pread(int fd, void *buf, size_t len, off_t off, size_t *got);
int io_pwrite(int fd, const void *buf, size_t len, off_t off);
/* The same for cnt iovecs (which it advances past what it wrote): one
 * fault point per call, as io_pwrite. */
int io_pwritev(int fd, struct iovec *iov, int cnt, off_t off);
int io_fsync(int fd);
/* fsyncs fds[0..n) together, on up to IO_FSYNC_THREADS threads (the caller
 * one of them): a journaling file system commits the fsyncs that wait at
 * the same time in one transaction, so n files cost about one commit, not n
 * (200 files of 16 KiB on ext4, docs/BENCHMARKS-ARCHIVE.md: 281-345 ms one
 * after the other, 47-58 ms together). errs[i] gets fds[i]'s error (0:
 * synced; each call is an io_fsync, a fault point). Returns the first
 * nonzero errs[i], else 0. */
#define IO_FSYNC_THREADS 16
int io_fsync_many(const int *fds, size_t n, int *errs);
int io_fdatasync(int fd);
/* Writes zeros over [from, to) of fd, which ends at from: blocks given to
 * the file and counted in its size, so that a later write there, once they
 * are durable, is an overwrite (its fdatasync needs no journal commit).
 * Each write is a fault point; the trace records the file extended with
 * zeros (as far as the writes went). */
int io_extend_zeros(int fd, off_t from, off_t to);
int io_renameat(int olddir, const char *oldpath, int newdir, const char *newpath);
int io_ftruncate(int fd, off_t len);
int io_unlinkat(int dirfd, const char *path, int flags);
int io_mkdirat(int dirfd, const char *path, mode_t mode);
int io_symlinkat(const char *target, int dirfd, const char *path);
/* A hard link newdir/newpath to olddir/oldpath (counted as a mkdir). */
int io_linkat(int olddir, const char *oldpath, int newdir, const char *newpath);
/* A FIFO, socket or device node (counted as a mkdir for fault injection). */
int io_mknodat(int dirfd, const char *path, mode_t mode, dev_t dev);
/* Frees [off, off+len) keeping the size; falls back to writing zeros. */
int io_punch_hole(int fd, off_t off, off_t len);
/* Opens dir (O_DIRECTORY) and fsyncs it: makes a create or rename durable. */
int io_fsync_dirat(int dirfd, const char *path);
/* Owner, mode and times (IO_META): through an fd, or of dirfd/path with
 * flags (AT_SYMLINK_NOFOLLOW). An injected short transfer means nothing here. */
int io_fchown(int fd, uid_t uid, gid_t gid);
int io_fchmod(int fd, mode_t mode);
int io_futimens(int fd, const struct timespec ts[2]);
int io_fchownat(int dirfd, const char *path, uid_t uid, gid_t gid, int flags);
int io_fchmodat(int dirfd, const char *path, mode_t mode, int flags);
int io_utimensat(int dirfd, const char *path, const struct timespec ts[2], int flags);
/* Makes dst share src's extents (FICLONE, IO_CLONE); fails where the file
 * system cannot (EOPNOTSUPP, EXDEV, ...), and the caller copies instead. */
int io_clone(int dst, int src);

/* The name of a SQLite VFS whose file I/O goes through io_fault() and the
 * trace (sqlite_vfs.c); registered on first use. */
const char *io_sqlite_vfs(void);
/* Links the open WAL of connection db to its index.db handle in the shim,
 * so that the WAL's writes can be gathered too (sqlite_vfs.c); without a
 * WAL open yet, or outside the shim, nothing. */
typedef struct sqlite3 sqlite3;
void io_sqlite_link(sqlite3 *db);
/* The pragma that maps a connection's index.db for reading (up to 1 GiB),
 * or NULL when this process reads its index with copies (io_index_map). */
const char *io_sqlite_map_pragma(void);
/* A connection's WAL, room ahead (issue 21): a commit that writes past
 * the WAL file's end makes its sync commit the file system's journal too
 * (the new size and blocks), a second device flush on the path a
 * checkpoint's caller waits on; frames written over blocks the file has
 * are synced without it. io_sqlite_wal_short: 1 if the WAL (with a
 * header) is shorter than its frames up to end_frames and room_frames
 * more. io_sqlite_wal_reserve: makes it hold end_frames (zeros past its
 * end, synced); the caller holds the WAL's write lock (a write transaction
 * begun), so that no frame can be written there meanwhile. 0 or EIO. */
int io_sqlite_wal_short(sqlite3 *db, int64_t end_frames, int64_t room_frames);
int io_sqlite_wal_reserve(sqlite3 *db, int64_t end_frames);
/* Trace hooks for I/O done outside this file (the SQLite VFS shim). */
void io_trace_write(const char *path, const void *buf, size_t len, int64_t off);
void io_trace_truncate(const char *path, int64_t len);
void io_trace_sync(const char *path);
void io_trace_create(const char *path);
void io_trace_unlink(const char *path);
#endif

/*
 * metamori.h — incremental file checkpointing for Linux.
 *
 * A store (DIR/.metamori) records checkpoints of the tree at DIR. Each
 * checkpoint keeps only what changed since its parent: namespace changes and
 * the changed 4 KiB blocks of regular files. Any checkpoint can be restored,
 * in place or into an empty directory, in any order, any number of times.
 *
 * Conventions (after LMDB and libgit2):
 *  - Every function returning int returns 0 on success, a negative MTM_E*
 *    code from the reserved band below, or a positive errno value.
 *  - mtm_strerror() turns any such code into text; mtm_last_error() gives the
 *    one-line detail of the calling thread's last failure ("what: why").
 *  - Handles are opaque. Output parameters come first and are named out.
 *  - Options structs carry a version and have an _INIT initialiser.
 *  - Memory returned through out parameters is released with mtm_free().
 *
 * Caveats:
 *  - Threads: a mtm_store handle is used by one thread at a time. Separate
 *    handles on one store may be used concurrently: writers (checkpoint,
 *    in-place restore) are serialized by a lock on the store and a second
 *    writer gets MTM_EBUSY; readers (log, diff, restore --to, verify) run
 *    alongside a writer.
 *  - fork: do not use a handle in both parent and child; open a new one.
 *  - Scan mode compares stat data and block hashes, so it sees every change a
 *    program makes, through any interface (mmap, static binaries, ...), at a
 *    cost of O(files) + O(bytes of changed files) per checkpoint.
 *  - Recorded: regular files (holes as holes), directories, symlinks, hard
 *    links inside the tree (as one file with every name), FIFOs, sockets,
 *    device nodes, modes, owners, mtimes (ns), extended attributes (user.*
 *    and ACLs; trusted.* and security.* as root). Not recorded: atimes,
 *    ctimes, a hard link's names outside the tree.
 */
#ifndef METAMORI_H
#define METAMORI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MTM_API __attribute__((visibility("default")))

/* Error codes: a negative band of our own; positive values are errno. */
enum mtm_error {
	MTM_OK = 0,
	MTM_ENOSTORE = -30900,  /* no .metamori store found */
	MTM_EEXIST = -30901,    /* a store already exists there; a tag names another checkpoint */
	MTM_ENEWER = -30902,    /* store written by a newer format version */
	MTM_EFOREIGN = -30903,  /* not a metamori store */
	MTM_ECORRUPT = -30904,  /* damaged store (checksum, truncation, bad record) */
	MTM_ENOCKPT = -30905,   /* no such checkpoint */
	MTM_EBUSY = -30906,     /* another metamori command is writing the store */
	MTM_EINVAL = -30907,    /* invalid argument */
	MTM_EUNSAFE = -30908,   /* a path would leave the tree or follow a symlink */
	MTM_ENOTEMPTY = -30909, /* restore target directory is not empty */
	MTM_EINDEX = -30910,    /* the SQLite index failed */
	MTM_EPERM = -30911,     /* store permissions or owner are unsafe */
	MTM_EFAULT = -30912,    /* injected fault (tests only) */
};

/* Text for any code this library returns (a superset of strerror). */
MTM_API const char *mtm_strerror(int err);
/* The calling thread's last error as one line, "what: why"; "" if none. */
MTM_API const char *mtm_last_error(void);
/* Library version, "MAJOR.MINOR.PATCH". */
MTM_API const char *mtm_version(void);
/* Releases memory this library returned through an out parameter. */
MTM_API void mtm_free(void *p);
/* Sizes and times written as the library's messages write them, so that a
 * caller's output reads the same: "512 B", "4.0 KiB", "1.5 GiB";
 * "2026-11-25 06:01:02" (local time). Both return buf. */
MTM_API const char *mtm_format_size(char *buf, size_t len, uint64_t bytes);
MTM_API const char *mtm_format_time(char *buf, size_t len, int64_t time_ns);

/*
 * Reporting. The library never writes to stdout or stderr. What it has to
 * tell people outside a return value goes, one line at a time (no newline,
 * no "metamori: " prefix), to the handler installed here; with none
 * installed (the default) such lines are dropped. Lines: a session's line
 * per checkpoint (MTM_LOG_INFO, unless mtm_run_opts.quiet) and its failed
 * checkpoints (MTM_LOG_ERROR); warnings such as a directory a restore kept
 * because it holds excluded files (MTM_LOG_WARNING); and the lines that
 * $METAMORI_DEBUG_SESSION and $METAMORI_DEBUG_RESTORE ask for
 * (MTM_LOG_DEBUG). Install the handler before any other call; it is called
 * from the thread that does the work, and must not call back into the
 * library.
 */
enum mtm_log_level { MTM_LOG_ERROR = 1, MTM_LOG_WARNING = 2, MTM_LOG_INFO = 3, MTM_LOG_DEBUG = 4 };
typedef void (*mtm_log_fn)(void *arg, int level, const char *line);
MTM_API void mtm_set_log_handler(mtm_log_fn fn, void *arg);

/*
 * Lets this process's scans hash a file where it lies in the page cache
 * (mmap) when the part being read is all cached, instead of copying it into
 * a buffer first: a warm scan then costs about one read of the changed
 * files, not two. Cold parts are read as before. A file shortened by
 * another process while mapped raises SIGBUS: on = 1 installs a SIGBUS
 * handler for the whole process (once) that turns such a fault in
 * Metamori's own reads into the short read pread(2) would have given, and
 * hands every other SIGBUS to the disposition that was there before (a
 * handler, or the default action). Call it early, before code that installs
 * its own SIGBUS handler; on = 0 stops mapping (the handler stays). Off by
 * default. Returns 0, or an errno: ENOSYS if the kernel cannot tell what is
 * cached (cachestat(2), Linux 6.5): reads then stay copies. Stores opened
 * while it is on also read their index through a mapping (SQLite's
 * mmap_size), whatever cachestat says; a SIGBUS there (the index shortened
 * by something other than Metamori, an I/O error) is not Metamori's read
 * and goes to the disposition that was there before.
 */
MTM_API int mtm_set_mapped_reads(int on);

typedef struct mtm_store mtm_store;
typedef int64_t mtm_id; /* checkpoint id: 1, 2, ...; 0 means "none" */

/* Special value for mtm_diff's second checkpoint: the live tree. */
#define MTM_LIVE ((mtm_id)-1)

/*
 * Creates DIR/.metamori for the tree at dir (NULL: the current directory)
 * and opens it.
 * Errors: MTM_EEXIST if a store is there already; errno from mkdir/open.
 */
MTM_API int mtm_init(mtm_store **out, const char *dir);

/*
 * Opens the store of the tree containing path: walks up from path to the
 * first directory holding .metamori (like git); NULL is the current
 * directory. If a previous in-place restore was interrupted, it stays
 * pending (mtm_restore_pending): opening never changes the tree.
 * Errors: MTM_ENOSTORE, MTM_EFOREIGN, MTM_ENEWER, MTM_ECORRUPT, MTM_EPERM.
 */
MTM_API int mtm_open(mtm_store **out, const char *path);
MTM_API void mtm_close(mtm_store *s);
/* The tracked tree's root (absolute). Valid until mtm_close. */
MTM_API const char *mtm_root(const mtm_store *s);

/* Progress callback for long work: done of total, in bytes except where the
 * phase says otherwise (below). Called often: limit redraws yourself. */
typedef void (*mtm_progress_fn)(void *arg, const char *phase, uint64_t done, uint64_t total);
/* Progress of long work on this handle that takes no options struct, by
 * phase: "verify" (mtm_verify with MTM_VERIFY_DATA: bytes of chunks read),
 * "status" (mtm_diff against MTM_LIVE: bytes of the live files rehashed, of
 * those the stat cache does not vouch for), "prune" (mtm_prune: dropped
 * checkpoints folded -- a count, not bytes) then "gc" (mtm_prune: bytes of
 * live records read from the packs it rewrites), "push" (mtm_push: pack
 * bytes the mirror holds, of the store's), "du" (mtm_du: checkpoints
 * accounted -- a count). NULL turns it off. Called on the calling thread. */
MTM_API void mtm_set_progress(mtm_store *s, mtm_progress_fn fn, void *arg);

typedef struct mtm_checkpoint_opts {
	int version;
	const char *message;          /* may be NULL */
	const char *const *excludes;  /* extra gitignore patterns, in addition to .metamoriignore */
	size_t n_excludes;
	mtm_progress_fn progress;
	void *progress_arg;
} mtm_checkpoint_opts;
#define MTM_CHECKPOINT_OPTS_VERSION 1
#define MTM_CHECKPOINT_OPTS_INIT {MTM_CHECKPOINT_OPTS_VERSION, NULL, NULL, 0, NULL, NULL}

typedef struct mtm_checkpoint_info {
	mtm_id id;
	mtm_id parent;            /* 0 for the first checkpoint */
	int64_t time_ns;          /* wall clock at the start of the checkpoint */
	char *message;            /* owned by the containing array / struct */
	uint64_t files_added;
	uint64_t files_changed;   /* content or metadata */
	uint64_t files_removed;
	uint64_t bytes_changed;   /* logical bytes in changed blocks */
	uint64_t bytes_stored;    /* bytes appended to packs (after dedup and compression) */
	uint64_t entries;         /* entries in the tree at this checkpoint */
	uint64_t tree_bytes;      /* total size of regular files at this checkpoint */
	uint64_t pause_ns;        /* in a session: how long modifying calls were held (0 outside one) */
	int tracked;              /* 1 if made from a session's tracked changes, 0 if scanned (in a session
	                           * or not); -1 unknown: mtm_log of a checkpoint made by a Metamori
	                           * older than store format 6 (pause_ns is then 0 too) */
	uint64_t regions;         /* memory regions saved in this checkpoint (mtm_protect) */
	uint64_t region_bytes;    /* their total size */
	uint64_t region_bytes_changed; /* bytes of their 4 KiB blocks changed since the parent */
} mtm_checkpoint_info;

/*
 * Records the tree as a new checkpoint whose parent is the current head.
 * A checkpoint with nothing changed is still recorded (it marks a point in
 * time). On success *out (if non-NULL) describes it; free out->message with
 * mtm_free. Errors: MTM_EBUSY, MTM_ECORRUPT, MTM_EINDEX, errno (EIO, ENOSPC).
 * On any error nothing is committed and earlier checkpoints are untouched.
 */
MTM_API int mtm_checkpoint(mtm_store *s, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out);
/*
 * The same for the store that holds path (or a parent; NULL: the current
 * directory), without a handle:
 * when a session runs (mtm_run) it makes the checkpoint and this process
 * never opens the store's index (a request costs well under a millisecond);
 * otherwise the store is opened, scanned, and closed. Errors: those of
 * mtm_open and mtm_checkpoint.
 */
MTM_API int mtm_checkpoint_at(const char *path, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out);

/* The checkpoint the tree was last recorded as or restored to (0: none yet). */
MTM_API int mtm_head(mtm_store *s, mtm_id *out);

/* All checkpoints, in id order. Free with mtm_log_free. */
MTM_API int mtm_log(mtm_store *s, mtm_checkpoint_info **out, size_t *n_out);
MTM_API void mtm_log_free(mtm_checkpoint_info *list, size_t n);

/* One step of a restore's plan, for mtm_restore_opts.on_step (a dry run
 * lists them; a real restore reports them as it plans). */
typedef struct mtm_restore_step {
	char action;        /* 'W' written whole, 'P' patched (only differing blocks), 'R' removed,
	                     * 'C' created (directory, symlink), 'm' metadata only */
	const char *path;   /* relative to the root */
	uint64_t bytes;     /* 'W', 'P': bytes to write */
} mtm_restore_step;
typedef int (*mtm_restore_step_fn)(void *arg, const mtm_restore_step *step);

typedef struct mtm_restore_opts {
	int version;
	const char *to_dir;           /* NULL: in place; else an empty or new directory */
	const char *const *excludes;  /* live paths matching these are left alone (in place) */
	size_t n_excludes;
	mtm_progress_fn progress;
	void *progress_arg;
	/* version 2 */
	const char *const *paths;     /* restore only these files or directories (with all under them);
	                               * a path the checkpoint lacks is removed. NULL: the whole tree */
	size_t n_paths;
	int discard;                  /* in place: do not save the live tree as a checkpoint first */
	int dry_run;                  /* plan only: report each step to on_step, change nothing */
	mtm_restore_step_fn on_step;
	void *step_arg;
	mtm_id *saved;                /* out (if non-NULL): the checkpoint the live tree was saved as, 0 if none */
} mtm_restore_opts;
#define MTM_RESTORE_OPTS_VERSION 2
#define MTM_RESTORE_OPTS_INIT {MTM_RESTORE_OPTS_VERSION, NULL, NULL, 0, NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL}

typedef struct mtm_restore_stats {
	uint64_t files_written;   /* files rewritten whole (via a temporary name) */
	uint64_t files_patched;   /* files patched extent by extent */
	uint64_t entries_removed;
	uint64_t entries_created; /* directories and symlinks */
	uint64_t bytes_written;
	/* what the target could not take and was left out: extended attributes
	 * (ACLs, capabilities) on a file system without them or that this user
	 * may not set, device nodes when not root. The restore goes on. */
	uint64_t attrs_skipped;
	uint64_t nodes_skipped;
} mtm_restore_stats;

/*
 * Makes the tree (or opts->to_dir) exactly as it was at checkpoint id (with
 * opts->paths: those paths only).
 *
 * Nothing is lost: in place, when the live tree differs from the head, it is
 * first recorded as a new checkpoint (*opts->saved; restoring it undoes the
 * restore), unless opts->discard. Only what differs is rewritten, and before
 * the tree is touched every byte needed is read and verified and the restore
 * is checked to be possible: free space for what it writes, write access to
 * every directory it changes (a read-only directory of ours is opened for the
 * restore and its mode put back), entries in the way of any type. A refused
 * restore leaves the tree as it was. Whole files are replaced atomically
 * (temporary name, fsync, rename); large files are patched under the restore
 * intent, the whole request recorded in the store before the first change.
 * An interrupted restore is not finished by the next command: every command
 * works meanwhile (mtm_restore_pending says one is pending) and the user
 * finishes it (mtm_restore_continue) or puts the tree back
 * (mtm_restore_abort); a new in-place restore replaces it. In place and of
 * the whole tree, the head becomes id; a restore of some paths leaves the
 * head as it is (those paths then show as changed).
 * Errors: MTM_ENOCKPT, MTM_ECORRUPT, MTM_EUNSAFE, MTM_ENOTEMPTY, MTM_EBUSY,
 * ENOSPC, EACCES, errno. Version 1 options are accepted.
 */
MTM_API int mtm_restore(mtm_store *s, mtm_id id, const mtm_restore_opts *opts, mtm_restore_stats *out);

/* An interrupted in-place restore: its target checkpoint (*target = 0 if
 * none is pending) and the head it started from (*from = 0 if unknown). */
MTM_API int mtm_restore_pending(mtm_store *s, mtm_id *target, mtm_id *from);
/* Finishes the pending restore as it was requested (its paths and
 * excludes); opts may give progress, discard and dry_run (the rest is the
 * request's). MTM_EINVAL if none is pending. */
MTM_API int mtm_restore_continue(mtm_store *s, const mtm_restore_opts *opts, mtm_restore_stats *out);
/* Abandons the pending restore: puts the paths it covered back as they were
 * at the head it started from, removes its temporary files and its intent.
 * An intent left by an older version (FORMAT.md section 9) does not name
 * that head: the tree is then left as it is. MTM_EINVAL if none is pending. */
MTM_API int mtm_restore_abort(mtm_store *s, const mtm_restore_opts *opts, mtm_restore_stats *out);

/*
 * Reading a checkpoint without restoring it: what a directory held, one
 * entry's metadata, a file's bytes. Nothing is written to the tree or the
 * store, no lock is taken (these are readers: they run alongside a writer),
 * and every block read is checked against its hash in the index (a damaged
 * chunk is MTM_ECORRUPT, never wrong bytes). Paths are relative to the root
 * ("" or "." is the root; a leading "/" or "./" and a trailing "/" are
 * ignored; ".." is MTM_EINVAL). Used by `metamori ls`, `metamori cat` and
 * `metamori restore ID -- PATH`; meant for a read-only file system view too
 * (one handle per thread, as everywhere).
 */
/* One extended attribute of an entry (mtm_entry_info.xattrs). */
typedef struct mtm_xattr {
	const char *name;    /* "user.x", "system.posix_acl_access", "security.capability", ... */
	const void *value;
	size_t len;
} mtm_xattr;

typedef struct mtm_entry_info {
	char *path;          /* relative to the root; "" for the root itself */
	const char *name;    /* the last component of path (points into path) */
	char kind;           /* 'f' file (every name of a hard-linked one), 'd' directory, 'l' symlink, 'p' FIFO,
	                      * 's' socket, 'c' character and 'b' block device; others may be added later ('?') */
	uint32_t mode;       /* permission bits (07777) */
	uint32_t uid, gid;
	uint64_t size;       /* files: bytes; symlinks: length of the target; directories: 0 */
	int64_t mtime_ns;
	char *target;        /* symlinks: the target; else NULL */
	mtm_id version;      /* the checkpoint that recorded this version of the entry */
	uint64_t rdev;       /* 'c', 'b': the device number (as st_rdev); else 0 */
	uint32_t nlink;      /* 'f': the names the file has at that checkpoint (hard links inside
	                      * the tree, this one included); 1 for every other kind */
	size_t n_xattrs;     /* extended attributes recorded (see mtm_restore), sorted by name */
	mtm_xattr *xattrs;   /* owned by the info: mtm_entry_info_clear frees them */
} mtm_entry_info;

/*
 * The entry at path in checkpoint id. The root itself is not recorded: it is
 * kind 'd' with its other fields 0. Clear *out with mtm_entry_info_clear.
 * Errors: MTM_ENOCKPT, ENOENT (no such entry at id), MTM_EINVAL.
 */
MTM_API int mtm_stat(mtm_store *s, mtm_id id, const char *path, mtm_entry_info *out);
MTM_API void mtm_entry_info_clear(mtm_entry_info *e);

/*
 * The entries directly in directory dir at checkpoint id, sorted by name.
 * Cost: O(entries under dir, at any depth). Free with mtm_ls_free.
 * Errors: MTM_ENOCKPT, ENOENT, ENOTDIR (dir is not a directory at id), MTM_EINVAL.
 */
MTM_API int mtm_ls(mtm_store *s, mtm_id id, const char *dir, mtm_entry_info **out, size_t *n_out);
MTM_API void mtm_ls_free(mtm_entry_info *list, size_t n);

/*
 * A regular file as it was at checkpoint id, opened for reading. The handle
 * keeps the file's block map: a read costs the chunks it touches. It is
 * used with its store (not after mtm_close) by one thread at a time; if a
 * prune drops checkpoint id meanwhile, reads fail with MTM_ENOCKPT.
 * Errors: MTM_ENOCKPT, ENOENT, EISDIR, EINVAL (not a regular file), MTM_EINVAL.
 */
typedef struct mtm_file mtm_file;
MTM_API int mtm_file_open(mtm_file **out, mtm_store *s, mtm_id id, const char *path);
/* The file's size at that checkpoint. */
MTM_API uint64_t mtm_file_size(const mtm_file *f);
/* Reads up to len bytes at off into buf; *got < len only at the end of the
 * file (0 at or past it). Holes read as zeros. */
MTM_API int mtm_file_pread(mtm_file *f, void *buf, size_t len, uint64_t off, size_t *got);
MTM_API void mtm_file_close(mtm_file *f);

/* One difference between two states of the tree. */
typedef struct mtm_change {
	char kind;          /* 'A' added, 'D' removed, 'M' content changed, 'T' type changed, 'm' metadata only */
	const char *path;   /* relative to the root */
	uint64_t bytes;     /* for 'M': the file's bytes in blocks that differ (its last block
	                     * counted up to its end; the same figure a checkpoint counts);
	                     * for 'A' of a regular file: its size */
} mtm_change;
typedef int (*mtm_change_fn)(void *arg, const mtm_change *change);

typedef struct mtm_diff_opts {
	int version;
	const char *const *excludes;
	size_t n_excludes;
} mtm_diff_opts;
#define MTM_DIFF_OPTS_VERSION 1
#define MTM_DIFF_OPTS_INIT {MTM_DIFF_OPTS_VERSION, NULL, 0}

/*
 * Calls fn for each path that differs between checkpoints a and b, in path
 * order; b may be MTM_LIVE for the live tree (status is diff(head, live)).
 * A non-zero return from fn stops the walk and is returned.
 */
MTM_API int mtm_diff(mtm_store *s, mtm_id a, mtm_id b, const mtm_diff_opts *opts, mtm_change_fn fn, void *arg);

/* Verification. */
#define MTM_VERIFY_DATA 1 /* reread and rehash every chunk */
typedef int (*mtm_problem_fn)(void *arg, const char *problem);
typedef struct mtm_verify_stats {
	uint64_t checkpoints, entries, blocks, chunks, packs, bytes_read, problems;
} mtm_verify_stats;
/*
 * Checks the store: the index's own integrity, every reference between its
 * tables, every chunk's location and (with MTM_VERIFY_DATA) every chunk's
 * bytes. Calls fn once per problem found. Returns 0 if the store is sound,
 * MTM_ECORRUPT if any problem was found, or another error if it could not
 * be checked.
 */
MTM_API int mtm_verify(mtm_store *s, int flags, mtm_problem_fn fn, void *arg, mtm_verify_stats *out);

/*
 * Memory regions: the program's own state, saved in the same atomic
 * checkpoint as the files (the application-level model of VeloC and FTI,
 * done incrementally). After mtm_protect, every mtm_checkpoint() made
 * through this handle also records the len bytes at ptr under name, storing
 * only the 4 KiB blocks that changed since the checkpoint it is made from
 * (each block is hashed: see docs/DESIGN.md). The memory must stay valid and
 * must not change while mtm_checkpoint() runs (call it from the thread that
 * owns the state, or quiesce the others); it is read, never written, by
 * checkpoints. Names are 1-255 bytes without NUL; registering a name again
 * replaces its pointer and length. A region never appears in the tree,
 * restore, status or diff; log and du count it, prune and verify treat its
 * blocks like a file's. A checkpoint of a handle with regions is made by
 * this process, never handed to a running `metamori run` session
 * (MTM_EINVAL there: the session cannot read this process's memory).
 * Errors: MTM_EINVAL (bad name, NULL ptr with len > 0), ENOMEM.
 */
MTM_API int mtm_protect(mtm_store *s, const char *name, void *ptr, size_t len);
/* Stops saving a region; later checkpoints record it as gone (the older ones
 * keep it). MTM_EINVAL if no region has that name. */
MTM_API int mtm_unprotect(mtm_store *s, const char *name);
/*
 * After a restart: restores the tree in place to checkpoint id (0: the
 * newest checkpoint, leaving out those an in-place restore saved the live
 * tree as, "saved before restoring checkpoint N") as mtm_restore does, then copies every region
 * registered on this handle whose name the checkpoint holds back into its
 * memory (each block read and verified first). A region the checkpoint does
 * not hold is left as it is. *out (if non-NULL) receives the checkpoint
 * recovered, or 0 when the store has no checkpoint yet (a first start:
 * nothing is changed and 0 is returned). Errors: as mtm_restore; MTM_EINVAL
 * if a region's registered length differs from the length it was saved
 * with (nothing has been changed then). After an error other than those
 * the tree may be restored while the regions' memory is partly written.
 */
MTM_API int mtm_recover(mtm_store *s, mtm_id id, mtm_id *out);

/* Transparent tracking. */
typedef struct mtm_run_opts {
	int version;
	double every_seconds;         /* checkpoint periodically (0: only on request) */
	const char *const *excludes;  /* as for checkpoints */
	size_t n_excludes;
	const char *preload;          /* path of libmetamori-preload.so (NULL: found next to the
	                               * running executable, or $METAMORI_PRELOAD) */
	int quiet;                    /* no line per checkpoint (mtm_set_log_handler) */
	/* version 2: */
	int no_final;                 /* with every_seconds: no last checkpoint when the program exits */
	/* version 3: */
	int keep_empty;               /* with every_seconds: record a checkpoint at every tick (and at
	                               * exit) even when nothing changed since the last one */
} mtm_run_opts;
#define MTM_RUN_OPTS_VERSION 3
#define MTM_RUN_OPTS_INIT {MTM_RUN_OPTS_VERSION, 0, NULL, 0, NULL, 0, 0, 0}

/*
 * Runs argv[0] (searched in PATH) with the interposer preloaded, so that
 * every change it (and its children) make to the tree is recorded as it
 * happens. While it runs, mtm_checkpoint() from any process (the CLI in
 * another shell, the program itself, a job script), SIGUSR1 to this process,
 * or the every_seconds timer make consistent checkpoints: modifying calls
 * in all traced processes are held while the changed blocks are copied out,
 * then released before anything is compressed or written. A checkpoint
 * costs O(bytes changed); what the interposer cannot see precisely (shared
 * writable mmap, stdio, io_uring, static children) is compared or scanned.
 * With every_seconds, a last checkpoint (message "exit") is made when the
 * program exits, so its final state is recorded (unless no_final); a tick
 * or that last checkpoint records nothing when nothing changed since the
 * last checkpoint (an idle program leaves no empty checkpoints), unless
 * keep_empty. Checkpoints asked for (mtm_checkpoint, SIGUSR1) are always
 * recorded. Options of versions 1 and 2 are still accepted and get the
 * defaults of the fields they lack.
 * Returns when the program exits; *exit_status is its exit status
 * (128 + signal if killed). Errors: MTM_EBUSY (a session is already running
 * on this store), errno (the program could not be started: then
 * *exit_status is 127 if it was not found, 126 if it could not be executed,
 * as a shell reports them; 0 for any other error).
 */
MTM_API int mtm_run(mtm_store *s, const mtm_run_opts *opts, char *const argv[], int *exit_status);

/* Retention. */
typedef struct mtm_prune_opts {
	int version;
	uint32_t keep_last;       /* the N newest checkpoints */
	uint32_t keep_hourly;     /* the newest checkpoint of each of the last N hours that have one */
	uint32_t keep_daily;      /* likewise for days */
	int64_t keep_every_ns;    /* the newest checkpoint in each interval of this length (0: off) */
	const mtm_id *keep;       /* these ids, too */
	size_t n_keep;
	int dry_run;              /* compute and report, change nothing */
	double gc_threshold;      /* rewrite a pack when this fraction of it is dead; < 0: default 0.05 */
} mtm_prune_opts;
#define MTM_PRUNE_OPTS_VERSION 1
#define MTM_PRUNE_OPTS_INIT {MTM_PRUNE_OPTS_VERSION, 0, 0, 0, 0, NULL, 0, 0, -1.0}

typedef struct mtm_prune_stats {
	uint64_t dropped, kept;      /* checkpoints */
	uint64_t chunks_freed;       /* chunks no kept checkpoint uses any more */
	uint64_t bytes_freed;        /* their size in the packs */
	uint64_t packs_rewritten, packs_removed;
	uint64_t bytes_copied;       /* live bytes gc copied into new packs */
	uint64_t bytes_returned;     /* bytes given back to the file system (packs and index); a dry run:
	                                what gc would give back from the packs (and copy, rewrite) */
	uint64_t store_bytes_before; /* packs and index on disk before the prune */
	uint64_t store_bytes_after;  /* and after it (the index can grow: folded changes move to
	                                the children's rows); a dry run: the same as before */
} mtm_prune_stats;

/*
 * Drops every checkpoint no policy keeps. Always kept: the head and tagged
 * checkpoints. A dropped checkpoint's changes are folded into its children,
 * so every kept checkpoint restores exactly as before and branches stay
 * intact; then chunks nothing uses are freed, and packs whose dead fraction
 * passes the threshold are rewritten (new pack fsynced before the index stops
 * naming the old one; the old one removed last). *dropped (if non-NULL)
 * receives the dropped ids (free with mtm_free). Cost: proportional to the
 * dropped checkpoints' rows and the packs rewritten. Errors: MTM_EINVAL (no
 * policy), MTM_EBUSY, MTM_ECORRUPT, errno. Interrupted, it leaves a valid
 * store and can be rerun.
 */
MTM_API int mtm_prune(mtm_store *s, const mtm_prune_opts *opts, mtm_id **dropped, size_t *n_dropped,
                      mtm_prune_stats *out);

/*
 * Names checkpoint id (pins it against prune); id 0 removes the name. A name
 * is 1-64 letters, digits, '-', '_' or '.', not all digits and not "head".
 * A name that already names another checkpoint is not moved (that would
 * unpin the checkpoint it names): MTM_EEXIST, and the tag is left as it is;
 * naming the checkpoint it names already does nothing and returns 0.
 * Errors: MTM_EEXIST, MTM_EINVAL (bad name; id 0 and no such tag),
 * MTM_ENOCKPT, MTM_EBUSY, MTM_EINDEX.
 */
MTM_API int mtm_tag(mtm_store *s, const char *name, mtm_id id);
/*
 * Names checkpoint id whatever the name named before (as `git tag -f`):
 * creates the tag, or moves it (the checkpoint it named is no longer pinned
 * by it). Errors: as mtm_tag; MTM_EINVAL for id 0 (mtm_tag removes).
 */
MTM_API int mtm_tag_move(mtm_store *s, const char *name, mtm_id id);
typedef struct mtm_tag_info { char *name; mtm_id id; } mtm_tag_info;
/* All tags, by name. Free with mtm_tags_free. */
MTM_API int mtm_tags(mtm_store *s, mtm_tag_info **out, size_t *n_out);
MTM_API void mtm_tags_free(mtm_tag_info *tags, size_t n);
/* Resolves "12", "head" or a tag name to a checkpoint id (MTM_ENOCKPT). */
MTM_API int mtm_resolve(mtm_store *s, const char *text, mtm_id *out);

/* Space accounting. */
typedef struct mtm_du_entry {
	mtm_id id;
	uint64_t added;   /* bytes its checkpoint appended to packs (including folded ones) */
	uint64_t unique;  /* bytes only it holds: what pruning it alone would free */
} mtm_du_entry;
typedef struct mtm_du_totals {
	uint64_t logical;     /* sum of every checkpoint's tree and region sizes: what full copies would take */
	uint64_t plain;       /* plain bytes of all stored chunks (after dedup) */
	uint64_t packed;      /* their size in packs (after compression, with record headers) */
	uint64_t dead;        /* bytes in packs no checkpoint uses (reclaimed by gc) */
	uint64_t pack_files;  /* size of the pack files */
	uint64_t index_bytes; /* size of the index (with its WAL) */
	uint64_t region_logical; /* the share of logical that is memory regions (mtm_protect) */
} mtm_du_totals;
/* Per checkpoint (id order) and totals. Free *out with mtm_free. */
MTM_API int mtm_du(mtm_store *s, mtm_du_entry **out, size_t *n_out, mtm_du_totals *totals);

/* Mirroring: draining a store to shared storage (a parallel file system). */
typedef struct mtm_push_stats {
	uint64_t packs;          /* pack files the mirror was given bytes of */
	uint64_t bytes;          /* pack bytes copied */
	uint64_t index_bytes;    /* size of the index copied when copied whole (index_whole != 0) */
	uint64_t index_rows;     /* history rows added to the mirror's index (index_whole == 0) */
	uint64_t packs_removed;  /* mirror packs the store no longer names (gc replaced them) */
	int index_whole;         /* 0: only new rows copied; else why the index was copied whole: */
} mtm_push_stats;
#define MTM_PUSH_WHOLE_NEW 1       /* the mirror had no index yet */
#define MTM_PUSH_WHOLE_REWRITTEN 2 /* prune or gc rewrote history since the last push */
#define MTM_PUSH_WHOLE_SCHEMA 3    /* the mirror's index has another format (an older push) */
/*
 * Makes dir/.metamori a copy of the store's committed state, creating dir
 * (not its parents): a snapshot of the index (SQLite's backup API) and, of
 * each pack, only the committed bytes the mirror does not hold yet. The
 * mirror is a store: mtm_open(dir) reads it, and a push from it into a tree
 * whose store is gone recreates that store. Crash-safe: the packs first
 * (fsynced), the index last; an interrupted push leaves the previous
 * mirror whole. The index: when the store only added checkpoints since the
 * last push, their rows are inserted into the mirror's index in one
 * transaction; else (the first push, a prune or gc since) it is copied
 * whole and renamed into place. Cost: the new rows (or the index's size)
 * plus the new pack bytes. Errors: MTM_EEXIST (dir/.metamori is a store but not a
 * mirror: never overwritten), MTM_EBUSY (a push into dir is under way), errno.
 */
MTM_API int mtm_push(mtm_store *s, const char *dir, mtm_push_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* METAMORI_H */

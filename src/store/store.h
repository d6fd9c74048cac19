/*
 * store.h — the store handle shared by every part of the library.
 *
 * A store is DIR/.metamori/:
 *   index.db   SQLite (WAL): checkpoints, branches, versioned entries and
 *              blocks, chunk locations, the stat cache (docs/FORMAT.md)
 *   packs/     append-only pack files of checksummed, compressed chunks
 *   lock       flock()ed by the one writer at a time
 *   intent     present while an in-place restore is unfinished (intent.h)
 */
#ifndef MTM_STORE_H
#define MTM_STORE_H
#include <sqlite3.h>
#include <stdint.h>
#include "metamori.h"

#define MTM_STORE_DIR "metamori"      /* prefixed with '.' on disk */
#define MTM_FORMAT_VERSION 11
#define MTM_APPLICATION_ID 0x4D544D52 /* "MTMR" in the SQLite header */
#define MTM_BLOCK 4096
#define MTM_CHUNK_BLOCKS 16           /* a chunk holds up to 16 adjacent changed blocks */
#define MTM_PACK_TARGET (256u << 20)  /* start a new pack past this size */
#define MTM_TMP_PREFIX ".metamori-tmp." /* temporary files a restore makes in the tree */

struct mtm_branch { int64_t parent; int64_t fork; };

struct mtm_store {
	char *root;        /* absolute path of the tracked tree */
	int rootfd;        /* O_DIRECTORY fd of the tree */
	int dirfd;         /* fd of .metamori */
	sqlite3 *db;
	int locked;        /* holding the writer lock: how many times it was taken (nested) */
	int lockfd;
	/* branches, loaded at open and extended by checkpoints */
	struct mtm_branch *branches; /* index = branch id */
	int64_t n_branches;          /* highest id + 1 */
	sqlite3_stmt *q_entry_at, *q_entry_at_log, *q_block_at, *q_block_at_log; /* point lookups (index.c) */
	sqlite3_stmt *q_block_pair, *q_block_pair_log;
	sqlite3_stmt *q_file_map;    /* index_file_map's range scan */
	/* statements every checkpoint runs, prepared once per handle (db_cached) */
	struct { const void *key; sqlite3_stmt *st; } cached[32];
	int n_cached;
	/* A session's checkpoints append their block rows to block_log (schema.c),
	 * merged when it is idle (index_settle); so do scan checkpoints while no
	 * session runs (store_trim_log). Every reader reads both tables. */
	int log_blocks;
	int64_t log_rows;            /* committed rows appended since this handle last merged */
	int64_t log_pending;         /* rows appended by the open checkpoint (ckpt_commit adds them) */
	/* ... and its entry rows go to entry_log (format 7), counted here too
	 * (log_rows, log_pending: either log's), and apart: */
	int64_t entry_log_rows, entry_log_pending;
	struct mtm_session *session; /* set inside `metamori run` (session.c) */
	int wal_kept_by_session;     /* a session answered us: its WAL is its own to copy back */
	int zstd_raw_streak, zstd_skip; /* compression backoff on incompressible data (pack_writer.c) */
	int zstd_paid;                  /* the last chunk tried compressed (pack_writer.c) */
	int fs_known;                /* root_fine_dev was determined (scan.c) */
	int64_t root_fine_dev;       /* st_dev of the root if its file system keeps
	                              * fine timestamps from the kernel clock, else -1 */
	struct mtm_region *regions;  /* mtm_protect: memory saved with each checkpoint (region.h) */
	size_t n_regions;
	/* The store cannot be written, and why: EROFS, EACCES (no write
	 * permission) or ENOSPC (a full disk); 0 if it can. The index was
	 * opened read-only and nothing may write (store_lock refuses, naming
	 * the cause; close folds no WAL). */
	int readonly;
	int unmirrored; /* store_unmirror done: not a mirror (any longer) */
	mtm_progress_fn progress;    /* mtm_set_progress: long reads (verify --data) */
	void *progress_arg;
};

/* The store that holds path (or a parent), its directories only: no index
 * (s->db is NULL). Enough to reach a running session (session.h); closed
 * with mtm_close. */
int store_open_dirs(mtm_store **out, const char *path);

/* 1 in *inside if directory to, or (not there yet) the directory that
 * would hold it, is the store's directory or under it, however it is named
 * (a symlink, "..", a relative path): what restore --to and push must not
 * write into. 0 in *inside when to cannot be looked at (its mkdir or open
 * then says why). */
int store_holds_dir(const mtm_store *s, const char *to, int *inside);

/* Takes the writer lock (flock LOCK_EX|LOCK_NB): MTM_EBUSY when held. A
 * session's handle then merges block_log into block if its own rows there
 * have grown past a bound. Its holder may take it again: it is let go at
 * the matching last store_unlock. */
int store_lock(mtm_store *s);
void store_unlock(mtm_store *s);
/* Under the lock, before a write of history push would not bring back (a
 * checkpoint, an in-place restore, a tag): a mirror (store/mirror.c)
 * becomes a store of its own, which push refuses to overwrite. */
int store_unmirror(mtm_store *s);
/* block_log's rows at rest (FORMAT.md 3.5.1). A scan checkpoint adds its
 * block rows to block_log, and merges the log into block first once it
 * holds more than this many (store_trim_log, under the lock). A
 * checkpoint's rows are scattered over the whole of `block` (a row per
 * changed block of each file: about a page of the B-tree each, written
 * twice, into the WAL and then into the database); in the small log they
 * share a few pages, and a merge puts many checkpoints' rows into each
 * page of `block` at once. Whoever needs the log empty merges it: a
 * session as it starts, prune in its transaction, du (store_settle);
 * other writers leave it (an in-place restore reads it, between.c). */
#define STORE_LOG_KEEP_ROWS (1 << 13)
/* ... and entry_log's (FORMAT.md 3.4.1: a scan checkpoint's entry rows go
 * there when they are few, as its block rows do): its rows land at random
 * paths of the log, so the leaves a commit dirties grow with it (as for a
 * session's, lock.c). */
#define STORE_ENTRY_LOG_KEEP_ROWS (1 << 12)
int store_trim_log(mtm_store *s);
/* Leaves block_log and entry_log empty: merges them, under the writer
 * lock, waiting a few seconds at most for a writer that holds the lock.
 * For readers whose queries read block and entry alone (du). */
int store_settle(mtm_store *s);
/* Loads the branch table into s->branches. */
int store_load_branches(mtm_store *s);

/* meta table helpers */
int meta_get_int(mtm_store *s, const char *key, int64_t *out);
int meta_set_int(mtm_store *s, const char *key, int64_t v);

/* Runs SQL with no result rows; MTM_EINDEX with the detail on failure. */
int db_exec(mtm_store *s, const char *sql);
/* Converts a SQLite result code to ours, setting the detail. */
int db_error(mtm_store *s, int rc, const char *what);
/* One-shot SQL: prepares sql, binds args[0..n) to ?1..?n (those the
 * statement has), steps once and finalizes; a failure is reported as
 * db_error(what). db_run: for a statement that returns no row. db_int:
 * *out is the first column of the first row, 0 if there is none; *found
 * (may be NULL) says whether there was a row. DB_ARGS(a, b) builds the
 * args and n from int64 values. */
int db_run(mtm_store *s, const char *what, const char *sql, const int64_t *args, int n);
/* The statement for sql, prepared once per handle and kept under key (the
 * address of something of the caller's, one per statement: sql itself if
 * it is a literal), reset. The caller resets it after its last step (an
 * unreset SELECT holds its read snapshot), never finalizes it: the store
 * does when it closes (index_lookups_free). A checkpoint prepared ~15
 * statements, 10-45 us each, in its begin and its commit. */
int db_cached(mtm_store *s, const void *key, const char *sql, sqlite3_stmt **out);
/* db_exec of a statement without results through db_cached (key: sql's
 * address): for the BEGIN and COMMIT every checkpoint runs */
int db_exec_cached(mtm_store *s, const char *sql);
int db_int(mtm_store *s, const char *what, const char *sql, const int64_t *args, int n, int64_t *out, int *found);
#define DB_ARGS(...) (const int64_t[]){__VA_ARGS__}, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))

/* Schema creation and checks (schema.c). */
int schema_create(mtm_store *s);
int schema_check(mtm_store *s);
#endif

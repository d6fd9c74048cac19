/*
 * blockhash.h — a file version's block hashes in one row (format 5,
 * docs/FORMAT.md 3.11).
 *
 * A scan compares a changed file with its parent version block by block.
 * Read from `block`, that version's hashes cost one SQLite row per 4 KiB
 * block (16,384 rows for a 64 MiB file, on every checkpoint that finds the
 * file changed). The scan that last read the file whole keeps them here as
 * one blob, keyed by file id and tagged with the entry version they
 * describe. Like the stat cache it is not history: a row whose version is
 * not the parent's (or that fails its check) is ignored, and any row may be
 * deleted at any time.
 */
#ifndef MTM_BLOCKHASH_H
#define MTM_BLOCKHASH_H
#include <stdint.h>
#include "store/store.h"

/* Files of fewer blocks keep reading their few rows (a row of their own
 * would cost more than it saves); more than the maximum would make a blob
 * past 8 MiB (a sparse giant is read through its rows). */
#define BLOCKHASH_MIN_BLOCKS 16
#define BLOCKHASH_MAX_BLOCKS ((int64_t)1 << 20)

typedef struct {
	sqlite3_stmt *get, *put, *del;
} blockhash_stmts;

/* The hashes of file_id's version ver: *n hashes for blocks 0 .. *n - 1
 * (malloc'ed, the caller frees), XXH3-64 as in `block`; a block with no
 * row reads as the zero block's hash. *found = 0 when there is no valid row. */
int blockhash_get(mtm_store *s, blockhash_stmts *q, int64_t file_id, int64_t ver, uint64_t **hashes, int64_t *n,
                  int *found);
/* Replaces file_id's row; inside the transaction that wrote version ver. */
int blockhash_put(mtm_store *s, blockhash_stmts *q, int64_t file_id, int64_t ver, const uint64_t *hashes, int64_t n);
int blockhash_del(mtm_store *s, blockhash_stmts *q, int64_t file_id);
void blockhash_stmts_free(blockhash_stmts *q);
#endif

/*
 * blockhash.h — a file version's block hashes in one row (format 5,
 * docs/FORMAT.md 3.11), or as the blocks that differ from an older row
 * (format 10, 3.11.1).
 *
 * A scan compares a changed file with its parent version block by block.
 * Read from `block`, that version's hashes cost one SQLite row per 4 KiB
 * block (16,384 rows for a 64 MiB file, on every checkpoint that finds the
 * file changed). The scan that last read the file whole keeps them here as
 * one blob, keyed by file id and tagged with the entry version they
 * describe. Like the stat cache it is not history: a row whose version is
 * not the parent's (or that fails its check) is ignored, and any row may be
 * deleted at any time.
 *
 * A whole row rewritten by each checkpoint that changed a few blocks of a
 * big file was most of that checkpoint's index writes (S33: 134 of a W1
 * scan's 247 WAL pages for 1% of 4 x 64 MiB rewritten, the freed overflow
 * pages' list besides), written twice (the commit, then the WAL's fold).
 * Smaller row pieces would not help: 1% of blocks rewritten at random
 * touches nearly every piece. So the row stays, and a newer version is
 * kept as its differences from it (`blockhash_delta`, one row per file,
 * replaced each time, 12 bytes a differing block) until they would pass
 * an eighth of the whole row; then the whole row is written again.
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
/* A version is kept as a delta while its pairs (12 bytes each) take at most
 * 1/BLOCKHASH_DELTA_DIV of its whole row (8 bytes a block). With k blocks
 * of n rewritten each time, a delta grows by ~12 k bytes a checkpoint and
 * the whole row (8 n) is written every ~8 n / (12 k D) checkpoints; D = 8
 * is about the least bytes a checkpoint over both for W1 (k = n / 100). */
#define BLOCKHASH_DELTA_DIV 8

typedef struct {
	sqlite3_stmt *get, *put, *del, *dget, *dput, *ddel;
} blockhash_stmts;

/* The whole row blockhash_get found for the file (for a later
 * blockhash_put of a newer version as a delta against it): ver 0 = none. */
typedef struct {
	int64_t ver;
	uint64_t *h; /* malloc'ed, n hashes */
	int64_t n;
} blockhash_base;

/* The hashes of file_id's version ver: *n hashes for blocks 0 .. *n - 1
 * (malloc'ed, the caller frees), XXH3-64 as in `block`; a block with no
 * row reads as the zero block's hash. *found = 0 when there is no valid row
 * for ver. base (may be NULL) gets the file's whole row, whichever version
 * it describes, when it is valid (blockhash_base_free). */
int blockhash_get(mtm_store *s, blockhash_stmts *q, int64_t file_id, int64_t ver, uint64_t **hashes, int64_t *n,
                  int *found, blockhash_base *base);
/* Replaces file_id's row; inside the transaction that wrote version ver.
 * With base (blockhash_get's, for the same file, or NULL) the version is
 * written as its differences from base's row while they are small. */
int blockhash_put(mtm_store *s, blockhash_stmts *q, int64_t file_id, int64_t ver, const uint64_t *hashes, int64_t n,
                  const blockhash_base *base);
int blockhash_del(mtm_store *s, blockhash_stmts *q, int64_t file_id);
void blockhash_base_free(blockhash_base *b);
void blockhash_stmts_free(blockhash_stmts *q);
#endif

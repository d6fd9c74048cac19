/*
 * filemap.h — writing a file version's blocks from the store.
 */
#ifndef MTM_RESTORE_FILEMAP_H
#define MTM_RESTORE_FILEMAP_H
#include <stdint.h>
#include "store/index.h"
#include "store/pack.h"
#include "tree/filemap_diff.h"

/* Blocks a restore's verify pass read and checked, kept (up to a budget) so
 * that its apply pass writes them without reading their chunks again: a
 * patched 4 KiB block otherwise costs two reads of its whole 64 KiB chunk. */
typedef struct blockcache blockcache;
blockcache *blockcache_new(size_t budget_bytes);
void blockcache_free(blockcache *bc);

/* Writes to fd the blocks of the version (map, size) listed in runs, or every
 * data block when runs is NULL (a fresh file: holes are left as holes).
 * With punch, hole blocks in runs are punched (patching an existing file).
 * With dry, nothing is written: every chunk is read and verified only, and
 * the blocks are kept in bc (if non-NULL) while it has room; without dry,
 * blocks found in bc are taken from it.
 * *bytes (if non-NULL) is increased by the bytes written. */
int filemap_write(pack_reader *pr, blockcache *bc, int fd, const vec *map, int64_t size, const vec *runs, int punch,
                  int dry, uint64_t *bytes);
/* Starts the reads the dry passes of filemap_write will make for these
 * patches (each: a file version's map and size, the runs to write): a
 * scattered block found in the page cache is read and checked at once and
 * kept in bc (the dry pass then skips it); one that is not, and each chunk
 * of a longer run, is announced (POSIX_FADV_WILLNEED), so that the device
 * has every read of the restore queued at once. Blocks go in chunk order:
 * their chunk rows are looked up in one pass. Best effort: the dry pass
 * reports whatever is wrong. (A whole file is read in order: readahead does
 * that.) */
typedef struct { const vec *map; int64_t size; const vec *runs; } filemap_job;
void filemap_gather(pack_reader *pr, blockcache *bc, const filemap_job *jobs, size_t njobs);
#endif

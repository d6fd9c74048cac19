/*
 * region.h — memory regions registered on a store handle (mtm_protect), and
 * their versioned rows in the index (FORMAT.md 3.10).
 *
 * A region is stored as a file is: a version row (here in `region`, never in
 * `entry`, so nothing that reads the tree can see it) naming a file id whose
 * block rows hold its bytes. Checkpoints compare each block's XXH3-64 with
 * the hashes of the version they are made from, which the handle keeps from
 * its last checkpoint or recovery (hashes_at), so an unchanged region costs
 * one pass of hashing over memory and no index read.
 */
#ifndef MTM_STORE_REGION_H
#define MTM_STORE_REGION_H
#include <stddef.h>
#include <stdint.h>
#include "store/lineage.h"
#include "store/store.h"

#define MTM_REGION_NAME_MAX 255

typedef struct mtm_region {
	char *name;
	const unsigned char *ptr;
	size_t len;
	/* the block hashes of checkpoint hashes_at's version of this region
	 * (file_id there, len bytes), or hashes_at = 0: unknown, read the index */
	uint64_t *hashes;
	mtm_id hashes_at;
	int64_t file_id;
} mtm_region;

/* A region version visible at some checkpoint. */
typedef struct region_row {
	char *name;
	int64_t ckpt;       /* the checkpoint that wrote it */
	int64_t size, file_id;
} region_row;

/* The regions visible at lineage l (none removed), sorted by name. */
int region_rows_at(mtm_store *s, const lineage *l, region_row **out, size_t *n_out);
void region_rows_free(region_row *v, size_t n);
const region_row *region_row_find(const region_row *v, size_t n, const char *name);
/* Inserts a region row into the open transaction (kind 0: removed). */
int region_put(mtm_store *s, const char *name, int64_t branch, int64_t ckpt, int kind, int64_t size, int64_t file_id);
/* Frees the handle's registrations (mtm_close). */
void regions_free(mtm_store *s);
#endif

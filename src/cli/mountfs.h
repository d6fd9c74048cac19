/* mountfs.h — checkpoints as a read-only FUSE 3 file system (metamori mount).
 * Built on the public read API only (mtm_stat, mtm_ls, mtm_file_*). */
#ifndef MTM_CLI_MOUNTFS_H
#define MTM_CLI_MOUNTFS_H
#include "metamori.h"

typedef struct {
	const char *store_dir; /* where to open the store (-C DIR or ".") */
	mtm_id id;             /* one checkpoint at the mount point; 0: every checkpoint as DIR/ID */
	const char *mountpoint;
	int foreground;
} mountfs_opts;

/* Mounts, serves until unmounted (fusermount3 -u, umount, or a signal), and
 * returns the exit status. Prints its own errors. */
int mountfs_run(const mountfs_opts *o);
#endif

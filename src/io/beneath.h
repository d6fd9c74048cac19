/*
 * beneath.h — resolving store paths inside a tree, never outside it.
 *
 * Paths in the store are relative, '/'-separated, and come from a file that
 * may be damaged or hostile. Before any use they are checked (no empty, "."
 * or ".." component, not absolute, no NUL), and they are opened relative to
 * the root's fd with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS (openat2), or
 * component by component with O_NOFOLLOW where openat2 is missing, so a
 * symlink planted in the tree can never redirect a write.
 */
#ifndef MTM_IO_BENEATH_H
#define MTM_IO_BENEATH_H
#include <stddef.h>

/* The longest path the store holds: far beyond PATH_MAX (4096), which
 * bounds one system call's path, not a tree's depth; paths longer than
 * PATH_MAX are opened component by component. A bound all the same, so that
 * a hostile index cannot make a walk of a path cost without end. */
#define MTM_PATH_MAX (1 << 20)

/* 1 if path (len bytes, no NUL inside) is a safe relative path. */
int path_is_safe(const char *path, size_t len);
/* Opens relpath's parent directory beneath rootfd; *leaf points into relpath
 * at the last component. Returns 0 or errno (ELOOP/ENOTDIR/EXDEV for a
 * symlink or escape on the way). */
int beneath_open_parent(int rootfd, const char *relpath, int *dirfd_out, const char **leaf_out);
/* Opens relpath itself beneath rootfd with flags (O_NOFOLLOW is added), as
 * io_open_plain: never blocks, and anything but a regular file or a
 * directory is ENOTPLAIN. */
int beneath_open(int rootfd, const char *relpath, int flags, int *fd_out);
/* The same, with the opened file's fstat in *st (NULL: not wanted). */
struct stat;
int beneath_open_st(int rootfd, const char *relpath, int flags, int *fd_out, struct stat *st);
#endif

/*
 * xattr.h — a file's extended attributes as one value, read from and
 * applied to the tree.
 *
 * POSIX ACLs (system.posix_acl_access, system.posix_acl_default) and file
 * capabilities (security.capability) are extended attributes too: keeping
 * the attributes keeps them, byte for byte, with no ACL library.
 *
 * Which names are kept: user.*, and the two ACL names, for anyone; trusted.*
 * and security.* (capabilities, SELinux/SMACK labels) only when running as
 * root, the only user who may write them (and read trusted.*). Other names
 * are neither recorded nor touched.
 *
 * The blob (FORMAT.md 3.4, entry.xattrs): the kept attributes sorted by name
 * (byte order), each as u8 name length (1..255), the name, u32 LE value
 * length (0..65536), the value. No attribute: no blob (NULL, length 0).
 */
#ifndef MTM_IO_XATTR_H
#define MTM_IO_XATTR_H
#include <stddef.h>

#define XATTR_VALUE_MAX 65536

/* 1 if blob is well formed: lengths in range, names non-empty without NUL,
 * strictly increasing (a damaged index is refused before use). */
int xattr_blob_valid(const unsigned char *blob, size_t len);
/* The kept attributes of fd, or of name in directory dfd (not followed if a
 * symlink). *blob is malloc'd (NULL when there are none). A file system
 * without xattrs gives none. Returns 0 or an errno. */
int xattr_read_fd(int fd, unsigned char **blob, size_t *len);
int xattr_read_at(int dfd, const char *name, unsigned char **blob, size_t *len);
/* Makes the kept attributes of fd (or dfd/name) exactly blob's: removes the
 * others, sets the differing ones. Where the file system or the user cannot
 * (ENOTSUP, EPERM), counts one in *skipped and goes on. 0 or an errno. */
int xattr_apply_fd(int fd, const unsigned char *blob, size_t len, unsigned *skipped);
int xattr_apply_at(int dfd, const char *name, const unsigned char *blob, size_t len, unsigned *skipped);
#endif

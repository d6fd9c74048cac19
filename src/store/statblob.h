/* statblob.h — a stat cache row's stat fields as one BLOB (format 8,
 * docs/FORMAT.md 3.9): size, mtime_ns, ctime_ns, ino, dev, mode, uid, gid
 * and racy, in that order, each as its 64 bits (two's complement for a
 * negative time) in as few little-endian bytes as hold them (0 for 0).
 * A header of 5 bytes gives the fields' byte counts, 4 bits each (field i
 * in byte i / 2, the low half for even i; the last byte's high half 0).
 * One column instead of nine: a scan reads every row of the table in path
 * order, and SQLite's cost of a row was about its number of columns (W2:
 * 20,000 rows, ~2,600 user instructions a row as eleven columns). */
#ifndef MTM_STORE_STATBLOB_H
#define MTM_STORE_STATBLOB_H
#include <stddef.h>
#include <stdint.h>

enum { STATBLOB_FIELDS = 9, STATBLOB_MAX = (STATBLOB_FIELDS + 1) / 2 + STATBLOB_FIELDS * 8 };
/* Writes f's fields to out (STATBLOB_MAX bytes at most); returns the length. */
size_t statblob_pack(unsigned char *out, const int64_t f[STATBLOB_FIELDS]);
/* The fields of blob p (n bytes) into f: 0, or -1 if it is not exactly a
 * header and the bytes it counts (a damaged row: it vouches for nothing). */
int statblob_unpack(const void *p, size_t n, int64_t f[STATBLOB_FIELDS]);
#endif

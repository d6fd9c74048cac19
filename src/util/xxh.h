/*
 * xxh.h — xxHash, with the XXH3 functions that pick the widest vector unit
 * the CPU has (AVX-512, AVX2, SSE2) when libxxhash provides them.
 *
 * Debian's libxxhash builds XXH3_64bits for SSE2 only; its *_dispatch
 * variants choose at run time. Scan mode hashes every 4 KiB block of every
 * file it reads, and there the SSE2 build was about a quarter of the CPU
 * (7.7 against 11-21 GB/s on the benchmark machine, BENCHMARKS-ARCHIVE.md
 * S11). The hashes are the same (XXH3 defines its result, not its code).
 * MTM_XXH_DISPATCH is set by CMake when the library has the symbols.
 * Every file that hashes includes this header, never <xxhash.h>: the
 * session's block hashes (hashes.c, precopy.c) and the records' checks
 * did not, and hashing was 24% of a session's CPU under pgbench (a 512
 * MiB file compared whole: 0.28-0.32 s a checkpoint before, 0.14-0.21 s
 * after, BENCHMARKS-ARCHIVE.md).
 */
#ifndef MTM_UTIL_XXH_H
#define MTM_UTIL_XXH_H
#include <xxhash.h>
#ifdef MTM_XXH_DISPATCH
#include <xxh_x86dispatch.h>
#endif
#endif

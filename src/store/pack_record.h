/*
 * pack_record.h — what the pack writer (pack_writer.c), its thread
 * (flusher.c), the reader (pack_reader.c) and the record codec
 * (pack_record.c) share: pack file names, the buffer sizes, the packs a
 * writer touched, the little-endian fields and the record check of
 * docs/FORMAT.md. Internal to src/store.
 */
#ifndef MTM_STORE_PACK_RECORD_H
#define MTM_STORE_PACK_RECORD_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "util/xxh.h"

/* "packs/00000012.pack": pack id's file, relative to .metamori */
static inline void pack_name(char *buf, size_t len, int64_t id) { snprintf(buf, len, "packs/%08lld.pack", (long long)id); }

/* Bytes are handed to the flusher thread every FLUSH_AT, which writes them
 * and tells the kernel to start writing them back: the device works on one
 * piece while the next is hashed and indexed, so the fsync at the end waits
 * for the last piece only, not the whole pack (W1: the checkpoint's fsync
 * went from ~6.5 ms to under 1 ms, and the ~3 ms of pwrite into the page
 * cache left the checkpoint's own thread). WBUF leaves room for one more
 * record past FLUSH_AT. */
#define FLUSH_AT (1u << 20)
#define WBUF (2u << 20)
/* A buffer of WBUF bytes (free() frees it). huge: in a huge page where the
 * kernel has them, so that its first fill costs one page fault, not 512 (a
 * fault is dear in a virtual machine; a scan checkpoint is a short
 * process). A session's writer lives across its checkpoints (its faults are
 * paid once) and asks for small pages: a huge page is resident whole once
 * one byte of it is touched, which made the session's peak RSS jump by 2 MiB
 * at a time with the data a checkpoint wrote (session_scale). NULL: no
 * memory. */
unsigned char *pack_wbuf_alloc(int huge);
struct touched_pack { int64_t id; int fd; uint64_t start, size; }; /* start: where this writer began */

/* A piece of what the writer hands over: bytes in its buffer, or a raw
 * chunk's plain bytes where the caller holds them (pack_piece.lasting),
 * which the thread writes from there. The thread fills in each record's
 * check (at header + 32) from its HDR segment and the DATA ones after it. */
enum { SEG_RAW, SEG_HDR, SEG_DATA };
struct pack_seg { const unsigned char *p; size_t len; int kind; };

static inline void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static inline void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static inline uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static inline uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

/* The record check covers the 32 header bytes and the stored payload, so
 * any flipped byte is caught even where the codec would not notice. */
static inline uint64_t record_check(const unsigned char *hdr, const unsigned char *data, size_t clen)
{
	return XXH3_64bits_withSeed(data, clen, XXH3_64bits(hdr, 32));
}
#endif

/*
 * pack.h — chunks in append-only pack files.
 *
 * A chunk is up to MTM_CHUNK_BLOCKS adjacent blocks of one file version,
 * zstd-compressed (or raw when compression does not pay), identified by the
 * XXH3-128 of its plain bytes: identical chunks are stored once. Every read
 * checks what it returns against the index: a chunk read whole, its record
 * header, the index row and the plain-bytes hash; a block of a raw chunk
 * read alone, the block's hash (pack_read_block).
 *
 * Durability: the writer appends (a second thread does the writes, one
 * buffer behind, then fsyncs every pack touched and the packs directory
 * when it created one); pack_writer_finish() waits for all that and only
 * then records the packs' new committed sizes in the caller's open index
 * transaction, whose commit follows.
 *
 * Split: pack_writer.c (appending, naming chunks in the index), flusher.c
 * (its thread), pack_reader.c (reading back), pack_record.c (the record
 * codec both use).
 */
#ifndef MTM_STORE_PACK_H
#define MTM_STORE_PACK_H
#include <stddef.h>
#include <stdint.h>
#include <zstd.h>
#include "store/store.h"
#include "util/keymap.h"
#include "util/strvec.h"
#include "util/xxh.h"

#define PACK_HEADER_LEN 16
#define CHUNK_HEADER_LEN 40
/* docs/FORMAT.md 5, 6: a pack starts with PACK_MAGIC and its id; each
 * record with CHUNK_MAGIC (without their NULs). */
#define PACK_MAGIC "MTMPACK1"
#define PACK_MAGIC_LEN 8
#define CHUNK_MAGIC "MTMC"
#define CHUNK_MAGIC_LEN 4
_Static_assert(sizeof PACK_MAGIC - 1 == PACK_MAGIC_LEN && PACK_MAGIC_LEN + 8 == PACK_HEADER_LEN, "pack header");
_Static_assert(sizeof CHUNK_MAGIC - 1 == CHUNK_MAGIC_LEN, "chunk magic");
#define CHUNK_MAX_PLAIN (MTM_CHUNK_BLOCKS * MTM_BLOCK)
/* a record's length field is 32 bits, and a chunk's whole compressed record fits them */
_Static_assert(CHUNK_HEADER_LEN + ZSTD_COMPRESSBOUND(CHUNK_MAX_PLAIN) < UINT32_MAX, "record lengths");
enum { CODEC_RAW = 0, CODEC_ZSTD = 1 };

typedef struct {
	mtm_store *s;
	int64_t pack_id;     /* current pack, 0 = none yet */
	int fd;
	uint64_t size;       /* bytes in the current pack incl. buffered */
	int created_any;     /* a new pack file was created: fsync the directory */
	vec touched;         /* struct touched_pack: packs to fsync and record */
	/* What the next hand-over writes at file offset buf_off: job_len bytes
	 * in segs (struct pack_seg), of which the first buf_len are copies in
	 * buf, and the rest the callers' lasting pieces. */
	unsigned char *buf;
	size_t buf_len, job_len;
	uint64_t buf_off;
	vec segs;
	ZSTD_CCtx *cctx;
	unsigned char *cbuf;
	unsigned char *gbuf;       /* a chunk's pieces gathered for zstd */
	XXH3_state_t *hstate;      /* a chunk's hash over its pieces */
	sqlite3_stmt *find, *insert;
	uint64_t bytes_stored, chunks_new;
	uint64_t zstd_in;          /* bytes given to zstd (tries that did not pay too) */
	struct pack_flusher *fl;   /* the thread that writes (flusher.c) */
	int sync_begun;
	int drop_cache;            /* a session's: what it wrote leaves the page cache once durable */
	/* A session's: its fsync ahead (FLUSH_SYNC_AHEAD) first gives the
	 * file room, zeros past what was written (PACK_ROOM, flusher.c), so
	 * that what the checkpoint appends after the records written ahead
	 * (the blocks captured in its pause) lands on blocks the file has,
	 * within its durable size: the commit's fdatasync of the pack then
	 * flushes data only, with no journal commit of the file system
	 * (issue 21, W2). The room is past the committed size, where bytes
	 * are ignored (FORMAT.md 3.7); the next writer cuts it off. */
	int room;
	/* for METAMORI_DEBUG_SESSION: time spent waiting for the thread, and
	 * the thread's time in its writes and fsyncs */
	int64_t waited_ns, write_ns, fsync_ns;
	/* records written ahead (pack_writer_begin_ahead), in the checkpoint's
	 * writer that continues after them: kept, and the bytes it adopted */
	int ahead_kept;
	struct pack_ahead {
		int64_t pack;         /* written into this pack ... */
		uint64_t base, end;   /* ... past its committed size base, up to end */
		int64_t dev, ino;     /* through this file */
		/* [base, end) was fsynced by the writer that wrote it, after its
		 * last write there (pack_writer_synced): durable already, so the
		 * writer that continues after it needs no fsync of its own for
		 * them (session/prewrite.c: the fsync made once the program was
		 * quiet) */
		int synced;
	} ahead;
	uint64_t ahead_adopted;
	/* The records written ahead, fsynced as soon as the checkpoint's writer
	 * continues after them (while the checkpoint collects and records), or
	 * all the records so far (pack_writer_sync_early), and the pack's size
	 * then: a commit that appended nothing since waits for that fsync
	 * instead of making its own (pack_writer_sync_begin). */
	int early_sync;
	uint64_t early_size;
} pack_writer;
typedef struct pack_ahead pack_ahead;

/* Where a record lies, and what its chunk row says. */
typedef struct pack_loc {
	int64_t pack;
	uint64_t off;
	uint32_t clen, plen;
	int codec;
	unsigned char hash[16];
} pack_loc;

typedef struct pack_begin_opts {
	/* Start a new pack; never append to an existing one: a live session
	 * may be writing ahead into the newest (another process's writer). */
	int fresh;
	/* Continue after these records written ahead (the session's own
	 * writer), if they are intact: w->ahead_kept then, and pack_adopt
	 * names them. */
	const pack_ahead *ahead;
} pack_begin_opts;
int pack_writer_begin(pack_writer *w, mtm_store *s, const pack_begin_opts *o);
/* Stores a chunk given in n pieces (len <= CHUNK_MAX_PLAIN bytes in all)
 * unless an identical chunk exists; *chunk_id is the chunk's id either way.
 * Inserts into the open transaction. A lasting piece stays where it is
 * until the writer is finished or freed, and is written from there when the
 * chunk is stored raw; any other is copied into the writer's buffer. */
typedef struct { const void *data; size_t len; int lasting; } pack_piece;
int pack_putv(pack_writer *w, const pack_piece *pc, int n, size_t len, int64_t *chunk_id);
/* Starts the last writes and the fsyncs in the writer's thread: the caller
 * may go on with its index rows (not with pack_putv) meanwhile. */
int pack_writer_sync_begin(pack_writer *w);
/* The caller expects to append nothing more: what it appended starts to be
 * written and fsynced in the writer's thread now, while it goes on with
 * its index rows (and may append after all: then the commit makes its own
 * fsync, as without this). Not when the thread is busy (the caller never
 * waits here), nor after a pack was created or a second one begun (the
 * commit's fsyncs then cover more than the one pack's descriptor).
 * *begun: 1 if it did. */
int pack_writer_sync_early(pack_writer *w, int *begun);

/* Writing ahead (session/prewrite.c): records appended to the newest pack
 * past its committed size while the program runs, named in the index by
 * no one until a checkpoint adopts them. Nothing is fsynced: the
 * checkpoint's writer continues the same pack and fsyncs it whole before
 * its commit. Until then they are an unreferenced tail, as a crashed
 * checkpoint leaves; while the session lives, no other writer appends to
 * an existing pack (pack_begin_opts.fresh), so none cuts them.
 * begin_ahead: 1 when there is no pack to write into (none yet, or the
 * newest is full: creating one is a checkpoint's), *out where it writes. */
int pack_writer_begin_ahead(pack_writer *w, mtm_store *s, pack_ahead *out);
/* Appends a chunk's record (as pack_putv would, without looking for an
 * identical chunk) and says where; 1 when the pack is full. The pieces are
 * written from where they lie: they must not change until drained. */
int pack_put_ahead(pack_writer *w, const pack_piece *pc, int n, size_t len, pack_loc *loc);
/* Hands what is buffered to the thread; drain waits for it (its first error). */
int pack_writer_push(pack_writer *w);
int pack_writer_drain(pack_writer *w);
/* 1 while the thread is writing what it was given: a push would wait. */
int pack_writer_busy(pack_writer *w);
/* Hands what is buffered to the thread with an fsync of the pack after it,
 * and returns at once (waiting for the previous job first). Its failure
 * shows at the next push or drain. Once drained, pack_writer_synced says
 * whether it covers everything written: a continuing writer told so
 * (pack_ahead.synced) makes no fsync for those records, and a commit that
 * appended nothing after them makes none at all. Once durable, the
 * records leave the page cache (a hint, as a checkpoint's do). */
int pack_writer_sync_soon(pack_writer *w);
/* After a drain: 1 if everything this writer wrote was fsynced after it was
 * written (the last job it handed over was sync_soon's, and succeeded),
 * nothing buffered since. */
int pack_writer_synced(pack_writer *w);
/* Cuts pack id's file down to its committed size (the room a session
 * left past it, records written ahead that no checkpoint took); nothing if
 * the pack has no row or the file is no longer. The caller holds the
 * writer lock. */
int pack_cut_tail(mtm_store *s, int64_t id);
/* In the checkpoint's writer (ahead_kept): the chunk id for a record
 * written ahead, an identical chunk's if there is one (the record then
 * stays dead), else a new row naming the record. Records nobody adopts are
 * counted dead in the pack's row by pack_writer_finish. */
int pack_adopt(pack_writer *w, const pack_loc *loc, int64_t *chunk_id);
/* Waits for the writes and fsyncs (starting them if sync_begin was not
 * called), then records the packs' sizes in the open transaction. */
int pack_writer_finish(pack_writer *w);
void pack_writer_free(pack_writer *w);

typedef struct {
	mtm_store *s;
	struct { int64_t id; int fd; } fds[8];
	struct { int64_t id; size_t len; unsigned char *data; } cache[4];
	unsigned next_victim;
	ZSTD_DCtx *dctx;
	unsigned char *rbuf;
	sqlite3_stmt *lookup;
	uint64_t bytes_read;
	unsigned char *blockbuf; /* pack_read_block: a record's header */
	/* announced reads not passed on to the kernel yet (pack_prefetch):
	 * near ranges of one pack go as one */
	struct { int fd; int64_t from, to; } willneed;
	/* chunk rows looked up by pack_preload (the reader lives in one read
	 * transaction: they cannot change), for a restore's reads: chunk id ->
	 * index in memo_rows + 1 */
	keymap memo;
	vec memo_rows;
} pack_reader;

int pack_reader_init(pack_reader *r, mtm_store *s);
/* Reads and verifies chunk id; *plain stays valid until the next 4 reads. */
int pack_read(pack_reader *r, int64_t chunk_id, const unsigned char **plain, size_t *plen);
/* Reads block boff of chunk chunk_id into out (MTM_BLOCK bytes, zero-padded
 * past the chunk's end) and checks it against hash, the block's XXH3-64 in
 * the index. A raw chunk is read only there, so a restore that needs one
 * 4 KiB block of a 64 KiB chunk reads 4 KiB, and one read: the record's
 * header is read only to name what is wrong when the hash does not match
 * (the bytes written are the bytes checked; `verify --data` checks whole
 * records). Any other codec goes through pack_read. A reader must be used
 * inside one read transaction of the index (rows are remembered). */
int pack_read_block(pack_reader *r, int64_t chunk_id, int64_t boff, uint64_t hash, unsigned char *out);
/* Asks the kernel to start reading what pack_read_block (or, with whole,
 * pack_read) of that block will read: a restore announces all its reads
 * first, so a cold disk serves them together instead of one at a time.
 * Best effort: errors are left to the read. */
void pack_prefetch(pack_reader *r, int64_t chunk_id, int64_t boff, int whole);
/* Passes on what pack_prefetch holds back (any read does it first). */
void pack_prefetch_flush(pack_reader *r);
/* Looks up the rows of chunks ids (ascending) in one pass, stepping over
 * near rows instead of seeking each, and remembers them for the reads to
 * come. Best effort: a missing or unreadable row is left to its read. */
void pack_preload(pack_reader *r, const int64_t *ids, size_t n);
/* Returns 1 with block boff of a raw chunk in out, checked as by
 * pack_read_block, if it could be read from the page cache without waiting
 * (RWF_NOWAIT); else announces it (pack_prefetch) and returns 0: the block
 * is then pack_read_block's, which reports whatever is wrong with it. */
/* 1 and where chunk chunk_id's record lies, if pack_preload remembered its row. */
int pack_chunk_where(const pack_reader *r, int64_t chunk_id, int64_t *pack, int64_t *off);
int pack_block_if_cached(pack_reader *r, int64_t chunk_id, int64_t boff, uint64_t hash, unsigned char *out);
void pack_reader_free(pack_reader *r);

/* Lays out a chunk record's 40-byte header (docs/FORMAT.md 6) at rec: the
 * magic, codec, plain and stored lengths and the plain bytes' XXH3-128
 * (canonical); the check (bytes 32..39) is zeroed. chunk_check_put fills
 * it in once the clen stored bytes (at data) are known. */
void chunk_header_put(unsigned char *rec, int codec, uint32_t plen, uint32_t clen, const unsigned char digest[16]);
void chunk_check_put(unsigned char *rec, const unsigned char *data, size_t clen);

/* Parses and checks one chunk record already in memory (also used by verify
 * and the fuzz target): header, lengths, codec, checksum. On success plain
 * (CHUNK_MAX_PLAIN bytes of room) holds the plain bytes. */
int chunk_decode(ZSTD_DCtx *dctx, const unsigned char *rec, size_t rec_len, unsigned char *plain,
                 size_t *plen_out, unsigned char hash_out[16]);
#endif

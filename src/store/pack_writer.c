/* pack_writer.c — appending chunk records to packs and naming them in the
 * index (see pack.h; the records are written by the flusher thread,
 * flusher.c; record layout in docs/FORMAT.md). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include "util/xxh.h"
#include "io/io.h"
#include "store/flusher.h"
#include "store/pack.h"
#include "store/pack_record.h"
#include "util/error.h"

static int flush(pack_writer *w) { return w->job_len ? flusher_hand_over(w, 0) : 0; }

/* Appends len bytes at p to the job: copied into the buffer (room was
 * checked), or pointed at if they last. Fails for want of memory only
 * through the segment list, which grows, or the buffer, made when first
 * needed: a session's checkpoint that only adopts records written ahead
 * (W2) copies nothing, and its two buffers' allocations (4 MiB, with the
 * page faults of their headers) were a tenth of its begin. */
static int job_add(pack_writer *w, const void *p, size_t len, int kind, int lasting)
{
	if (!len)
		return 0;
	if (!lasting && !w->buf && !(w->buf = pack_wbuf_alloc(!w->s->session)))
		return mtm_set_error(ENOMEM, "pack writer");
	if (!lasting) {
		memcpy(w->buf + w->buf_len, p, len);
		p = w->buf + w->buf_len;
		w->buf_len += len;
	}
	struct pack_seg *sg = vec_push(&w->segs);
	if (!sg)
		return mtm_set_error(ENOMEM, "pack writer");
	*sg = (struct pack_seg){p, len, kind};
	w->job_len += len;
	return 0;
}

static struct touched_pack *current(pack_writer *w)
{
	return w->touched.n ? &VEC_AT(&w->touched, struct touched_pack, w->touched.n - 1) : NULL;
}

/* Opens pack id for appending at committed size, or creates it. A file with
 * no index row is the unreferenced leftover of a crashed checkpoint: reused. */
/* pack_record.h: past FLUSH_AT, WBUF still holds one whole record */
_Static_assert(WBUF - FLUSH_AT >= CHUNK_HEADER_LEN + ZSTD_COMPRESSBOUND(CHUNK_MAX_PLAIN), "WBUF");

static int open_pack(pack_writer *w, int64_t id, uint64_t committed, int exists)
{
	char name[64];
	pack_name(name, sizeof name, id);
	int rc, fd;
	if (exists) {
		rc = io_open_regular(w->s->dirfd, name, O_RDWR | O_NOFOLLOW, &fd);
		if (!rc)
			rc = io_ftruncate(fd, (off_t)committed); /* drop a crashed writer's tail */
	} else {
		rc = io_openat(w->s->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600, &fd);
		w->created_any = 1;
	}
	if (rc)
		return mtm_set_errno(rc, "%s/.metamori/%s", w->s->root, name);
	struct touched_pack *t = vec_push(&w->touched);
	if (!t) {
		close(fd);
		return mtm_set_error(ENOMEM, "pack");
	}
	t->id = id;
	t->fd = fd;
	w->pack_id = id;
	w->fd = fd;
	w->buf_off = exists ? committed : 0;
	w->size = w->buf_off;
	if (!exists) { /* (the job is empty here: a new pack follows a flush) */
		unsigned char h[PACK_HEADER_LEN];
		memcpy(h, PACK_MAGIC, PACK_MAGIC_LEN);
		put64(h + 8, (uint64_t)id);
		if ((rc = job_add(w, h, sizeof h, SEG_RAW, 0)))
			return rc;
		w->size = sizeof h;
	}
	/* what finish records if nothing is appended: never less than what is
	 * committed, or the next writer would truncate committed chunks away */
	t->size = w->size;
	t->start = w->buf_off;
	assert(t->size >= (exists ? committed : 0) && w->buf_off <= w->size);
	return 0;
}

/* The writer's buffers, codec and thread (no index statements). */
static int writer_init(pack_writer *w, mtm_store *s)
{
	memset(w, 0, sizeof *w);
	w->s = s;
	w->fd = -1;
	w->touched = (vec)VEC_INIT(struct touched_pack);
	w->segs = (vec)VEC_INIT(struct pack_seg);
	/* (w->buf: job_add makes it) */
	w->cbuf = malloc(ZSTD_compressBound(CHUNK_MAX_PLAIN));
	w->cctx = ZSTD_createCCtx();
	w->drop_cache = w->room = s->session != NULL;
	w->gbuf = malloc(CHUNK_MAX_PLAIN);
	w->hstate = XXH3_createState();
	if (!w->cbuf || !w->cctx || !w->gbuf || !w->hstate)
		return mtm_set_error(ENOMEM, "pack writer");
	MTM_TRY(flusher_init(w));
	ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, 1);
	return 0;
}

/* The newest pack's id and committed size (0, 0: none yet). */
static int newest_pack(mtm_store *s, int64_t *id, uint64_t *size)
{
	static const char sql[] = "SELECT id, size FROM pack ORDER BY id DESC LIMIT 1";
	sqlite3_stmt *st;
	MTM_TRY(db_cached(s, sql, sql, &st));
	*id = 0;
	*size = 0;
	int rc;
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
		*size = (uint64_t)sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

/* 1 if the records written ahead are still where they were written: the
 * pack's row still says base (nobody committed into it since), and its
 * file is the one written to (not rewritten by prune's gc, not replaced),
 * at least end long. Anything else: they are not used. */
static int ahead_intact(pack_writer *w, const pack_ahead *a, int fd)
{
	static const char sql[] = "SELECT size FROM pack WHERE id=?";
	sqlite3_stmt *st;
	if (db_cached(w->s, sql, sql, &st))
		return 0;
	sqlite3_bind_int64(st, 1, a->pack);
	int ok = sqlite3_step(st) == SQLITE_ROW && (uint64_t)sqlite3_column_int64(st, 0) == a->base;
	sqlite3_reset(st);
	struct stat sb;
	return ok && !fstat(fd, &sb) && (int64_t)sb.st_dev == a->dev && (int64_t)sb.st_ino == a->ino &&
	       (uint64_t)sb.st_size >= a->end;
}

/* Continues pack a->pack after the records written ahead, if intact. */
static int continue_ahead(pack_writer *w, const pack_ahead *a)
{
	char name[64];
	pack_name(name, sizeof name, a->pack);
	int fd;
	if (io_open_regular(w->s->dirfd, name, O_RDWR | O_NOFOLLOW, &fd))
		return 0; /* (gone: the normal way reports what is wrong, if anything) */
	if (!ahead_intact(w, a, fd)) {
		close(fd);
		return 0;
	}
	struct touched_pack *t = vec_push(&w->touched);
	if (!t) {
		close(fd);
		return mtm_set_error(ENOMEM, "pack");
	}
	*t = (struct touched_pack){a->pack, fd, a->base, a->end};
	w->pack_id = a->pack;
	w->fd = fd;
	w->buf_off = w->size = a->end;
	w->ahead = *a;
	w->ahead_kept = 1;
	return 1;
}

/* The records written ahead are what a session's commit mostly waits for
 * the disk to keep (W2: all 200 blocks; the fsync then costs about what the
 * whole floor does, ~1.5 ms here). Their fsync starts now, in the writer's
 * thread, and runs while the checkpoint collects and records; if nothing
 * is appended after them, the commit only waits for it (an fsync done early
 * orders nothing wrong: the index still names the records only after it
 * returned). */
static int sync_ahead_early(pack_writer *w)
{
	if (w->ahead.end <= w->ahead.base)
		return 0; /* nothing written ahead: nothing to gain */
	assert(!w->job_len && w->touched.n == 1); /* (continue_ahead: nothing buffered yet, the one pack) */
	if (w->ahead.synced) {
		/* fsynced by the writer that wrote them, after their last write
		 * (the session's, once the program was quiet): already what this
		 * fsync would give. Another would still cost the disk's cache
		 * flush (0.3-0.9 ms here), and a commit that appends nothing
		 * waited for it: now it waits for no pack fsync at all */
		w->early_sync = 1;
		w->early_size = w->size;
		return 0;
	}
	MTM_TRY(flusher_hand_over(w, FLUSH_SYNC_AHEAD));
	w->early_sync = 1;
	w->early_size = w->size;
	return 0;
}

int pack_writer_begin(pack_writer *w, mtm_store *s, const pack_begin_opts *o)
{
	MTM_TRY(writer_init(w, s));
	/* (the handle's statements: db_cached) */
	static const char find[] = "SELECT id FROM chunk WHERE hash=?";
	static const char insert[] = "INSERT INTO chunk(hash,pack,off,clen,plen,codec) VALUES(?,?,?,?,?,?)";
	int rc;
	MTM_TRY(db_cached(s, find, find, &w->find));
	MTM_TRY(db_cached(s, insert, insert, &w->insert));
	if (o && o->ahead && (rc = continue_ahead(w, o->ahead)))
		return rc < 0 ? rc : sync_ahead_early(w);
	/* continue the newest pack if it is not full */
	int64_t id;
	uint64_t size;
	MTM_TRY(newest_pack(s, &id, &size));
	if (id > 0 && size < MTM_PACK_TARGET && !(o && o->fresh))
		return open_pack(w, id, size, 1);
	return open_pack(w, id + 1, 0, 0);
}

int pack_writer_begin_ahead(pack_writer *w, mtm_store *s, pack_ahead *out)
{
	MTM_TRY(writer_init(w, s));
	int64_t id;
	uint64_t size;
	MTM_TRY(newest_pack(s, &id, &size));
	if (id <= 0 || size >= MTM_PACK_TARGET)
		return 1; /* a new pack is the checkpoint's to create (it names it in the index) */
	MTM_TRY(open_pack(w, id, size, 1)); /* (cutting what an earlier attempt left past size) */
	struct stat sb;
	if (fstat(w->fd, &sb))
		return mtm_set_errno(errno, "%s/.metamori/packs", s->root);
	*out = (pack_ahead){id, size, size, (int64_t)sb.st_dev, (int64_t)sb.st_ino, 0};
	return 0;
}

/* Copies the pieces one after the other into dst (for zstd). */
static void gather(unsigned char *dst, const pack_piece *pc, int n)
{
	for (int i = 0; i < n; dst += pc[i].len, i++)
		memcpy(dst, pc[i].data, pc[i].len);
}

/* Compresses plain[len] into w->cbuf: whether that pays (at least ~3%
 * smaller), and then its size in *z. */
static int pays(pack_writer *w, const void *plain, size_t len, size_t *z)
{
	w->zstd_in += len;
	size_t c = ZSTD_compress2(w->cctx, w->cbuf, ZSTD_compressBound(CHUNK_MAX_PLAIN), plain, len);
	if (ZSTD_isError(c) || c + c / 32 >= len)
		return 0;
	if (z)
		*z = c;
	return 1;
}

/* The XXH3-128 of the pieces: the chunk's identity. */
static void chunk_hash(pack_writer *w, const pack_piece *pc, int n, size_t len, XXH128_canonical_t *hc)
{
	if (n == 1) {
		XXH128_canonicalFromHash(hc, XXH3_128bits(pc[0].data, len));
		return;
	}
	XXH3_128bits_reset(w->hstate);
	for (int i = 0; i < n; i++)
		XXH3_128bits_update(w->hstate, pc[i].data, pc[i].len);
	XXH128_canonicalFromHash(hc, XXH3_128bits_digest(w->hstate));
}

/* *chunk_id of the chunk with this hash, 0 if none. */
static int find_chunk(pack_writer *w, const unsigned char hash[16], int64_t *chunk_id)
{
	*chunk_id = 0;
	sqlite3_reset(w->find);
	sqlite3_bind_blob(w->find, 1, hash, 16, SQLITE_STATIC);
	int rc = sqlite3_step(w->find);
	if (rc == SQLITE_ROW)
		*chunk_id = sqlite3_column_int64(w->find, 0);
	sqlite3_reset(w->find);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(w->s, rc, "index");
}

/* Names the record at loc in the open transaction. */
static int insert_chunk(pack_writer *w, const pack_loc *loc, int64_t *chunk_id)
{
	sqlite3_reset(w->insert);
	sqlite3_bind_blob(w->insert, 1, loc->hash, 16, SQLITE_STATIC);
	sqlite3_bind_int64(w->insert, 2, loc->pack);
	sqlite3_bind_int64(w->insert, 3, (int64_t)loc->off);
	sqlite3_bind_int64(w->insert, 4, (int64_t)loc->clen);
	sqlite3_bind_int64(w->insert, 5, (int64_t)loc->plen);
	sqlite3_bind_int64(w->insert, 6, loc->codec);
	int rc = sqlite3_step(w->insert);
	sqlite3_reset(w->insert);
	if (rc != SQLITE_DONE)
		return db_error(w->s, rc, "index");
	*chunk_id = sqlite3_last_insert_rowid(w->s->db);
	w->bytes_stored += CHUNK_HEADER_LEN + loc->clen;
	w->chunks_new++;
	return 0;
}

/* Appends the record of a chunk with hash hc: compressed if that pays. */
static int append_record(pack_writer *w, const pack_piece *pc, int n, size_t len, const XXH128_canonical_t *hc,
                         pack_loc *loc)
{
	int rc;
	/* Random or already-compressed data (the common case for simulation
	 * state and model weights) never pays for zstd, and trying costs more
	 * than the rest of the checkpoint: after RAW_STREAK chunks in a row that
	 * did not compress, the next SKIP_ZSTD are stored raw without trying.
	 * The count lives in the store handle: a session's checkpoints carry it
	 * over instead of paying RAW_STREAK tries each. A try compresses the
	 * chunk's first block alone first, and the whole chunk only if that
	 * pays: a try on random bytes costs a sixteenth of what it did (W1's
	 * tries were 0.3-0.9 ms of a tracked checkpoint). That first look is
	 * skipped right after a chunk that paid (zstd_paid): the next is
	 * compressed whole at once. On data that compresses (a
	 * database's pages: 8-37x) the look compressed the first block twice,
	 * 1.2x the zstd CPU of a whole 64 KiB chunk and 1.9x of an 8 KiB one
	 * (PostgreSQL's pgbench_accounts, level 1, one thread; P19). */
	enum { RAW_STREAK = 8, SKIP_ZSTD = 64 };
	size_t clen = len;
	int codec = CODEC_RAW;
	const void *data = NULL; /* NULL: the pieces, as they are */
	int *raw_streak = &w->s->zstd_raw_streak, *skip_zstd = &w->s->zstd_skip;
	if (*skip_zstd > 0) {
		(*skip_zstd)--;
	} else {
		size_t z = len;
		if (len <= MTM_BLOCK || w->s->zstd_paid ||
		    pays(w, pc[0].data, pc[0].len < MTM_BLOCK ? pc[0].len : MTM_BLOCK, NULL)) {
			const void *plain = pc[0].data;
			if (n > 1) { /* zstd wants them in one piece */
				gather(w->gbuf, pc, n);
				plain = w->gbuf;
			}
			(void)pays(w, plain, len, &z);
		}
		if (z < len) {
			codec = CODEC_ZSTD;
			clen = z;
			data = w->cbuf;
			*raw_streak = 0;
			w->s->zstd_paid = 1;
		} else {
			w->s->zstd_paid = 0;
			if (++*raw_streak >= RAW_STREAK) {
				*raw_streak = 0;
				*skip_zstd = SKIP_ZSTD;
			}
		}
	}
	if (w->size >= MTM_PACK_TARGET) {
		if ((rc = flush(w)))
			return rc;
		if ((rc = open_pack(w, w->pack_id + 1, 0, 0)))
			return rc;
	}
	if (w->job_len + CHUNK_HEADER_LEN + clen > WBUF && (rc = flush(w)))
		return rc;
	assert(w->job_len + CHUNK_HEADER_LEN + clen <= WBUF); /* a flush empties the buffer */
	unsigned char h[CHUNK_HEADER_LEN];
	chunk_header_put(h, codec, (uint32_t)len, (uint32_t)clen, hc->digest); /* the check: the thread fills it in */
	/* a raw chunk's lasting pieces are written from where they lie: W1's
	 * 11.2 MiB were copied into the buffer only to be copied again by
	 * the write (1-2.5 ms of the checkpoint's own thread) */
	if ((rc = job_add(w, h, sizeof h, SEG_HDR, 0)))
		return rc;
	if (data)
		rc = job_add(w, data, clen, SEG_DATA, 0);
	for (int i = 0; !data && !rc && i < n; i++)
		rc = job_add(w, pc[i].data, pc[i].len, SEG_DATA, pc[i].lasting);
	if (rc)
		return rc;
	uint64_t off = w->size;
	w->size += CHUNK_HEADER_LEN + clen;
	current(w)->size = w->size;
	*loc = (pack_loc){w->pack_id, off, (uint32_t)clen, (uint32_t)len, codec, {0}};
	memcpy(loc->hash, hc->digest, 16);
	return 0;
}

int pack_putv(pack_writer *w, const pack_piece *pc, int n, size_t len, int64_t *chunk_id)
{
	XXH128_canonical_t hc;
	chunk_hash(w, pc, n, len, &hc);
	MTM_TRY(find_chunk(w, hc.digest, chunk_id));
	if (*chunk_id)
		return 0;
	pack_loc loc;
	MTM_TRY(append_record(w, pc, n, len, &hc, &loc));
	MTM_TRY(insert_chunk(w, &loc, chunk_id));
	return w->job_len >= FLUSH_AT ? flush(w) : 0;
}

int pack_put_ahead(pack_writer *w, const pack_piece *pc, int n, size_t len, pack_loc *loc)
{
	if (w->size >= MTM_PACK_TARGET)
		return 1; /* (the pack is full: the rest is the checkpoint's) */
	XXH128_canonical_t hc;
	chunk_hash(w, pc, n, len, &hc);
	MTM_TRY(append_record(w, pc, n, len, &hc, loc));
	return w->job_len >= FLUSH_AT ? flush(w) : 0;
}

int pack_writer_push(pack_writer *w) { return flush(w); }

int pack_writer_drain(pack_writer *w) { return w->fl ? flusher_wait(w) : 0; }

int pack_writer_busy(pack_writer *w) { return flusher_busy(w); }

/* (FLUSH_SYNC_AHEAD: the current pack's fd only; a writer that writes
 * ahead has the one pack. The range that leaves the page cache once
 * durable is w->ahead's (flusher_hand_over): for a writer that writes
 * ahead, what it wrote so far, which the continuing writer no longer
 * drops when it makes no fsync of its own for them) */
int pack_writer_sync_soon(pack_writer *w)
{
	struct touched_pack *t = current(w);
	if (t && !w->ahead_kept) {
		w->ahead.base = t->start;
		w->ahead.end = w->size;
	}
	return flusher_hand_over(w, FLUSH_SYNC_AHEAD);
}

int pack_writer_synced(pack_writer *w)
{
	return !w->job_len && w->fl && !flusher_busy(w) && flusher_synced(w);
}

int pack_cut_tail(mtm_store *s, int64_t id)
{
	static const char sql[] = "SELECT size FROM pack WHERE id=?";
	sqlite3_stmt *st;
	MTM_TRY(db_cached(s, sql, sql, &st));
	sqlite3_bind_int64(st, 1, id);
	int rc = sqlite3_step(st);
	int64_t size = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_error(s, rc, "index");
	char name[64];
	int fd;
	pack_name(name, sizeof name, id);
	if (size < 0 || io_open_regular(s->dirfd, name, O_RDWR | O_NOFOLLOW, &fd))
		return 0; /* (no row: not ours to cut; gone: nothing to cut) */
	struct stat sb;
	rc = fstat(fd, &sb) ? errno : sb.st_size > size ? io_ftruncate(fd, (off_t)size) : 0;
	close(fd);
	return rc ? mtm_set_errno(rc, "%s/.metamori/%s", s->root, name) : 0;
}

int pack_adopt(pack_writer *w, const pack_loc *loc, int64_t *chunk_id)
{
	if (!w->ahead_kept || loc->pack != w->ahead.pack || loc->off < w->ahead.base ||
	    loc->off + CHUNK_HEADER_LEN + loc->clen > w->ahead.end)
		return mtm_set_error(MTM_EINVAL, "pack: a record written ahead is not there to adopt");
	MTM_TRY(find_chunk(w, loc->hash, chunk_id));
	if (*chunk_id)
		return 0; /* an identical chunk exists: the record written ahead stays dead */
	MTM_TRY(insert_chunk(w, loc, chunk_id));
	w->ahead_adopted += CHUNK_HEADER_LEN + loc->clen;
	return 0;
}

/* Nothing appended since the early fsync of the records written ahead
 * (sync_ahead_early): that fsync, once done, is all the commit needs. */
static int early_sync_enough(const pack_writer *w)
{
	return w->early_sync && w->size == w->early_size && !w->job_len && w->touched.n == 1;
}

int pack_writer_sync_early(pack_writer *w, int *begun)
{
	*begun = 0;
	if (w->touched.n != 1 || w->created_any || early_sync_enough(w) || !w->fl || flusher_busy(w))
		return 0;
	MTM_TRY(flusher_hand_over(w, FLUSH_SYNC_EARLY));
	w->early_sync = 1;
	w->early_size = w->size;
	*begun = 1;
	return 0;
}

int pack_writer_sync_begin(pack_writer *w)
{
	w->sync_begun = 1;
	return early_sync_enough(w) ? 0 : flusher_hand_over(w, 1);
}

int pack_writer_finish(pack_writer *w)
{
	int rc = w->sync_begun || early_sync_enough(w) ? 0 : flusher_hand_over(w, 1);
	if (!rc)
		rc = flusher_wait(w);
	if (rc)
		return rc;
	/* (it cannot be otherwise: flusher_wait would have said why; or nothing
	 * was appended after records their own writer had fsynced) */
	if (!flusher_synced(w) && !(w->ahead.synced && early_sync_enough(w)))
		return mtm_set_error(EIO, "%s/.metamori/packs: not synced", w->s->root);
	flusher_stop(w); /* the last job: the thread ends while the index commits */
	static const char upsert[] = "INSERT INTO pack(id,size) VALUES(?,?) ON CONFLICT(id) DO UPDATE SET size=excluded.size";
	sqlite3_stmt *st;
	MTM_TRY(db_cached(w->s, upsert, upsert, &st));
	for (size_t i = 0; i < w->touched.n; i++) {
		struct touched_pack *t = &VEC_AT(&w->touched, struct touched_pack, i);
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, t->id);
		sqlite3_bind_int64(st, 2, (int64_t)t->size);
		if ((rc = sqlite3_step(st)) != SQLITE_DONE) {
			sqlite3_reset(st);
			return db_error(w->s, rc, "index");
		}
	}
	sqlite3_reset(st);
	if (w->ahead_kept && w->ahead.end - w->ahead.base > w->ahead_adopted) {
		/* records written ahead that no block took: dead, for gc to
		 * reclaim (a cached statement: none prepared between the pack's
		 * fsync and the index COMMIT) */
		static const char dead[] = "UPDATE pack SET dead = dead + ? WHERE id = ?";
		MTM_TRY(db_cached(w->s, dead, dead, &st));
		sqlite3_bind_int64(st, 1, (int64_t)(w->ahead.end - w->ahead.base - w->ahead_adopted));
		sqlite3_bind_int64(st, 2, w->ahead.pack);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return db_error(w->s, rc, "index");
	}
	return 0;
}

void pack_writer_free(pack_writer *w)
{
	flusher_free(w); /* first: its job in hand may use the fds below */
	for (size_t i = 0; i < w->touched.n; i++)
		close(VEC_AT(&w->touched, struct touched_pack, i).fd);
	vec_free(&w->touched);
	vec_free(&w->segs);
	if (w->find) /* (the handle's: reset, not finalized) */
		sqlite3_reset(w->find);
	if (w->insert)
		sqlite3_reset(w->insert);
	ZSTD_freeCCtx(w->cctx);
	free(w->buf);
	free(w->cbuf);
	free(w->gbuf);
	XXH3_freeState(w->hstate);
	memset(w, 0, sizeof *w);
}

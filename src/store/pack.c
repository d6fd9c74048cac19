/* pack.c — see pack.h; record layout in docs/FORMAT.md. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <xxhash.h>
#include "io/io.h"
#include "store/flusher.h"
#include "store/pack.h"
#include "store/pack_record.h"
#include "util/error.h"

static void pack_name(char *buf, size_t len, int64_t id) { snprintf(buf, len, "packs/%08lld.pack", (long long)id); }

static int flush(pack_writer *w) { return w->job_len ? flusher_hand_over(w, 0) : 0; }

/* Appends len bytes at p to the job: copied into the buffer (room was
 * checked), or pointed at if they last. Never fails for want of memory
 * but through the segment list, which grows. */
static int job_add(pack_writer *w, const void *p, size_t len, int kind, int lasting)
{
	if (!len)
		return 0;
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
		rc = io_openat(w->s->dirfd, name, O_RDWR | O_NOFOLLOW, 0, &fd);
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
	w->buf = malloc(WBUF);
	w->cbuf = malloc(ZSTD_compressBound(CHUNK_MAX_PLAIN));
	w->cctx = ZSTD_createCCtx();
	w->drop_cache = s->session != NULL;
	w->gbuf = malloc(CHUNK_MAX_PLAIN);
	w->hstate = XXH3_createState();
	if (!w->buf || !w->cbuf || !w->cctx || !w->gbuf || !w->hstate)
		return mtm_set_error(ENOMEM, "pack writer");
	MTM_TRY(flusher_init(w));
	ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, 1);
	return 0;
}

/* The newest pack's id and committed size (0, 0: none yet). */
static int newest_pack(mtm_store *s, int64_t *id, uint64_t *size)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "SELECT id, size FROM pack ORDER BY id DESC LIMIT 1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	*id = 0;
	*size = 0;
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
		*size = (uint64_t)sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

/* 1 if the records written ahead are still where they were written: the
 * pack's row still says base (nobody committed into it since), and its
 * file is the one written to (not rewritten by prune's gc, not replaced),
 * at least end long. Anything else: they are not used. */
static int ahead_intact(pack_writer *w, const pack_ahead *a, int fd)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(w->s->db, "SELECT size FROM pack WHERE id=?", -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(st, 1, a->pack);
	int ok = sqlite3_step(st) == SQLITE_ROW && (uint64_t)sqlite3_column_int64(st, 0) == a->base;
	sqlite3_finalize(st);
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
	if (io_openat(w->s->dirfd, name, O_RDWR | O_NOFOLLOW, 0, &fd))
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

int pack_writer_begin(pack_writer *w, mtm_store *s, const pack_begin_opts *o)
{
	MTM_TRY(writer_init(w, s));
	int rc = sqlite3_prepare_v2(s->db, "SELECT id FROM chunk WHERE hash=?", -1, &w->find, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(s->db, "INSERT INTO chunk(hash,pack,off,clen,plen,codec) VALUES(?,?,?,?,?,?)",
		                        -1, &w->insert, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	if (o && o->ahead && (rc = continue_ahead(w, o->ahead)))
		return rc < 0 ? rc : 0;
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
	*out = (pack_ahead){id, size, size, (int64_t)sb.st_dev, (int64_t)sb.st_ino};
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
	 * tries were 0.3-0.9 ms of a tracked checkpoint). */
	enum { RAW_STREAK = 8, SKIP_ZSTD = 64 };
	size_t clen = len;
	int codec = CODEC_RAW;
	const void *data = NULL; /* NULL: the pieces, as they are */
	int *raw_streak = &w->s->zstd_raw_streak, *skip_zstd = &w->s->zstd_skip;
	if (*skip_zstd > 0) {
		(*skip_zstd)--;
	} else {
		size_t z = len;
		if (len <= MTM_BLOCK || pays(w, pc[0].data, pc[0].len < MTM_BLOCK ? pc[0].len : MTM_BLOCK, NULL)) {
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
		} else if (++*raw_streak >= RAW_STREAK) {
			*raw_streak = 0;
			*skip_zstd = SKIP_ZSTD;
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

int pack_writer_sync_begin(pack_writer *w)
{
	w->sync_begun = 1;
	return flusher_hand_over(w, 1);
}

int pack_writer_finish(pack_writer *w)
{
	int rc = w->sync_begun ? 0 : flusher_hand_over(w, 1);
	if (!rc)
		rc = flusher_wait(w);
	if (rc)
		return rc;
	if (!flusher_synced(w)) /* (it cannot be otherwise: flusher_wait would have said why) */
		return mtm_set_error(EIO, "%s/.metamori/packs: not synced", w->s->root);
	sqlite3_stmt *st;
	rc = sqlite3_prepare_v2(w->s->db, "INSERT INTO pack(id,size) VALUES(?,?) ON CONFLICT(id) DO UPDATE SET size=excluded.size", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(w->s, rc, "index");
	for (size_t i = 0; i < w->touched.n; i++) {
		struct touched_pack *t = &VEC_AT(&w->touched, struct touched_pack, i);
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, t->id);
		sqlite3_bind_int64(st, 2, (int64_t)t->size);
		if ((rc = sqlite3_step(st)) != SQLITE_DONE) {
			sqlite3_finalize(st);
			return db_error(w->s, rc, "index");
		}
	}
	sqlite3_finalize(st);
	if (w->ahead_kept && w->ahead.end - w->ahead.base > w->ahead_adopted) {
		/* records written ahead that no block took: dead, for gc to reclaim */
		rc = sqlite3_prepare_v2(w->s->db, "UPDATE pack SET dead = dead + ? WHERE id = ?", -1, &st, NULL);
		if (rc != SQLITE_OK)
			return db_error(w->s, rc, "index");
		sqlite3_bind_int64(st, 1, (int64_t)(w->ahead.end - w->ahead.base - w->ahead_adopted));
		sqlite3_bind_int64(st, 2, w->ahead.pack);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
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
	sqlite3_finalize(w->find);
	sqlite3_finalize(w->insert);
	ZSTD_freeCCtx(w->cctx);
	free(w->buf);
	free(w->cbuf);
	free(w->gbuf);
	XXH3_freeState(w->hstate);
	memset(w, 0, sizeof *w);
}

void chunk_header_put(unsigned char *rec, int codec, uint32_t plen, uint32_t clen, const unsigned char digest[16])
{
	assert(plen > 0 && plen <= CHUNK_MAX_PLAIN && (codec == CODEC_ZSTD || (codec == CODEC_RAW && clen == plen)));
	memcpy(rec, CHUNK_MAGIC, CHUNK_MAGIC_LEN);
	rec[4] = (unsigned char)codec;
	rec[5] = rec[6] = rec[7] = 0;
	put32(rec + 8, plen);
	put32(rec + 12, clen);
	memcpy(rec + 16, digest, 16);
	memset(rec + 32, 0, 8);
}

void chunk_check_put(unsigned char *rec, const unsigned char *data, size_t clen)
{
	put64(rec + 32, record_check(rec, data, clen));
}

int chunk_decode(ZSTD_DCtx *dctx, const unsigned char *rec, size_t rec_len, unsigned char *plain,
                 size_t *plen_out, unsigned char hash_out[16])
{
	if (rec_len < CHUNK_HEADER_LEN)
		return mtm_set_error(MTM_ECORRUPT, "chunk record is truncated");
	if (memcmp(rec, CHUNK_MAGIC, CHUNK_MAGIC_LEN) != 0)
		return mtm_set_error(MTM_ECORRUPT, "chunk record has a bad magic number");
	int codec = rec[4];
	uint32_t plen = get32(rec + 8), clen = get32(rec + 12);
	if (plen == 0 || plen > CHUNK_MAX_PLAIN || codec > CODEC_ZSTD || (codec == CODEC_RAW && clen != plen) ||
	    clen > ZSTD_compressBound(CHUNK_MAX_PLAIN))
		return mtm_set_error(MTM_ECORRUPT, "chunk header has impossible lengths or codec");
	if (rec_len < CHUNK_HEADER_LEN + (size_t)clen)
		return mtm_set_error(MTM_ECORRUPT, "chunk data is truncated");
	const unsigned char *data = rec + CHUNK_HEADER_LEN;
	if (get64(rec + 32) != record_check(rec, data, clen))
		return mtm_set_error(MTM_ECORRUPT, "chunk record checksum mismatch");
	if (codec == CODEC_RAW) {
		memcpy(plain, data, plen);
	} else {
		size_t n = ZSTD_decompressDCtx(dctx, plain, CHUNK_MAX_PLAIN, data, clen);
		if (ZSTD_isError(n) || n != plen)
			return mtm_set_error(MTM_ECORRUPT, "chunk does not decompress");
	}
	XXH128_canonical_t hc;
	XXH128_canonicalFromHash(&hc, XXH3_128bits(plain, plen));
	if (memcmp(hc.digest, rec + 16, 16) != 0)
		return mtm_set_error(MTM_ECORRUPT, "chunk checksum mismatch");
	*plen_out = plen;
	if (hash_out)
		memcpy(hash_out, hc.digest, 16);
	return 0;
}

/* A chunk's row: where its record is and what it holds. */
typedef struct {
	unsigned char hash[16];
	int hash_ok;
	int64_t pack, off, clen, plen;
	int codec;
} chunk_row;

int pack_reader_init(pack_reader *r, mtm_store *s)
{
	memset(r, 0, sizeof *r);
	r->s = s;
	r->willneed.fd = -1;
	r->memo_rows = (vec)VEC_INIT(chunk_row);
	for (int i = 0; i < 8; i++)
		r->fds[i].fd = -1;
	r->dctx = ZSTD_createDCtx();
	r->rbuf = malloc(CHUNK_HEADER_LEN + ZSTD_compressBound(CHUNK_MAX_PLAIN));
	for (int i = 0; i < 4; i++) {
		r->cache[i].data = malloc(CHUNK_MAX_PLAIN);
		if (!r->cache[i].data)
			return mtm_set_error(ENOMEM, "pack reader");
	}
	if (!r->dctx || !r->rbuf)
		return mtm_set_error(ENOMEM, "pack reader");
	int rc = sqlite3_prepare_v2(s->db, "SELECT hash, pack, off, clen, plen, codec FROM chunk WHERE id=?", -1,
	                            &r->lookup, NULL);
	return rc == SQLITE_OK ? 0 : db_error(s, rc, "index");
}

static int pack_fd(pack_reader *r, int64_t pack, int *fd)
{
	for (int i = 0; i < 8; i++)
		if (r->fds[i].fd >= 0 && r->fds[i].id == pack) {
			*fd = r->fds[i].fd;
			return 0;
		}
	char name[64];
	pack_name(name, sizeof name, pack);
	int slot = (int)(pack % 8), nfd;
	int rc = io_openat(r->s->dirfd, name, O_RDONLY | O_NOFOLLOW, 0, &nfd);
	if (rc)
		return mtm_set_error(rc == ENOENT ? MTM_ECORRUPT : rc, "%s/.metamori/%s: %s", r->s->root, name,
		                     rc == ENOENT ? "pack file is missing" : strerror(rc));
	if (r->fds[slot].fd >= 0) {
		if (r->fds[slot].fd == r->willneed.fd)
			pack_prefetch_flush(r); /* (while the fd is still that pack) */
		close(r->fds[slot].fd);
	}
	r->fds[slot].id = pack;
	r->fds[slot].fd = nfd;
	*fd = nfd;
	return 0;
}


/* Chunk rows pack_preload remembered: memo maps a chunk id to its index in
 * memo_rows + 1. At most MEMO_MAX; past it, rows are looked up each time. */
#define MEMO_MAX ((size_t)1 << 18)

static const chunk_row *memo_get(const pack_reader *r, int64_t id)
{
	const uint64_t *v = keymap_get(&r->memo, id, 0);
	return v && *v ? &VEC_AT(&r->memo_rows, chunk_row, *v - 1) : NULL;
}

int pack_chunk_where(const pack_reader *r, int64_t chunk_id, int64_t *pack, int64_t *off)
{
	const chunk_row *c = memo_get(r, chunk_id);
	if (c) {
		*pack = c->pack;
		*off = c->off;
	}
	return c != NULL;
}

static void memo_put(pack_reader *r, int64_t id, const chunk_row *c)
{
	int fresh;
	uint64_t *v = r->memo_rows.n < MEMO_MAX ? keymap_put(&r->memo, id, 0, &fresh) : NULL;
	chunk_row *row = v && fresh ? vec_push(&r->memo_rows) : NULL;
	if (!row)
		return; /* (a key left at 0 reads as absent: memo_get) */
	*row = *c;
	*v = r->memo_rows.n;
}

/* The columns of a chunk row from column col on (hash, pack, off, clen,
 * plen, codec). */
static void chunk_row_read(sqlite3_stmt *q, int col, chunk_row *c)
{
	memset(c->hash, 0, sizeof c->hash);
	c->hash_ok = sqlite3_column_bytes(q, col) == 16;
	if (c->hash_ok)
		memcpy(c->hash, sqlite3_column_blob(q, col), 16);
	c->pack = sqlite3_column_int64(q, col + 1);
	c->off = sqlite3_column_int64(q, col + 2);
	c->clen = sqlite3_column_int64(q, col + 3);
	c->plen = sqlite3_column_int64(q, col + 4);
	c->codec = sqlite3_column_int(q, col + 5);
}

/* Looks chunk_id up (MTM_ECORRUPT if no row names it). */
static int lookup_chunk(pack_reader *r, int64_t chunk_id, chunk_row *c)
{
	const chunk_row *kept = memo_get(r, chunk_id);
	if (kept) {
		*c = *kept;
		return 0;
	}
	sqlite3_reset(r->lookup);
	sqlite3_bind_int64(r->lookup, 1, chunk_id);
	int rc = sqlite3_step(r->lookup);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(r->lookup);
		if (rc == SQLITE_DONE)
			return mtm_set_error(MTM_ECORRUPT, "index: chunk %lld is referenced but missing", (long long)chunk_id);
		return db_error(r->s, rc, "index");
	}
	chunk_row_read(r->lookup, 0, c);
	sqlite3_reset(r->lookup);
	return 0;
}

/* Rows closer than this to the cursor are stepped to, not sought. */
#define PRELOAD_STEP 8

void pack_preload(pack_reader *r, const int64_t *ids, size_t n)
{
	sqlite3_stmt *q = NULL;
	if (sqlite3_prepare_v2(r->s->db, "SELECT id, hash, pack, off, clen, plen, codec FROM chunk WHERE id >= ?1 ORDER BY id",
	                       -1, &q, NULL) != SQLITE_OK)
		return; /* best effort: each lookup then seeks */
	int64_t cur = -1; /* the cursor's row id; -1: not on a row */
	for (size_t i = 0; i < n; i++) {
		int64_t want = ids[i];
		if (memo_get(r, want) || r->memo_rows.n >= MEMO_MAX)
			continue;
		if (cur < 0 || cur > want || want - cur > PRELOAD_STEP) {
			sqlite3_reset(q);
			sqlite3_bind_int64(q, 1, want);
			cur = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
		}
		while (cur >= 0 && cur < want)
			cur = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
		if (cur == want) {
			chunk_row c;
			chunk_row_read(q, 1, &c);
			memo_put(r, want, &c);
		} /* else missing: its lookup reports it */
	}
	sqlite3_finalize(q);
}

int pack_read(pack_reader *r, int64_t chunk_id, const unsigned char **plain, size_t *plen)
{
	pack_prefetch_flush(r);
	for (int i = 0; i < 4; i++)
		if (r->cache[i].id == chunk_id && r->cache[i].len) {
			*plain = r->cache[i].data;
			*plen = r->cache[i].len;
			return 0;
		}
	chunk_row c;
	int rc;
	MTM_TRY(lookup_chunk(r, chunk_id, &c));
	const unsigned char *want_hash = c.hash;
	int64_t pack = c.pack, off = c.off, clen = c.clen, want_plen = c.plen;
	if (!c.hash_ok || pack <= 0 || off < PACK_HEADER_LEN || clen <= 0 ||
	    (uint64_t)clen > ZSTD_compressBound(CHUNK_MAX_PLAIN) || want_plen <= 0 || want_plen > CHUNK_MAX_PLAIN)
		return mtm_set_error(MTM_ECORRUPT, "index: chunk %lld has an impossible location", (long long)chunk_id);
	int fd = -1;
	MTM_TRY(pack_fd(r, pack, &fd));
	size_t got, need = CHUNK_HEADER_LEN + (size_t)clen;
	if ((rc = io_pread(fd, r->rbuf, need, (off_t)off, &got)))
		return mtm_set_errno(rc, "%s/.metamori/packs: reading pack %lld", r->s->root, (long long)pack);
	r->bytes_read += got;
	int slot = (int)(r->next_victim++ % 4);
	r->cache[slot].len = 0;
	size_t n;
	unsigned char h[16];
	if ((rc = chunk_decode(r->dctx, r->rbuf, got, r->cache[slot].data, &n, h)))
		return mtm_set_error(rc, "pack %lld offset %lld (chunk %lld): %s", (long long)pack, (long long)off,
		                     (long long)chunk_id, mtm_last_error());
	if ((int64_t)n != want_plen || memcmp(h, want_hash, 16) != 0 || (int64_t)get32(r->rbuf + 12) != clen)
		return mtm_set_error(MTM_ECORRUPT, "pack %lld offset %lld (chunk %lld): chunk does not match the index",
		                     (long long)pack, (long long)off, (long long)chunk_id);
	r->cache[slot].id = chunk_id;
	r->cache[slot].len = n;
	*plain = r->cache[slot].data;
	*plen = n;
	return 0;
}

int pack_read_block(pack_reader *r, int64_t chunk_id, int64_t boff, uint64_t hash, unsigned char *out)
{
	pack_prefetch_flush(r);
	chunk_row c;
	int rc;
	MTM_TRY(lookup_chunk(r, chunk_id, &c));
	int64_t pack = c.pack, off = c.off, clen = c.clen, plen = c.plen;
	int codec = c.codec;
	const unsigned char *plain;
	size_t n;
	uint64_t sum = 0;
	if (codec != CODEC_RAW || clen != plen || boff < 0 || boff * MTM_BLOCK >= plen || pack <= 0 ||
	    off < PACK_HEADER_LEN || plen > CHUNK_MAX_PLAIN) {
		/* compressed (or a row pack_read will reject with the right words) */
		MTM_TRY(pack_read(r, chunk_id, &plain, &n));
		size_t from = (size_t)boff * MTM_BLOCK, have = from < n ? n - from : 0;
		if (have > MTM_BLOCK)
			have = MTM_BLOCK;
		memcpy(out, plain + (from < n ? from : n), have);
		memset(out + have, 0, MTM_BLOCK - have);
		sum = XXH3_64bits(out, MTM_BLOCK);
	} else {
		int fd = -1;
		MTM_TRY(pack_fd(r, pack, &fd));
		size_t have = (size_t)(plen - boff * MTM_BLOCK);
		if (have > MTM_BLOCK)
			have = MTM_BLOCK;
		if ((rc = io_pread(fd, out, have, (off_t)(off + CHUNK_HEADER_LEN + boff * MTM_BLOCK), &n)))
			return mtm_set_errno(rc, "%s/.metamori/packs: reading pack %lld", r->s->root, (long long)pack);
		r->bytes_read += n;
		memset(out + n, 0, MTM_BLOCK - n);
		if (n < have || (sum = XXH3_64bits(out, MTM_BLOCK)) != hash) {
			/* what is wrong: the record (its header) or the block in it */
			size_t got = 0;
			if (!r->blockbuf && !(r->blockbuf = malloc(CHUNK_HEADER_LEN)))
				return mtm_set_error(ENOMEM, "pack reader");
			if ((rc = io_pread(fd, r->blockbuf, CHUNK_HEADER_LEN, (off_t)off, &got)))
				return mtm_set_errno(rc, "%s/.metamori/packs: reading pack %lld", r->s->root, (long long)pack);
			if (n < have || got < CHUNK_HEADER_LEN || memcmp(r->blockbuf, CHUNK_MAGIC, CHUNK_MAGIC_LEN) != 0 ||
			    r->blockbuf[4] != CODEC_RAW || get32(r->blockbuf + 8) != (uint32_t)plen ||
			    get32(r->blockbuf + 12) != (uint32_t)clen)
				return mtm_set_error(MTM_ECORRUPT,
				                     "pack %lld offset %lld (chunk %lld): chunk record does not match the index",
				                     (long long)pack, (long long)off, (long long)chunk_id);
		}
	}
	if (sum != hash)
		return mtm_set_error(MTM_ECORRUPT, "pack %lld offset %lld (chunk %lld): block %lld does not match its hash",
		                     (long long)pack, (long long)off, (long long)chunk_id, (long long)boff);
	return 0;
}

void pack_prefetch(pack_reader *r, int64_t chunk_id, int64_t boff, int whole)
{
	chunk_row c;
	int fd = -1;
	if (lookup_chunk(r, chunk_id, &c)) { /* the read itself reports it */
		mtm_clear_error();
		return;
	}
	int64_t pack = c.pack, off = c.off, clen = c.clen, plen = c.plen;
	int codec = c.codec;
	if (pack <= 0 || off < PACK_HEADER_LEN || clen <= 0 || clen > CHUNK_MAX_PLAIN * 2 || pack_fd(r, pack, &fd)) {
		mtm_clear_error();
		return;
	}
	int64_t from = off, to = off + CHUNK_HEADER_LEN + clen;
	if (!whole && codec == CODEC_RAW && clen == plen) {
		from = off + CHUNK_HEADER_LEN + boff * MTM_BLOCK;
		to = from + MTM_BLOCK;
	}
	/* A restore announces its blocks in the order they lie: the blocks of
	 * one record, and records written one after the other, go to the
	 * kernel as one range (one call and one larger read, where there was
	 * one of each per 4 KiB block), reading a little between them. */
	enum { GAP = 64 << 10 };
	if (r->willneed.fd == fd && from >= r->willneed.from && from <= r->willneed.to + GAP) {
		if (to > r->willneed.to)
			r->willneed.to = to;
		return;
	}
	pack_prefetch_flush(r);
	r->willneed.fd = fd;
	r->willneed.from = from;
	r->willneed.to = to;
}

void pack_prefetch_flush(pack_reader *r)
{
	if (r->willneed.fd >= 0 && r->willneed.to > r->willneed.from)
		posix_fadvise(r->willneed.fd, (off_t)r->willneed.from, (off_t)(r->willneed.to - r->willneed.from), POSIX_FADV_WILLNEED);
	r->willneed.fd = -1;
}

int pack_block_if_cached(pack_reader *r, int64_t chunk_id, int64_t boff, uint64_t hash, unsigned char *out)
{
	chunk_row c;
	int fd = -1;
	if (lookup_chunk(r, chunk_id, &c)) {
		mtm_clear_error();
		return 0;
	}
	if (c.codec == CODEC_RAW && c.clen == c.plen && boff >= 0 && boff * MTM_BLOCK < c.plen && c.pack > 0 &&
	    c.off >= PACK_HEADER_LEN && c.plen <= CHUNK_MAX_PLAIN && !pack_fd(r, c.pack, &fd)) {
		size_t have = (size_t)(c.plen - boff * MTM_BLOCK);
		if (have > MTM_BLOCK)
			have = MTM_BLOCK;
		struct iovec iov = {out, have};
		/* the read itself, if it need not wait for the disk (no fault
		 * point: anything but a whole, matching block is left to it) */
		ssize_t n = preadv2(fd, &iov, 1, (off_t)(c.off + CHUNK_HEADER_LEN + boff * MTM_BLOCK), RWF_NOWAIT);
		if (n == (ssize_t)have) {
			memset(out + have, 0, MTM_BLOCK - have);
			if (XXH3_64bits(out, MTM_BLOCK) == hash) {
				r->bytes_read += have;
				return 1;
			}
		}
	}
	mtm_clear_error();
	pack_prefetch(r, chunk_id, boff, 0);
	return 0;
}

void pack_reader_free(pack_reader *r)
{
	r->willneed.fd = -1; /* (nothing to announce: nobody reads now) */
	for (int i = 0; i < 8; i++)
		if (r->fds[i].fd >= 0)
			close(r->fds[i].fd);
	for (int i = 0; i < 4; i++)
		free(r->cache[i].data);
	sqlite3_finalize(r->lookup);
	ZSTD_freeDCtx(r->dctx);
	free(r->rbuf);
	free(r->blockbuf);
	keymap_free(&r->memo);
	vec_free(&r->memo_rows);
	memset(r, 0, sizeof *r);
}

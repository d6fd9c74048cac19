/*
 * gc.c — giving the space of dead chunks back.
 *
 * A pack whose dead fraction reaches the threshold is rewritten: its live
 * records are read, verified (damage is never copied forward) and appended
 * to a new pack; the new pack and the packs directory are fsynced; then one
 * index transaction moves the chunk rows to the new pack and drops the old
 * pack rows; only after that commit are the old files removed. A crash at
 * any point leaves a valid store: before the commit the new pack is an
 * unknown file, after it the old ones are; the next prune removes either.
 *
 * Compaction: a chunk holds up to 16 blocks, and once some of them are used
 * by no row any more (their checkpoints were pruned, later ones rewrote
 * them) it is copied with only the blocks still used, in order, under the
 * same chunk id; the block rows' boff follow in the same transaction. So the
 * space returned is counted in blocks, not only in whole chunks. (A chunk
 * whose compacted bytes equal another chunk's is copied whole instead: the
 * hash stays unique.)
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/io.h"
#include "prune/prune.h"
#include "store/pack.h"
#include "util/error.h"
#include "util/xxh.h"

static void pack_file_name(char *buf, size_t len, int64_t id) { snprintf(buf, len, "packs/%08lld.pack", (long long)id); }

uint64_t store_disk_bytes(mtm_store *s)
{
	uint64_t total = 0;
	struct stat st;
	static const char *files[] = {"index.db", "index.db-wal", "index.db-shm", NULL};
	for (int i = 0; files[i]; i++)
		if (!fstatat(s->dirfd, files[i], &st, AT_SYMLINK_NOFOLLOW))
			total += (uint64_t)st.st_size;
	DIR *d;
	if (io_opendirat(s->dirfd, "packs", &d))
		return total;
	struct dirent *de;
	while (!io_readdir(d, &de) && de) /* (a listing cut short: what was counted) */
		if (!fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) && S_ISREG(st.st_mode))
			total += (uint64_t)st.st_size;
	closedir(d);
	return total;
}

/* Removes pack files the index does not name: leftovers of an interrupted
 * checkpoint or gc. We hold the writer lock, so nobody is writing one. */
static int sweep_unknown(mtm_store *s, mtm_prune_stats *stats)
{
	DIR *d;
	int err = io_opendirat(s->dirfd, "packs", &d);
	if (err)
		return mtm_set_errno(err, "%s/.metamori/packs", s->root);
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(s->db, "SELECT 1 FROM pack WHERE id=?", -1, &q, NULL);
	if (rc != SQLITE_OK) {
		closedir(d);
		return db_error(s, rc, "gc");
	}
	struct dirent *de;
	int removed = 0;
	while (!err && !(err = io_readdir(d, &de)) && de) {
		long long id;
		char tail[8];
		if (strlen(de->d_name) != 13 || sscanf(de->d_name, "%8lld.pa%7s", &id, tail) != 2 || strcmp(tail, "ck"))
			continue;
		sqlite3_reset(q);
		sqlite3_bind_int64(q, 1, id);
		rc = sqlite3_step(q);
		if (rc == SQLITE_DONE) {
			err = io_unlinkat(dirfd(d), de->d_name, 0);
			if (err)
				mtm_set_errno(err, "%s/.metamori/packs/%s", s->root, de->d_name);
			removed++;
			stats->packs_removed++;
		} else if (rc != SQLITE_ROW) {
			err = db_error(s, rc, "gc");
		}
	}
	if (err && !de)
		mtm_set_errno(err, "%s/.metamori/packs: listing", s->root);
	sqlite3_finalize(q);
	closedir(d);
	if (!err && removed && (err = io_fsync_dirat(s->dirfd, "packs")))
		mtm_set_errno(err, "%s/.metamori/packs", s->root);
	return err;
}

typedef struct {
	int64_t chunk, pack, off;
	int compact;              /* rewritten with only the used blocks: */
	int64_t clen, plen;
	int codec;
	unsigned char hash[16];
	signed char map[MTM_CHUNK_BLOCKS]; /* old boff -> new boff, -1 unused */
} moved;

/* Scratch for compaction. */
typedef struct {
	ZSTD_CCtx *cctx;
	unsigned char *cbuf, *plain2;
	sqlite3_stmt *boffs, *hash_known, *hash_add;
} compactor;

/* Builds the compacted record of a chunk in rec2 when some of its blocks are
 * unused: 0 and *len set, or 0 and *len = 0 to copy the record as it is. */
static int compact_chunk(mtm_store *s, compactor *cp, int64_t id, const unsigned char *plain, size_t plen,
                         moved *m, unsigned char *rec2, size_t *len)
{
	*len = 0;
	int nblk = (int)((plen + MTM_BLOCK - 1) / MTM_BLOCK), used = 0, rc;
	char live[MTM_CHUNK_BLOCKS] = {0};
	sqlite3_reset(cp->boffs);
	sqlite3_bind_int64(cp->boffs, 1, id);
	while ((rc = sqlite3_step(cp->boffs)) == SQLITE_ROW) {
		int64_t b = sqlite3_column_int64(cp->boffs, 0);
		if (b >= 0 && b < nblk && !live[b]) {
			live[b] = 1;
			used++;
		}
	}
	sqlite3_reset(cp->boffs);
	if (rc != SQLITE_DONE)
		return db_error(s, rc, "gc");
	if (used == 0 || used == nblk)
		return 0;
	size_t np = 0;
	for (int b = 0; b < nblk; b++) {
		m->map[b] = -1;
		if (!live[b])
			continue;
		size_t from = (size_t)b * MTM_BLOCK, n = plen - from < MTM_BLOCK ? plen - from : MTM_BLOCK;
		memcpy(cp->plain2 + np, plain + from, n);
		m->map[b] = (signed char)(np / MTM_BLOCK);
		np += n;
	}
	XXH128_canonical_t hc;
	XXH128_canonicalFromHash(&hc, XXH3_128bits(cp->plain2, np));
	/* the hash must stay unique: another chunk (or one compacted in this
	 * run) with these bytes means copying this one whole */
	sqlite3_reset(cp->hash_known);
	sqlite3_bind_blob(cp->hash_known, 1, hc.digest, 16, SQLITE_STATIC);
	rc = sqlite3_step(cp->hash_known);
	sqlite3_reset(cp->hash_known);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc != SQLITE_DONE)
		return db_error(s, rc, "gc");
	sqlite3_reset(cp->hash_add);
	sqlite3_bind_blob(cp->hash_add, 1, hc.digest, 16, SQLITE_STATIC);
	rc = sqlite3_step(cp->hash_add);
	sqlite3_reset(cp->hash_add);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return 0;
	if (rc != SQLITE_DONE)
		return db_error(s, rc, "gc");
	/* the same codec rule as checkpoints (pack_writer.c) */
	size_t clen = ZSTD_compress2(cp->cctx, cp->cbuf, ZSTD_compressBound(CHUNK_MAX_PLAIN), cp->plain2, np);
	int codec = CODEC_ZSTD;
	const unsigned char *data = cp->cbuf;
	if (ZSTD_isError(clen) || clen + clen / 32 >= np) {
		codec = CODEC_RAW;
		clen = np;
		data = cp->plain2;
	}
	unsigned char *h = rec2;
	chunk_header_put(h, codec, (uint32_t)np, (uint32_t)clen, hc.digest);
	memcpy(h + CHUNK_HEADER_LEN, data, clen);
	chunk_check_put(h, h + CHUNK_HEADER_LEN, clen);
	m->compact = 1;
	m->clen = (int64_t)clen;
	m->plen = (int64_t)np;
	m->codec = codec;
	memcpy(m->hash, hc.digest, 16);
	*len = CHUNK_HEADER_LEN + clen;
	return 0;
}
typedef struct { int64_t id; uint64_t size; } out_pack;

/* The packs gc writes: a new one is started when the current one reaches
 * the pack size target, as checkpoints do. */
typedef struct {
	mtm_store *s;
	int fd;
	vec outs; /* out_pack, the last one open */
	int64_t next_id;
} gc_writer;

static int out_open(gc_writer *w)
{
	char name[64];
	int64_t id = w->next_id++;
	pack_file_name(name, sizeof name, id);
	int err = io_openat(w->s->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600, &w->fd);
	if (err) {
		w->fd = -1;
		return mtm_set_errno(err, "%s/.metamori/%s", w->s->root, name);
	}
	out_pack *o = vec_push(&w->outs);
	if (!o)
		return mtm_set_error(ENOMEM, "gc");
	o->id = id;
	o->size = PACK_HEADER_LEN;
	unsigned char hdr[PACK_HEADER_LEN];
	memcpy(hdr, PACK_MAGIC, PACK_MAGIC_LEN);
	for (int i = 0; i < 8; i++)
		hdr[8 + i] = (unsigned char)((uint64_t)id >> (8 * i));
	if ((err = io_pwrite(w->fd, hdr, sizeof hdr, 0)))
		return mtm_set_errno(err, "%s/.metamori/%s", w->s->root, name);
	return 0;
}

/* The copies are durable before the index names them. */
static int out_close(gc_writer *w)
{
	if (w->fd < 0)
		return 0;
	int err = io_fsync(w->fd);
	close(w->fd);
	w->fd = -1;
	if (err) {
		char name[64];
		pack_file_name(name, sizeof name, VEC_AT(&w->outs, out_pack, w->outs.n - 1).id);
		return mtm_set_errno(err, "%s/.metamori/%s: fsync", w->s->root, name);
	}
	return 0;
}

/* Copies the live records of pack `from` to the writer; *read counts the
 * record bytes read (progress, phase "gc", of what the packs hold live). */
static int copy_live(mtm_store *s, int64_t from, gc_writer *w, vec *moves, ZSTD_DCtx *dctx, unsigned char *rec,
                     unsigned char *plain, unsigned char *rec2, compactor *cp, mtm_prune_stats *stats,
                     uint64_t *read, uint64_t total)
{
	char name[64];
	pack_file_name(name, sizeof name, from);
	int in, rc = io_open_regular(s->dirfd, name, O_RDONLY | O_NOFOLLOW, &in);
	if (rc)
		return mtm_set_errno(rc, "%s/.metamori/%s", s->root, name);
	sqlite3_stmt *st;
	rc = sqlite3_prepare_v2(s->db, "SELECT id, off, clen FROM chunk WHERE pack=? ORDER BY off", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		close(in);
		return db_error(s, rc, "gc");
	}
	sqlite3_bind_int64(st, 1, from);
	int err = 0;
	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0), off = sqlite3_column_int64(st, 1), clen = sqlite3_column_int64(st, 2);
		if (clen <= 0 || (uint64_t)clen > ZSTD_compressBound(CHUNK_MAX_PLAIN) || off < PACK_HEADER_LEN) {
			err = mtm_set_error(MTM_ECORRUPT, "%s: chunk %lld has an impossible location", name, (long long)id);
			break;
		}
		size_t got, len = CHUNK_HEADER_LEN + (size_t)clen, plen;
		if ((err = io_pread(in, rec, len, (off_t)off, &got))) {
			mtm_set_errno(err, "%s/.metamori/%s", s->root, name);
			break;
		}
		*read += got;
		if (s->progress) /* (the callback limits its own redraws) */
			s->progress(s->progress_arg, "gc", *read < total ? *read : total, total);
		if ((err = chunk_decode(dctx, rec, got, plain, &plen, NULL))) {
			mtm_set_error(err, "%s offset %lld (chunk %lld): %s; not copying damaged data", name, (long long)off,
			              (long long)id, mtm_last_error());
			break;
		}
		moved mv = {0};
		size_t len2;
		if ((err = compact_chunk(s, cp, id, plain, plen, &mv, rec2, &len2)))
			break;
		const unsigned char *out = len2 ? rec2 : rec;
		if (len2)
			len = len2;
		out_pack *o = &VEC_AT(&w->outs, out_pack, w->outs.n - 1);
		if (o->size >= MTM_PACK_TARGET) {
			if ((err = out_close(w)) || (err = out_open(w)))
				break;
			o = &VEC_AT(&w->outs, out_pack, w->outs.n - 1);
		}
		if ((err = io_pwrite(w->fd, out, len, (off_t)o->size))) {
			mtm_set_errno(err, "%s/.metamori/packs: writing", s->root);
			break;
		}
		moved *m = vec_push(moves);
		if (!m) {
			err = mtm_set_error(ENOMEM, "gc");
			break;
		}
		*m = mv;
		m->chunk = id;
		m->pack = o->id;
		m->off = (int64_t)o->size;
		o->size += len;
		stats->bytes_copied += len;
	}
	sqlite3_finalize(st);
	close(in);
	if (!err && rc != SQLITE_DONE)
		err = db_error(s, rc, "gc");
	return err;
}

static int commit_moves(mtm_store *s, const vec *outs, const vec *moves, const vec *old)
{
	MTM_TRY(db_exec(s, "BEGIN IMMEDIATE"));
	sqlite3_stmt *up = NULL, *del = NULL, *ins = NULL, *upc = NULL, *upb = NULL;
	int rc = sqlite3_prepare_v2(s->db, "UPDATE chunk SET pack=?, off=? WHERE id=?", -1, &up, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(s->db, "UPDATE chunk SET pack=?, off=?, hash=?, clen=?, plen=?, codec=? WHERE id=?", -1,
		                        &upc, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(s->db, "UPDATE block SET boff=? WHERE chunk=? AND boff=?", -1, &upb, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(s->db, "DELETE FROM pack WHERE id=?", -1, &del, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(s->db, "INSERT INTO pack(id,size,dead) VALUES(?,?,0)", -1, &ins, NULL);
	for (size_t i = 0; rc == SQLITE_OK && i < moves->n; i++) {
		const moved *m = &VEC_AT(moves, moved, i);
		if (!m->compact) {
			sqlite3_reset(up);
			sqlite3_bind_int64(up, 1, m->pack);
			sqlite3_bind_int64(up, 2, m->off);
			sqlite3_bind_int64(up, 3, m->chunk);
			rc = sqlite3_step(up) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
			continue;
		}
		sqlite3_reset(upc);
		sqlite3_bind_int64(upc, 1, m->pack);
		sqlite3_bind_int64(upc, 2, m->off);
		sqlite3_bind_blob(upc, 3, m->hash, 16, SQLITE_STATIC);
		sqlite3_bind_int64(upc, 4, m->clen);
		sqlite3_bind_int64(upc, 5, m->plen);
		sqlite3_bind_int64(upc, 6, m->codec);
		sqlite3_bind_int64(upc, 7, m->chunk);
		rc = sqlite3_step(upc) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
		/* ascending: a row moved down to map[b] < b is never selected again */
		for (int b = 0; rc == SQLITE_OK && b < MTM_CHUNK_BLOCKS; b++) {
			if (m->map[b] < 0 || m->map[b] == b)
				continue;
			assert(m->map[b] < b); /* compaction only moves blocks down */
			sqlite3_reset(upb);
			sqlite3_bind_int64(upb, 1, m->map[b]);
			sqlite3_bind_int64(upb, 2, m->chunk);
			sqlite3_bind_int64(upb, 3, b);
			rc = sqlite3_step(upb) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
		}
	}
	for (size_t i = 0; rc == SQLITE_OK && i < old->n; i++) {
		sqlite3_reset(del);
		sqlite3_bind_int64(del, 1, VEC_AT(old, int64_t, i));
		rc = sqlite3_step(del) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
	}
	for (size_t i = 0; rc == SQLITE_OK && i < outs->n; i++) {
		const out_pack *o = &VEC_AT(outs, out_pack, i);
		if (o->size <= PACK_HEADER_LEN)
			continue; /* nothing was live: no new pack */
		sqlite3_reset(ins);
		sqlite3_bind_int64(ins, 1, o->id);
		sqlite3_bind_int64(ins, 2, (int64_t)o->size);
		rc = sqlite3_step(ins) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
	}
	sqlite3_finalize(up);
	sqlite3_finalize(upc);
	sqlite3_finalize(upb);
	sqlite3_finalize(del);
	sqlite3_finalize(ins);
	int err = rc == SQLITE_OK ? db_exec(s, "COMMIT") : db_error(s, rc, "gc");
	if (err)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return err;
}

/* Packs whose dead bytes reach the threshold (and have any). */
static const char *over_sql = "FROM pack WHERE dead > 0 AND dead >= ?1 * size";

int gc_estimate(mtm_store *s, double threshold, mtm_prune_stats *stats)
{
	char sql[256];
	snprintf(sql, sizeof sql,
	         "SELECT COUNT(*), COALESCE(SUM(CASE WHEN dead + %d >= size THEN 0 ELSE size - dead - %d END), 0),"
	         " COALESCE(SUM(CASE WHEN dead + %d >= size THEN size ELSE dead END), 0) %s",
	         PACK_HEADER_LEN, PACK_HEADER_LEN, PACK_HEADER_LEN, over_sql);
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "gc");
	sqlite3_bind_double(st, 1, threshold);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		stats->packs_rewritten = (uint64_t)sqlite3_column_int64(st, 0);
		stats->bytes_copied = (uint64_t)sqlite3_column_int64(st, 1);
		stats->bytes_returned = (uint64_t)sqlite3_column_int64(st, 2);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : db_error(s, rc, "gc");
}

int gc_packs(mtm_store *s, double threshold, mtm_prune_stats *stats)
{
	MTM_TRY(sweep_unknown(s, stats));
	char sql[128];
	snprintf(sql, sizeof sql, "SELECT id %s ORDER BY id", over_sql);
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "gc");
	sqlite3_bind_double(st, 1, threshold);
	vec old = VEC_INIT(int64_t);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t *p = vec_push(&old);
		if (!p) {
			rc = SQLITE_NOMEM;
			break;
		}
		*p = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		vec_free(&old);
		return db_error(s, rc, "gc");
	}
	if (!old.n) {
		vec_free(&old);
		return 0;
	}
	gc_writer w = {s, -1, VEC_INIT(out_pack), 1};
	if ((rc = db_int(s, "gc", "SELECT COALESCE(MAX(id), 0) + 1 FROM pack", NULL, 0, &w.next_id, NULL))) {
		vec_free(&old);
		return rc;
	}

	vec moves = VEC_INIT(moved);
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	unsigned char *rec = malloc(CHUNK_HEADER_LEN + ZSTD_compressBound(CHUNK_MAX_PLAIN));
	unsigned char *rec2 = malloc(CHUNK_HEADER_LEN + ZSTD_compressBound(CHUNK_MAX_PLAIN));
	unsigned char *plain = malloc(CHUNK_MAX_PLAIN);
	compactor cp = {ZSTD_createCCtx(), malloc(ZSTD_compressBound(CHUNK_MAX_PLAIN)), malloc(CHUNK_MAX_PLAIN), NULL, NULL,
	                NULL};
	int err = !dctx || !rec || !rec2 || !plain || !cp.cctx || !cp.cbuf || !cp.plain2 ? mtm_set_error(ENOMEM, "gc") : 0;
	if (!err) {
		ZSTD_CCtx_setParameter(cp.cctx, ZSTD_c_compressionLevel, 1);
		err = db_exec(s, "CREATE TEMP TABLE IF NOT EXISTS gc_newhash(hash BLOB PRIMARY KEY); DELETE FROM gc_newhash");
	}
	if (!err && (sqlite3_prepare_v2(s->db, "SELECT DISTINCT boff FROM block WHERE chunk=?", -1, &cp.boffs, NULL) ||
	             sqlite3_prepare_v2(s->db, "SELECT 1 FROM chunk WHERE hash=?", -1, &cp.hash_known, NULL) ||
	             sqlite3_prepare_v2(s->db, "INSERT INTO gc_newhash VALUES(?)", -1, &cp.hash_add, NULL)))
		err = db_error(s, sqlite3_errcode(s->db), "gc");
	if (!err)
		err = out_open(&w);
	int64_t live = 0; /* what copy_live will read: the live records of the packs rewritten */
	if (!err && s->progress) {
		char q_sql[256];
		snprintf(q_sql, sizeof q_sql, "SELECT COALESCE(SUM(%d + clen), 0) FROM chunk WHERE pack IN (SELECT id %s)",
		         CHUNK_HEADER_LEN, over_sql);
		sqlite3_stmt *q;
		if (sqlite3_prepare_v2(s->db, q_sql, -1, &q, NULL) == SQLITE_OK) {
			sqlite3_bind_double(q, 1, threshold);
			if (sqlite3_step(q) == SQLITE_ROW)
				live = sqlite3_column_int64(q, 0);
			sqlite3_finalize(q);
		}
	}
	uint64_t read = 0;
	for (size_t i = 0; i < old.n && !err; i++)
		err = copy_live(s, VEC_AT(&old, int64_t, i), &w, &moves, dctx, rec, plain, rec2, &cp, stats, &read,
		                (uint64_t)live);
	ZSTD_freeDCtx(dctx);
	ZSTD_freeCCtx(cp.cctx);
	sqlite3_finalize(cp.boffs);
	sqlite3_finalize(cp.hash_known);
	sqlite3_finalize(cp.hash_add);
	free(cp.cbuf);
	free(cp.plain2);
	free(rec);
	free(rec2);
	free(plain);
	int e2 = out_close(&w);
	if (!err)
		err = e2;
	if (!err && (err = io_fsync_dirat(s->dirfd, "packs")))
		mtm_set_errno(err, "%s/.metamori/packs: fsync", s->root);
	/* the commit moves the chunks: before it the new packs are unknown
	 * files, after it the old ones are */
	int before_commit = err != 0;
	if (!err)
		err = commit_moves(s, &w.outs, &moves, &old);
	char name[64];
	for (size_t i = 0; i < w.outs.n; i++) {
		const out_pack *o = &VEC_AT(&w.outs, out_pack, i);
		/* after a failed COMMIT we cannot be sure the index does not name
		 * them: leave them, the next prune removes them if it does not */
		if (before_commit || (!err && o->size <= PACK_HEADER_LEN)) {
			pack_file_name(name, sizeof name, o->id);
			(void)io_unlinkat(s->dirfd, name, 0); /* unknown to the index: harmless, but tidy */
		}
	}
	if (!err) {
		for (size_t i = 0; i < old.n && !err; i++) {
			pack_file_name(name, sizeof name, VEC_AT(&old, int64_t, i));
			int e = io_unlinkat(s->dirfd, name, 0);
			if (e && e != ENOENT)
				err = mtm_set_errno(e, "%s/.metamori/%s", s->root, name);
			stats->packs_rewritten++;
		}
		if (!err && (err = io_fsync_dirat(s->dirfd, "packs")))
			mtm_set_errno(err, "%s/.metamori/packs: fsync", s->root);
	}
	vec_free(&w.outs);
	vec_free(&moves);
	vec_free(&old);
	return err;
}

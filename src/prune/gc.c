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
 */
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

static void pack_file_name(char *buf, size_t len, int64_t id) { snprintf(buf, len, "packs/%08lld.pack", (long long)id); }

uint64_t store_disk_bytes(mtm_store *s)
{
	uint64_t total = 0;
	struct stat st;
	static const char *files[] = {"index.db", "index.db-wal", "index.db-shm", NULL};
	for (int i = 0; files[i]; i++)
		if (!fstatat(s->dirfd, files[i], &st, AT_SYMLINK_NOFOLLOW))
			total += (uint64_t)st.st_size;
	int fd = openat(s->dirfd, "packs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return total;
	}
	struct dirent *de;
	while ((de = readdir(d)))
		if (!fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) && S_ISREG(st.st_mode))
			total += (uint64_t)st.st_size;
	closedir(d);
	return total;
}

/* Removes pack files the index does not name: leftovers of an interrupted
 * checkpoint or gc. We hold the writer lock, so nobody is writing one. */
static int sweep_unknown(mtm_store *s, mtm_prune_stats *stats)
{
	int fd = openat(s->dirfd, "packs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return mtm_set_errno(errno, "%s/.metamori/packs", s->root);
	}
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(s->db, "SELECT 1 FROM pack WHERE id=?", -1, &q, NULL);
	if (rc != SQLITE_OK) {
		closedir(d);
		return db_error(s, rc, "gc");
	}
	struct dirent *de;
	int err = 0, removed = 0;
	while (!err && (de = readdir(d))) {
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
	sqlite3_finalize(q);
	closedir(d);
	if (!err && removed && (err = io_fsync_dirat(s->dirfd, "packs")))
		mtm_set_errno(err, "%s/.metamori/packs", s->root);
	return err;
}

typedef struct { int64_t chunk, off; } moved;

/* Copies the live records of pack `from` to fd at *size. */
static int copy_live(mtm_store *s, int64_t from, int out_fd, uint64_t *size, vec *moves, ZSTD_DCtx *dctx,
                     unsigned char *rec, unsigned char *plain, mtm_prune_stats *stats)
{
	char name[64];
	pack_file_name(name, sizeof name, from);
	int in, rc = io_openat(s->dirfd, name, O_RDONLY | O_NOFOLLOW, 0, &in);
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
		if ((err = chunk_decode(dctx, rec, got, plain, &plen, NULL))) {
			mtm_set_error(err, "%s offset %lld (chunk %lld): %s; not copying damaged data", name, (long long)off,
			              (long long)id, mtm_last_error());
			break;
		}
		if ((err = io_pwrite(out_fd, rec, len, (off_t)*size))) {
			mtm_set_errno(err, "%s/.metamori/packs: writing", s->root);
			break;
		}
		moved *m = vec_push(moves);
		if (!m) {
			err = mtm_set_error(ENOMEM, "gc");
			break;
		}
		m->chunk = id;
		m->off = (int64_t)*size;
		*size += len;
		stats->bytes_copied += len;
	}
	sqlite3_finalize(st);
	close(in);
	if (!err && rc != SQLITE_DONE)
		err = db_error(s, rc, "gc");
	return err;
}

static int commit_moves(mtm_store *s, int64_t new_id, uint64_t new_size, const vec *moves, const vec *old)
{
	MTM_TRY(db_exec(s, "BEGIN IMMEDIATE"));
	sqlite3_stmt *up = NULL, *del = NULL, *ins = NULL;
	int rc = sqlite3_prepare_v2(s->db, "UPDATE chunk SET pack=?, off=? WHERE id=?", -1, &up, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(s->db, "DELETE FROM pack WHERE id=?", -1, &del, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(s->db, "INSERT INTO pack(id,size,dead) VALUES(?,?,0)", -1, &ins, NULL);
	for (size_t i = 0; rc == SQLITE_OK && i < moves->n; i++) {
		const moved *m = &VEC_AT(moves, moved, i);
		sqlite3_reset(up);
		sqlite3_bind_int64(up, 1, new_id);
		sqlite3_bind_int64(up, 2, m->off);
		sqlite3_bind_int64(up, 3, m->chunk);
		rc = sqlite3_step(up) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
	}
	for (size_t i = 0; rc == SQLITE_OK && i < old->n; i++) {
		sqlite3_reset(del);
		sqlite3_bind_int64(del, 1, VEC_AT(old, int64_t, i));
		rc = sqlite3_step(del) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
	}
	if (rc == SQLITE_OK && moves->n) {
		sqlite3_bind_int64(ins, 1, new_id);
		sqlite3_bind_int64(ins, 2, (int64_t)new_size);
		rc = sqlite3_step(ins) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
	}
	sqlite3_finalize(up);
	sqlite3_finalize(del);
	sqlite3_finalize(ins);
	int err = rc == SQLITE_OK ? db_exec(s, "COMMIT") : db_error(s, rc, "gc");
	if (err)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return err;
}

int gc_packs(mtm_store *s, double threshold, mtm_prune_stats *stats)
{
	MTM_TRY(sweep_unknown(s, stats));
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db,
	                            "SELECT id FROM pack WHERE dead > 0 AND dead >= ? * size ORDER BY id", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "gc");
	sqlite3_bind_double(st, 1, threshold);
	vec old = VEC_INIT(int64_t);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		*(int64_t *)vec_push(&old) = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		vec_free(&old);
		return db_error(s, rc, "gc");
	}
	if (!old.n) {
		vec_free(&old);
		return 0;
	}
	int64_t new_id = 1;
	sqlite3_prepare_v2(s->db, "SELECT COALESCE(MAX(id), 0) + 1 FROM pack", -1, &st, NULL);
	if (sqlite3_step(st) == SQLITE_ROW)
		new_id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);

	char name[64];
	pack_file_name(name, sizeof name, new_id);
	int fd, err = io_openat(s->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600, &fd);
	if (err) {
		vec_free(&old);
		return mtm_set_errno(err, "%s/.metamori/%s", s->root, name);
	}
	unsigned char hdr[PACK_HEADER_LEN] = "MTMPACK1";
	for (int i = 0; i < 8; i++)
		hdr[8 + i] = (unsigned char)((uint64_t)new_id >> (8 * i));
	uint64_t size = PACK_HEADER_LEN;
	err = io_pwrite(fd, hdr, sizeof hdr, 0);
	if (err)
		mtm_set_errno(err, "%s/.metamori/%s", s->root, name);
	vec moves = VEC_INIT(moved);
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	unsigned char *rec = malloc(CHUNK_HEADER_LEN + ZSTD_compressBound(CHUNK_MAX_PLAIN));
	unsigned char *plain = malloc(CHUNK_MAX_PLAIN);
	if (!err && (!dctx || !rec || !plain))
		err = mtm_set_error(ENOMEM, "gc");
	for (size_t i = 0; i < old.n && !err; i++)
		err = copy_live(s, VEC_AT(&old, int64_t, i), fd, &size, &moves, dctx, rec, plain, stats);
	ZSTD_freeDCtx(dctx);
	free(rec);
	free(plain);
	/* the copies are durable before the index names them */
	if (!err && (err = io_fsync(fd)))
		mtm_set_errno(err, "%s/.metamori/%s: fsync", s->root, name);
	close(fd);
	if (!err && (err = io_fsync_dirat(s->dirfd, "packs")))
		mtm_set_errno(err, "%s/.metamori/packs: fsync", s->root);
	if (!err)
		err = commit_moves(s, new_id, size, &moves, &old);
	if (err) {
		unlinkat(s->dirfd, name, 0); /* unknown to the index: harmless, but tidy */
	} else {
		if (!moves.n)
			unlinkat(s->dirfd, name, 0); /* every record was dead: no new pack */
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
	vec_free(&moves);
	vec_free(&old);
	return err;
}

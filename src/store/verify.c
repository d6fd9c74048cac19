/*
 * verify.c — checking a store: the index's own B-trees, every reference
 * between its tables, every chunk's location, the files in .metamori/, and
 * with MTM_VERIFY_DATA every chunk's bytes and every block's hash.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/io.h"
#include "store/index.h"
#include "store/pack.h"
#include "util/error.h"
#include "util/xxh.h"

typedef struct {
	mtm_store *s;
	mtm_problem_fn fn;
	void *arg;
	mtm_verify_stats st;
} vctx;

static int problem(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int problem(vctx *v, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	v->st.problems++;
	return v->fn ? v->fn(v->arg, buf) : 0;
}

/* Runs a query whose every row is a problem, described by its columns. */
static int rows_are_problems(vctx *v, const char *what, const char *sql)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(v->s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(v->s, rc, "verify");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		char cols[256] = "";
		size_t off = 0;
		for (int i = 0; i < sqlite3_column_count(st) && off < sizeof cols; i++) {
			const char *t = (const char *)sqlite3_column_text(st, i);
			off += (size_t)snprintf(cols + off, sizeof cols - off, "%s%s", i ? " " : "", t ? t : "NULL");
		}
		problem(v, "%s: %s", what, cols);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_error(v->s, rc, "verify");
}

static int count(vctx *v, const char *sql, uint64_t *out)
{
	int64_t n;
	int rc = db_int(v->s, "verify", sql, NULL, 0, &n, NULL);
	*out = (uint64_t)n;
	return rc;
}

/* Every entry path and symlink target as a restore would accept them
 * (FORMAT 3.4): a path that could escape the root is damage. */
static int check_paths(vctx *v)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(v->s->db,
	                            "SELECT path, ckpt, kind, target FROM entry UNION ALL "
	                            "SELECT path, ckpt, kind, target FROM entry_log",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(v->s, rc, "verify");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *path = (const char *)sqlite3_column_text(st, 0);
		int len = sqlite3_column_bytes(st, 0);
		long long ckpt = sqlite3_column_int64(st, 1);
		if (!path || !path_is_safe(path, (size_t)len)) {
			problem(v, "entry with an unsafe or damaged path at checkpoint %lld: '%.80s'", ckpt, path ? path : "");
			continue;
		}
		if (sqlite3_column_int(st, 2) == 3) {
			const void *t = sqlite3_column_blob(st, 3);
			int tlen = sqlite3_column_bytes(st, 3);
			if (!t || tlen <= 0 || tlen > 4095 || memchr(t, 0, (size_t)tlen))
				problem(v, "symlink with a damaged target at checkpoint %lld: '%.80s'", ckpt, path);
		}
		if (sqlite3_column_int(st, 2) == KIND_LINK) {
			const char *t = sqlite3_column_blob(st, 3);
			int tlen = sqlite3_column_bytes(st, 3);
			if (!t || !path_is_safe(t, (size_t)tlen))
				problem(v, "hard link with a damaged target at checkpoint %lld: '%.80s'", ckpt, path);
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_error(v->s, rc, "verify");
}

/* where block rows are: merged, and not yet merged (FORMAT.md 3.5.1) */
static const char *const block_tables[2] = {"block", "block_log"};

static int check_index(vctx *v)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(v->s->db, "PRAGMA integrity_check", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(v->s, rc, "verify");
	int damaged = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		if (t && strcmp(t, "ok") != 0) {
			problem(v, "index.db: %s", t);
			damaged = 1;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		problem(v, "index.db: %s", sqlite3_errmsg(v->s->db));
		return MTM_ECORRUPT; /* cannot go on reading a broken index */
	}
	(void)damaged;
	static const struct { const char *what, *sql; } refs[] = {
		{"checkpoint with a missing parent", "SELECT id, parent FROM checkpoint c WHERE parent != 0 AND"
		 " (parent >= id OR NOT EXISTS (SELECT 1 FROM checkpoint p WHERE p.id = c.parent))"},
		{"checkpoint on a missing branch", "SELECT id, branch FROM checkpoint c WHERE NOT EXISTS"
		 " (SELECT 1 FROM branch b WHERE b.id = c.branch)"},
		{"branch with a bad parent", "SELECT id, parent_branch FROM branch b WHERE parent_branch >= id OR (parent_branch != 0"
		 " AND NOT EXISTS (SELECT 1 FROM branch p WHERE p.id = b.parent_branch))"},
		{"entry in both entry and entry_log", "SELECT l.path, l.ckpt FROM entry_log l JOIN entry e"
		 " ON e.path = l.path AND e.branch = l.branch AND e.ckpt = l.ckpt"},
		{"region of a missing checkpoint", "SELECT name, ckpt FROM region r WHERE NOT EXISTS"
		 " (SELECT 1 FROM checkpoint c WHERE c.id = r.ckpt AND c.branch = r.branch)"},
		{"region with a bad kind or size", "SELECT name, ckpt FROM region WHERE kind NOT IN (0,1) OR size < 0"
		 " OR (kind = 1 AND file_id <= 0) OR length(name) < 1 OR length(name) > 255"},
		{"chunk in a missing pack", "SELECT id, pack FROM chunk c WHERE NOT EXISTS (SELECT 1 FROM pack p WHERE p.id = c.pack)"},
		{"chunk past its pack's end", "SELECT c.id, c.pack, c.off FROM chunk c JOIN pack p ON p.id = c.pack"
		 " WHERE c.off < 16 OR c.off + 40 + c.clen > p.size OR c.clen <= 0 OR c.plen <= 0 OR c.plen > 65536"
		 " OR length(c.hash) != 16"},
		{"head names a missing checkpoint", "SELECT value FROM meta WHERE key = 'head' AND value != 0 AND"
		 " NOT EXISTS (SELECT 1 FROM checkpoint WHERE id = meta.value)"},
	};
	for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++)
		MTM_TRY(rows_are_problems(v, refs[i].what, refs[i].sql));
	/* entry rows, merged or still in entry_log (FORMAT.md 3.4.1) */
	static const struct { const char *what, *sql; } entry_refs[] = {
		{"entry of a missing checkpoint", "SELECT path, ckpt FROM %s e WHERE NOT EXISTS"
		 " (SELECT 1 FROM checkpoint c WHERE c.id = e.ckpt AND c.branch = e.branch)"},
		{"entry with a bad kind or size", "SELECT path, ckpt FROM %s WHERE kind NOT BETWEEN 0 AND 8 OR size < 0"
		 " OR (kind = 1 AND file_id <= 0) OR mode < 0 OR mode > 4095"},
	};
	static const char *const entry_tables[2] = {"entry", "entry_log"};
	for (size_t t = 0; t < 2; t++)
		for (size_t i = 0; i < sizeof entry_refs / sizeof entry_refs[0]; i++) {
			char sql[512];
			snprintf(sql, sizeof sql, entry_refs[i].sql, entry_tables[t]);
			MTM_TRY(rows_are_problems(v, entry_refs[i].what, sql));
		}
	/* block rows, merged or still in block_log (FORMAT.md 3.5.1) */
	static const struct { const char *what, *sql; } block_refs[] = {
		{"block of a missing checkpoint", "SELECT file_id, blkno, ckpt FROM %s b WHERE NOT EXISTS"
		 " (SELECT 1 FROM checkpoint c WHERE c.id = b.ckpt AND c.branch = b.branch)"},
		{"block naming a missing chunk", "SELECT file_id, blkno, ckpt, chunk FROM %s b WHERE chunk != 0 AND"
		 " NOT EXISTS (SELECT 1 FROM chunk c WHERE c.id = b.chunk)"},
		{"block outside its chunk", "SELECT b.file_id, b.blkno, b.ckpt, b.chunk FROM %s b JOIN chunk c ON c.id = b.chunk"
		 " WHERE b.boff < 0 OR b.boff * 4096 >= c.plen"},
	};
	for (size_t t = 0; t < 2; t++)
		for (size_t i = 0; i < sizeof block_refs / sizeof block_refs[0]; i++) {
			char sql[512];
			snprintf(sql, sizeof sql, block_refs[i].sql, block_tables[t]);
			MTM_TRY(rows_are_problems(v, block_refs[i].what, sql));
		}
	return check_paths(v);
}

/* Pack files on disk against the pack table; unknown files in .metamori. */
static int check_files(vctx *v)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(v->s->db, "SELECT id, size FROM pack ORDER BY id", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(v->s, rc, "verify");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0), size = sqlite3_column_int64(st, 1);
		char name[64];
		snprintf(name, sizeof name, "packs/%08lld.pack", (long long)id);
		struct stat sb;
		v->st.packs++;
		if (fstatat(v->s->dirfd, name, &sb, AT_SYMLINK_NOFOLLOW))
			problem(v, "%s: pack file is missing", name);
		else if (!S_ISREG(sb.st_mode))
			problem(v, "%s: not a regular file", name);
		else if (sb.st_size < size)
			problem(v, "%s: truncated (%lld bytes, index expects %lld)", name, (long long)sb.st_size, (long long)size);
		else {
			char hdr[PACK_HEADER_LEN];
			size_t got = 0;
			int fd = -1, err = io_open_regular(v->s->dirfd, name, O_RDONLY | O_NOFOLLOW, &fd); /* never blocks */
			if (!err)
				err = io_pread(fd, hdr, sizeof hdr, 0, &got);
			if (err)
				problem(v, "%s: %s", name, mtm_strerror(err));
			else if (got != sizeof hdr || memcmp(hdr, PACK_MAGIC, PACK_MAGIC_LEN) != 0)
				problem(v, "%s: bad pack header", name);
			if (fd >= 0)
				close(fd);
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_error(v->s, rc, "verify");
	DIR *d;
	int err = io_opendirat(v->s->dirfd, "packs", &d);
	if (err == ENOENT || err == ENOTDIR || err == ELOOP)
		return problem(v, "packs/: directory is missing"), 0;
	if (err)
		return mtm_set_errno(err, "%s/.metamori/packs", v->s->root);
	struct dirent *de;
	while (!(err = io_readdir(d, &de)) && de) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		long long id;
		char tail[8];
		if (sscanf(de->d_name, "%8lld.pa%7s", &id, tail) == 2 && !strcmp(tail, "ck") && strlen(de->d_name) == 13) {
			/* A pack the index does not name is the leftover of an interrupted
			 * checkpoint (a newer id, reused by the next one) or of a prune's gc
			 * killed between its commit and the unlink of the packs it replaced
			 * (an older id, removed by the next prune). Readers ignore it
			 * (FORMAT 3.7): it is not damage. */
			continue;
		}
		problem(v, "packs/%s: unexpected file in the store", de->d_name);
	}
	closedir(d);
	if (err)
		return mtm_set_errno(err, "%s/.metamori/packs: listing", v->s->root);
	if ((err = io_opendirat(v->s->dirfd, ".", &d)))
		return mtm_set_errno(err, "%s/.metamori", v->s->root);
	static const char *known[] = {".", "..", "index.db", "index.db-wal", "index.db-shm", "index.db-journal", "lock",
	                              "intent", "intent.tmp", "packs", "mirror", "index.db.push", "index.db.push-journal",
	                              "index.db.push-wal", "index.db.push-shm" /* a mirror (mirror.c) */,
	                              "session" /* `metamori run` (src/session/session.c) */,
	                              "dmtcp" /* `run --dmtcp`'s images (src/cli/dmtcp_pair.h) */, NULL};
	while (!(err = io_readdir(d, &de)) && de) {
		int ok = 0;
		for (int i = 0; known[i]; i++)
			ok |= !strcmp(de->d_name, known[i]);
		if (!ok)
			problem(v, "%s: unexpected file in the store", de->d_name);
	}
	closedir(d);
	return err ? mtm_set_errno(err, "%s/.metamori: listing", v->s->root) : 0;
}

static int check_data(vctx *v)
{
	pack_reader pr;
	int rc = pack_reader_init(&pr, v->s);
	if (rc) {
		pack_reader_free(&pr);
		return rc;
	}
	sqlite3_stmt *st;
	/* every referenced chunk once (blocks grouped by chunk), then the others */
	rc = sqlite3_prepare_v2(v->s->db,
	                        "SELECT chunk, boff, hash, file_id, blkno, ckpt FROM block WHERE chunk != 0 UNION ALL "
	                        "SELECT chunk, boff, hash, file_id, blkno, ckpt FROM block_log WHERE chunk != 0 ORDER BY 1, 2",
	                        -1, &st, NULL);
	if (rc != SQLITE_OK) {
		pack_reader_free(&pr);
		return db_error(v->s, rc, "verify");
	}
	int64_t bad_chunk = 0, last_chunk = 0, total = 0;
	if (v->s->progress) { /* what the reads will add up to: every chunk's record */
		sqlite3_stmt *q;
		if (sqlite3_prepare_v2(v->s->db, "SELECT coalesce(sum(clen), 0) FROM chunk", -1, &q, NULL) == SQLITE_OK &&
		    sqlite3_step(q) == SQLITE_ROW)
			total = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t chunk = sqlite3_column_int64(st, 0), boff = sqlite3_column_int64(st, 1);
		if (chunk == bad_chunk)
			continue;
		if (v->s->progress && chunk != last_chunk) /* (the callback limits its own redraws) */
			v->s->progress(v->s->progress_arg, "verify", pr.bytes_read, (uint64_t)total);
		last_chunk = chunk;
		const unsigned char *plain;
		size_t plen;
		if (pack_read(&pr, chunk, &plain, &plen)) {
			problem(v, "%s", mtm_last_error());
			bad_chunk = chunk;
			continue;
		}
		if (boff < 0 || (size_t)boff * MTM_BLOCK >= plen)
			continue; /* reported by the reference checks */
		unsigned char blk[MTM_BLOCK] = {0};
		size_t n = plen - (size_t)boff * MTM_BLOCK;
		memcpy(blk, plain + boff * MTM_BLOCK, n < MTM_BLOCK ? n : MTM_BLOCK);
		if (XXH3_64bits(blk, MTM_BLOCK) != (uint64_t)sqlite3_column_int64(st, 2))
			problem(v, "file %lld block %lld at checkpoint %lld: block hash does not match its chunk",
			        sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4), sqlite3_column_int64(st, 5));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		pack_reader_free(&pr);
		return db_error(v->s, rc, "verify");
	}
	rc = sqlite3_prepare_v2(v->s->db, "SELECT id FROM chunk WHERE id NOT IN (SELECT chunk FROM block UNION ALL SELECT chunk FROM block_log)", -1, &st, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const unsigned char *plain;
		size_t plen;
		if (pack_read(&pr, sqlite3_column_int64(st, 0), &plain, &plen))
			problem(v, "%s", mtm_last_error());
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	v->st.bytes_read = pr.bytes_read;
	pack_reader_free(&pr);
	return rc == SQLITE_DONE ? 0 : db_error(v->s, rc, "verify");
}

int mtm_verify(mtm_store *s, int flags, mtm_problem_fn fn, void *arg, mtm_verify_stats *out)
{
	MTM_NEED(s, "verify");
	vctx v = {.s = s, .fn = fn, .arg = arg};
	/* one read transaction: every row checked comes from one snapshot (a
	 * concurrent gc may compact a chunk and renumber its rows' boff) */
	int rc = db_exec(s, "BEGIN");
	if (rc)
		return rc;
	rc = check_index(&v);
	if (!rc)
		rc = count(&v, "SELECT count(*) FROM checkpoint", &v.st.checkpoints);
	if (!rc)
		rc = count(&v, "SELECT (SELECT count(*) FROM entry) + (SELECT count(*) FROM entry_log)", &v.st.entries);
	if (!rc)
		rc = count(&v, "SELECT (SELECT count(*) FROM block) + (SELECT count(*) FROM block_log)", &v.st.blocks);
	if (!rc)
		rc = count(&v, "SELECT count(*) FROM chunk", &v.st.chunks);
	if (!rc)
		rc = check_files(&v);
	if (!rc && (flags & MTM_VERIFY_DATA))
		rc = check_data(&v);
	db_exec(s, "COMMIT");
	if (out)
		*out = v.st;
	if (rc)
		return rc;
	return v.st.problems ? mtm_set_error(MTM_ECORRUPT, "%s/.metamori: %llu problem%s found", s->root,
	                                     (unsigned long long)v.st.problems, v.st.problems == 1 ? "" : "s")
	                     : 0;
}

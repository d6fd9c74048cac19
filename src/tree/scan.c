/* scan.c — stat cache and block comparison; see scan.h. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>
#include "util/xxh.h"
#include "io/io.h"
#include "tree/reader.h"
#include "tree/scan.h"
#include "store/statblob.h"
#include "util/error.h"

int statcache_row_read(sqlite3_stmt *st, int col, sc_row *r)
{
	int64_t f[STATBLOB_FIELDS];
	const void *b = sqlite3_column_blob(st, col + 1);
	if (statblob_unpack(b, (size_t)sqlite3_column_bytes(st, col + 1), f) ||
	    (uint64_t)f[5] > UINT32_MAX || (uint64_t)f[6] > UINT32_MAX || (uint64_t)f[7] > UINT32_MAX ||
	    (uint64_t)f[8] > 1)
		return -1; /* damaged: no row (it vouches for nothing) */
	r->ver = sqlite3_column_int64(st, col);
	r->size = f[0];
	r->mtime_ns = f[1];
	r->ctime_ns = f[2];
	r->ino = f[3];
	r->dev = f[4];
	r->mode = (uint32_t)f[5];
	r->uid = (uint32_t)f[6];
	r->gid = (uint32_t)f[7];
	r->racy = (int)f[8];
	return 0;
}

int statcache_get_row(mtm_store *s, sqlite3_stmt **cache, const char *path, sc_row *out, int *found)
{
	int rc;
	*found = 0;
	if (!*cache &&
	    (rc = sqlite3_prepare_v2(s->db,
	                             "SELECT ver, st FROM statcache WHERE path=?",
	                             -1, cache, NULL)) != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_stmt *st = *cache;
	sqlite3_reset(st);
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*found = !statcache_row_read(st, 0, out);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st); /* (path is not ours to keep bound) */
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

int statcache_load(mtm_store *s, pathmap *out)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db,
	                            "SELECT path, ver, st FROM statcache",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *path = (const char *)sqlite3_column_text(st, 0);
		sc_row row;
		if (!path || statcache_row_read(st, 1, &row))
			continue;
		sc_row *r = malloc(sizeof *r);
		if (!r || pathmap_put(out, path, r)) {
			free(r);
			sqlite3_finalize(st);
			pathmap_free(out, free);
			return mtm_set_error(ENOMEM, "stat cache");
		}
		*r = row;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		pathmap_free(out, free);
		return db_error(s, rc, "index");
	}
	return 0;
}

int statcache_fresh(const sc_row *r, const struct stat *st, int64_t ver)
{
	return r && !r->racy && r->ver == ver && r->size == (int64_t)st->st_size && r->mtime_ns == st_mtime_ns(st) &&
	       r->ctime_ns == st_ctime_ns(st) && r->ino == (int64_t)st->st_ino && r->dev == (int64_t)st->st_dev &&
	       r->mode == st->st_mode && r->uid == st->st_uid && r->gid == st->st_gid;
}

int64_t racy_window(mtm_store *s, const struct stat *st)
{
	if (!s->fs_known) {
		struct statfs fs;
		struct stat rst;
		s->root_fine_dev = -1;
		if (!fstatfs(s->rootfd, &fs) && !fstat(s->rootfd, &rst)) {
			switch ((unsigned long)fs.f_type) {
			case 0xEF53:      /* ext2/3/4 */
			case 0x58465342:  /* XFS */
			case 0x9123683E:  /* Btrfs */
			case 0x01021994:  /* tmpfs */
			case 0xF2F52010:  /* F2FS */
			case 0x2FC12FC1:  /* ZFS */
			case 0xCA451A4E:  /* bcachefs */
				s->root_fine_dev = (int64_t)rst.st_dev;
			}
		}
		s->fs_known = 1;
	}
	/* a file on another mount below the root gets the safe window */
	return (int64_t)st->st_dev == s->root_fine_dev ? RACY_FINE_NS : RACY_WINDOW_NS;
}

void statcache_row_make(mtm_store *s, int64_t ver, const struct stat *st, int64_t scan_start_ns, sc_row *out)
{
	out->ver = ver;
	out->size = (int64_t)st->st_size;
	out->mtime_ns = st_mtime_ns(st);
	out->ctime_ns = st_ctime_ns(st);
	out->ino = (int64_t)st->st_ino;
	out->dev = (int64_t)st->st_dev;
	out->mode = st->st_mode;
	out->uid = st->st_uid;
	out->gid = st->st_gid;
	/* ctime too: restore's own writes happen "now" */
	int64_t window = racy_window(s, st);
	out->racy = scan_start_ns == STATCACHE_UNVOUCHED || out->mtime_ns >= scan_start_ns - window ||
	            out->ctime_ns >= scan_start_ns - window;
}

int statcache_put_row(mtm_store *s, sqlite3_stmt **cache, const char *path, const sc_row *r)
{
	int rc;
	if (!*cache && (rc = sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO statcache VALUES(?,?,?)", -1, cache, NULL)) !=
	                   SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_stmt *q = *cache;
	int64_t f[STATBLOB_FIELDS] = {r->size, r->mtime_ns, r->ctime_ns, r->ino, r->dev, r->mode, r->uid, r->gid, !!r->racy};
	unsigned char b[STATBLOB_MAX];
	size_t n = statblob_pack(b, f);
	sqlite3_reset(q);
	sqlite3_bind_text(q, 1, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, r->ver);
	sqlite3_bind_blob(q, 3, b, (int)n, SQLITE_STATIC);
	rc = sqlite3_step(q);
	sqlite3_reset(q);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

int statcache_put(mtm_store *s, sqlite3_stmt **cache, const char *path, int64_t ver, const struct stat *st,
                  int64_t scan_start_ns)
{
	sc_row r;
	statcache_row_make(s, ver, st, scan_start_ns, &r);
	return statcache_put_row(s, cache, path, &r);
}

int statcache_del(mtm_store *s, sqlite3_stmt **cache, const char *path)
{
	int rc;
	if (!*cache && (rc = sqlite3_prepare_v2(s->db, "DELETE FROM statcache WHERE path=?", -1, cache, NULL)) != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_reset(*cache);
	sqlite3_bind_text(*cache, 1, path, -1, SQLITE_STATIC);
	rc = sqlite3_step(*cache);
	sqlite3_reset(*cache);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

static int all_zero(const unsigned char *p, size_t n)
{
	static const unsigned char z[MTM_BLOCK];
	return memcmp(p, z, n) == 0;
}

#define GROUP_BYTES ((int64_t)MTM_CHUNK_BLOCKS * MTM_BLOCK)

/* Where the file's data lies, from off on (SEEK_DATA/SEEK_HOLE): the hole
 * [off, *data) holds only zeros, and the data from *data goes on at least
 * to *hole. Both are rounded to whole chunk groups, outward for the data,
 * so reads stay group-aligned. A file system that cannot tell: all data. */
static void find_data(int fd, int64_t off, int64_t size, int64_t *data, int64_t *hole)
{
	*data = off;
	*hole = size;
	if (fd < 0)
		return;
	off_t d = lseek(fd, (off_t)off, SEEK_DATA);
	if (d < 0) {
		if (errno == ENXIO) /* nothing but a hole up to the end */
			*data = *hole = size;
		return;
	}
	*data = (int64_t)d / GROUP_BYTES * GROUP_BYTES;
	if (*data < off)
		*data = off;
	off_t h = lseek(fd, d, SEEK_HOLE);
	if (h > d) {
		int64_t up = ((int64_t)h + GROUP_BYTES - 1) / GROUP_BYTES * GROUP_BYTES;
		*hole = up < size ? up : size;
	}
}

/* The parent version's block hashes as a compare reads them, in block
 * order: rows of `block` (map, sorted by blkno, walked once with a cursor;
 * a block with no row is a hole), or an array (h[b] block b's, past n the
 * zero block's: a blockhash row, store/blockhash.h). */
typedef struct {
	const vec *map;
	size_t mi;
	const uint64_t *h;
	int64_t n;
	uint64_t zh; /* zero_block_hash() */
} parent_hashes;

/* Block blkno's parent hash; blkno never goes back (the map's cursor). */
static inline uint64_t parent_at(parent_hashes *ph, int64_t blkno)
{
	if (ph->h)
		return blkno < ph->n ? ph->h[blkno] : ph->zh;
	const vec *m = ph->map;
	while (ph->mi < m->n && VEC_AT(m, blockref, ph->mi).blkno < blkno)
		ph->mi++;
	return ph->mi < m->n && VEC_AT(m, blockref, ph->mi).blkno == blkno ? VEC_AT(m, blockref, ph->mi).hash : ph->zh;
}

/* The first block in [from, end) whose parent hash is not the zero
 * block's, or end: the map's rows are skipped, not its holes' blocks. */
static int64_t next_parent_data(parent_hashes *ph, int64_t from, int64_t end)
{
	if (ph->h) {
		int64_t stop = end < ph->n ? end : ph->n;
		for (int64_t b = from; b < stop; b++)
			if (ph->h[b] != ph->zh)
				return b;
		return end;
	}
	const vec *m = ph->map;
	while (ph->mi < m->n && (VEC_AT(m, blockref, ph->mi).blkno < from || VEC_AT(m, blockref, ph->mi).hash == ph->zh))
		ph->mi++;
	return ph->mi < m->n && VEC_AT(m, blockref, ph->mi).blkno < end ? VEC_AT(m, blockref, ph->mi).blkno : end;
}

/* The blocks of the hole [from, to) that the parent holds as data: each run
 * of them (within one group) changed to zeros. No block is read: a hole of
 * any size costs what its map rows cost. */
static int compare_hole(parent_hashes *ph, int64_t from, int64_t to, int64_t size, run_fn fn, void *arg,
                        uint64_t *out)
{
	uint64_t hashes[MTM_CHUNK_BLOCKS];
	for (int i = 0; i < MTM_CHUNK_BLOCKS; i++)
		hashes[i] = ph->zh;
	int64_t first = from / MTM_BLOCK, end = (to + MTM_BLOCK - 1) / MTM_BLOCK;
	for (int64_t b = first; out && b < end; b++)
		out[b] = ph->zh; /* whatever the parent held, zeros from now on */
	for (int64_t b = first; (b = next_parent_data(ph, b, end)) < end;) {
		int64_t e = b + 1, gend = (b / MTM_CHUNK_BLOCKS + 1) * MTM_CHUNK_BLOCKS;
		while (e < gend && e < end && parent_at(ph, e) != ph->zh)
			e++;
		int64_t stop = e * MTM_BLOCK < size ? e * MTM_BLOCK : size;
		MTM_TRY(fn(arg, b, (int)(e - b), NULL, (size_t)(stop - b * MTM_BLOCK), hashes, 1, 0));
		b = e;
	}
	return 0;
}
_Static_assert(READ_PIECE % (MTM_CHUNK_BLOCKS * MTM_BLOCK) == 0, "READ_PIECE holds whole chunk groups");

/* Compares the blocks of a piece read (and hashed) with the map, and gives
 * fn the maximal runs of changed blocks within each aligned group. */
static int compare_piece(read_piece *p, parent_hashes *ph, run_fn fn, void *arg, uint64_t *out)
{
	const uint64_t zh = ph->zh;
	assert(p->off % GROUP_BYTES == 0);
	int64_t first = p->off / MTM_BLOCK;
	size_t nblk = (p->got + MTM_BLOCK - 1) / MTM_BLOCK;
	for (size_t g = 0; g < nblk; g += MTM_CHUNK_BLOCKS) {
		size_t gend = g + MTM_CHUNK_BLOCKS < nblk ? g + MTM_CHUNK_BLOCKS : nblk;
		signed char state[MTM_CHUNK_BLOCKS]; /* 0 same, 1 changed data, 2 changed to zeros */
		uint64_t was[MTM_CHUNK_BLOCKS];
		for (size_t b = g; b < gend; b++)
			was[b - g] = parent_at(ph, first + (int64_t)b);
		if (p->map) {
			/* hashed where it lies: copy out what differs, each run of it
			 * at once, and hash that (the file may be written meanwhile) */
			for (size_t b = g; b < gend;) {
				if (p->h[b] == was[b - g]) {
					b++;
					continue;
				}
				size_t e = b + 1;
				while (e < gend && p->h[e] != was[e - g])
					e++;
				if (reader_settle(p, b, e)) { /* shortened under us: stop at b */
					gend = b;
					nblk = b;
					break;
				}
				b = e;
			}
		}
		for (size_t b = g; b < gend; b++) {
			uint64_t h = p->h[b];
			int64_t blkno = first + (int64_t)b;
			if (out)
				out[blkno] = h;
			size_t len = p->got - b * MTM_BLOCK < MTM_BLOCK ? p->got - b * MTM_BLOCK : MTM_BLOCK;
			/* (the rest of a short block is padding; a block that did not
			 * change is not looked at: mapped, buf does not hold it) */
			int zero = h != was[b - g] && h == zh && all_zero(p->buf + b * MTM_BLOCK, len);
			state[b - g] = h == was[b - g] ? 0 : zero ? 2 : 1;
		}
		/* emit maximal runs of equal state */
		for (size_t b = g; b < gend;) {
			int stt = state[b - g];
			size_t e = b + 1;
			while (e < gend && state[e - g] == stt)
				e++;
			if (stt) {
				size_t start = b * MTM_BLOCK, end = e * MTM_BLOCK < p->got ? e * MTM_BLOCK : p->got;
				/* an error stops here: the next read must not overwrite it
				 * (a run that failed to be stored would be missing) */
				MTM_TRY(fn(arg, first + (int64_t)b, (int)(e - b), stt == 1 ? p->buf + start : NULL, end - start,
				           p->h + b, stt == 2, 0));
			}
			b = e;
		}
	}
	return 0;
}

typedef struct {
	parent_hashes ph;
	run_fn fn;
	void *arg;
	uint64_t *out;
	read_tick_fn tick;
	void *tick_arg;
	int64_t off; /* read and compared up to here */
	int stop;    /* the file ended early (it shrank while we read it) */
} compare_state;

/* Compares a piece read (the one at cs->off) and moves on past it. */
static int take_piece(compare_state *cs, read_piece *p)
{
	assert(p->off == cs->off);
	if (p->err)
		return mtm_set_errno(p->err, "read");
	if (p->got == 0) {
		cs->stop = 1;
		return 0;
	}
	MTM_TRY(compare_piece(p, &cs->ph, cs->fn, cs->arg, cs->out));
	cs->off += (int64_t)p->got;
	if (cs->tick)
		cs->tick(cs->tick_arg, p->got);
	cs->stop = p->got < p->want;
	return 0;
}

static int compare_file_full(scan_reader *rd, file_src src, int64_t size, const vec *map, const uint64_t *parent_h,
                             int64_t parent_n, run_fn fn, void *arg, int64_t *size_read, uint64_t *out,
                             read_tick_fn tick, void *tick_arg)
{
	/* no bigger than the file needs, in whole groups */
	size_t cap = size < (int64_t)READ_PIECE ? (size_t)((size + GROUP_BYTES - 1) / GROUP_BYTES * GROUP_BYTES) : READ_PIECE;
	if (!cap)
		cap = (size_t)GROUP_BYTES;
	int rc = reader_reserve(rd, cap);
	if (rc)
		return rc;
	compare_state cs = {{map, 0, parent_h, parent_n, zero_block_hash()}, fn, arg, out, tick, tick_arg, 0, 0};
	assert(map || parent_h);
	read_piece *p = rd->p;
	/* holes are found, not read (a 100 GiB sparse file costs its data);
	 * a file of one group at most is read whole, its holes as zeros, which
	 * compare as compare_hole finds them: two lseeks fewer per small file */
	int64_t data_end = size <= GROUP_BYTES ? size : 0;
	int seek_fd = !src.mem ? src.fd : src.mem->fd;
	while (cs.off < size && !cs.stop) {
		if (cs.off >= data_end) {
			int64_t data;
			find_data(seek_fd, cs.off, size, &data, &data_end);
			if (data > cs.off) {
				if ((rc = compare_hole(&cs.ph, cs.off, data, size, fn, arg, out)))
					break;
				cs.off = data;
				continue;
			}
		}
		int64_t end = data_end < size ? data_end : size;
		p->off = cs.off;
		p->until = end;
		p->want = (size_t)(end - cs.off < (int64_t)cap ? end - cs.off : (int64_t)cap);
		reader_read(rd, src, p);
		if ((rc = take_piece(&cs, p)))
			break;
	}
	reader_end_file(rd);
	*size_read = cs.off;
	return rc;
}

int compare_file(file_src src, int64_t size, const vec *map, run_fn fn, void *arg, int64_t *size_read)
{
	scan_reader rd;
	reader_init(&rd);
	int rc = compare_file_full(&rd, src, size, map, NULL, 0, fn, arg, size_read, NULL, NULL, NULL);
	reader_free(&rd);
	return rc;
}

int compare_file_ticking(file_src src, int64_t size, const vec *map, run_fn fn, void *arg, int64_t *size_read,
                         read_tick_fn tick, void *tick_arg)
{
	scan_reader rd;
	reader_init(&rd);
	int rc = compare_file_full(&rd, src, size, map, NULL, 0, fn, arg, size_read, NULL, tick, tick_arg);
	reader_free(&rd);
	return rc;
}

int compare_file_hashes(scan_reader *rd, file_src src, int64_t size, const vec *map, const uint64_t *parent_h,
                        int64_t parent_n, run_fn fn, void *arg, int64_t *size_read, uint64_t *out)
{
	return compare_file_full(rd, src, size, map, parent_h, parent_n, fn, arg, size_read, out, NULL, NULL);
}

int compare_runs(file_src src, int64_t size, const vec *runs, hash_fn parent_hash, void *parg, run_fn fn, void *arg)
{
	unsigned char buf[MTM_CHUNK_BLOCKS * MTM_BLOCK];
	const uint64_t zh = zero_block_hash();
	int64_t nblocks = (size + MTM_BLOCK - 1) / MTM_BLOCK;
	for (size_t r = 0; r < runs->n; r++) {
		const blk_run *run = &VEC_AT(runs, blk_run, r);
		int64_t b = run->blkno, end = run->blkno + run->count < nblocks ? run->blkno + run->count : nblocks;
		while (b < end) {
			/* one piece per aligned group: chunks never straddle groups */
			int64_t gend = (b / MTM_CHUNK_BLOCKS + 1) * MTM_CHUNK_BLOCKS;
			int64_t pend = gend < end ? gend : end;
			size_t want = (size_t)((pend - b) * MTM_BLOCK), got;
			assert(b < pend && want <= sizeof buf);
			if ((int64_t)(b * MTM_BLOCK + (int64_t)want) > size)
				want = (size_t)(size - b * MTM_BLOCK);
			/* a capture in memory is hashed and stored where it lies */
			const unsigned char *at = src_at(src, b * MTM_BLOCK, want);
			if (!at) {
				int rc = src_pread(src, buf, want, b * MTM_BLOCK, &got);
				if (rc)
					return mtm_set_errno(rc, "read");
				if (got < want)
					memset(buf + got, 0, want - got);
				at = buf;
			}
			int n = (int)(pend - b);
			uint64_t hashes[MTM_CHUNK_BLOCKS];
			signed char state[MTM_CHUNK_BLOCKS];
			for (int i = 0; i < n; i++) {
				unsigned char pad[MTM_BLOCK];
				const unsigned char *blk = at + (size_t)i * MTM_BLOCK;
				size_t len = want - (size_t)i * MTM_BLOCK < MTM_BLOCK ? want - (size_t)i * MTM_BLOCK : MTM_BLOCK;
				if (len < MTM_BLOCK) {
					memcpy(pad, blk, len);
					memset(pad + len, 0, MTM_BLOCK - len);
					blk = pad;
				}
				uint64_t h, ph;
				if (at == buf || !capture_hash(src.mem, b + i, &h))
					h = XXH3_64bits(blk, MTM_BLOCK);
				MTM_TRY(parent_hash(parg, b + i, &ph));
				hashes[i] = h;
				state[i] = h == ph ? 0 : (h == zh && all_zero(blk, MTM_BLOCK)) ? 2 : 1;
			}
			for (int i = 0; i < n;) {
				int stt = state[i], e = i + 1;
				while (e < n && state[e] == stt)
					e++;
				if (stt) {
					size_t start = (size_t)i * MTM_BLOCK, stop = (size_t)e * MTM_BLOCK < want ? (size_t)e * MTM_BLOCK : want;
					MTM_TRY(fn(arg, b + i, e - i, stt == 1 ? at + start : NULL, stop - start, hashes + i, stt == 2,
					           at != buf));
				}
				i = e;
			}
			b = pend;
		}
	}
	return 0;
}

/*
 * ahead.c — files compared whole, compared before the gate closes.
 *
 * A file the logs cannot vouch for (the watcher saw a writer it cannot
 * trust: any writer under inotify, a program holding raw system call
 * bytes under fanotify; or a shared writable mapping) is compared whole
 * at each checkpoint: every block read and hashed against the hashes kept
 * from the parent's compare. Done in the barrier, that is the pause: a
 * PostgreSQL under pgbench has ~160 MiB of such files, 150-700 ms held.
 *
 * So the compare runs before the gate closes, while the program works, as
 * live migration copies memory before the stop:
 *
 *   the pre-copy's last pass peeks the logs (records so far: P)
 *   the watcher's queue is judged; from here on (the mark) an event for a
 *     file compared ahead is carried to the next interval (watch_judge.c)
 *   each such file is read whole and hashed; the blocks that differ from
 *     the parent's are kept (their bytes and hash, in the pre-copy's slot
 *     layout)                                               program runs
 *   up to AHEAD_ROUNDS refresh passes: the records since the last peek name
 *     the blocks written meanwhile; they are read again     program runs
 *   barrier: the records after the last peek (post) name what the traced
 *     processes wrote since; those blocks, and any growth or cut, are read
 *     again (capture_ahead)                                 program held
 *
 * What a traced process wrote is exact at the barrier: a write whose record
 * was peeked had returned before the whole read began (records are appended
 * after the call), and any other is in a later peek or in post, and read
 * again. A write that no log explains (the reason for the compare) and
 * that lands after the mark may be missing from this checkpoint, as a write
 * by an untraced process during the barrier always could (untraced
 * processes are never held): it is in the next one, which compares the
 * file whole again (the watcher carries its event over), and the stat cache
 * row written now vouches for nothing (a later scan compares the file).
 * Every unexplained change completed before the checkpoint was asked for
 * is in it: the mark comes after the request.
 *
 * A file created, renamed or replaced in the interval is copied whole: it
 * is read ahead too (every block kept), and taken in the barrier only if it
 * is the very inode read (device, number and birth time).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/io.h"
#include "session/slots.h"
#include "session/tctx.h"
#include "session/watch.h"
#include "tree/reader.h"
#include "util/error.h"
#include "util/human.h"
#include "util/log.h"
#include "util/xxh.h"

#define AHEAD_ROUNDS 3        /* refresh passes at most */
#define AHEAD_RESIDUE 64      /* blocks: fewer read again in a pass, and the barrier's share is small */
#define AHEAD_PIECE (1 << 20) /* read in pieces of this much (into the reader's buffer: ahead_buf) */
_Static_assert(AHEAD_PIECE <= READ_PIECE, "the reader's buffer holds a piece");

/* A capture's arrays (capture_ahead fills them) and their room: made
 * before the gate closes, so that the pause writes into memory already
 * faulted in (a fresh page costs this VM tens of microseconds: a PostgreSQL
 * table of 130 MiB with ~8,000 blocks changed made ~60 faults a pause,
 * BENCHMARKS-ARCHIVE.md P25). */
typedef struct {
	vec runs;                  /* of blk_run, room for cap_runs */
	const unsigned char **blk; /* room for cap_blk each: */
	unsigned char *hashed;
	size_t *first;             /* room for cap_runs */
	size_t cap_blk, cap_runs;
} cap_arrays;

static void cap_arrays_free(cap_arrays *a)
{
	vec_free(&a->runs);
	free(a->blk);
	free(a->hashed);
	free(a->first);
	memset(a, 0, sizeof *a);
}

/* Room for nblk blocks in nruns runs; the memory written (faulted in) when
 * touch. 0 or ENOMEM (a is then empty). */
static int cap_arrays_make(cap_arrays *a, size_t nblk, size_t nruns, int touch)
{
	cap_arrays_free(a);
	a->runs = (vec)VEC_INIT(blk_run);
	a->runs.v = malloc((nruns ? nruns : 1) * sizeof(blk_run));
	a->runs.cap = nruns ? nruns : 1;
	a->blk = malloc((nblk ? nblk : 1) * sizeof *a->blk);
	a->hashed = malloc(nblk ? nblk : 1);
	a->first = malloc((nruns ? nruns : 1) * sizeof *a->first);
	if (!a->runs.v || !a->blk || !a->hashed || !a->first) {
		cap_arrays_free(a);
		return ENOMEM;
	}
	a->cap_blk = nblk ? nblk : 1;
	a->cap_runs = a->runs.cap;
	if (touch) {
		memset(a->runs.v, 0, a->cap_runs * sizeof(blk_run));
		memset(a->blk, 0, a->cap_blk * sizeof *a->blk);
		memset(a->hashed, 0, a->cap_blk);
		memset(a->first, 0, a->cap_runs * sizeof *a->first);
	}
	return 0;
}

struct ahead_file {
	int64_t dev, ino, size;   /* the inode read, and its size then */
	int64_t n;                /* blocks */
	uint64_t *h;              /* block_hash of each block */
	unsigned char **slot;     /* per block: NULL if it equals the parent's, else a slot (SLOT_LEN) */
	const block_hashes *old;  /* the parent's compare (ss->hashes), or NULL: every block differs */
	block_hashes *own;        /* or the parent's version's, from the store (old points here) */
	int dead;                 /* a refresh could not follow it: not to be used */
	int fresh;                /* read without the parent's hashes: every block held */
	struct statx_timestamp born; /* the inode's birth (statx): an inode number reused is born again */
	int has_born;
	int fd1;                  /* the fd it was read through + 1, kept for the barrier (ahead_take_fd); 0: none */
	cap_arrays pre;           /* the capture's arrays, made and faulted in before the gate (ahead_prebuild) */
};

/* The inode's birth time, if the file system keeps one. */
static int born_at(int fd, struct statx_timestamp *out)
{
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_BTIME, &sx) || !(sx.stx_mask & STATX_BTIME))
		return 0;
	*out = sx.stx_btime;
	return 1;
}

/* Block b hashes to h in the parent's version too. */
static int same_as_parent(const ahead_file *af, int64_t b, uint64_t h)
{
	return af->old && b < af->old->n && af->old->h[b] == h;
}

void ahead_free(void *p)
{
	ahead_file *af = p;
	if (!af)
		return;
	if (af->fd1) {
		close(af->fd1 - 1);
		kept_fd_give();
	}
	cap_arrays_free(&af->pre);
	for (int64_t b = 0; af->slot && b < af->n; b++)
		slot_release(af->slot[b]);
	free(af->slot);
	free(af->h);
	block_hashes_free(af->own);
	free(af);
}

/* Block b as read now (len bytes at buf, the rest of the block zero; h
 * their block_hash): kept if it differs from the parent's, dropped if not.
 * buf is not read when h is the parent's. */
static int ahead_put_h(tctx *t, ahead_file *af, int64_t b, uint64_t h, const unsigned char *buf, size_t len)
{
	af->h[b] = h;
	if (same_as_parent(af, b, h)) {
		if (af->slot[b]) {
			slot_release(af->slot[b]);
			af->slot[b] = NULL;
			t->budget += MTM_BLOCK;
		}
		return 0;
	}
	unsigned char *s = af->slot[b];
	if (!s) {
		if (!(s = slot_alloc()))
			return ENOMEM;
		af->slot[b] = s;
		t->budget = t->budget > MTM_BLOCK ? t->budget - MTM_BLOCK : 0;
	}
	memcpy(s, buf, len);
	memset(s + len, 0, MTM_BLOCK - len);
	memcpy(s + MTM_BLOCK, &h, sizeof h); /* (the record takes it instead of hashing) */
	*slot_meta(s) = 0;                   /* never written ahead */
	return 0;
}

static int ahead_put(tctx *t, ahead_file *af, int64_t b, const unsigned char *buf, size_t len)
{
	return ahead_put_h(t, af, b, block_hash(buf, len), buf, len);
}

/* Reads blocks [from, to) of fd (size bytes) into af. */
static int ahead_read(tctx *t, ahead_file *af, int fd, int64_t from, int64_t to, unsigned char *buf)
{
	const int64_t B = MTM_BLOCK;
	if (to > af->n)
		to = af->n;
	while (from < to) {
		int64_t off = from * B, want = (to - from) * B;
		if (want > AHEAD_PIECE)
			want = AHEAD_PIECE;
		if (off + want > af->size)
			want = af->size - off;
		size_t got;
		int rc = io_pread(fd, buf, (size_t)want, off, &got);
		if (rc)
			return rc;
		if (got < (size_t)want) /* cut short meanwhile (no log said so): zeros, as the barrier reads them */
			memset(buf + got, 0, (size_t)want - got);
		for (int64_t o = 0; o < want; o += B) {
			size_t len = (size_t)(want - o < B ? want - o : B);
			if ((rc = ahead_put(t, af, from + o / B, buf + o, len)))
				return rc;
		}
		from += (want + B - 1) / B;
		t->ahead_read += (uint64_t)want;
	}
	return 0;
}

/* The first read of a file, whole (af sized for it), through rd: where
 * the file is in the page cache (mapped reads, tree/reader.h), its blocks
 * are hashed where they lie and only those that differ from the parent's
 * are copied out (reader_settle: what is kept is what was hashed). A
 * PostgreSQL under pgbench has ~150-250 MiB of files compared whole at
 * each checkpoint, ~25 MiB of it changed: the copy of the rest into a
 * buffer was a sixth of the session's CPU (P16). Elsewhere, where the
 * file was shortened under the mapping, and where mapping costs this
 * machine more than the copy (the reader picks: P23), read as ahead_read
 * reads. */
static int ahead_read_whole(tctx *t, ahead_file *af, int fd, scan_reader *rd)
{
	const int64_t B = MTM_BLOCK;
	read_piece *p = rd->p;
	int rc = 0;
	for (int64_t off = 0; off < af->size && !rc;) {
		p->off = off;
		p->until = af->size;
		p->want = (size_t)(af->size - off < (int64_t)READ_PIECE ? af->size - off : (int64_t)READ_PIECE);
		reader_read(rd, FILE_SRC(fd), p);
		if ((rc = p->err))
			break;
		size_t want = p->want, nb = (want + (size_t)B - 1) / (size_t)B;
		int64_t b0 = off / B;
		/* mapped: the blocks that differ copied into the buffer, in runs */
		for (size_t i = 0; p->map && i < nb;) {
			if (same_as_parent(af, b0 + (int64_t)i, p->h[i])) {
				i++;
				continue;
			}
			size_t e = i + 1;
			while (e < nb && !same_as_parent(af, b0 + (int64_t)e, p->h[e]))
				e++;
			if (reader_settle(p, i, e)) { /* shortened meanwhile: the rest as a short read finds it */
				p->map = NULL;
				p->got = i * (size_t)B;
			}
			i = e;
		}
#define BLK_LEN(i) (want - (i) * (size_t)B < (size_t)B ? want - (i) * (size_t)B : (size_t)B)
		if (!p->map && p->got < want) { /* cut short meanwhile (no log said so): zeros, as the barrier reads them */
			memset(p->buf + p->got, 0, want - p->got);
			for (size_t i = p->got / (size_t)B; i < nb; i++)
				p->h[i] = block_hash(p->buf + i * (size_t)B, BLK_LEN(i));
		}
		for (size_t i = 0; i < nb && !rc; i++)
			rc = ahead_put_h(t, af, b0 + (int64_t)i, p->h[i], p->buf + i * (size_t)B, BLK_LEN(i));
#undef BLK_LEN
		off += (int64_t)want;
		t->ahead_read += (uint64_t)want;
	}
	reader_end_file(rd); /* (before the fd is closed: a window is the fd's) */
	return rc;
}

/* Makes af hold n blocks for size bytes (grown blocks are to be read). */
static int ahead_resize(tctx *t, ahead_file *af, int64_t size)
{
	int64_t n = (size + MTM_BLOCK - 1) / MTM_BLOCK;
	for (int64_t b = n; b < af->n; b++)
		if (af->slot[b]) {
			slot_release(af->slot[b]);
			af->slot[b] = NULL;
			t->budget += MTM_BLOCK;
		}
	if (n > af->n) {
		uint64_t *h = realloc(af->h, (size_t)n * sizeof *h);
		if (h)
			af->h = h;
		unsigned char **s = h ? realloc(af->slot, (size_t)n * sizeof *s) : NULL;
		if (!s)
			return ENOMEM;
		af->slot = s;
		memset(af->slot + af->n, 0, (size_t)(n - af->n) * sizeof *s);
		memset(af->h + af->n, 0, (size_t)(n - af->n) * sizeof *h);
	}
	af->n = n;
	af->size = size;
	return 0;
}

/* The first read of one file, whole. fresh: not the parent's file (a
 * namespace change at its path): every block is kept. */
static int ahead_file_read(tctx *t, const char *path, scan_reader *rd, int fresh)
{
	int fd;
	if (beneath_open(t->s->rootfd, path, O_RDONLY, &fd))
		return 0; /* gone or not a plain path: the barrier sees to it */
	struct stat st;
	ahead_file *af = NULL;
	int rc = 0;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > t->budget / 2)
		goto out; /* (too big to hold: compared in the barrier, read in place) */
	if (!(af = calloc(1, sizeof *af))) {
		rc = ENOMEM;
		goto out;
	}
	af->dev = (int64_t)st.st_dev;
	af->ino = (int64_t)st.st_ino;
	const block_hashes *old = pathmap_get(&t->ss->hashes, path);
	if (!fresh && old && old->at == t->parent_id && old->dev == af->dev && old->ino == af->ino)
		af->old = old;
	else if (!fresh && parent_file_hashes(t->ss, t->parent_id, path, &af->own))
		af->old = af->own; /* (the session's first compare of it: the store's) */
	af->fresh = fresh;
	af->has_born = born_at(fd, &af->born);
	if ((rc = ahead_resize(t, af, (int64_t)st.st_size)) || (rc = ahead_read_whole(t, af, fd, rd)))
		goto out;
	/* what the barrier's collect would look up inside the pause, looked
	 * up now: the parent's entry and stat cache row, and the file itself
	 * (its fd, valid there unless the path's namespace changed: live.c) */
	parent_note_entry(t->ss, t->parent_id, path);
	if (kept_fd_take()) {
		af->fd1 = fd + 1;
		fd = -1;
	}
	if ((rc = pathmap_put(&t->ahead, path, af)))
		goto out;
	af = NULL;
	t->ahead_files++;
out:
	ahead_free(af);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Blocks [a, b) of af: how many of them it holds. */
static uint64_t held_blocks(const ahead_file *af, int64_t a, int64_t b)
{
	if (b > af->n)
		b = af->n;
	return b > a ? (uint64_t)(b - a) : 0;
}

/* The buffer the refreshes and the barrier read into: the session
 * reader's (compare_ahead reserved it, AHEAD_PIECE, and its first compare
 * faulted it in), not a fresh megabyte each: a malloc that size is an
 * mmap, every page touched a fault (tens of microseconds on this VM), and
 * the barrier's are inside the pause. NULL: none. */
static unsigned char *ahead_buf(tctx *t)
{
	const scan_reader *rd = t->ss->ahead_rd;
	return rd && rd->cap >= AHEAD_PIECE ? rd->mem : NULL;
}

int ahead_take_fd(tctx *t, const char *path)
{
	ahead_file *af = t->ahead.n ? pathmap_get(&t->ahead, path) : NULL;
	if (!af || af->dead || !af->fd1)
		return -1;
	int fd = af->fd1 - 1;
	af->fd1 = 0;
	kept_fd_give();
	return fd;
}

int ahead_refresh(mtm_session *ss, void *arg, const char *path, const file_change *fc)
{
	tctx *t = arg;
	ahead_file *af = pathmap_get(&t->ahead, path);
	(void)ss;
	if (!af)
		return 0;
	if (af->dead)
		return 1;
	int fd = -1, rc = 0;
	struct stat st;
	unsigned char *buf = ahead_buf(t);
	/* a truncation, a whole-file record, another inode: compared in the barrier */
	if (fc->whole || fc->trunc_min >= 0 || beneath_open(t->s->rootfd, path, O_RDONLY, &fd) || fstat(fd, &st) ||
	    (int64_t)st.st_dev != af->dev || (int64_t)st.st_ino != af->ino || !buf) {
		rc = 1;
		goto out;
	}
	int64_t old_size = af->size;
	if ((int64_t)st.st_size != old_size) { /* the block of the old end, and what grew */
		int64_t from = (old_size < (int64_t)st.st_size ? old_size : (int64_t)st.st_size) / MTM_BLOCK;
		if ((rc = ahead_resize(t, af, (int64_t)st.st_size)) || (rc = ahead_read(t, af, fd, from, af->n, buf)))
			goto out;
		t->ahead_again += held_blocks(af, from, af->n);
	}
	for (size_t k = 0; k < fc->ranges.n && !rc; k++) {
		const byte_range *r = &VEC_AT(&fc->ranges, byte_range, k);
		int64_t a = r->off / MTM_BLOCK, b = (r->off + r->len + MTM_BLOCK - 1) / MTM_BLOCK;
		rc = ahead_read(t, af, fd, a, b, buf);
		t->ahead_again += held_blocks(af, a, b);
	}
out:
	if (fd >= 0)
		close(fd);
	if (rc)
		af->dead = 1; /* the barrier compares it as before */
	return 1;
}

/* The blocks af holds (those that differ from the parent's), and in how
 * many runs. */
static void held_shape(const ahead_file *af, size_t *nblk, size_t *nruns)
{
	*nblk = *nruns = 0;
	for (int64_t b = 0; b < af->n; b++)
		if (af->slot[b]) {
			*nblk += 1;
			*nruns += b == 0 || !af->slot[b - 1];
		}
}

/* cap's arrays (room enough: held_shape) pointed at af's slots. */
static void fill_runs(const ahead_file *af, capture *cap)
{
	size_t n = 0;
	cap->runs.n = 0;
	for (int64_t b = 0; b < af->n; b++) {
		if (!af->slot[b])
			continue;
		blk_run *last = cap->runs.n ? &VEC_AT(&cap->runs, blk_run, cap->runs.n - 1) : NULL;
		if (!last || last->blkno + last->count != b) {
			cap->first[cap->runs.n] = n;
			last = &VEC_AT(&cap->runs, blk_run, cap->runs.n++);
			*last = (blk_run){.blkno = b, .count = 0};
		}
		last->count++;
		cap->hashed[n] = 1;
		cap->blk[n++] = af->slot[b];
	}
}

/* Before the gate: the capture's arrays made for what af holds now, with
 * room for what the barrier's reads may add, and faulted in. Best effort
 * (without them the barrier allocates its own). */
static void ahead_prebuild(ahead_file *af)
{
	size_t nblk, nruns;
	held_shape(af, &nblk, &nruns);
	(void)cap_arrays_make(&af->pre, nblk + nblk / 8 + 256, nruns + nruns / 8 + 256, 1);
}

/* The files to compare ahead: those the change set compares whole so far,
 * the sticky ones (shared writable mappings), and those the watcher saw
 * written without a record yet. */
static int candidates(tctx *t, pathmap *out)
{
	mtm_session *ss = t->ss;
	change_set *cs = t->cs;
	for (size_t i = 0; i < cs->files.cap; i++) {
		const file_change *fc = cs->files.slots[i].val;
		const char *p = cs->files.slots[i].key;
		if (p && fc && fc->whole && !pathmap_get(out, p) && pathmap_put(out, p, (void *)1))
			return ENOMEM;
	}
	/* created, renamed or replaced: read whole in the barrier otherwise */
	for (size_t i = 0; i < cs->ns.cap; i++) {
		const char *p = cs->ns.slots[i].key;
		if (p && !pathmap_get(out, p) && pathmap_put(out, p, (void *)1))
			return ENOMEM;
	}
	for (size_t i = 0; i < ss->sticky.n; i++) {
		const char *p = VEC_AT(&ss->sticky, sticky_whole, i).path;
		if (!pathmap_get(out, p) && pathmap_put(out, p, (void *)1))
			return ENOMEM;
	}
	return 0;
}

int compare_ahead(tctx *t)
{
	mtm_session *ss = t->ss;
	pathmap cand = {0};
	int rc = 0;
	int64_t t0 = now_ns();
	/* the watcher's events so far are judged; later ones are carried to the
	 * next interval (the mark: after the request, before the reads) */
	if (ss->watch && (rc = watch_mark(ss->watch, ss, t->cs, &cand)))
		goto out;
	if ((rc = candidates(t, &cand)))
		goto out;
	/* the session's reader (its buffer a huge page: made once, not per checkpoint) */
	if (cand.n && !ss->ahead_rd) {
		if (!(ss->ahead_rd = malloc(sizeof *ss->ahead_rd))) {
			rc = ENOMEM;
			goto out;
		}
		reader_init(ss->ahead_rd);
		ss->ahead_rd->one_thread = 1;
		ss->ahead_rd->pick = 1; /* mapped or read, whichever costs this machine less (tree/reader.h) */
	}
	if (cand.n && reader_reserve(ss->ahead_rd, READ_PIECE)) {
		rc = ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < cand.cap && !rc; i++) {
		const char *p = cand.slots[i].key;
		/* a namespace change there (a file created, renamed or replaced):
		 * not the parent's, read whole */
		if (p && !session_outside_tree(p))
			rc = ahead_file_read(t, p, ss->ahead_rd, pathmap_get(&t->cs->ns, p) != NULL);
		/* (~150 MiB under pgbench, up to a second on a busy machine: the
		 * watcher's queue read on meanwhile, judged in the barrier) */
		if (ss->watch)
			watch_read_on_if_filling(ss->watch);
	}
	const char *wait_ms = secure_getenv("METAMORI_TEST_AHEAD_WAIT_MS"); /* tests: a write lands here */
	if (!rc && wait_ms && *wait_ms)
		usleep((useconds_t)atoi(wait_ms) * 1000);
	/* refresh passes: what the program wrote meanwhile is read again, while
	 * it runs, until little is left for the barrier */
	for (int round = 0; !rc && t->ahead.n && round < AHEAD_ROUNDS; round++) {
		uint64_t before = t->ahead_again, read = 0;
		rc = precopy_pass(ss, t->cs, &t->pre, &ss->bg_held, &read, t->budget / 2, ahead_refresh, t);
		if (t->ahead_again - before < AHEAD_RESIDUE)
			break;
	}
	for (size_t i = 0; !rc && i < t->ahead.cap; i++) {
		ahead_file *af = t->ahead.slots[i].val;
		if (t->ahead.slots[i].key && af && !af->dead)
			ahead_prebuild(af);
	}
out:
	pathmap_free(&cand, NULL);
	t->ahead_ns = now_ns() - t0;
	if (rc == ENOMEM || rc > 0)
		return mtm_set_error(rc > 0 ? rc : ENOMEM, "checkpoint: comparing ahead");
	return rc;
}

/* In the barrier: a file compared ahead, brought up to this instant.
 * whole: the file is not the parent's, the capture holds all of it (only
 * from a fresh read, of the very inode: an inode number freed and reused
 * since is born again). *done = 0 if it cannot be (the caller compares or
 * copies it as before). */
int capture_ahead(tctx *t, live_item *it, capture *cap, int whole, int *done)
{
	*done = 0;
	ahead_file *af = pathmap_get(&t->ahead, it->path);
	/* (whole and carried over: a copy of a whole file vouches for it in the
	 * stat cache, so it is read in the barrier, with the write) */
	if (!af || af->dead || af->dev != (int64_t)it->st.st_dev || af->ino != (int64_t)it->st.st_ino ||
	    (whole && (!af->fresh || !af->has_born || watch_carried(t->ss->watch, it->path))))
		return 0;
	const file_change *post = pathmap_get(&t->post.files, it->path);
	if (post && post->whole)
		return 0;
	/* the fd the collect opened it with (live_open: it->st is its stat),
	 * else opened again */
	struct stat st = it->st;
	int fd = live_take_fd(t, it->path), rc = fd < 0 ? open_live(t, it->path, &fd, &st) : 0;
	if (rc)
		return 0; /* (the compare as before says what is wrong) */
	unsigned char *buf = ahead_buf(t); /* (faulted in by the compare: no fresh memory in the pause) */
	if (!buf || !S_ISREG(st.st_mode) || (int64_t)st.st_ino != af->ino || (int64_t)st.st_dev != af->dev) {
		close(fd);
		return 0;
	}
	struct statx_timestamp born;
	if (whole && (!born_at(fd, &born) || born.tv_sec != af->born.tv_sec || born.tv_nsec != af->born.tv_nsec)) {
		close(fd);
		return 0;
	}
	it->st = st;
	*done = 1;
	const int64_t B = MTM_BLOCK;
	int64_t old_size = af->size, size = (int64_t)st.st_size;
	uint64_t before = t->ahead_read;
	if (size != old_size && !(rc = ahead_resize(t, af, size)))
		rc = ahead_read(t, af, fd, (old_size < size ? old_size : size) / B, af->n, buf);
	if (!rc && post && post->trunc_min >= 0)
		rc = ahead_read(t, af, fd, post->trunc_min / B, af->n, buf);
	for (size_t k = 0; post && !rc && k < post->ranges.n; k++) {
		const byte_range *r = &VEC_AT(&post->ranges, byte_range, k);
		rc = ahead_read(t, af, fd, r->off / B, (r->off + r->len + B - 1) / B, buf);
	}
	close(fd);
	t->barrier_read += t->ahead_read - before;
	if (rc)
		return mtm_set_errno(rc, "%s/%s: capture", t->s->root, it->path);
	/* the capture points at the slots (no copy in the barrier), in the
	 * arrays made before the gate while they have room */
	size_t nblk, nruns;
	held_shape(af, &nblk, &nruns);
	cap_arrays a = af->pre;
	memset(&af->pre, 0, sizeof af->pre);
	if ((!a.blk || nblk > a.cap_blk || nruns > a.cap_runs) && cap_arrays_make(&a, nblk, nruns, 0))
		return mtm_set_error(ENOMEM, "checkpoint");
	vec_free(&cap->runs);
	cap->runs = a.runs;
	cap->blk = a.blk;
	cap->first = a.first;
	cap->hashed = a.hashed;
	fill_runs(af, cap);
	/* the file's hashes go to the pending ones as they are (this is their
	 * last use here): a copy, in the pause, of 8 bytes a block of the whole
	 * file was a fresh allocation's page faults each time (PostgreSQL's
	 * 130 MiB table: 260 KiB, ~65 faults, P21) */
	uint64_t *h = af->n && af->h ? af->h : malloc(sizeof *h);
	if (!h)
		return mtm_set_error(ENOMEM, "checkpoint");
	if (h == af->h)
		af->h = NULL; /* (ahead_free: not ours any more) */
	assert(cap->runs.n == nruns);
	/* (fresh: every block was kept, and reads only replace them) */
	assert(!whole || (cap->runs.n == (af->n ? 1u : 0u) && nblk == (size_t)af->n));
	cap->size = size;
	cap->fd = -1;
	cap->whole = whole; /* (whole: one run, [0, n), in memory) */
	/* a write no log explains, after the mark, may be missing: the stat
	 * cache row must not let a later scan skip the file */
	cap->vouched = 0;
	t->ahead_used++;
	if (t->ss->debug == 1)
		log_msg(MTM_LOG_DEBUG, "session: %s compared ahead: %zu blocks differ, %llu KiB read again in the barrier",
		        it->path, nblk, (unsigned long long)(t->ahead_read - before) >> 10);
	return add_pending(t, it->path, &st, h, NULL);
}

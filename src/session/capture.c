/*
 * capture.c — what a tracked checkpoint copies out of a touched file (its
 * dirty blocks, the blocks that differ from the hashes kept, or all of it)
 * and the copy: into memory, read with the other scattered blocks in the
 * barrier (capture_read.c), or, for a big whole file, into a memfd.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/io.h"
#include "io/xattr.h"
#include "session/tctx.h"
#include "util/error.h"
#include "util/log.h"

/* Copies bytes [off, off + len) of fd to the same offset of mfd. */
static int copy_range(int mfd, int fd, int64_t off, int64_t len)
{
	static __thread unsigned char *buf;
	while (len > 0) {
		if (lseek(mfd, off, SEEK_SET) < 0)
			return errno;
		off_t in = off;
		ssize_t n = sendfile(mfd, fd, &in, (size_t)(len < (1 << 30) ? len : (1 << 30)));
		if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
			/* no sendfile between these two: by hand */
			if (!buf && !(buf = malloc(1 << 20)))
				return ENOMEM;
			size_t want = (size_t)(len < (1 << 20) ? len : (1 << 20)), got;
			int rc = io_pread(fd, buf, want, off, &got);
			if (rc)
				return rc;
			if (got && pwrite(mfd, buf, got, off) != (ssize_t)got)
				return errno ? errno : EIO;
			n = (ssize_t)got;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return 0; /* shorter than its stat said: what follows reads as zeros */
		off += n;
		len -= n;
	}
	return 0;
}

static int cmp_run(const void *a, const void *b)
{
	const blk_run *x = a, *y = b;
	return x->blkno < y->blkno ? -1 : x->blkno > y->blkno;
}

static int add_run(vec *runs, int64_t from, int64_t to /* blocks, exclusive */)
{
	if (to <= from)
		return 0;
	blk_run *r = vec_push(runs);
	if (!r)
		return ENOMEM;
	r->blkno = from;
	r->count = to - from;
	return 0;
}

/* The blocks a file's records may have changed, against its parent size. */
int dirty_runs(const file_change *fc, int64_t parent_size, int64_t size, vec *runs)
{
	const int64_t B = MTM_BLOCK;
	int64_t nblk = (size + B - 1) / B;
	if (fc) {
		for (size_t i = 0; i < fc->ranges.n; i++) {
			const byte_range *r = &VEC_AT(&fc->ranges, byte_range, i);
			int64_t a = r->off / B, b = (r->off + r->len + B - 1) / B;
			if (b > nblk)
				b = nblk;
			if (add_run(runs, a, b))
				return ENOMEM;
		}
		/* a truncation zeroes from its point on, whatever grows back */
		if (fc->trunc_min >= 0 && add_run(runs, fc->trunc_min / B, nblk))
			return ENOMEM;
	}
	/* growth past the parent's end: holes there must read as zeros, not as
	 * the blocks an older, longer version left in the map */
	if (size > parent_size && add_run(runs, parent_size / B, nblk))
		return ENOMEM;
	if (runs->n < 2)
		return 0;
	qsort(runs->v, runs->n, sizeof(blk_run), cmp_run);
	size_t k = 0;
	for (size_t i = 1; i < runs->n; i++) {
		blk_run *last = &VEC_AT(runs, blk_run, k), *r = &VEC_AT(runs, blk_run, i);
		if (r->blkno <= last->blkno + last->count) {
			int64_t end = r->blkno + r->count;
			if (end > last->blkno + last->count)
				last->count = end - last->blkno;
		} else {
			VEC_AT(runs, blk_run, ++k) = *r;
		}
	}
	runs->n = k + 1;
	return 0;
}


/* Opens the live file it names for its capture: the very file the
 * interval's stat saw (a regular file, the same inode), its stat taken
 * again into it->st, and its extended attributes read through the same fd
 * (those of the inode captured, with its content, as a scan reads them;
 * ckpt_record would otherwise open the file's directory again by name
 * after the barrier: six system calls a file instead of one). Anything
 * else is a change no log explains: NEED_SCAN. */
static int open_same_file(tctx *t, live_item *it, int *out)
{
	struct stat st;
	int fd = live_take_fd(t, it->path), rc;
	if (fd >= 0) { /* opened by live_open, which took it->st from that open */
		st = it->st;
		rc = 0;
	} else {
		rc = open_live(t, it->path, &fd, &st);
	}
	if (rc == ELOOP || rc == ENOENT || rc == ENOTDIR || rc == EXDEV)
		return need_scan(t, "a file changed under an untraced process");
	if (rc)
		return mtm_set_errno(rc, "%s/%s", t->s->root, it->path);
	if (!S_ISREG(st.st_mode) || st.st_ino != it->st.st_ino || st.st_dev != it->st.st_dev) {
		close(fd);
		return need_scan(t, "a file changed under an untraced process");
	}
	if (!it->xattrs_read) {
		if ((rc = xattr_read_fd(fd, &it->xattrs, &it->xattrs_len))) {
			close(fd);
			return mtm_set_errno(rc, "%s/%s: reading extended attributes", t->s->root, it->path);
		}
		it->xattrs_read = 1;
	}
	it->st = st;
	*out = fd;
	return 0;
}

/* Room for n bytes of a capture: in the session's kept slab, or in one
 * made for this checkpoint (freed by deferred_free), or for a large
 * capture a malloc of its own (*owned). A malloc per file cost W2's pause
 * 200 mallocs of 4 KiB (and their page faults: their headers land on
 * pages nothing else touches), a sixth of the collect's CPU. */
static unsigned char *capture_alloc(tctx *t, size_t n, int *owned)
{
	*owned = 0;
	if (!n)
		n = 1; /* (an empty file: still a place, never NULL) */
	if (n > t->slab_left && n <= CAP_SLAB_BYTES / 4) {
		unsigned char *slab = NULL;
		if (!t->ss->cap_slab && (t->ss->cap_slab = malloc(CAP_SLAB_BYTES)))
			slab = t->ss->cap_slab; /* (the first: kept for the next checkpoints) */
		else if ((slab = malloc(CAP_SLAB_BYTES))) {
			unsigned char **k = vec_push(&t->slabs);
			if (!k) {
				free(slab);
				slab = NULL;
			} else {
				*k = slab;
			}
		}
		if (slab) {
			t->slab_at = slab;
			t->slab_left = CAP_SLAB_BYTES;
		}
	}
	if (n <= t->slab_left) {
		unsigned char *p = t->slab_at;
		t->slab_at += n;
		t->slab_left -= n;
		return p;
	}
	*owned = 1;
	return malloc(n);
}

/* Copies a live file's content (whole, or the blocks in cap->runs) out:
 * into memory (read with the other scattered blocks in read_deferred), or,
 * for a big whole file, into a memfd; and takes the stat of what was copied. */
int capture_file(tctx *t, live_item *it, capture *cap)
{
	int fd, rc = open_same_file(t, it, &fd);
	if (rc)
		return rc;
	const struct stat st = it->st;
	const int64_t B = MTM_BLOCK, size = (int64_t)st.st_size;
	uint64_t want = 0;
	if (cap->whole)
		want = (uint64_t)size;
	else
		for (size_t i = 0; i < cap->runs.n; i++)
			want += (uint64_t)VEC_AT(&cap->runs, blk_run, i).count * B;
	if (want > t->budget) {
		/* too much to hold in memory: read the file itself, after the copy
		 * phase but before the barrier opens */
		cap->fd = fd;
		t->hold = 1;
		return 0;
	}
	t->budget -= want;
	/* a small file copied whole: read now, like scattered blocks (a memfd
	 * costs more than the read) */
	int small = cap->whole && size <= (1 << 20);
	if (small && add_run(&cap->runs, 0, (size + B - 1) / B)) {
		close(fd);
		return mtm_set_error(ENOMEM, "checkpoint");
	}
	if (!cap->whole || small) {
		deferred_copy *d = vec_push(&t->deferred);
		int owned = 0;
		unsigned char *p = d ? capture_alloc(t, want, &owned) : NULL;
		if (!p) {
			if (d)
				t->deferred.n--;
			close(fd);
			return mtm_set_error(ENOMEM, "checkpoint");
		}
		d->owned = owned;
		d->cap = cap;
		d->data = p;
		d->size = size;
		d->src = fd; /* read by read_deferred, with the others */
		d->path = it->path;
		d->dev = (int64_t)st.st_dev;
		d->ino = (int64_t)st.st_ino;
		d->src_precopy = !cap->whole;
		return 0;
	}
	cap->fd = memfd_create("metamori-capture", MFD_CLOEXEC);
	if (cap->fd < 0) {
		rc = errno;
		close(fd);
		return mtm_set_errno(rc, "memfd_create");
	}
	if (ftruncate(cap->fd, size))
		rc = errno;
	else
		rc = copy_range(cap->fd, fd, 0, size);
	t->barrier_read += (uint64_t)size;
	close(fd);
	return rc ? mtm_set_errno(rc, "%s/%s: capture", t->s->root, it->path) : 0;
}

/* A file to compare whole (writes the interposer cannot see) that was
 * compared whole at the parent too: its blocks are hashed here and only
 * those that differ from the parent's are copied out. */
int capture_hashed(tctx *t, live_item *it, capture *cap)
{
	const block_hashes *old = pathmap_get(&t->ss->hashes, it->path);
	int valid = old && old->at == t->parent_id && old->dev == (int64_t)it->st.st_dev &&
	            old->ino == (int64_t)it->st.st_ino && (uint64_t)it->st.st_size <= t->budget;
	if (!valid) {
		cap->whole = 1;
		int rc = capture_file(t, it, cap);
		/* hashed after the barrier, from the copy (not from a file read in place) */
		return rc || t->hold ? rc : add_pending(t, it->path, &it->st, NULL, cap);
	}
	int fd, rc = open_same_file(t, it, &fd);
	if (rc)
		return rc;
	const struct stat st = it->st;
	const int64_t B = MTM_BLOCK, size = (int64_t)st.st_size, n = (size + B - 1) / B;
	uint64_t *h = malloc((size_t)(n ? n : 1) * sizeof *h);
	unsigned char *buf = malloc(1 << 20), *dat = NULL;
	size_t dlen = 0, dcap = 0;
	if (!h || !buf) {
		rc = ENOMEM;
		goto out;
	}
	for (int64_t off = 0; off < size && !rc;) {
		size_t want = (size_t)(size - off < (1 << 20) ? size - off : (1 << 20)), got;
		if ((rc = io_pread(fd, buf, want, off, &got)))
			break;
		if (got < want)
			memset(buf + got, 0, want - got); /* shrank meanwhile: an untraced writer */
		t->barrier_read += want;
		for (size_t o = 0; o < want && !rc; o += MTM_BLOCK) {
			int64_t b = (off + (int64_t)o) / B;
			size_t len = want - o < MTM_BLOCK ? want - o : MTM_BLOCK;
			h[b] = block_hash(buf + o, len);
			if (b < old->n && old->h[b] == h[b])
				continue;
			blk_run *last = cap->runs.n ? &VEC_AT(&cap->runs, blk_run, cap->runs.n - 1) : NULL;
			if (last && last->blkno + last->count == b)
				last->count++;
			else if (add_run(&cap->runs, b, b + 1))
				rc = ENOMEM;
			if (!rc && dlen + len > dcap) {
				size_t nc = dcap ? dcap * 2 : 64 * MTM_BLOCK;
				unsigned char *nd = realloc(dat, nc);
				if (!nd)
					rc = ENOMEM;
				else {
					dat = nd;
					dcap = nc;
				}
			}
			if (!rc) {
				memcpy(dat + dlen, buf + o, len); /* what ckpt_record reads */
				dlen += len;
			}
			t->budget = t->budget > len ? t->budget - len : 0;
		}
		off += (int64_t)want;
	}
out:
	free(buf);
	close(fd);
	deferred_copy *d = rc ? NULL : vec_push(&t->deferred);
	if (!rc && !d)
		rc = ENOMEM;
	if (rc) {
		free(h);
		free(dat);
		return mtm_set_errno(rc, "%s/%s: capture", t->s->root, it->path);
	}
	d->cap = cap;
	d->data = dat;
	d->owned = 1;
	d->size = size;
	d->src = -1;
	d->path = it->path;
	cap->whole = 0;
	cap->vouched = 1; /* every block was read and compared */
	if (t->ss->debug == 1)
		log_msg(MTM_LOG_DEBUG, "session: %s compared by hashes: %zu runs", it->path, cap->runs.n);
	return add_pending(t, it->path, &st, h, NULL);
}

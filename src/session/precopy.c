/*
 * precopy.c — copying dirty blocks out of the page cache ahead of the
 * barrier, as live migration copies memory pages ahead of the stop.
 *
 * Each pass reads the records written since the previous one (barrier_peek)
 * and reads the blocks they name, replacing any older copy: a block's copy
 * is then at least as new as its last record seen. The session runs passes
 * while the program works (session_precopy_tick, a few per second at most,
 * bounded in bytes per interval), and a checkpoint runs a last one before
 * it closes the gate; in the barrier only the blocks the records after that
 * last pass name are read again (tracked.c). A write under way during a
 * pass is recorded after it, so its blocks are read again too.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/io.h"
#include "session/session.h"
#include "session/slots.h"
#include "session/watch.h"
#include "store/blockhash.h"
#include "store/index.h"
#include "store/lineage.h"
#include "util/human.h"
#include "util/error.h"
#include "util/log.h"
#include "util/keymap.h"
#include "util/xxh.h"

typedef struct { int64_t off, len; } byte_range; /* as in barrier.c */

/* The parent's hashes of the blocks copied, looked up while the program
 * runs too: the checkpoint compares each changed block with its parent's
 * version (a seek per block), and takes them from here while the head is
 * still the one they were looked up at (only the session makes
 * checkpoints; prune keeps what the head reads; restore is refused). */
int parent_hashes_get(const parent_hashes *ph, mtm_id parent, int64_t file_id, int64_t b, uint64_t *out)
{
	const uint64_t *v = ph && parent && ph->at == parent ? keymap_get(&ph->hash, file_id, b) : NULL;
	if (v)
		*out = *v;
	return v != NULL;
}

static void entry_free(void *p)
{
	if (p)
		entry_clear(p);
	free(p);
}

/* A copy the caller owns (entry_clear): strings and attributes duplicated. */
static int entry_dup(const entry *e, entry *out)
{
	*out = *e;
	out->path = strdup(e->path);
	out->target = e->target ? strdup(e->target) : NULL;
	out->xattrs = e->xattrs_len ? malloc(e->xattrs_len) : NULL;
	if (!out->path || (e->target && !out->target) || (e->xattrs_len && !out->xattrs)) {
		entry_clear(out);
		return ENOMEM;
	}
	if (e->xattrs_len)
		memcpy(out->xattrs, e->xattrs, e->xattrs_len);
	return 0;
}

int parent_entry_get(const parent_hashes *ph, mtm_id parent, const char *path, entry *out)
{
	const entry *e = ph && parent && ph->at == parent ? pathmap_get(&ph->ent, path) : NULL;
	return e && !entry_dup(e, out);
}

int parent_sc_get(const parent_hashes *ph, mtm_id parent, const char *path, const sc_row **row)
{
	const sc_row *r = ph && parent && ph->at == parent && ph->sc.n ? pathmap_get(&ph->sc, path) : NULL;
	if (!r)
		return 0;
	*row = r->ver ? r : NULL;
	return 1;
}

/* The stat cache row of path, kept for the collect (best effort: a row not
 * kept is looked up there). */
static void note_sc_row(mtm_session *ss, parent_hashes *ph, const char *path)
{
	sc_row got;
	int found;
	if (statcache_get_row(ss->s, &ph->q_sc, path, &got, &found))
		return;
	sc_row *row = malloc(sizeof *row);
	if (!row)
		return;
	*row = found ? got : (sc_row){0}; /* (ver 0: none) */
	if (pathmap_put(&ph->sc, path, row))
		free(row);
}

void parent_hashes_free(parent_hashes *ph)
{
	if (!ph)
		return;
	lineage_free(&ph->lin);
	pathmap_free(&ph->ent, entry_free);
	pathmap_free(&ph->sc, free);
	sqlite3_finalize(ph->q_sc);
	pathmap_free(&ph->fid, NULL);
	keymap_free(&ph->hash);
	free(ph);
}

/* Ready for the current head: emptied when it moved. NULL: none now. */
static parent_hashes *ph_for_head(mtm_session *ss)
{
	mtm_id head;
	if (mtm_head(ss->s, &head) || !head)
		return NULL;
	parent_hashes *ph = ss->bg_ph;
	if (ph && ph->at == head)
		return ph->off ? NULL : ph;
	parent_hashes_free(ph);
	ss->bg_ph = ph = calloc(1, sizeof *ph);
	if (!ph || lineage_of(ss->s, head, &ph->lin)) {
		parent_hashes_free(ph);
		ss->bg_ph = NULL;
		return NULL;
	}
	ph->at = head;
	return ph;
}

static intptr_t note_entry(mtm_session *ss, parent_hashes *ph, const char *path);

int parent_file_hashes(mtm_session *ss, mtm_id parent, const char *path, block_hashes **out)
{
	parent_hashes *ph = ph_for_head(ss);
	*out = NULL;
	/* (the entry kept for the barrier's collect too) */
	intptr_t f = ph && ph->at == parent ? note_entry(ss, ph, path) : 0;
	const entry *e = f > 1 ? pathmap_get(&ph->ent, path) : NULL;
	if (!e)
		return 0;
	int64_t fid = (int64_t)f - 1, ver = e->ver, size = e->size;
	int found = 0;
	if (size < 0)
		return 0;
	blockhash_stmts q = {0};
	uint64_t *h = NULL;
	int64_t n = 0;
	int rc = blockhash_get(ss->s, &q, fid, ver, &h, &n, &found, NULL);
	blockhash_stmts_free(&q);
	block_hashes *bh = !rc && found ? malloc(sizeof *bh) : NULL;
	if (!bh) {
		free(h);
		return 0;
	}
	/* only the blocks within the parent's size (rows past its end stay
	 * visible, FORMAT.md 3.5: a block there is held, whatever it holds) */
	int64_t in_size = (size + MTM_BLOCK - 1) / MTM_BLOCK;
	*bh = (block_hashes){.at = parent, .dev = -1, .ino = -1, .n = n < in_size ? n : in_size, .h = h};
	*out = bh;
	return 1;
}

/* The parent's entry of path (and its stat cache row), looked up now and
 * kept in ph for the barrier's collect (parent_entry_get): its file id + 1,
 * 1 if it is not a file there, 0 after an error (ph is off then). */
static intptr_t note_entry(mtm_session *ss, parent_hashes *ph, const char *path)
{
	intptr_t f = (intptr_t)pathmap_get(&ph->fid, path);
	if (f)
		return f;
	entry e;
	int found;
	if (index_entry_at(ss->s, path, &ph->lin, &e, &found)) {
		ph->off = 1;
		return 0;
	}
	f = found && e.kind == KIND_FILE && e.file_id > 0 ? (intptr_t)e.file_id + 1 : 1;
	entry *kept = found ? malloc(sizeof *kept) : NULL;
	if (kept)
		*kept = e;
	else if (found)
		entry_clear(&e);
	if (pathmap_put(&ph->fid, path, (void *)f) || (kept && pathmap_put(&ph->ent, path, kept))) {
		entry_free(kept);
		ph->off = 1;
		return 0;
	}
	if (f > 1)
		note_sc_row(ss, ph, path);
	return f;
}

void parent_note_entry(mtm_session *ss, mtm_id parent, const char *path)
{
	parent_hashes *ph = ph_for_head(ss);
	if (ph && ph->at == parent)
		(void)note_entry(ss, ph, path);
}

/* The parent's hash of block b of path, looked up now (best effort). */
static void note_parent_hash(mtm_session *ss, parent_hashes *ph, const char *path, int64_t b)
{
	if (!ph || ph->off)
		return;
	intptr_t f = note_entry(ss, ph, path);
	if (!f)
		return;
	uint64_t h, *v;
	int fresh;
	if (f > 1 && (index_block_hash(ss->s, (int64_t)f - 1, b, &ph->lin, &h) ||
	              !(v = keymap_put(&ph->hash, (int64_t)f - 1, b, &fresh))))
		ph->off = 1;
	else if (f > 1)
		*v = h;
}

/* Drops what is held of path (a truncation or a whole-file record: the
 * barrier reads it all again). */
static int forget(mtm_session *ss, pathmap *pre, const char *path, uint64_t *held)
{
	precopy *pc = pathmap_get(pre, path);
	if (!pc)
		return 0;
	*held -= (uint64_t)pc->blocks.n * MTM_BLOCK;
	for (size_t i = 0; i < pc->blocks.cap; i++)
		if (pc->blocks.slots[i].used && pc->blocks.slots[i].val)
			prewrite_slot_reused(ss, *slot_meta((const unsigned char *)(uintptr_t)pc->blocks.slots[i].val));
	precopy_free(pc);
	return pathmap_put(pre, path, NULL);
}

/* Reads the blocks of path that delta's ranges name. */
static int copy_file(mtm_session *ss, parent_hashes *ph, const char *path, const file_change *fc, pathmap *pre,
                     uint64_t *held, uint64_t *read, uint64_t limit)
{
	int rootfd = ss->s->rootfd;
	int fd;
	if (beneath_open(rootfd, path, O_RDONLY, &fd))
		return forget(ss, pre, path, held); /* gone or replaced: the barrier sees to it */
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return forget(ss, pre, path, held);
	}
	precopy *pc = pathmap_get(pre, path);
	if (pc && (pc->dev != (int64_t)st.st_dev || pc->ino != (int64_t)st.st_ino)) {
		rc = forget(ss, pre, path, held);
		pc = NULL;
	}
	if (!rc && !pc) {
		if (!(pc = calloc(1, sizeof *pc)) || pathmap_put(pre, path, pc)) {
			free(pc);
			close(fd);
			return ENOMEM;
		}
		pc->dev = (int64_t)st.st_dev;
		pc->ino = (int64_t)st.st_ino;
	}
	const int64_t B = MTM_BLOCK, nblk = ((int64_t)st.st_size + B - 1) / B;
	/* (on an error, the caller drops the file's copies: dst may be half read) */
	for (size_t k = 0; k < fc->ranges.n && !rc; k++) {
		const byte_range *r = &VEC_AT(&fc->ranges, byte_range, k);
		int64_t end = (r->off + r->len + B - 1) / B;
		for (int64_t b = r->off / B; b < end && b < nblk && !rc; b++) {
			if (*held >= limit || *read >= limit) {
				rc = EAGAIN; /* out of budget: the rest in the barrier */
				break;
			}
			int fresh;
			unsigned char *dst = slot_for(pc, b, &fresh);
			size_t got;
			if (!dst) {
				rc = ENOMEM;
				break;
			}
			if (fresh)
				*held += B;
			*read += B;
			if ((rc = io_pread(fd, dst, B, b * B, &got)))
				break;
			if (got < (size_t)B)
				memset(dst + got, 0, (size_t)B - got);
			/* hashed now, while the program runs, not in the checkpoint */
			uint64_t h = XXH3_64bits(dst, (size_t)B), *meta = slot_meta(dst);
			memcpy(dst + B, &h, sizeof h);
			prewrite_slot_reused(ss, *meta);
			pc->unwritten -= *meta == SLOT_WHOLE && pc->unwritten;
			/* (zeros are stored as no data: nothing to write ahead) */
			*meta = got == (size_t)B && h != zero_block_hash() ? SLOT_WHOLE : 0;
			pc->unwritten += *meta == SLOT_WHOLE;
			note_parent_hash(ss, ph, path, b);
		}
	}
	/* kept for the barrier, which then need not look the path up inside
	 * the pause (live_open): the file the copies are of */
	if (rc || !precopy_keep_fd(pc, fd))
		close(fd);
	return rc;
}

int precopy_pass(mtm_session *ss, change_set *cs, pathmap *pre, uint64_t *held, uint64_t *read, uint64_t limit,
                 precopy_side side, void *side_arg)
{
	change_set delta;
	memset(&delta, 0, sizeof delta);
	prewrite_drain(ss); /* slots are copied into below: none may still be being written from */
	int rc = barrier_peek(ss, cs, &delta), over = 0;
	/* after the peek: the watcher's event for every write peeked is queued
	 * (the kernel queues it inside the call, before the record), so
	 * watch_compares_whole below knows every file inotify saw written */
	if (!side && ss->watch)
		watch_drain(ss->watch);
	/* (the parent's hashes and the read transaction: at the first file
	 * copied; a pass that copies nothing, the usual one under inotify,
	 * reads nothing from the index) */
	parent_hashes *ph = NULL;
	int ph_tried = 0, own_tx = 0;
	/* a file removed or renamed over is not held open until the checkpoint
	 * (its space; and the barrier would not take its fd anyway) */
	for (size_t i = 0; !rc && i < delta.ns.cap && pre->n; i++)
		if (delta.ns.slots[i].key)
			precopy_drop_fd(pre, delta.ns.slots[i].key);
	for (size_t i = 0; i < delta.files.cap && !rc; i++) {
		const char *path = delta.files.slots[i].key;
		const file_change *fc = delta.files.slots[i].val;
		if (!path || !fc)
			continue;
		/* a copy older than a record must never be used: whatever is not
		 * read again now (no budget left, an error) is dropped */
		int took = side ? side(ss, side_arg, path, fc) : 0;
		if (took < 0) {
			rc = ENOMEM;
			break;
		}
		/* a file the checkpoint compares whole anyway (inotify saw it
		 * written, or fanotify a writer the logs cannot vouch for) is read
		 * by the compare: a copy would be read for
		 * nothing, and written ahead for nothing (its capture comes from
		 * the compare's own reads) */
		const file_change *acc = side ? NULL : pathmap_get(&cs->files, path);
		int whole_anyway = !side && ((acc && acc->whole) || watch_compares_whole(ss->watch, ss, path));
		int skip = took || over || whole_anyway || fc->whole || fc->trunc_min >= 0 || !fc->ranges.n;
		if (!skip && !ph_tried) {
			ph_tried = 1;
			ph = ph_for_head(ss);
			/* the pass's lookups in one read transaction, not one each: a
			 * read transaction locks and unlocks the WAL index (two fcntl
			 * calls), which was 15% of the session's CPU with a lookup per
			 * block copied. (The checkpoint's own pass runs inside the
			 * checkpoint's transaction.) */
			own_tx = ph && sqlite3_get_autocommit(ss->s->db) &&
			         sqlite3_exec(ss->s->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
		}
		int err = skip ? -1 : copy_file(ss, ph, path, fc, pre, held, read, limit);
		if (err) {
			over |= err == EAGAIN; /* past the budget: the other files named lose their copies too */
			rc = forget(ss, pre, path, held);
			if (!rc && err > 0 && err != EAGAIN)
				rc = err;
		}
	}
	change_set_free(&delta);
	if (own_tx && sqlite3_exec(ss->s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		sqlite3_exec(ss->s->db, "ROLLBACK", NULL, NULL, NULL); /* read only: nothing to lose */
	if (rc) {
		/* a peek that failed part way, or a file left half handled: some
		 * copy may be older than a record that named it. None is kept. */
		pathmap_free(pre, precopy_free);
		*held = 0;
	}
	return rc;
}

int session_precopy_tick(mtm_session *ss)
{
	/* A pass every 10 ms while records come, every 20 ms while none do (a
	 * pass that finds nothing costs a directory read: ~0.1% of a CPU), and
	 * at most BG_LIMIT read per interval: enough to take the reads of a
	 * typical interval out of the checkpoint, even when it is asked for
	 * right after a burst of writes, without re-reading forever the blocks
	 * a busy program rewrites all the time. */
	enum { BG_LIMIT = 64 << 20, FAST_MS = 10, SLOW_MS = 20 };
	if (ss->force_scan || ss->always_scan || secure_getenv("METAMORI_NO_PRECOPY"))
		return -1;
	if (!ss->bg_limit) {
		uint64_t b = capture_budget() / 2;
		ss->bg_limit = b < BG_LIMIT ? b : BG_LIMIT;
		if (!ss->bg_limit)
			return -1;
	}
	if (ss->bg_read >= ss->bg_limit || ss->bg_held >= ss->bg_limit)
		return -1;
	if (!ss->bg_wait_ms)
		ss->bg_wait_ms = FAST_MS;
	int64_t now = now_ns(), due = ss->bg_last_ns + (int64_t)ss->bg_wait_ms * 1000000;
	if (now < due) /* (between passes, writing ahead goes on if it has more) */
		return prewrite_tick(ss, 0) ? 1 : (int)((due - now + 999999) / 1000000);
	uint64_t before = ss->bg_read;
	size_t files_before = ss->bg_cs.files.n, meta_before = ss->bg_cs.meta.n, ns_before = ss->bg_cs.ns.n;
	int rc = precopy_pass(ss, &ss->bg_cs, &ss->bg_pre, &ss->bg_held, &ss->bg_read, ss->bg_limit, NULL, NULL);
	ss->bg_last_ns = now_ns();
	if (ss->debug == 1 && ss->bg_read != before)
		log_msg(MTM_LOG_DEBUG, "session: pre-copy pass: %llu KiB read in %.2f ms, %llu KiB held",
		        (unsigned long long)(ss->bg_read - before) >> 10, (double)(ss->bg_last_ns - now) / 1e6,
		        (unsigned long long)ss->bg_held >> 10);
	int found = ss->bg_read != before || ss->bg_cs.files.n != files_before || ss->bg_cs.meta.n != meta_before ||
	            ss->bg_cs.ns.n != ns_before;
	ss->bg_wait_ms = found ? FAST_MS : ss->bg_wait_ms * 2 > SLOW_MS ? SLOW_MS : ss->bg_wait_ms * 2;
	ss->bg_quiet = !found;
	if (!rc && prewrite_tick(ss, ss->bg_read - before))
		return 1; /* more to write ahead: soon (a request may come first) */
	if (rc) {
		if (ss->debug)
			log_msg(MTM_LOG_DEBUG, "session: pre-copy pass failed (%s): its copies dropped, no more passes "
			        "until the next checkpoint", mtm_strerror(rc));
		ss->bg_limit = 1; /* (an error: no more passes this interval; what is held is right) */
		ss->bg_read = 1;
		return -1;
	}
	return ss->bg_wait_ms;
}

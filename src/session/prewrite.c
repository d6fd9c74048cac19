/*
 * prewrite.c — writing the pre-copied blocks into the pack while the
 * program runs, so that a checkpoint finds most of its data written (and
 * its writeback started) when it is asked for.
 *
 * After each pre-copy pass the session appends records for the whole
 * blocks it holds that no record has yet (grouped as a checkpoint groups
 * them: a whole aligned group of MTM_CHUNK_BLOCKS as its own chunk, the
 * other blocks of a file gathered up to MTM_CHUNK_BLOCKS in file order) to
 * the newest pack, past its committed size, through a writer of its own
 * (pack_writer_begin_ahead: its thread writes them and starts their
 * writeback). Each slot then names its record and place there
 * (SLOT_WRITTEN). A checkpoint's writer continues the same pack after
 * them (pack_begin_opts.ahead) and names in the index the records whose
 * blocks it records from those very slots (pack_adopt); the rest are
 * counted dead. Nothing here is durable or named until that checkpoint's
 * fsync and commit: a crash leaves an unreferenced tail, as a crashed
 * checkpoint does.
 *
 * A slot rewritten by a later pass no longer names its record (its bytes
 * in the pack are dead then), and a pass waits until the thread has
 * written what it was given, so the bytes a record was written from never
 * change under it. Writing stops for the interval past the pre-copy's
 * budget, when blocks are rewritten after being written (more than an
 * eighth of what was written, past 4 MiB: a program that rewrites the same
 * blocks all the time would otherwise fill the store with dead records),
 * or after any failure (then nothing written this interval is used).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/io.h"
#include "session/session.h"
#include "store/index.h"
#include "store/pack.h"
#include "util/error.h"
#include "util/log.h"
#include "util/human.h"

struct prewrite {
	pack_writer w;
	int open;            /* w is begun, at `at` */
	pack_ahead at;
	vec recs;            /* ahead_rec: index + 1 in a slot's meta */
	uint64_t written;    /* bytes of records this interval */
	uint64_t synced;     /* of them, handed to the thread's fsync while the program was quiet */
	uint64_t superseded; /* bytes of blocks rewritten after being written */
	uint64_t used;       /* blocks the checkpoint took from records written ahead */
	int off;             /* no more this interval */
	int bad;             /* something failed: nothing written this interval is used */
	uint64_t gen;        /* of recs, in the slots that name them */
	uint64_t tick_start; /* written when this tick began */
	int64_t sync_ns;     /* when the last fsync ahead was begun while the program wrote */
	int taken;           /* a checkpoint took them: nothing more until the reset */
	int pending;         /* passes copied blocks not looked at since */
	int64_t room_pack;   /* the pack the writers ahead gave room (kept by prewrite_reset) */
};

static struct prewrite *state(mtm_session *ss)
{
	if (!ss->pw && (ss->pw = calloc(1, sizeof *ss->pw)))
		ss->pw->recs = (vec)VEC_INIT(ahead_rec);
	return ss->pw;
}

static void close_writer(struct prewrite *pw)
{
	if (pw->open)
		pack_writer_free(&pw->w);
	pw->open = 0;
}

/* A write ahead failed: none of this interval's is used, no more are made. */
static void failed(mtm_session *ss, struct prewrite *pw)
{
	/* (the thread's first failure stays its answer to every drain: said once) */
	if (ss->debug && !pw->bad)
		log_msg(MTM_LOG_DEBUG, "session: writing ahead failed (%s): nothing written ahead is used",
		        mtm_last_error());
	pw->bad = pw->off = 1;
}

/* Hands over anything still buffered and waits until the thread has
 * written it all. */
void prewrite_drain(mtm_session *ss)
{
	struct prewrite *pw = ss->pw;
	if (pw && pw->open && (pack_writer_push(&pw->w) || pack_writer_drain(&pw->w)))
		failed(ss, pw);
}

void prewrite_slot_reused(mtm_session *ss, uint64_t old_meta)
{
	if (ss->pw && (old_meta & SLOT_REC_MASK))
		ss->pw->superseded += MTM_BLOCK;
}

static int by_block(const void *a, const void *b)
{
	int64_t x = ((const pending_blk *)a)->b, y = ((const pending_blk *)b)->b;
	return x < y ? -1 : x > y;
}

/* A tick hands the writer's thread one share, less than the writer hands
 * over by itself (FLUSH_AT), and only when the thread is idle: the
 * session's loop never waits for the disk here, so a request is answered
 * at once, and the next share goes a millisecond later. */
enum { PER_TICK = (1 << 20) - CHUNK_MAX_PLAIN - CHUNK_HEADER_LEN };

/* One record of n blocks; each slot then names it. 1: the pack is full;
 * TICK_FULL: this tick has written its share (after this record). */
enum { TICK_FULL = 2 };
static int put(struct prewrite *pw, const pending_blk *blk, int n)
{
	pack_piece pc[MTM_CHUNK_BLOCKS];
	for (int i = 0; i < n; i++)
		pc[i] = (pack_piece){blk[i].slot, MTM_BLOCK, 1};
	ahead_rec *r = vec_push(&pw->recs);
	if (!r)
		return mtm_set_error(ENOMEM, "writing ahead");
	int rc = pack_put_ahead(&pw->w, pc, n, (size_t)n * MTM_BLOCK, &r->loc);
	if (rc) {
		pw->recs.n--;
		return rc;
	}
	r->chunk = 0;
	for (int i = 0; i < n; i++)
		*slot_meta(blk[i].slot) = SLOT_WHOLE | pw->gen << SLOT_GEN_SHIFT | (uint64_t)i << 32 | (uint64_t)pw->recs.n;
	pw->written += CHUNK_HEADER_LEN + r->loc.clen;
	return pw->written - pw->tick_start >= PER_TICK ? TICK_FULL : 0;
}

/* The pending blocks of one file, in order: records as a checkpoint
 * would make them (checkpoint.c's store_run). */
static int put_file(struct prewrite *pw, pending_blk *blk, size_t n)
{
	pending_blk grp[MTM_CHUNK_BLOCKS];
	int ng = 0, rc = 0;
	for (size_t i = 0; i < n && !rc;) {
		int64_t g = blk[i].b / MTM_CHUNK_BLOCKS;
		size_t e = i;
		while (e < n && blk[e].b / MTM_CHUNK_BLOCKS == g)
			e++;
		if (e - i == MTM_CHUNK_BLOCKS) { /* a whole aligned group: a chunk of its own */
			rc = put(pw, blk + i, MTM_CHUNK_BLOCKS);
		} else {
			for (size_t k = i; k < e && !rc; k++) {
				if (ng == MTM_CHUNK_BLOCKS) {
					rc = put(pw, grp, ng);
					ng = 0;
				}
				grp[ng++] = blk[k];
			}
		}
		i = e;
	}
	if (!rc && ng)
		rc = put(pw, grp, ng);
	return rc;
}

/* What was written ahead goes to the thread's fsync (once it is done, the
 * checkpoint's writer makes none for them: pack_ahead.synced). */
static void sync_ahead(mtm_session *ss, struct prewrite *pw, const char *why)
{
	if (pack_writer_sync_soon(&pw->w)) {
		failed(ss, pw);
		return;
	}
	pw->synced = pw->written;
	if (ss->debug == 1)
		log_msg(MTM_LOG_DEBUG, "session: written ahead: %llu KiB, their fsync begun (%s)",
		        (unsigned long long)pw->written >> 10, why);
}

int prewrite_tick(mtm_session *ss, uint64_t copied)
{
	enum { SUPERSEDED_FREE = 4 << 20, QUIET = 1 << 20, BUSY_SYNC_MS = 100 };
	struct prewrite *pw = state(ss);
	if (!pw || pw->off || pw->taken || secure_getenv("METAMORI_NO_PREWRITE"))
		return 0;
	if (copied)
		pw->pending = 1;
	/* All written and the program quiet (the last pass found nothing new):
	 * their fsync now, in the thread, rather than once the checkpoint is
	 * asked for (pack_writer_begin's early fsync, which then finds them on
	 * the disk: ~0.1 ms instead of the 1-5 ms the W2 checkpoint's commit
	 * waited for). A program that writes all the time is never quiet: see
	 * below for when it is synced all the same. */
	if (!pw->pending && pw->open && ss->bg_quiet && pw->written > pw->synced && !pack_writer_busy(&pw->w)) {
		sync_ahead(ss, pw, "the program quiet");
		return 0;
	}
	/* Not while the program writes hard (the last pass copied more than
	 * QUIET): what it writes now it may write again, and a program that
	 * writes all the time (fio, a log) would get its writes' bandwidth
	 * shared with ours. A burst's blocks are written once it ends, which
	 * is when a checkpoint tends to be asked for. */
	if (!pw->pending || copied > QUIET)
		return 0;
	if (pw->written >= ss->bg_limit ||
	    (pw->superseded > SUPERSEDED_FREE && pw->superseded > pw->written / 8)) {
		if (ss->debug)
			log_msg(MTM_LOG_DEBUG, "session: no more writing ahead this interval (%llu KiB written, %llu KiB "
			        "rewritten since)", (unsigned long long)pw->written >> 10,
			        (unsigned long long)pw->superseded >> 10);
		pw->off = 1;
		return 0;
	}
	if (pw->open && pack_writer_busy(&pw->w))
		return 1; /* (the thread is still writing the last share) */
	int64_t t0 = now_ns();
	uint64_t before = pw->written;
	pw->tick_start = before;
	int rc = 0, more = 0;
	if (!pw->open) {
		rc = pack_writer_begin_ahead(&pw->w, ss->s, &pw->at);
		pw->open = 1;
		if (!rc && pw->room_pack && pw->room_pack != pw->at.pack)
			(void)pack_cut_tail(ss->s, pw->room_pack); /* (the last one was full: its room goes) */
		if (!rc)
			pw->room_pack = pw->at.pack; /* (its fsyncs ahead give the file room: pack_writer.room) */
		if (rc) {
			close_writer(pw);
			pw->off = 1;
			if (rc < 0 && ss->debug)
				log_msg(MTM_LOG_DEBUG, "session: cannot write ahead (%s)", mtm_last_error());
			return 0;
		}
	}
	vec blk = VEC_INIT(pending_blk);
	for (size_t i = 0; i < ss->bg_pre.cap && !rc; i++) {
		const char *path = ss->bg_pre.slots[i].key;
		precopy *pc = path ? ss->bg_pre.slots[i].val : NULL;
		if (!pc || !precopy_unwritten(pc))
			continue;
		blk.n = 0;
		rc = precopy_each_unwritten(pc, &blk);
		if (!rc) {
			qsort(blk.v, blk.n, sizeof(pending_blk), by_block);
			if (!(rc = put_file(pw, blk.v, blk.n)))
				precopy_mark_written(pc);
		}
		if (rc == TICK_FULL) {
			more = 1; /* the rest at the next tick (this file's too: it is still counted unwritten) */
			rc = 0;
			break;
		}
	}
	vec_free(&blk);
	if (!rc)
		rc = pack_writer_push(&pw->w);
	if (rc) {
		if (rc < 0)
			failed(ss, pw);
		pw->off = 1; /* (1: the pack is full; what was written stands) */
		return 0;
	}
	if (ss->debug == 1 && pw->written != before)
		log_msg(MTM_LOG_DEBUG, "session: written ahead: %llu KiB into pack %lld in %.2f ms, %llu KiB this "
		        "interval", (unsigned long long)(pw->written - before) >> 10, (long long)pw->at.pack,
		        (double)(now_ns() - t0) / 1e6, (unsigned long long)pw->written >> 10);
	pw->pending = more;
	/* The program writes, but nothing of what the last pass copied had to
	 * be written ahead (a file's last, partial block rewritten all the
	 * time: a heartbeat, a counter): what was written ahead before will
	 * not be superseded by these writes, so its fsync now, rather than the
	 * checkpoint's early one, which the checkpoint's own fsync of the
	 * blocks it captures in its pause then had to follow (two cache
	 * flushes in a row in its commit; bench_track's W2 probe). At most one
	 * every BUSY_SYNC_MS, and only for what was written ahead since the
	 * last: a program whose whole blocks are written ahead at every tick
	 * gets no fsyncs of ours beside its own. */
	int64_t now = now_ns();
	if (!more && pw->written == before && pw->written > pw->synced && !pack_writer_busy(&pw->w) &&
	    now - pw->sync_ns >= (int64_t)BUSY_SYNC_MS * 1000000) {
		pw->sync_ns = now;
		sync_ahead(ss, pw, "nothing more to write ahead");
	}
	return more;
}

const pack_ahead *prewrite_ahead(mtm_session *ss)
{
	struct prewrite *pw = ss->pw;
	if (!pw || !pw->open)
		return NULL;
	prewrite_drain(ss);
	pw->at.end = pw->w.size; /* (all of it handed over and written by the drain) */
	/* the fsync made once the program was quiet covers all of it (nothing
	 * written since): the checkpoint's writer makes none for them */
	pw->at.synced = !pw->bad && pack_writer_synced(&pw->w);
	/* its thread is done: the checkpoint's writer continues the file. The
	 * writer itself is freed after the answer (prewrite_reset, from
	 * tracked_end): its thread's join and its buffers' frees were up to
	 * half a W2 checkpoint's begin. Nothing more is handed to it (taken). */
	pw->taken = 1;
	return pw->bad || !pw->recs.n ? NULL : &pw->at;
}

int prewrite_ref(mtm_session *ss, const unsigned char *slot, ahead_rec **rec, int *boff)
{
	struct prewrite *pw = ss ? ss->pw : NULL;
	if (!pw || pw->bad || !slot)
		return 0;
	uint64_t m = *slot_meta(slot), k = m & SLOT_REC_MASK;
	if (!k || k > pw->recs.n || (m >> SLOT_GEN_SHIFT & SLOT_GEN_MASK) != pw->gen)
		return 0;
	if (!rec)
		return 1; /* (only asked whether: checkpoint.c's last_append) */
	*rec = &VEC_AT(&pw->recs, ahead_rec, k - 1);
	*boff = (int)(m >> 32 & 0xff);
	pw->used++;
	return 1;
}

void prewrite_report(mtm_session *ss, char *buf, size_t len)
{
	struct prewrite *pw = ss->pw;
	if (!pw || !pw->written)
		snprintf(buf, len, "nothing written ahead");
	else
		snprintf(buf, len, "%llu KiB written ahead%s, %llu blocks used from it", (unsigned long long)pw->written >> 10,
		         pw->bad ? " (not used: a failure)" : "", (unsigned long long)pw->used);
}

void prewrite_reset(mtm_session *ss)
{
	struct prewrite *pw = ss->pw;
	if (!pw)
		return;
	close_writer(pw);
	vec_free(&pw->recs);
	uint64_t gen = (pw->gen + 1) & SLOT_GEN_MASK;
	int64_t room = pw->room_pack;
	memset(pw, 0, sizeof *pw);
	pw->recs = (vec)VEC_INIT(ahead_rec);
	pw->gen = gen;
	pw->room_pack = room;
}

void prewrite_free(mtm_session *ss)
{
	struct prewrite *pw = ss->pw;
	if (!pw)
		return;
	if (pw->open && !pw->taken) {
		/* no checkpoint will adopt them: cut them off now rather than
		 * leave them for the next writer (the session's lock is still
		 * held: nobody else appends to the pack) */
		(void)pack_writer_push(&pw->w);
		(void)pack_writer_drain(&pw->w);
		(void)io_ftruncate(pw->w.fd, (off_t)pw->at.base);
	} else if (pw->room_pack) {
		/* the room past the last checkpoint's records (pack_writer.room):
		 * no writer is left to use it; the next one would cut it off,
		 * but none may come for a long time */
		(void)pack_cut_tail(ss->s, pw->room_pack);
	}
	prewrite_reset(ss);
	vec_free(&ss->pw->recs);
	free(ss->pw);
	ss->pw = NULL;
}

/*
 * flusher.h — the pack writer's second thread (internal to src/store).
 *
 * pack_putv fills one buffer while the thread writes the other: every 1 MiB
 * (FLUSH_AT) the writer hands its bytes over, and the thread fills in their
 * record checks, writes them and starts their writeback at once, so the
 * fsync at the end waits for the last piece only. The last hand-over asks
 * for the fsyncs too (the packs, then their directory), which run while the
 * checkpoint inserts its block rows. The thread never touches SQLite; it
 * does nothing after its first failure, which the writer reports at its
 * next hand-over or wait. Reasons and figures: docs/DESIGN.md.
 */
#ifndef MTM_STORE_FLUSHER_H
#define MTM_STORE_FLUSHER_H
#include "store/pack.h"

int flusher_init(pack_writer *w);
/* Hands w's buffered bytes (perhaps none) over, with the fsyncs if sync,
 * and gives w the other buffer; waits for the previous job first.
 * sync FLUSH_SYNC_AHEAD: only the current pack's fsync (the records
 * written ahead, w->ahead), without the touched list, which the writer
 * goes on changing meanwhile. */
#define FLUSH_SYNC_AHEAD 2
/* sync FLUSH_SYNC_EARLY: the same fsync, and what this writer appended to
 * the pack leaves the page cache once durable, as the commit's fsyncs have
 * it (pack_writer_sync_early: the commit then makes none). */
#define FLUSH_SYNC_EARLY 3
int flusher_hand_over(pack_writer *w, int sync);
/* Waits for the job in hand; the first failure, as an error line. */
int flusher_wait(pack_writer *w);
/* 1 while the thread is writing a job (a hand-over now would wait). */
int flusher_busy(pack_writer *w);
/* After flusher_wait: the fsyncs were done. */
int flusher_synced(const pack_writer *w);
/* Lets the thread go once its job in hand is done, without waiting for it:
 * nothing is handed over after (pack_writer_finish), and flusher_free's
 * join then finds it gone instead of waking it (up to ms under load). */
void flusher_stop(pack_writer *w);
/* Joins the thread (after the job in hand) and frees it. */
void flusher_free(pack_writer *w);
#endif

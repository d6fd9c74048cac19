/*
 * describe.c — the lines that report a session's checkpoint: the one the
 * session logs for each (and a client prints), and the phases of one for
 * METAMORI_DEBUG_SESSION.
 */
#include <stdio.h>
#include "session/session.h"
#include "session/slots.h"
#include "session/tctx.h"
#include "util/human.h"
#include "util/log.h"

void tracked_report(mtm_session *ss, ckpt_run *r, const tctx *t, const tracked_times *tm, int scan,
                    const char *scan_why, size_t nlive, size_t nparent)
{
	char ahead[96];
	prewrite_report(ss, ahead, sizeof ahead);
	log_msg(MTM_LOG_DEBUG, "session: %s%s%s: begin %.2f ms, logs %.2f ms, collect %.2f ms, record %.2f ms, "
	        "commit %.2f ms (waits for the pack's thread: %.2f ms in the record, %.2f ms in the commit; the "
	        "thread's writes %.2f ms, fsyncs %.2f ms); %zu live, %zu parent entries; %.2f ms before the gate "
	        "(pre-copy %.2f ms, %llu blocks used, %llu files opened by it; compared ahead %.2f ms: %llu files, %llu KiB read, %llu blocks "
	        "read again, %llu used); %llu KiB read in the barrier; %s; %llu writers trusted by dispatch; "
	        "%zu slabs made",
	        scan ? "scanned: " : "tracked",
	        scan ? (scan_why ? scan_why : "?") : "", t->hold ? " (read in place)" : "",
	        (double)(tm->tpre - tm->tb) / 1e6, (double)(tm->tl - tm->t0) / 1e6, (double)(tm->t1 - tm->tl) / 1e6,
	        (double)(tm->tr - tm->t1) / 1e6, (double)(tm->tc - tm->tr) / 1e6, (double)tm->wait_rec / 1e6,
	        (double)(ckpt_pack(r)->waited_ns - tm->wait_rec) / 1e6, (double)ckpt_pack(r)->write_ns / 1e6,
	        (double)ckpt_pack(r)->fsync_ns / 1e6, nlive, nparent, (double)(tm->t0 - tm->tpre) / 1e6,
	        (double)(tm->tpc - tm->tpre) / 1e6, (unsigned long long)t->precopied_blocks,
	        (unsigned long long)t->kept_fds_used, (double)t->ahead_ns / 1e6,
	        (unsigned long long)t->ahead_files, (unsigned long long)(t->ahead_read >> 10),
	        (unsigned long long)t->ahead_again, (unsigned long long)t->ahead_used,
	        (unsigned long long)(t->barrier_read >> 10), ahead, (unsigned long long)ss->dispatch_trusted,
	        slot_pool_made());
	ss->dispatch_trusted = 0;
}

const char *session_describe(char *buf, size_t len, const mtm_checkpoint_info *ci, const char *why)
{
	char a[32], b[32];
	snprintf(buf, len, "checkpoint %lld (%s%s%s, paused %.1f ms): %llu added, %llu changed, %llu removed; %s changed, %s stored",
	         (long long)ci->id, ci->tracked ? "tracked" : "scanned", !ci->tracked && why ? ": " : "",
	         !ci->tracked && why ? why : "", (double)ci->pause_ns / 1e6,
	         (unsigned long long)ci->files_added, (unsigned long long)ci->files_changed,
	         (unsigned long long)ci->files_removed, human_size(a, sizeof a, ci->bytes_changed),
	         human_size(b, sizeof b, ci->bytes_stored));
	return buf;
}

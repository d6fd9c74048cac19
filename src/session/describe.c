/*
 * describe.c — the lines that report a session's checkpoint: the one the
 * session logs for each (and a client prints), and the phases of one for
 * METAMORI_DEBUG_SESSION.
 */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "session/session.h"
#include "session/slots.h"
#include "session/tctx.h"
#include "tree/reader.h"
#include "util/human.h"
#include "util/log.h"

void thread_usage(int64_t *cpu, int64_t *nvcsw, int64_t *nivcsw, int64_t *minflt)
{
	struct timespec ts = {0, 0};
	struct rusage ru;
	memset(&ru, 0, sizeof ru);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	getrusage(RUSAGE_THREAD, &ru);
	*cpu = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	*nvcsw = ru.ru_nvcsw;
	*nivcsw = ru.ru_nivcsw;
	*minflt = ru.ru_minflt;
}

void tracked_report(mtm_session *ss, ckpt_run *r, const tctx *t, const tracked_times *tm, int scan,
                    const char *scan_why, size_t nlive, size_t nparent)
{
	char ahead[96], pause[640] = "-";
	prewrite_report(ss, ahead, sizeof ahead);
	const barrier_times *b = &ss->bt;
	if (ss->gate_ns && b->consumed && tm->t1) /* (the gate closed and the logs were read) */
		snprintf(pause, sizeof pause,
		         "list %.2f, wait %.2f (longest %.2f ms, pid %d, %u live), read %.2f, watcher %.2f, collect %.2f "
		         "(paths %.2f, checks %.2f, captures %.2f, the longest %.2f ms: %s), "
		         "deferred reads %.2f, open %.2f ms; the session's thread in it: CPU %.2f ms, %lld voluntary and "
		         "%lld involuntary switches, %lld minor faults",
		         (double)(b->listed - ss->gate_ns) / 1e6, (double)(b->waited - b->listed) / 1e6,
		         (double)b->wait_max / 1e6, (int)b->wait_pid, b->nlive, (double)(b->consumed - b->waited) / 1e6,
		         (double)(tm->tl - b->consumed) / 1e6, (double)(tm->tcol - tm->tl) / 1e6,
		         t->col_points ? (double)(t->col_points - t->col_t0) / 1e6 : 0.0,
		         t->col_checks ? (double)(t->col_checks - t->col_points) / 1e6 : 0.0,
		         t->col_checks ? (double)(tm->tcol - t->col_checks) / 1e6 : 0.0, (double)t->cap_max_ns / 1e6,
		         t->cap_max_path ? t->cap_max_path : "-",
		         (double)(tm->tdef - tm->tcol) / 1e6, (double)(tm->t1 - tm->tdef) / 1e6,
		         (double)(tm->cpu1 - b->cpu0) / 1e6, (long long)(tm->nvcsw1 - b->nvcsw0),
		         (long long)(tm->nivcsw1 - b->nivcsw0), (long long)(tm->minflt1 - b->minflt0));
	log_msg(MTM_LOG_DEBUG, "session: %s%s%s: begin %.2f ms, logs %.2f ms, collect %.2f ms, record %.2f ms, "
	        "commit %.2f ms (waits for the pack's thread: %.2f ms in the record, %.2f ms in the commit; the "
	        "thread's writes %.2f ms, fsyncs %.2f ms); %zu live, %zu parent entries; %.2f ms before the gate "
	        "(pre-copy %.2f ms, %llu blocks used, %llu files opened by it; compared ahead %.2f ms: %llu files, %llu KiB read, %llu blocks "
	        "read again, %llu used); %llu KiB read in the barrier; %s; %llu writers trusted by dispatch; "
	        "%zu slabs made; the pause: %s; the compare ahead's CPU a MiB: mapped %.3f, read %.3f ms",
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
	        slot_pool_made(), pause, ss->ahead_rd ? ss->ahead_rd->map_cost * 1048576 / 1e6 : 0.0,
	        ss->ahead_rd ? ss->ahead_rd->read_cost * 1048576 / 1e6 : 0.0);
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

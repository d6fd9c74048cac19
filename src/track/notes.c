/* notes.c — what the interposer says of itself, outside any wrapper's
 * records: a scan it asks for, code that changed, dispatch lost. */
#include "track/preload.h"

void sticky_scan(void)
{
	if (g_sticky_scan && !g_sticky_lost)
		return; /* the session remembers it while we live */
	g_sticky_scan = 1;
	if (enter()) {
		rec_sticky(MTM_REC_SCAN, NULL, 0);
		leave();
	} else {
		note_untrackable();
	}
}

/* Our code changed (an executable mapping, dlclose, an exec): the code
 * that ran in this interval is not the code the session can look at now,
 * so what we wrote in it is compared wherever the watcher saw us write
 * (MTM_REC_CODE). Once per interval.
 * Not while dispatch has been on since before this interval began: every
 * system call made outside libc traps to the wrappers, the new code's too,
 * so the log is the whole truth of the interval's writes without looking
 * at any code (session/bypass.c; the log's flag says so from our next
 * recorded call, region.c). A library loaded (PostgreSQL's extensions,
 * Python's modules, at first use) made the interval's writes compared
 * whole. If dispatch is lost later in the interval, preload_dispatch_lost
 * clears the flag first and then records. */
static uint64_t g_code_ep;
void code_changed(void)
{
	if (LOAD(&g_state) != ST_ON || !g_ctl)
		return;
	if (dispatch_on() && __atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST) > dispatch_since())
		return;
	uint64_t ep = __atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST) + 1;
	if (__atomic_load_n(&g_code_ep, __ATOMIC_RELAXED) == ep)
		return;
	if (enter()) {
		if (rec(MTM_REC_CODE, 0, 0, NULL, 0))
			__atomic_store_n(&g_code_ep, ep, __ATOMIC_RELAXED);
		leave();
	} else {
		note_untrackable();
	}
}

void preload_dispatch_lost(void)
{
	__atomic_store_n(&g_dispatch_owed, 0, __ATOMIC_RELAXED);
	struct mtm_log_hdr *h = LOAD(&g_hdr);
	if (h)
		__atomic_store_n(&h->dispatch, 0, __ATOMIC_SEQ_CST);
	int err = errno;
	code_changed();
	errno = err;
}

uint64_t preload_epoch(void)
{
	return g_ctl ? __atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST) : 0;
}

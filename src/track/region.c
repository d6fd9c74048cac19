/* region.c — the in-flight region: the barrier's gate, and DMTCP's
 * checkpoint lock, around every wrapper that records. */
#include "track/preload.h"

static long sys_futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
	return REAL(syscall)(SYS_futex, addr, op, val, ts, NULL, 0);
}

/* Inside the region: the log says dispatch is on (dispatch.c) once the
 * interval it was turned on in is over (the calls this image made before,
 * in that interval, were not trapped): a checkpoint judges an interval's
 * writes while the epoch is still the interval's (before its barrier) or
 * while every call is held (after), so the flag is never seen set in the
 * interval it was turned on in. */
static void dispatch_settle(struct mtm_log_hdr *h)
{
	if (!dispatch_on()) {
		__atomic_store_n(&g_dispatch_owed, 0, __ATOMIC_RELAXED);
		return;
	}
	if (__atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST) <= dispatch_since())
		return; /* still that interval: the next call looks again */
	__atomic_store_n(&g_dispatch_owed, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&h->dispatch, MTM_DISPATCH_ON, __ATOMIC_SEQ_CST);
}

static void wait_gate(void)
{
	int saved = errno;
	uint32_t g;
	while ((g = __atomic_load_n(&g_ctl->gate, __ATOMIC_SEQ_CST)) && !g_gone) {
		struct timespec ts = {1, 0};
		long r = sys_futex(&g_ctl->gate, FUTEX_WAIT, g, &ts);
		if (r == -1 && errno == ETIMEDOUT) {
			pid_t sp = (pid_t)g_ctl->session_pid;
			if (sp > 0 && kill(sp, 0) == -1 && errno == ESRCH)
				g_gone = 1; /* nobody will open the gate: go on, untracked */
		}
	}
	errno = saved;
}

/* DMTCP's checkpoint thread never takes its own checkpoint lock (it holds
 * it for writing while it suspends the others). */
static int ckpt_guarded(void)
{
	if (LIKELY(!LOAD(&g_ckpt_off)))
		return 0;
	if (UNLIKELY(!t_ckpt_thread))
		t_ckpt_thread = g_is_ckpt_thread && g_is_ckpt_thread() ? 1 : 2;
	return t_ckpt_thread == 2;
}
static TLS unsigned t_ckpt_taken; /* this thread's ckpt_off()s not given back yet */
static void ckpt_off(void)
{
	if (ckpt_guarded()) {
		int saved = errno;
		g_ckpt_off();
		t_ckpt_taken++;
		errno = saved;
	}
}
static void ckpt_on(void)
{
	if (UNLIKELY(t_ckpt_taken)) {
		int saved = errno;
		t_ckpt_taken--;
		g_ckpt_on();
		errno = saved;
	}
}

/* Enter the in-flight region; 0 if this process cannot record (no log, or
 * detached while DMTCP writes or restores an image). Under DMTCP the region
 * is also one DMTCP does not checkpoint inside: taken before inflight++,
 * given back before waiting at a closed gate (that wait may last a
 * checkpoint, DMTCP's own included). The log is looked up again after each
 * wait: a detach may have dropped it meanwhile. */
int enter(void)
{
	for (;;) {
		ckpt_off();
		if (UNLIKELY(LOAD(&g_detached)) || !ensure_log()) {
			ckpt_on();
			return 0;
		}
		struct mtm_log_hdr *h = g_hdr;
		__atomic_fetch_add(&h->inflight, 1, __ATOMIC_SEQ_CST);
		if (LIKELY(!__atomic_load_n(&g_ctl->gate, __ATOMIC_SEQ_CST)) || g_gone) {
			if (UNLIKELY(g_sticky_lost) && !__atomic_load_n(&h->overflow, __ATOMIC_SEQ_CST))
				restick();
			if (UNLIKELY(__atomic_load_n(&g_dispatch_owed, __ATOMIC_RELAXED)))
				dispatch_settle(h);
			return 1;
		}
		__atomic_fetch_sub(&h->inflight, 1, __ATOMIC_SEQ_CST);
		sys_futex(&h->inflight, FUTEX_WAKE, INT_MAX, NULL);
		ckpt_on();
		wait_gate();
	}
}

void leave(void)
{
	struct mtm_log_hdr *h = g_hdr;
	__atomic_fetch_sub(&h->inflight, 1, __ATOMIC_SEQ_CST);
	if (UNLIKELY(__atomic_load_n(&g_ctl->gate, __ATOMIC_SEQ_CST))) {
		int saved = errno;
		sys_futex(&h->inflight, FUTEX_WAKE, INT_MAX, NULL);
		errno = saved;
	}
	ckpt_on();
}

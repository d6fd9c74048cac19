/* state.c — the interposer's state: what the session told it, its log, its
 * locks (declared, with what each holds, in preload.h). */
#define PRELOAD_REAL_TABLE_HERE /* (the table of real functions: preload.h) */
#include "track/preload.h"

int g_state;
char g_root[PATH_MAX];
size_t g_rootlen;
char g_session[PATH_MAX];
size_t g_sessionlen;
char g_self[PATH_MAX];
char g_env_session[PATH_MAX + 32];
char g_env_root[PATH_MAX + 32];
int g_quick_skip;

struct mtm_ctl *g_ctl;
struct mtm_log_hdr *g_hdr;
int g_logfd = -1;
int g_log_failed;
int g_gone;
int g_sticky_scan;
int g_sticky_lost;
uint64_t g_log_cap = MTM_LOG_CAPACITY;

TLS int t_guard;
TLS struct last_write t_last;
uint64_t g_log_gen;

int (*g_ckpt_off)(void);
void (*g_ckpt_on)(void);
_Bool (*g_is_ckpt_thread)(void);
TLS int t_ckpt_thread;
int g_detached;

int g_log_lock, g_slab_lock, g_st_lock, g_cwd_lock;
TLS unsigned t_held;

int g_dispatch;
uint64_t g_dispatch_since;

void *resolve(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (!p) {
		/* A function our libc lacks is never called by a program that
		 * links against that libc; if it is, fail loudly, not silently. */
		fputs("metamori-preload: a wrapped function is missing from libc\n", stderr);
		abort();
	}
	return p;
}

void note_untrackable(void)
{
	if (g_ctl)
		__atomic_store_n(&g_ctl->scan_needed, 1, __ATOMIC_SEQ_CST);
}

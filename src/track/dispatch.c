/*
 * dispatch.c — syscall user dispatch (PR_SET_SYSCALL_USER_DISPATCH) in a
 * traced process: a system call made from code outside the C library's
 * text (an inline `syscall` instruction in the program, the loader, a
 * library of its own) traps to on_sigsys, which makes it through the
 * interposer's wrappers, so it is recorded like any call through libc.
 * The session can then take the process's log as the whole truth of its
 * writes without looking for system call instructions in its code
 * (session/bypass.c: PostgreSQL's binary holds the bytes 0f 05 88 times,
 * none of them an instruction).
 *
 * Invariants:
 *  - It is on (D_ON) only while every thread of the process has it: the
 *    constructor finds one thread, pthread_create's threads and fork
 *    children turn it on before running any code but libc's. Whatever
 *    could make a thread without it (clone(), a raw clone or fork, a
 *    timer or notification run in a thread of libc's, the program's own
 *    SIGSYS handler or dispatch setting) loses it for good: the selector
 *    (one byte shared by every thread) is set to ALLOW first, then the
 *    log's flag is cleared and MTM_REC_CODE recorded for the interval.
 *  - The handler never traps: it calls only the interposer's wrappers and
 *    libc, inside the allowed range.
 *  - SIGSYS is never blocked while it is on (the kernel kills a thread
 *    whose trap finds it blocked): masks the program sets are given
 *    without it.
 * Only on x86-64 (elsewhere it is never on: the code is looked at).
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "track/dispatch.h"
#include "track/preload.h"

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#endif
#define SUD_ON 1    /* PR_SYS_DISPATCH_ON: trap calls outside [offset, offset + len) */
#define SUD_ALLOW 0 /* SYSCALL_DISPATCH_FILTER_ALLOW */
#define SUD_BLOCK 1 /* SYSCALL_DISPATCH_FILTER_BLOCK */
#define SUD_CODE 2  /* si_code SYS_USER_DISPATCH */
#ifndef AUDIT_ARCH_X86_64
#define AUDIT_ARCH_X86_64 0xc000003eu
#endif

/* (g_dispatch, D_*, and g_dispatch_since are in state.c: the log reads them) */
static volatile char g_sel = SUD_ALLOW; /* the selector of every thread */
static unsigned long g_lo, g_len; /* libc's text */

/* The next definition of a function we wrap here (libc's), through
 * state.c's resolve; calls.def's table has the others (REAL). */
#define NEXT(type, name) ((type)next_cached(&next_##name, #name))
static void *next_cached(void **slot, const char *name)
{
	void *p = __atomic_load_n(slot, __ATOMIC_RELAXED);
	if (!p) {
		p = resolve(name);
		__atomic_store_n(slot, p, __ATOMIC_RELAXED);
	}
	return p;
}
static void *next__Fork, *next_sigaction, *next_sigprocmask, *next_pthread_sigmask, *next_pthread_create, *next_clone,
	*next_prctl, *next_timer_create, *next_mq_notify, *next_signal, *next_sysv_signal, *next_bsd_signal, *next_sigset, *next_thrd_create;

void dispatch_lose(void)
{
	if (LOAD(&g_dispatch) != D_ON)
		return;
	g_sel = SUD_ALLOW; /* no thread traps from here on */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	STORE(&g_dispatch, D_LOST);
	preload_dispatch_lost();
}

#if defined(__x86_64__)
/* The calling thread traps calls outside libc; 0 on success. */
static int thread_on(void)
{
	return NEXT(int (*)(int, ...), prctl)(PR_SET_SYSCALL_USER_DISPATCH, SUD_ON, g_lo, g_len, &g_sel);
}

static int find_libc(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	uintptr_t at = (uintptr_t)data;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
		if (at >= lo && at < lo + ph->p_memsz) {
			g_lo = lo;
			g_len = ph->p_memsz;
			return 1;
		}
	}
	return 0;
}

/* Threads of this process (its /proc/self/status), -1 if unknown. */
static int threads(void)
{
	int fd = (int)REAL(syscall)(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char buf[4096];
	long n = REAL(syscall)(SYS_read, fd, buf, sizeof buf - 1);
	REAL(syscall)(SYS_close, fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	const char *t = strstr(buf, "\nThreads:");
	return t ? atoi(t + 9) : -1;
}

/* Strip SIGSYS from a mask being blocked. */
static const sigset_t *unblockable(const sigset_t *set, sigset_t *copy)
{
	if (!set || LOAD(&g_dispatch) != D_ON || !sigismember(set, SIGSYS))
		return set;
	*copy = *set;
	sigdelset(copy, SIGSYS);
	return copy;
}

void dispatch_start(void (*handler)(int, siginfo_t *, void *))
{
	/* Opt-in (METAMORI_DISPATCH=1): every system call a program makes
	 * outside libc then costs a signal (a runtime that makes its own, Go's
	 * say, would pay it on each one), and that cost is not measured yet.
	 * (The CI hang that first made it opt-in was the test's own race:
	 * session_cli read a step file before it was written, with dispatch on
	 * or off.) */
	const char *on = secure_getenv("METAMORI_DISPATCH");
	if (!on || strcmp(on, "1") != 0)
		return;
	void *in_libc = resolve("syscall");
	if (!dl_iterate_phdr(find_libc, in_libc) || threads() != 1)
		return; /* a thread made before us may not trap: never on */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigset_t sys;
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	if (NEXT(int (*)(int, const struct sigaction *, struct sigaction *), sigaction)(SIGSYS, &sa, NULL) != 0 ||
	    NEXT(int (*)(int, const sigset_t *, sigset_t *), pthread_sigmask)(SIG_UNBLOCK, &sys, NULL) != 0)
		return;
	g_sel = SUD_BLOCK;
	if (thread_on() != 0) {
		g_sel = SUD_ALLOW;
		return;
	}
	STORE(&g_dispatch_since, preload_epoch()); /* read after: this interval is not covered */
	STORE(&g_dispatch, D_ON);
}

void dispatch_fork_child(void)
{
	if (LOAD(&g_dispatch) != D_ON)
		return;
	if (thread_on() != 0) {
		dispatch_lose();
		return;
	}
	STORE(&g_dispatch_since, preload_epoch());
}

/* Threads: on before the program's start routine runs. */
struct start { void *(*fn)(void *); void *arg; };
static void *thread_start(void *p)
{
	struct start s = *(struct start *)p;
	free(p);
	if (LOAD(&g_dispatch) == D_ON && thread_on() != 0)
		dispatch_lose();
	return s.fn(s.arg);
}

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	typedef int (*fn_t)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
	struct start *s = LOAD(&g_dispatch) == D_ON ? malloc(sizeof *s) : NULL;
	if (!s) {
		dispatch_lose();
		return NEXT(fn_t, pthread_create)(t, attr, fn, arg);
	}
	s->fn = fn;
	s->arg = arg;
	int r = NEXT(fn_t, pthread_create)(t, attr, thread_start, s);
	if (r)
		free(s);
	return r;
}

/* _Fork runs no atfork handler: its child turns dispatch on here. */
pid_t _Fork(void)
{
	pid_t p = NEXT(pid_t (*)(void), _Fork)();
	if (p == 0)
		dispatch_fork_child();
	return p;
}

/* C11 threads start through libc's own pthread_create, not ours. */
int thrd_create(void *t, int (*fn)(void *), void *arg)
{
	dispatch_lose();
	return NEXT(int (*)(void *, int (*)(void *), void *), thrd_create)(t, fn, arg);
}

int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	void *ptid = va_arg(ap, void *), *tls = va_arg(ap, void *), *ctid = va_arg(ap, void *);
	va_end(ap);
	dispatch_lose(); /* its child starts in code of the program's, without dispatch */
	return NEXT(int (*)(int (*)(void *), void *, int, void *, ...), clone)(fn, stack, flags, arg, ptid, tls, ctid);
}

int prctl(int option, ...)
{
	va_list ap;
	va_start(ap, option);
	unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long);
	unsigned long a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
	va_end(ap);
	if (option == PR_SET_SYSCALL_USER_DISPATCH)
		dispatch_lose(); /* the program's own (Wine does this) */
	return NEXT(int (*)(int, ...), prctl)(option, a2, a3, a4, a5);
}

/* Notifications run in a thread libc makes itself. */
int timer_create(clockid_t c, struct sigevent *sev, timer_t *id)
{
	if (sev && sev->sigev_notify == SIGEV_THREAD)
		dispatch_lose();
	return NEXT(int (*)(clockid_t, struct sigevent *, timer_t *), timer_create)(c, sev, id);
}

int mq_notify(int mq, const struct sigevent *sev)
{
	if (sev && sev->sigev_notify == SIGEV_THREAD)
		dispatch_lose();
	return NEXT(int (*)(int, const struct sigevent *), mq_notify)(mq, sev);
}

/* Signals: SIGSYS is ours while it is on. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	typedef int (*fn_t)(int, const struct sigaction *, struct sigaction *);
	if (sig == SIGSYS && act)
		dispatch_lose(); /* the program's own handler (a seccomp sandbox's) */
	struct sigaction copy;
	if (act && LOAD(&g_dispatch) == D_ON && sigismember(&act->sa_mask, SIGSYS)) {
		copy = *act;
		sigdelset(&copy.sa_mask, SIGSYS);
		act = &copy;
	}
	return NEXT(fn_t, sigaction)(sig, act, old);
}

sighandler_t signal(int sig, sighandler_t h)
{
	if (sig == SIGSYS)
		dispatch_lose();
	return NEXT(sighandler_t (*)(int, sighandler_t), signal)(sig, h);
}

sighandler_t sysv_signal(int sig, sighandler_t h)
{
	if (sig == SIGSYS)
		dispatch_lose();
	return NEXT(sighandler_t (*)(int, sighandler_t), sysv_signal)(sig, h);
}

sighandler_t bsd_signal(int sig, sighandler_t h)
{
	if (sig == SIGSYS)
		dispatch_lose();
	return NEXT(sighandler_t (*)(int, sighandler_t), bsd_signal)(sig, h);
}

sighandler_t sigset(int sig, sighandler_t h)
{
	if (sig == SIGSYS)
		dispatch_lose();
	return NEXT(sighandler_t (*)(int, sighandler_t), sigset)(sig, h);
}

int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t copy;
	return NEXT(int (*)(int, const sigset_t *, sigset_t *), sigprocmask)(how, how == SIG_UNBLOCK ? set :
	                                                                      unblockable(set, &copy), old);
}

int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t copy;
	return NEXT(int (*)(int, const sigset_t *, sigset_t *), pthread_sigmask)(how, how == SIG_UNBLOCK ? set :
	                                                                          unblockable(set, &copy), old);
}
/* A SIGSYS that is not a trap of ours (seccomp, kill): what it does by
 * default. */
void dispatch_sigsys_default(int sig)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	NEXT(int (*)(int, const struct sigaction *, struct sigaction *), sigaction)(sig, &dfl, NULL);
	raise(sig);
}
#else
void dispatch_start(void (*handler)(int, siginfo_t *, void *)) { (void)handler; }
void dispatch_fork_child(void) {}
#endif

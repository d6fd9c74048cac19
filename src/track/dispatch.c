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

enum { D_NEVER = 0, D_ON = 1, D_LOST = 2 };
static int g_d;                   /* D_*: atomic */
static volatile char g_sel = SUD_ALLOW; /* the selector of every thread */
static uint64_t g_since;
static unsigned long g_lo, g_len; /* libc's text */
static unsigned long g_traps;     /* calls trapped so far (atomic) */
#define MAX_TRAPS 10000

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* The next definition of a function we wrap here (libc's). */
static void *next(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (!p)
		abort(); /* every one of them is libc's (preload.c's resolve says why) */
	return p;
}
#define NEXT(type, name) ((type)next_cached(&next_##name, #name))
static void *next_cached(void **slot, const char *name)
{
	void *p = __atomic_load_n(slot, __ATOMIC_RELAXED);
	if (!p) {
		p = next(name);
		__atomic_store_n(slot, p, __ATOMIC_RELAXED);
	}
	return p;
}
static void *next__Fork, *next_sigaction, *next_sigprocmask, *next_pthread_sigmask, *next_pthread_create, *next_clone,
	*next_prctl, *next_timer_create, *next_mq_notify, *next_signal, *next_sysv_signal, *next_bsd_signal, *next_sigset, *next_thrd_create;

int dispatch_on(void) { return LOAD(&g_d) == D_ON; }
uint64_t dispatch_since(void) { return g_since; }

void dispatch_lose(void)
{
	if (LOAD(&g_d) != D_ON)
		return;
	g_sel = SUD_ALLOW; /* no thread traps from here on */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	STORE(&g_d, D_LOST);
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
	int fd = (int)preload_real_syscall(SYS_openat, AT_FDCWD, (long)"/proc/self/status", O_RDONLY | O_CLOEXEC, 0, 0, 0);
	if (fd < 0)
		return -1;
	char buf[4096];
	long n = preload_real_syscall(SYS_read, fd, (long)buf, sizeof buf - 1, 0, 0, 0);
	preload_real_syscall(SYS_close, fd, 0, 0, 0, 0, 0);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	const char *t = strstr(buf, "\nThreads:");
	return t ? atoi(t + 9) : -1;
}

/* Strip SIGSYS from a mask being blocked. */
static const sigset_t *unblockable(const sigset_t *set, sigset_t *copy)
{
	if (!set || LOAD(&g_d) != D_ON || !sigismember(set, SIGSYS))
		return set;
	*copy = *set;
	sigdelset(copy, SIGSYS);
	return copy;
}

/* What a trapped call is. */
enum { K_TRACED, K_HARMLESS, K_MASK, K_NATIVE, K_LOSE };
static int kind(long nr)
{
	switch (nr) {
	/* the interposer's syscall() records these */
	case SYS_write: case SYS_pwrite64: case SYS_writev: case SYS_pwritev: case SYS_pwritev2:
	case SYS_ftruncate: case SYS_fallocate: case SYS_close: case SYS_renameat2: case SYS_renameat:
	case SYS_unlinkat: case SYS_mkdirat: case SYS_openat2: case SYS_pidfd_getfd: case SYS_io_uring_setup:
	/* and these, through the wrappers of their libc functions (below) */
	case SYS_open: case SYS_openat: case SYS_creat: case SYS_rename: case SYS_unlink: case SYS_mkdir:
	case SYS_rmdir: case SYS_truncate: case SYS_mmap: case SYS_munmap: case SYS_mprotect: case SYS_msync:
	case SYS_dup: case SYS_dup2: case SYS_dup3: case SYS_fcntl: case SYS_execve:
		return K_TRACED;
	/* change no file and nothing the interposer follows */
	case SYS_read: case SYS_pread64: case SYS_readv: case SYS_preadv: case SYS_preadv2: case SYS_lseek:
	case SYS_fstat: case SYS_stat: case SYS_lstat: case SYS_newfstatat: case SYS_statx: case SYS_access:
	case SYS_faccessat: case SYS_faccessat2: case SYS_getdents64: case SYS_readlink: case SYS_readlinkat:
	case SYS_getcwd: case SYS_poll: case SYS_ppoll: case SYS_select: case SYS_pselect6: case SYS_epoll_wait:
	case SYS_epoll_pwait: case SYS_epoll_ctl: case SYS_epoll_create1: case SYS_futex: case SYS_nanosleep:
	case SYS_clock_nanosleep: case SYS_clock_gettime: case SYS_clock_getres: case SYS_gettimeofday:
	case SYS_time: case SYS_getcpu: case SYS_getpid: case SYS_gettid: case SYS_getppid: case SYS_getuid:
	case SYS_geteuid: case SYS_getgid: case SYS_getegid: case SYS_sched_yield: case SYS_getrandom:
	case SYS_madvise: case SYS_brk: case SYS_recvfrom: case SYS_sendto: case SYS_sendmsg: case SYS_socket:
	case SYS_connect: case SYS_accept: case SYS_accept4: case SYS_bind: case SYS_listen: case SYS_getsockopt:
	case SYS_setsockopt: case SYS_shutdown: case SYS_getsockname: case SYS_getpeername: case SYS_kill:
	case SYS_tgkill: case SYS_tkill: case SYS_getrusage: case SYS_uname: case SYS_sysinfo: case SYS_fsync:
	case SYS_fdatasync: case SYS_fadvise64: case SYS_wait4: case SYS_waitid: case SYS_exit:
	case SYS_exit_group: case SYS_sched_getaffinity: case SYS_pipe2: case SYS_eventfd2:
		return K_HARMLESS;
	case SYS_rt_sigprocmask:
		return K_MASK;
	/* cannot be made from a handler: they need the caller's own stack */
	case SYS_clone: case SYS_clone3: case SYS_fork: case SYS_vfork: case SYS_rt_sigreturn:
		return K_NATIVE;
	default:
		return K_LOSE;
	}
}

static long traced(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
	switch (nr) {
	case SYS_open: return open((const char *)a1, (int)a2, (mode_t)a3);
	case SYS_openat: return openat((int)a1, (const char *)a2, (int)a3, (mode_t)a4);
	case SYS_creat: return creat((const char *)a1, (mode_t)a2);
	case SYS_rename: return rename((const char *)a1, (const char *)a2);
	case SYS_unlink: return unlink((const char *)a1);
	case SYS_mkdir: return mkdir((const char *)a1, (mode_t)a2);
	case SYS_rmdir: return rmdir((const char *)a1);
	case SYS_truncate: return truncate((const char *)a1, (off_t)a2);
	case SYS_mmap: return (long)mmap((void *)a1, (size_t)a2, (int)a3, (int)a4, (int)a5, (off_t)a6);
	case SYS_munmap: return munmap((void *)a1, (size_t)a2);
	case SYS_mprotect: return mprotect((void *)a1, (size_t)a2, (int)a3);
	case SYS_msync: return msync((void *)a1, (size_t)a2, (int)a3);
	case SYS_dup: return dup((int)a1);
	case SYS_dup2: return dup2((int)a1, (int)a2);
	case SYS_dup3: return dup3((int)a1, (int)a2, (int)a3);
	case SYS_fcntl: return fcntl((int)a1, (int)a2, a3);
	case SYS_execve: return execve((const char *)a1, (char *const *)a2, (char *const *)a3);
	default: return preload_traced_syscall(nr, a1, a2, a3, a4, a5, a6);
	}
}

static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	greg_t *g = uc->uc_mcontext.gregs;
	if (si->si_code != SUD_CODE) {
		/* not a trap of ours (seccomp, kill): what SIGSYS does by default */
		struct sigaction dfl = {.sa_handler = SIG_DFL};
		NEXT(int (*)(int, const struct sigaction *, struct sigaction *), sigaction)(sig, &dfl, NULL);
		raise(sig);
		return;
	}
	int saved = errno;
	long nr = si->si_syscall;
	int k = (unsigned)si->si_arch == AUDIT_ARCH_X86_64 ? kind(nr) : K_NATIVE;
	if (k == K_NATIVE) {
		/* make it again, from where it was made, with nothing trapped */
		dispatch_lose();
		g[REG_RIP] -= 2; /* syscall, sysenter and int $0x80 are two bytes */
		g[REG_RAX] = nr;
		errno = saved;
		return;
	}
	long a1 = g[REG_RDI], a2 = g[REG_RSI], a3 = g[REG_RDX], a4 = g[REG_R10], a5 = g[REG_R8], a6 = g[REG_R9];
	/* a trap costs a signal: a program that makes its own calls all the
	 * time is left to the session's look at its code instead */
	if (k == K_LOSE || __atomic_add_fetch(&g_traps, 1, __ATOMIC_RELAXED) > MAX_TRAPS)
		dispatch_lose();
	if (k == K_MASK && a2 && (a1 == SIG_BLOCK || a1 == SIG_SETMASK) && LOAD(&g_d) == D_ON) {
		/* the kernel's sigset: SIGSYS is bit SIGSYS - 1 of the first word */
		static __thread unsigned long mask;
		mask = *(const unsigned long *)a2 & ~(1ul << (SIGSYS - 1));
		a2 = (long)&mask;
	}
	errno = 0;
	long r = k == K_TRACED ? traced(nr, a1, a2, a3, a4, a5, a6) : preload_real_syscall(nr, a1, a2, a3, a4, a5, a6);
	g[REG_RAX] = r == -1 && errno ? -errno : r;
	errno = saved;
}

void dispatch_start(void)
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
	void *in_libc = next("syscall");
	if (!dl_iterate_phdr(find_libc, in_libc) || threads() != 1)
		return; /* a thread made before us may not trap: never on */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_sigsys;
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
	g_since = preload_epoch(); /* read after: this interval is not covered */
	STORE(&g_d, D_ON);
}

void dispatch_fork_child(void)
{
	if (LOAD(&g_d) != D_ON)
		return;
	if (thread_on() != 0) {
		dispatch_lose();
		return;
	}
	g_since = preload_epoch();
}

/* Threads: on before the program's start routine runs. */
struct start { void *(*fn)(void *); void *arg; };
static void *thread_start(void *p)
{
	struct start s = *(struct start *)p;
	free(p);
	if (LOAD(&g_d) == D_ON && thread_on() != 0)
		dispatch_lose();
	return s.fn(s.arg);
}

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	typedef int (*fn_t)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
	struct start *s = LOAD(&g_d) == D_ON ? malloc(sizeof *s) : NULL;
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
	if (act && LOAD(&g_d) == D_ON && sigismember(&act->sa_mask, SIGSYS)) {
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
#else
void dispatch_start(void) {}
void dispatch_fork_child(void) {}
#endif

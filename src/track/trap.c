/*
 * trap.c — where a system call trapped by syscall user dispatch
 * (dispatch.c) goes: through the interposer's wrappers, so that it is
 * recorded like any call through libc; and the interposer's start, which
 * turns dispatch on with this handler once the state is read (init.c).
 *
 * Invariant: the handler never traps: it calls only the wrappers and libc,
 * inside the allowed range.
 */
#include <ucontext.h>

#include "track/dispatch.h"
#include "track/init.h"

#if defined(__x86_64__)
#define SUD_CODE 2 /* si_code SYS_USER_DISPATCH */
#ifndef AUDIT_ARCH_X86_64
#define AUDIT_ARCH_X86_64 0xc000003eu
#endif
static unsigned long g_traps; /* calls trapped so far (atomic) */
#define MAX_TRAPS 10000

/* What a trapped call is. */
enum { K_TRACED, K_HARMLESS, K_MASK, K_NATIVE, K_LOSE };
static int kind(long nr)
{
	switch (nr) {
	/* the interposer's syscall() records these */
	case SYS_write: case SYS_pwrite64: case SYS_writev: case SYS_pwritev: case SYS_pwritev2:
	case SYS_ftruncate: case SYS_fallocate: case SYS_close: case SYS_renameat2: case SYS_renameat:
	case SYS_unlinkat: case SYS_mkdirat: case SYS_openat2: case SYS_pidfd_getfd: case SYS_io_uring_setup:
	case SYS_open_by_handle_at:
	/* and these, through the wrappers of their libc functions (there too) */
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


static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	greg_t *g = uc->uc_mcontext.gregs;
	if (si->si_code != SUD_CODE) {
		dispatch_sigsys_default(sig);
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
	if (k == K_MASK && a2 && (a1 == SIG_BLOCK || a1 == SIG_SETMASK) && dispatch_on()) {
		/* the kernel's sigset: SIGSYS is bit SIGSYS - 1 of the first word */
		static __thread unsigned long mask;
		mask = *(const unsigned long *)a2 & ~(1ul << (SIGSYS - 1));
		a2 = (long)&mask;
	}
	errno = 0;
	/* a K_TRACED call goes where syscall() sends it: through the wrapper
	 * that records it (preload_traced_syscall) */
	long r = k == K_TRACED ? preload_traced_syscall(nr, a1, a2, a3, a4, a5, a6)
	                       : REAL(syscall)(nr, a1, a2, a3, a4, a5, a6);
	g[REG_RAX] = r == -1 && errno ? -errno : r;
	errno = saved;
}
#define TRAP_HANDLER on_sigsys
#else
#define TRAP_HANDLER NULL
#endif

/* The process starts: the state read (lazily: a wrapper called before us
 * may have read it already), then dispatch turned on, from here, where the
 * process has one thread. */
__attribute__((constructor)) static void metamori_preload_init(void)
{
	if (active())
		dispatch_start(TRAP_HANDLER);
}

/*
 * bypass.c — can a traced process change a file without its interposer
 * recording it?
 *
 * The interposer sees every call made through the C library. A process
 * gets past it only with code of its own that makes system calls: a
 * syscall instruction in its program or in a library other than the C
 * library, the loader, libaio (whose calls are wrapped) and the interposer
 * itself, or code made at run time. fanotify tells the session which pid
 * wrote a file, not how: when a traced pid that may bypass wrote a file the
 * logs name, the file is compared whole instead of trusting the ranges
 * logged (watch_judge.c).
 *
 * The verdict reads the process's executable mappings (/proc/PID/maps) and
 * their bytes as they are in its memory (/proc/PID/mem), looking for the
 * instruction's bytes anywhere (not only at instruction boundaries: a false
 * alarm costs a compare, never a miss). Code that changed in the interval
 * (an executable mapping made, dlclose, an exec) cannot be looked at any
 * more: the interposer says so (MTM_REC_CODE) and the process is distrusted
 * for that interval. A process that cannot be looked at (gone, another
 * user's) is distrusted. Verdicts are cached per process image: its start
 * time and a hash of its executable mappings.
 *
 * A process whose log says syscall user dispatch is on (MTM_DISPATCH_ON,
 * track/dispatch.c) needs no look: every system call it makes outside the
 * C library traps to its interposer and is recorded. The flag is cleared
 * (with a MTM_REC_CODE for the interval) the moment that stops being true.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include "session/session.h"
#include "track/protocol.h"

#define SCAN_CHUNK (1 << 20)

/* Libraries whose system calls the interposer's wrappers cover (by the
 * start of their file name). */
static const char *const covered[] = {
	"libc.so.", "libc-2.", "ld-linux", "ld64.so", "libmetamori-preload.so", "libaio.so",
	"libpthread.so.", "libpthread-2.", "librt.so.", "librt-2.", "libdl.so.", "libdl-2.",
};

static int is_covered(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	for (size_t i = 0; i < sizeof covered / sizeof *covered; i++)
		if (!strncmp(base, covered[i], strlen(covered[i])))
			return 1;
	return 0;
}

/* 1 if buf holds a system call instruction's bytes (from pos on; *carry is
 * the byte before buf, for a pair split between two reads). */
static int has_syscall(const unsigned char *buf, size_t n, int *carry)
{
#if defined(__x86_64__) || defined(__i386__)
	/* syscall 0f 05, sysenter 0f 34, int $0x80 cd 80 */
	if (*carry == 0x0f && n && (buf[0] == 0x05 || buf[0] == 0x34))
		return 1;
	if (*carry == 0xcd && n && buf[0] == 0x80)
		return 1;
	for (size_t i = 0; i + 1 < n; i++)
		if ((buf[i] == 0x0f && (buf[i + 1] == 0x05 || buf[i + 1] == 0x34)) || (buf[i] == 0xcd && buf[i + 1] == 0x80))
			return 1;
	*carry = n ? buf[n - 1] : *carry;
	return 0;
#elif defined(__aarch64__)
	/* svc #imm: 0xd4000001 | imm16 << 5, aligned little-endian words */
	(void)carry;
	for (size_t i = 0; i + 4 <= n; i += 4) {
		uint32_t w;
		memcpy(&w, buf + i, 4);
		if ((w & 0xffe0001fu) == 0xd4000001u)
			return 1;
	}
	return 0;
#else
	(void)buf, (void)n, (void)carry;
	return 1; /* unknown encodings: every process may bypass */
#endif
}

typedef struct { uint64_t lo, hi; } span;

/* The process's executable mappings that need looking at, and a hash of
 * all of them. 1: it may bypass without looking further (code made at run
 * time), 0: spans filled, -1: cannot be read. */
static int exec_spans(int32_t pid, vec *spans, uint64_t *sig)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	char line[4096 + 256];
	uint64_t h = 1469598103934665603ull;
	int rc = 0;
	while (!rc && fgets(line, sizeof line, f)) {
		unsigned long long lo, hi, off, ino;
		char perms[8];
		int name = 0;
		if (sscanf(line, "%llx-%llx %7s %llx %*s %llu %n", &lo, &hi, perms, &off, &ino, &name) < 5)
			continue;
		if (perms[2] != 'x')
			continue;
		for (const char *p = line; *p; p++)
			h = (h ^ (unsigned char)*p) * 1099511628211ull;
		char *nm = line + name;
		nm[strcspn(nm, "\n")] = 0;
		if (!strcmp(nm, "[vdso]") || !strcmp(nm, "[vsyscall]"))
			continue; /* the kernel's: only its clock calls */
		if (!*nm || nm[0] == '[' || ino == 0) {
			rc = 1; /* anonymous executable memory: code made at run time */
			break;
		}
		if (is_covered(nm))
			continue;
		span *s = vec_push(spans);
		if (!s) {
			rc = -1;
			break;
		}
		s->lo = lo;
		s->hi = hi;
	}
	fclose(f);
	*sig = h;
	return rc;
}

/* 1 if a span's bytes hold a system call instruction, or cannot be read. */
static int spans_bypass(int32_t pid, const vec *spans)
{
	if (!spans->n)
		return 0;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	unsigned char *buf = malloc(SCAN_CHUNK);
	int found = !buf;
	for (size_t i = 0; i < spans->n && !found; i++) {
		const span *s = &VEC_AT(spans, span, i);
		int carry = 0;
		for (uint64_t at = s->lo; at < s->hi && !found;) {
			size_t want = s->hi - at > SCAN_CHUNK ? SCAN_CHUNK : (size_t)(s->hi - at);
			ssize_t n = pread(fd, buf, want, (off_t)at);
			if (n <= 0) {
				found = 1; /* unmapped meanwhile, or not ours to read */
				break;
			}
			found = has_syscall(buf, (size_t)n, &carry);
			at += (uint64_t)n;
		}
	}
	free(buf);
	close(fd);
	return found;
}

int session_pid_bypasses(mtm_session *ss, int32_t pid)
{
	int64_t start = proc_start_time(pid);
	if (pid <= 0 || start < 0)
		return 1;
	vec spans = VEC_INIT(span);
	uint64_t sig = 0;
	int rc = exec_spans(pid, &spans, &sig);
	code_verdict *known = NULL;
	for (size_t i = 0; i < ss->code_seen.n && !known; i++)
		if (VEC_AT(&ss->code_seen, code_verdict, i).pid == pid)
			known = &VEC_AT(&ss->code_seen, code_verdict, i);
	if (rc == 0 && known && known->start == start && known->sig == sig) {
		vec_free(&spans);
		return known->bypass;
	}
	int bypass = rc != 0 || spans_bypass(pid, &spans);
	vec_free(&spans);
	if (rc < 0)
		return 1; /* not cached: maps could not be read */
	if (!known && (known = vec_push(&ss->code_seen)))
		known->pid = pid;
	if (known) {
		known->start = start;
		known->sig = sig;
		known->bypass = bypass;
	}
	return bypass;
}

void session_forget_pid(mtm_session *ss, int32_t pid)
{
	for (size_t i = 0; i < ss->code_seen.n; i++)
		if (VEC_AT(&ss->code_seen, code_verdict, i).pid == pid) {
			VEC_AT(&ss->code_seen, code_verdict, i) = VEC_AT(&ss->code_seen, code_verdict, ss->code_seen.n - 1);
			ss->code_seen.n--;
			return;
		}
}

/* Whether a traced pid's log is the whole truth of its writes (the
 * barrier and the watcher ask; they sit above this file). */

/* 1 if nobody holds the log's shared lock any more: the process is gone.
 * The exclusive lock we then hold keeps a late opener waiting until the
 * log is removed (session_reap_logs). */
int session_log_dead(log_slot *l)
{
	if (l->dead)
		return 1;
	if (flock(l->fd, LOCK_EX | LOCK_NB) == 0)
		l->dead = 1;
	return l->dead;
}

int64_t proc_start_time(int32_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	/* "pid (comm) S ppid ... starttime": comm may hold spaces and parentheses */
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
		return -1;
	p += 2;
	for (int field = 3; field < 22; field++) { /* starttime is field 22 */
		p = strchr(p, ' ');
		if (!p)
			return -1;
		p++;
	}
	return strtoll(p, NULL, 10);
}

int session_pid_code_changed(mtm_session *ss, int32_t pid)
{
	for (size_t i = 0; i < ss->logs.n; i++)
		if (VEC_AT(&ss->logs, log_slot, i).pid == pid)
			return VEC_AT(&ss->logs, log_slot, i).code;
	return 0;
}

int session_pid_traced(const mtm_session *ss, int32_t pid)
{
	for (size_t i = 0; pid > 0 && i < ss->logs.n; i++)
		if (VEC_AT(&ss->logs, log_slot, i).pid == pid)
			return 1;
	return 0;
}

int session_pid_trusted(mtm_session *ss, int32_t pid)
{
	if (pid <= 0)
		return 0;
	for (size_t i = 0; i < ss->logs.n; i++) {
		log_slot *l = &VEC_AT(&ss->logs, log_slot, i);
		if (l->pid == pid) {
			if (session_log_dead(l) || l->code)
				return 0;
			/* every system call it made outside libc was trapped and recorded
			 * (track/dispatch.c): its code need not be looked at */
			if (__atomic_load_n(&l->hdr->dispatch, __ATOMIC_SEQ_CST) == MTM_DISPATCH_ON) {
				ss->dispatch_trusted++;
				return 1;
			}
			return !session_pid_bypasses(ss, pid);
		}
	}
	return 0; /* not traced */
}

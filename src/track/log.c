/* log.c — the process's log: mapped on the first record, and the records
 * appended to it (inside the in-flight region, region.c). */
#include "track/preload.h"

/* The kernel's pid, for the log's name and header: under DMTCP, getpid()
 * is a virtual pid that survives a restart while the real one changes, and
 * the session looks a process up by the real one (/proc/PID). libc's
 * syscall() is the next one after us (DMTCP's preload comes first). */
pid_t real_pid(void)
{
	return (pid_t)REAL(syscall)(SYS_getpid);
}

int g_dispatch_owed; /* the log does not say yet that dispatch is on */

int log_attach(int fd)
{
	struct stat st;
	if (flock(fd, LOCK_SH) != 0 || fstat(fd, &st) != 0)
		return -1;
	size_t want = (size_t)MTM_LOG_HDR_SIZE + g_log_cap;
	if ((size_t)st.st_size < want) {
		if (REAL(ftruncate)(fd, (off_t)want) != 0)
			return -1;
		st.st_size = (off_t)want;
	}
	/* Mapped at the largest size; only the file's size is ever touched. */
	void *p = REAL(mmap)(NULL, LOG_MAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -1;
	struct mtm_log_hdr *h = p;
	if (h->magic != MTM_TRACK_MAGIC || h->version != MTM_TRACK_VERSION || h->capacity > MTM_LOG_CAPACITY ||
	    h->capacity + MTM_LOG_HDR_SIZE > (uint64_t)st.st_size) {
		memset(h, 0, MTM_LOG_HDR_SIZE);
		h->pid = real_pid();
		h->capacity = g_log_cap;
		h->epoch = __atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST);
		h->version = MTM_TRACK_VERSION;
		__atomic_store_n(&h->magic, MTM_TRACK_MAGIC, __ATOMIC_SEQ_CST);
	} else {
		/* Our pid's earlier image (before exec) or a dead process with
		 * our pid: its records stay, its in-flight calls are over. */
		h->pid = real_pid();
		__atomic_store_n(&h->inflight, 0, __ATOMIC_SEQ_CST);
	}
	/* Dispatch is said on only once the interval it was turned on in is
	 * over (enter: dispatch_settle). */
	__atomic_store_n(&h->dispatch, 0, __ATOMIC_SEQ_CST);
	g_dispatch_owed = dispatch_on();
	g_logfd = fd;
	STORE(&g_hdr, h);
	return 0;
}
int ensure_log(void)
{
	if (LIKELY(LOAD(&g_hdr) != NULL))
		return 1;
	if (g_log_failed || !g_ctl)
		return 0;
	if (!lock(&g_log_lock)) {
		note_untrackable();
		return 0;
	}
	if (!g_hdr && !g_log_failed) {
		char p[PATH_MAX + 32];
		snprintf(p, sizeof p, "%s/log.%d", g_session, (int)real_pid());
		int fd = -1;
		for (int tries = 0; tries < 100; tries++) {
			fd = REAL(open)(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
			if (fd < 0)
				break;
			/* A dead process with our pid may have left a log that the
			 * session holds (exclusively) until it removes it: once we
			 * get the lock, make sure the file is still the one named. */
			struct stat a, b;
			if (flock(fd, LOCK_SH) == 0 && fstat(fd, &a) == 0 && stat(p, &b) == 0 &&
			    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
				break;
			REAL(close)(fd);
			fd = -1;
		}
		if (fd < 0 || log_attach(fd) != 0) {
			if (fd >= 0)
				REAL(close)(fd);
			g_log_failed = 1;
			note_untrackable();
		}
	}
	unlock(&g_log_lock);
	return LOAD(&g_hdr) != NULL;
}

/* Append a record (inside the region). */
struct mtm_rec *rec(uint16_t type, uint64_t a, uint64_t b, const char *path, size_t len)
{
	struct mtm_log_hdr *h = g_hdr;
	if (!h)
		return NULL;
	if (len > 0xffff) {
		__atomic_store_n(&h->overflow, 1, __ATOMIC_SEQ_CST);
		return NULL;
	}
	uint64_t sz = MTM_REC_SIZE(len);
	uint64_t t = __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE);
	do {
		if (t + sz > h->capacity) {
			__atomic_store_n(&h->overflow, 1, __ATOMIC_SEQ_CST);
			return NULL;
		}
	} while (!__atomic_compare_exchange_n(&h->tail, &t, t + sz, 0, __ATOMIC_ACQ_REL,
	                                      __ATOMIC_ACQUIRE));
	struct mtm_rec *r = (struct mtm_rec *)((char *)h + MTM_LOG_HDR_SIZE + t);
	__atomic_store_n(&r->seal, 0, __ATOMIC_RELAXED); /* (a reset log holds old records) */
	r->type = type;
	r->path_len = (uint16_t)len;
	r->a = a;
	r->b = b;
	char *d = (char *)(r + 1);
	if (len)
		memcpy(d, path, len);
	memset(d + len, 0, sz - sizeof *r - len);
	__atomic_store_n(&r->seal, MTM_SEAL(__atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST)), __ATOMIC_RELEASE);
	return r;
}

/* A WRITE record; extends this thread's previous one when it touches it. */
void rec_write(const char *path, size_t len, uint64_t off, uint64_t n)
{
	if (!n)
		return;
	struct mtm_log_hdr *h = g_hdr;
	uint64_t ep = __atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST);
	struct mtm_rec *r = t_last.r;
	if (r && t_last.h == h && t_last.epoch == ep && t_last.gen == LOAD(&g_log_gen) && r->path_len == len &&
	    memcmp(r + 1, path, len) == 0 && off <= r->a + r->b && off + n >= r->a) {
		uint64_t s = off < r->a ? off : r->a;
		uint64_t e = off + n > r->a + r->b ? off + n : r->a + r->b;
		__atomic_store_n(&r->a, s, __ATOMIC_RELAXED);
		__atomic_store_n(&r->b, e - s, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		uint64_t at = (uint64_t)((char *)r - ((char *)h + MTM_LOG_HDR_SIZE));
		if (__atomic_load_n(&h->peeked, __ATOMIC_SEQ_CST) <= at)
			return; /* not read yet: the session sees the grown record */
		/* the session may have read it before it grew: a record of its own */
		off = s;
		n = e - s;
	}
	r = rec(MTM_REC_WRITE, off, n, path, len);
	t_last.r = r;
	t_last.h = h;
	t_last.epoch = ep;
	t_last.gen = LOAD(&g_log_gen);
}

void rec_e(uint16_t type, uint64_t a, uint64_t b, struct ent *e)
{
	if (type == MTM_REC_WRITE)
		rec_write(e->path, e->len, a, b);
	else
		rec(type, a, b, e->path, e->len);
	if (MULTI(e))
		multi_scan();
}

void rec_sticky(uint16_t type, const char *path, size_t len)
{
	if (!rec(type, 1, 0, path, len))
		g_sticky_lost = 1;
}

/* A change to a file with several names (inside the region): scan once in
 * this checkpoint interval, so the names we did not see are compared. */
uint64_t g_multi_ep;
void multi_scan(void)
{
	uint64_t ep = __atomic_load_n(&g_ctl->epoch, __ATOMIC_SEQ_CST) + 1;
	if (__atomic_load_n(&g_multi_ep, __ATOMIC_RELAXED) == ep)
		return;
	__atomic_store_n(&g_multi_ep, ep, __ATOMIC_RELAXED);
	rec(MTM_REC_SCAN, 0, 0, NULL, 0);
}

/* After a metadata or size change through a path: other names? */
void multi_check_at(int dirfd, const char *path, int follow)
{
	struct stat st;
	if (path && fstatat(dirfd, path, &st, follow ? 0 : AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	    st.st_nlink > 1)
		multi_scan();
}

/* Writes we cannot see, to a file with names we do not know: scan at every
 * checkpoint while we live (inside the region). */
void multi_sticky(void)
{
	g_sticky_scan = 1;
	rec_sticky(MTM_REC_SCAN, NULL, 0);
}

void multi_check_fd(int fd)
{
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink > 1)
		multi_scan();
}

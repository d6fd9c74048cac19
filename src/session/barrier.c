/*
 * barrier.c — holding every traced process's modifying calls, and reading
 * the logs they wrote (protocol in track/protocol.h).
 *
 * Closing: gate = 1, then every log in the directory is looked at. A process
 * whose log is still flock'd is alive: wait until its in-flight count drops
 * to 0 (it cannot rise again while the gate is closed, and records are only
 * appended inside the in-flight region, so its log is then stable). A
 * process whose log is no longer flock'd is dead: its log is read (what it
 * did before dying still counts) and, if it died inside a call, the change
 * it was making may not be recorded at all, so this checkpoint scans.
 * Every log is then reset and ctl->epoch bumped. Sticky records (a file to
 * compare every time; "always scan") outlive the reset in the session's
 * memory, until the process releases them or dies.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "io/beneath.h"
#include "io/io.h"
#include "session/session.h"
#include "session/watch.h"
#include "track/protocol.h"
#include "util/error.h"
#include "util/log.h"
#include "util/human.h"

#define BARRIER_TIMEOUT_NS (60LL * 1000000000) /* a call that never returns (a FIFO, a hung NFS server) */

typedef struct { int64_t off, len; } byte_range;

static int futex_wait(uint32_t *addr, uint32_t val, long ns)
{
	struct timespec ts = {0, ns};
	return (int)syscall(SYS_futex, addr, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void slot_close(log_slot *l)
{
	if (l->hdr)
		munmap(l->hdr, l->maplen);
	if (l->fd >= 0)
		close(l->fd);
	l->hdr = NULL;
	l->fd = -1;
}

/* Opens (or refreshes) the slot for log file name. 0, or 1 if the file is
 * not ready yet (being created: no magic), or an error. */
static int slot_open(mtm_session *ss, const char *name, log_slot *l)
{
	memset(l, 0, sizeof *l);
	l->fd = -1;
	if (strlen(name) >= sizeof l->name)
		return 1; /* not a log's name (they are short): not one of ours */
	memcpy(l->name, name, strlen(name) + 1);
	int rc = io_openat(ss->dirfd, name, O_RDWR | O_NOFOLLOW, 0, &l->fd);
	if (rc)
		return rc == ENOENT ? 1 : mtm_set_errno(rc, "%s/%s", ss->dir, name);
	struct stat st;
	if (fstat(l->fd, &st) || !S_ISREG(st.st_mode) || st.st_size < MTM_LOG_HDR_SIZE) {
		slot_close(l);
		return 1;
	}
	l->dev = (int64_t)st.st_dev;
	l->ino = (int64_t)st.st_ino;
	l->maplen = (size_t)st.st_size;
	void *p = mmap(NULL, l->maplen, PROT_READ | PROT_WRITE, MAP_SHARED, l->fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		slot_close(l);
		return mtm_set_errno(e, "%s/%s", ss->dir, name);
	}
	l->hdr = p;
	if (__atomic_load_n(&l->hdr->magic, __ATOMIC_SEQ_CST) != MTM_TRACK_MAGIC) {
		slot_close(l);
		return 1;
	}
	l->pid = l->hdr->pid;
	return 0;
}

/* Brings ss->logs up to date with the directory. */
static int list_logs(mtm_session *ss)
{
	DIR *d;
	int rc = io_opendirat(ss->dirfd, ".", &d);
	if (rc)
		return mtm_set_errno(rc, "%s", ss->dir);
	struct dirent *de;
	while (!(rc = io_readdir(d, &de)) && de) {
		if (strncmp(de->d_name, "log.", 4) || strlen(de->d_name) >= sizeof ((log_slot *)0)->name)
			continue;
		log_slot *known = NULL;
		for (size_t i = 0; i < ss->logs.n && !known; i++)
			if (!strcmp(VEC_AT(&ss->logs, log_slot, i).name, de->d_name))
				known = &VEC_AT(&ss->logs, log_slot, i);
		if (known && (int64_t)de->d_ino == known->ino)
			continue;
		log_slot l;
		int r = slot_open(ss, de->d_name, &l);
		if (r == 1)
			continue;
		if (r) {
			rc = r;
			break;
		}
		if (known) { /* the same name, another file: the old one is gone */
			slot_close(known);
			*known = l;
			continue;
		}
		log_slot *slot = vec_push(&ss->logs);
		if (!slot) {
			slot_close(&l);
			rc = mtm_set_error(ENOMEM, "session");
			break;
		}
		*slot = l;
	}
	if (rc && !de)
		rc = mtm_set_errno(rc, "%s: listing", ss->dir);
	closedir(d);
	return rc;
}

static int sticky_add(mtm_session *ss, int32_t pid, const char *path)
{
	for (size_t i = 0; i < ss->sticky.n; i++) {
		sticky_whole *w = &VEC_AT(&ss->sticky, sticky_whole, i);
		if (w->pid == pid && !strcmp(w->path, path))
			return 0;
	}
	sticky_whole *w = vec_push(&ss->sticky);
	if (!w || !(w->path = strdup(path)))
		return ENOMEM;
	w->pid = pid;
	return 0;
}

static void sticky_remove(mtm_session *ss, int32_t pid, const char *path)
{
	for (size_t i = 0; i < ss->sticky.n; i++) {
		sticky_whole *w = &VEC_AT(&ss->sticky, sticky_whole, i);
		if (w->pid == pid && (!path || !strcmp(w->path, path))) {
			free(w->path);
			*w = VEC_AT(&ss->sticky, sticky_whole, ss->sticky.n - 1);
			ss->sticky.n--;
			i--;
		}
	}
}

static int sticky_scan_add(mtm_session *ss, int32_t pid)
{
	for (size_t i = 0; i < ss->sticky_scan.n; i++)
		if (VEC_AT(&ss->sticky_scan, sticky_scanner, i).pid == pid)
			return 0;
	sticky_scanner *p = vec_push(&ss->sticky_scan);
	if (!p)
		return ENOMEM;
	p->pid = pid;
	p->start = proc_start_time(pid);
	return 0;
}

/* A process that is traced again (a DMTCP restart: the static mtcp_restart
 * became the program, its interposer attached) scans no more for being it. */
static void sticky_scan_remove(mtm_session *ss, int32_t pid)
{
	for (size_t i = 0; i < ss->sticky_scan.n; i++)
		if (VEC_AT(&ss->sticky_scan, sticky_scanner, i).pid == pid) {
			VEC_AT(&ss->sticky_scan, sticky_scanner, i) = VEC_AT(&ss->sticky_scan, sticky_scanner, --ss->sticky_scan.n);
			return;
		}
}

/* What a content or namespace record says, into cs (no side effects: the
 * light change sets of the pre-copy use this alone). */
static int apply_record(change_set *cs, const struct mtm_rec *rec, const char *path)
{
	file_change *fc;
	switch (rec->type) {
	case MTM_REC_WRITE:
		if (!(fc = change_set_file(cs, path)))
			return ENOMEM;
		if (rec->b == 0)
			return 0;
		if (rec->a > (uint64_t)INT64_MAX || rec->b > (uint64_t)INT64_MAX - rec->a) {
			fc->whole = 1;
			return 0;
		}
		byte_range *r = fc->ranges.n ? &VEC_AT(&fc->ranges, byte_range, fc->ranges.n - 1) : NULL;
		if (r && (uint64_t)(r->off + r->len) == rec->a) { /* appends and sequential writes coalesce here */
			r->len += (int64_t)rec->b;
			return 0;
		}
		if (!(r = vec_push(&fc->ranges)))
			return ENOMEM;
		r->off = (int64_t)rec->a;
		r->len = (int64_t)rec->b;
		return 0;
	case MTM_REC_TRUNC:
		if (!(fc = change_set_file(cs, path)))
			return ENOMEM;
		if (rec->a > (uint64_t)INT64_MAX)
			fc->whole = 1;
		else if (fc->trunc_min < 0 || (int64_t)rec->a < fc->trunc_min)
			fc->trunc_min = (int64_t)rec->a;
		return 0;
	case MTM_REC_WHOLE:
	case MTM_REC_RELEASE: /* what was written through it until now still needs a compare */
		if (!(fc = change_set_file(cs, path)))
			return ENOMEM;
		fc->whole = 1;
		return 0;
	case MTM_REC_META:
		return change_set_mark(&cs->meta, path);
	case MTM_REC_NS:
		return change_set_mark(&cs->ns, path);
	}
	return 0;
}

/* Parses a log's records from offset from (a record boundary) up to limit
 * (UINT64_MAX: its tail). full, if given, gets them with their side effects
 * (sticky records, reasons to scan); light, if given, gets them without. */
static int parse_log(mtm_session *ss, log_slot *l, uint64_t from, uint64_t limit, change_set *full, change_set *light,
                     uint32_t seal, uint64_t *stop)
{
	struct mtm_log_hdr *h = l->hdr;
	if (full && __atomic_load_n(&h->overflow, __ATOMIC_SEQ_CST))
		change_set_scan(full, "a log overflowed");
	uint64_t tail = __atomic_load_n(&h->tail, __ATOMIC_SEQ_CST);
	if (tail > limit)
		tail = limit;
	if (tail > l->maplen - MTM_LOG_HDR_SIZE) {
		/* the file grew after we mapped it, or the header is damaged */
		struct stat st;
		if (fstat(l->fd, &st) == 0 && (uint64_t)st.st_size >= MTM_LOG_HDR_SIZE + tail) {
			void *p = mremap(l->hdr, l->maplen, (size_t)st.st_size, MREMAP_MAYMOVE);
			if (p != MAP_FAILED) {
				l->hdr = h = p;
				l->maplen = (size_t)st.st_size;
			}
		}
		if (tail > l->maplen - MTM_LOG_HDR_SIZE) {
			if (full)
				change_set_scan(full, "a log is damaged");
			tail = l->maplen - MTM_LOG_HDR_SIZE;
		}
	}
	const unsigned char *base = (const unsigned char *)h + MTM_LOG_HDR_SIZE;
	char path[4096 + 1];
	uint64_t off = from;
	for (; off + sizeof(struct mtm_rec) <= tail;) {
		struct mtm_rec rec;
		/* the seal first: a record reserved but not written yet (only while
		 * the process runs: a peek) ends what can be read for now */
		uint32_t got = __atomic_load_n(&((const struct mtm_rec *)(base + off))->seal, __ATOMIC_ACQUIRE);
		if (got != seal) {
			if (limit == UINT64_MAX && full)
				change_set_scan(full, "a log is damaged");
			break;
		}
		memcpy(&rec, base + off, sizeof rec);
		uint64_t size = MTM_REC_SIZE((uint64_t)rec.path_len);
		if (off + size > tail || rec.path_len > 4096) {
			if (full)
				change_set_scan(full, "a log is damaged");
			break;
		}
		memcpy(path, base + off + sizeof rec, rec.path_len);
		path[rec.path_len] = 0;
		off += size;
		if (light && rec.type != MTM_REC_SCAN && rec.path_len &&
		    path_is_safe(path, rec.path_len) && !session_outside_tree(path) && apply_record(light, &rec, path))
			return mtm_set_error(ENOMEM, "session");
		if (!full)
			continue;
		if (ss->debug == 1)
			log_msg(MTM_LOG_DEBUG, "session: pid %d: record %u '%s' %llu %llu", (int)l->pid, rec.type, path,
			        (unsigned long long)rec.a, (unsigned long long)rec.b);
		if (rec.type == MTM_REC_CODE) {
			l->code = 1; /* (until the barrier's watcher has judged this interval) */
			continue;
		}
		if (rec.type == MTM_REC_SCAN) {
			change_set_scan(full, "a traced process did something that cannot be tracked");
			if (rec.a == 1 && sticky_scan_add(ss, l->pid))
				return mtm_set_error(ENOMEM, "session");
			if (rec.a == 2)
				sticky_scan_remove(ss, l->pid);
			continue;
		}
		if (rec.path_len == 0 && (rec.type == MTM_REC_META || rec.type == MTM_REC_NS))
			continue; /* the root directory itself: not an entry */
		if (!path_is_safe(path, rec.path_len)) {
			change_set_scan(full, "a log holds a path outside the tree");
			continue;
		}
		if (session_outside_tree(path))
			continue;
		if (rec.type < MTM_REC_WRITE || rec.type > MTM_REC_CODE) {
			change_set_scan(full, "a log holds an unknown record");
			continue;
		}
		int err = apply_record(full, &rec, path);
		if (!err && rec.type == MTM_REC_WHOLE && rec.a == 1)
			err = sticky_add(ss, l->pid, path);
		if (!err && rec.type == MTM_REC_RELEASE)
			sticky_remove(ss, l->pid, path);
		if (err)
			return mtm_set_error(ENOMEM, "session");
	}
	if (stop)
		*stop = off;
	return 0;
}

int barrier_peek(mtm_session *ss, change_set *cs, change_set *delta)
{
	int rc = list_logs(ss);
	for (size_t i = 0; i < ss->logs.n && !rc; i++) {
		log_slot *l = &VEC_AT(&ss->logs, log_slot, i);
		uint64_t snap = __atomic_load_n(&l->hdr->tail, __ATOMIC_SEQ_CST);
		if (snap < l->peek_tail) /* (cannot happen: only we empty logs) */
			l->peek_tail = 0;
		/* before reading: a record below snap that grows from now on is
		 * recorded anew (protocol.h) */
		__atomic_store_n(&l->hdr->peeked, snap, __ATOMIC_SEQ_CST);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		uint64_t upto = l->peek_tail;
		rc = parse_log(ss, l, l->peek_tail, snap, cs, delta, MTM_SEAL(__atomic_load_n(&ss->ctl->epoch, __ATOMIC_SEQ_CST)),
		               &upto);
		l->peek_tail = upto;
	}
	return rc;
}

/* Reads a log and empties it; what came after the peek goes to post too. */
static int consume(mtm_session *ss, log_slot *l, change_set *cs, change_set *post, uint64_t epoch)
{
	int died_inside = session_log_dead(l) && __atomic_load_n(&l->hdr->inflight, __ATOMIC_SEQ_CST);
	if (died_inside)
		change_set_scan(cs, "a traced process died inside a call");
	/* the records were sealed in the epoch before this barrier's (epoch),
	 * or in the current one for a dead process's log read before it */
	uint64_t cur = __atomic_load_n(&ss->ctl->epoch, __ATOMIC_SEQ_CST);
	int rc = parse_log(ss, l, l->peek_tail, UINT64_MAX, cs, post,
	                   MTM_SEAL(epoch ? epoch - 1 : cur), NULL);
	l->peek_tail = 0;
	if (rc)
		return rc;
	__atomic_store_n(&l->hdr->peeked, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&l->hdr->tail, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&l->hdr->overflow, 0, __ATOMIC_SEQ_CST);
	if (epoch)
		__atomic_store_n(&l->hdr->epoch, epoch, __ATOMIC_SEQ_CST);
	return 0;
}

int barrier_close(mtm_session *ss, change_set *cs, change_set *post)
{
	/* processes that ended since the last checkpoint (a build's compilers, a
	 * script's commands): their logs are final, so they are read before the
	 * gate closes, and the pause stays proportional to the live ones */
	int rc = list_logs(ss);
	for (size_t i = 0; i < ss->logs.n && !rc; i++) {
		log_slot *l = &VEC_AT(&ss->logs, log_slot, i);
		if (session_log_dead(l))
			rc = consume(ss, l, cs, post, 0);
	}
	/* what the watcher saw so far, judged while the program still runs */
	if (!rc && ss->watch)
		rc = watch_prejudge(ss->watch, ss, cs);
	if (rc)
		return rc;
	/* A moment's sleep before the gate closes. The session's thread comes
	 * here from its busiest work (the compare ahead: 50-1,000 ms of CPU
	 * under pgbench), mid-slice and owed nothing by the scheduler, and on a
	 * shared machine it was preempted inside the pause: 4-26 ms held for
	 * 0.3-1.5 ms of CPU (BENCHMARKS-ARCHIVE.md P21). Woken, it waits for a
	 * CPU here, while the program runs, and starts the pause on a fresh
	 * slice: a 1 ms burst of CPU right after 20 ms of work took p90 7.8 ms,
	 * p99 15.9 ms at load 14, and 1.05 ms, 5.2 ms after a 1 us sleep (P25;
	 * a longer custom slice, sched_setattr, did not help). */
	struct timespec nap = {0, 1000};
	nanosleep(&nap, NULL);
	barrier_times *bt = &ss->bt;
	memset(bt, 0, sizeof *bt);
	if (ss->debug)
		thread_usage(&bt->cpu0, &bt->nvcsw0, &bt->nivcsw0, &bt->minflt0);
	ss->gate_ns = now_ns();
	__atomic_store_n(&ss->ctl->gate, 1, __ATOMIC_SEQ_CST);
	if ((rc = list_logs(ss)))
		return rc;
	bt->listed = now_ns();
	int64_t deadline = bt->listed + BARRIER_TIMEOUT_NS;
	for (size_t i = 0; i < ss->logs.n; i++) {
		log_slot *l = &VEC_AT(&ss->logs, log_slot, i);
		int64_t w0 = 0;
		for (;;) {
			uint32_t v = __atomic_load_n(&l->hdr->inflight, __ATOMIC_SEQ_CST);
			if (v == 0 || session_log_dead(l))
				break;
			int64_t now = now_ns();
			if (!w0)
				w0 = now;
			if (now > deadline)
				return mtm_set_error(MTM_EBUSY, "checkpoint: traced process %d did not reach the barrier in %lld s",
				                     (int)l->pid, BARRIER_TIMEOUT_NS / 1000000000);
			futex_wait(&l->hdr->inflight, v, 1000000); /* 1 ms: then look whether it died */
		}
		bt->nlive += !session_log_dead(l);
		if (w0 && now_ns() - w0 > bt->wait_max) {
			bt->wait_max = now_ns() - w0;
			bt->wait_pid = l->pid;
		}
	}
	bt->waited = now_ns();
	/* every live process is held outside its calls: the logs are stable */
	uint64_t epoch = __atomic_add_fetch(&ss->ctl->epoch, 1, __ATOMIC_SEQ_CST);
	if (__atomic_exchange_n(&ss->ctl->scan_needed, 0, __ATOMIC_SEQ_CST))
		change_set_scan(cs, "the interposer asked for a scan");
	for (size_t i = 0; i < ss->logs.n; i++)
		if ((rc = consume(ss, &VEC_AT(&ss->logs, log_slot, i), cs, post, epoch)))
			return rc;
	/* sticky records: compared (or scanned) at every checkpoint while they live */
	for (size_t i = 0; i < ss->sticky.n; i++) {
		file_change *fc = change_set_file(cs, VEC_AT(&ss->sticky, sticky_whole, i).path);
		if (!fc)
			return mtm_set_error(ENOMEM, "session");
		fc->whole = 1;
	}
	if (ss->sticky_scan.n)
		change_set_scan(cs, "a traced process cannot be tracked");
	bt->consumed = now_ns();
	/* what changed that the logs do not explain: every region is empty, so
	 * the events of every recorded call are queued by now */
	if (!ss->watch) {
		if (!ss->watch_off)
			change_set_scan(cs, ss->watch_why ? ss->watch_why : "the tree is not watched");
		return 0;
	}
	rc = watch_apply(ss->watch, ss, cs);
	for (size_t i = 0; i < ss->logs.n; i++)
		VEC_AT(&ss->logs, log_slot, i).code = 0; /* a new interval */
	return rc;
}

void barrier_open(mtm_session *ss)
{
	__atomic_store_n(&ss->ctl->gate, 0, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &ss->ctl->gate, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void session_reap_logs(mtm_session *ss)
{
	for (size_t i = 0; i < ss->logs.n; i++) {
		log_slot *l = &VEC_AT(&ss->logs, log_slot, i);
		if (!l->dead)
			continue;
		sticky_remove(ss, l->pid, NULL);
		session_forget_pid(ss, l->pid);
		/* removed while we hold its lock exclusively: a process that opens the
		 * same name meanwhile waits for the lock, then finds it unlinked */
		(void)io_unlinkat(ss->dirfd, l->name, 0); /* (best effort: a stale log is removed at the next start) */
		slot_close(l);
		*l = VEC_AT(&ss->logs, log_slot, ss->logs.n - 1);
		ss->logs.n--;
		i--;
	}
	/* a process that cannot be tracked is distrusted until it is gone, not
	 * until its log's lock lapses: a static program may have closed it */
	for (size_t j = 0; j < ss->sticky_scan.n; j++) {
		sticky_scanner *p = &VEC_AT(&ss->sticky_scan, sticky_scanner, j);
		int64_t now = proc_start_time(p->pid);
		if (now < 0 || now != p->start)
			*p = VEC_AT(&ss->sticky_scan, sticky_scanner, --ss->sticky_scan.n), j--;
	}
}

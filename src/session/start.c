/*
 * start.c — a session's start and stop: its directory cleared of a dead
 * session's files, the control file every traced process maps, the
 * socket, the index's WAL hook; at the stop, the gate opened for good and
 * everything the session held freed.
 */
#include <assert.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include "io/io.h"
#include "session/session.h"
#include "session/slots.h"
#include "session/watch.h"
#include "store/index.h"
#include "track/protocol.h"
#include "tree/reader.h"
#include "util/error.h"
#include "util/log.h"
#include "util/lowprio.h"
#include "util/human.h"

#define SESSION_SUBDIR "session" /* under .metamori: MTM_SESSION_DIR (as in session.c) */

/* A dead session may have died with the gate closed: its traced processes,
 * if any still run, would wait on it forever. Open it before removing it. */
static void release_stale_ctl(int dirfd)
{
	int fd;
	if (io_openat(dirfd, "ctl", O_RDWR | O_NOFOLLOW, 0, &fd))
		return;
	struct stat st;
	if (!fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_size >= (off_t)sizeof(struct mtm_ctl)) {
		struct mtm_ctl *c = mmap(NULL, sizeof *c, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (c != MAP_FAILED) {
			if (c->magic == MTM_TRACK_MAGIC) {
				__atomic_store_n(&c->scan_needed, 1, __ATOMIC_SEQ_CST);
				__atomic_store_n(&c->gate, 0, __ATOMIC_SEQ_CST);
				syscall(SYS_futex, &c->gate, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
			}
			munmap(c, sizeof *c);
		}
	}
	close(fd);
}

/* Removes everything in the session directory but the lock. */
static int clear_dir(int dirfd, const char *what)
{
	DIR *d;
	int rc = io_opendirat(dirfd, ".", &d);
	if (rc)
		return mtm_set_errno(rc, "%s", what);
	struct dirent *de;
	while (!(rc = io_readdir(d, &de)) && de) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, "lock"))
			continue;
		if ((rc = io_unlinkat(dirfd, de->d_name, 0)) && rc != ENOENT) {
			rc = mtm_set_errno(rc, "%s/%s", what, de->d_name);
			break;
		}
		rc = 0;
	}
	if (rc && !de)
		rc = mtm_set_errno(rc, "%s: listing", what);
	closedir(d);
	return rc;
}

static int make_ctl(mtm_session *ss)
{
	int fd, e = io_openat(ss->dirfd, "ctl", O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0600, &fd);
	if (e)
		return mtm_set_errno(e, "%s/ctl", ss->dir);
	size_t len = 4096;
	if ((e = io_ftruncate(fd, (off_t)len))) {
		close(fd);
		return mtm_set_errno(e, "%s/ctl", ss->dir);
	}
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	e = errno;
	close(fd);
	if (p == MAP_FAILED)
		return mtm_set_errno(e, "%s/ctl", ss->dir);
	ss->ctl = p;
	ss->ctl->version = MTM_TRACK_VERSION;
	ss->ctl->session_pid = (uint32_t)getpid();
	ss->ctl->epoch = 1;
	__atomic_store_n(&ss->ctl->magic, MTM_TRACK_MAGIC, __ATOMIC_SEQ_CST); /* last: the file is ready */
	return 0;
}

static int make_socket(mtm_session *ss)
{
	struct sockaddr_un sa;
	int rc = session_sock_addr(ss->dirfd, ss->dir, &sa);
	if (rc)
		return mtm_set_errno(rc, "%s/sock", ss->dir);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return mtm_set_errno(errno, "socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 64)) {
		int e = errno;
		close(fd);
		return mtm_set_errno(e, "%s/sock", ss->dir);
	}
	ss->listenfd = fd;
	return 0;
}

/* Every commit on the session's connection: how long the WAL has grown. The
 * hook takes the place of SQLite's auto-checkpoint, which would copy the
 * WAL into the database (and fsync both) inside a checkpoint's COMMIT:
 * with a row per changed block that doubles the index's writes and syncs
 * on the path the user waits on. */
static int wal_commit_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	(void)db;
	(void)name;
	mtm_session *ss = arg;
	ss->wal_frames = frames;
	/* (fewer than before: the WAL started over; the last size stands) */
	if (frames > ss->wal_end)
		ss->wal_last = frames - ss->wal_end;
	ss->wal_end = frames;
	return SQLITE_OK;
}

int session_start(mtm_store *s, const char *const *excludes, size_t n_excludes, mtm_session **out)
{
	*out = NULL;
	mtm_session *ss = calloc(1, sizeof *ss);
	if (!ss)
		return mtm_set_error(ENOMEM, "session");
	ss->s = s;
	/* A session lives as long as its program, within a memory budget
	 * (under 100 MiB at 1,000,000 files: SCALING.md, session_scale): it
	 * reads its index through SQLite's cache, bounded by cache_size, not
	 * through a mapping of up to 1 GiB of it (io_index_map, which the
	 * short commands use), whose pages count in its resident set. */
	io_set_index_map(0);
	sqlite3_exec(s->db, "PRAGMA mmap_size=0;", NULL, NULL, NULL);
	ss->dirfd = ss->lockfd = ss->listenfd = -1;
	ss->logs = (vec)VEC_INIT(log_slot);
	ss->sticky = (vec)VEC_INIT(sticky_whole);
	ss->sticky_scan = (vec)VEC_INIT(sticky_scanner);
	ss->code_seen = (vec)VEC_INIT(code_verdict);
	ss->excludes = excludes;
	const char *dbg = secure_getenv("METAMORI_DEBUG_SESSION");
	ss->debug = !dbg ? 0 : !strcmp(dbg, "phases") ? 2 : 1;
	ss->n_excludes = n_excludes;
	int rc = 0;
	if (asprintf(&ss->dir, "%s/.metamori/" SESSION_SUBDIR, s->root) < 0) {
		ss->dir = NULL;
		rc = mtm_set_error(ENOMEM, "session");
		goto fail;
	}
	if ((rc = io_mkdirat(s->dirfd, SESSION_SUBDIR, 0700)) && rc != EEXIST) {
		rc = mtm_set_errno(rc, "%s", ss->dir);
		goto fail;
	}
	if ((rc = io_openat(s->dirfd, SESSION_SUBDIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, &ss->dirfd))) {
		ss->dirfd = -1;
		rc = mtm_set_errno(rc, "%s", ss->dir);
		goto fail;
	}
	if ((rc = io_openat(ss->dirfd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW, 0600, &ss->lockfd))) {
		ss->lockfd = -1;
		rc = mtm_set_errno(rc, "%s/lock", ss->dir);
		goto fail;
	}
	/* a probe (session_alive) holds LOCK_SH for an instant: retry briefly */
	for (int i = 0;; i++) {
		if (!flock(ss->lockfd, LOCK_EX | LOCK_NB))
			break;
		if (errno != EWOULDBLOCK) {
			rc = mtm_set_errno(errno, "%s/lock", ss->dir);
			goto fail;
		}
		if (i == 20) {
			rc = mtm_set_error(MTM_EBUSY, "%s: a 'metamori run' session is already running on this tree", s->root);
			goto fail;
		}
		usleep(10000);
	}
	/* block_log's rows (a dead session's, scan checkpoints') go into block
	 * and entry_log's (a dead session's) into entry now, before anyone can
	 * reach us, under the writer lock run.c holds: this handle takes the
	 * logs for empty once it merged them (index_block_at, index_entry_at),
	 * and while it lives only it adds rows there (checkpoint.c) */
	assert(s->locked);
	if ((rc = index_settle(s)))
		goto fail;
	/* ours now: whatever else is here is a dead session's */
	release_stale_ctl(ss->dirfd);
	if ((rc = clear_dir(ss->dirfd, ss->dir)) || (rc = make_ctl(ss)) || (rc = make_socket(ss)))
		goto fail;
	s->session = ss;
	s->log_blocks = 1;
	/* the index's WAL is copied into the database when the session is idle,
	 * not inside the commit of every checkpoint (session_wal_maintain) */
	sqlite3_wal_hook(s->db, wal_commit_hook, ss);
	*out = ss;
	return 0;
fail:
	session_stop(ss);
	return rc;
}

void session_stop(mtm_session *ss)
{
	if (!ss)
		return;
	lowprio_stop(ss->low); /* (idle: the session's thread is here) */
	ss->low = NULL;
	if (ss->s && ss->s->session == ss) {
		ss->s->session = NULL;
		session_wal_maintain(ss, 1);
		ss->s->log_blocks = 0;
		sqlite3_wal_autocheckpoint(ss->s->db, 1000 /* SQLite's default */);
	}
	if (ss->ctl) {
		/* never leave anyone waiting: the gate opens for good */
		__atomic_store_n(&ss->ctl->scan_needed, 1, __ATOMIC_SEQ_CST);
		__atomic_store_n(&ss->ctl->gate, 0, __ATOMIC_SEQ_CST);
		syscall(SYS_futex, &ss->ctl->gate, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
		munmap(ss->ctl, 4096);
	}
	if (ss->listenfd >= 0)
		close(ss->listenfd);
	watch_stop(ss->watch);
	for (size_t i = 0; i < ss->logs.n; i++) {
		log_slot *l = &VEC_AT(&ss->logs, log_slot, i);
		if (l->hdr)
			munmap(l->hdr, l->maplen);
		if (l->fd >= 0)
			close(l->fd);
	}
	vec_free(&ss->logs);
	for (size_t i = 0; i < ss->sticky.n; i++)
		free(VEC_AT(&ss->sticky, sticky_whole, i).path);
	vec_free(&ss->sticky);
	vec_free(&ss->sticky_scan);
	vec_free(&ss->code_seen);
	pathmap_free(&ss->hashes, block_hashes_free);
	if (ss->ahead_rd)
		reader_free(ss->ahead_rd);
	free(ss->ahead_rd);
	pathmap_free(&ss->sc_kept, free); /* (written by session_wal_maintain above, if it could) */
	change_set_free(&ss->bg_cs);
	prewrite_free(ss); /* first: its thread may be writing from the pre-copy's slots */
	pathmap_free(&ss->bg_pre, precopy_free);
	free(ss->cap_slab);
	slot_pool_trim(1);
	parent_hashes_free(ss->bg_ph);
	if (ss->dirfd >= 0 && ss->lockfd >= 0 && ss->ctl)
		clear_dir(ss->dirfd, ss->dir); /* the lock file stays: unlinking it would race a new session */
	if (ss->dirfd >= 0)
		close(ss->dirfd);
	if (ss->lockfd >= 0)
		close(ss->lockfd); /* drops the flock: the session is over */
	free(ss->dir);
	free(ss);
}

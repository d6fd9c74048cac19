/*
 * session.c — the session's files: ROOT/.metamori/session/{lock,ctl,sock}.
 *
 * Liveness is a flock: the session holds LOCK_EX on "lock" for its whole
 * life, and the kernel drops it when the session dies, however it dies. So
 * a dead session's leftovers (ctl, sock, logs) are recognised as stale by
 * the next `metamori run`, which removes them, and ignored by everyone else:
 * a plain checkpoint then scans, as if no session had ever run.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include "session/session.h"
#include "session/watch.h"
#include "store/index.h"
#include "track/protocol.h"
#include "util/error.h"
#include "util/log.h"
#include "util/human.h"

#define SESSION_SUBDIR "session" /* under .metamori: MTM_SESSION_DIR */

/* Opens .metamori/session/lock for a probe; -1 if there is none. */
static int open_lock(mtm_store *s, int flags)
{
	return openat(s->dirfd, SESSION_SUBDIR "/lock", flags | O_CLOEXEC | O_NOFOLLOW);
}

int session_alive(mtm_store *s)
{
	if (s->session)
		return 1;
	int fd = open_lock(s, O_RDONLY);
	if (fd < 0)
		return 0;
	int alive = 0;
	if (flock(fd, LOCK_SH | LOCK_NB) == 0)
		flock(fd, LOCK_UN); /* nobody holds it exclusively: stale or none */
	else
		alive = errno == EWOULDBLOCK;
	close(fd);
	return alive;
}

static const pack_ahead *hook_ahead(void *arg) { return prewrite_ahead(arg); }
static int hook_ahead_ref(void *arg, const unsigned char *slot, ahead_rec **rec, int *boff)
{
	return prewrite_ref(arg, slot, rec, boff);
}
static int hook_parent_hash(void *arg, mtm_id parent, int64_t file_id, int64_t b, uint64_t *out)
{
	const mtm_session *ss = arg;
	return parent_hashes_get(ss->bg_ph, parent, file_id, b, out);
}

ckpt_hooks session_ckpt_hooks(mtm_session *ss)
{
	if (!ss)
		return (ckpt_hooks){.pack_fresh = session_alive};
	return (ckpt_hooks){.arg = ss, .ahead = hook_ahead, .ahead_ref = hook_ahead_ref, .parent_hash = hook_parent_hash};
}

int session_refuse_restore(mtm_store *s)
{
	if (!session_alive(s))
		return 0;
	return mtm_set_error(MTM_EBUSY,
	                     "%s: a 'metamori run' session is tracking this tree; restore in place after it ends "
	                     "(or restore --to another directory)", s->root);
}

/* A dead session may have died with the gate closed: its traced processes,
 * if any still run, would wait on it forever. Open it before removing it. */
static void release_stale_ctl(int dirfd)
{
	int fd = openat(dirfd, "ctl", O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
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
	int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return mtm_set_errno(errno, "%s", what);
	DIR *d = fdopendir(dfd);
	if (!d) {
		int e = errno;
		close(dfd);
		return mtm_set_errno(e, "%s", what);
	}
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, "lock"))
			continue;
		if (unlinkat(dirfd, de->d_name, 0) && errno != ENOENT) {
			rc = mtm_set_errno(errno, "%s/%s", what, de->d_name);
			break;
		}
	}
	closedir(d);
	return rc;
}

static int make_ctl(mtm_session *ss)
{
	int fd = openat(ss->dirfd, "ctl", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return mtm_set_errno(errno, "%s/ctl", ss->dir);
	size_t len = 4096;
	if (ftruncate(fd, (off_t)len)) {
		int e = errno;
		close(fd);
		return mtm_set_errno(e, "%s/ctl", ss->dir);
	}
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	int e = errno;
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

/* Unix socket paths are short (108 bytes): a long root is reached through
 * the session directory's fd instead. */
int session_sock_addr(int dirfd, const char *dir, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	int n = snprintf(sa->sun_path, sizeof sa->sun_path, "%s/sock", dir);
	if (n > 0 && (size_t)n < sizeof sa->sun_path)
		return 0;
	n = snprintf(sa->sun_path, sizeof sa->sun_path, "/proc/self/fd/%d/sock", dirfd);
	return n > 0 && (size_t)n < sizeof sa->sun_path ? 0 : ENAMETOOLONG;
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
	((mtm_session *)arg)->wal_frames = frames;
	return SQLITE_OK;
}

/* Idle: the block rows of the session's checkpoints go from block_log into
 * block (the random B-tree writes the checkpoints did not make). Best
 * effort: rows left in the log are read from there, and the next writer to
 * take the lock merges them. */
static void settle_log(mtm_session *ss)
{
	mtm_store *s = ss->s;
	int64_t rows = s->log_rows, t0 = now_ns();
	int rc = store_lock(s);
	if (!rc) {
		rc = index_settle(s);
		store_unlock(s);
	}
	if (ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: block_log merged (%lld rows): %.2f ms%s%s", (long long)rows,
		        (double)(now_ns() - t0) / 1e6, rc ? ", failed: " : "", rc ? mtm_last_error() : "");
}

void session_wal_maintain(mtm_session *ss, int idle)
{
	if (idle && ss->s->log_rows > 0)
		settle_log(ss);
	if (ss->wal_frames <= 0 || (!idle && ss->wal_frames < SESSION_WAL_MAX_FRAMES))
		return;
	int log = 0, done = 0;
	/* PASSIVE: a reader's snapshot only stops it early; nothing is lost
	 * either way, the WAL's commits are already durable */
	int rc = sqlite3_wal_checkpoint_v2(ss->s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
	if (ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: index WAL checkpoint (%s): %d of %d frames, rc %d",
		        idle ? "idle" : "full", done, log, rc);
	if (rc == SQLITE_OK && done == log)
		ss->wal_frames = 0; /* else a reader held it back: tried again when idle */
}

int session_start(mtm_store *s, const char *const *excludes, size_t n_excludes, mtm_session **out)
{
	*out = NULL;
	mtm_session *ss = calloc(1, sizeof *ss);
	if (!ss)
		return mtm_set_error(ENOMEM, "session");
	ss->s = s;
	ss->dirfd = ss->lockfd = ss->listenfd = -1;
	ss->logs = (vec)VEC_INIT(log_slot);
	ss->sticky = (vec)VEC_INIT(sticky_whole);
	ss->sticky_scan = (vec)VEC_INIT(sticky_scanner);
	ss->code_seen = (vec)VEC_INIT(code_verdict);
	ss->excludes = excludes;
	ss->debug = secure_getenv("METAMORI_DEBUG_SESSION") != NULL;
	ss->n_excludes = n_excludes;
	int rc = 0;
	if (asprintf(&ss->dir, "%s/.metamori/" SESSION_SUBDIR, s->root) < 0) {
		ss->dir = NULL;
		rc = mtm_set_error(ENOMEM, "session");
		goto fail;
	}
	if (mkdirat(s->dirfd, SESSION_SUBDIR, 0700) && errno != EEXIST) {
		rc = mtm_set_errno(errno, "%s", ss->dir);
		goto fail;
	}
	ss->dirfd = openat(s->dirfd, SESSION_SUBDIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ss->dirfd < 0) {
		rc = mtm_set_errno(errno, "%s", ss->dir);
		goto fail;
	}
	ss->lockfd = openat(ss->dirfd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (ss->lockfd < 0) {
		rc = mtm_set_errno(errno, "%s/lock", ss->dir);
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
	change_set_free(&ss->bg_cs);
	prewrite_free(ss); /* first: its thread may be writing from the pre-copy's slots */
	pathmap_free(&ss->bg_pre, precopy_free);
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

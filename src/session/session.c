/*
 * session.c — the session's files: ROOT/.metamori/session/{lock,ctl,sock}.
 *
 * Liveness is a flock: the session holds LOCK_EX on "lock" for its whole
 * life, and the kernel drops it when the session dies, however it dies. So
 * a dead session's leftovers (ctl, sock, logs) are recognised as stale by
 * the next `metamori run`, which removes them, and ignored by everyone else:
 * a plain checkpoint then scans, as if no session had ever run.
 *
 * This file: whether a session is alive, its socket's address, its idle
 * work on the index. Starting and stopping one is start.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "io/io.h"
#include "session/session.h"
#include "store/index.h"
#include "util/error.h"
#include "util/log.h"
#include "util/human.h"

#define SESSION_SUBDIR "session" /* under .metamori: MTM_SESSION_DIR */

/* Opens .metamori/session/lock for a probe; -1 if there is none. */
static int open_lock(mtm_store *s, int flags)
{
	int fd;
	return io_openat(s->dirfd, SESSION_SUBDIR "/lock", flags | O_NOFOLLOW, 0, &fd) ? -1 : fd;
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

int session_refuse_restore(mtm_store *s)
{
	if (!session_alive(s))
		return 0;
	return mtm_set_error(MTM_EBUSY,
	                     "%s: a 'metamori run' session is tracking this tree; restore in place after it ends "
	                     "(or restore --to another directory)", s->root);
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

/* The stat cache rows the pre-copy's passes kept (parent_hashes.sc)
 * dropped: here, not in precopy.c, so that this file, which precopy.c
 * builds on, does not call back into it. */
static void parent_sc_forget(parent_hashes *ph)
{
	if (!ph)
		return;
	pathmap_free(&ph->sc, free);
	memset(&ph->sc, 0, sizeof ph->sc);
}

int session_sc_write(mtm_session *ss)
{
	sqlite3_stmt *put = NULL, *del = NULL;
	int rc = 0;
	for (size_t i = 0; i < ss->sc_kept.cap && !rc; i++) {
		const pathmap_slot *sl = &ss->sc_kept.slots[i];
		const sc_row *row = sl->val;
		if (sl->key)
			rc = row->ver ? statcache_put_row(ss->s, &put, sl->key, row) : statcache_del(ss->s, &del, sl->key);
	}
	sqlite3_finalize(put);
	sqlite3_finalize(del);
	ss->sc_in_tx = !rc;
	parent_sc_forget(ss->bg_ph); /* (what the passes read is older now) */
	return rc;
}

/* The kept stat cache rows and the block_log and entry_log merge, one
 * transaction. */
static int settle_kept(mtm_session *ss)
{
	mtm_store *s = ss->s;
	int rc = db_exec(s, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	if (!(rc = session_sc_write(ss)) && !(rc = index_merge_log(s)))
		rc = db_exec(s, "COMMIT");
	if (rc) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		ss->sc_in_tx = 0;
		return rc;
	}
	s->log_rows = s->entry_log_rows = 0;
	pathmap_free(&ss->sc_kept, free);
	memset(&ss->sc_kept, 0, sizeof ss->sc_kept);
	ss->sc_in_tx = 0;
	return 0;
}

/* Idle: the block and entry rows of the session's checkpoints go from
 * block_log and entry_log into block and entry (the random B-tree writes
 * the checkpoints did not make), and the stat cache rows its checkpoints
 * kept (sc_kept) go into statcache. Best effort: rows left in the logs are
 * read from there, and the next session, prune or du merges them; stat
 * cache rows not written leave older rows, which vouch for nothing newer
 * (a scan reads those files again). */
static void settle_log(mtm_session *ss)
{
	mtm_store *s = ss->s;
	int64_t rows = s->log_rows, t0 = now_ns();
	size_t kept = ss->sc_kept.n;
	int rc = store_lock(s);
	if (!rc) {
		rc = kept ? settle_kept(ss) : index_settle(s);
		store_unlock(s);
	}
	if (ss->debug)
		log_msg(MTM_LOG_DEBUG,
		        "session: block_log and entry_log merged (%lld rows), %zu stat cache rows written: %.2f ms%s%s",
		        (long long)rows, kept, (double)(now_ns() - t0) / 1e6, rc ? ", failed: " : "",
		        rc ? mtm_last_error() : "");
}

void session_wal_maintain(mtm_session *ss, int idle)
{
	if (idle && (ss->s->log_rows > 0 || ss->sc_kept.n))
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
	if (rc == SQLITE_OK && done == log) {
		ss->wal_frames = 0; /* else a reader held it back: tried again when idle */
		ss->wal_copied = 1;
	}
}

/* The WAL copied whole, its next commit starts it over, and SQLite then
 * syncs the new header before it writes the frames: a second fsync inside
 * that commit, the next checkpoint's, the one the user waits for (W2 under
 * `run`, checkpoints a second or more apart: every one). A commit that
 * changes nothing, made here while idle, starts the WAL over now. Best
 * effort: without it, the next checkpoint syncs twice, as before. */
void session_wal_restart(mtm_session *ss)
{
	mtm_store *s = ss->s;
	if (!ss->wal_copied || ss->wal_frames > 0 || store_lock(s))
		return;
	ss->wal_copied = 0;
	int rc = db_exec(s, "BEGIN IMMEDIATE");
	if (!rc) {
		/* (a row rewritten as it was leaves its page clean, and a commit
		 * with no page writes nothing: a page is changed and changed back) */
		rc = db_exec(s, "UPDATE meta SET value = value + 1 WHERE key = 'next_id';"
		                "UPDATE meta SET value = value - 1 WHERE key = 'next_id'");
		rc = rc ? rc : db_exec(s, "COMMIT");
		if (rc)
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	}
	store_unlock(s);
	/* the frame it wrote holds no change: nothing to copy back for it */
	ss->wal_frames = 0;
	if (ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: index WAL started over (idle)%s%s", rc ? ": " : "",
		        rc ? mtm_last_error() : "");
}

void session_wal_reserve(mtm_session *ss)
{
	mtm_store *s = ss->s;
	int64_t last = ss->wal_last;
	/* short of room for another commit as large as the last */
	if (ss->wal_end <= 0 || !io_sqlite_wal_short(s->db, ss->wal_end, last + 64))
		return;
	int64_t room = 4 * last < SESSION_WAL_ROOM_MIN ? SESSION_WAL_ROOM_MIN
	               : 4 * last > SESSION_WAL_ROOM_MAX ? SESSION_WAL_ROOM_MAX : 4 * last;
	if (room < last + 64)
		return; /* a commit this large grows the file whatever is done */
	int64_t t0 = now_ns();
	if (store_lock(s))
		return;
	/* the WAL's write lock: no frame is written past its end meanwhile */
	int rc = db_exec(s, "BEGIN IMMEDIATE");
	if (!rc) {
		rc = io_sqlite_wal_reserve(s->db, ss->wal_end + room);
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	}
	store_unlock(s);
	if (ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: index WAL: room for %lld frames made: %.2f ms%s", (long long)room,
		        (double)(now_ns() - t0) / 1e6, rc ? " (failed)" : "");
}

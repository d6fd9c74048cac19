/*
 * lock.c — the writer lock (flock on .metamori/lock, nested within one
 * handle), and when block_log's and entry_log's rows are merged.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>
#include "io/io.h"
#include "store/index.h"
#include "store/store.h"
#include "util/error.h"

int store_lock(mtm_store *s)
{
	if (s->readonly)
		return mtm_set_errno(s->readonly, "%s/.metamori: the store cannot be written", s->root);
	if (s->locked) { /* nested: an in-place restore saves the tree first */
		s->locked++;
		return 0;
	}
	if (s->lockfd < 0) {
		int rc = io_openat(s->dirfd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW, 0600, &s->lockfd);
		if (rc)
			return mtm_set_errno(rc, "%s/.metamori/lock", s->root);
	}
	if (flock(s->lockfd, LOCK_EX | LOCK_NB)) {
		if (errno == EWOULDBLOCK)
			return mtm_set_error(MTM_EBUSY, "%s: another metamori command is writing this store", s->root);
		return mtm_set_errno(errno, "%s/.metamori/lock", s->root);
	}
	s->locked = 1;
	/* the branch table may have grown under another writer since we opened */
	int rc = store_load_branches(s);
	/* Past this many rows, a session's own checkpoint merges the logs too
	 * (checkpoints with no idle second between them; before its gate
	 * closes). entry_log's bound is lower: a checkpoint's rows land at
	 * random paths of the log, ~50 rows a leaf, so the leaves a commit
	 * dirties grow with it (W2's 200 paths: all of a log of 2,000 rows,
	 * ~73 of one of 4,096), and the merge (~all leaves of `entry`) is
	 * shared by fewer checkpoints as the bound falls: at 2^12, ~50 frames
	 * a commit on average, counting the merge's share. */
	enum { LOG_SETTLE_ROWS = 1 << 18, ENTRY_LOG_SETTLE_ROWS = 1 << 12 };
	if (!rc && s->log_blocks && (s->log_rows > LOG_SETTLE_ROWS || s->entry_log_rows > ENTRY_LOG_SETTLE_ROWS))
		rc = index_settle(s);
	if (rc)
		store_unlock(s);
	return rc;
}

int store_trim_log(mtm_store *s)
{
	assert(s->locked);
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db,
	                            "SELECT (SELECT count(*) FROM (SELECT 1 FROM block_log LIMIT ?1)) > ?1 - 1 OR "
	                            "(SELECT count(*) FROM (SELECT 1 FROM entry_log LIMIT ?2)) > ?2 - 1",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_bind_int64(st, 1, STORE_LOG_KEEP_ROWS + 1);
	sqlite3_bind_int64(st, 2, STORE_ENTRY_LOG_KEEP_ROWS + 1);
	rc = sqlite3_step(st);
	int over = rc == SQLITE_ROW && sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return db_error(s, rc, "index");
	return over ? index_settle(s) : 0;
}

int store_settle(mtm_store *s)
{
	if (s->locked)
		return index_settle(s);
	for (int i = 0;; i++) {
		int empty;
		MTM_TRY(index_logs_empty(s, &empty));
		if (empty)
			return 0;
		int rc = store_lock(s);
		if (!rc) {
			rc = index_settle(s);
			store_unlock(s);
			return rc;
		}
		/* a writer holds the lock (a checkpoint may add to the log): try
		 * again once it is done */
		if (rc != MTM_EBUSY || i == 500)
			return rc;
		usleep(10000);
	}
}

void store_unlock(mtm_store *s)
{
	if (s->locked && !--s->locked)
		flock(s->lockfd, LOCK_UN);
}

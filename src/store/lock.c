/*
 * lock.c — the writer lock (flock on .metamori/lock, nested within one
 * handle) and the merge of a session's block_log rows it brings.
 */
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
		return mtm_set_errno(EROFS, "%s/.metamori: the store cannot be written (read-only file system, "
		                            "no write permission or a full disk)", s->root);
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
	/* Past this many rows, a session's own checkpoint merges the log too
	 * (checkpoints with no idle second between them). */
	enum { LOG_SETTLE_ROWS = 1 << 18 };
	if (!rc && (!s->log_blocks || s->log_rows > LOG_SETTLE_ROWS))
		rc = index_settle(s);
	if (rc)
		store_unlock(s);
	return rc;
}

int store_settle(mtm_store *s)
{
	if (s->locked)
		return index_settle(s);
	for (int i = 0;; i++) {
		int empty;
		MTM_TRY(index_log_empty(s, &empty));
		if (empty)
			return 0;
		int rc = store_lock(s); /* merges the log */
		if (!rc) {
			rc = index_settle(s); /* (a session's handle: store_lock may have left it) */
			store_unlock(s);
			return rc;
		}
		/* the writer holding the lock merged the log when it took it */
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

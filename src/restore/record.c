/*
 * record.c — after an in-place restore: the new head (a restore of the
 * whole tree) and the stat cache rows of the files written, taken once the
 * racy window has passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "io/beneath.h"
#include "restore/rctx.h"
#include "store/store.h"
#include "util/error.h"
#include "util/human.h"

/* The stat cache rows of the files written are taken once the racy window
 * has passed since the last change to one (at most RACY_FINE_NS, 50 ms, of
 * waiting, mostly spent in the fsyncs; none where the window is the 2 s of
 * coarse file systems): a row
 * taken sooner is racy (scan.h), and the next restore, scan or session
 * would hash every file this restore wrote, O(tree) after each restore of
 * a program that explores and backs off. The rule is then scan's: measured
 * from the moment each stat is taken. */
static void wait_racy_window(rctx *c, const vec *plan)
{
	struct stat st;
	if (fstat(c->rootfd, &st))
		return;
	int64_t window = racy_window(c->s, &st);
	if (window > RACY_FINE_NS)
		return;
	int any = 0;
	for (size_t i = 0; i < plan->n && !any; i++) {
		const plan_item *p = &VEC_AT(plan, plan_item, i);
		any = p->te->kind == KIND_FILE && p->action != ACT_NONE;
	}
	int64_t left = any ? c->changed_ns + window - now_ns() : 0;
	if (left > 0) {
		nanosleep(&(struct timespec){left / 1000000000, left % 1000000000}, NULL);
		c->racy_wait_ns = left;
	}
}

/* Records the new head (a restore of the whole tree) and the stat cache
 * rows of the files written: a row names the version the file holds,
 * whatever the head is. */
int record_restored(rctx *c, mtm_id k, vec *plan, vec *removed, int whole)
{
	sqlite3_stmt *put = NULL, *del = NULL;
	wait_racy_window(c, plan);
	int rc = db_exec(c->s, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	rc = whole ? meta_set_int(c->s, "head", k) : 0;
	for (size_t i = 0; i < plan->n && !rc; i++) {
		plan_item *p = &VEC_AT(plan, plan_item, i);
		if (p->te->kind != KIND_FILE || p->action == ACT_NONE || !p->te->ver)
			continue; /* (ver 0: a name written as its group's file, reroot_links; hashed by the next scan) */
		int fd;
		struct stat st;
		if ((rc = beneath_open(c->rootfd, p->te->path, O_RDONLY | O_NONBLOCK, &fd))) {
			rc = mtm_set_errno(rc, "%s", p->te->path);
			break;
		}
		int64_t seen = now_ns();
		rc = fstat(fd, &st) ? errno : 0;
		close(fd);
		if (!rc)
			rc = statcache_put(c->s, &put, p->te->path, p->te->ver, &st, seen);
	}
	for (size_t i = 0; i < removed->n && !rc; i++) {
		live_item *li = VEC_AT(removed, live_item *, i);
		if (li->kind == KIND_FILE)
			rc = statcache_del(c->s, &del, li->path);
	}
	sqlite3_finalize(put);
	sqlite3_finalize(del);
	if (!rc)
		rc = db_exec(c->s, "COMMIT");
	if (rc)
		sqlite3_exec(c->s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

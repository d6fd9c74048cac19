/* policy.c — which checkpoints a prune keeps (the rules backup tools use). */
#include <string.h>
#include <time.h>
#include "prune/prune.h"
#include "store/intent.h"
#include "util/error.h"

static int64_t hour_of(int64_t t_ns) { return t_ns / 1000000000 / 3600; }

static int64_t day_of(int64_t t_ns)
{
	time_t t = (time_t)(t_ns / 1000000000);
	struct tm tm;
	localtime_r(&t, &tm); /* a day is a calendar day where the user is */
	return (int64_t)(tm.tm_year + 1900) * 1000 + tm.tm_yday;
}

/* Keeps the newest checkpoint of each of the last `count` buckets. */
static void keep_buckets(const mtm_checkpoint_info *list, size_t n, char *keep, uint32_t count, int64_t (*bucket)(int64_t))
{
	int64_t last = 0;
	uint32_t seen = 0;
	for (size_t i = n; i-- > 0 && seen < count;) {
		int64_t b = bucket(list[i].time_ns);
		if (seen == 0 || b != last) {
			keep[i] = 1;
			last = b;
			seen++;
		}
	}
}

int prune_select(mtm_store *s, const mtm_prune_opts *o, const mtm_checkpoint_info *list, size_t n, char *keep)
{
	memset(keep, 0, n);
	if (!o->keep_last && !o->keep_hourly && !o->keep_daily && !o->keep_every_ns && !o->n_keep)
		return mtm_set_error(MTM_EINVAL, "prune: no policy given (use --keep-last N, --keep-hourly N, "
		                                 "--keep-daily N, --keep-every DURATION or --keep ID)");
	for (size_t i = n; i-- > 0 && n - i <= o->keep_last;)
		keep[i] = 1;
	keep_buckets(list, n, keep, o->keep_hourly, hour_of);
	keep_buckets(list, n, keep, o->keep_daily, day_of);
	if (o->keep_every_ns > 0) {
		int64_t last = 0;
		for (size_t i = n; i-- > 0;) {
			int64_t b = list[i].time_ns / o->keep_every_ns;
			if (i == n - 1 || b != last)
				keep[i] = 1;
			last = b;
		}
	}
	for (size_t k = 0; k < o->n_keep; k++) {
		size_t i;
		for (i = 0; i < n && list[i].id != o->keep[k]; i++)
			;
		if (i == n)
			return mtm_set_error(MTM_ENOCKPT, "checkpoint %lld: no such checkpoint", (long long)o->keep[k]);
		keep[i] = 1;
	}
	/* always: the head (the tree's parent for the next checkpoint), tags,
	 * and both ends of an interrupted restore (what --continue makes and
	 * what --abort puts back) */
	mtm_id head;
	MTM_TRY(mtm_head(s, &head));
	intent in;
	int rc = intent_read(s, &in);
	if (rc == MTM_ECORRUPT)
		return mtm_set_error(rc, "prune: %s", mtm_last_error()); /* never drop what it might name */
	if (rc)
		return rc;
	sqlite3_stmt *st;
	rc = sqlite3_prepare_v2(s->db, "SELECT ckpt FROM tag", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		intent_free(&in);
		return db_error(s, rc, "index");
	}
	for (size_t i = 0; i < n; i++)
		if (list[i].id == head || (in.target && (list[i].id == in.target || list[i].id == in.from)))
			keep[i] = 1;
	intent_free(&in);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		mtm_id t = sqlite3_column_int64(st, 0);
		for (size_t i = 0; i < n; i++)
			if (list[i].id == t)
				keep[i] = 1;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

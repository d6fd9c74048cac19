/* lineage.c — see lineage.h. */
#include <assert.h>
#include <stdlib.h>
#include <errno.h>
#include "store/lineage.h"
#include "util/error.h"

int checkpoint_branch(mtm_store *s, mtm_id k, int64_t *out)
{
	/* (a cached statement: every checkpoint asks twice, for its
	 * parent's lineage and for its branch) */
	static const char sql[] = "SELECT branch FROM checkpoint WHERE id=?";
	sqlite3_stmt *st;
	MTM_TRY(db_cached(s, sql, sql, &st));
	sqlite3_bind_int64(st, 1, k);
	int rc = sqlite3_step(st);
	int64_t branch = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return mtm_set_error(MTM_ENOCKPT, "checkpoint %lld: no such checkpoint", (long long)k);
	if (rc != SQLITE_ROW)
		return db_error(s, rc, "index");
	*out = branch;
	return 0;
}

int lineage_of(mtm_store *s, mtm_id k, lineage *out)
{
	out->v = NULL;
	out->n = 0;
	if (k == 0)
		return 0;
	if (k < 0)
		return mtm_set_error(MTM_ENOCKPT, "checkpoint %lld: no such checkpoint", (long long)k);
	int64_t b;
	MTM_TRY(checkpoint_branch(s, k, &b));
	int64_t max = k;
	size_t cap = 0;
	while (b > 0) {
		if (b >= s->n_branches) {
			lineage_free(out);
			return mtm_set_error(MTM_ECORRUPT, "index: checkpoint %lld names unknown branch %lld", (long long)k,
			                     (long long)b);
		}
		if (out->n == cap) {
			cap = cap ? cap * 2 : 8;
			lin_step *v = realloc(out->v, cap * sizeof *v);
			if (!v) {
				lineage_free(out);
				return mtm_set_error(ENOMEM, "lineage");
			}
			out->v = v;
		}
		out->v[out->n].branch = b;
		out->v[out->n].max = max;
		out->n++;
		max = s->branches[b].fork;
		assert(s->branches[b].parent < b);
		b = s->branches[b].parent; /* strictly decreasing: checked at load */
	}
	return 0;
}

void lineage_free(lineage *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

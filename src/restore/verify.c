/*
 * verify.c — before an in-place restore touches anything: every read the
 * patches will make started at once (the reads of a cold disk queued
 * together), then every chunk the restore needs read and checked, so that
 * a damaged store fails the restore with the tree as it was. The blocks of
 * patched files are kept (c->bc) for the apply pass.
 */
#include <errno.h>
#include <stdlib.h>
#include "restore/rctx.h"
#include "util/error.h"

/* Starts every read the patches of the plan will make (filemap_gather). */
int gather_reads(rctx *c, const vec *plan)
{
	filemap_job *jobs = malloc((plan->n ? plan->n : 1) * sizeof *jobs);
	if (!jobs)
		return mtm_set_error(ENOMEM, "restore");
	size_t n = 0;
	for (size_t i = 0; i < plan->n; i++) {
		const plan_item *p = &VEC_AT(plan, plan_item, i);
		if (p->action == ACT_PATCH)
			jobs[n++] = (filemap_job){&p->map, p->te->size, &p->runs};
	}
	filemap_gather(&c->pr, c->bc, jobs, n);
	free(jobs);
	return 0;
}

int verify_plan(rctx *c, const vec *plan, const vec *removed, int *work)
{
	*work = removed->n > 0;
	for (size_t i = 0; i < plan->n; i++) {
		const plan_item *p = &VEC_AT(plan, plan_item, i);
		if (p->action != ACT_NONE)
			*work = 1;
		if (p->te->kind != KIND_FILE || p->action == ACT_NONE || p->action == ACT_META)
			continue;
		int rc = filemap_write(&c->pr, p->action == ACT_PATCH ? c->bc : NULL, -1, &p->map, p->te->size,
		                       p->action == ACT_PATCH ? &p->runs : NULL, 0, 1, NULL);
		if (rc)
			return mtm_set_error(rc, "%s: cannot restore, the tree was not changed: %s", p->te->path, mtm_last_error());
	}
	return 0;
}

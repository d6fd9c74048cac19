/* changes.c — status and diff output in its three forms (see changes.h). */
#include <stdio.h>
#include "cli/changes.h"
#include "cli/quote.h"
#include "cli/cli.h"

void changes_begin(changes_out *o, int mode, mtm_id from, mtm_id to)
{
	o->mode = mode;
	o->n = 0;
	if (mode != CHANGES_JSON)
		return;
	json_init(&o->j, stdout);
	json_obj(&o->j);
	json_key(&o->j, "from");
	if (from)
		json_int(&o->j, from);
	else
		json_null(&o->j);
	json_key(&o->j, "to");
	if (to != MTM_LIVE)
		json_int(&o->j, to);
	else
		json_null(&o->j);
	json_key(&o->j, "changes");
	json_arr(&o->j);
}

int changes_put(void *arg, const mtm_change *c)
{
	changes_out *o = arg;
	o->n++;
	if (o->mode == CHANGES_NUL) {
		printf("%c %s", c->kind, c->path);
		putchar('\0');
	} else if (o->mode == CHANGES_JSON) {
		char kind[2] = {c->kind, 0};
		json_obj(&o->j);
		json_kstr(&o->j, "kind", kind);
		json_kstr(&o->j, "path", c->path);
		json_kuint(&o->j, "bytes", c->bytes);
		json_obj_end(&o->j);
	} else {
		printf("%c ", c->kind);
		quote_put(stdout, c->path);
		if (c->kind == 'M' && c->bytes) {
			char b[32];
			printf(" (%s)", human_size(b, sizeof b, c->bytes));
		}
		putchar('\n');
	}
	return 0;
}

void changes_discard(changes_out *o)
{
	if (o->mode == CHANGES_JSON)
		json_discard(&o->j);
}

void changes_end(changes_out *o)
{
	if (o->mode == CHANGES_JSON) {
		json_arr_end(&o->j);
		json_obj_end(&o->j);
		json_done(&o->j);
	}
}

/* report.c — shared JSON objects (see report.h). */
#include "cli/report.h"

void report_checkpoint(json *j, const mtm_checkpoint_info *c, int head)
{
	json_obj(j);
	json_kint(j, "id", c->id);
	json_kint(j, "parent", c->parent);
	json_kint(j, "time_ns", c->time_ns);
	json_kstr(j, "message", c->message ? c->message : "");
	if (head >= 0)
		json_kbool(j, "head", head);
	json_kuint(j, "files_added", c->files_added);
	json_kuint(j, "files_changed", c->files_changed);
	json_kuint(j, "files_removed", c->files_removed);
	json_kuint(j, "bytes_changed", c->bytes_changed);
	json_kuint(j, "bytes_stored", c->bytes_stored);
	json_kuint(j, "entries", c->entries);
	json_kuint(j, "tree_bytes", c->tree_bytes);
	if (c->tracked < 0) { /* (not kept by the Metamori that made it) */
		json_key(j, "tracked");
		json_null(j);
		json_key(j, "pause_ns");
		json_null(j);
	} else {
		json_kbool(j, "tracked", c->tracked);
		json_kuint(j, "pause_ns", c->pause_ns);
	}
	json_kuint(j, "regions", c->regions);
	json_kuint(j, "region_bytes", c->region_bytes);
	json_kuint(j, "region_bytes_changed", c->region_bytes_changed);
	json_obj_end(j);
}

/* report.h — JSON objects more than one command writes, so that one schema
 * holds everywhere (log --json and checkpoint --json print the same
 * checkpoint object). */
#ifndef MTM_CLI_REPORT_H
#define MTM_CLI_REPORT_H
#include "cli/json.h"
#include "metamori.h"

/* {"id", "parent", "time_ns", "message", "head", "files_added", ...}; head < 0: leave "head" out */
void report_checkpoint(json *j, const mtm_checkpoint_info *c, int head);
#endif

/* changes.h — the list of changes that status and diff print: one line per
 * path for people ("M name (4.0 KiB)", the name quoted when odd), NUL-ended
 * records for -z ("M name\0", the name as it is), or one JSON document:
 * {"from": ID|null, "to": ID|null, "changes": [{"kind", "path", "bytes"}]}
 * (null "to" is the live tree; "bytes": see mtm_change, 0 where it does not apply). */
#ifndef MTM_CLI_CHANGES_H
#define MTM_CLI_CHANGES_H
#include <stdint.h>
#include "cli/json.h"
#include "metamori.h"

enum { CHANGES_TEXT, CHANGES_NUL, CHANGES_JSON };

typedef struct {
	int mode;
	uint64_t n;
	json j;
} changes_out;

void changes_begin(changes_out *o, int mode, mtm_id from, mtm_id to);
/* An mtm_change_fn. */
int changes_put(void *arg, const mtm_change *c);
void changes_end(changes_out *o);
/* After a failure: the JSON document is dropped unprinted (text and -z
 * records already printed stay: they are whole lines). */
void changes_discard(changes_out *o);
#endif

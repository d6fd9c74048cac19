/*
 * intent.h — the restore intent (.metamori/intent, FORMAT.md section 9):
 * the whole request of an in-place restore that may be unfinished, written
 * and fsynced before the restore changes the tree, removed when it ends.
 * The store only keeps the file; finishing or abandoning the restore it
 * describes is the restore layer's (restore.h), on the user's request.
 */
#ifndef MTM_STORE_INTENT_H
#define MTM_STORE_INTENT_H
#include "store/store.h"
#include "util/strvec.h"

typedef struct intent {
	mtm_id target;     /* the checkpoint the restore makes (0: no intent) */
	mtm_id from;       /* the head when it started: what --abort puts back (0: unknown) */
	strvec excludes;   /* the request's extra ignore patterns */
	strvec paths;      /* the request's paths (none: the whole tree) */
	int legacy;        /* read from the format before version 3 (the id alone) */
} intent;

int intent_write(mtm_store *s, const intent *in);
/* in->target = 0 if there is none. MTM_ECORRUPT if it cannot be parsed. */
int intent_read(mtm_store *s, intent *in);
void intent_free(intent *in);
int intent_clear(mtm_store *s);
#endif

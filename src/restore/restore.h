/*
 * restore.h — making a tree exactly what it was at a checkpoint.
 */
#ifndef MTM_RESTORE_H
#define MTM_RESTORE_H
#include "metamori.h"
/* Completes an interrupted in-place restore to id; the caller holds the
 * writer lock (store_lock calls this when it finds an intent). */
int restore_finish_intent(mtm_store *s, mtm_id id);
#endif

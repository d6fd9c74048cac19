/*
 * restore.h — making a tree exactly what it was at a checkpoint. The public
 * side is mtm_restore, mtm_restore_pending, mtm_restore_continue and
 * mtm_restore_abort (metamori.h); an interrupted restore is finished or
 * abandoned only on request, never by opening the store or taking its lock.
 */
#ifndef MTM_RESTORE_H
#define MTM_RESTORE_H
#include "metamori.h"
#endif

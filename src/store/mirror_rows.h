/*
 * mirror_rows.h — an incremental push's index part (store/mirror.c): the
 * rows the store added since the mirror's last push, inserted into the
 * mirror's own index.db in one transaction.
 */
#ifndef MTM_MIRROR_ROWS_H
#define MTM_MIRROR_ROWS_H

#include "store/store.h"

typedef struct {
	sqlite3 *db;   /* the mirror's index.db; the store's attached as "src" */
	uint64_t rows; /* history rows inserted */
} mirror_rows;

/* Opens mdir/index.db (mfd: mdir) and, when the store only added rows to
 * what the mirror holds, begins a transaction that inserts them: *whole is
 * then 0 and the caller copies the packs and calls mirror_rows_commit.
 * Otherwise *whole is MTM_PUSH_WHOLE_NEW (no index yet), _REWRITTEN (prune
 * or gc changed history the mirror holds) or _SCHEMA (another layout), the
 * mirror's index is left as it was (its WAL folded into it) and m->db is
 * closed. */
int mirror_rows_begin(mtm_store *s, int mfd, const char *mdir, mirror_rows *m, int *whole);
/* Commits the transaction (the packs it names are in place) and folds the
 * WAL into index.db; closes m->db either way. */
int mirror_rows_commit(mirror_rows *m, const char *mdir);
void mirror_rows_abort(mirror_rows *m);

#endif

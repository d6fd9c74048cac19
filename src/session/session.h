/*
 * session.h — `metamori run`: the session that owns the store while a traced
 * program runs, holds the barrier, and turns the interposer's logs into
 * tracked checkpoints (protocol in track/protocol.h).
 */
#ifndef MTM_SESSION_H
#define MTM_SESSION_H
#include "metamori.h"
#include "store/store.h"
#include "util/pathmap.h"
#include "util/strvec.h"

#define MTM_ENOSESSION (-30999) /* internal: no session is running for this store */

/* What the logs say changed since the last checkpoint. */
typedef struct file_change {
	vec ranges;        /* of {int64_t off, len} byte ranges written */
	int64_t trunc_min; /* smallest size truncated to, or -1 */
	int whole;         /* compare the whole file */
} file_change;

typedef struct change_set {
	pathmap files;     /* path -> file_change* */
	pathmap meta;      /* path -> non-NULL */
	pathmap ns;        /* path -> non-NULL */
	int scan;          /* only a full scan is safe */
} change_set;
void change_set_free(change_set *cs);

typedef struct mtm_session mtm_session;
/* Creates ROOT/.metamori/session (control file, socket). MTM_EBUSY if a
 * live session already has it. */
int session_start(mtm_store *s, mtm_session **out);
void session_stop(mtm_session *ss);
/* The barrier: close holds every traced modifying call and reads and
 * resets the logs into cs; open releases. */
int barrier_close(mtm_session *ss, change_set *cs);
void barrier_open(mtm_session *ss);
/* Listening socket fd (for the run loop). */
int session_listen_fd(const mtm_session *ss);
/* Serves one client connection: reads the request, checkpoints, replies. */
void session_serve(mtm_session *ss, int client, const mtm_checkpoint_opts *defaults);
/* A tracked (or, when needed, scanned) consistent checkpoint. */
int session_tracked_checkpoint(mtm_session *ss, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out);
/* mtm_checkpoint's entry: in the session process, a tracked checkpoint;
 * elsewhere, a request to the running session; MTM_ENOSESSION if none. */
int session_checkpoint(mtm_store *s, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out);
mtm_store *session_store(mtm_session *ss);
#endif

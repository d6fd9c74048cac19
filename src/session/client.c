/*
 * client.c — mtm_checkpoint's way to a running `metamori run` session, and
 * the session's side of the conversation.
 *
 * Wire format (unix stream socket ROOT/.metamori/session/sock, same user
 * only: the directory is 0700 and the peer's uid is checked):
 *   request:  struct wire_req, then msg_len bytes of message, then for each
 *             exclude a uint32_t length and its bytes
 *   reply:    struct wire_reply, then err_len bytes of error detail, then
 *             msg_len bytes of message
 * One request per connection. Without a live session (no lock holder), the
 * caller scans, as it always did.
 * A join (struct wire_join, the same size as wire_req) is answered with a
 * wire_reply and the connection stays open while the joined program runs:
 * the session counts it as a member until it closes (join.c).
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include "io/io.h"
#include "session/session.h"
#include "util/error.h"
#include "util/log.h"
#include "util/human.h"

#define REQ_MAGIC 0x514d544du   /* "MTMQ" */
#define JOIN_MAGIC 0x4a4d544du  /* "MTMJ": a `metamori run` joining the session (join.c) */
#define REPLY_MAGIC 0x414d544du /* "MTMA" */
#define WIRE_VERSION 1
#define MAX_TEXT (1u << 20)

struct wire_req {
	uint32_t magic, version, msg_len, n_excludes;
};

struct wire_join {
	uint32_t magic, version, flags, pid;
};
_Static_assert(sizeof(struct wire_join) == sizeof(struct wire_req), "a join is read as a request first");

struct wire_reply {
	uint32_t magic, version;
	int32_t rc, tracked;
	uint32_t err_len, msg_len;
	int64_t id, parent, time_ns;
	uint64_t files_added, files_changed, files_removed, bytes_changed, bytes_stored, entries, tree_bytes, pause_ns;
};
/* Sent as raw bytes between two metamori processes: no padding may creep in. */
_Static_assert(sizeof(struct wire_req) == 16, "wire_req layout");
_Static_assert(sizeof(struct wire_reply) == 24 + 3 * 8 + 8 * 8 && offsetof(struct wire_reply, id) == 24,
               "wire_reply layout");

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, void *p, size_t n)
{
	char *c = p;
	while (n) {
		ssize_t r = recv(fd, c, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (r == 0)
			return EPIPE;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

static char *read_text(int fd, uint32_t len, int *err)
{
	char *t = malloc((size_t)len + 1);
	if (!t) {
		*err = ENOMEM;
		return NULL;
	}
	if ((*err = read_all(fd, t, len))) {
		free(t);
		return NULL;
	}
	t[len] = 0;
	return t;
}

/* --- the session's side --- */

static void reply(int fd, int rc, const mtm_checkpoint_info *ci)
{
	struct wire_reply w = {.magic = REPLY_MAGIC, .version = WIRE_VERSION, .rc = rc};
	const char *err = rc ? mtm_last_error() : "";
	const char *msg = !rc && ci->message ? ci->message : "";
	w.err_len = (uint32_t)strlen(err);
	w.msg_len = (uint32_t)strlen(msg);
	if (!rc) {
		w.tracked = ci->tracked;
		w.id = ci->id;
		w.parent = ci->parent;
		w.time_ns = ci->time_ns;
		w.files_added = ci->files_added;
		w.files_changed = ci->files_changed;
		w.files_removed = ci->files_removed;
		w.bytes_changed = ci->bytes_changed;
		w.bytes_stored = ci->bytes_stored;
		w.entries = ci->entries;
		w.tree_bytes = ci->tree_bytes;
		w.pause_ns = ci->pause_ns;
	}
	if (!write_all(fd, &w, sizeof w) && !write_all(fd, err, w.err_len))
		write_all(fd, msg, w.msg_len);
}

/* The client is answered as soon as the checkpoint is durable (or failed),
 * before the session's own cleanup (session_tracked_checkpoint_answer);
 * the session's line about it still comes first, as it always did (a
 * caller may read the session's output once answered). */
struct answer_to {
	mtm_session *ss;
	int fd;
	int64_t t0, t1; /* for METAMORI_DEBUG_SESSION: the checkpoint began, the reply was sent */
	int64_t c0, c1; /* and the session thread's CPU time then (load-independent, for A/B runs) */
};

static int64_t thread_cpu_ns(void)
{
	struct timespec ts;
	return clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) ? 0 : (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void answer(void *arg, int rc, const mtm_checkpoint_info *ci)
{
	struct answer_to *a = arg;
	if (a->ss->verbose) {
		char line[512];
		if (rc)
			log_msg(MTM_LOG_ERROR, "%s", mtm_last_error());
		else
			log_msg(MTM_LOG_INFO, "%s", session_describe(line, sizeof line, ci, a->ss->scan_why));
	}
	mtm_checkpoint_info none = {0};
	reply(a->fd, rc, ci ? ci : &none);
	a->t1 = now_ns();
	a->c1 = thread_cpu_ns();
}

int session_serve(mtm_session *ss, int fd)
{
	/* a client that connects and says nothing must not stall the session */
	int64_t tq = now_ns();
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	struct ucred cred;
	socklen_t cl = sizeof cred;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) || (cred.uid != getuid() && cred.uid != 0))
		return 0;
	struct wire_req q;
	int err = 0;
	if (read_all(fd, &q, sizeof q))
		return 0;
	if (q.magic == JOIN_MAGIC && q.version == WIRE_VERSION) {
		struct wire_join j;
		memcpy(&j, &q, sizeof j);
		if (j.flags & SESSION_JOIN_STATIC)
			ss->always_scan = 1; /* as for the session's own static program */
		log_msg(MTM_LOG_DEBUG, "session: pid %u joined", j.pid);
		mtm_checkpoint_info none = {0};
		reply(fd, 0, &none);
		return 1;
	}
	if (q.magic != REQ_MAGIC || q.version != WIRE_VERSION || q.msg_len > MAX_TEXT || q.n_excludes > 4096)
		return 0;
	char *msg = read_text(fd, q.msg_len, &err);
	char **ex = calloc(q.n_excludes + 1, sizeof *ex);
	size_t nex = 0;
	if (!msg || !ex)
		goto done;
	for (; nex < q.n_excludes; nex++) {
		uint32_t len;
		if (read_all(fd, &len, sizeof len) || len > MAX_TEXT || !(ex[nex] = read_text(fd, len, &err)))
			goto done;
	}
	mtm_checkpoint_opts o = MTM_CHECKPOINT_OPTS_INIT;
	o.message = *msg ? msg : NULL;
	o.excludes = (const char *const *)ex;
	o.n_excludes = nex;
	mtm_checkpoint_info ci = {0};
	struct answer_to a = {ss, fd, now_ns(), 0, thread_cpu_ns(), 0};
	session_tracked_checkpoint_answer(ss, &o, &ci, answer, &a);
	if (ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: a request: read in %.2f ms, answered %.2f ms later (its thread's CPU %.2f ms)",
		        (double)(a.t0 - tq) / 1e6, (double)(a.t1 - a.t0) / 1e6, (double)(a.c1 - a.c0) / 1e6);
	free(ci.message);
done:
	for (size_t i = 0; i < nex; i++)
		free(ex[i]);
	free(ex);
	free(msg);
	return 0;
}

int session_join_request(int fd, unsigned flags)
{
	struct wire_join j = {JOIN_MAGIC, WIRE_VERSION, flags, (uint32_t)getpid()};
	struct wire_reply w;
	int err = write_all(fd, &j, sizeof j);
	if (!err)
		err = read_all(fd, &w, sizeof w);
	if (err || w.magic != REPLY_MAGIC || w.version != WIRE_VERSION || w.rc)
		return MTM_ENOSESSION; /* it ended meanwhile (or is of another version): start one */
	return 0;
}

/* --- the client's side --- */

static int ask(mtm_store *s, int fd, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out)
{
	const char *msg = opts && opts->message ? opts->message : "";
	size_t nex = opts ? opts->n_excludes : 0;
	struct wire_req q = {REQ_MAGIC, WIRE_VERSION, (uint32_t)strlen(msg), (uint32_t)nex};
	int err = write_all(fd, &q, sizeof q);
	if (!err)
		err = write_all(fd, msg, q.msg_len);
	for (size_t i = 0; i < nex && !err; i++) {
		uint32_t len = (uint32_t)strlen(opts->excludes[i]);
		if (!(err = write_all(fd, &len, sizeof len)))
			err = write_all(fd, opts->excludes[i], len);
	}
	struct wire_reply w;
	if (!err)
		err = read_all(fd, &w, sizeof w);
	if (err == EPIPE)
		return mtm_set_error(EPIPE, "checkpoint: the 'metamori run' session ended before it replied");
	if (err)
		return mtm_set_errno(err, "checkpoint: talking to the 'metamori run' session");
	if (w.magic != REPLY_MAGIC || w.version != WIRE_VERSION || w.err_len > MAX_TEXT || w.msg_len > MAX_TEXT)
		return mtm_set_error(EPROTO, "checkpoint: the 'metamori run' session sent a reply of an unknown form");
	char *detail = read_text(fd, w.err_len, &err), *m = detail ? read_text(fd, w.msg_len, &err) : NULL;
	if (!m) {
		free(detail);
		return mtm_set_errno(err, "checkpoint: talking to the 'metamori run' session");
	}
	if (w.rc) {
		int rc = *detail ? mtm_set_error(w.rc, "%s", detail) : mtm_set_error(w.rc, "checkpoint: %s", mtm_strerror(w.rc));
		free(detail);
		free(m);
		return rc;
	}
	free(detail);
	if (out) {
		out->id = w.id;
		out->parent = w.parent;
		out->time_ns = w.time_ns;
		out->message = m;
		out->files_added = w.files_added;
		out->files_changed = w.files_changed;
		out->files_removed = w.files_removed;
		out->bytes_changed = w.bytes_changed;
		out->bytes_stored = w.bytes_stored;
		out->entries = w.entries;
		out->tree_bytes = w.tree_bytes;
		out->pause_ns = w.pause_ns;
		out->tracked = w.tracked;
	} else {
		free(m);
	}
	(void)s;
	return 0;
}

int session_connect(mtm_store *s, int *out)
{
	*out = -1;
	if (!session_alive(s))
		return MTM_ENOSESSION;
	char *dir;
	if (asprintf(&dir, "%s/.metamori/session", s->root) < 0)
		return mtm_set_error(ENOMEM, "checkpoint");
	int dfd = -1;
	struct sockaddr_un sa;
	int rc = io_openat(s->dirfd, "session", O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, &dfd);
	if (rc)
		dfd = -1;
	else
		rc = session_sock_addr(dfd, dir, &sa);
	free(dir);
	if (rc) {
		if (dfd >= 0)
			close(dfd);
		return mtm_set_errno(rc, "%s/.metamori/session", s->root);
	}
	/* the session may be starting (lock taken, socket not yet bound) */
	int fd = -1;
	for (int i = 0; i < 200; i++) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			rc = mtm_set_errno(errno, "socket");
			break;
		}
		if (!connect(fd, (struct sockaddr *)&sa, sizeof sa))
			break;
		rc = errno;
		close(fd);
		fd = -1;
		if ((rc != ENOENT && rc != ECONNREFUSED) || !session_alive(s)) {
			rc = session_alive(s) ? mtm_set_errno(rc, "%s/.metamori/session/sock", s->root) : MTM_ENOSESSION;
			break;
		}
		usleep(25000);
		rc = mtm_set_error(MTM_EBUSY, "checkpoint: the 'metamori run' session does not answer");
	}
	close(dfd);
	if (fd < 0)
		return rc;
	*out = fd;
	return 0;
}

int session_checkpoint(mtm_store *s, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out)
{
	if (s->session)
		return session_tracked_checkpoint(s->session, opts, out);
	int fd;
	int rc = session_connect(s, &fd);
	if (rc)
		return rc;
	rc = ask(s, fd, opts, out);
	close(fd);
	/* The session copies the index's WAL into the database when it is idle
	 * (session.h). Left alone, this process would do it on closing the
	 * store, and the caller would wait for it on its way out. */
	s->wal_kept_by_session = 1;
	if (s->db)
		sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
	return rc;
}

int session_checkpoint_at(const char *path, const mtm_checkpoint_opts *opts, mtm_checkpoint_info *out)
{
	if (out)
		memset(out, 0, sizeof *out);
	if (opts && opts->version != MTM_CHECKPOINT_OPTS_VERSION)
		return MTM_ENOSESSION; /* mtm_checkpoint says why */
	mtm_store *s;
	if (store_open_dirs(&s, path))
		return MTM_ENOSESSION; /* mtm_open says why */
	int rc = session_checkpoint(s, opts, out); /* (MTM_ENOSESSION if none is alive) */
	mtm_close(s);
	return rc;
}

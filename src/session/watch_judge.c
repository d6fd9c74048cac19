/*
 * watch_judge.c — the events judged against the logs (watch_prejudge,
 * watch_mark, watch_apply): a write no log explains becomes a file to
 * compare whole, or is carried to the next checkpoint.
 */
#include "session/watch_parts.h"

static int trusted(watcher *w, mtm_session *ss, int32_t pid)
{
	for (int i = 0; i < w->nmemo; i++)
		if (w->memo[i].pid == pid)
			return w->memo[i].trusted;
	int t = session_pid_trusted(ss, pid);
	if (w->nmemo < TRUST_MEMO)
		w->memo[w->nmemo++] = (trust_memo){pid, t};
	return t;
}

/* The same, asked by the pre-copy between barriers: a pid with no log
 * found yet (a process started since the pass listed them) is not
 * remembered as untrusted, so the barrier, which lists the logs again,
 * judges it afresh. */
static int trusted_before_barrier(watcher *w, mtm_session *ss, int32_t pid)
{
	for (int i = 0; i < w->nmemo; i++)
		if (w->memo[i].pid == pid)
			return w->memo[i].trusted;
	return session_pid_traced(ss, pid) ? trusted(w, ss, pid) : 0;
}

/* 1 if path or a strict ancestor of it is in m. */
static int at_or_under(const pathmap *m, const char *path)
{
	if (!m->n)
		return 0;
	if (pathmap_get(m, path))
		return 1;
	char buf[PATH_MAX * 2];
	size_t n = strlen(path);
	if (n >= sizeof buf)
		return 0;
	memcpy(buf, path, n + 1);
	for (char *p = buf + n; p > buf; p--)
		if (*p == '/') {
			*p = 0;
			if (pathmap_get(m, buf))
				return 1;
		}
	return 0;
}

/* The logs name the bytes a traced process wrote through the C library; a
 * writer that is not traced, or that may make system calls of its own (or
 * inotify's, which could be anyone) may have written others. */
static int explained_by(watcher *w, mtm_session *ss, const file_change *fc, const pend *p)
{
	int explained = fc && w->kind == W_FANOTIFY && !p->many;
	for (int j = 0; j < p->npid && explained; j++)
		explained = trusted(w, ss, p->pid[j]);
	return explained;
}

int watch_carried(const watcher *w, const char *path)
{
	return w && pathmap_get(&w->carry, path) != NULL;
}

int watch_compares_whole(watcher *w, mtm_session *ss, const char *path)
{
	if (!w)
		return 0;
	if (pathmap_get(&w->carry, path))
		return 1;
	const pend *p = pathmap_get(&w->pending, path);
	if (!p)
		p = pathmap_get(&w->early, path);
	if (!p || !(p->kinds & (EV_MODIFY | EV_LET_GO)))
		return 0;
	/* judge_map: under inotify no write is explained_by the logs; under
	 * fanotify, none by a writer that is not trusted. (Only a hint: a
	 * writer's trust is never regained within an interval, and one that
	 * turns out trusted after all has its blocks read in the barrier.) */
	if (w->kind == W_INOTIFY || p->many)
		return 1;
	for (int j = 0; j < p->npid; j++)
		if (!trusted_before_barrier(w, ss, p->pid[j]))
			return 1;
	return 0;
}

/* The files carried from the last interval: compared whole now. */
static int apply_carry(watcher *w, change_set *cs)
{
	int rc = 0;
	for (size_t i = 0; i < w->carry.cap && !rc; i++)
		if (w->carry.slots[i].key)
			rc = mark_whole(cs, w->carry.slots[i].key);
	pathmap_free(&w->carry, NULL);
	memset(&w->carry, 0, sizeof w->carry);
	return rc;
}

/* A file let go, and not written as far as the events say (EV_LET_GO
 * alone), by writers all trusted (fanotify): explained by their logs
 * without a record (see EV_LET_GO). 0: judged as a write. */
static int let_go_explained(watcher *w, mtm_session *ss, const pend *p)
{
	int explained = w->kind == W_FANOTIFY && !p->many && p->npid > 0 && (p->kinds & EV_LET_GO) &&
	                !(p->kinds & EV_MODIFY);
	for (int j = 0; j < p->npid && explained; j++)
		explained = trusted(w, ss, p->pid[j]);
	return explained;
}

/* A write explained by the logs (so far): kept with its writers until the
 * barrier has looked at their code changes. p is taken. */
static int keep_explained(watcher *w, change_set *cs, const char *path, pend *p)
{
	pend *q = pathmap_get(&w->explained, path);
	if (!q) {
		if (pathmap_put(&w->explained, path, p)) {
			free(p);
			return ENOMEM;
		}
		return 0;
	}
	pend_merge(q, p);
	free(p);
	return q->many ? mark_whole(cs, path) : 0;
}

/* Judges the events gathered so far against the logs read into cs. Before
 * the barrier (!final), a write the logs do not name yet stays pending (its
 * record may still come), and a write they explain is kept for the
 * barrier's last look (keep_explained); what is decided (a namespace change,
 * metadata, a writer that is not trusted) goes into cs at once: the
 * barrier's pause is left only the events that came after. */
static int judge_map(watcher *w, mtm_session *ss, change_set *cs, int final, pathmap *m)
{
	pathmap keep = {0};
	int rc = 0;
	for (size_t i = 0; i < m->cap; i++) {
		const char *path = m->slots[i].key;
		pend *p = m->slots[i].val;
		if (!path)
			continue;
		/* a namespace change at the path or above: listed and read whole anyway */
		if (rc || at_or_under(&cs->ns, path)) {
			free(p);
			continue;
		}
		if (p->kinds & EV_NS)
			rc = change_set_mark(&cs->ns, path);
		if (!rc && (p->kinds & EV_ATTRIB) && !pathmap_get(&cs->meta, path) && !pathmap_get(&cs->files, path))
			rc = change_set_mark(&cs->meta, path);
		if (!rc && (p->kinds & EV_LET_GO)) {
			if (let_go_explained(w, ss, p)) {
				/* kept for the barrier's look at its writers' code */
				rc = keep_explained(w, cs, path, p);
				continue;
			}
			p->kinds = (uint8_t)((p->kinds & ~EV_LET_GO) | EV_MODIFY);
		}
		file_change *fc = pathmap_get(&cs->files, path);
		if (rc || !(p->kinds & EV_MODIFY) || (fc && fc->whole)) {
			/* compared ahead, before this write perhaps: again next time */
			if (!rc && w->marked && !p->early && (p->kinds & EV_MODIFY) && fc && !explained_by(w, ss, fc, p))
				rc = carry(w, path);
			free(p);
			continue;
		}
		if (!fc && !final) {
			p->kinds = EV_MODIFY;
			if ((rc = pathmap_put(&keep, path, p)))
				free(p);
			continue;
		}
		/* the logs name the bytes a traced process wrote through the C
		 * library; a writer that is not traced, or that may make system
		 * calls of its own (or inotify's, which could be anyone) may have
		 * written others: the whole file is compared */
		if (explained_by(w, ss, fc, p)) {
			rc = keep_explained(w, cs, path, p);
		} else if (w->marked && !p->early) {
			/* written after the checkpoint was asked for, while it compares
			 * ahead: in the next one (the logs' bytes are in this one) */
			rc = carry(w, path);
			free(p);
		} else {
			rc = mark_whole(cs, path);
			free(p);
		}
	}
	pathmap_free(m, NULL);
	*m = keep;
	return rc;
}

/* The events noted before the mark first (w->early: what they say is in
 * this checkpoint), then the others. */
static int judge(watcher *w, mtm_session *ss, change_set *cs, int final)
{
	int rc = w->marked ? 0 : apply_carry(w, cs);
	if (!rc && w->early.n)
		rc = judge_map(w, ss, cs, final, &w->early);
	if (!rc)
		rc = judge_map(w, ss, cs, final, &w->pending);
	if (!rc)
		rc = look_held(w, ss, cs, final);
	return rc;
}

int watch_prejudge(watcher *w, mtm_session *ss, change_set *cs)
{
	watch_drain(w);
	return judge(w, ss, cs, 0) ? mtm_set_error(ENOMEM, "session") : 0;
}

int watch_mark(watcher *w, mtm_session *ss, change_set *cs, pathmap *written)
{
	watch_drain(w);
	/* a held event came before the mark: resolved later it would be taken
	 * for one after it (carried to the next checkpoint) */
	if (w->kind == W_FANOTIFY)
		fan_settle(w);
	if (judge(w, ss, cs, 0))
		return mtm_set_error(ENOMEM, "session");
	/* writes whose records have not come yet: compared ahead too, in case
	 * the barrier finds no record to explain them. They are kept apart
	 * from the events that come after the mark. */
	for (size_t i = 0; i < w->pending.cap; i++) {
		const char *path = w->pending.slots[i].key;
		pend *p = w->pending.slots[i].val;
		if (path)
			p->early = 1;
		if (path && (p->kinds & EV_MODIFY) && !pathmap_get(written, path) && pathmap_put(written, path, (void *)1))
			return mtm_set_error(ENOMEM, "session");
	}
	pathmap_free(&w->early, free); /* (empty: the last barrier judged them) */
	w->early = w->pending;
	memset(&w->pending, 0, sizeof w->pending);
	w->marked = 1;
	return 0;
}

int watch_apply(watcher *w, mtm_session *ss, change_set *cs)
{
	watch_drain(w);
	if (w->kind == W_FANOTIFY)
		fan_settle(w); /* (the events read while the inodes loaded are of this interval) */
	assert(!w->stash_len && !w->held.n);
	/* (from here, until the next drain, what watch_read_on stashes is of
	 * the next interval) */
	if (w->blind)
		change_set_scan(cs, w->blind);
	if (w->lost) {
		if (w->lost == w->lost_why) {
			memcpy(w->lost_told, w->lost_why, sizeof w->lost_told);
			w->lost = w->lost_told;
		}
		change_set_scan(cs, w->lost);
		w->lost = NULL;
	}
	int rc = judge(w, ss, cs, 1);
	/* a writer trusted before the barrier whose code changed since (its
	 * log, read now, says so): what it wrote is compared after all */
	int revoked = 0;
	for (int i = 0; i < w->nmemo; i++)
		if (w->memo[i].trusted && session_pid_code_changed(ss, w->memo[i].pid))
			w->memo[i].trusted = 0, revoked = 1;
	for (size_t i = 0; revoked && i < w->explained.cap && !rc; i++) {
		const char *path = w->explained.slots[i].key;
		const pend *p = w->explained.slots[i].val;
		int ok = 1;
		for (int j = 0; path && j < p->npid && ok; j++)
			ok = trusted(w, ss, p->pid[j]);
		if (path && !ok)
			rc = mark_whole(cs, path);
	}
	pathmap_free(&w->pending, free);
	memset(&w->pending, 0, sizeof w->pending);
	pathmap_free(&w->early, free);
	memset(&w->early, 0, sizeof w->early);
	pathmap_free(&w->explained, free);
	memset(&w->explained, 0, sizeof w->explained);
	w->nmemo = 0; /* a new interval */
	w->marked = 0;
	free(w->inodes); /* this checkpoint's files: loaded again when needed */
	w->inodes = NULL;
	w->n_inodes = 0;
	w->inodes_loaded = 0;
	w->inodes_failed = 0;
	clock_gettime(CLOCK_REALTIME, &w->inodes_since);
	return rc ? mtm_set_error(ENOMEM, "session") : 0;
}

/*
 * watch_drain.c — the queues read (watch_drain): events decoded as they
 * come, held while their directory is being freed, stashed while the
 * inodes load, and settled before a judgement (fan_settle).
 */
#include "session/watch_parts.h"

/* The held events once more (each is held again if its directory is still
 * being freed). */
static void fan_held(watcher *w)
{
	vec old = w->held;
	w->held = (vec)VEC_INIT(held_event);
	for (size_t i = 0; i < old.n; i++) {
		held_event *h = &VEC_AT(&old, held_event, i);
		if (fan_event(w, h->ev, h->len))
			w->lost = "the watcher ran out of memory";
		free(h->ev);
	}
	vec_free(&old);
}

/* The fanotify events of n bytes at buf, in order. 0 or ENOMEM. */
static int fan_batch(watcher *w, const unsigned char *buf, size_t n)
{
	int rc = 0;
	for (size_t off = 0; off + sizeof(struct fanotify_event_metadata) <= n && !rc;) {
		uint32_t elen;
		memcpy(&elen, buf + off, sizeof elen); /* event_len comes first */
		if (elen < sizeof(struct fanotify_event_metadata) || off + elen > n)
			break;
		rc = fan_event(w, buf + off, elen);
		off += elen;
	}
	return rc;
}

/* The events read while the inodes loaded (fan_stash), after the ones read
 * before them: called after every batch read and every pass over the held
 * events. Taken out first: should they make the inodes load again (they
 * do not: a load is once an interval), what is read then comes after
 * them. */
static void fan_unstash(watcher *w)
{
	while (w->stash_len) {
		unsigned char *buf = w->stash;
		size_t n = w->stash_len;
		w->stash = NULL;
		w->stash_len = w->stash_cap = 0;
		if (fan_batch(w, buf, n))
			w->lost = "the watcher ran out of memory";
		free(buf);
	}
}

/* How long the barrier waits, at most, for a directory being freed. Its
 * handle answers ENOMEM while the kernel reuses its inode number for a new
 * one (ext4; the directory itself is gone). Measured here, with two
 * neighbours making and removing directories: 42 of 20,000 removed
 * directories answered ENOMEM, for 0.01-3.5 ms. One look (open_handle's
 * ~0.3 ms) made such a checkpoint scan the whole tree, in a clean-clone
 * make test; a scan of a big tree costs far more than this wait, which
 * only a held event pays. */
#define FREEING_WAIT_NS (50 * 1000000LL)

/* Before the mark and in the barrier: every event read so far judged now,
 * none held nor stashed. A stashed event may be held, and a held one may
 * make the inodes load (and stash), so until neither is left. A held event
 * is looked at again after 0.1, 0.2, 0.4 ... ms (at most 8 ms apart) for up
 * to FREEING_WAIT_NS; one still unresolved then makes this checkpoint scan,
 * and none is kept past it. */
void fan_settle(watcher *w)
{
	clock_gettime(CLOCK_MONOTONIC, &w->settle_at);
	useconds_t nap = 100;
	for (;;) {
		if (w->held.n)
			fan_held(w);
		fan_unstash(w); /* (leaves the stash empty) */
		if (!w->held.n)
			break;
		if (elapsed_ns(&w->settle_at) >= FREEING_WAIT_NS) {
			w->lost = "the watcher could not resolve a directory (being freed for too long)";
			held_drop(&w->held);
			break;
		}
		usleep(nap);
		nap = nap < 8000 ? nap * 2 : nap;
	}
	assert(!w->held.n && !w->stash_len);
	memset(&w->settle_at, 0, sizeof w->settle_at);
}

/* The opens queued (ofd): noted (fan_event), or, lost to an overflow, a
 * sweep owed (opens_lost). */
/* One batch of n bytes of opens (read_queued). */
static int opens_batch(watcher *w, size_t n)
{
	for (size_t off = 0; off + sizeof(struct fanotify_event_metadata) <= n;) {
		struct fanotify_event_metadata m;
		memcpy(&m, w->buf + off, sizeof m);
		if (m.event_len < sizeof m || off + m.event_len > n)
			break;
		if ((m.mask & FAN_Q_OVERFLOW) || w->test_opens_lost)
			w->opens_lost = 1;
		else if ((m.mask & FAN_ONDIR) || m.pid == w->self || opener_fresh(w, m.pid) ||
		         session_pid_traced(w->ss, m.pid))
			; /* (nothing to learn: no path resolved, ~0.2 us an event:
			   * a process reading 20,000 files of the tree, a traced
			   * database opening its own) */
		else if (fan_event(w, w->buf + off, m.event_len))
			w->opens_lost = 1; /* (out of memory: what was not noted is looked for) */
		off += m.event_len;
	}
	return 0;
}

static void fan_read_opens(watcher *w)
{
	if (w->ofd >= 0 && read_queued(w, w->ofd, opens_batch) < 0)
		w->opens_lost = 1;
}

static int drain_main(watcher *w);

int watch_drain(watcher *w)
{
	int rc = drain_main(w);
	if (w->kind == W_FANOTIFY)
		fan_read_opens(w);
	/* openers heard: looked at between checkpoints too (every LOOK_NS at
	 * most), so that the barrier's look is left only those heard since,
	 * and those that hold something (an opener is forgotten at its
	 * second look) */
	if (w->kind == W_FANOTIFY && w->openers.n && (!w->look_at.tv_sec || elapsed_ns(&w->look_at) >= LOOK_NS) &&
	    look_held(w, w->ss, NULL, 0))
		w->lost = "the watcher ran out of memory";
	return rc;
}

/* One batch of n bytes of events (read_queued); 0 or ENOMEM. */
static int drain_batch(watcher *w, size_t n)
{
	if (w->test_read_us > 0)
		usleep((useconds_t)w->test_read_us);
	int rc = 0;
	if (w->kind == W_FANOTIFY) {
		rc = fan_batch(w, w->buf, n);
		if (!rc)
			fan_unstash(w); /* (read after this batch, before the next) */
	} else {
		/* inotify pads names so that each event stays aligned */
		for (size_t off = 0; off + sizeof(struct inotify_event) <= n && !rc;) {
			const struct inotify_event *e = (const void *)(w->buf + off);
			rc = ino_event(w, e);
			off += sizeof *e + e->len;
		}
	}
	if (rc)
		return rc;
	/* after lost events (this checkpoint scans): every directory and
	 * file watched again, so the watches miss nothing from now on */
	if (w->rewatch && w->kind == W_INOTIFY) {
		w->rewatch = 0;
		if (ino_add_tree(w, ""))
			w->lost = "the watcher ran out of memory";
	}
	return 0;
}

static int drain_main(watcher *w)
{
	if (w->kind == W_FANOTIFY && w->held.n)
		fan_held(w);
	if (w->kind == W_FANOTIFY)
		fan_unstash(w);
	/* What is queued now is what every caller needs read (the loop: what
	 * came since it last looked; the barrier, the mark, a pre-copy pass:
	 * every event of a call made before them): read_queued. */
	int rc = read_queued(w, w->fd, drain_batch);
	if (rc < 0)
		w->lost = "the watcher could not be read";
	else if (rc) /* out of memory: what was not noted is lost */
		w->lost = "the watcher ran out of memory";
	return 0;
}

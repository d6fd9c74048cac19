/*
 * watch_queue.c — the kernel's queue of the watcher's events (or of its
 * opens): how much is queued (queued_units), and that much read
 * (read_queued), for the drain and the opens alike.
 */
#include "session/watch_parts.h"

/* The fanotify events in n bytes at buf. */
size_t fan_count(const unsigned char *buf, size_t n)
{
	size_t count = 0;
	for (size_t off = 0; off + sizeof(uint32_t) <= n; count++) {
		uint32_t elen;
		memcpy(&elen, buf + off, sizeof elen); /* event_len comes first */
		if (elen < sizeof(struct fanotify_event_metadata))
			break;
		off += elen;
	}
	return count;
}

/* What is queued now, in the unit watch_drain counts what it reads in:
 * inotify's bytes; fanotify's events. fanotify's FIONREAD counts each
 * event as its metadata alone (FAN_EVENT_METADATA_LEN), not the file
 * handles and name that follow it (~80-330 bytes an event here): taken for
 * bytes, a drain read a quarter of the queue or less, and a write's event
 * queued before a checkpoint was asked for was read after its mark or its
 * barrier (the checkpoint, "tracked", missed the write;
 * test_an_outside_write_behind_a_long_queue). Should a kernel count whole
 * events, this takes more events than were queued: read until the queue is
 * empty or the count is reached, more than needed, never less. SIZE_MAX:
 * not told (until empty). */
size_t queued_units(const watcher *w, int fd)
{
	int queued;
	if (ioctl(fd, FIONREAD, &queued) < 0 || queued < 0)
		return SIZE_MAX;
	if (w->kind == W_FANOTIFY)
		return ((size_t)queued + sizeof(struct fanotify_event_metadata) - 1) / sizeof(struct fanotify_event_metadata);
	return (size_t)queued;
}

/* fd's queue read as far as it stood when called, a batch at a time into
 * w->buf, each handed to take (its n bytes): until that much was read or
 * the queue is empty, never until it stays empty (a neighbour on the file
 * system making events faster than they are judged would keep the session
 * here: what comes meanwhile is read by the next drain). Whole events are
 * read, so a read may take a few more than were counted. 0 once read,
 * take's nonzero answer (it stops there), or -1: a read failed. */
int read_queued(watcher *w, int fd, int (*take)(watcher *w, size_t n))
{
	size_t want = queued_units(w, fd);
	for (size_t got = 0; got < want;) {
		ssize_t n = read(fd, w->buf, sizeof w->buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 && errno != EAGAIN ? -1 : 0;
		got += w->kind == W_FANOTIFY ? fan_count(w->buf, (size_t)n) : (size_t)n;
		int rc = take(w, (size_t)n);
		if (rc)
			return rc;
	}
	return 0;
}

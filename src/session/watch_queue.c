/*
 * watch_queue.c — how much the kernel has queued for the watcher
 * (queued_units), counted in the unit a drain counts what it reads in.
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

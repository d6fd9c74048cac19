/*
 * watch_event.c — fanotify: one event decoded (fan_event): its directory
 * and file resolved, judged inside or outside the tree, and noted.
 */
#include "session/watch_parts.h"

/* A handle copied out of an info record (unaligned) into hb; NULL if it
 * does not fit in the record's len bytes at in. */
static struct file_handle *copy_handle(unsigned char *hb, const unsigned char *in, const unsigned char *end)
{
	struct file_handle *fh = (struct file_handle *)hb;
	if (in + sizeof *fh > end)
		return NULL;
	memcpy(fh, in, sizeof *fh);
	if (fh->handle_bytes > MAX_HANDLE_SZ || in + sizeof *fh + fh->handle_bytes > end)
		return NULL;
	memcpy(fh->f_handle, in + sizeof *fh, fh->handle_bytes);
	return fh;
}

/* Keeps an event in a directory being freed, to be resolved at the next
 * drain (fan_held): the directory is then gone (the event is dropped: its
 * removal is an event at its parent), or there, and the event counts. */
static int hold(watcher *w, const unsigned char *ev, size_t len)
{
	held_event *h = w->held.n < RETRY_MAX ? vec_push(&w->held) : NULL;
	if (!h || !(h->ev = malloc(len))) {
		if (h)
			w->held.n--;
		w->lost = h ? "the watcher ran out of memory"
			    : "the watcher could not resolve a directory (too many events held)";
		return 0;
	}
	memcpy(h->ev, ev, len);
	h->len = len;
	return 0;
}

/* One event of len bytes at ev. Events hold names of any length, so the
 * next one may be unaligned: every structure is copied out before use. */
int fan_event(watcher *w, const unsigned char *ev, size_t len)
{
	struct fanotify_event_metadata m;
	memcpy(&m, ev, sizeof m);
	if (m.vers != FANOTIFY_METADATA_VERSION)
		return 0;
	if (m.mask & FAN_Q_OVERFLOW) {
		w->lost = "the watcher's queue overflowed (events were lost)";
		return 0;
	}
	/* an open of a directory, or the session's own (it reads files to
	 * compare them): nothing to ask (cheap: most opens are such, or
	 * outside the tree) */
	if ((m.mask & FAN_OPEN) && ((m.mask & FAN_ONDIR) || m.pid == w->self))
		m.mask &= ~(uint64_t)FAN_OPEN;
	if (!(m.mask & ~(uint64_t)FAN_ONDIR))
		return 0;
	unsigned char dhb[sizeof(struct file_handle) + MAX_HANDLE_SZ] __attribute__((aligned(8)));
	unsigned char ohb[sizeof(struct file_handle) + MAX_HANDLE_SZ] __attribute__((aligned(8)));
	struct file_handle *dfh = NULL, *ofh = NULL;
	fsid_t dfsid, ofsid;
	const char *name = ".";
	const unsigned char *p = ev + m.metadata_len, *end = ev + len;
	while (p + sizeof(struct fanotify_event_info_fid) <= end) {
		struct fanotify_event_info_fid fid;
		memcpy(&fid, p, sizeof fid);
		if (fid.hdr.len == 0 || p + fid.hdr.len > end)
			break;
		const unsigned char *in = p + offsetof(struct fanotify_event_info_fid, handle);
		if (!dfh && (fid.hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME || fid.hdr.info_type == FAN_EVENT_INFO_TYPE_DFID)) {
			if ((dfh = copy_handle(dhb, in, p + fid.hdr.len))) {
				memcpy(&dfsid, &fid.fsid, sizeof dfsid);
				if (fid.hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME)
					name = (const char *)in + sizeof *dfh + dfh->handle_bytes;
			}
		} else if (!ofh && fid.hdr.info_type == FAN_EVENT_INFO_TYPE_FID) {
			if ((ofh = copy_handle(ohb, in, p + fid.hdr.len)))
				memcpy(&ofsid, &fid.fsid, sizeof ofsid);
		}
		p += fid.hdr.len;
	}
	const char *dir = dfh ? fan_dir(w, &dfsid, dfh) : NULL;
	if (dir == BEING_FREED)
		return hold(w, ev, len);
	char path[PATH_MAX * 2] = "";
	if (dir && dir != OUTSIDE) {
		if (!strcmp(name, ".") || !*name)
			snprintf(path, sizeof path, "%s", dir);
		else
			snprintf(path, sizeof path, "%s%s%s", dir, *dir ? "/" : "", name);
	}
	/* a directory moved: cached paths at and below it are stale (dir is
	 * one of them: not used past this point; path was made before). Not
	 * one removed: it has no descendants left, and its handle dies with it
	 * (a neighbour's builds remove directories all the time: emptying the
	 * cache for each had every later event resolved again, the tree's too,
	 * tests/session test_directories_removed_outside_keep_the_cache). Nor
	 * one moved from or to a directory known to be outside the tree: what
	 * is under it was outside and stays so (moved into the tree, it is a
	 * MOVED_TO in a directory of the tree, which empties the cache). */
	if ((m.mask & FAN_ONDIR) && (m.mask & (FAN_MOVED_FROM | FAN_MOVED_TO)) && dir != OUTSIDE) {
		dircache_clear(w);
		w->emptied++;
	}
	dir = NULL;
	if (!*path) {
		/* outside the tree (or a name gone, or the root itself): the file
		 * changed may still be in the tree under another name */
		int linked = ofh && !(m.mask & FAN_ONDIR) && (m.mask & (FAN_MODIFY | FAN_ATTRIB | FAN_CLOSE_WRITE)) ?
		             linked_into_tree(w, &ofsid, ofh, (m.mask & FAN_ATTRIB) != 0) : 0;
		if (linked < 0)
			return hold(w, ev, len);
		if (linked && !w->lost)
			w->lost = "a file of the tree changed through a name outside it (a hard link)";
		return 0;
	}
	int kind = (m.mask & FAN_MODIFY ? EV_MODIFY : 0) | (m.mask & FAN_CLOSE_WRITE ? EV_LET_GO : 0) |
	           (m.mask & FAN_ATTRIB ? EV_ATTRIB : 0) |
	           (m.mask & (FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO) ? EV_NS : 0);
	/* (a traced opener's mappings are in its log; one whose log is not
	 * found yet is asked about at the barrier) */
	if ((m.mask & FAN_OPEN) && !session_outside_tree(path) && !session_pid_traced(w->ss, (int32_t)m.pid))
		opener_add(w, (int32_t)m.pid);
	return kind ? note(w, path, kind, (int32_t)m.pid) : 0;
}

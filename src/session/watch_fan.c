/*
 * watch_fan.c — fanotify: the two groups (the events, and the opens alone)
 * and a mark on every file system of the tree (fan_start).
 */
#include "session/watch_parts.h"

/* The mount points under the root (besides the root's own file system). */
static int fan_mark(watcher *w, const char *path)
{
	const uint64_t mask = FAN_MODIFY | FAN_ATTRIB | FAN_CLOSE_WRITE | FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM |
	                      FAN_MOVED_TO | FAN_ONDIR;
	if (fanotify_mark(w->fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, AT_FDCWD, path) ||
	    fanotify_mark(w->ofd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN, AT_FDCWD, path))
		return errno;
	struct statfs sf;
	fs_mark fm = {.fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
	if (fm.fd < 0 || fstatfs(fm.fd, &sf)) {
		int e = errno;
		if (fm.fd >= 0)
			close(fm.fd);
		return e;
	}
	fm.fsid = sf.f_fsid;
	for (size_t i = 0; i < w->marks.n; i++)
		if (!memcmp(&VEC_AT(&w->marks, fs_mark, i).fsid, &fm.fsid, sizeof fm.fsid)) {
			close(fm.fd); /* one file system mounted twice under the root */
			return 0;
		}
	fs_mark *slot = vec_push(&w->marks);
	if (!slot) {
		close(fm.fd);
		return ENOMEM;
	}
	*slot = fm;
	return 0;
}

/* Unescapes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

int fan_start(watcher *w)
{
	w->fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME | FAN_REPORT_FID,
	                      O_RDONLY | O_LARGEFILE);
	if (w->fd < 0)
		return errno;
	/* opens in a group of their own: a busy file system opens more than
	 * it writes (a third more events here), and were they in the same
	 * queue they would overflow it sooner, which makes a checkpoint scan;
	 * their own queue overflowing costs a sweep of /proc instead */
	w->ofd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME | FAN_REPORT_FID,
	                       O_RDONLY | O_LARGEFILE);
	struct epoll_event ev = {.events = EPOLLIN};
	if (w->ofd < 0 || (w->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->fd, &ev) ||
	    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->ofd, &ev))
		return errno;
	w->marks = (vec)VEC_INIT(fs_mark);
	w->openers = (vec)VEC_INIT(opener);
	w->held = (vec)VEC_INIT(held_event);
	int rc = fan_mark(w, w->root);
	FILE *f = rc ? NULL : fopen("/proc/self/mountinfo", "re");
	char line[8192];
	while (f && !rc && fgets(line, sizeof line, f)) {
		/* id parent major:minor root mountpoint ... */
		char *save, *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (!tok)
			continue;
		unescape(tok);
		const char *rel = in_tree(w, tok);
		if (rel && *rel && !session_outside_tree(rel))
			rc = fan_mark(w, tok);
	}
	if (f)
		fclose(f);
	return rc;
}

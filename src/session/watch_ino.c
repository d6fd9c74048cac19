/*
 * watch_ino.c — inotify, where fanotify cannot watch the tree: a watch on
 * every directory and regular file of it, and its events.
 */
#include "session/watch_parts.h"

#define INO_MASK (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR | \
                  IN_DONT_FOLLOW | IN_EXCL_UNLINK)

/* A file with one name: its attribute changes (a link made to it is one,
 * also through a directory outside the tree, where no watch of the tree's
 * directories hears of it). Masks are only ever added to (IN_MASK_ADD): a
 * watch raced onto another file than the one looked at never loses events. */
#define INO_ONE_MASK (IN_ATTRIB | IN_DONT_FOLLOW | IN_MASK_ADD)
/* A file with several names: every change, through whichever name. */
#define INO_FILE_MASK (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVE_SELF | IN_DONT_FOLLOW | IN_MASK_ADD)

/* The absolute path of rel into buf; 0, or -1 if it does not fit. */
static int path_abs(const watcher *w, const char *rel, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s%s%s", w->root, *rel ? "/" : "", rel);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Puts path (owned) at wd in w->wds, watching a thing of that kind. */
static int ino_set(watcher *w, int wd, char *path, int kind)
{
	while ((size_t)wd >= w->wds.n) {
		wd_ent *slot = vec_push(&w->wds);
		if (!slot) {
			free(path);
			return ENOMEM;
		}
		*slot = (wd_ent){0};
	}
	wd_ent *e = &VEC_AT(&w->wds, wd_ent, wd);
	if (e->path && e->kind == WD_DIR && kind != WD_DIR) {
		free(path); /* a file replaced by this directory since it was looked at */
		return 0;
	}
	/* a file's watch that reports every change keeps doing so (IN_MASK_ADD) */
	if (!(e->path && e->kind == WD_FILE_ALL && kind == WD_FILE_ATTRIB))
		e->kind = (uint8_t)kind;
	free(e->path);
	e->path = path;
	return 0;
}

/* Every regular file of the tree (st) gets a watch of its own: with one
 * name, for its attribute changes (the link count: ino_one_name); with
 * several, for every change (a write through a name outside the tree is
 * reported to the file's watch only). Watched again under a new name, the
 * watch is the same and takes the new path. */
static int ino_watch_file(watcher *w, const char *rel, const struct stat *st)
{
	if (!S_ISREG(st->st_mode) || session_outside_tree(rel))
		return 0;
	char abs[PATH_MAX * 2];
	if (path_abs(w, rel, abs, sizeof abs)) {
		w->lost = "a file of the tree could not be watched (its path is too long)";
		return 0;
	}
	int all = st->st_nlink > 1;
	int wd = inotify_add_watch(w->fd, abs, all ? INO_FILE_MASK : INO_ONE_MASK);
	/* a link made between the look (st) and the watch sent its event to no
	 * watch: looked at again, now that a later one would be heard */
	struct stat now;
	if (wd >= 0 && !all && !fstatat(AT_FDCWD, abs, &now, AT_SYMLINK_NOFOLLOW) && S_ISREG(now.st_mode) &&
	    now.st_nlink > 1 && (all = 1))
		wd = inotify_add_watch(w->fd, abs, INO_FILE_MASK);
	if (wd < 0) {
		if (errno == ENOSPC)
			w->blind = "cannot watch every file of the tree (fs.inotify.max_user_watches)";
		else if (errno == EACCES)
			w->blind = "a file of the tree cannot be watched (no read permission)";
		else if (errno != ENOENT) /* gone: its removal is an event of its directory */
			w->lost = "a file of the tree could not be watched";
		return 0;
	}
	char *dup = strdup(rel);
	return dup ? ino_set(w, wd, dup, all ? WD_FILE_ALL : WD_FILE_ATTRIB) : ENOMEM;
}

/* An attribute change of a file that had one name: its link count may have
 * grown (a link made outside the tree sends this event, and none to the
 * tree's directories), and written through the new name, and shrunk again
 * by now. So the file is compared whole at the next checkpoint, and if it
 * has several names now, its watch reports every change from now on (the
 * lookup comes after this event was queued: a link made later sends
 * another). path may be stale: the file renamed (or removed) since; a
 * rename in the tree is an event of its own, after this one, and the file
 * is looked at under its new name then (compared whole, watched again). */
static int ino_one_name(watcher *w, const char *path)
{
	int rc = note(w, path, EV_MODIFY | EV_ATTRIB, 0);
	char abs[PATH_MAX * 2];
	struct stat st;
	if (!rc && !path_abs(w, path, abs, sizeof abs) && !fstatat(AT_FDCWD, abs, &st, AT_SYMLINK_NOFOLLOW) &&
	    S_ISREG(st.st_mode) && st.st_nlink > 1)
		rc = ino_watch_file(w, path, &st);
	return rc;
}

/* Watches directory rel and every directory and file below it. */
int ino_add_tree(watcher *w, const char *rel)
{
	vec stack = VEC_INIT(char *);
	char *first = strdup(rel);
	int rc = first ? 0 : ENOMEM;
	if (first && !vec_push(&stack))
		rc = ENOMEM, free(first);
	else if (first)
		VEC_AT(&stack, char *, 0) = first;
	while (!rc && stack.n) {
		char *dir = VEC_AT(&stack, char *, --stack.n);
		char abs[PATH_MAX * 2];
		snprintf(abs, sizeof abs, "%s%s%s", w->root, *dir ? "/" : "", dir);
		int wd = inotify_add_watch(w->fd, abs, INO_MASK);
		if (wd < 0) {
			if (errno == ENOSPC)
				w->blind = "cannot watch every directory of the tree (fs.inotify.max_user_watches)";
			else if (errno != ENOENT && errno != ENOTDIR && errno != EACCES)
				w->lost = "a directory could not be watched";
			free(dir);
			continue;
		}
		if ((rc = ino_set(w, wd, dir, WD_DIR)))
			break;
		DIR *d = opendir(abs);
		struct dirent *de;
		while (d && !rc && (de = readdir(d))) {
			if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN && de->d_type != DT_REG)
				continue;
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			char *sub;
			if (asprintf(&sub, "%s%s%s", dir, *dir ? "/" : "", de->d_name) < 0) {
				rc = ENOMEM;
				break;
			}
			struct stat st;
			int isdir = de->d_type == DT_DIR;
			if (!isdir && !session_outside_tree(sub) && !fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW)) {
				isdir = S_ISDIR(st.st_mode);
				if (!isdir)
					rc = ino_watch_file(w, sub, &st);
			}
			if (session_outside_tree(sub) || !isdir) {
				free(sub);
				continue;
			}
			char **slot = vec_push(&stack);
			if (!slot) {
				free(sub);
				rc = ENOMEM;
			} else {
				*slot = sub;
			}
		}
		if (d)
			closedir(d);
	}
	for (size_t i = 0; i < stack.n; i++)
		free(VEC_AT(&stack, char *, i));
	vec_free(&stack);
	return rc;
}

int ino_event(watcher *w, const struct inotify_event *e)
{
	char abs[PATH_MAX * 2];
	if (e->mask & IN_Q_OVERFLOW) {
		w->lost = "the watcher's queue overflowed (fs.inotify.max_queued_events: events were lost)";
		w->rewatch = 1; /* a directory or a link may have come unseen: its watch is missing */
		return 0;
	}
	if (e->wd < 0 || (size_t)e->wd >= w->wds.n || !VEC_AT(&w->wds, wd_ent, e->wd).path)
		return 0;
	wd_ent *we = &VEC_AT(&w->wds, wd_ent, e->wd);
	if (e->mask & IN_IGNORED) { /* the directory or file is gone: its removal was seen at its parent */
		free(we->path);
		*we = (wd_ent){0};
		return 0;
	}
	const char *dir = we->path;
	char path[PATH_MAX * 2];
	if (e->len && e->name[0])
		snprintf(path, sizeof path, "%s%s%s", dir, *dir ? "/" : "", e->name);
	else
		snprintf(path, sizeof path, "%s", dir);
	if (!*path)
		return 0;
	if (we->kind == WD_FILE_ATTRIB)
		return (e->mask & IN_ATTRIB) ? ino_one_name(w, path) : 0;
	if (e->mask & IN_MOVE_SELF) { /* a file with several names: which of its names moved? */
		w->lost = "a file with several names was moved";
		return 0;
	}
	int kind = (e->mask & (IN_MODIFY | IN_CLOSE_WRITE) ? EV_MODIFY : 0) | (e->mask & IN_ATTRIB ? EV_ATTRIB : 0) |
	           (e->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO) ? EV_NS : 0);
	int rc = kind ? note(w, path, kind, 0) : 0;
	/* a file that arrived (made, linked or moved here): watched from now on,
	 * under this name */
	struct stat st;
	if (!rc && !(e->mask & IN_ISDIR) && e->len && (e->mask & (IN_CREATE | IN_MOVED_TO)) &&
	    !session_outside_tree(path) && !path_abs(w, path, abs, sizeof abs) && !fstatat(AT_FDCWD, abs, &st, AT_SYMLINK_NOFOLLOW))
		rc = ino_watch_file(w, path, &st);
	/* a directory that arrived: watched from now on (what was made in it
	 * before is found by the checkpoint's walk of the namespace change) */
	if (!rc && (e->mask & IN_ISDIR) && (e->mask & (IN_CREATE | IN_MOVED_TO)) && !session_outside_tree(path))
		rc = ino_add_tree(w, path);
	return rc;
}

int ino_start(watcher *w)
{
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0)
		return errno;
	w->wds = (vec)VEC_INIT(wd_ent);
	return ino_add_tree(w, "");
}

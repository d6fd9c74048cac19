/*
 * watch_opens.c — fanotify: the processes with no log heard opening files
 * of the tree (the openers, from the opens' group), asked through /proc
 * what they hold for writing or map (look_held).
 */
#include "session/watch_parts.h"

/* 1 if pid was heard opening a file of the tree since the last look: its
 * other opens say nothing more. */
int opener_fresh(const watcher *w, int32_t pid)
{
	for (size_t i = 0; i < w->openers.n; i++)
		if (VEC_AT(&w->openers, opener, i).pid == pid)
			return VEC_AT(&w->openers, opener, i).fresh;
	return 0;
}

/* An opener heard (FAN_OPEN of a file of the tree by a process with no
 * log): looked at at the next look. Past OPENERS_MAX, a sweep of every
 * process instead. */
void opener_add(watcher *w, int32_t pid)
{
	for (size_t i = 0; i < w->openers.n; i++)
		if (VEC_AT(&w->openers, opener, i).pid == pid) {
			VEC_AT(&w->openers, opener, i).fresh = 1;
			return;
		}
	opener *o = w->openers.n < OPENERS_MAX ? vec_push(&w->openers) : NULL;
	if (!o) {
		w->opens_lost = 1;
		return;
	}
	o->pid = pid;
	o->fresh = 1;
}

/* path held by pid: added to m (path -> pend of the pids). */
static int held_put(pathmap *m, const char *path, int32_t pid)
{
	pend *q = pathmap_get(m, path);
	if (!q) {
		if (!(q = calloc(1, sizeof *q)) || pathmap_put(m, path, q)) {
			free(q);
			return ENOMEM;
		}
	}
	const pend one = {.npid = 1, .pid = {pid}};
	pend_merge(q, &one);
	return 0;
}

/* The files of the tree pid holds for writing, added to m, asked of it
 * through /proc: its fds open for writing (the mode of a /proc/PID/fd link
 * says how its file is open: S_IWUSR for writing) and its shared mappings
 * (any: one made read-only through an fd open for writing may be made
 * writable later). Named as the kernel names them now (a file renamed
 * since its open is found under its new name). *any: 1 if it holds one. */
static int holds_read(watcher *w, int32_t pid, pathmap *m, int *any)
{
	char p[64], link[PATH_MAX + 1];
	int rc = 0;
	snprintf(p, sizeof p, "/proc/%d/fd", (int)pid);
	DIR *d = opendir(p);
	if (!d)
		return 0; /* gone: holds nothing any more */
	w->probes++;
	struct dirent *de;
	while (!rc && (de = readdir(d))) {
		struct stat lst;
		ssize_t n;
		if (de->d_name[0] < '0' || de->d_name[0] > '9' ||
		    fstatat(dirfd(d), de->d_name, &lst, AT_SYMLINK_NOFOLLOW) || !(lst.st_mode & S_IWUSR) ||
		    (n = readlinkat(dirfd(d), de->d_name, link, sizeof link - 1)) <= 0)
			continue;
		link[n] = 0;
		const char *rel = in_tree(w, link);
		if (rel && *rel && !session_outside_tree(rel) && !(rc = held_put(m, rel, pid)))
			*any = 1;
	}
	closedir(d);
	snprintf(p, sizeof p, "/proc/%d/maps", (int)pid);
	FILE *f = fopen(p, "re");
	char line[PATH_MAX + 256];
	while (!rc && f && fgets(line, sizeof line, f)) {
		char perms[8];
		int at = 0;
		/* (a line longer than the buffer: its rest does not parse) */
		if (sscanf(line, "%*x-%*x %7s %*x %*x:%*x %*u %n", perms, &at) != 1 || !at || perms[3] != 's')
			continue;
		char *path = line + at;
		path[strcspn(path, "\n")] = 0;
		const char *rel = in_tree(w, path);
		if (rel && *rel && !session_outside_tree(rel) && !(rc = held_put(m, rel, pid)))
			*any = 1;
	}
	if (f)
		fclose(f);
	return rc;
}

/* The opens were lost (ofd's queue overflowed, or too many openers): every
 * process with no log is asked what it holds, and one that holds a file of
 * the tree is an opener from now on. (~0.1 ms a process: only then.) */
static int sweep_holds(watcher *w, mtm_session *ss, pathmap *m)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	int rc = 0;
	struct dirent *de;
	w->opens_lost = 0;
	while (!rc && (de = readdir(d))) {
		int32_t pid = (int32_t)atoi(de->d_name), any = 0;
		if (pid <= 0 || pid == w->self || session_pid_traced(ss, pid))
			continue;
		rc = holds_read(w, pid, m, &any);
		if (!rc && any)
			opener_add(w, pid);
	}
	closedir(d);
	return rc;
}

/* A look: each opener is asked what it holds (holds_read), and held_w
 * becomes the files of the tree they hold for writing or map; at the
 * barrier (final, cs), those are compared whole (and, compared ahead
 * perhaps before a write that makes no event, again next time). An opener
 * that holds nothing is forgotten, but only at a look after the first that
 * saw it: an open's event is queued before its fd is installed. Before the
 * barrier to spread the work; only the barrier's look says who is traced
 * (a log found since). Costs a look at /proc per opener, whatever it read
 * (a backup reading the tree by the thousand: one process). */
int look_held(watcher *w, mtm_session *ss, change_set *cs, int final)
{
	pathmap now = {0};
	int rc = 0;
	clock_gettime(CLOCK_MONOTONIC, &w->look_at);
	size_t kept = 0;
	for (size_t i = 0; i < w->openers.n; i++) {
		opener o = VEC_AT(&w->openers, opener, i);
		int any = 0;
		if (rc || (final && session_pid_traced(ss, o.pid)))
			continue;
		rc = holds_read(w, o.pid, &now, &any);
		if (any || o.fresh)
			VEC_AT(&w->openers, opener, kept++) = (opener){o.pid, 0};
	}
	w->openers.n = kept;
	if (!rc && w->opens_lost)
		rc = sweep_holds(w, ss, &now);
	pathmap_free(&w->held_w, free);
	w->held_w = now;
	for (size_t i = 0; final && !rc && i < w->held_w.cap; i++) {
		const char *path = w->held_w.slots[i].key;
		if (!path)
			continue;
		const file_change *fc = pathmap_get(&cs->files, path);
		if (!(fc && fc->whole))
			rc = mark_whole(cs, path);
		if (!rc && w->marked)
			rc = carry(w, path);
	}
	return rc;
}

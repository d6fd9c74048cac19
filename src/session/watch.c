/*
 * watch.c — the session's watcher (watch.h): changes in the tree that no
 * traced process's log explains.
 *
 * fanotify, one mark per file system of the tree (FAN_MARK_FILESYSTEM,
 * FAN_REPORT_DFID_NAME): each event names its directory by a file handle
 * and the entry by name, and carries the writer's pid. Directory handles
 * are resolved once (open_by_handle_at, then the kernel's path of the fd)
 * and cached; a directory moved or removed anywhere empties the cache, so a
 * directory moved into the tree is never taken for one outside it. Events
 * outside the tree cost a hash lookup.
 *
 * inotify otherwise: a watch on every directory (new ones are watched as
 * they come, and listed as a namespace change, so what was made in them
 * before the watch is found by the checkpoint's walk). inotify does not say
 * who wrote, so every file written is compared by its blocks' hashes.
 *
 * Events are only gathered while the program runs (pending: path -> what
 * and who); they are judged in the barrier against the logs of the same
 * interval: a traced write is queued by the kernel inside the call, before
 * the interposer records it and leaves its region, and the barrier reads
 * the queue only once every region is empty.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include "session/session.h"
#include "session/watch.h"
#include "util/error.h"

enum { W_FANOTIFY = 1, W_INOTIFY = 2 };
enum { EV_MODIFY = 1, EV_ATTRIB = 2, EV_NS = 4 };
#define PEND_PIDS 4
#define DIRCACHE_MAX 65536 /* resolved directories kept (the whole file system's, not only the tree's) */
#define OUTSIDE ((char *)1) /* dircache: a directory outside the tree */

typedef struct { uint8_t kinds, npid, many; int32_t pid[PEND_PIDS]; } pend;
typedef struct { fsid_t fsid; int fd; } fs_mark;

struct watcher {
	int kind, fd;
	char *root;       /* canonical absolute path of the tree */
	size_t rootlen;
	vec marks;        /* of fs_mark (fanotify): a file system and a directory on it */
	pathmap dircache; /* fanotify: handle (hex) -> path relative to the root, or OUTSIDE */
	vec wds;          /* inotify: of char*, by watch descriptor: the directory's path, or NULL */
	pathmap pending;  /* path -> pend*: events since the last barrier */
	const char *lost; /* events were lost since the last barrier: why */
	const char *blind; /* cannot see everything (watch limit): every checkpoint scans */
	unsigned char buf[64 * 1024] __attribute__((aligned(8)));
};

int watch_fd(const watcher *w) { return w ? w->fd : -1; }
const char *watch_kind(const watcher *w) { return w && w->kind == W_FANOTIFY ? "fanotify" : "inotify"; }

static void dircache_free(void *p)
{
	if (p != OUTSIDE)
		free(p);
}

static void dircache_clear(watcher *w)
{
	pathmap_free(&w->dircache, dircache_free);
	memset(&w->dircache, 0, sizeof w->dircache);
}

void watch_stop(watcher *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	for (size_t i = 0; i < w->marks.n; i++)
		close(VEC_AT(&w->marks, fs_mark, i).fd);
	vec_free(&w->marks);
	for (size_t i = 0; i < w->wds.n; i++)
		free(VEC_AT(&w->wds, char *, i));
	vec_free(&w->wds);
	dircache_clear(w);
	pathmap_free(&w->pending, free);
	free(w->root);
	free(w);
}

/* Records that something (kind) happened to path, by pid (0: unknown). */
static int note(watcher *w, const char *path, int kind, int32_t pid)
{
	if (session_outside_tree(path))
		return 0;
	pend *p = pathmap_get(&w->pending, path);
	if (!p) {
		if (!(p = calloc(1, sizeof *p)) || pathmap_put(&w->pending, path, p)) {
			free(p);
			return ENOMEM;
		}
	}
	p->kinds |= (uint8_t)kind;
	for (int i = 0; i < p->npid; i++)
		if (p->pid[i] == pid)
			return 0;
	if (p->npid < PEND_PIDS)
		p->pid[p->npid++] = pid;
	else
		p->many = 1;
	return 0;
}

/* path relative to the root, or NULL if abs is not in the tree. */
static const char *in_tree(const watcher *w, const char *abs)
{
	if (strncmp(abs, w->root, w->rootlen))
		return NULL;
	if (w->root[w->rootlen - 1] == '/') /* the tree is / */
		return abs + w->rootlen;
	return abs[w->rootlen] == '/' ? abs + w->rootlen + 1 : abs[w->rootlen] ? NULL : abs + w->rootlen;
}

/* ---- fanotify ---- */

/* The tree's directory a handle names: its path relative to the root ("" is
 * the root), OUTSIDE, or NULL if it is gone (a removal, seen at its parent). */
static const char *fan_dir(watcher *w, const fsid_t *fsid, const struct file_handle *fh)
{
	char key[2 * (sizeof *fsid + sizeof fh->handle_type + MAX_HANDLE_SZ) + 1], *k = key;
	const unsigned char *parts[] = {(const unsigned char *)fsid, (const unsigned char *)&fh->handle_type, fh->f_handle};
	size_t lens[] = {sizeof *fsid, sizeof fh->handle_type, fh->handle_bytes > MAX_HANDLE_SZ ? MAX_HANDLE_SZ : fh->handle_bytes};
	for (int i = 0; i < 3; i++)
		for (size_t j = 0; j < lens[i]; j++, k += 2)
			sprintf(k, "%02x", parts[i][j]);
	const char *got = pathmap_get(&w->dircache, key);
	if (got)
		return got;
	int mfd = -1;
	for (size_t i = 0; i < w->marks.n && mfd < 0; i++)
		if (!memcmp(&VEC_AT(&w->marks, fs_mark, i).fsid, fsid, sizeof *fsid))
			mfd = VEC_AT(&w->marks, fs_mark, i).fd;
	if (mfd < 0)
		return OUTSIDE;
	int fd = open_by_handle_at(mfd, (struct file_handle *)fh, O_PATH | O_CLOEXEC);
	if (fd < 0) {
		/* gone (its removal is an event at its parent); anything else
		 * (no CAP_DAC_READ_SEARCH, say) would drop events unseen */
		if (errno != ESTALE && errno != ENOENT)
			w->lost = "the watcher could not resolve a directory";
		return NULL;
	}
	char link[64], abs[PATH_MAX + 1];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, abs, sizeof abs - 1);
	close(fd);
	if (n <= 0 || n >= (ssize_t)sizeof abs - 1) {
		w->lost = "the watcher could not resolve a directory";
		return NULL;
	}
	abs[n] = 0;
	if (n > 10 && !strcmp(abs + n - 10, " (deleted)"))
		return NULL;
	const char *rel = in_tree(w, abs);
	char *val = rel ? strdup(rel) : OUTSIDE;
	if (!val) {
		w->lost = "the watcher ran out of memory";
		return NULL;
	}
	if (w->dircache.n >= DIRCACHE_MAX)
		dircache_clear(w);
	if (pathmap_put(&w->dircache, key, val)) {
		dircache_free(val);
		return NULL;
	}
	return val;
}

/* One event of len bytes at ev. Events hold names of any length, so the
 * next one may be unaligned: every structure is copied out before use. */
static int fan_event(watcher *w, const unsigned char *ev, size_t len)
{
	struct fanotify_event_metadata m;
	memcpy(&m, ev, sizeof m);
	if (m.vers != FANOTIFY_METADATA_VERSION)
		return 0;
	if (m.mask & FAN_Q_OVERFLOW) {
		w->lost = "the watcher's queue overflowed (events were lost)";
		return 0;
	}
	const unsigned char *p = ev + m.metadata_len, *end = ev + len;
	while (p + sizeof(struct fanotify_event_info_fid) + sizeof(struct file_handle) <= end) {
		struct fanotify_event_info_fid fid;
		memcpy(&fid, p, sizeof fid);
		if (fid.hdr.len == 0 || p + fid.hdr.len > end)
			break;
		if (fid.hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME || fid.hdr.info_type == FAN_EVENT_INFO_TYPE_DFID) {
			const unsigned char *in = p + offsetof(struct fanotify_event_info_fid, handle);
			unsigned char hb[sizeof(struct file_handle) + MAX_HANDLE_SZ] __attribute__((aligned(8)));
			struct file_handle *fh = (struct file_handle *)hb;
			memcpy(fh, in, sizeof *fh);
			if (fh->handle_bytes > MAX_HANDLE_SZ || in + sizeof *fh + fh->handle_bytes > p + fid.hdr.len)
				break;
			memcpy(fh->f_handle, in + sizeof *fh, fh->handle_bytes);
			const char *name = fid.hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME
			                   ? (const char *)in + sizeof *fh + fh->handle_bytes : ".";
			fsid_t fsid;
			memcpy(&fsid, &fid.fsid, sizeof fsid);
			const char *dir = fan_dir(w, &fsid, fh);
			char path[PATH_MAX * 2] = "";
			if (dir && dir != OUTSIDE) {
				if (!strcmp(name, ".") || !*name)
					snprintf(path, sizeof path, "%s", dir);
				else
					snprintf(path, sizeof path, "%s%s%s", dir, *dir ? "/" : "", name);
			}
			/* a directory moved or removed: cached paths below it are stale
			 * (dir is one of them: not used past this point) */
			if ((m.mask & FAN_ONDIR) && (m.mask & (FAN_MOVED_FROM | FAN_MOVED_TO | FAN_DELETE)))
				dircache_clear(w);
			if (!*path)
				break; /* outside the tree, gone, or the root itself (not an entry) */
			int kind = (m.mask & FAN_MODIFY ? EV_MODIFY : 0) | (m.mask & FAN_ATTRIB ? EV_ATTRIB : 0) |
			           (m.mask & (FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO) ? EV_NS : 0);
			return kind ? note(w, path, kind, (int32_t)m.pid) : 0;
		}
		p += fid.hdr.len;
	}
	return 0;
}

/* The mount points under the root (besides the root's own file system). */
static int fan_mark(watcher *w, const char *path)
{
	const uint64_t mask = FAN_MODIFY | FAN_ATTRIB | FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_ONDIR;
	if (fanotify_mark(w->fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, AT_FDCWD, path))
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

static int fan_start(watcher *w)
{
	w->fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME, O_RDONLY | O_LARGEFILE);
	if (w->fd < 0)
		return errno;
	w->marks = (vec)VEC_INIT(fs_mark);
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

/* ---- inotify ---- */

#define INO_MASK (IN_MODIFY | IN_ATTRIB | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR | \
                  IN_DONT_FOLLOW | IN_EXCL_UNLINK)

/* Watches directory rel and every directory below it. */
static int ino_add_tree(watcher *w, const char *rel)
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
		while ((size_t)wd >= w->wds.n && !rc) {
			char **slot = vec_push(&w->wds);
			if (!slot)
				rc = ENOMEM;
			else
				*slot = NULL;
		}
		if (rc) {
			free(dir);
			break;
		}
		free(VEC_AT(&w->wds, char *, wd));
		VEC_AT(&w->wds, char *, wd) = dir;
		DIR *d = opendir(abs);
		struct dirent *de;
		while (d && !rc && (de = readdir(d))) {
			if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
				continue;
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			char *sub;
			if (asprintf(&sub, "%s%s%s", dir, *dir ? "/" : "", de->d_name) < 0) {
				rc = ENOMEM;
				break;
			}
			struct stat st;
			if (session_outside_tree(sub) || (de->d_type == DT_UNKNOWN &&
			    (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISDIR(st.st_mode)))) {
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

static int ino_event(watcher *w, const struct inotify_event *e)
{
	if (e->mask & IN_Q_OVERFLOW) {
		w->lost = "the watcher's queue overflowed (fs.inotify.max_queued_events: events were lost)";
		return 0;
	}
	if (e->wd < 0 || (size_t)e->wd >= w->wds.n || !VEC_AT(&w->wds, char *, e->wd))
		return 0;
	const char *dir = VEC_AT(&w->wds, char *, e->wd);
	if (e->mask & IN_IGNORED) { /* the directory is gone: its removal was seen at its parent */
		free(VEC_AT(&w->wds, char *, e->wd));
		VEC_AT(&w->wds, char *, e->wd) = NULL;
		return 0;
	}
	char path[PATH_MAX * 2];
	if (e->len && e->name[0])
		snprintf(path, sizeof path, "%s%s%s", dir, *dir ? "/" : "", e->name);
	else
		snprintf(path, sizeof path, "%s", dir);
	if (!*path)
		return 0;
	int kind = (e->mask & IN_MODIFY ? EV_MODIFY : 0) | (e->mask & IN_ATTRIB ? EV_ATTRIB : 0) |
	           (e->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO) ? EV_NS : 0);
	int rc = kind ? note(w, path, kind, 0) : 0;
	/* a directory that arrived: watched from now on (what was made in it
	 * before is found by the checkpoint's walk of the namespace change) */
	if (!rc && (e->mask & IN_ISDIR) && (e->mask & (IN_CREATE | IN_MOVED_TO)) && !session_outside_tree(path))
		rc = ino_add_tree(w, path);
	return rc;
}

static int ino_start(watcher *w)
{
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0)
		return errno;
	w->wds = (vec)VEC_INIT(char *);
	return ino_add_tree(w, "");
}

/* ---- both ---- */

int watch_start(mtm_session *ss, const char **why)
{
	*why = NULL;
	ss->watch = NULL;
	const char *knob = secure_getenv("METAMORI_WATCH"); /* tests and benchmarks: force one, or none */
	if (knob && !strcmp(knob, "off")) {
		*why = "METAMORI_WATCH=off";
		return 0;
	}
	watcher *w = calloc(1, sizeof *w);
	if (!w)
		return mtm_set_error(ENOMEM, "session");
	w->fd = -1;
	if (!(w->root = realpath(ss->s->root, NULL))) {
		free(w);
		*why = "the tree's path cannot be resolved";
		return 0;
	}
	w->rootlen = strlen(w->root);
	int rc = EINVAL;
	if (!knob || !*knob || !strcmp(knob, "fanotify")) {
		w->kind = W_FANOTIFY;
		rc = fan_start(w);
		if (rc && w->fd >= 0) {
			for (size_t i = 0; i < w->marks.n; i++)
				close(VEC_AT(&w->marks, fs_mark, i).fd);
			vec_free(&w->marks);
			close(w->fd);
			w->fd = -1;
		}
	}
	if (rc && (!knob || !*knob || !strcmp(knob, "inotify"))) {
		w->kind = W_INOTIFY;
		rc = ino_start(w);
	}
	if (rc) {
		*why = rc == ENOMEM ? "out of memory" : "neither fanotify nor inotify can watch the tree";
		watch_stop(w);
		return rc == ENOMEM ? mtm_set_error(ENOMEM, "session") : 0;
	}
	ss->watch = w;
	return 0;
}

int watch_drain(watcher *w)
{
	for (;;) {
		ssize_t n = read(w->fd, w->buf, sizeof w->buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0 && errno != EAGAIN)
				w->lost = "the watcher could not be read";
			return 0;
		}
		int rc = 0;
		if (w->kind == W_FANOTIFY) {
			for (size_t off = 0; off + sizeof(struct fanotify_event_metadata) <= (size_t)n && !rc;) {
				uint32_t elen;
				memcpy(&elen, w->buf + off, sizeof elen); /* event_len comes first */
				if (elen < sizeof(struct fanotify_event_metadata) || off + elen > (size_t)n)
					break;
				rc = fan_event(w, w->buf + off, elen);
				off += elen;
			}
		} else {
			/* inotify pads names so that each event stays aligned */
			for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n && !rc;) {
				const struct inotify_event *e = (const void *)(w->buf + off);
				rc = ino_event(w, e);
				off += (ssize_t)(sizeof *e + e->len);
			}
		}
		if (rc) { /* out of memory: what was not noted is lost */
			w->lost = "the watcher ran out of memory";
			return 0;
		}
	}
}

static int cmp_pid(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return x < y ? -1 : x > y;
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

int watch_apply(watcher *w, change_set *cs, const int32_t *pids, size_t npids)
{
	watch_drain(w);
	if (w->blind)
		change_set_scan(cs, w->blind);
	if (w->lost) {
		change_set_scan(cs, w->lost);
		w->lost = NULL;
	}
	int rc = 0;
	for (size_t i = 0; i < w->pending.cap && !rc; i++) {
		const char *path = w->pending.slots[i].key;
		const pend *p = w->pending.slots[i].val;
		if (!path)
			continue;
		/* a namespace change at the path or above: listed and read whole anyway */
		if (at_or_under(&cs->ns, path))
			continue;
		if (p->kinds & EV_NS)
			rc = change_set_mark(&cs->ns, path);
		if (!rc && (p->kinds & EV_ATTRIB) && !pathmap_get(&cs->meta, path) && !pathmap_get(&cs->files, path))
			rc = change_set_mark(&cs->meta, path);
		if (rc || !(p->kinds & EV_MODIFY))
			continue;
		file_change *fc = pathmap_get(&cs->files, path);
		/* the logs name the bytes a traced process wrote; a writer that is
		 * not traced (or inotify's, which could be anyone) may have written
		 * others: the whole file is compared */
		int explained = fc && fc->whole;
		if (fc && !explained && w->kind == W_FANOTIFY && !p->many) {
			explained = 1;
			for (int j = 0; j < p->npid; j++)
				if (p->pid[j] <= 0 || !npids || !bsearch(&p->pid[j], pids, npids, sizeof *pids, cmp_pid))
					explained = 0;
		}
		if (!explained) {
			if (!(fc = change_set_file(cs, path)))
				rc = ENOMEM;
			else
				fc->whole = 1;
		}
	}
	pathmap_free(&w->pending, free);
	memset(&w->pending, 0, sizeof w->pending);
	return rc ? mtm_set_error(ENOMEM, "session") : 0;
}

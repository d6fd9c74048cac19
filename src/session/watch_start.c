/*
 * watch_start.c — the watcher started (fanotify, else inotify) and
 * stopped; watch_parts.h says how it works.
 */
#include "session/watch_parts.h"

int watch_fd(const watcher *w) { return !w ? -1 : w->epfd >= 0 ? w->epfd : w->fd; }
const char *watch_kind(const watcher *w) { return w && w->kind == W_FANOTIFY ? "fanotify" : "inotify"; }

void watch_stop(watcher *w)
{
	if (!w)
		return;
	if (w->kind == W_FANOTIFY && w->ss && w->ss->debug)
		log_msg(MTM_LOG_DEBUG, "session: watcher: %llu directory handles resolved, the cache emptied %llu times; "
		        "%llu processes outside asked what they hold for writing", (unsigned long long)w->resolved,
		        (unsigned long long)w->emptied, (unsigned long long)w->probes);
	if (w->fd >= 0)
		close(w->fd);
	if (w->ofd >= 0)
		close(w->ofd);
	if (w->epfd >= 0)
		close(w->epfd);
	for (size_t i = 0; i < w->marks.n; i++)
		close(VEC_AT(&w->marks, fs_mark, i).fd);
	vec_free(&w->marks);
	held_drop(&w->held);
	vec_free(&w->held);
	for (size_t i = 0; i < w->wds.n; i++)
		free(VEC_AT(&w->wds, wd_ent, i).path);
	vec_free(&w->wds);
	dircache_clear(w);
	pathmap_free(&w->objcache, NULL);
	pathmap_free(&w->carry, NULL);
	pathmap_free(&w->held_w, free);
	vec_free(&w->openers);
	free(w->inodes);
	free(w->stash);
	pathmap_free(&w->pending, free);
	pathmap_free(&w->early, free);
	pathmap_free(&w->explained, free);
	free(w->root);
	free(w);
}

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
	w->fd = w->ofd = w->epfd = -1;
	w->ss = ss;
	w->self = (int32_t)getpid();
	/* tests: the load of the tree's inodes waits after its first row while
	 * this file exists (a long load, events coming meanwhile) */
	w->test_gate = secure_getenv("METAMORI_TEST_INODE_LOAD_GATE");
	/* tests: a slow reader, so that a neighbour's events come faster than
	 * they are judged (tests/session: a flood outside the tree) */
	const char *slow = secure_getenv("METAMORI_TEST_DRAIN_READ_US");
	w->test_read_us = slow ? atoi(slow) : 0;
	/* tests: the removed directories these handles name answer as ones
	 * being freed (ENOMEM: the inode number being reused) in every drain,
	 * and in the barrier's settle for this long
	 * (test_a_directory_freed_at_the_barrier) */
	const char *freeing = secure_getenv("METAMORI_TEST_FREEING_US");
	w->test_freeing_us = freeing ? atol(freeing) : 0;
	w->test_freeing = secure_getenv("METAMORI_TEST_FREEING_HANDLES");
	/* tests: the opens' queue taken as overflowed at each read
	 * (test_mapping_held_when_the_opens_were_lost) */
	w->test_opens_lost = secure_getenv("METAMORI_TEST_OPENS_LOST") != NULL;
	clock_gettime(CLOCK_REALTIME, &w->inodes_since); /* (the stat cache holds files older than the session) */
	if (!(w->root = realpath(ss->s->root, NULL))) {
		free(w);
		*why = "the tree's path cannot be resolved";
		return 0;
	}
	w->rootlen = strlen(w->root);
	struct stat rst;
	if (stat(w->root, &rst)) {
		free(w->root);
		free(w);
		*why = "the tree's root cannot be read";
		return 0;
	}
	w->root_dev = rst.st_dev;
	w->root_ino = rst.st_ino;
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
			if (w->ofd >= 0)
				close(w->ofd);
			if (w->epfd >= 0)
				close(w->epfd);
			w->ofd = w->epfd = -1;
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

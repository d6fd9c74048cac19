/*
 * root.c — the root directory's own metadata (root.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "io/xattr.h"
#include "tree/root.h"
#include "tree/scan.h"
#include "util/error.h"

static void root_init(root_meta *m)
{
	memset(m, 0, sizeof *m);
	m->e.path = ".";
	m->e.kind = KIND_DIR;
}

int root_meta_live(int rootfd, root_meta *out)
{
	root_init(out);
	struct stat st;
	if (fstat(rootfd, &st))
		return errno;
	out->have_mode = out->have_rest = 1;
	out->e.mode = st.st_mode & 07777;
	out->e.uid = st.st_uid;
	out->e.gid = st.st_gid;
	out->e.mtime_s = (int64_t)st.st_mtim.tv_sec;
	out->e.mtime_nsec = (int32_t)st.st_mtim.tv_nsec;
	return xattr_read_fd(rootfd, &out->e.xattrs, &out->e.xattrs_len);
}

int root_meta_of(mtm_store *s, mtm_id k, root_meta *out)
{
	static const char sql[] = "SELECT root_mode, root_uid, root_gid, root_mtime_s, root_mtime_nsec, root_xattrs"
	                          " FROM checkpoint WHERE id=?";
	root_init(out);
	sqlite3_stmt *st;
	MTM_TRY(db_cached(s, sql, sql, &st));
	sqlite3_bind_int64(st, 1, k);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		out->have_mode = sqlite3_column_type(st, 0) != SQLITE_NULL;
		out->have_rest = out->have_mode && sqlite3_column_type(st, 1) != SQLITE_NULL;
		out->e.mode = (uint32_t)sqlite3_column_int(st, 0) & 07777;
		out->e.uid = (uint32_t)sqlite3_column_int64(st, 1);
		out->e.gid = (uint32_t)sqlite3_column_int64(st, 2);
		out->e.mtime_s = sqlite3_column_int64(st, 3);
		out->e.mtime_nsec = sqlite3_column_int(st, 4);
		const void *x = sqlite3_column_blob(st, 5);
		size_t n = (size_t)sqlite3_column_bytes(st, 5);
		if (out->have_rest && x && n) {
			if (!xattr_blob_valid(x, n) || out->e.mtime_nsec < 0 || out->e.mtime_nsec > 999999999) {
				sqlite3_reset(st);
				return mtm_set_error(MTM_ECORRUPT, "index: checkpoint %lld: its root's metadata is damaged",
				                     (long long)k);
			}
			if (!(out->e.xattrs = malloc(n))) {
				sqlite3_reset(st);
				return mtm_set_error(ENOMEM, "index");
			}
			memcpy(out->e.xattrs, x, n);
			out->e.xattrs_len = n;
		}
		rc = SQLITE_DONE;
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

int root_meta_changed(const root_meta *a, const root_meta *b)
{
	if (a->have_mode && b->have_mode && a->e.mode != b->e.mode)
		return 1;
	return a->have_rest && b->have_rest && entry_meta_changed(&a->e, &b->e);
}

void root_meta_free(root_meta *m)
{
	free(m->e.xattrs);
	root_init(m);
}

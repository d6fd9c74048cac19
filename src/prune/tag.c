/* tag.c — names for checkpoints (pinned against prune), and id parsing. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "store/lineage.h"
#include "store/store.h"
#include "util/error.h"

static int valid_name(const char *name)
{
	size_t n = strlen(name);
	if (!n || n > 64 || !strcmp(name, "head") || !strcmp(name, "HEAD"))
		return 0;
	int digits = 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (!isalnum(c) && c != '-' && c != '_' && c != '.')
			return 0;
		digits &= isdigit(c) != 0;
	}
	return !digits; /* a number would be read as an id */
}

/* The checkpoint name names now (0: none), with the writer lock held. */
static int tag_lookup(mtm_store *s, const char *name, mtm_id *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "SELECT ckpt FROM tag WHERE name=?1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	*out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

/* Names id (0: removes the name). move: a name that names another
 * checkpoint is moved; else it is refused (MTM_EEXIST), since moving it
 * silently would unpin the checkpoint it named for prune. The check and
 * the write happen under the writer lock: two callers cannot both create. */
static int tag_set(mtm_store *s, const char *name, mtm_id id, int move)
{
	if (!name || !valid_name(name))
		return mtm_set_error(MTM_EINVAL, "tag '%s': a name is 1-64 letters, digits, '-', '_' or '.', not a number "
		                                 "and not 'head'", name ? name : "");
	assert(id || !move);
	int64_t branch;
	if (id)
		MTM_TRY(checkpoint_branch(s, id, &branch));
	MTM_TRY(store_lock(s));
	mtm_id was = 0;
	int rc = id && !move ? tag_lookup(s, name, &was) : 0;
	if (rc || (id && was == id)) { /* (naming the checkpoint it names: nothing to write) */
		store_unlock(s);
		return rc;
	}
	if (was) {
		store_unlock(s);
		return mtm_set_error(MTM_EEXIST, "tag '%s': already names checkpoint %lld", name, (long long)was);
	}
	if (id && (rc = store_unmirror(s))) { /* (a name push would drop; a removal it would undo) */
		store_unlock(s);
		return rc;
	}
	sqlite3_stmt *st;
	rc = sqlite3_prepare_v2(s->db, id ? "INSERT OR REPLACE INTO tag VALUES(?1, ?2)" : "DELETE FROM tag WHERE name=?1",
	                        -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		if (id)
			sqlite3_bind_int64(st, 2, id);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		rc = rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
		if (!rc && !id && !sqlite3_changes(s->db))
			rc = mtm_set_error(MTM_EINVAL, "tag '%s': no such tag", name);
	} else {
		rc = db_error(s, rc, "index");
	}
	store_unlock(s);
	return rc;
}

int mtm_tag(mtm_store *s, const char *name, mtm_id id)
{
	MTM_NEED(s, "tag");
	return tag_set(s, name, id, 0);
}

int mtm_tag_move(mtm_store *s, const char *name, mtm_id id)
{
	MTM_NEED(s, "tag");
	if (!id)
		return mtm_set_error(MTM_EINVAL, "tag '%s': moving a tag needs a checkpoint (mtm_tag with id 0 removes it)",
		                     name ? name : "");
	return tag_set(s, name, id, 1);
}

int mtm_tags(mtm_store *s, mtm_tag_info **out, size_t *n_out)
{
	MTM_NEED(s, "tags");
	MTM_NEED(out, "tags");
	MTM_NEED(n_out, "tags");
	*out = NULL;
	*n_out = 0;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "SELECT name, ckpt FROM tag ORDER BY name", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	size_t n = 0, cap = 0;
	mtm_tag_info *v = NULL;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			mtm_tag_info *nv = realloc(v, cap * sizeof *nv);
			if (!nv) {
				rc = SQLITE_NOMEM;
				break;
			}
			v = nv;
		}
		const char *name = (const char *)sqlite3_column_text(st, 0);
		if (!(v[n].name = strdup(name ? name : ""))) {
			rc = SQLITE_NOMEM;
			break;
		}
		v[n].id = sqlite3_column_int64(st, 1);
		n++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		mtm_tags_free(v, n);
		return db_error(s, rc, "index");
	}
	*out = v;
	*n_out = n;
	return 0;
}

void mtm_tags_free(mtm_tag_info *tags, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(tags[i].name);
	free(tags);
}

int mtm_resolve(mtm_store *s, const char *text, mtm_id *out)
{
	MTM_NEED(out, "resolve");
	*out = 0;
	MTM_NEED(s, "resolve");
	MTM_NEED(text, "resolve");
	if (!strcmp(text, "head") || !strcmp(text, "HEAD")) {
		MTM_TRY(mtm_head(s, out));
		return *out ? 0 : mtm_set_error(MTM_ENOCKPT, "head: no checkpoint yet");
	}
	char *end;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (isdigit((unsigned char)*text) && !*end && !errno) { /* digits only: strtoll skips blanks, takes a sign */
		int64_t b;
		if (v <= 0)
			return mtm_set_error(MTM_ENOCKPT, "checkpoint %s: no such checkpoint", text);
		MTM_TRY(checkpoint_branch(s, v, &b));
		*out = v;
		return 0;
	}
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "SELECT ckpt FROM tag WHERE name=?", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE)
		return mtm_set_error(MTM_ENOCKPT, "%s: no such checkpoint or tag", text);
	return rc == SQLITE_ROW ? 0 : db_error(s, rc, "index");
}

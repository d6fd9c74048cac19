/* region.c — registering memory regions, and their version rows. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "store/region.h"
#include "util/error.h"

static mtm_region *find(mtm_store *s, const char *name)
{
	for (size_t i = 0; i < s->n_regions; i++)
		if (!strcmp(s->regions[i].name, name))
			return &s->regions[i];
	return NULL;
}

static int name_ok(const char *name)
{
	size_t n = name ? strnlen(name, MTM_REGION_NAME_MAX + 1) : 0;
	return n >= 1 && n <= MTM_REGION_NAME_MAX;
}

int mtm_protect(mtm_store *s, const char *name, void *ptr, size_t len)
{
	if (!s || !name_ok(name))
		return mtm_set_error(MTM_EINVAL, "protect: a region's name is 1 to %d bytes", MTM_REGION_NAME_MAX);
	if (!ptr && len)
		return mtm_set_error(MTM_EINVAL, "protect: %s: no memory given", name);
	if ((uint64_t)len > (uint64_t)1 << 46)
		return mtm_set_error(MTM_EINVAL, "protect: %s: larger than 64 TiB", name);
	mtm_region *r = find(s, name);
	if (!r) {
		mtm_region *nv = realloc(s->regions, (s->n_regions + 1) * sizeof *nv);
		if (!nv)
			return mtm_set_error(ENOMEM, "protect");
		s->regions = nv;
		r = &s->regions[s->n_regions];
		memset(r, 0, sizeof *r);
		if (!(r->name = strdup(name)))
			return mtm_set_error(ENOMEM, "protect");
		s->n_regions++;
	}
	if (r->len != len) { /* the hashes describe another length: read them again */
		free(r->hashes);
		r->hashes = NULL;
		r->hashes_at = 0;
	}
	r->ptr = ptr;
	r->len = len;
	return 0;
}

int mtm_unprotect(mtm_store *s, const char *name)
{
	mtm_region *r = s && name ? find(s, name) : NULL;
	if (!r)
		return mtm_set_error(MTM_EINVAL, "unprotect: %s: no such region", name ? name : "(null)");
	free(r->name);
	free(r->hashes);
	*r = s->regions[--s->n_regions];
	return 0;
}

void regions_free(mtm_store *s)
{
	for (size_t i = 0; i < s->n_regions; i++) {
		free(s->regions[i].name);
		free(s->regions[i].hashes);
	}
	free(s->regions);
	s->regions = NULL;
	s->n_regions = 0;
}

void region_rows_free(region_row *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

/* Rows come in (name, branch, ckpt) order: of each name's visible rows the
 * last is its version (ids grow along every path, FORMAT.md 4.2). There are
 * a few regions per store, so every row is read. */
int region_rows_at(mtm_store *s, const lineage *l, region_row **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "SELECT name, branch, ckpt, kind, size, file_id FROM region ORDER BY name, ckpt",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	region_row *v = NULL;
	size_t n = 0;
	int err = 0, have = 0, kind = 0; /* have: v[n] holds the current name's visible version */
	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		int64_t branch = sqlite3_column_int64(st, 1), ckpt = sqlite3_column_int64(st, 2);
		if (!name_ok(name)) {
			err = mtm_set_error(MTM_ECORRUPT, "%s/.metamori/index.db: a region with a bad name", s->root);
			break;
		}
		if (have && strcmp(v[n].name, name)) { /* the previous name is complete */
			if (kind)
				n++;
			else
				free(v[n].name);
			have = 0;
		}
		if (!lineage_visible(l, branch, ckpt))
			continue;
		if (!have) {
			region_row *nv = realloc(v, (n + 1) * sizeof *nv);
			if (!nv || !(nv[n].name = strdup(name))) {
				v = nv ? nv : v;
				err = mtm_set_error(ENOMEM, "index");
				break;
			}
			v = nv;
			have = 1;
		}
		kind = sqlite3_column_int(st, 3);
		v[n].ckpt = ckpt;
		v[n].size = sqlite3_column_int64(st, 4);
		v[n].file_id = sqlite3_column_int64(st, 5);
		if (kind != 0 && (kind != 1 || v[n].size < 0 || v[n].size > (int64_t)1 << 46 || v[n].file_id <= 0))
			err = mtm_set_error(MTM_ECORRUPT, "%s/.metamori/index.db: region %s: bad row at checkpoint %lld", s->root,
			                    name, (long long)ckpt);
	}
	if (have) {
		if (kind && !err)
			n++;
		else
			free(v[n].name);
	}
	sqlite3_finalize(st);
	if (!err && rc != SQLITE_DONE)
		err = db_error(s, rc, "index");
	if (err) {
		region_rows_free(v, n);
		return err;
	}
	*out = v;
	*n_out = n;
	return 0;
}

const region_row *region_row_find(const region_row *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].name, name))
			return &v[i];
	return NULL;
}

int region_put(mtm_store *s, const char *name, int64_t branch, int64_t ckpt, int kind, int64_t size, int64_t file_id)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "INSERT INTO region VALUES(?,?,?,?,?,?)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "index");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, branch);
	sqlite3_bind_int64(st, 3, ckpt);
	sqlite3_bind_int(st, 4, kind);
	sqlite3_bind_int64(st, 5, size);
	sqlite3_bind_int64(st, 6, file_id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "index");
}

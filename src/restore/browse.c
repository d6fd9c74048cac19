/*
 * browse.c — reading a checkpoint without restoring it: mtm_stat, mtm_ls and
 * mtm_file_* (metamori.h). Readers only: no lock, nothing written.
 *
 * Every lookup runs in a read transaction of its own (one snapshot of the
 * index for the rows it reads and the chunk rows they name: a concurrent gc
 * may move a chunk, FORMAT.md section 7). A file handle keeps its block map
 * between reads; a read that finds the map out of date (prune folded or
 * compacted it) loads it again under the new snapshot and retries once.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "restore/browse.h"
#include "store/index.h"
#include "store/lineage.h"
#include "store/pack.h"
#include "io/xattr.h"
#include "util/error.h"

int browse_norm_path(const char *in, char **out)
{
	*out = NULL;
	if (!in)
		in = "";
	size_t n = strlen(in);
	char *p = malloc(2 * n + 2); /* the normalized path (at most n), then in */
	if (!p)
		return mtm_set_error(ENOMEM, "path");
	size_t o = 0;
	for (const char *c = in; *c;) {
		while (*c == '/')
			c++;
		const char *e = strchr(c, '/');
		size_t len = e ? (size_t)(e - c) : strlen(c);
		if (!len)
			break;
		if (len == 2 && !strncmp(c, "..", 2)) {
			free(p);
			return mtm_set_error(MTM_EINVAL, "%s: a path in a checkpoint may not contain '..'", in);
		}
		if (!(len == 1 && *c == '.')) {
			if (o)
				p[o++] = '/';
			memcpy(p + o, c, len);
			o += len;
		}
		c += len;
	}
	p[o] = 0;
	memcpy(p + o + 1, in, n + 1);
	*out = p;
	return 0;
}

char browse_kind_char(int kind)
{
	switch (kind) {
	case KIND_FILE:
		return 'f';
	case KIND_DIR:
		return 'd';
	case KIND_SYMLINK:
		return 'l';
	case KIND_FIFO:
		return 'p';
	case KIND_SOCKET:
		return 's';
	case KIND_CHR:
		return 'c';
	case KIND_BLK:
		return 'b';
	default:
		return '?';
	}
}

/* The value length of the blob record at off (io/xattr.h: u8 name length,
 * the name, u32 LE value length, the value). */
static uint32_t xattr_vlen(const unsigned char *blob, size_t off)
{
	const unsigned char *p = blob + off + 1 + blob[off];
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* An entry's extended attributes (the blob) as one allocation: the array,
 * then each name with its NUL, then the values. NULL when none. */
static int xattrs_decode(const unsigned char *blob, size_t len, mtm_xattr **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	if (!blob || !len)
		return 0;
	if (!xattr_blob_valid(blob, len))
		return mtm_set_error(MTM_ECORRUPT, "index: damaged extended attributes");
	size_t n = 0, names_len = 0;
	for (size_t off = 0; off < len; n++) {
		names_len += (size_t)blob[off] + 1;
		off += 1 + (size_t)blob[off] + 4 + xattr_vlen(blob, off);
	}
	/* names with their NULs and the values: the blob less 4 bytes per record */
	mtm_xattr *v = malloc(n * sizeof *v + len);
	if (!v)
		return mtm_set_error(ENOMEM, "extended attributes");
	char *names = (char *)(v + n), *values = names + names_len;
	size_t i = 0;
	for (size_t off = 0; off < len; i++) {
		size_t nl = blob[off];
		uint32_t vl = xattr_vlen(blob, off);
		memcpy(names, blob + off + 1, nl);
		names[nl] = 0;
		memcpy(values, blob + off + 1 + nl + 4, vl);
		v[i] = (mtm_xattr){names, values, vl};
		names += nl + 1;
		values += vl;
		off += 1 + nl + 4 + vl;
	}
	assert(i == n && values <= (char *)(v + n) + len);
	*out = v;
	*n_out = n;
	return 0;
}

/* Moves e's fields into info (e is left empty); nlink: its names. */
static int info_from_entry(mtm_entry_info *info, entry *e, uint32_t nlink)
{
	memset(info, 0, sizeof *info);
	int rc = xattrs_decode(e->xattrs, e->xattrs_len, &info->xattrs, &info->n_xattrs);
	if (rc) {
		entry_clear(e);
		return rc;
	}
	free(e->xattrs);
	e->xattrs = NULL;
	e->xattrs_len = 0;
	info->rdev = e->kind == KIND_CHR || e->kind == KIND_BLK ? e->rdev : 0;
	info->nlink = nlink ? nlink : 1;
	info->path = e->path;
	const char *slash = strrchr(info->path, '/');
	info->name = slash ? slash + 1 : info->path;
	info->kind = browse_kind_char(e->kind);
	info->mode = e->mode & 07777;
	info->uid = e->uid;
	info->gid = e->gid;
	info->size = e->kind == KIND_FILE ? (uint64_t)e->size : e->kind == KIND_SYMLINK && e->target ? strlen(e->target) : 0;
	/* (nanoseconds since the epoch end in 2262: later times saturate) */
	info->mtime_ns = e->mtime_s > INT64_MAX / 1000000000 - 1 ? INT64_MAX
	               : e->mtime_s < INT64_MIN / 1000000000 + 1 ? INT64_MIN
	                                                          : e->mtime_s * 1000000000 + e->mtime_nsec;
	info->target = e->kind == KIND_SYMLINK ? e->target : NULL;
	if (!info->target)
		free(e->target);
	info->version = e->ver;
	e->path = e->target = NULL;
	return 0;
}

void mtm_entry_info_clear(mtm_entry_info *e)
{
	if (!e)
		return;
	free(e->path);
	free(e->target);
	free(e->xattrs);
	memset(e, 0, sizeof *e);
}

/* Looks up path (normalized) at id inside the caller's read transaction:
 * *found = 0 if it is not there. The root is found, as a directory. */
/* Another name of a hard-linked file (KIND_LINK) is that file under this
 * name: e becomes the file's entry with e's path. Other kinds stay. On an
 * error e is cleared. */
static int resolve_link(mtm_store *s, const lineage *l, entry *e)
{
	if (e->kind != KIND_LINK)
		return 0;
	entry f;
	int found, rc = index_entry_at(s, e->target, l, &f, &found);
	if (!rc && (!found || f.kind != KIND_FILE)) {
		if (found)
			entry_clear(&f);
		rc = mtm_set_error(MTM_ECORRUPT, "index: hard link '%s' names no file", e->path);
	}
	if (rc) {
		entry_clear(e);
		return rc;
	}
	free(f.path);
	f.path = e->path;
	e->path = NULL;
	entry_clear(e);
	*e = f;
	return 0;
}

/* The names e's file has at l (before resolve_link: a KIND_LINK's target
 * is its group's first name, the KIND_FILE that holds the content). */
static int names_of(mtm_store *s, const lineage *l, const entry *e, uint32_t *out)
{
	*out = 1;
	const char *first = e->kind == KIND_LINK ? e->target : e->kind == KIND_FILE ? e->path : NULL;
	uint32_t others = 0;
	if (first)
		MTM_TRY(index_link_names(s, first, l, &others));
	*out = 1 + others;
	return 0;
}

/* nlink (may be NULL): the names of the entry's file (names_of). */
static int lookup(mtm_store *s, const lineage *l, const char *path, entry *out, int *found, uint32_t *nlink)
{
	memset(out, 0, sizeof *out);
	if (!*path) {
		*found = 1;
		out->kind = KIND_DIR;
		out->path = strdup("");
		return out->path ? 0 : mtm_set_error(ENOMEM, "stat");
	}
	MTM_TRY(index_entry_at(s, path, l, out, found));
	int rc = *found && nlink ? names_of(s, l, out, nlink) : 0;
	if (rc) {
		entry_clear(out);
		*found = 0;
		return rc;
	}
	rc = *found ? resolve_link(s, l, out) : 0;
	if (rc)
		*found = 0;
	return rc;
}

int browse_begin(mtm_store *s, mtm_id id, lineage *l)
{
	memset(l, 0, sizeof *l);
	if (id <= 0)
		return mtm_set_error(MTM_ENOCKPT, "checkpoint %lld: no such checkpoint", (long long)id);
	int rc = db_exec(s, "BEGIN");
	if (rc)
		return rc;
	if ((rc = lineage_of(s, id, l))) {
		db_exec(s, "COMMIT");
		return rc;
	}
	return 0;
}

void browse_end(mtm_store *s, lineage *l)
{
	lineage_free(l);
	db_exec(s, "COMMIT");
}

int mtm_stat(mtm_store *s, mtm_id id, const char *path, mtm_entry_info *out)
{
	MTM_NEED(s, "stat");
	MTM_NEED(out, "stat");
	memset(out, 0, sizeof *out);
	char *p;
	MTM_TRY(browse_norm_path(path, &p));
	lineage l;
	int rc = browse_begin(s, id, &l), found = 0;
	if (rc) {
		free(p);
		return rc;
	}
	entry e;
	uint32_t nlink = 1;
	rc = lookup(s, &l, p, &e, &found, &nlink);
	browse_end(s, &l);
	if (!rc && !found)
		rc = mtm_set_error(ENOENT, "%s: not in checkpoint %lld", browse_asked(p), (long long)id);
	if (!rc)
		rc = info_from_entry(out, &e, nlink);
	else if (found)
		entry_clear(&e);
	free(p);
	return rc;
}

void mtm_ls_free(mtm_entry_info *list, size_t n)
{
	for (size_t i = 0; list && i < n; i++)
		mtm_entry_info_clear(&list[i]);
	free(list);
}

int mtm_ls(mtm_store *s, mtm_id id, const char *dir, mtm_entry_info **out, size_t *n_out)
{
	MTM_NEED(s, "ls");
	MTM_NEED(out, "ls");
	MTM_NEED(n_out, "ls");
	*out = NULL;
	*n_out = 0;
	char *p;
	MTM_TRY(browse_norm_path(dir, &p));
	lineage l;
	int rc = browse_begin(s, id, &l), found = 0;
	if (rc) {
		free(p);
		return rc;
	}
	entry d;
	vec under = VEC_INIT(entry);
	if ((rc = lookup(s, &l, p, &d, &found, NULL)))
		goto done;
	if (!found) {
		rc = mtm_set_error(ENOENT, "%s: not in checkpoint %lld", browse_asked(p), (long long)id);
		goto done;
	}
	int is_dir = d.kind == KIND_DIR;
	entry_clear(&d);
	if (!is_dir) {
		rc = mtm_set_error(ENOTDIR, "%s: not a directory in checkpoint %lld", browse_asked(p), (long long)id);
		goto done;
	}
	if ((rc = *p ? index_entries_under(s, p, &l, &under) : index_load_tree(s, id, &under)))
		goto done;
	/* direct children only: no '/' past the directory's own prefix */
	size_t skip = *p ? strlen(p) + 1 : 0, n = 0;
	mtm_entry_info *v = calloc(under.n ? under.n : 1, sizeof *v);
	if (!v) {
		rc = mtm_set_error(ENOMEM, "ls");
		goto done;
	}
	for (size_t i = 0; i < under.n; i++) {
		entry *e = &VEC_AT(&under, entry, i);
		assert(!skip || (!strncmp(e->path, p, skip - 1) && e->path[skip - 1] == '/'));
		if (strchr(e->path + skip, '/'))
			continue;
		uint32_t nlink;
		if ((rc = names_of(s, &l, e, &nlink)) || (rc = resolve_link(s, &l, e)) ||
		    (rc = info_from_entry(&v[n], e, nlink))) {
			mtm_ls_free(v, n);
			goto done;
		}
		n++;
	}
	*out = v;
	*n_out = n;
done:
	entries_free(&under);
	browse_end(s, &l);
	free(p);
	return rc;
}

struct mtm_file {
	mtm_store *s;
	mtm_id id;
	char *path;
	int64_t file_id, size;
	vec map; /* of blockref, sorted by blkno */
	pack_reader pr;
};

/* (Re)loads f's entry and block map in the caller's read transaction. */
static int file_load(mtm_file *f, const lineage *l)
{
	entry e;
	int found = 0;
	MTM_TRY(lookup(f->s, l, f->path, &e, &found, NULL));
	if (!found)
		return mtm_set_error(ENOENT, "%s: not in checkpoint %lld", browse_asked(f->path), (long long)f->id);
	int kind = e.kind;
	f->file_id = e.file_id;
	f->size = e.size;
	entry_clear(&e);
	if (kind == KIND_DIR)
		return mtm_set_error(EISDIR, "%s: is a directory in checkpoint %lld", browse_asked(f->path), (long long)f->id);
	if (kind != KIND_FILE)
		return mtm_set_error(EINVAL, "%s: not a regular file in checkpoint %lld", browse_asked(f->path), (long long)f->id);
	vec_free(&f->map);
	f->map = (vec)VEC_INIT(blockref);
	return index_file_map(f->s, f->file_id, l, &f->map);
}

void mtm_file_close(mtm_file *f)
{
	if (!f)
		return;
	pack_reader_free(&f->pr);
	vec_free(&f->map);
	free(f->path);
	free(f);
}

int mtm_file_open(mtm_file **out, mtm_store *s, mtm_id id, const char *path)
{
	MTM_NEED(out, "open");
	*out = NULL;
	MTM_NEED(s, "open");
	mtm_file *f = calloc(1, sizeof *f);
	if (!f)
		return mtm_set_error(ENOMEM, "open");
	f->s = s;
	f->id = id;
	f->map = (vec)VEC_INIT(blockref);
	int rc = browse_norm_path(path, &f->path);
	if (rc) {
		free(f);
		return rc;
	}
	if ((rc = pack_reader_init(&f->pr, s))) {
		free(f->path);
		vec_free(&f->map);
		free(f);
		return rc;
	}
	lineage l;
	if (!(rc = browse_begin(s, id, &l))) {
		rc = file_load(f, &l);
		browse_end(s, &l);
	}
	if (rc) {
		mtm_file_close(f);
		return rc;
	}
	*out = f;
	return 0;
}

uint64_t mtm_file_size(const mtm_file *f) { return f ? (uint64_t)f->size : 0; }

/* Copies [off, off + len) (within the file) from f's map. */
static int file_copy(mtm_file *f, unsigned char *buf, size_t len, int64_t off)
{
	unsigned char block[MTM_BLOCK];
	while (len) {
		int64_t blkno = off / MTM_BLOCK, in = off % MTM_BLOCK;
		size_t take = MTM_BLOCK - (size_t)in < len ? MTM_BLOCK - (size_t)in : len;
		const blockref *b = file_map_find(&f->map, blkno);
		if (!b || !b->chunk)
			memset(buf, 0, take);
		else {
			MTM_TRY(pack_read_block(&f->pr, b->chunk, b->boff, b->hash, block));
			memcpy(buf, block + in, take);
		}
		buf += take;
		off += (int64_t)take;
		len -= take;
	}
	return 0;
}

int mtm_file_pread(mtm_file *f, void *buf, size_t len, uint64_t off, size_t *got)
{
	MTM_NEED(got, "read");
	*got = 0;
	MTM_NEED(f, "read");
	if (len)
		MTM_NEED(buf, "read");
	if (off >= (uint64_t)f->size || !len)
		return 0;
	if (len > (uint64_t)f->size - off)
		len = (size_t)((uint64_t)f->size - off);
	lineage l;
	MTM_TRY(browse_begin(f->s, f->id, &l));
	int rc = file_copy(f, buf, len, (int64_t)off);
	if (rc && rc != ENOMEM) { /* a prune may have moved the rows: load them again, once */
		int64_t old_size = f->size;
		if (!(rc = file_load(f, &l)) && f->size == old_size)
			rc = file_copy(f, buf, len, (int64_t)off);
		else if (!rc)
			rc = mtm_set_error(MTM_ECORRUPT, "%s: changed size in checkpoint %lld", browse_asked(f->path), (long long)f->id);
	}
	browse_end(f->s, &l);
	if (!rc)
		*got = len;
	return rc;
}

/*
 * browse.h — reading a checkpoint without restoring it (the public side is
 * mtm_stat, mtm_ls and mtm_file_* in metamori.h); shared with the partial
 * restore, which takes paths in the same form.
 */
#ifndef MTM_RESTORE_BROWSE_H
#define MTM_RESTORE_BROWSE_H
#include "metamori.h"
#include "store/lineage.h"

/* A path as the index spells it: no leading "/" or "./", no "." or empty
 * components, no trailing "/"; "" for the root. ".." is MTM_EINVAL.
 * *out is malloc'ed, and holds the path as given after its NUL
 * (browse_asked): messages name what the user typed ("/etc/passwd", not
 * "etc/passwd", which reads as if the tree had been looked in for it). */
int browse_norm_path(const char *in, char **out);
/* The path as given to browse_norm_path, of its normalized form norm ("."
 * for none). */
static inline const char *browse_asked(const char *norm)
{
	const char *a = norm + __builtin_strlen(norm) + 1;
	return *a ? a : ".";
}
/* The public kind letter of an entry kind ('?' for one this build does not name). */
char browse_kind_char(int kind);
/* Opens a read transaction and the lineage of checkpoint id (MTM_ENOCKPT);
 * browse_end closes both. */
int browse_begin(mtm_store *s, mtm_id id, lineage *l);
void browse_end(mtm_store *s, lineage *l);
#endif

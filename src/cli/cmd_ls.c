/* cmd_ls.c — metamori ls ID [PATH] [--json]: a directory as it was at a checkpoint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/json.h"
#include "cli/quote.h"

const char usage_ls[] =
	"usage: metamori ls ID [PATH] [--json]\n\n"
	"List the entries of directory PATH (default: the root) as it was at\n"
	"checkpoint ID, without restoring anything. PATH is relative to the root\n"
	"of the tree. One line per entry: kind (d directory, f file, l symlink,\n"
	"p FIFO, s socket, c and b devices), mode, size, modification time, name\n"
	"('-> TARGET' for a symlink). A PATH that is a file lists that file alone.\n\n"
	"  --json    one JSON array, for scripts: every recorded attribute of each\n"
	"            entry (also uid, gid, the count of names of a hard-linked\n"
	"            file, a device's number, extended attributes in base64)\n";

static void json_entry(json *j, const mtm_entry_info *e)
{
	char kind[2] = {e->kind, 0};
	json_obj(j);
	json_kstr(j, "name", e->name);
	json_kstr(j, "path", e->path);
	json_kstr(j, "kind", kind);
	json_kuint(j, "mode", e->mode);
	json_kuint(j, "uid", e->uid);
	json_kuint(j, "gid", e->gid);
	json_kuint(j, "size", e->size);
	json_kint(j, "mtime_ns", e->mtime_ns);
	json_kint(j, "version", e->version);
	json_kuint(j, "nlink", e->nlink);
	json_kuint(j, "rdev", e->rdev);
	if (e->target)
		json_kstr(j, "target", e->target);
	json_key(j, "xattrs");
	json_arr(j);
	for (size_t i = 0; i < e->n_xattrs; i++) {
		json_obj(j);
		json_kstr(j, "name", e->xattrs[i].name);
		json_key(j, "value");
		json_base64(j, e->xattrs[i].value, e->xattrs[i].len);
		json_obj_end(j);
	}
	json_arr_end(j);
	json_obj_end(j);
}

/* The name and the target quoted as status quotes them: one line per
 * entry, and no escape sequence from a name reaches the terminal. */
static void print_entry(const mtm_entry_info *e)
{
	char when[32];
	printf("%c %04o %10llu  %s  ", e->kind, (unsigned)e->mode, (unsigned long long)e->size,
	       human_time(when, sizeof when, e->mtime_ns));
	quote_put(stdout, e->name);
	if (e->target) {
		fputs(" -> ", stdout);
		quote_put(stdout, e->target);
	}
	putchar('\n');
}

int cmd_ls(int argc, char **argv)
{
	int as_json = 0, npos = 0;
	const char *pos[2] = {NULL, NULL};
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			as_json = 1;
		else if (npos < 2 && (argv[i][0] != '-' || !argv[i][1]))
			pos[npos++] = argv[i];
		else
			return cli_error(argv[i], "unexpected argument (see 'metamori ls --help')");
	}
	if (npos < 1)
		return cli_error("ls", "usage: metamori ls ID [PATH] [--json]");
	mtm_store *s;
	if (cli_open(&s))
		return 1;
	mtm_id id;
	int rc = 1;
	if (!cli_parse_id(s, pos[0], &id)) {
		mtm_entry_info one, *v = NULL;
		size_t n = 0;
		/* a file is listed alone, as ls(1) does */
		rc = mtm_stat(s, id, pos[1] ? pos[1] : "", &one);
		if (!rc && one.kind == 'd') {
			mtm_entry_info_clear(&one);
			rc = mtm_ls(s, id, pos[1] ? pos[1] : "", &v, &n);
		} else if (!rc) {
			v = &one;
			n = 1;
		}
		if (rc) {
			rc = cli_fail(rc);
		} else {
			json j;
			if (as_json) {
				json_init(&j, stdout);
				json_arr(&j);
			}
			for (size_t i = 0; i < n; i++)
				if (as_json)
					json_entry(&j, &v[i]);
				else
					print_entry(&v[i]);
			if (as_json) {
				json_arr_end(&j);
				json_done(&j);
			}
			if (v == &one)
				mtm_entry_info_clear(&one);
			else
				mtm_ls_free(v, n);
		}
	}
	mtm_close(s);
	return rc;
}

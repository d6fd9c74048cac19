/* cmd_ls.c — metamori ls ID [PATH] [--json]: a directory as it was at a checkpoint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"

const char usage_ls[] =
	"usage: metamori ls ID [PATH] [--json]\n\n"
	"List the entries of directory PATH (default: the root) as it was at\n"
	"checkpoint ID, without restoring anything. PATH is relative to the root\n"
	"of the tree. One line per entry: kind (d directory, f file, l symlink),\n"
	"mode, size, modification time, name ('-> TARGET' for a symlink). A PATH\n"
	"that is a file lists that file alone.\n\n"
	"  --json    one JSON array, for scripts\n";

static void print_entry(const mtm_entry_info *e, int json, int first)
{
	if (json) {
		printf("%s\n  {\"name\": ", first ? "" : ",");
		json_string(e->name);
		printf(", \"path\": ");
		json_string(e->path);
		printf(", \"kind\": \"%c\", \"mode\": %u, \"uid\": %u, \"gid\": %u, \"size\": %llu, \"mtime_ns\": %lld, "
		       "\"version\": %lld",
		       e->kind, (unsigned)e->mode, (unsigned)e->uid, (unsigned)e->gid, (unsigned long long)e->size,
		       (long long)e->mtime_ns, (long long)e->version);
		if (e->target) {
			printf(", \"target\": ");
			json_string(e->target);
		}
		printf("}");
		return;
	}
	char when[32];
	printf("%c %04o %10llu  %s  %s%s%s\n", e->kind, (unsigned)e->mode, (unsigned long long)e->size,
	       human_time(when, sizeof when, e->mtime_ns), e->name, e->target ? " -> " : "", e->target ? e->target : "");
}

int cmd_ls(int argc, char **argv)
{
	int json = 0, npos = 0;
	const char *pos[2] = {NULL, NULL};
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
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
			if (json)
				printf("[");
			for (size_t i = 0; i < n; i++)
				print_entry(&v[i], json, i == 0);
			if (json)
				printf("%s]\n", n ? "\n" : "");
			if (v == &one)
				mtm_entry_info_clear(&one);
			else
				mtm_ls_free(v, n);
		}
	}
	mtm_close(s);
	return rc;
}

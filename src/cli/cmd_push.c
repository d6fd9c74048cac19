/* cmd_push.c — metamori push [-q] DIR: mirror the store into DIR/.metamori. */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/quote.h"

const char usage_push[] =
	"usage: metamori push [-q] DIR\n\n"
	"Mirror the store into DIR/.metamori (creating DIR), for shared storage:\n"
	"a snapshot of the index and, of the pack files, only the committed bytes\n"
	"the mirror does not hold yet. The mirror is a store: 'metamori -C DIR log'\n"
	"reads it, and 'metamori -C DIR push TREE' recreates the store of a tree\n"
	"whose .metamori is gone (then 'metamori -C TREE restore ID'). An\n"
	"interrupted push leaves the previous mirror whole. DIR/.metamori must be\n"
	"new or a mirror: another store is never overwritten.\n\n"
	"  -q, --quiet   print nothing\n";

int cmd_push(int argc, char **argv)
{
	int quiet = argc == 3 && (!strcmp(argv[1], "-q") || !strcmp(argv[1], "--quiet"));
	if (argc != 2 + quiet || argv[argc - 1][0] == '-')
		return cli_error("push", argc < 2 ? "no directory given (see 'metamori push --help')"
		                                  : "bad arguments (see 'metamori push --help')");
	mtm_store *s;
	if (cli_open(&s))
		return 1;
	mtm_push_stats st;
	mtm_set_progress(s, cli_progress, NULL);
	int rc = mtm_push(s, argv[argc - 1], &st);
	cli_progress_end();
	mtm_close(s);
	if (rc)
		return cli_fail(rc);
	if (!quiet) {
		char a[32], b[32];
		fputs("pushed to ", stdout);
		quote_put(stdout, argv[argc - 1]);
		printf(": %s of %llu pack%s, %s index%s\n", human_size(a, sizeof a, st.bytes),
		       (unsigned long long)st.packs, st.packs == 1 ? "" : "s", human_size(b, sizeof b, st.index_bytes),
		       st.packs_removed ? " (old packs removed)" : "");
	}
	return 0;
}

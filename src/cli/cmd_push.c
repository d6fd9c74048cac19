/* cmd_push.c — metamori push [-q] DIR: mirror the store into DIR/.metamori. */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/quote.h"

const char usage_push[] =
	"usage: metamori push [-q] DIR\n\n"
	"Mirror the store into DIR/.metamori (creating DIR), for shared storage:\n"
	"of the index, the rows added since the last push (the whole index the\n"
	"first time and after a prune or pack rewrite), and of the pack files, only\n"
	"the committed bytes the mirror does not hold yet. The mirror is a store:\n"
	"'metamori -C DIR log' reads it, and 'metamori -C DIR push TREE' recreates\n"
	"the store of a tree whose .metamori is gone (then 'metamori -C TREE\n"
	"restore ID'). An interrupted push leaves the previous mirror whole.\n"
	"DIR/.metamori must be new or a mirror: another store is never\n"
	"overwritten, nor a mirror that took a checkpoint, a restore or a tag of\n"
	"its own (it is a store from then on).\n\n"
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
	int rc = mtm_push(s, cli_path(argv[argc - 1]), &st);
	cli_progress_end();
	mtm_close(s);
	if (rc)
		return cli_fail(rc);
	if (!quiet) {
		char a[32], b[32];
		fputs("pushed to ", stdout);
		quote_put(stdout, argv[argc - 1]);
		printf(": %s of %llu pack%s, ", human_size(a, sizeof a, st.bytes), (unsigned long long)st.packs,
		       st.packs == 1 ? "" : "s");
		if (!st.index_whole)
			printf("%llu new index row%s", (unsigned long long)st.index_rows, st.index_rows == 1 ? "" : "s");
		else
			printf("%s whole index (%s)", human_size(b, sizeof b, st.index_bytes),
			       st.index_whole == MTM_PUSH_WHOLE_NEW         ? "a new mirror"
			       : st.index_whole == MTM_PUSH_WHOLE_REWRITTEN ? "history rewritten since the last push"
			                                                    : "the mirror's index had another format");
		puts(st.packs_removed ? " (old packs removed)" : "");
	}
	return 0;
}

/* cmd_diff.c — metamori diff A [B] */
#include <getopt.h>
#include <stdio.h>
#include "cli/changes.h"
#include "cli/cli.h"

const char usage_diff[] =
	"usage: metamori diff [--json | -z] [--exit-code] A [B]\n\n"
	"List the paths that differ between checkpoints A and B (default: the live\n"
	"tree), in path order:\n"
	"  A added   D removed   M content changed   T type changed   m metadata only\n"
	"The size after M counts the file's bytes in blocks that differ. Odd names\n"
	"are quoted as git quotes them.\n\n"
	"  --json        one JSON document (see metamori(1), JSON OUTPUT)\n"
	"  -z            'K NAME' records ended by NUL, names as they are\n"
	"  --exit-code   exit with 2 if anything differs, 0 if nothing does\n";

int cmd_diff(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, 0, 'j'},
	                                     {"exit-code", no_argument, 0, 'E'},
	                                     {0, 0, 0, 0}};
	int mode = CHANGES_TEXT, exit_code = 0, c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":z", opts, NULL)) != -1) {
		if (c == 'j')
			mode = CHANGES_JSON;
		else if (c == 'z')
			mode = CHANGES_NUL;
		else if (c == 'E')
			exit_code = 1;
		else
			return cli_option_error("diff", c, argv);
	}
	int nargs = argc - optind;
	if (nargs < 1 || nargs > 2)
		return cli_error("diff", "usage: metamori diff [--json | -z] [--exit-code] A [B]");
	mtm_store *s;
	if (cli_open(&s))
		return 1;
	mtm_id a, b = MTM_LIVE;
	int rc = 1;
	changes_out out = {0};
	if (!cli_parse_id(s, argv[optind], &a) && (nargs < 2 || !cli_parse_id(s, argv[optind + 1], &b))) {
		changes_begin(&out, mode, a, b);
		rc = mtm_diff(s, a, b, NULL, changes_put, &out);
		cli_progress_end();
		if (rc) {
			changes_discard(&out);
			fflush(stdout);
			rc = cli_fail(rc);
		} else {
			changes_end(&out);
			rc = exit_code && out.n ? CLI_EXIT_CHANGED : CLI_EXIT_OK;
		}
	}
	mtm_close(s);
	return rc;
}

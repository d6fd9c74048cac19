/* cmd_status.c — metamori status: the live tree against the head. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include "cli/changes.h"
#include "cli/cli.h"

const char usage_status[] =
	"usage: metamori status [--exclude PATTERN]... [--json | -z] [--exit-code]\n\n"
	"Show what changed in the tree since the current head checkpoint:\n"
	"  A added   D removed   M content changed   T type changed   m metadata only\n"
	"The size after M counts the file's bytes in blocks that differ (as diff and\n"
	"checkpoint count them). Odd names are quoted as git quotes them.\n\n"
	"  --exclude PATTERN  leave matching paths out (gitignore syntax)\n"
	"  --json             one JSON document (see metamori(1), JSON OUTPUT)\n"
	"  -z                 'K NAME' records ended by NUL, names as they are\n"
	"  --exit-code        exit with 2 if anything changed, 0 if nothing did\n";

int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {{"exclude", required_argument, 0, 'x'},
	                                     {"json", no_argument, 0, 'j'},
	                                     {"exit-code", no_argument, 0, 'E'},
	                                     {0, 0, 0, 0}};
	mtm_diff_opts o = MTM_DIFF_OPTS_INIT;
	/* as many patterns as the command line holds */
	const char **ex = calloc((size_t)argc + 1, sizeof *ex);
	if (!ex)
		return cli_error("status", "out of memory");
	int mode = CHANGES_TEXT, exit_code = 0, c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":z", opts, NULL)) != -1) {
		if (c == 'x')
			ex[o.n_excludes++] = optarg;
		else if (c == 'j')
			mode = CHANGES_JSON;
		else if (c == 'z')
			mode = CHANGES_NUL;
		else if (c == 'E')
			exit_code = 1;
		else {
			free(ex);
			return cli_option_error("status", c, argv);
		}
	}
	if (optind < argc) {
		free(ex);
		return cli_error(argv[optind], "unexpected argument (see 'metamori status --help')");
	}
	o.excludes = ex;
	mtm_store *s;
	if (cli_open(&s)) {
		free(ex);
		return 1;
	}
	mtm_id head;
	changes_out out;
	mtm_set_progress(s, cli_progress, NULL); /* rehashing changed files */
	int rc = mtm_head(s, &head), begun = 0;
	if (!rc) {
		changes_begin(&out, mode, head, MTM_LIVE);
		begun = 1;
		rc = mtm_diff(s, head, MTM_LIVE, &o, changes_put, &out);
	}
	cli_progress_end();
	free(ex);
	if (rc) {
		if (begun)
			changes_discard(&out);
		fflush(stdout);
		rc = cli_fail(rc);
		mtm_close(s);
		return rc;
	}
	changes_end(&out);
	if (mode == CHANGES_TEXT && !head)
		printf("no checkpoint yet%s\n", out.n ? " (everything above is new)" : "");
	else if (mode == CHANGES_TEXT && !out.n)
		printf("nothing changed since checkpoint %lld\n", (long long)head);
	mtm_close(s);
	return exit_code && out.n ? CLI_EXIT_CHANGED : CLI_EXIT_OK;
}

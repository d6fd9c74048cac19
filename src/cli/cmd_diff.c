/* cmd_diff.c — metamori diff A [B] */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"

const char usage_diff[] =
	"usage: metamori diff A [B]\n\n"
	"List the paths that differ between checkpoints A and B (default: the live\n"
	"tree), in path order:\n"
	"  A added   D removed   M content changed   T type changed   m metadata only\n";

static int print_change(void *arg, const mtm_change *c)
{
	(void)arg;
	if (c->kind == 'M' && c->bytes) {
		char b[32];
		printf("%c %s (%s)\n", c->kind, c->path, human_size(b, sizeof b, c->bytes));
	} else {
		printf("%c %s\n", c->kind, c->path);
	}
	return 0;
}

int cmd_diff(int argc, char **argv)
{
	if (argc < 2 || argc > 3)
		return cli_error("diff", "usage: metamori diff A [B]");
	mtm_store *s;
	if (cli_open(&s))
		return 1;
	mtm_id a, b = MTM_LIVE;
	int rc = 1;
	if (!cli_parse_id(s, argv[1], &a) && (argc < 3 || !cli_parse_id(s, argv[2], &b))) {
		rc = mtm_diff(s, a, b, NULL, print_change, NULL);
		rc = rc ? cli_fail(rc) : 0;
	}
	mtm_close(s);
	return rc;
}

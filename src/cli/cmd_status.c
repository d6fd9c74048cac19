/* cmd_status.c — metamori status: the live tree against the head. */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"

const char usage_status[] =
	"usage: metamori status [--exclude PATTERN]...\n\n"
	"Show what changed in the tree since the current head checkpoint:\n"
	"  A added   D removed   M content changed   T type changed   m metadata only\n";

static int print_change(void *arg, const mtm_change *c)
{
	int *n = arg;
	(*n)++;
	if (c->kind == 'M' && c->bytes) {
		char b[32];
		printf("%c %s (%s)\n", c->kind, c->path, human_size(b, sizeof b, c->bytes));
	} else {
		printf("%c %s\n", c->kind, c->path);
	}
	return 0;
}

int cmd_status(int argc, char **argv)
{
	const char *ex[64];
	mtm_diff_opts o = MTM_DIFF_OPTS_INIT;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--exclude") && i + 1 < argc && o.n_excludes < 64)
			ex[o.n_excludes++] = argv[++i];
		else
			return cli_error(argv[i], "unexpected argument (see 'metamori status --help')");
	}
	o.excludes = ex;
	mtm_store *s;
	if (cli_open(&s))
		return 1;
	mtm_id head;
	int rc = mtm_head(s, &head), n = 0;
	if (!rc)
		rc = mtm_diff(s, head, MTM_LIVE, &o, print_change, &n);
	if (rc) {
		rc = cli_fail(rc);
		mtm_close(s);
		return rc;
	}
	if (!head)
		printf("no checkpoint yet%s\n", n ? " (everything above is new)" : "");
	else if (!n)
		printf("nothing changed since checkpoint %lld\n", (long long)head);
	mtm_close(s);
	return 0;
}

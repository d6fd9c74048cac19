/* cmd_init.c — metamori init [DIR] */
#include <stdio.h>
#include "cli/cli.h"

const char usage_init[] =
	"usage: metamori init [DIR]\n\n"
	"Create the store DIR/.metamori for the tree at DIR (default: the current\n"
	"directory, or -C DIR). The store is never part of the tracked tree.\n";

int cmd_init(int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && argv[1][0] == '-'))
		return cli_error("init", "usage: metamori init [DIR]");
	const char *dir = argc == 2 ? argv[1] : cli_dir ? cli_dir : ".";
	mtm_store *s;
	int rc = mtm_init(&s, dir);
	if (rc)
		return cli_fail(rc);
	printf("initialized empty metamori store in %s/.metamori\n", mtm_root(s));
	mtm_close(s);
	return 0;
}

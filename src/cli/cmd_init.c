/* cmd_init.c — metamori init [DIR] */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "cli/cli.h"

const char usage_init[] =
	"usage: metamori init [DIR]\n\n"
	"Create the store DIR/.metamori for the tree at DIR (default: the current\n"
	"directory, or -C DIR). The store is never part of the tracked tree, nor of\n"
	"the tree of a store in a directory above (init says so).\n";

/* A store in a directory that another store's tree holds is left out of
 * that tree's checkpoints (FORMAT.md 1); the user should know. */
static void note_outer_store(const char *root)
{
	char dir[PATH_MAX];
	if (strlen(root) >= sizeof dir)
		return;
	strcpy(dir, root);
	for (char *slash; (slash = strrchr(dir, '/'));) {
		*slash = 0;
		char probe[PATH_MAX + 16];
		snprintf(probe, sizeof probe, "%s/.metamori", *dir ? dir : "");
		struct stat st;
		if (!lstat(probe, &st) && S_ISDIR(st.st_mode)) {
			char line[3 * PATH_MAX];
			snprintf(line, sizeof line, "note: %s is inside the tree of the store in %s, which leaves this store "
			         "out of its checkpoints (the files of %s stay in them)", root, *dir ? dir : "/", root);
			cli_log(NULL, 0, line); /* (paths escaped) */
			return;
		}
	}
}

int cmd_init(int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && argv[1][0] == '-'))
		return cli_error("init", "usage: metamori init [DIR]");
	const char *dir = argc == 2 ? cli_path(argv[1]) : cli_dir ? cli_dir : ".";
	mtm_store *s;
	int rc = mtm_init(&s, dir);
	if (rc)
		return cli_fail(rc);
	printf("initialized empty metamori store in %s/.metamori\n", mtm_root(s));
	note_outer_store(mtm_root(s));
	mtm_close(s);
	return 0;
}

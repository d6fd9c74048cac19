/* main.c — the metamori command: global options and dispatch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"

int cmd_init(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_log(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_tag(int argc, char **argv);
int cmd_du(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_restart(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_cat(int argc, char **argv);
int cmd_mount(int argc, char **argv);
extern const char usage_init[], usage_checkpoint[], usage_status[], usage_log[], usage_diff[], usage_restore[],
	usage_verify[], usage_prune[], usage_tag[], usage_du[], usage_ls[], usage_cat[], usage_mount[], usage_push[];
extern const char usage_run[], usage_restart[];

static const cli_command commands[] = {
	{"init", cmd_init, "create a store for a directory tree", usage_init},
	{"checkpoint", cmd_checkpoint, "record what changed since the last checkpoint", usage_checkpoint},
	{"status", cmd_status, "show what changed since the last checkpoint", usage_status},
	{"log", cmd_log, "list checkpoints as a tree", usage_log},
	{"diff", cmd_diff, "show files that differ between checkpoints", usage_diff},
	{"restore", cmd_restore, "make the tree exactly as it was at a checkpoint", usage_restore},
	{"ls", cmd_ls, "list a directory as it was at a checkpoint", usage_ls},
	{"cat", cmd_cat, "print a file as it was at a checkpoint", usage_cat},
	{"mount", cmd_mount, "browse checkpoints as a read-only file system (FUSE)", usage_mount},
	{"verify", cmd_verify, "check the store for damage", usage_verify},
	{"prune", cmd_prune, "drop old checkpoints and reclaim their space", usage_prune},
	{"tag", cmd_tag, "name checkpoints (and pin them against prune)", usage_tag},
	{"du", cmd_du, "show the space each checkpoint uses", usage_du},
	{"push", cmd_push, "mirror the store into another directory (incremental)", usage_push},
	{"run", cmd_run, "run a command with transparent tracking of the tree", usage_run},
	{"restart", cmd_restart, "restart a program from a paired (DMTCP) checkpoint", usage_restart},
};

const cli_command *cli_find(const char *name)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: metamori [-C DIR] COMMAND [ARGS]\n\n"
	           "Incremental file checkpointing: record only what changed, restore any checkpoint.\n\n"
	           "Commands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nOptions:\n"
	           "  -C DIR      run as if started in DIR\n"
	           "  -h, --help  show this help ('metamori COMMAND --help' for a command)\n"
	           "  --version   print the version\n\n"
	           "The store is DIR/.metamori, found by walking up from the working directory.\n"
	           "See metamori(1) for details.\n");
}

static int run(int argc, char **argv)
{
	mtm_set_log_handler(cli_log, NULL);
	/* our own process: a warm scan hashes the page cache in place; on a
	 * kernel without cachestat(2) it copies, as before */
	(void)mtm_set_mapped_reads(getenv("METAMORI_NO_MAP") == NULL);
	int i = 1;
	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "-C")) {
			if (i + 1 >= argc)
				return cli_error("-C", "needs a directory");
			cli_dir = argv[i + 1];
			i += 2;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--version")) {
			printf("metamori %s\n", mtm_version());
			return 0;
		} else {
			return cli_error(argv[i], "unknown option (see 'metamori --help')");
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 1;
	}
	if (!strcmp(argv[i], "help")) {
		const cli_command *c = i + 1 < argc ? cli_find(argv[i + 1]) : NULL;
		if (c)
			printf("%s", c->usage);
		else
			usage(stdout);
		return 0;
	}
	const cli_command *c = cli_find(argv[i]);
	if (!c)
		return cli_error(argv[i], "unknown command (see 'metamori --help')");
	/* run: a --help after CMD is CMD's (cmd_run handles its own) */
	if (strcmp(c->name, "run") && cli_wants_help(c, argc - i, argv + i))
		return 0;
	return c->run(argc - i, argv + i);
}

/* A report that could not be written (stdout closed, a full disk, a pipe
 * whose reader left with SIGPIPE ignored) is a failure the caller must see:
 * exit would flush it, drop the error and exit 0. The command's work
 * stands; only the exit status and one line say the report was lost. */
int main(int argc, char **argv)
{
	int rc = run(argc, argv);
	errno = 0;
	if (fflush(stdout) || ferror(stdout)) {
		cli_error("standard output", strerror(errno ? errno : EIO));
		return rc ? rc : 1;
	}
	return rc;
}

/* cmd_mount.c — metamori mount [-f] [ID] DIR */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/mountfs.h"

const char usage_mount[] =
	"usage: metamori mount [-f] [ID] DIR\n\n"
	"Show checkpoints as a read-only file system at DIR (FUSE 3), without\n"
	"restoring anything. With ID, DIR is that checkpoint's tree; without, DIR\n"
	"holds a directory per checkpoint, named by its id, a symlink per tag and\n"
	"'head' (as borg mount and restic mount do). Entries show as 'restore\n"
	"--to' makes them: every kind (FIFOs, sockets, device nodes, hard links\n"
	"with their link count), modes, owners, times and extended attributes\n"
	"(getfattr). Every byte read is checked against its hash: a damaged block\n"
	"reads as an I/O error, never as wrong bytes. Unmount with\n"
	"'fusermount3 -u DIR' (or 'umount DIR' as root).\n\n"
	"  -f, --foreground   stay in the foreground (Ctrl-C unmounts)\n";

int cmd_mount(int argc, char **argv)
{
	static const struct option opts[] = {{"foreground", no_argument, 0, 'f'}, {0, 0, 0, 0}};
	mountfs_opts o = {0};
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":f", opts, NULL)) != -1) {
		if (c == 'f')
			o.foreground = 1;
		else
			return cli_option_error("mount", c, argv);
	}
	int nargs = argc - optind;
	if (nargs < 1 || nargs > 2)
		return cli_error("mount", "usage: metamori mount [-f] [ID] DIR");
	o.mountpoint = cli_path(argv[argc - 1]);
	/* the store and the id are checked here, where errors can be seen; the
	 * file system opens its own handle once in the background (mountfs.c) */
	mtm_store *s;
	if (cli_open(&s))
		return 1;
	char store_dir[PATH_MAX];
	snprintf(store_dir, sizeof store_dir, "%s", mtm_root(s));
	if (nargs == 2 && cli_parse_id(s, argv[optind], &o.id)) {
		mtm_close(s);
		return 1;
	}
	mtm_close(s);
	o.store_dir = store_dir;
	return mountfs_run(&o);
}

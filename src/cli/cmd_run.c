/* cmd_run.c — metamori run [--every SECONDS [--no-final] [--keep-empty]] [--exclude PATTERN]... [-q] [--] CMD [ARG]... */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "cli/dmtcp_pair.h"

const char usage_run[] =
	"usage: metamori run [--dmtcp] [--every SECONDS] [--no-final] [--keep-empty]\n"
	"                    [--exclude PATTERN]... [-q] [--] CMD [ARG]...\n\n"
	"Run CMD with transparent tracking of the tree: an interposer in CMD and\n"
	"every process it starts records each change to the tree as it is made,\n"
	"so a checkpoint costs what changed, not what exists. While CMD runs, a\n"
	"consistent checkpoint is made by:\n"
	"  metamori checkpoint [-m MSG]   from any shell, or from CMD's own scripts\n"
	"  mtm_checkpoint()               in a program linked with libmetamori\n"
	"  kill -USR1 <pid of metamori run>\n"
	"  --every SECONDS                periodically\n"
	"Modifying calls in all traced processes are held while the changed blocks\n"
	"are copied out, then released before anything is compressed or written.\n"
	"Between checkpoints the session copies the changed blocks and writes them\n"
	"into the store in the background, so a checkpoint finds most of its work\n"
	"done (nothing is committed until it is asked for).\n"
	"What cannot be tracked precisely (shared writable mmap, stdio, io_uring,\n"
	"static programs) is compared or scanned, so no change is missed. Changes\n"
	"made by anyone else (another shell, a daemon, another user) are seen by\n"
	"the session's watcher (fanotify, else inotify) and compared. If the tree\n"
	"has changed since the last checkpoint, the first one scans.\n\n"
	"CMD starts in the current directory (in DIR with 'metamori -C DIR run').\n"
	"The exit status is CMD's (128+N if a signal N killed it; 127 if CMD was\n"
	"not found, 126 if it could not be executed, 1 for metamori's own errors).\n"
	"While a session runs, 'metamori restore' in place is refused (restore --to\n"
	"works). A second 'metamori run' on the tree (one per rank under mpirun)\n"
	"joins the live session: its CMD is tracked by it, the session lasts until\n"
	"every joined CMD has ended, and the session's --every and --exclude apply.\n\n"
	"  --every SECONDS      also checkpoint every SECONDS (may be fractional), and\n"
	"                       once more when CMD exits (message 'exit'); an interval\n"
	"                       in which nothing changed records no checkpoint\n"
	"  --no-final           with --every: no checkpoint when CMD exits\n"
	"  --keep-empty         with --every: a checkpoint at every tick and at exit,\n"
	"                       even when nothing changed\n"
	"  --exclude PATTERN    leave matching paths out of the session's checkpoints\n"
	"                       (gitignore syntax; adds to .metamoriignore)\n"
	"  -q, --quiet          no line on stderr per checkpoint made (failures are said)\n"
	"  --dmtcp              also checkpoint CMD's memory: CMD runs under DMTCP\n"
	"                       (dmtcp_launch, a coordinator of its own on a free\n"
	"                       port, Metamori's DMTCP plugin); 'metamori checkpoint'\n"
	"                       and 'dmtcp_command --checkpoint' make paired\n"
	"                       checkpoints (the file checkpoint at DMTCP's barrier,\n"
	"                       tagged dmtcp-ID, its image in .metamori/dmtcp/ID);\n"
	"                       'metamori restart' restarts from one. --every and\n"
	"                       SIGUSR1 make file checkpoints only. One process is\n"
	"                       paired: CMD itself (not the programs it forks)\n\n"
	"Environment: METAMORI_PRELOAD names the interposer when it is not next to\n"
	"the metamori executable; METAMORI_WATCH=fanotify|inotify chooses the\n"
	"watcher (off: none, for benchmarks only: outside changes are then missed).\n";

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {{"every", required_argument, 0, 'e'},
	                                     {"exclude", required_argument, 0, 'x'},
	                                     {"quiet", no_argument, 0, 'q'},
	                                     {"no-final", no_argument, 0, 'F'},
	                                     {"dmtcp", no_argument, 0, 'D'},
	                                     {"keep-empty", no_argument, 0, 'K'},
	                                     {"help", no_argument, 0, 'h'},
	                                     {0, 0, 0, 0}};
	mtm_run_opts o = MTM_RUN_OPTS_INIT;
	const char **ex = calloc((size_t)argc, sizeof *ex);
	if (!ex)
		return cli_error("run", "out of memory");
	int c, dmtcp = 0;
	optind = 1;
	opterr = 0;
	/* '+': options end at CMD, whose own options are its business */
	while ((c = getopt_long(argc, argv, "+:qh", opts, NULL)) != -1) {
		if (c == 'e') {
			char *end;
			o.every_seconds = strtod(optarg, &end);
			if (!cli_is_decimal(optarg, 1) || *end || !(o.every_seconds > 0) || o.every_seconds > 1e9) {
				free(ex);
				return cli_error("run", "--every needs a positive number of seconds");
			}
		} else if (c == 'x') {
			ex[o.n_excludes++] = optarg;
		} else if (c == 'q') {
			o.quiet = 1;
		} else if (c == 'F') {
			o.no_final = 1;
		} else if (c == 'D') {
			dmtcp = 1;
		} else if (c == 'K') {
			o.keep_empty = 1;
		} else if (c == 'h') {
			free(ex);
			printf("%s", usage_run);
			return 0;
		} else {
			free(ex);
			return cli_option_error("run", c, argv);
		}
	}
	if (optind >= argc) {
		free(ex);
		return cli_error("run", "no command given (see 'metamori run --help')");
	}
	if ((o.no_final || o.keep_empty) && !(o.every_seconds > 0)) {
		free(ex);
		return cli_error("run", o.no_final ? "--no-final needs --every" : "--keep-empty needs --every");
	}
	o.excludes = ex;
	mtm_store *s;
	if (cli_open(&s)) {
		free(ex);
		return 1;
	}
	/* -C DIR: "as if started in DIR", so CMD starts there too */
	if (cli_dir && chdir(cli_dir)) {
		int e = errno;
		free(ex);
		mtm_close(s);
		return cli_error(cli_dir, strerror(e));
	}
	/* The session allocates and frees the same tens of MiB every interval
	 * (pre-copy copies, barrier reads, the pack writer's buffers): kept in
	 * the process instead of handed back to the kernel at each free.
	 * Memory handed back is zeroed again when next touched and, in a VM
	 * that reports free pages, faulted in again from the host, which made
	 * filling a checkpoint's 4 MiB of pack buffers cost more than writing
	 * the pack. (Here, not in mtm_run: a library caller keeps its own.) */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	int status = 0;
	char **cmd = argv + optind, **launch = NULL;
	if (dmtcp && !(cmd = launch = dmtcp_launch_argv(mtm_root(s), argv + optind))) {
		free(ex);
		mtm_close(s);
		return CLI_EXIT_ERROR;
	}
	int rc = mtm_run(s, &o, cmd, &status);
	dmtcp_argv_free(launch);
	free(ex);
	if (rc) {
		cli_fail(rc);
		mtm_close(s);
		/* CMD not found (127) or not executable (126), as shells say */
		return status == CLI_EXIT_NOTFOUND || status == CLI_EXIT_NOEXEC ? status : CLI_EXIT_ERROR;
	}
	mtm_close(s);
	return status;
}

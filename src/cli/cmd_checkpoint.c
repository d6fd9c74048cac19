/* cmd_checkpoint.c — metamori checkpoint [-m MSG] [-q] [--exclude PATTERN]... [--mirror DIR] */
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include "cli/cli.h"
#include "cli/dmtcp_pair.h"
#include "cli/report.h"

const char usage_checkpoint[] =
	"usage: metamori checkpoint [-m MSG] [-q | --json] [--exclude PATTERN]... [--mirror DIR]\n\n"
	"Record the tree as a new checkpoint, child of the current head. Only what\n"
	"changed since then is stored: namespace changes and changed 4 KiB blocks.\n\n"
	"  -m, --message MSG    describe the checkpoint\n"
	"  -q, --quiet          print only the new checkpoint's id\n"
	"  --json               print the new checkpoint as log --json does (one object)\n"
	"  --exclude PATTERN    leave matching paths out (gitignore syntax; adds to\n"
	"                       the patterns in .metamoriignore)\n"
	"  --mirror DIR         then mirror the store into DIR (as 'metamori push DIR')\n\n"
	"In a 'metamori run --dmtcp' session, DMTCP checkpoints the program's memory\n"
	"and Metamori's plugin makes the file checkpoint at DMTCP's barrier: one\n"
	"paired checkpoint (tag dmtcp-ID; its image in .metamori/dmtcp/ID), or an\n"
	"error if its file checkpoint failed. 'metamori restart' restarts from it.\n"
	"--json then prints {\"id\": ID, \"dmtcp_images\": DIR}; with --exclude the\n"
	"checkpoint is of the files only (as in any session).\n";

int cmd_checkpoint(int argc, char **argv)
{
	static const struct option opts[] = {{"message", required_argument, 0, 'm'},
	                                     {"quiet", no_argument, 0, 'q'},
	                                     {"exclude", required_argument, 0, 'x'},
	                                     {"json", no_argument, 0, 'j'},
	                                     {"mirror", required_argument, 0, 'M'},
	                                     {0, 0, 0, 0}};
	const char *mirror = NULL;
	mtm_checkpoint_opts o = MTM_CHECKPOINT_OPTS_INIT;
	const char **ex = calloc((size_t)argc, sizeof *ex);
	if (!ex)
		return cli_error("checkpoint", "out of memory");
	int quiet = 0, as_json = 0, c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":m:q", opts, NULL)) != -1) {
		if (c == 'm')
			o.message = optarg;
		else if (c == 'q')
			quiet = 1;
		else if (c == 'x')
			ex[o.n_excludes++] = optarg;
		else if (c == 'j')
			as_json = 1;
		else if (c == 'M')
			mirror = cli_path(optarg);
		else {
			free(ex);
			return cli_option_error("checkpoint", c, argv);
		}
	}
	if (optind < argc) {
		free(ex);
		return cli_error(argv[optind], "unexpected argument (see 'metamori checkpoint --help')");
	}
	o.excludes = ex;
	o.progress = cli_progress;
	/* a DMTCP session: DMTCP's checkpoint, which makes ours at its barrier */
	mtm_id paired = 0;
	char root[4096];
	int d = o.n_excludes ? -1 : dmtcp_checkpoint(cli_dir ? cli_dir : ".", o.message, &paired, root, sizeof root);
	if (d >= 0) {
		free(ex);
		if (d)
			return d;
		if (as_json) {
			char dir[4200];
			snprintf(dir, sizeof dir, "%s/%s/%lld", root, DMTCP_IMAGES_DIR, (long long)paired);
			printf("{\"id\": %lld, \"dmtcp_images\": ", (long long)paired);
			json_string(dir);
			printf("}\n");
		}
		else if (quiet)
			printf("%lld\n", (long long)paired);
		else
			printf("checkpoint %lld\n  paired with DMTCP's image of the program (%s/%lld)\n", (long long)paired,
			       DMTCP_IMAGES_DIR, (long long)paired);
		return 0;
	}
	/* A short process: memory it frees is kept for its next allocations, not
	 * handed back to the kernel to be faulted in and zeroed again (glibc
	 * trimmed the walk helper's arena with madvise, each time a TLB
	 * shootdown on the other CPU, and the main heap with brk 50 times a W2
	 * scan; with these, a W2 scan's CPU ~0.9x). */
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	mallopt(M_TOP_PAD, 16 << 20);
	mtm_checkpoint_info ci;
	/* a running session makes it: no need to open the index here */
	int rc = mtm_checkpoint_at(cli_dir ? cli_dir : ".", &o, &ci);
	cli_progress_end();
	free(ex);
	if (rc)
		return cli_fail(rc);
	if (as_json) {
		json j;
		json_init(&j, stdout);
		report_checkpoint(&j, &ci, -1);
		json_done(&j);
	} else if (quiet) {
		printf("%lld\n", (long long)ci.id);
	} else {
		char a[32], b[32];
		printf("checkpoint %lld\n", (long long)ci.id);
		printf("  %llu added, %llu changed, %llu removed; %s changed, %s stored",
		       (unsigned long long)ci.files_added, (unsigned long long)ci.files_changed,
		       (unsigned long long)ci.files_removed, human_size(a, sizeof a, ci.bytes_changed),
		       human_size(b, sizeof b, ci.bytes_stored));
		/* made by a running `metamori run` session: how, and the pause it cost */
		if (ci.tracked || ci.pause_ns)
			printf(" (%s, paused %.1f ms)", ci.tracked ? "tracked" : "scanned", (double)ci.pause_ns / 1e6);
		printf("\n");
	}
	mtm_free(ci.message);
	/* the checkpoint is committed whatever the push does: a failed push
	 * is reported, and the next one copies what this one did not */
	if (mirror) {
		mtm_store *s;
		if (cli_open(&s))
			return 1;
		mtm_set_progress(s, cli_progress, NULL);
		rc = mtm_push(s, mirror, NULL);
		cli_progress_end();
		mtm_close(s);
		if (rc)
			return cli_fail(rc);
	}
	return 0;
}

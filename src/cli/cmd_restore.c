/* cmd_restore.c — metamori restore ID [--to DIR] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include "cli/cli.h"
#include "cli/json.h"
#include "cli/quote.h"

const char usage_restore[] =
	"usage: metamori restore ID [--to DIR] [--exclude PATTERN]... [--json]\n\n"
	"Make the tree exactly as it was at checkpoint ID (a number, or 'head'):\n"
	"contents, entries created since removed, metadata (mode, owner, mtime,\n"
	"extended attributes, ACLs, capabilities), hard links as links, FIFOs,\n"
	"sockets and (as root) device nodes. Where the target cannot take an\n"
	"attribute, restore warns once and goes on. In place, only what\n"
	"differs is rewritten, and every byte needed is verified before the tree is\n"
	"touched. The head becomes ID, so the next checkpoint is its child (a branch).\n"
	"Paths excluded from checkpoints (.metamoriignore, --exclude) are left alone.\n\n"
	"  --to DIR    write into DIR (new or empty) instead; the tree is not touched\n"
	"  --json      report as one JSON object (see metamori(1), JSON OUTPUT)\n";

int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {{"to", required_argument, 0, 't'},
	                                     {"exclude", required_argument, 0, 'x'},
	                                     {"json", no_argument, 0, 'j'},
	                                     {0, 0, 0, 0}};
	mtm_restore_opts o = MTM_RESTORE_OPTS_INIT;
	const char **ex = calloc((size_t)argc, sizeof *ex);
	if (!ex)
		return cli_error("restore", "out of memory");
	int c, as_json = 0;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		if (c == 't')
			o.to_dir = optarg;
		else if (c == 'x')
			ex[o.n_excludes++] = optarg;
		else if (c == 'j')
			as_json = 1;
		else {
			free(ex);
			return cli_option_error("restore", c, argv);
		}
	}
	if (optind != argc - 1) {
		free(ex);
		return cli_error("restore", "usage: metamori restore ID [--to DIR]");
	}
	o.excludes = ex;
	o.progress = cli_progress;
	mtm_store *s;
	if (cli_open(&s)) {
		free(ex);
		return 1;
	}
	mtm_id id;
	int rc = 1;
	if (!cli_parse_id(s, argv[optind], &id)) {
		mtm_restore_stats st;
		rc = mtm_restore(s, id, &o, &st);
		cli_progress_end();
		if (rc) {
			rc = cli_fail(rc);
		} else if (as_json) {
			json j;
			json_init(&j, stdout);
			json_obj(&j);
			json_kint(&j, "id", id);
			json_kstr(&j, "to", o.to_dir);
			json_kuint(&j, "files_written", st.files_written);
			json_kuint(&j, "files_patched", st.files_patched);
			json_kuint(&j, "entries_removed", st.entries_removed);
			json_kuint(&j, "entries_created", st.entries_created);
			json_kuint(&j, "bytes_written", st.bytes_written);
			json_obj_end(&j);
			json_done(&j);
		} else {
			char b[32];
			printf("restored checkpoint %lld", (long long)id);
			if (o.to_dir) {
				printf(" to ");
				quote_put(stdout, o.to_dir);
			}
			printf(": %llu written, %llu patched, %llu removed; %s written\n", (unsigned long long)st.files_written,
			       (unsigned long long)st.files_patched, (unsigned long long)st.entries_removed,
			       human_size(b, sizeof b, st.bytes_written));
		}
		if (!rc && st.attrs_skipped) /* once, not per file */
			fprintf(stderr, "metamori: warning: %llu extended attributes (ACLs, capabilities, labels) could not be "
			        "restored: the file system does not support them or this user may not set them\n",
			        (unsigned long long)st.attrs_skipped);
		if (!rc && st.nodes_skipped)
			fprintf(stderr, "metamori: warning: %llu device nodes not restored (only root may create them)\n",
			        (unsigned long long)st.nodes_skipped);
	}
	free(ex);
	mtm_close(s);
	return rc;
}

/* cmd_verify.c — metamori verify [--data] [--json] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/json.h"
#include "cli/quote.h"

const char usage_verify[] =
	"usage: metamori verify [--data] [--json]\n\n"
	"Check the store: the index's integrity, every reference between its\n"
	"records, every chunk's location and the files in .metamori/. Each problem\n"
	"is printed on stderr as 'metamori: damaged: ...'; the exit status is 1 if\n"
	"any was found. Verify only reads: it works on a read-only store.\n\n"
	"  --data    also reread every chunk and check its checksum and every\n"
	"            block's hash\n"
	"  --json    one JSON document with the figures and the problems (see\n"
	"            metamori(1), JSON OUTPUT)\n";

typedef struct {
	int json;
	json *j;
} report_ctx;

static int report(void *arg, const char *problem)
{
	report_ctx *r = arg;
	if (r->json) {
		json_str(r->j, problem);
		return 0;
	}
	cli_progress_end();
	err_line l;
	FILE *f = err_line_begin(&l);
	fputs("metamori: damaged: ", f);
	/* a name in the problem is a file's: no escape sequence reaches the terminal */
	if (quote_needed(problem))
		quote_put(f, problem);
	else
		fputs(problem, f);
	fputc('\n', f);
	err_line_end(&l);
	return 0;
}

int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {{"data", no_argument, 0, 'd'}, {"json", no_argument, 0, 'j'}, {0, 0, 0, 0}};
	int flags = 0, as_json = 0, c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		if (c == 'd')
			flags |= MTM_VERIFY_DATA;
		else if (c == 'j')
			as_json = 1;
		else
			return cli_option_error("verify", c, argv);
	}
	if (optind < argc)
		return cli_error(argv[optind], "unexpected argument (see 'metamori verify --help')");
	mtm_store *s;
	if (cli_open(&s))
		return 1;
	json j;
	report_ctx r = {as_json, &j};
	if (as_json) {
		json_init(&j, stdout);
		json_obj(&j);
		json_kbool(&j, "data", flags & MTM_VERIFY_DATA);
		json_key(&j, "problems");
		json_arr(&j);
	}
	mtm_set_progress(s, cli_progress, NULL);
	mtm_verify_stats st;
	memset(&st, 0, sizeof st);
	int rc = mtm_verify(s, flags, report, &r, &st);
	cli_progress_end();
	if (rc && !st.problems) {
		if (as_json)
			json_discard(&j);
		fflush(stdout);
		rc = cli_fail(rc);
	} else if (as_json) {
		json_arr_end(&j);
		json_kbool(&j, "ok", !rc);
		json_kuint(&j, "checkpoints", st.checkpoints);
		json_kuint(&j, "entries", st.entries);
		json_kuint(&j, "blocks", st.blocks);
		json_kuint(&j, "chunks", st.chunks);
		json_kuint(&j, "packs", st.packs);
		json_kuint(&j, "bytes_read", st.bytes_read);
		json_obj_end(&j);
		json_done(&j);
		rc = rc ? 1 : 0;
	} else if (rc) {
		fprintf(stderr, "metamori: verify: %llu problem%s found\n", (unsigned long long)st.problems,
		        st.problems == 1 ? "" : "s");
		rc = 1;
	} else {
		char b[32];
#define N(n, one, many) (unsigned long long)(n), cli_plural(n, one, many)
		printf("store OK: %llu %s, %llu %s, %llu %s, %llu %s in %llu %s", N(st.checkpoints, "checkpoint", "checkpoints"),
		       N(st.entries, "entry", "entries"), N(st.blocks, "block", "blocks"), N(st.chunks, "chunk", "chunks"),
		       N(st.packs, "pack", "packs"));
#undef N
		if (flags)
			printf("; data read: %s", human_size(b, sizeof b, st.bytes_read));
		printf("\n");
	}
	mtm_close(s);
	return rc;
}

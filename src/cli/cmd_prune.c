/* cmd_prune.c — metamori prune POLICY... [--dry-run] */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/json.h"

const char usage_prune[] =
	"usage: metamori prune [--keep-last N] [--keep-hourly N] [--keep-daily N]\n"
	"                      [--keep-every DURATION] [--keep ID]... [--dry-run]\n"
	"                      [--gc-threshold PERCENT] [--json]\n\n"
	"Drop the checkpoints no policy keeps and give their space back. The head and\n"
	"tagged checkpoints ('metamori tag') are always kept. A dropped checkpoint's\n"
	"changes are folded into its children, so every kept checkpoint restores\n"
	"exactly as before. At least one policy is required.\n\n"
	"  --keep-last N          the N newest checkpoints\n"
	"  --keep-hourly N        the newest of each of the last N hours that have one\n"
	"  --keep-daily N         the newest of each of the last N days that have one\n"
	"  --keep-every DURATION  the newest in each interval, e.g. 90s, 15m, 6h, 2d, 1w\n"
	"  --keep ID              this checkpoint (id or tag), may be repeated\n"
	"  -n, --dry-run          show what would go and the space it would free\n"
	"  --gc-threshold PERCENT rewrite a pack once this much of it is unused\n"
	"                         (default 5; 0 rewrites every pack with any)\n"
	"  --json                 print the dropped ids and the figures, exactly\n";

/* "90s", "15m", "6h", "2d", "1w" (a bare number is seconds) to nanoseconds. */
static int parse_duration(const char *text, int64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(text, &end);
	if (errno || !cli_decimal_len(text, 1) || end != text + cli_decimal_len(text, 1) || v <= 0)
		return -1;
	double mult = 1;
	if (!strcmp(end, "") || !strcmp(end, "s"))
		mult = 1;
	else if (!strcmp(end, "m"))
		mult = 60;
	else if (!strcmp(end, "h"))
		mult = 3600;
	else if (!strcmp(end, "d"))
		mult = 86400;
	else if (!strcmp(end, "w"))
		mult = 7 * 86400;
	else
		return -1;
	double ns = v * mult * 1e9;
	if (!(ns >= 1 && ns <= 100 * 366 * 86400e9)) /* also refuses inf and nan */
		return -1;
	*out = (int64_t)ns;
	return 0;
}

static int parse_count(const char *opt, const char *text, uint32_t *out)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || !cli_is_decimal(text, 0) || *end || v < 1 || v > 100000000)
		return cli_error(opt, "needs a whole number of at least 1");
	*out = (uint32_t)v;
	return 0;
}

int cmd_prune(int argc, char **argv)
{
	static const struct option opts[] = {
		{"keep-last", required_argument, 0, 'l'},  {"keep-hourly", required_argument, 0, 'H'},
		{"keep-daily", required_argument, 0, 'D'}, {"keep-every", required_argument, 0, 'e'},
		{"keep", required_argument, 0, 'k'},       {"dry-run", no_argument, 0, 'n'},
		{"gc-threshold", required_argument, 0, 'g'}, {"json", no_argument, 0, 'j'},
		{0, 0, 0, 0}};
	mtm_prune_opts o = MTM_PRUNE_OPTS_INIT;
	const char **keep_text = calloc((size_t)argc, sizeof *keep_text);
	size_t n_keep = 0;
	int c, bad = 0, as_json = 0;
	optind = 1;
	opterr = 0;
	while (!bad && (c = getopt_long(argc, argv, ":n", opts, NULL)) != -1) {
		switch (c) {
		case 'l': bad = parse_count("--keep-last", optarg, &o.keep_last); break;
		case 'H': bad = parse_count("--keep-hourly", optarg, &o.keep_hourly); break;
		case 'D': bad = parse_count("--keep-daily", optarg, &o.keep_daily); break;
		case 'e':
			if (parse_duration(optarg, &o.keep_every_ns))
				bad = cli_error("--keep-every", "needs a duration such as 90s, 15m, 6h, 2d or 1w");
			break;
		case 'k': keep_text[n_keep++] = optarg; break;
		case 'n': o.dry_run = 1; break;
		case 'j': as_json = 1; break;
		case 'g': {
			char *end;
			double v = strtod(optarg, &end);
			if (!cli_is_decimal(optarg, 1) || *end || v < 0 || v > 100)
				bad = cli_error("--gc-threshold", "needs a percentage from 0 to 100");
			o.gc_threshold = v / 100;
			break;
		}
		default: bad = cli_option_error("prune", c, argv);
		}
	}
	if (!bad && optind < argc)
		bad = cli_error(argv[optind], "unexpected argument (see 'metamori prune --help')");
	mtm_store *s = NULL;
	if (bad || cli_open(&s)) {
		free(keep_text);
		return 1;
	}
	mtm_id *keep = calloc(n_keep + 1, sizeof *keep);
	for (size_t i = 0; i < n_keep && !bad; i++)
		bad = cli_parse_id(s, keep_text[i], &keep[i]);
	o.keep = keep;
	o.n_keep = n_keep;
	mtm_id *dropped = NULL;
	size_t nd = 0;
	mtm_prune_stats st;
	mtm_set_progress(s, cli_progress, NULL);
	int rc = bad ? 1 : mtm_prune(s, &o, &dropped, &nd, &st);
	cli_progress_end();
	if (!bad && rc) {
		bad = cli_fail(rc);
	} else if (!bad && as_json) {
		json j;
		json_init(&j, stdout);
		json_obj(&j);
		json_kbool(&j, "dry_run", o.dry_run);
		json_key(&j, "dropped");
		json_arr(&j);
		for (size_t i = 0; i < nd; i++)
			json_int(&j, dropped[i]);
		json_arr_end(&j);
		json_kuint(&j, "kept", st.kept);
		json_kuint(&j, "chunks_freed", st.chunks_freed);
		json_kuint(&j, "bytes_freed", st.bytes_freed);
		json_kuint(&j, "packs_rewritten", st.packs_rewritten);
		json_kuint(&j, "packs_removed", st.packs_removed);
		json_kuint(&j, "bytes_copied", st.bytes_copied);
		json_kuint(&j, "bytes_returned", st.bytes_returned);
		json_kuint(&j, "store_bytes_before", st.store_bytes_before);
		json_kuint(&j, "store_bytes_after", st.store_bytes_after);
		json_obj_end(&j);
		json_done(&j);
	} else if (!bad) {
		char a[32], b[32], d[32];
		if (nd) {
			printf("%s %zu %s:", o.dry_run ? "would drop" : "dropped", nd, cli_plural(nd, "checkpoint", "checkpoints"));
			for (size_t i = 0; i < nd && i < 50; i++)
				printf(" %lld", (long long)dropped[i]);
			printf("%s\n", nd > 50 ? " ..." : "");
		} else {
			printf("nothing to drop\n");
		}
		printf("%s %llu %s; %s in %llu %s %s\n", o.dry_run ? "would keep" : "kept", (unsigned long long)st.kept,
		       cli_plural(st.kept, "checkpoint", "checkpoints"), human_size(a, sizeof a, st.bytes_freed),
		       (unsigned long long)st.chunks_freed, cli_plural(st.chunks_freed, "chunk", "chunks"),
		       o.dry_run ? "would be freed" : "freed");
		printf("gc: %llu %s %s (%s copied)", (unsigned long long)st.packs_rewritten,
		       cli_plural(st.packs_rewritten, "pack", "packs"), o.dry_run ? "would be rewritten" : "rewritten",
		       human_size(b, sizeof b, st.bytes_copied));
		if (o.dry_run) {
			printf(", %s would return to the file system\n", human_size(d, sizeof d, st.bytes_returned));
		} else {
			/* what the store takes on disk, both ways: folding moves a dropped
			 * checkpoint's changes into its children's rows, so the index can grow */
			uint64_t x = st.store_bytes_before, y = st.store_bytes_after;
			printf("\nstore: %s -> %s on disk (%s %s)\n", human_size(a, sizeof a, x), human_size(b, sizeof b, y),
			       human_size(d, sizeof d, x >= y ? x - y : y - x), x >= y ? "returned" : "more: the index grew");
		}
	}
	mtm_free(dropped);
	free(keep);
	free(keep_text);
	mtm_close(s);
	return bad ? 1 : 0;
}

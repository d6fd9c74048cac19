/* cmd_log.c — metamori log [-n N] [--json]: checkpoints as a tree. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/quote.h"
#include "cli/report.h"

const char usage_log[] =
	"usage: metamori log [-n N] [--json]\n\n"
	"List checkpoints in id order (oldest first) as a tree: a checkpoint made\n"
	"after restoring an earlier one starts a branch, drawn one '| ' deeper and\n"
	"marked '(from PARENT)' wherever its parent is not the line above.\n"
	"'*' marks the head (what the tree was last recorded as or restored to).\n"
	"Columns: id, time, +added ~changed -removed entries, bytes changed, message.\n"
	"A checkpoint that saved a program's memory regions (mtm_protect) also says\n"
	"'memory: N regions SIZE (CHANGED changed)'.\n\n"
	"  -n, --max-count N   only the N newest checkpoints\n"
	"  --json              one JSON array of checkpoint objects (see metamori(1),\n"
	"                      JSON OUTPUT)\n";

static size_t index_of(const mtm_checkpoint_info *v, size_t n, mtm_id id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (v[mid].id == id)
			return mid;
		if (v[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return n;
}

static void print_line(const mtm_checkpoint_info *c, mtm_id head, int depth, mtm_id above)
{
	char when[32], chg[32];
	printf("%c ", c->id == head ? '*' : ' ');
	for (int d = 0; d < depth; d++)
		printf("| ");
	printf("%-4lld %s  +%llu ~%llu -%llu  %9s", (long long)c->id, human_time(when, sizeof when, c->time_ns),
	       (unsigned long long)c->files_added, (unsigned long long)c->files_changed,
	       (unsigned long long)c->files_removed, human_size(chg, sizeof chg, c->bytes_changed));
	if (c->regions) {
		char sz[32], ch[32];
		printf("  memory: %llu region%s %s (%s changed)", (unsigned long long)c->regions, c->regions == 1 ? "" : "s",
		       human_size(sz, sizeof sz, c->region_bytes), human_size(ch, sizeof ch, c->region_bytes_changed));
	}
	if (c->parent && c->parent != above)
		printf("  (from %lld)", (long long)c->parent);
	if (c->message && *c->message) {
		printf("  ");
		quote_put(stdout, c->message);
	}
	printf("\n");
}

/* Lines in id order. A checkpoint's first child (lowest id) continues its
 * parent's line at the same depth; every later child starts a branch one
 * deeper. Ids grow with time, so a parent always comes before its children
 * and one pass in id order finds every depth. */
static int print_tree(const mtm_checkpoint_info *v, size_t n, mtm_id head)
{
	int *depth = malloc((n ? n : 1) * sizeof *depth);
	unsigned char *has_child = calloc(n ? n : 1, 1);
	if (!depth || !has_child) {
		free(depth);
		free(has_child);
		return cli_error("log", "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		size_t p = v[i].parent ? index_of(v, n, v[i].parent) : n;
		/* a root, its parent not shown (-n), or (a damaged index) not before it */
		if (p >= i) {
			depth[i] = 0;
		} else {
			depth[i] = depth[p] + (has_child[p] ? 1 : 0);
			has_child[p] = 1;
		}
		print_line(&v[i], head, depth[i], i ? v[i - 1].id : 0);
	}
	free(depth);
	free(has_child);
	return 0;
}

int cmd_log(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, 0, 'j'},
	                                     {"max-count", required_argument, 0, 'n'},
	                                     {0, 0, 0, 0}};
	int as_json = 0, c;
	uint64_t max = 0;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":n:", opts, NULL)) != -1) {
		if (c == 'j')
			as_json = 1;
		else if (c == 'n') {
			if (cli_parse_uint("-n", optarg, 1, &max))
				return 1;
		} else
			return cli_option_error("log", c, argv);
	}
	if (optind < argc)
		return cli_error(argv[optind], "unexpected argument (see 'metamori log --help')");
	mtm_store *s;
	if (cli_open(&s))
		return 1;
	mtm_checkpoint_info *v;
	size_t n;
	mtm_id head;
	int rc = mtm_log(s, &v, &n);
	if (!rc && (rc = mtm_head(s, &head)))
		mtm_log_free(v, n);
	if (rc) {
		rc = cli_fail(rc);
		mtm_close(s);
		return rc;
	}
	size_t from = max && max < n ? n - (size_t)max : 0;
	if (as_json) {
		json j;
		json_init(&j, stdout);
		json_arr(&j);
		for (size_t i = from; i < n; i++)
			report_checkpoint(&j, &v[i], v[i].id == head);
		json_arr_end(&j);
		json_done(&j);
	} else if (!n) {
		printf("no checkpoints yet\n");
	} else {
		rc = print_tree(v + from, n - from, head);
	}
	mtm_log_free(v, n);
	mtm_close(s);
	return rc;
}

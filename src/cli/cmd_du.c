/* cmd_du.c — metamori du [--json]: space per checkpoint and in total. */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"

const char usage_du[] =
	"usage: metamori du [--json]\n\n"
	"Space used by each checkpoint and by the store:\n"
	"  added    bytes the checkpoint appended to the packs (after dedup and\n"
	"           compression; a pruned checkpoint's share goes to its child)\n"
	"  unique   bytes only it holds: what pruning it alone would free (whole\n"
	"           chunks; its blocks inside chunks kept checkpoints share come\n"
	"           back when gc compacts those chunks)\n"
	"Totals: logical bytes (every checkpoint's tree and memory regions, as full\n"
	"copies would take), stored bytes, and the dedup and compression ratios.\n"
	"Du only reads: it works on a read-only store.\n\n"
	"  --json    one JSON object with the figures (see metamori(1), JSON OUTPUT)\n";

int cmd_du(int argc, char **argv)
{
	int json = argc == 2 && !strcmp(argv[1], "--json");
	if (argc > 2 || (argc == 2 && !json))
		return cli_error(argv[1], "unexpected argument (see 'metamori du --help')");
	mtm_store *s;
	if (cli_open(&s))
		return 1;
	mtm_du_entry *v;
	size_t n;
	mtm_du_totals t;
	mtm_set_progress(s, cli_progress, NULL);
	int rc = mtm_du(s, &v, &n, &t);
	cli_progress_end();
	if (rc) {
		rc = cli_fail(rc);
		mtm_close(s);
		return rc;
	}
	double dedup = t.plain ? (double)t.logical / (double)t.plain : 0;
	double comp = t.packed ? (double)t.plain / (double)t.packed : 0;
	if (json) {
		printf("{\"checkpoints\": [");
		for (size_t i = 0; i < n; i++)
			printf("%s\n  {\"id\": %lld, \"added\": %llu, \"unique\": %llu}", i ? "," : "", (long long)v[i].id,
			       (unsigned long long)v[i].added, (unsigned long long)v[i].unique);
		printf("%s],\n \"logical\": %llu, \"plain\": %llu, \"packed\": %llu, \"dead\": %llu, \"pack_files\": %llu,"
		       " \"index_bytes\": %llu, \"region_logical\": %llu, \"dedup_ratio\": %.3f, \"compression_ratio\": %.3f}\n",
		       n ? "\n" : "", (unsigned long long)t.logical, (unsigned long long)t.plain,
		       (unsigned long long)t.packed, (unsigned long long)t.dead, (unsigned long long)t.pack_files,
		       (unsigned long long)t.index_bytes, (unsigned long long)t.region_logical, dedup, comp);
	} else {
		char a[32], b[32];
		printf("%-6s %10s %10s\n", "id", "added", "unique");
		for (size_t i = 0; i < n; i++)
			printf("%-6lld %10s %10s\n", (long long)v[i].id, human_size(a, sizeof a, v[i].added),
			       human_size(b, sizeof b, v[i].unique));
		if (t.region_logical)
			printf("\nlogical   %s (every checkpoint as a full copy; %s of it memory regions)\n",
			       human_size(a, sizeof a, t.logical), human_size(b, sizeof b, t.region_logical));
		else
			printf("\nlogical   %s (every checkpoint as a full copy)\n", human_size(a, sizeof a, t.logical));
		printf("stored    %s in packs (%s unused, reclaimed by prune), %s index\n",
		       human_size(a, sizeof a, t.pack_files), human_size(b, sizeof b, t.dead),
		       human_size((char[32]){0}, 32, t.index_bytes));
		printf("ratios    dedup %.2fx, compression %.2fx\n", dedup, comp);
	}
	mtm_free(v);
	mtm_close(s);
	return 0;
}

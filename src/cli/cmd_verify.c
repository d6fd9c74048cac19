/* cmd_verify.c — metamori verify [--data] */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"

const char usage_verify[] =
	"usage: metamori verify [--data]\n\n"
	"Check the store: the index's integrity, every reference between its\n"
	"records, every chunk's location and the files in .metamori/. Each problem\n"
	"is printed on stderr as 'metamori: damaged: ...'; the exit status is 1 if\n"
	"any was found.\n\n"
	"  --data    also reread every chunk and check its checksum and every\n"
	"            block's hash\n";

static int report(void *arg, const char *problem)
{
	(void)arg;
	fprintf(stderr, "metamori: damaged: %s\n", problem);
	return 0;
}

int cmd_verify(int argc, char **argv)
{
	int flags = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--data"))
			flags |= MTM_VERIFY_DATA;
		else
			return cli_error(argv[i], "unexpected argument (see 'metamori verify --help')");
	}
	mtm_store *s;
	if (cli_open(&s))
		return 1;
	mtm_verify_stats st;
	int rc = mtm_verify(s, flags, report, NULL, &st);
	if (rc && !st.problems) {
		rc = cli_fail(rc);
	} else if (rc) {
		fprintf(stderr, "metamori: verify: %llu problem%s found\n", (unsigned long long)st.problems,
		        st.problems == 1 ? "" : "s");
		rc = 1;
	} else {
		char b[32];
		printf("store OK: %llu checkpoints, %llu entries, %llu blocks, %llu chunks in %llu packs%s%s\n",
		       (unsigned long long)st.checkpoints, (unsigned long long)st.entries, (unsigned long long)st.blocks,
		       (unsigned long long)st.chunks, (unsigned long long)st.packs, flags ? "; data read: " : "",
		       flags ? human_size(b, sizeof b, st.bytes_read) : "");
	}
	mtm_close(s);
	return rc;
}

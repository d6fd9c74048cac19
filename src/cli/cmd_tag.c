/* cmd_tag.c — metamori tag [ID NAME | -d NAME] */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"

const char usage_tag[] =
	"usage: metamori tag                 list tags\n"
	"       metamori tag ID NAME         name checkpoint ID (pins it against prune)\n"
	"       metamori tag -d NAME         remove a name\n\n"
	"A tag can be used wherever a checkpoint id is expected.\n";

int cmd_tag(int argc, char **argv)
{
	mtm_store *s;
	if (argc != 1 && argc != 3)
		return cli_error("tag", "usage: metamori tag [ID NAME | -d NAME]");
	if (cli_open(&s))
		return 1;
	int rc = 0;
	if (argc == 1) {
		mtm_tag_info *t;
		size_t n;
		if (!(rc = mtm_tags(s, &t, &n))) {
			for (size_t i = 0; i < n; i++)
				printf("%-20s %lld\n", t[i].name, (long long)t[i].id);
			mtm_tags_free(t, n);
		}
	} else if (!strcmp(argv[1], "-d")) {
		rc = mtm_tag(s, argv[2], 0);
	} else {
		mtm_id id;
		if (cli_parse_id(s, argv[1], &id)) {
			mtm_close(s);
			return 1;
		}
		rc = mtm_tag(s, argv[2], id);
	}
	rc = rc ? cli_fail(rc) : 0;
	mtm_close(s);
	return rc;
}

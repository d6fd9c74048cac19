/* cmd_tag.c — metamori tag [--json] | tag [-f] ID NAME | tag -d NAME */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/json.h"
#include "cli/quote.h"

const char usage_tag[] =
	"usage: metamori tag [--json]          list tags\n"
	"       metamori tag [-f] ID NAME      name checkpoint ID (pins it against prune)\n"
	"       metamori tag -d NAME           remove a name\n\n"
	"A tag can be used wherever a checkpoint id is expected. A name already in\n"
	"use is not moved to another checkpoint unless -f is given (as git tag -f):\n"
	"moving a tag unpins the checkpoint it named.\n\n"
	"  -f, --force   move NAME if it names another checkpoint\n"
	"  -d, --delete  remove NAME\n"
	"  --json        list as a JSON array of {\"name\", \"id\"}\n";

static int list(mtm_store *s, int as_json)
{
	mtm_tag_info *t;
	size_t n;
	int rc = mtm_tags(s, &t, &n);
	if (rc)
		return rc;
	json j;
	if (as_json) {
		json_init(&j, stdout);
		json_arr(&j);
	}
	for (size_t i = 0; i < n; i++) {
		if (as_json) {
			json_obj(&j);
			json_kstr(&j, "name", t[i].name);
			json_kint(&j, "id", t[i].id);
			json_obj_end(&j);
		} else {
			quote_put(stdout, t[i].name);
			int w = (int)strlen(t[i].name);
			printf("%*s %lld\n", w < 20 ? 20 - w : 0, "", (long long)t[i].id);
		}
	}
	if (as_json) {
		json_arr_end(&j);
		json_done(&j);
	}
	mtm_tags_free(t, n);
	return 0;
}

int cmd_tag(int argc, char **argv)
{
	static const struct option opts[] = {{"force", no_argument, 0, 'f'},
	                                     {"delete", no_argument, 0, 'd'},
	                                     {"json", no_argument, 0, 'j'},
	                                     {0, 0, 0, 0}};
	int force = 0, del = 0, as_json = 0, c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fd", opts, NULL)) != -1) {
		if (c == 'f')
			force = 1;
		else if (c == 'd')
			del = 1;
		else if (c == 'j')
			as_json = 1;
		else
			return cli_option_error("tag", c, argv);
	}
	int nargs = argc - optind;
	if (!((nargs == 0 && !del && !force) || (nargs == 1 && del && !force && !as_json) ||
	      (nargs == 2 && !del && !as_json)))
		return cli_error("tag", "usage: metamori tag [--json] | tag [-f] ID NAME | tag -d NAME");
	mtm_store *s;
	if (cli_open(&s))
		return 1;
	int rc = 0;
	if (nargs == 0) {
		rc = list(s, as_json);
	} else if (del) {
		rc = mtm_tag(s, argv[optind], 0);
	} else {
		mtm_id id;
		if (cli_parse_id(s, argv[optind], &id)) {
			mtm_close(s);
			return 1;
		}
		rc = force ? mtm_tag_move(s, argv[optind + 1], id) : mtm_tag(s, argv[optind + 1], id);
		if (rc == MTM_EEXIST) { /* "tag 'NAME': already names checkpoint N" */
			err_line l; /* (the name was checked: letters, digits, '-', '_', '.') */
			FILE *f = err_line_begin(&l);
			fputs("metamori: ", f);
			quote_line(f, mtm_last_error());
			fputs(" (use -f to move it)\n", f);
			err_line_end(&l);
			mtm_close(s);
			return 1;
		}
	}
	rc = rc ? cli_fail(rc) : 0;
	mtm_close(s);
	return rc;
}

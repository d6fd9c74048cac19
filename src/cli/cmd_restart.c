/* cmd_restart.c — metamori restart [-q] [ID]: a program's files and memory
 * back to a paired checkpoint (issue 18; `run --dmtcp` made it). */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "cli/dmtcp_pair.h"

const char usage_restart[] =
	"usage: metamori restart [-q] [ID]\n\n"
	"Restart a program from a paired checkpoint made under 'metamori run --dmtcp'\n"
	"(default: the newest; paired checkpoints are tagged dmtcp-ID): restore the\n"
	"tree to ID in place (a tree that differs from the head is saved first, as\n"
	"'metamori restore' does), then restart the program from DMTCP's image of\n"
	"it (dmtcp_restart) under a new session, so that 'metamori checkpoint'\n"
	"pairs again. A restart onto a tree that differs from the image's\n"
	"checkpoint is refused, with the list of differences (also by the plugin,\n"
	"when dmtcp_restart is run by hand). The exit status is the program's, as\n"
	"for 'metamori run'.\n\n"
	"  -q, --quiet   no line on stderr per checkpoint of the new session\n";

/* The newest checkpoint tagged dmtcp-ID (that ID), or 0. */
static int newest_paired(mtm_store *s, mtm_id *out)
{
	mtm_tag_info *tags;
	size_t n;
	int rc = mtm_tags(s, &tags, &n);
	if (rc)
		return rc;
	*out = 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = tags[i].name;
		if (!strncmp(name, DMTCP_TAG_PREFIX, strlen(DMTCP_TAG_PREFIX)) &&
		    strtoll(name + strlen(DMTCP_TAG_PREFIX), NULL, 10) == tags[i].id && tags[i].id > *out)
			*out = tags[i].id;
	}
	mtm_tags_free(tags, n);
	return 0;
}

static int is_paired(mtm_store *s, mtm_id id)
{
	char name[48];
	snprintf(name, sizeof name, DMTCP_TAG_PREFIX "%lld", (long long)id);
	mtm_id got;
	return !mtm_resolve(s, name, &got) && got == id;
}

typedef struct {
	char *list;
	size_t len, n;
} diff_list;

static int add_change(void *arg, const mtm_change *c)
{
	diff_list *d = arg;
	char q[8192], size[32];
	/* as diff prints it (changes.c) */
	int k = c->kind == 'M' ? snprintf(q, sizeof q, "%c %s (%s)\n", c->kind, c->path, human_size(size, sizeof size, c->bytes))
	                       : snprintf(q, sizeof q, "%c %s\n", c->kind, c->path);
	if (k < 0)
		return 0;
	char *p = realloc(d->list, d->len + (size_t)k + 1);
	if (!p)
		return 1;
	memcpy(p + d->len, q, (size_t)k + 1);
	d->list = p;
	d->len += (size_t)k;
	d->n++;
	return 0;
}

int cmd_restart(int argc, char **argv)
{
	static const struct option opts[] = {{"quiet", no_argument, 0, 'q'}, {0, 0, 0, 0}};
	int quiet = 0, c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":q", opts, NULL)) != -1) {
		if (c == 'q')
			quiet = 1;
		else
			return cli_option_error("restart", c, argv);
	}
	if (argc - optind > 1)
		return cli_error(argv[optind + 1], "unexpected argument (see 'metamori restart --help')");
	mtm_store *s;
	if (cli_open(&s))
		return CLI_EXIT_ERROR;
	mtm_id id = 0;
	int rc = 0;
	if (optind < argc) {
		if (cli_parse_id(s, argv[optind], &id))
			goto fail_quiet;
		if (!is_paired(s, id)) {
			char why[160];
			snprintf(why, sizeof why, "checkpoint %lld is not paired with a DMTCP image (no tag " DMTCP_TAG_PREFIX "%lld)",
			         (long long)id, (long long)id);
			cli_error("restart", why);
			goto fail_quiet;
		}
	} else if ((rc = newest_paired(s, &id))) {
		goto fail;
	} else if (!id) {
		cli_error("restart", "no paired checkpoint (make one with 'metamori checkpoint' under 'metamori run --dmtcp')");
		goto fail_quiet;
	}
	char **cmd = dmtcp_restart_argv(mtm_root(s), id);
	if (!cmd)
		goto fail_quiet;
	/* the files as they were when the image was made */
	mtm_id saved = 0;
	mtm_restore_opts ro = MTM_RESTORE_OPTS_INIT;
	ro.saved = &saved;
	mtm_restore_stats st;
	if ((rc = mtm_restore(s, id, &ro, &st))) {
		dmtcp_argv_free(cmd);
		goto fail;
	}
	if (saved)
		fprintf(stderr, "metamori: restart: saved the current tree as checkpoint %lld (metamori restore %lld "
		                "puts it back)\n", (long long)saved, (long long)saved);
	/* and nothing else: a restart onto other files is refused */
	diff_list d = {0};
	if ((rc = mtm_diff(s, id, MTM_LIVE, NULL, add_change, &d)) || d.n) {
		dmtcp_argv_free(cmd);
		if (rc && rc != 1) {
			free(d.list);
			goto fail;
		}
		fprintf(stderr, "metamori: restart: %s: the tree differs from checkpoint %lld, the image's (%zu %s):\n%s",
		        mtm_root(s), (long long)id, d.n, cli_plural(d.n, "difference", "differences"), d.list ? d.list : "");
		free(d.list);
		goto fail_quiet;
	}
	mallopt(M_MMAP_THRESHOLD, 32 << 20); /* as run does (cmd_run.c) */
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	mtm_run_opts o = MTM_RUN_OPTS_INIT;
	o.quiet = quiet;
	int status = 0;
	/* DMTCP's coordinator writes its restart scripts where it runs: with
	 * the images, not wherever restart was typed (the program's own working
	 * directory is in its image) */
	char *images = NULL;
	if (asprintf(&images, "%s/%s", mtm_root(s), DMTCP_IMAGES_DIR) < 0 || chdir(images)) {
		int e = errno;
		cli_error(images ? images : "restart", strerror(e));
		free(images);
		dmtcp_argv_free(cmd);
		goto fail_quiet;
	}
	free(images);
	rc = mtm_run(s, &o, cmd, &status);
	dmtcp_argv_free(cmd);
	if (rc) {
		cli_fail(rc);
		mtm_close(s);
		return status == CLI_EXIT_NOTFOUND || status == CLI_EXIT_NOEXEC ? status : CLI_EXIT_ERROR;
	}
	mtm_close(s);
	return status;
fail:
	cli_fail(rc);
fail_quiet:
	mtm_close(s);
	return CLI_EXIT_ERROR;
}

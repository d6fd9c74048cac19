/* cmd_restore.c — metamori restore ID [--to DIR] [-- PATH...], --continue, --abort */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/json.h"
#include "cli/quote.h"

const char usage_restore[] =
	"usage: metamori restore ID [--to DIR] [--exclude PATTERN]... [--dry-run] [--discard] [--json] [-- PATH...]\n"
	"       metamori restore --continue | --abort [--discard] [--json]\n\n"
	"Make the tree exactly as it was at checkpoint ID (a number, 'head' or a\n"
	"tag): contents, entries created since removed, metadata (mode, owner,\n"
	"mtime, extended attributes, ACLs, capabilities), hard links as links,\n"
	"FIFOs, sockets and (as root) device nodes; where the target cannot take\n"
	"an attribute, restore warns once and goes on. In place, only\n"
	"what differs is rewritten, and every byte needed is verified and the\n"
	"restore checked to be possible (free space, permissions) before the tree\n"
	"is touched. The head becomes ID, so the next checkpoint is its child.\n"
	"Nothing is lost: if the tree differs from the head, it is first saved as\n"
	"a new checkpoint ('saved the current tree as checkpoint N (metamori\n"
	"restore N undoes this)'). Paths excluded from checkpoints\n"
	"(.metamoriignore, --exclude) are left alone.\n\n"
	"  --to DIR        write into DIR (new or empty) instead; the tree is not touched\n"
	"  --exclude PAT   leave live paths matching PAT exactly as they are\n"
	"  --dry-run       list what would be written (W), patched (P), removed (R),\n"
	"                  created (C) or given its metadata (m); change nothing\n"
	"  --discard       do not save the tree first: its changes are lost\n"
	"  --json          report as one JSON object (see metamori(1), JSON OUTPUT)\n"
	"  -- PATH...      restore only these files or directories (with all under\n"
	"                  them); one the checkpoint lacks is removed. The head stays.\n"
	"  --continue      finish an interrupted restore, as it was requested\n"
	"  --abort         put the tree back as it was before an interrupted restore\n";

typedef struct {
	json *j; /* --json: steps go into an array */
} step_out;

static int print_step(void *arg, const mtm_restore_step *st)
{
	step_out *o = arg;
	char b[32];
	if (o->j) {
		json_obj(o->j);
		json_kstr(o->j, "action", (char[]){st->action, 0});
		json_kstr(o->j, "path", st->path);
		json_kuint(o->j, "bytes", st->bytes);
		json_obj_end(o->j);
		return 0;
	}
	printf("%c ", st->action);
	quote_put(stdout, st->path);
	if (st->action == 'W' || st->action == 'P')
		printf(" (%s)", human_size(b, sizeof b, st->bytes));
	printf("\n");
	return 0;
}

static void print_done(const char *what, mtm_id id, const char *to, const mtm_restore_stats *st)
{
	char b[32];
	printf("%s %lld", what, (long long)id);
	if (to) {
		printf(" to ");
		quote_put(stdout, to);
	}
	printf(": %llu written, %llu patched, %llu removed; %s written\n", (unsigned long long)st->files_written,
	       (unsigned long long)st->files_patched, (unsigned long long)st->entries_removed,
	       human_size(b, sizeof b, st->bytes_written));
}

static void json_done_obj(json *j, mtm_id id, const char *to, mtm_id saved, mtm_id from, const mtm_restore_stats *st)
{
	json_kint(j, "id", id);
	json_kstr(j, "to", to);
	if (saved)
		json_kint(j, "saved", saved);
	else {
		json_key(j, "saved");
		json_null(j);
	}
	if (from)
		json_kint(j, "back_at", from);
	json_kuint(j, "files_written", st->files_written);
	json_kuint(j, "files_patched", st->files_patched);
	json_kuint(j, "entries_removed", st->entries_removed);
	json_kuint(j, "entries_created", st->entries_created);
	json_kuint(j, "bytes_written", st->bytes_written);
}

int cmd_restore(int argc, char **argv)
{
	enum { O_DRY = 1000, O_DISCARD, O_CONTINUE, O_ABORT };
	static const struct option opts[] = {{"to", required_argument, 0, 't'},
	                                     {"exclude", required_argument, 0, 'x'},
	                                     {"json", no_argument, 0, 'j'},
	                                     {"dry-run", no_argument, 0, O_DRY},
	                                     {"discard", no_argument, 0, O_DISCARD},
	                                     {"continue", no_argument, 0, O_CONTINUE},
	                                     {"abort", no_argument, 0, O_ABORT},
	                                     {0, 0, 0, 0}};
	mtm_restore_opts o = MTM_RESTORE_OPTS_INIT;
	const char **ex = calloc((size_t)argc, sizeof *ex);
	if (!ex)
		return cli_error("restore", "out of memory");
	int c, resume = 0, as_json = 0;
	const char *idtext = NULL;
	optind = 1;
	opterr = 0;
	/* "+": stop at the first non-option (ID, or "--"); ID may come before
	 * or after the options, the paths only after "--" */
	for (;;) {
		c = getopt_long(argc, argv, "+:", opts, NULL);
		if (c == -1) {
			if (optind < argc && strcmp(argv[optind - 1], "--") && !idtext) {
				idtext = argv[optind++];
				continue;
			}
			break;
		}
		if (c == 't')
			o.to_dir = cli_path(optarg);
		else if (c == 'x')
			ex[o.n_excludes++] = optarg;
		else if (c == 'j')
			as_json = 1;
		else if (c == O_DRY)
			o.dry_run = 1;
		else if (c == O_DISCARD)
			o.discard = 1;
		else if (c == O_CONTINUE || c == O_ABORT)
			resume = c;
		else {
			free(ex);
			return cli_option_error("restore", c, argv);
		}
	}
	if (optind > 1 && !strcmp(argv[optind - 1], "--")) {
		o.paths = (const char *const *)argv + optind;
		o.n_paths = (size_t)(argc - optind);
		optind = argc;
		if (!o.n_paths) {
			free(ex);
			return cli_error("restore", "'--' must be followed by the paths to restore");
		}
	}
	if (resume ? (idtext || optind != argc || o.to_dir || o.n_excludes || o.n_paths) : (!idtext || optind != argc)) {
		free(ex);
		return cli_error("restore", resume ? "--continue and --abort take no checkpoint, paths, --to or --exclude"
		                                   : "usage: metamori restore ID [--to DIR] [-- PATH...]");
	}
	json j;
	step_out so = {as_json ? &j : NULL};
	o.excludes = ex;
	o.progress = cli_progress;
	o.on_step = o.dry_run ? print_step : NULL;
	o.step_arg = &so;
	mtm_id saved = 0;
	o.saved = &saved;
	mtm_store *s;
	/* a restore in place replaces or finishes an interrupted one: no note */
	if (resume || !o.to_dir ? cli_open_only(&s) : cli_open(&s)) {
		free(ex);
		return 1;
	}
	mtm_id id = 0, from = 0;
	int rc = 1;
	mtm_restore_stats st;
	if (resume) {
		rc = mtm_restore_pending(s, &id, &from);
	} else if (!(rc = cli_parse_id(s, idtext, &id) ? -1 : 0)) {
		mtm_id pending = 0;
		if (!o.to_dir && !o.dry_run && !mtm_restore_pending(s, &pending, NULL) && pending)
			fprintf(stderr, "metamori: note: this restore replaces the interrupted restore to checkpoint %lld\n",
			        (long long)pending);
	}
	if (!rc) {
		if (as_json) {
			json_init(&j, stdout);
			json_obj(&j);
			if (o.dry_run) {
				json_key(&j, "steps");
				json_arr(&j);
			}
		}
		rc = !resume ? mtm_restore(s, id, &o, &st)
		             : resume == O_CONTINUE ? mtm_restore_continue(s, &o, &st) : mtm_restore_abort(s, &o, &st);
		cli_progress_end();
		if (as_json && rc) {
			json_discard(&j); /* no half document: the error alone says it failed */
			if (saved)
				fprintf(stderr, "metamori: note: saved the current tree as checkpoint %lld (metamori restore %lld "
				        "undoes this)\n", (long long)saved, (long long)saved);
		} else if (as_json) {
			if (o.dry_run)
				json_arr_end(&j);
			json_done_obj(&j, id, o.to_dir, saved, resume == O_ABORT ? from : 0, &st);
			json_obj_end(&j);
			json_done(&j);
		} else if (saved) {
			printf("saved the current tree as checkpoint %lld (metamori restore %lld undoes this)\n",
			       (long long)saved, (long long)saved);
		}
		if (!rc && st.attrs_skipped) /* once, not per file */
			fprintf(stderr, "metamori: warning: %llu extended attributes (ACLs, capabilities, labels) could not be "
			        "restored: the file system does not support them or this user may not set them\n",
			        (unsigned long long)st.attrs_skipped);
		if (!rc && st.nodes_skipped)
			fprintf(stderr, "metamori: warning: %llu device nodes not restored (only root may create them)\n",
			        (unsigned long long)st.nodes_skipped);
		if (rc)
			rc = cli_fail(rc);
		else if (as_json || o.dry_run)
			;
		else if (resume == O_CONTINUE)
			print_done("finished the restore to checkpoint", id, NULL, &st);
		else if (resume == O_ABORT && from) {
			print_done("abandoned the restore to checkpoint", id, NULL, &st);
			printf("the tree is back as it was at checkpoint %lld\n", (long long)from);
		} else if (resume == O_ABORT)
			printf("abandoned the restore to checkpoint %lld; the tree was left as it is (the interrupted restore "
			       "was recorded by an older version, which did not record what the tree was)\n", (long long)id);
		else
			print_done("restored checkpoint", id, o.to_dir, &st);
	} else {
		rc = rc == -1 ? 1 : cli_fail(rc);
	}
	free(ex);
	mtm_close(s);
	return rc;
}

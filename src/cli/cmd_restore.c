/* cmd_restore.c — metamori restore ID [--to DIR] [-- PATH...], --continue, --abort */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "util/human.h"

const char usage_restore[] =
	"usage: metamori restore ID [--to DIR] [--exclude PATTERN]... [--dry-run] [--discard] [-- PATH...]\n"
	"       metamori restore --continue | --abort\n\n"
	"Make the tree exactly as it was at checkpoint ID (a number, 'head' or a\n"
	"tag): contents, entries created since removed, metadata. In place, only\n"
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
	"  -- PATH...      restore only these files or directories (with all under\n"
	"                  them); one the checkpoint lacks is removed. The head stays.\n"
	"  --continue      finish an interrupted restore, as it was requested\n"
	"  --abort         put the tree back as it was before an interrupted restore\n";

static int print_step(void *arg, const mtm_restore_step *st)
{
	(void)arg;
	char b[32];
	if (st->action == 'W' || st->action == 'P')
		printf("%c %s (%s)\n", st->action, st->path, human_size(b, sizeof b, st->bytes));
	else
		printf("%c %s\n", st->action, st->path);
	return 0;
}

static void print_done(const char *what, mtm_id id, const char *to, const mtm_restore_stats *st)
{
	char b[32];
	printf("%s %lld%s%s: %llu written, %llu patched, %llu removed; %s written\n", what, (long long)id,
	       to ? " to " : "", to ? to : "", (unsigned long long)st->files_written, (unsigned long long)st->files_patched,
	       (unsigned long long)st->entries_removed, human_size(b, sizeof b, st->bytes_written));
}

static void print_saved(mtm_id saved)
{
	if (saved)
		printf("saved the current tree as checkpoint %lld (metamori restore %lld undoes this)\n", (long long)saved,
		       (long long)saved);
}

int cmd_restore(int argc, char **argv)
{
	enum { O_DRY = 1000, O_DISCARD, O_CONTINUE, O_ABORT };
	static const struct option opts[] = {{"to", required_argument, 0, 't'},
	                                     {"exclude", required_argument, 0, 'x'},
	                                     {"dry-run", no_argument, 0, O_DRY},
	                                     {"discard", no_argument, 0, O_DISCARD},
	                                     {"continue", no_argument, 0, O_CONTINUE},
	                                     {"abort", no_argument, 0, O_ABORT},
	                                     {0, 0, 0, 0}};
	mtm_restore_opts o = MTM_RESTORE_OPTS_INIT;
	const char **ex = calloc((size_t)argc, sizeof *ex);
	int c, resume = 0;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c == 't')
			o.to_dir = optarg;
		else if (c == 'x')
			ex[o.n_excludes++] = optarg;
		else if (c == O_DRY)
			o.dry_run = 1;
		else if (c == O_DISCARD)
			o.discard = 1;
		else if (c == O_CONTINUE || c == O_ABORT)
			resume = c;
		else {
			free(ex);
			return cli_error("restore", "bad option (see 'metamori restore --help')");
		}
	}
	/* ID, then options, then "--" and paths: getopt stopped at ID ("+") */
	const char *idtext = NULL;
	if (!resume && optind < argc && strcmp(argv[optind], "--"))
		idtext = argv[optind++];
	while (idtext && optind < argc && strcmp(argv[optind], "--") &&
	       (c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c == 't')
			o.to_dir = optarg;
		else if (c == 'x')
			ex[o.n_excludes++] = optarg;
		else if (c == O_DRY)
			o.dry_run = 1;
		else if (c == O_DISCARD)
			o.discard = 1;
		else {
			free(ex);
			return cli_error("restore", "bad option (see 'metamori restore --help')");
		}
	}
	if (optind < argc && !strcmp(argv[optind], "--")) {
		o.paths = (const char *const *)argv + optind + 1;
		o.n_paths = (size_t)(argc - optind - 1);
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
	o.excludes = ex;
	o.progress = cli_progress;
	o.on_step = o.dry_run ? print_step : NULL;
	mtm_id saved = 0;
	o.saved = &saved;
	mtm_store *s;
	/* a restore in place replaces or finishes an interrupted one: no note */
	if (resume || !o.to_dir ? cli_open_only(&s) : cli_open(&s)) {
		free(ex);
		return 1;
	}
	mtm_id id = 0;
	int rc = 1;
	mtm_restore_stats st;
	if (resume) {
		mtm_id from = 0;
		rc = mtm_restore_pending(s, &id, &from);
		if (!rc)
			rc = resume == O_CONTINUE ? mtm_restore_continue(s, &o, &st) : mtm_restore_abort(s, &o, &st);
		cli_progress_end();
		print_saved(saved);
		if (rc)
			rc = cli_fail(rc);
		else if (o.dry_run)
			;
		else if (resume == O_CONTINUE)
			print_done("finished the restore to checkpoint", id, NULL, &st);
		else if (from)
			print_done("abandoned the restore to checkpoint", id, NULL, &st), printf("the tree is back at checkpoint %lld\n", (long long)from);
		else
			printf("abandoned the restore to checkpoint %lld; the tree was left as it is (the interrupted "
			       "restore was recorded by an older version, which did not record what the tree was)\n", (long long)id);
	} else if (!cli_parse_id(s, idtext, &id)) {
		mtm_id pending = 0;
		if (!o.to_dir && !o.dry_run && !mtm_restore_pending(s, &pending, NULL) && pending)
			fprintf(stderr, "metamori: note: this restore replaces the interrupted restore to checkpoint %lld\n",
			        (long long)pending);
		rc = mtm_restore(s, id, &o, &st);
		cli_progress_end();
		print_saved(saved);
		if (rc)
			rc = cli_fail(rc);
		else if (!o.dry_run)
			print_done("restored checkpoint", id, o.to_dir, &st);
	}
	free(ex);
	mtm_close(s);
	return rc;
}

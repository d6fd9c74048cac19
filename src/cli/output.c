/* output.c — errors, progress and small parsers shared by the commands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cli/cli.h"

const char *cli_dir;

int cli_fail(int err)
{
	const char *detail = mtm_last_error();
	if (detail && *detail)
		fprintf(stderr, "metamori: %s\n", detail);
	else
		fprintf(stderr, "metamori: %s\n", mtm_strerror(err));
	return 1;
}

int cli_error(const char *what, const char *why)
{
	fprintf(stderr, "metamori: %s: %s\n", what, why);
	return 1;
}

void cli_log(void *arg, int level, const char *line)
{
	(void)arg;
	(void)level;
	fprintf(stderr, "metamori: %s\n", line);
}

int cli_open(mtm_store **out)
{
	int rc = mtm_open(out, cli_dir ? cli_dir : ".");
	return rc ? cli_fail(rc) : 0;
}

static int progress_shown;
static struct timespec progress_last;

void cli_progress(void *arg, const char *phase, uint64_t done, uint64_t total)
{
	if (!isatty(2))
		return;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long ms = (now.tv_sec - progress_last.tv_sec) * 1000 + (now.tv_nsec - progress_last.tv_nsec) / 1000000;
	if (progress_shown && ms < 100 && done < total)
		return;
	progress_last = now;
	char a[32], b[32];
	int pct = total ? (int)(done * 100 / total) : 100;
	fprintf(stderr, "\r%s: %3d%% (%s of %s)\033[K", phase, pct > 100 ? 100 : pct, human_size(a, sizeof a, done),
	        human_size(b, sizeof b, total));
	progress_shown = 1;
}

void cli_progress_end(void)
{
	if (progress_shown)
		fprintf(stderr, "\r\033[K");
	progress_shown = 0;
}

int cli_parse_id(mtm_store *s, const char *text, mtm_id *out)
{
	int rc = mtm_resolve(s, text, out);
	return rc ? cli_fail(rc) : 0;
}

int cli_wants_help(const cli_command *cmd, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			printf("%s", cmd->usage);
			return 1;
		}
	}
	return 0;
}

void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

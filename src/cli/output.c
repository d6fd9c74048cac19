/* output.c — errors and small parsers shared by the commands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <getopt.h>
#include <unistd.h>
#include "cli/cli.h"
#include "cli/quote.h"

const char *cli_dir;

const char *cli_path(const char *arg)
{
	static char *joined[8]; /* (kept: reachable until exit, a command names few) */
	static int n;
	if (!cli_dir || !arg || arg[0] == '/' || n == 8)
		return arg; /* (a ninth: as given; no command names that many) */
	char *p;
	if (asprintf(&p, "%s/%s", cli_dir, arg) < 0)
		return arg;
	return joined[n++] = p;
}

/* Errors and log lines name paths, tags and arguments as given: each is
 * written with quote_line (one line, no escape sequence reaches the
 * terminal). */
FILE *err_line_begin(err_line *l)
{
	l->buf = NULL;
	l->len = 0;
	l->m = open_memstream(&l->buf, &l->len);
	return l->m ? l->m : stderr; /* no memory: piece by piece, as before */
}

void err_line_end(err_line *l)
{
	if (!l->m)
		return;
	if (!fclose(l->m))
		fwrite(l->buf, 1, l->len, stderr);
	free(l->buf);
}

int cli_fail(int err)
{
	const char *detail = mtm_last_error();
	err_line l;
	FILE *f = err_line_begin(&l);
	fputs("metamori: ", f);
	quote_line(f, detail && *detail ? detail : mtm_strerror(err));
	fputc('\n', f);
	err_line_end(&l);
	return 1;
}

int cli_error(const char *what, const char *why)
{
	err_line l;
	FILE *f = err_line_begin(&l);
	fputs("metamori: ", f);
	quote_line(f, what);
	fputs(": ", f);
	quote_line(f, why);
	fputc('\n', f);
	err_line_end(&l);
	return 1;
}

void cli_log(void *arg, int level, const char *line)
{
	(void)arg;
	(void)level;
	err_line l;
	FILE *f = err_line_begin(&l);
	fputs("metamori: ", f);
	quote_line(f, line);
	fputc('\n', f);
	err_line_end(&l);
}

int cli_open_only(mtm_store **out)
{
	int rc = mtm_open(out, cli_dir ? cli_dir : ".");
	return rc ? cli_fail(rc) : 0;
}

void cli_note_pending(mtm_store *s)
{
	mtm_id target, from;
	if (mtm_restore_pending(s, &target, &from) || !target)
		return; /* a damaged intent is reported by the commands that use it */
	fprintf(stderr, "metamori: note: a restore to checkpoint %lld was interrupted and the tree may be partly "
	        "restored; finish it with 'metamori restore --continue' or put the tree back with "
	        "'metamori restore --abort'\n", (long long)target);
}

int cli_open(mtm_store **out)
{
	if (cli_open_only(out))
		return 1;
	cli_note_pending(*out);
	return 0;
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

int cli_option_error(const char *cmd, int c, char **argv)
{
	char why[160];
	/* getopt has moved past the option (and its would-be argument) */
	const char *opt = optind > 0 ? argv[optind - 1] : "?";
	if (c == ':')
		snprintf(why, sizeof why, "%s needs an argument (see 'metamori %s --help')", opt, cmd);
	else
		snprintf(why, sizeof why, "bad option (see 'metamori %s --help')", cmd);
	return cli_error(cmd, why);
}

size_t cli_decimal_len(const char *text, int fraction)
{
	size_t n = strspn(text, "0123456789");
	if (n && fraction && text[n] == '.') {
		size_t f = strspn(text + n + 1, "0123456789");
		if (f)
			n += 1 + f;
	}
	return n;
}

int cli_is_decimal(const char *text, int fraction)
{
	size_t n = cli_decimal_len(text, fraction);
	return n && !text[n];
}

int cli_parse_uint(const char *opt, const char *text, uint64_t min, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno || !cli_is_decimal(text, 0) || *end || v < min) {
		char why[64];
		snprintf(why, sizeof why, "needs a whole number of at least %llu", (unsigned long long)min);
		return cli_error(opt, why);
	}
	*out = v;
	return 0;
}

const char *cli_plural(uint64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

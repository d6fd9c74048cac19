/* cli.h — shared pieces of the metamori command: each command lives in its
 * own cmd_<name>.c with its usage text beside it, and uses the public API
 * only (the CLI is the library's first client). */
#ifndef MTM_CLI_H
#define MTM_CLI_H
#include <stdint.h>
#include <stdio.h>
#include "metamori.h"
#include "cli/progress.h"

typedef struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
	const char *usage;
} cli_command;

extern const char *cli_dir; /* -C DIR, or NULL */
/* A directory named on the command line (restore --to, push, mount, init,
 * checkpoint --mirror), as the command takes it: under -C DIR a relative
 * one is DIR's ("run as if started in DIR", as git -C has it); arg itself
 * otherwise. The joined string lives until the process ends. */
const char *cli_path(const char *arg);

/* A line for stderr built whole, then written at once: stderr is
 * unbuffered, so a line written piece by piece was a write per piece (per
 * byte through quote_line), and a session's line came out mixed with the
 * lines of the program it runs, which share the terminal. Write the line to
 * what err_line_begin returns, then err_line_end. */
typedef struct {
	FILE *m;
	char *buf;
	size_t len;
} err_line;
FILE *err_line_begin(err_line *l);
void err_line_end(err_line *l);
/* Prints "metamori: <detail>" for err and returns 1 (the exit status). */
int cli_fail(int err);
/* Prints "metamori: <what>: <why>" and returns 1. */
int cli_error(const char *what, const char *why);
/* The library's log handler (mtm_set_log_handler): "metamori: <line>" on
 * stderr, every level (the library says only what was asked for). */
void cli_log(void *arg, int level, const char *line);
/* Opens the store for the current directory (or -C DIR), and notes on
 * stderr an interrupted restore that is pending (cli_note_pending). */
int cli_open(mtm_store **out);
/* The same without the note (the commands that finish or replace it). */
int cli_open_only(mtm_store **out);
void cli_note_pending(mtm_store *s);
/* Parses a checkpoint id ("3", or "head"); returns 0 or prints an error. */
int cli_parse_id(mtm_store *s, const char *text, mtm_id *out);
/* Handles "-h/--help" for a command: prints usage, returns 1 if it did. */
int cli_wants_help(const cli_command *cmd, int argc, char **argv);
const cli_command *cli_find(const char *name);
/* Sizes and times as the library's messages write them. */
static inline const char *human_size(char *buf, size_t len, uint64_t bytes) { return mtm_format_size(buf, len, bytes); }
static inline const char *human_time(char *buf, size_t len, int64_t time_ns) { return mtm_format_time(buf, len, time_ns); }
/* After getopt_long (optstring starting with ':') returned c ('?' or ':'):
 * "metamori: CMD: bad option ..." or "... -m needs an argument ..."; returns 1. */
int cli_option_error(const char *cmd, int c, char **argv);
/* A whole number >= min for option opt; returns 0 or prints an error and returns 1. */
int cli_parse_uint(const char *opt, const char *text, uint64_t min, uint64_t *out);
/* Length of text's leading plain decimal: digits, and with fraction a '.'
 * and more digits; 0 if it starts with none. strtoul and strtod also take
 * blanks, signs, hex, exponents, inf and nan, which no option means. */
size_t cli_decimal_len(const char *text, int fraction);
/* 1 if the whole of text is such a decimal. */
int cli_is_decimal(const char *text, int fraction);

/* A JSON string on stdout (cli/json.c: valid UTF-8, bytes as \\udcNN). */
void json_string(const char *s);

/* one or many, by n */
const char *cli_plural(uint64_t n, const char *one, const char *many);

/* Exit statuses (man page, EXIT STATUS). */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_ERROR = 1,
	CLI_EXIT_CHANGED = 2,    /* status/diff --exit-code: there are differences */
	CLI_EXIT_NOEXEC = 126,   /* run: CMD found but could not be executed */
	CLI_EXIT_NOTFOUND = 127, /* run: CMD not found */
};
#endif

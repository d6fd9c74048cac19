/* progress.c — the progress line (see progress.h). */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cli/progress.h"
#include "cli/quote.h"
#include "cli/cli.h"

static int progress_shown;
static struct timespec progress_last;
static const char *progress_phase;

void cli_progress(void *arg, const char *phase, uint64_t done, uint64_t total)
{
	(void)arg;
	/* asked once: this is called per file (a system call per file of a
	 * scan of many small ones, issue 21) */
	static int tty = -1;
	if (tty < 0)
		tty = isatty(2);
	if (!tty)
		return;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long ms = (now.tv_sec - progress_last.tv_sec) * 1000 + (now.tv_nsec - progress_last.tv_nsec) / 1000000;
	if (progress_shown && ms < 100 && done < total && phase == progress_phase)
		return;
	progress_last = now;
	progress_phase = phase;
	char a[32], b[32];
	int pct = total ? (int)(done * 100 / total) : 100;
	fputc('\r', stderr);
	quote_put(stderr, phase);
	if (!strcmp(phase, "prune") || !strcmp(phase, "du")) /* (count checkpoints: mtm_set_progress) */
		fprintf(stderr, ": %3d%% (%llu of %llu checkpoints)\033[K", pct > 100 ? 100 : pct, (unsigned long long)done,
		        (unsigned long long)total);
	else
		fprintf(stderr, ": %3d%% (%s of %s)\033[K", pct > 100 ? 100 : pct, human_size(a, sizeof a, done),
		        human_size(b, sizeof b, total));
	progress_shown = 1;
}

void cli_progress_end(void)
{
	if (progress_shown)
		fprintf(stderr, "\r\033[K");
	progress_shown = 0;
}

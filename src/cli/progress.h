/* progress.h — one line of progress on stderr, only when stderr is a
 * terminal (scripts and logs never see it), at most ten redraws a second,
 * erased when the work ends. Matches mtm_progress_fn. */
#ifndef MTM_CLI_PROGRESS_H
#define MTM_CLI_PROGRESS_H
#include <stdint.h>

void cli_progress(void *arg, const char *phase, uint64_t done, uint64_t total);
/* Erases the line if one was drawn. */
void cli_progress_end(void);
#endif

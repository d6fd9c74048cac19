/*
 * budget.c — how much a tracked checkpoint may copy into memory: read by
 * the checkpoint (tracked.c) and by the background pre-copy (precopy.c),
 * which holds half of it, so it sits below both and below the capture.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "session/session.h"

#define CAPTURE_LIMIT ((uint64_t)512 << 20) /* copy at most this much (and a quarter of free memory) */

/* How much a checkpoint may copy into memory during the barrier. */
uint64_t capture_budget(void)
{
	uint64_t limit = CAPTURE_LIMIT;
	const char *knob = secure_getenv("METAMORI_CAPTURE_LIMIT"); /* tests: force reading in place */
	if (knob && *knob)
		return strtoull(knob, NULL, 10);
	FILE *f = fopen("/proc/meminfo", "re");
	if (f) {
		char line[128];
		unsigned long long kb;
		while (fgets(line, sizeof line, f))
			if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1 && kb * 1024 / 4 < limit)
				limit = kb * 1024 / 4;
		fclose(f);
	}
	return limit;
}

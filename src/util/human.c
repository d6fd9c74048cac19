/* human.c — formatting for people. */
#include <stdio.h>
#include <time.h>
#include "metamori.h"
#include "util/human.h"

const char *human_size(char *buf, size_t len, uint64_t bytes)
{
	static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	if (bytes < 1024) {
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
		return buf;
	}
	double v = (double)bytes;
	int u = 0;
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", v, unit[u]);
	return buf;
}

const char *human_time(char *buf, size_t len, int64_t time_ns)
{
	time_t t = (time_t)(time_ns / 1000000000);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	return buf;
}

int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *mtm_format_size(char *buf, size_t len, uint64_t bytes) { return human_size(buf, len, bytes); }
const char *mtm_format_time(char *buf, size_t len, int64_t time_ns) { return human_time(buf, len, time_ns); }

/* human.h — sizes and times for people. */
#ifndef MTM_UTIL_HUMAN_H
#define MTM_UTIL_HUMAN_H
#include <stdint.h>
#include <stddef.h>
/* "0 B", "512 B", "4.0 KiB", "1.5 GiB" into buf. */
const char *human_size(char *buf, size_t len, uint64_t bytes);
/* "2026-11-25 06:01:02" (local time) into buf. */
const char *human_time(char *buf, size_t len, int64_t time_ns);
int64_t now_ns(void);
#endif

/*
 * pwloop.c — a tight pwrite loop (issue 18): DMTCP must not suspend it
 * inside the interposer's in-flight region, or the session, asked for the
 * paired file checkpoint at DMTCP's barrier, waits for it for ever.
 *
 *   pwloop DIR CTLDIR
 *
 * Writes 4 KiB blocks at scattered offsets of DIR/loop.bin (4 MiB) without
 * pause; creates CTLDIR/ready once it runs, stops when CTLDIR/stop exists.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: pwloop DIR CTLDIR\n");
		return 2;
	}
	char path[4096], ready[4096], stop[4096];
	snprintf(path, sizeof path, "%s/loop.bin", argv[1]);
	snprintf(ready, sizeof ready, "%s/ready", argv[2]);
	snprintf(stop, sizeof stop, "%s/stop", argv[2]);
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	if (fd < 0 || ftruncate(fd, 4 << 20)) {
		perror(path);
		return 2;
	}
	static char block[4096];
	uint64_t x = 88172645463325252ull, n = 0;
	close(open(ready, O_WRONLY | O_CREAT, 0644));
	for (;;) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(block, &n, sizeof n);
		if (pwrite(fd, block, sizeof block, (off_t)(x % 1024) * 4096) != (ssize_t)sizeof block) {
			perror(path);
			return 2;
		}
		if (++n % 4096 == 0 && !access(stop, F_OK))
			break;
	}
	printf("%llu writes\n", (unsigned long long)n);
	return close(fd) ? 2 : 0;
}

/* track_static.c — linked -static: the interposer cannot load into it, so
 * whoever execs or spawns it must declare a sticky SCAN (test_track.py).
 * Writes "static" into argv[1]; with a second argument, then waits for
 * stdin to close (the log of the exec'ing process stays locked meanwhile). */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "static\n", 7) != 7)
		return 1;
	close(fd);
	if (argc > 2) {
		printf("ready\n");
		fflush(stdout);
		char c;
		while (read(0, &c, 1) > 0)
			;
	}
	return 0;
}

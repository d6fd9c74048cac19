/* track_uring.c — makes an io_uring with liburing (which issues its system
 * calls itself): the interposer must declare a sticky SCAN. Exit 77 when
 * the kernel refuses io_uring here. */
#include <liburing.h>
#include <stdio.h>

int main(void)
{
	struct io_uring ring;
	int r = io_uring_queue_init(4, &ring, 0);
	if (r < 0) {
		printf("skip: io_uring_queue_init: %d\n", r);
		return 77;
	}
	io_uring_queue_exit(&ring);
	return 0;
}

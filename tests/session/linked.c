/*
 * linked.c — a program linked with libmetamori that checkpoints itself:
 * under `metamori run`, mtm_checkpoint() asks the session (a consistent,
 * tracked checkpoint); prints "ID TRACKED" per checkpoint.
 *   linked ROOT STEPS
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "metamori.h"

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	mtm_store *s;
	int rc = mtm_open(&s, argv[1]);
	if (rc) {
		fprintf(stderr, "open: %s\n", mtm_last_error());
		return 1;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/linked.dat", argv[1]);
	for (int i = 0; i < atoi(argv[2]); i++) {
		int fd = open(path, O_WRONLY | O_CREAT, 0644);
		char buf[5000];
		memset(buf, 'a' + i, sizeof buf);
		if (fd < 0 || pwrite(fd, buf, sizeof buf, (off_t)i * 3000) != (ssize_t)sizeof buf)
			return 1;
		close(fd);
		mtm_checkpoint_opts o = MTM_CHECKPOINT_OPTS_INIT;
		o.message = "linked";
		mtm_checkpoint_info ci;
		if ((rc = mtm_checkpoint(s, &o, &ci))) {
			fprintf(stderr, "checkpoint: %s\n", mtm_last_error());
			return 1;
		}
		printf("%lld %d\n", (long long)ci.id, ci.tracked);
		fflush(stdout);
		mtm_free(ci.message);
	}
	mtm_close(s);
	return 0;
}

/*
 * fuzz_intent.c — the restore intent file (FORMAT section 9) through
 * intent_read(), on a real store made once in a temporary directory.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "metamori.h"
#include "store/intent.h"
#include "store/store.h"

static mtm_store *S;

static void cleanup(void)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", mtm_root(S));
	mtm_close(S);
	if (system(cmd)) {
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!S) {
		char dir[] = "/tmp/mtm-fuzz-intent-XXXXXX";
		if (!mkdtemp(dir) || mtm_init(&S, dir))
			abort();
		atexit(cleanup);
	}
	int fd = openat(S->dirfd, "intent", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		abort();
	close(fd);
	intent in;
	int rc = intent_read(S, &in);
	if (rc == 0 && size && in.target <= 0)
		abort(); /* success means a positive checkpoint id (or none: an empty file) */
	if (rc == 0 && (in.from < 0 || (in.legacy && (in.from || in.excludes.n || in.paths.n))))
		abort();
	intent_free(&in);
	unlinkat(S->dirfd, "intent", 0);
	return 0;
}

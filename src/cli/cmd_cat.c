/* cmd_cat.c — metamori cat ID PATH: a file's bytes as they were at a checkpoint. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"

const char usage_cat[] =
	"usage: metamori cat ID PATH\n\n"
	"Write the content of file PATH as it was at checkpoint ID to standard\n"
	"output, without restoring anything. PATH is relative to the root of the\n"
	"tree. Every block is checked against its hash as it is read.\n";

static int write_all(const unsigned char *p, size_t n)
{
	while (n) {
		ssize_t w = write(1, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int cmd_cat(int argc, char **argv)
{
	if (argc != 3 || (argv[2][0] == '-' && argv[2][1]))
		return cli_error("cat", "usage: metamori cat ID PATH");
	mtm_store *s;
	if (cli_open(&s))
		return 1;
	mtm_id id;
	int rc = 1;
	mtm_file *f = NULL;
	enum { BUF = 1 << 20 };
	unsigned char *buf = malloc(BUF);
	if (!buf)
		rc = cli_error("cat", "out of memory");
	else if (!cli_parse_id(s, argv[1], &id)) {
		rc = mtm_file_open(&f, s, id, argv[2]);
		for (uint64_t off = 0; !rc && off < mtm_file_size(f);) {
			size_t got;
			if ((rc = mtm_file_pread(f, buf, BUF, off, &got)))
				break;
			int err = write_all(buf, got);
			if (err) {
				mtm_file_close(f);
				free(buf);
				mtm_close(s);
				return cli_error("standard output", strerror(err));
			}
			off += got;
		}
		rc = rc ? cli_fail(rc) : 0;
	}
	mtm_file_close(f);
	free(buf);
	mtm_close(s);
	return rc;
}

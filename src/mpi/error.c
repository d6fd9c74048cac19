/*
 * error.c — libmetamori_mpi's error line (one per thread, as the library's
 * own) and agreeing on it: the rank that failed shares its message, so
 * every rank reports the same.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "mpi/mpi_group.h"

static __thread char err_line[512];

const char *mtm_mpi_last_error(void) { return err_line; }

int mpi_set_error(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err_line, sizeof err_line, fmt, ap);
	va_end(ap);
	return err;
}

int mpi_fail(int mpi_rc, const char *what)
{
	char text[MPI_MAX_ERROR_STRING];
	int len = 0;
	if (MPI_Error_string(mpi_rc, text, &len) != MPI_SUCCESS)
		snprintf(text, sizeof text, "MPI error %d", mpi_rc);
	return mpi_set_error(MTM_EINVAL, "mpi: %s: %s", what, text);
}

int mpi_share_error(MPI_Comm comm, int rc, int who)
{
	int rank;
	MPI_Comm_rank(comm, &rank);
	char msg[sizeof err_line];
	if (rank == who)
		memcpy(msg, err_line, sizeof msg);
	int m = MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, who, comm);
	if (m != MPI_SUCCESS)
		return mpi_fail(m, "sharing an error");
	msg[sizeof msg - 1] = 0;
	memcpy(err_line, msg, sizeof msg);
	return rc;
}

/* thread.c — helper threads that leave the program's signals alone. */
#include <signal.h>
#include "util/thread.h"

int thread_start_quiet(pthread_t *th, void *(*fn)(void *), void *arg)
{
	/* a new thread starts with its creator's mask: blocked around the
	 * start, and the creator's own mask put back after */
	sigset_t all, old;
	sigfillset(&all);
	static const int faults[] = {SIGBUS, SIGSEGV, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
	for (size_t i = 0; i < sizeof faults / sizeof *faults; i++)
		sigdelset(&all, faults[i]);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(th, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

/* thread.h — the library's own helper threads (the pack's flusher, the
 * stat pool, the reader's hasher, the session's lower-priority thread). */
#ifndef MTM_UTIL_THREAD_H
#define MTM_UTIL_THREAD_H
#include <pthread.h>

/* fn(arg) on a new thread that takes none of the program's asynchronous
 * signals: they stay with the threads that expect them (a caller's
 * signalfd, its handler of SIGINT, its EINTR). The synchronous fault
 * signals stay deliverable: a mapped read's SIGBUS is caught on the thread
 * that faulted, and a fault signal that is blocked kills the process. 0 or
 * pthread_create's error. */
int thread_start_quiet(pthread_t *th, void *(*fn)(void *), void *arg);
#endif

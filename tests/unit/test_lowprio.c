/* test_lowprio.c — work handed to a thread of lower priority (util/lowprio.h):
 * it runs there (another thread, at the caller's nice value plus the
 * increment, capped at 19; SCHED_IDLE when asked), the caller waits for it
 * and gets its return value and its last error, the work's writes are the
 * caller's to read after, with no thread it runs on the caller's, and the
 * knob's values. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <cmocka.h>
#include "util/error.h"
#include "util/lowprio.h"

struct probe {
	pthread_t th;
	int nice, policy, runs;
	long sum;
};

static int probe_run(void *arg)
{
	struct probe *p = arg;
	p->th = pthread_self();
	p->nice = getpriority(PRIO_PROCESS, 0);
	p->policy = sched_getscheduler(0);
	p->runs++;
	for (int i = 1; i <= 1000; i++)
		p->sum += i;
	return 0;
}

static int fail_run(void *arg)
{
	(void)arg;
	return mtm_set_error(MTM_EINDEX, "index: the work failed on its thread");
}

static void runs_on_a_thread_at_lower_priority(void **state)
{
	(void)state;
	int base = getpriority(PRIO_PROCESS, 0);
	lowprio *lp;
	assert_int_equal(lowprio_start(&lp, 5), 0);
	int want = base + 5 > 19 ? 19 : base + 5;
	assert_int_equal(lowprio_nice(lp), want);
	struct probe p = {0};
	for (int i = 0; i < 3; i++)
		assert_int_equal(lowprio_call(lp, probe_run, &p), 0);
	assert_int_equal(p.runs, 3); /* (each call waited for its run) */
	assert_int_equal(p.sum, 3 * 500500);
	assert_false(pthread_equal(p.th, pthread_self()));
	assert_int_equal(p.nice, want);
	assert_int_equal(getpriority(PRIO_PROCESS, 0), base); /* the caller's own is as it was */
	lowprio_stop(lp);
}

static void idle_is_sched_idle(void **state)
{
	(void)state;
	lowprio *lp;
	assert_int_equal(lowprio_start(&lp, LOWPRIO_IDLE), 0);
	struct probe p = {0};
	assert_int_equal(lowprio_call(lp, probe_run, &p), 0);
	assert_int_equal(p.policy, SCHED_IDLE);
	assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
	lowprio_stop(lp);
}

static void its_error_is_the_callers(void **state)
{
	(void)state;
	lowprio *lp;
	assert_int_equal(lowprio_start(&lp, 10), 0);
	mtm_clear_error();
	assert_int_equal(lowprio_call(lp, fail_run, NULL), MTM_EINDEX);
	assert_string_equal(mtm_last_error(), "index: the work failed on its thread");
	/* a success after it leaves the caller's error alone */
	mtm_set_error(MTM_EINVAL, "the caller's");
	struct probe p = {0};
	assert_int_equal(lowprio_call(lp, probe_run, &p), 0);
	assert_string_equal(mtm_last_error(), "the caller's");
	lowprio_stop(lp);
}

static void no_thread_runs_it_here(void **state)
{
	(void)state;
	struct probe p = {0};
	assert_int_equal(lowprio_call(NULL, probe_run, &p), 0);
	assert_true(pthread_equal(p.th, pthread_self()));
	assert_int_equal(lowprio_call(NULL, fail_run, NULL), MTM_EINDEX);
	lowprio_stop(NULL);
}

static void the_knob(void **state)
{
	(void)state;
	assert_int_equal(lowprio_from_env(NULL, 10), 10);
	assert_int_equal(lowprio_from_env("", 10), 10);
	assert_int_equal(lowprio_from_env("0", 10), 0);
	assert_int_equal(lowprio_from_env("off", 10), 0);
	assert_int_equal(lowprio_from_env("idle", 10), LOWPRIO_IDLE);
	assert_int_equal(lowprio_from_env("19", 10), 19);
	assert_int_equal(lowprio_from_env("3", 10), 3);
	assert_int_equal(lowprio_from_env("20", 10), 10);
	assert_int_equal(lowprio_from_env("-1", 10), 10);
	assert_int_equal(lowprio_from_env("x", 10), 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(runs_on_a_thread_at_lower_priority),
		cmocka_unit_test(idle_is_sched_idle),
		cmocka_unit_test(its_error_is_the_callers),
		cmocka_unit_test(no_thread_runs_it_here),
		cmocka_unit_test(the_knob),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

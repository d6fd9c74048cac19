/* test_slotpool.c — the pool the session's block copies (slots) come from:
 * every slot taken is its own SLOT_LEN bytes while held, slots released are
 * taken again before new memory is, a trim keeps what the busiest moment
 * of the last SLOT_POOL_KEEP intervals needed and frees the rest, and a trim
 * of all frees every slot not in use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "session/slots.h"

#define N 3000 /* several slabs */

static unsigned char *held[N];

static void fill(unsigned char *s, int i)
{
	for (size_t k = 0; k < SLOT_LEN; k++)
		s[k] = (unsigned char)(i * 31 + k);
}

static int intact(const unsigned char *s, int i)
{
	for (size_t k = 0; k < SLOT_LEN; k++)
		if (s[k] != (unsigned char)(i * 31 + k))
			return 0;
	return 1;
}

static void slots_are_their_own(void **state)
{
	(void)state;
	size_t used, pooled;
	for (int i = 0; i < N; i++) {
		assert_non_null(held[i] = slot_alloc());
		fill(held[i], i);
	}
	for (int i = 0; i < N; i++)
		assert_true(intact(held[i], i)); /* (no two overlap) */
	slot_pool_counts(&used, &pooled);
	assert_int_equal(used, N);
	/* released slots are taken again, and hold what is written next */
	size_t total = used + pooled;
	(void)total; /* (the sanitizer build pools nothing) */
	for (int i = 0; i < N; i += 2)
		slot_release(held[i]);
	for (int i = 0; i < N; i += 2) {
		assert_non_null(held[i] = slot_alloc());
		fill(held[i], i + 7);
	}
	slot_pool_counts(&used, &pooled);
#ifndef __SANITIZE_ADDRESS__
	assert_int_equal(used + pooled, total); /* (the slots released, scattered over slabs: no new slab) */
#endif
	for (int i = 0; i < N; i++)
		assert_true(intact(held[i], i % 2 ? i : i + 7));
	for (int i = 0; i < N; i++)
		slot_release(held[i]);
	slot_pool_counts(&used, &pooled);
	assert_int_equal(used, 0);
	slot_release(NULL);
}

static void trim_keeps_the_busiest_moment(void **state)
{
	(void)state;
	size_t used, pooled;
	slot_pool_trim(1);
	for (int i = 0; i < N; i++)
		assert_non_null(held[i] = slot_alloc());
	for (int i = 0; i < N; i++)
		slot_release(held[i]);
	slot_pool_trim(0); /* the interval took N at once: kept for the next */
	slot_pool_counts(&used, &pooled);
	assert_int_equal(used, 0);
#ifndef __SANITIZE_ADDRESS__
	assert_true(pooled >= N);
	assert_true(pooled < 2 * N);
#endif
	/* intervals that took 10 at most: the rest is freed once the busy one
	 * is SLOT_POOL_KEEP intervals old */
	for (int i = 0; i < 10; i++)
		assert_non_null(held[i] = slot_alloc());
	slot_pool_trim(0); /* (N at once before: all kept; the count starts anew) */
	for (int i = 0; i < 10; i++)
		slot_release(held[i]);
	for (int k = 0; k < SLOT_POOL_KEEP; k++)
		slot_pool_trim(0);
	slot_pool_counts(&used, &pooled);
	assert_int_equal(used, 0);
	assert_true(pooled < N / 2);
	/* a slot in use is never freed by a trim, even of all */
	unsigned char *s = slot_alloc();
	assert_non_null(s);
	fill(s, 5);
	slot_pool_trim(1);
	assert_true(intact(s, 5));
	slot_release(s);
	slot_pool_trim(1);
	slot_pool_counts(&used, &pooled);
	assert_int_equal(used, 0);
	assert_int_equal(pooled, 0);
}

/* pgbench's intervals: a busy one, a quiet one, a busy one again. The
 * second busy one takes the slabs the first made (each slab made is a huge
 * page the kernel zeroes: 37% of the session's CPU, P14). */
static void busy_quiet_busy_makes_no_slab_again(void **state)
{
	(void)state;
#ifndef __SANITIZE_ADDRESS__
	size_t used, pooled;
	slot_pool_trim(1);
	(void)slot_pool_made();
	for (int round = 0; round < 3; round++) {
		int n = round == 1 ? 10 : N;
		for (int i = 0; i < n; i++)
			assert_non_null(held[i] = slot_alloc());
		for (int i = 0; i < n; i++)
			slot_release(held[i]);
		size_t made = slot_pool_made();
		if (round == 0)
			assert_true(made > 0);
		else
			assert_int_equal(made, 0); /* (before: the third made them all again) */
		slot_pool_trim(0);
	}
	slot_pool_trim(1);
	slot_pool_counts(&used, &pooled);
	assert_int_equal(pooled, 0);
#endif
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(slots_are_their_own),
		cmocka_unit_test(trim_keeps_the_busiest_moment),
		cmocka_unit_test(busy_quiet_busy_makes_no_slab_again),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

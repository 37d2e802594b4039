/* Unit tests for src/auth/throttle.c: the delay ladder 0, 1, 2, 4 ... 30, blocking at the limit,
 * the window forgetting old failures, IPs and users counted apart, and the table staying bounded
 * (oldest forgotten first) under a flood of distinct addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <malloc.h>

#include "auth/throttle.h"

#define T0 ((time_t)1700000000)

static void delays_grow_to_cap(void **state)
{
    struct throttle *t = throttle_new(100, 3600, 64);
    assert_non_null(t);
    const unsigned want[] = {0, 1, 2, 4, 8, 16, 30, 30, 30};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(throttle_delay(t, "192.0.2.1", "alice@example.org", T0 + (time_t)i),
                         want[i]);
        throttle_fail(t, "192.0.2.1", "alice@example.org", T0 + (time_t)i);
    }
    throttle_free(t);
}

static void no_failures_no_delay(void **state)
{
    struct throttle *t = throttle_new(5, 600, 64);
    assert_non_null(t);
    assert_int_equal(throttle_delay(t, "192.0.2.1", "", T0), 0);
    assert_false(throttle_blocked(t, "192.0.2.1", "", T0));
    assert_false(throttle_blocked(t, "192.0.2.1", "bob@example.org", T0));
    throttle_free(t);
}

static void blocks_at_limit(void **state)
{
    struct throttle *t = throttle_new(3, 600, 64);
    assert_non_null(t);
    for (int i = 0; i < 2; i++) {
        throttle_fail(t, "192.0.2.7", "bob@example.org", T0 + i);
        assert_false(throttle_blocked(t, "192.0.2.7", "bob@example.org", T0 + i));
    }
    throttle_fail(t, "192.0.2.7", "bob@example.org", T0 + 2);
    assert_true(throttle_blocked(t, "192.0.2.7", "bob@example.org", T0 + 2));
    /* Either key alone is enough. */
    assert_true(throttle_blocked(t, "192.0.2.7", "", T0 + 3));
    assert_true(throttle_blocked(t, "198.51.100.1", "bob@example.org", T0 + 3));
    assert_false(throttle_blocked(t, "198.51.100.1", "carol@example.org", T0 + 3));
    throttle_free(t);
}

static void window_expiry_unblocks(void **state)
{
    struct throttle *t = throttle_new(3, 600, 64);
    assert_non_null(t);
    for (int i = 0; i < 3; i++)
        throttle_fail(t, "192.0.2.7", "bob@example.org", T0);
    assert_true(throttle_blocked(t, "192.0.2.7", "bob@example.org", T0 + 599));
    assert_int_equal(throttle_delay(t, "192.0.2.7", "bob@example.org", T0 + 599), 4);
    assert_false(throttle_blocked(t, "192.0.2.7", "bob@example.org", T0 + 600));
    assert_int_equal(throttle_delay(t, "192.0.2.7", "bob@example.org", T0 + 600), 0);
    /* A failure after the window starts the count again from one. */
    throttle_fail(t, "192.0.2.7", "bob@example.org", T0 + 700);
    assert_int_equal(throttle_delay(t, "192.0.2.7", "bob@example.org", T0 + 700), 1);
    assert_false(throttle_blocked(t, "192.0.2.7", "bob@example.org", T0 + 700));
    throttle_free(t);
}

static void window_slides_with_last_failure(void **state)
{
    struct throttle *t = throttle_new(3, 600, 64);
    assert_non_null(t);
    /* Failures spaced under the window keep accumulating. */
    throttle_fail(t, "192.0.2.9", "", T0);
    throttle_fail(t, "192.0.2.9", "", T0 + 500);
    throttle_fail(t, "192.0.2.9", "", T0 + 1000);
    assert_true(throttle_blocked(t, "192.0.2.9", "", T0 + 1000));
    assert_true(throttle_blocked(t, "192.0.2.9", "", T0 + 1599));
    assert_false(throttle_blocked(t, "192.0.2.9", "", T0 + 1600));
    throttle_free(t);
}

static void clock_stepping_back_counts_as_now(void **state)
{
    struct throttle *t = throttle_new(2, 600, 64);
    assert_non_null(t);
    throttle_fail(t, "192.0.2.9", "", T0);
    throttle_fail(t, "192.0.2.9", "", T0);
    assert_true(throttle_blocked(t, "192.0.2.9", "", T0 - 100));
    throttle_free(t);
}

static void ip_and_user_independent(void **state)
{
    struct throttle *t = throttle_new(10, 600, 64);
    assert_non_null(t);
    for (int i = 0; i < 4; i++)
        throttle_fail(t, "192.0.2.1", "", T0);
    throttle_fail(t, "203.0.113.5", "dave@example.org", T0);
    /* ip 192.0.2.1 has 4 failures (8 s); the user none of its own. */
    assert_int_equal(throttle_delay(t, "192.0.2.1", "", T0), 8);
    assert_int_equal(throttle_delay(t, "192.0.2.2", "", T0), 0);
    assert_int_equal(throttle_delay(t, "192.0.2.2", "dave@example.org", T0), 1);
    /* The larger of the two. */
    assert_int_equal(throttle_delay(t, "192.0.2.1", "dave@example.org", T0), 8);
    /* A user named like an IP is still another key. */
    assert_int_equal(throttle_delay(t, "", "192.0.2.1", T0), 0);
    /* Failures from many IPs against one user add up for that user. */
    for (int i = 0; i < 5; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "198.51.100.%d", i);
        throttle_fail(t, ip, "erin@example.org", T0);
    }
    assert_int_equal(throttle_delay(t, "192.0.2.200", "erin@example.org", T0), 16);
    assert_int_equal(throttle_delay(t, "198.51.100.0", "", T0), 1);
    throttle_free(t);
}

static void unknown_user_empty_or_null(void **state)
{
    struct throttle *t = throttle_new(2, 600, 64);
    assert_non_null(t);
    throttle_fail(t, "192.0.2.1", "", T0);
    throttle_fail(t, "192.0.2.1", NULL, T0);
    assert_true(throttle_blocked(t, "192.0.2.1", NULL, T0));
    assert_false(throttle_blocked(t, "192.0.2.2", "", T0));
    throttle_free(t);
}

static void long_user_names_are_bounded(void **state)
{
    struct throttle *t = throttle_new(3, 600, 8);
    assert_non_null(t);
    char big[5000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    throttle_fail(t, "192.0.2.1", big, T0);
    assert_int_equal(throttle_delay(t, "192.0.2.2", big, T0), 1);
    throttle_free(t);
}

static void eviction_bounds_memory(void **state)
{
    const size_t max = 1000;
    struct throttle *t = throttle_new(5, 3600, max);
    assert_non_null(t);
    char ip[64];
    size_t heap_full = 0;
    for (unsigned i = 0; i < 100000; i++) {
        snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16 & 255, i >> 8 & 255, i & 255);
        throttle_fail(t, ip, "", T0 + (time_t)(i / 100));
        if (i == 2 * max)
            heap_full = mallinfo2().uordblks;
    }
    /* Once full, 98,000 more addresses cost no more heap (a little slack for the allocator;
     * under ASan glibc's counters stay still and this holds trivially). */
    assert_true(mallinfo2().uordblks <= heap_full + 4096);
    /* The first addresses are long forgotten; the last max are all still there. */
    assert_int_equal(throttle_delay(t, "10.0.0.0", "", T0 + 1000), 0);
    assert_int_equal(throttle_delay(t, "10.0.0.1", "", T0 + 1000), 0);
    unsigned kept = 0;
    for (unsigned i = 100000 - (unsigned)max; i < 100000; i++) {
        snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16 & 255, i >> 8 & 255, i & 255);
        kept += throttle_delay(t, ip, "", T0 + 1000) == 1;
    }
    assert_int_equal(kept, max);
    /* The one before them went when the last came in. */
    unsigned i = 100000 - (unsigned)max - 1;
    snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16 & 255, i >> 8 & 255, i & 255);
    assert_int_equal(throttle_delay(t, ip, "", T0 + 1000), 0);
    throttle_free(t);
}

static void eviction_takes_oldest_failure(void **state)
{
    struct throttle *t = throttle_new(10, 3600, 3);
    assert_non_null(t);
    throttle_fail(t, "192.0.2.1", "", T0);
    throttle_fail(t, "192.0.2.2", "", T0 + 1);
    throttle_fail(t, "192.0.2.3", "", T0 + 2);
    /* .1 fails again: now .2 is the oldest. */
    throttle_fail(t, "192.0.2.1", "", T0 + 3);
    throttle_fail(t, "192.0.2.4", "", T0 + 4);
    assert_int_equal(throttle_delay(t, "192.0.2.1", "", T0 + 5), 2);
    assert_int_equal(throttle_delay(t, "192.0.2.2", "", T0 + 5), 0);
    assert_int_equal(throttle_delay(t, "192.0.2.3", "", T0 + 5), 1);
    assert_int_equal(throttle_delay(t, "192.0.2.4", "", T0 + 5), 1);
    throttle_free(t);
}

static void limit_zero_only_delays(void **state)
{
    struct throttle *t = throttle_new(0, 600, 16);
    assert_non_null(t);
    for (int i = 0; i < 20; i++)
        throttle_fail(t, "192.0.2.1", "", T0);
    assert_false(throttle_blocked(t, "192.0.2.1", "", T0));
    assert_int_equal(throttle_delay(t, "192.0.2.1", "", T0), 30);
    throttle_free(t);
}

static void refuses_zero_keys(void **state)
{
    assert_null(throttle_new(5, 600, 0));
    throttle_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(delays_grow_to_cap),
        cmocka_unit_test(no_failures_no_delay),
        cmocka_unit_test(blocks_at_limit),
        cmocka_unit_test(window_expiry_unblocks),
        cmocka_unit_test(window_slides_with_last_failure),
        cmocka_unit_test(clock_stepping_back_counts_as_now),
        cmocka_unit_test(ip_and_user_independent),
        cmocka_unit_test(unknown_user_empty_or_null),
        cmocka_unit_test(long_user_names_are_bounded),
        cmocka_unit_test(eviction_bounds_memory),
        cmocka_unit_test(eviction_takes_oldest_failure),
        cmocka_unit_test(limit_zero_only_delays),
        cmocka_unit_test(refuses_zero_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

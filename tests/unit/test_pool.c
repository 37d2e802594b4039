/* Unit tests for the worker pool: where run() and done() execute, that every job completes
 * exactly once under load (a lost wakeup would hang the loop until the guard timer fails the
 * test), completion order, pending counts, chained submissions, and draining in pool_free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "work/pool.h"

/* Generous: the slowest case here finishes in well under a second even under TSan. */
#define GUARD_SECONDS 60

struct run;

struct job_rec {
    struct run *r;
    int idx;
    pthread_t ran_on;
    int runs;  /* written by the worker, read after done() (ordered by the pool's lock) */
    int dones; /* loop thread only */
    bool done_on_loop;
    long sleep_us; /* how long run() takes */
};

struct run {
    struct event_base *base;
    struct pool *pool;
    pthread_t loop;
    struct job_rec *jobs;
    int njobs;
    int ndone;
    int *done_order; /* job indexes in the order done() ran */
    int chain_left;  /* for the chained test: jobs still to submit from done() */
    int submit_rc_in_done;
    bool check_resubmit;
};

/* Sleeps for us microseconds, so jobs are still queued or running when the test wants. */
static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000L, (us % 1000000L) * 1000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void job_run(void *arg)
{
    struct job_rec *j = arg;
    j->ran_on = pthread_self();
    j->runs++;
    if (j->sleep_us)
        sleep_us(j->sleep_us);
}

static void job_done(void *arg)
{
    struct job_rec *j = arg;
    struct run *r = j->r;
    j->dones++;
    j->done_on_loop = pthread_equal(pthread_self(), r->loop);
    r->done_order[r->ndone++] = j->idx;
    if (r->check_resubmit)
        r->submit_rc_in_done = pool_submit(r->pool, job_run, job_done, j);
    if (r->ndone == r->njobs)
        event_base_loopbreak(r->base);
}

/* Sets up a base, a pool and n job records. */
static void run_init(struct run *r, int nthreads, int n)
{
    *r = (struct run){0};
    r->base = event_base_new();
    assert_non_null(r->base);
    r->pool = pool_new(r->base, nthreads);
    assert_non_null(r->pool);
    r->loop = pthread_self();
    r->njobs = n;
    r->jobs = calloc((size_t)n, sizeof(*r->jobs));
    r->done_order = calloc((size_t)n, sizeof(*r->done_order));
    assert_non_null(r->jobs);
    assert_non_null(r->done_order);
    for (int i = 0; i < n; i++)
        r->jobs[i] = (struct job_rec){.r = r, .idx = i};
}

/* Runs the loop until every job is done or the guard timer fires. The pool's event is only
 * activated, never added, so the loop must be told not to exit while it looks empty. */
static void run_loop(struct run *r)
{
    struct timeval guard = {GUARD_SECONDS, 0};
    event_base_loopexit(r->base, &guard);
    event_base_loop(r->base, EVLOOP_NO_EXIT_ON_EMPTY);
    assert_int_equal(r->ndone, r->njobs);
}

static void run_fini(struct run *r)
{
    if (r->pool)
        pool_free(r->pool);
    event_base_free(r->base);
    free(r->jobs);
    free(r->done_order);
}

/* Every job ran once on some other thread and completed once on the loop thread. */
static void assert_all_once(const struct run *r)
{
    for (int i = 0; i < r->njobs; i++) {
        assert_int_equal(r->jobs[i].runs, 1);
        assert_int_equal(r->jobs[i].dones, 1);
        assert_false(pthread_equal(r->jobs[i].ran_on, r->loop));
        assert_true(r->jobs[i].done_on_loop);
    }
}

static void test_threads(void **state)
{
    struct run r;
    run_init(&r, 4, 16);
    for (int i = 0; i < r.njobs; i++)
        assert_int_equal(pool_submit(r.pool, job_run, job_done, &r.jobs[i]), 0);
    run_loop(&r);
    assert_all_once(&r);
    run_fini(&r);
}

static void test_thousand_exactly_once(void **state)
{
    struct run r;
    run_init(&r, 4, 1000);
    /* Uneven run times, so completions keep arriving while the loop drains earlier ones. */
    for (int i = 0; i < r.njobs; i++)
        r.jobs[i].sleep_us = (i % 7) * 20;
    for (int i = 0; i < r.njobs; i++)
        assert_int_equal(pool_submit(r.pool, job_run, job_done, &r.jobs[i]), 0);
    /* Nothing completes before the loop runs, however fast the workers are. */
    assert_int_equal(pool_pending(r.pool), 1000);
    run_loop(&r);
    assert_all_once(&r);
    assert_int_equal(pool_pending(r.pool), 0);
    run_fini(&r);
}

/* Many tiny jobs racing the loop's drain: the case where a lost wakeup would show. */
static void test_many_tiny_jobs(void **state)
{
    struct run r;
    run_init(&r, 2, 50000);
    for (int i = 0; i < r.njobs; i++)
        assert_int_equal(pool_submit(r.pool, NULL, job_done, &r.jobs[i]), 0);
    run_loop(&r);
    for (int i = 0; i < r.njobs; i++)
        assert_int_equal(r.jobs[i].dones, 1);
    run_fini(&r);
}

/* With one worker, completion order is submission order. */
static void test_completion_order(void **state)
{
    struct run r;
    run_init(&r, 1, 200);
    for (int i = 0; i < r.njobs; i++)
        assert_int_equal(pool_submit(r.pool, job_run, job_done, &r.jobs[i]), 0);
    run_loop(&r);
    for (int i = 0; i < r.njobs; i++)
        assert_int_equal(r.done_order[i], i);
    run_fini(&r);
}

static void chain_done(void *arg)
{
    struct job_rec *j = arg;
    struct run *r = j->r;
    job_done(arg);
    if (r->chain_left > 0) {
        struct job_rec *next = &r->jobs[r->njobs - r->chain_left--];
        assert_int_equal(pool_submit(r->pool, job_run, chain_done, next), 0);
    }
}

/* A done() may submit the next job: the session does exactly that, step by step. */
static void test_chained_submit(void **state)
{
    struct run r;
    run_init(&r, 2, 100);
    r.chain_left = r.njobs - 1;
    assert_int_equal(pool_submit(r.pool, job_run, chain_done, &r.jobs[0]), 0);
    run_loop(&r);
    assert_all_once(&r);
    for (int i = 0; i < r.njobs; i++)
        assert_int_equal(r.done_order[i], i);
    run_fini(&r);
}

/* pool_free with jobs still queued behind a slow worker: all of them run and complete, on
 * the calling thread, and submissions made during shutdown are refused. */
static void test_free_drains_queue(void **state)
{
    struct run r;
    run_init(&r, 1, 50);
    for (int i = 0; i < r.njobs; i++) {
        r.jobs[i].sleep_us = 2000;
        assert_int_equal(pool_submit(r.pool, job_run, job_done, &r.jobs[i]), 0);
    }
    r.check_resubmit = true;
    r.submit_rc_in_done = 0;
    pool_free(r.pool); /* the loop never ran */
    r.pool = NULL;
    assert_int_equal(r.ndone, r.njobs);
    assert_all_once(&r);
    assert_int_equal(r.submit_rc_in_done, -1);
    for (int i = 0; i < r.njobs; i++)
        assert_int_equal(r.done_order[i], i);
    run_fini(&r);
}

/* Some completions seen by the loop, the rest left for pool_free. */
static void test_free_after_partial_loop(void **state)
{
    struct run r;
    run_init(&r, 2, 40);
    for (int i = 0; i < r.njobs; i++) {
        r.jobs[i].sleep_us = 2000;
        assert_int_equal(pool_submit(r.pool, job_run, job_done, &r.jobs[i]), 0);
    }
    struct timeval brief = {0, 10000};
    event_base_loopexit(r.base, &brief);
    event_base_loop(r.base, EVLOOP_NO_EXIT_ON_EMPTY);
    pool_free(r.pool);
    r.pool = NULL;
    assert_int_equal(r.ndone, r.njobs);
    assert_all_once(&r);
    run_fini(&r);
}

static void test_new_rejects_bad_args(void **state)
{
    struct event_base *base = event_base_new();
    assert_null(pool_new(base, 0));
    assert_null(pool_new(base, -1));
    assert_null(pool_new(NULL, 2));
    event_base_free(base);
    pool_free(NULL);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_thousand_exactly_once),
        cmocka_unit_test(test_many_tiny_jobs),
        cmocka_unit_test(test_completion_order),
        cmocka_unit_test(test_chained_submit),
        cmocka_unit_test(test_free_drains_queue),
        cmocka_unit_test(test_free_after_partial_loop),
        cmocka_unit_test(test_new_rejects_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

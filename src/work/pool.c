/* The worker pool. Owns a fixed set of pthreads, the queue of jobs waiting for them and the
 * queue of jobs they finished, and the one libevent event through which finished jobs are
 * handed back to the loop's thread. A job is one small struct that moves from the run queue
 * to the completion queue and is freed after its done() callback; nothing else is allocated
 * per job. The wakeup event is activated, never added, so a pool with jobs in flight does not by
 * itself keep event_base_dispatch() running: the daemon's listeners do that. */
#include "work/pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

#include <event2/event.h>

struct job {
    pool_fn run;
    pool_fn done;
    void *arg;
    struct job *next;
};

/* A FIFO of jobs, singly linked so that moving a job between queues costs no allocation. */
struct job_queue {
    struct job *head;
    struct job *tail;
};

struct pool {
    struct event_base *base;
    struct event *wake; /* activated by workers; its callback drains the completions */
    pthread_t *threads;
    int nthreads;

    /* Everything below is guarded by mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when a job is queued or the pool stops */
    struct job_queue todo;
    struct job_queue finished;
    size_t pending;   /* submitted and whose done() has not started yet */
    bool wake_posted; /* event_active() issued and its callback has not yet taken the queue */
    bool stopping;
};

/* Appends a job to the tail of a queue. */
static void queue_push(struct job_queue *q, struct job *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
}

/* Removes and returns the head of a queue, or NULL. */
static struct job *queue_pop(struct job_queue *q)
{
    struct job *j = q->head;
    if (j) {
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
    }
    return j;
}

/* Takes the whole queue at once, so the lock is held for O(1) whatever its length. */
static struct job *queue_take_all(struct job_queue *q)
{
    struct job *all = q->head;
    q->head = q->tail = NULL;
    return all;
}

/* Runs the done() callbacks of a detached list of finished jobs in order and frees them. */
static void run_done_list(struct pool *p, struct job *list)
{
    while (list) {
        struct job *j = list;
        list = j->next;
        /* Counted as completed before done() runs, so a done() that asks how much work is
         * left does not see its own job. */
        pthread_mutex_lock(&p->mu);
        p->pending--;
        pthread_mutex_unlock(&p->mu);
        if (j->done)
            j->done(j->arg);
        free(j);
    }
}

/* Loop thread: drains every completion posted so far. Clearing wake_posted under the same lock
 * that detaches the queue means a worker finishing after this point posts a fresh wakeup, so
 * no completion is ever left without one. */
static void pool_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pool *p = arg;

    pthread_mutex_lock(&p->mu);
    struct job *list = queue_take_all(&p->finished);
    p->wake_posted = false;
    pthread_mutex_unlock(&p->mu);

    run_done_list(p, list);
}

/* Worker thread: runs jobs until the pool stops and the run queue is empty. */
static void *pool_worker(void *arg)
{
    struct pool *p = arg;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct job *j = queue_pop(&p->todo);
        if (!j) {
            if (p->stopping)
                break;
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        pthread_mutex_unlock(&p->mu);

        if (j->run)
            j->run(j->arg);

        pthread_mutex_lock(&p->mu);
        queue_push(&p->finished, j);
        /* One wakeup per batch: while a wakeup is outstanding the loop will see this job too.
         * During shutdown pool_free drains the queue itself and the loop may not run. */
        bool post = !p->wake_posted && !p->stopping;
        if (post)
            p->wake_posted = true;
        if (post) {
            /* event_active() takes the base's lock; calling it outside ours keeps the lock
             * order one-way (the loop never holds its base lock while taking ours, but a
             * caller of pool_submit might). */
            pthread_mutex_unlock(&p->mu);
            event_active(p->wake, EV_READ, 0);
            pthread_mutex_lock(&p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Wakes every worker and waits for them to exit; they finish the run queue first. */
static void pool_stop_workers(struct pool *p, int started)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < started; i++)
        pthread_join(p->threads[i], NULL);
}

struct pool *pool_new(struct event_base *base, int nthreads)
{
    if (!base || nthreads <= 0) {
        errno = EINVAL;
        return NULL;
    }
    struct pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->base = base;
    p->nthreads = nthreads;
    p->threads = calloc((size_t)nthreads, sizeof(*p->threads));
    if (!p->threads)
        goto fail_alloc;
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        goto fail_alloc;
    if (pthread_cond_init(&p->cv, NULL) != 0)
        goto fail_mutex;
    p->wake = event_new(base, -1, 0, pool_wake_cb, p);
    if (!p->wake)
        goto fail_cond;

    /* Workers block every signal so that signals go to the loop's thread, where libevent's
     * signal handling expects them. New threads inherit the creator's mask. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int started = 0;
    for (; started < nthreads; started++) {
        if (pthread_create(&p->threads[started], NULL, pool_worker, p) != 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < nthreads) {
        pool_stop_workers(p, started);
        goto fail_event;
    }
    return p;

fail_event:
    event_free(p->wake);
fail_cond:
    pthread_cond_destroy(&p->cv);
fail_mutex:
    pthread_mutex_destroy(&p->mu);
fail_alloc:
    free(p->threads);
    free(p);
    return NULL;
}

int pool_submit(struct pool *p, pool_fn run, pool_fn done, void *arg)
{
    struct job *j = malloc(sizeof(*j));
    if (!j)
        return -1;
    j->run = run;
    j->done = done;
    j->arg = arg;

    pthread_mutex_lock(&p->mu);
    if (p->stopping) {
        pthread_mutex_unlock(&p->mu);
        free(j);
        return -1;
    }
    queue_push(&p->todo, j);
    p->pending++;
    /* One job wakes one worker; a busy worker will find the job when it comes back. */
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

size_t pool_pending(const struct pool *p)
{
    /* The mutex lives in a const pool but locking it does not change what the pool means. */
    struct pool *mp = (struct pool *)p;
    pthread_mutex_lock(&mp->mu);
    size_t n = mp->pending;
    pthread_mutex_unlock(&mp->mu);
    return n;
}

/* Call on the loop's thread (or once the loop no longer runs), never from inside a done()
 * callback of the same pool. */
void pool_free(struct pool *p)
{
    if (!p)
        return;
    pool_stop_workers(p, p->nthreads);

    /* No worker is left: whatever finished and was not yet seen by the loop is ours to
     * complete, in the order it finished. done() may call pool_submit, which now refuses. */
    pthread_mutex_lock(&p->mu);
    struct job *list = queue_take_all(&p->finished);
    pthread_mutex_unlock(&p->mu);
    run_done_list(p, list);

    /* event_free also removes the event from the base's active list if a wakeup was posted
     * but never dispatched. */
    event_free(p->wake);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

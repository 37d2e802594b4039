/* The worker pool: a fixed set of threads that run slow jobs (fsync, later password hashing)
 * off the event loop, and hand each finished job back to the loop's thread, where its done
 * callback runs. The loop never waits on a worker. */
#ifndef TERN_WORK_POOL_H
#define TERN_WORK_POOL_H

#include <stddef.h>

struct event_base;
struct pool;

/* run() executes on a worker thread; done() later on the event loop's thread, in the order jobs
 * finished. Both get arg. */
typedef void (*pool_fn)(void *arg);

/* Starts nthreads workers; completions are delivered on base. Requires
 * evthread_use_pthreads() to have been called. NULL on failure. */
struct pool *pool_new(struct event_base *base, int nthreads);

/* Queues a job; 0, or -1 if the pool is shutting down (then nothing runs). */
int pool_submit(struct pool *p, pool_fn run, pool_fn done, void *arg);

/* Jobs queued or running, not yet completed on the loop. */
size_t pool_pending(const struct pool *p);

/* Finishes queued jobs, joins the threads, runs the remaining done callbacks, frees. */
void pool_free(struct pool *p);

#endif

/* bench/client_load.c: libtern under load, for bench/client.sh. THREADS threads, each with its
 * own handle, each sends MESSAGES messages of SIZE octets of body (plus a short header, as
 * smtp-source -l SIZE does) from FROM to RCPT on HOST:PORT, in clear, the way `tern send` does
 * it: tern_connect, tern_ehlo, tern_send_message (pipelined MAIL/RCPT/DATA), tern_quit.
 *
 *   client_load HOST PORT THREADS MESSAGES SIZE reuse|reconnect FROM RCPT [SECONDS]
 *
 * reuse: one connection per thread for all its messages; reconnect: connect, EHLO, send, QUIT
 * for every message. A message counts as sent only on 250 to its end of data. SECONDS (default
 * 300) bounds the whole run: threads stop starting messages after it. Prints one line
 *   RESULT threads=T messages=N sent=S failed=F seconds=W rate=R
 * and the first failure, if any, on standard error; exits 0 only when every message was sent.
 * Built by bench/client.sh against build/libtern.a (only include/tern/client.h is used). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tern/client.h>

struct job {
    const char *host, *port, *from, *rcpt;
    const char *msg;
    size_t msglen, count;
    int reconnect;
    double deadline;
    pthread_barrier_t *start;
};

struct worker {
    pthread_t th;
    int id;
    const struct job *job;
    size_t sent, failed;
    char first_error[512];
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void failure(struct worker *w, const char *what, const struct tern_reply *r)
{
    w->failed++;
    if (!w->first_error[0])
        snprintf(w->first_error, sizeof w->first_error, "thread %d: %s: %d %s", w->id, what,
                 r->code, tern_reply_text(r));
}

/* The reply that says why a transaction failed: the last one the server gave. */
static const struct tern_reply *why(const struct tern_send_result *res)
{
    if (res->final.code)
        return &res->final;
    if (res->data.code)
        return &res->data;
    if (res->nrcpt && res->rcpt[0].code != 250)
        return &res->rcpt[0];
    return &res->mail;
}

/* Connect and EHLO; 0 when the handle is ready for a transaction. */
static int open_session(struct worker *w, struct tern_client *c, struct tern_reply *r)
{
    if (tern_connect(c, w->job->host, w->job->port, TERN_TLS_NONE, r) != 0) {
        failure(w, "connect", r);
        return -1;
    }
    if (tern_ehlo(c, NULL, r) != 0) {
        failure(w, "EHLO", r);
        tern_quit(c, NULL);
        return -1;
    }
    return 0;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    const struct job *j = w->job;
    struct tern_client_opts o = {0};
    o.helo_name = "load.bench.test";
    o.timeouts = (struct tern_timeouts){30000, 30000, 30000, 30000, 30000, 30000, 30000, 30000};
    struct tern_client *c = tern_client_new(&o);
    struct tern_reply r = {0};
    struct tern_send_result res = {0};
    const char *rcpts[1] = {j->rcpt};
    pthread_barrier_wait(j->start);
    if (!c) {
        w->failed = j->count;
        snprintf(w->first_error, sizeof w->first_error, "thread %d: out of memory", w->id);
        return NULL;
    }
    for (size_t i = 0; i < j->count; i++) {
        if (now() > j->deadline) {
            w->failed += j->count - i;
            if (!w->first_error[0])
                snprintf(w->first_error, sizeof w->first_error,
                         "thread %d: out of time after %zu messages", w->id, i);
            break;
        }
        if (!tern_is_connected(c) && open_session(w, c, &r) != 0)
            continue;
        if (tern_send_message(c, j->from, rcpts, 1, j->msg, j->msglen, &res) == 0 &&
            res.final.code == 250)
            w->sent++;
        else
            failure(w, "message", why(&res));
        if (j->reconnect)
            tern_quit(c, NULL);
    }
    if (tern_is_connected(c))
        tern_quit(c, NULL);
    tern_send_result_free(&res);
    tern_reply_free(&r);
    tern_free(c);
    return NULL;
}

/* A header like smtp-source's, then size octets of body in lines of 78 (76 + CRLF). */
static char *make_message(const char *from, const char *rcpt, size_t size, size_t *len)
{
    char head[512];
    int h = snprintf(head, sizeof head,
                     "From: <%s>\r\nTo: <%s>\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
                     "Message-ID: <load@load.bench.test>\r\nSubject: libtern load\r\n\r\n",
                     from, rcpt);
    char *m = malloc((size_t)h + size + 3);
    if (!m || h < 0)
        return NULL;
    memcpy(m, head, (size_t)h);
    size_t n = (size_t)h, col = 0;
    for (size_t i = 0; i < size; i++) {
        if (size - i > 2 && col == 76) {
            m[n++] = '\r';
            m[n++] = '\n';
            i++;
            col = 0;
            continue;
        }
        m[n++] = (char)('a' + (i % 26));
        col++;
    }
    m[n++] = '\r';
    m[n++] = '\n';
    *len = n;
    return m;
}

int main(int argc, char **argv)
{
    if (argc < 9) {
        fprintf(stderr, "usage: client_load HOST PORT THREADS MESSAGES SIZE reuse|reconnect FROM "
                        "RCPT [SECONDS]\n");
        return 2;
    }
    int threads = atoi(argv[3]);
    long count = atol(argv[4]), size = atol(argv[5]);
    double limit = argc > 9 ? atof(argv[9]) : 300.0;
    if (threads < 1 || threads > 256 || count < 1 || size < 1 || limit <= 0) {
        fprintf(stderr, "client_load: bad THREADS, MESSAGES, SIZE or SECONDS\n");
        return 2;
    }
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    struct job j = {.host = argv[1],
                    .port = argv[2],
                    .from = argv[7],
                    .rcpt = argv[8],
                    .count = (size_t)count,
                    .reconnect = strcmp(argv[6], "reconnect") == 0,
                    .start = &start};
    char *msg = make_message(j.from, j.rcpt, (size_t)size, &j.msglen);
    struct worker *w = calloc((size_t)threads, sizeof *w);
    if (!msg || !w)
        return 1;
    j.msg = msg;
    for (int i = 0; i < threads; i++) {
        w[i].id = i;
        w[i].job = &j;
        if (pthread_create(&w[i].th, NULL, run, &w[i]) != 0) {
            fprintf(stderr, "client_load: cannot start thread %d\n", i);
            return 1;
        }
    }
    double t0 = now();
    j.deadline = t0 + limit; /* read by the threads only after the barrier */
    pthread_barrier_wait(&start);
    size_t sent = 0, failed = 0;
    const char *first = NULL;
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].th, NULL);
        sent += w[i].sent;
        failed += w[i].failed;
        if (!first && w[i].first_error[0])
            first = w[i].first_error;
    }
    double secs = now() - t0;
    printf("RESULT threads=%d messages=%zu sent=%zu failed=%zu seconds=%.3f rate=%.1f\n", threads,
           (size_t)threads * (size_t)count, sent, failed, secs, (double)sent / secs);
    if (first)
        fprintf(stderr, "client_load: first failure: %s\n", first);
    free(w);
    free(msg);
    pthread_barrier_destroy(&start);
    return failed == 0 && sent == (size_t)threads * (size_t)count ? 0 : 1;
}

/* One client connection: moves bytes between its socket (a libevent bufferevent) and its SMTP
 * session core, performs the core's store requests (open/append on the loop, which touch only
 * the page cache; the fsync'ing commit on the worker pool), applies the timeouts and the
 * connection limits, and closes only after the last reply has been written. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "net/server.h"
#include "smtp/session.h"
#include "store/maildir.h"
#include "util/log.h"
#include "work/pool.h"

#define CONN_IN_HIGH (256 * 1024)   /* stop reading while this much input is unprocessed */
#define CONN_OUT_HIGH (1024 * 1024) /* stop processing while the client is not reading */

struct conn {
    struct server *srv;
    struct conn *prev, *next;
    struct bufferevent *bev;
    struct conf *conf;
    struct smtp_env env;
    struct smtp_session *s;
    enum conf_listener_kind kind;
    int family;
    unsigned char addr[16];
    char ip[INET6_ADDRSTRLEN];
    int port;
    struct maildir_msg *msg;
    bool committing; /* a COMMIT is on the worker pool */
    bool dead;       /* the socket is gone: free when the commit comes back */
    time_t started;
};

struct commit_job {
    struct conn *c;
    int rc;
    char err[256];
};

static void conn_drive(struct conn *c);

static bool storage_ok(void *ctx)
{
    struct conn *c = ctx;
    if (c->conf->min_free_space == 0)
        return true;
    struct statvfs st;
    if (statvfs(c->conf->data_dir, &st) != 0)
        return true; /* cannot tell: let the write itself fail and answer 451 */
    return (uint64_t)st.f_bavail * st.f_frsize >= c->conf->min_free_space;
}

static time_t now(void *ctx)
{
    (void)ctx;
    return time(NULL);
}

static void conn_free(struct conn *c)
{
    struct server *srv = c->srv;
    if (c->committing) { /* the worker still writes through c->msg: finish that first */
        c->dead = true;
        return;
    }
    struct smtp_stats st;
    smtp_session_stats(c->s, &st);
    log_info("disconnect from %s port %d: %zu messages, %llu bytes in, %ld s", c->ip, c->port,
             st.messages, (unsigned long long)st.bytes_in, (long)(time(NULL) - c->started));
    maildir_free(c->msg);
    smtp_session_free(c->s);
    if (c->bev)
        bufferevent_free(c->bev);
    conf_unref(c->conf);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    free(c);
    if (srv->draining && srv->nconns == 0)
        event_base_loopexit(srv->base, NULL);
}

static void flush(struct conn *c)
{
    const char *out;
    size_t n = smtp_session_pending_output(c->s, &out);
    if (n > 0 && bufferevent_write(c->bev, out, n) == 0)
        smtp_session_output_sent(c->s, n);
}

static void fail_result(struct smtp_result *r, const char *text)
{
    r->ok = false;
    r->code = 451;
    snprintf(r->enh, sizeof r->enh, "4.3.0");
    snprintf(r->text, sizeof r->text, "%s", text);
}

static void commit_run(void *arg)
{
    struct commit_job *j = arg;
    j->rc = maildir_commit(j->c->msg, j->err, sizeof j->err);
}

static void commit_done(void *arg)
{
    struct commit_job *j = arg;
    struct conn *c = j->c;
    struct smtp_result r = {.ok = j->rc == 0};
    const struct smtp_txn *t = smtp_session_request(c->s)->txn;
    if (j->rc == 0) {
        log_info("accepted %s from <%s> via %s: %zu recipients, %zu mailboxes, %zu bytes",
                 c->env.peer_ip, t->from, c->kind == LISTEN_SUBMISSION ? "submission" : "smtp",
                 t->nrcpts, t->nmailboxes, maildir_size(c->msg));
    } else {
        log_err("could not store message from <%s> (%s): %s", t->from, c->ip, j->err);
        fail_result(&r, "Local error in processing: message not stored, try again later");
    }
    maildir_free(c->msg);
    c->msg = NULL;
    c->committing = false;
    free(j);
    if (c->dead) {
        conn_free(c);
        return;
    }
    smtp_session_resume(c->s, &r);
    bufferevent_enable(c->bev, EV_READ);
    conn_drive(c);
}

/* Performs the core's requests until one must wait for a worker. False when it must. */
static bool do_requests(struct conn *c)
{
    const struct smtp_request *q;
    while ((q = smtp_session_request(c->s))) {
        struct smtp_result r = {.ok = true};
        char err[256];
        switch (q->type) {
        case SMTP_REQ_STORE_BEGIN: {
            const char **boxes = calloc(q->txn->nmailboxes, sizeof *boxes);
            if (!boxes) {
                fail_result(&r, "Out of memory, try again later");
                break;
            }
            for (size_t i = 0; i < q->txn->nmailboxes; i++)
                boxes[i] = q->txn->mailboxes[i];
            c->msg = maildir_begin(c->conf->data_dir, c->conf->hostname, boxes, q->txn->nmailboxes,
                                   r.id, sizeof r.id, err, sizeof err);
            free(boxes);
            if (!c->msg) {
                log_err("could not open a message file: %s", err);
                fail_result(&r, "Local error in processing: cannot store mail now, try later");
            }
            break;
        }
        case SMTP_REQ_STORE_APPEND:
            if (maildir_append(c->msg, q->data, q->len, err, sizeof err) != 0) {
                log_err("could not write message data: %s", err);
                fail_result(&r, "Local error in processing: cannot store mail now, try later");
            }
            break;
        case SMTP_REQ_STORE_COMMIT: {
            struct commit_job *j = calloc(1, sizeof *j);
            if (j)
                j->c = c; /* before submitting: a worker may start on it at once */
            if (!j || pool_submit(c->srv->pool, commit_run, commit_done, j) != 0) {
                free(j);
                fail_result(&r, "Local error in processing: try again later");
                break;
            }
            c->committing = true;
            bufferevent_disable(c->bev, EV_READ); /* pipelined input waits for the 250 */
            return false;
        }
        case SMTP_REQ_STORE_ABORT:
            maildir_free(c->msg);
            c->msg = NULL;
            break;
        }
        smtp_session_resume(c->s, &r);
    }
    return true;
}

static void set_timeouts(struct conn *c)
{
    struct timeval rd = {
        smtp_session_in_data(c->s) ? c->conf->data_timeout : c->conf->command_timeout, 0};
    struct timeval wr = {c->conf->command_timeout, 0};
    bufferevent_set_timeouts(c->bev, &rd, &wr);
}

static void conn_drive(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *outbuf = bufferevent_get_output(c->bev);
    for (;;) {
        if (!do_requests(c)) {
            flush(c);
            return;
        }
        if (c->srv->draining && !smtp_session_in_data(c->s))
            smtp_session_shutdown(c->s);
        if (smtp_session_wants_close(c->s) != SMTP_OPEN)
            break;
        if (evbuffer_get_length(outbuf) > CONN_OUT_HIGH)
            break; /* resumed from the write callback once the client reads */
        struct evbuffer_iovec v;
        if (evbuffer_get_length(in) == 0 || evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t used = smtp_session_feed(c->s, v.iov_base, v.iov_len);
        evbuffer_drain(in, used);
        flush(c);
        if (used == 0 && !smtp_session_request(c->s))
            break;
    }
    flush(c);
    if (smtp_session_wants_close(c->s) != SMTP_OPEN) {
        bufferevent_disable(c->bev, EV_READ);
        if (evbuffer_get_length(outbuf) == 0)
            conn_free(c);
        return; /* the write callback frees it once the replies are out */
    }
    set_timeouts(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_drive(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (smtp_session_wants_close(c->s) != SMTP_OPEN) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            conn_free(c);
        return;
    }
    if (!c->committing && evbuffer_get_length(bufferevent_get_input(bev)) > 0)
        conn_drive(c); /* input held back while the client was not reading */
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_TIMEOUT) {
        log_info("timeout for %s port %d", c->ip, c->port);
        smtp_session_timeout(c->s);
        flush(c);
        bufferevent_disable(c->bev, EV_READ);
        struct timeval tv = {5, 0}; /* a client that will not read the 421 is dropped */
        bufferevent_set_timeouts(c->bev, NULL, &tv);
        bufferevent_enable(c->bev, EV_WRITE);
        if (what & BEV_EVENT_WRITING)
            conn_free(c);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(c);
}

static size_t count_ip(struct server *srv, int family, const unsigned char *addr)
{
    size_t n = 0;
    size_t len = family == AF_INET ? 4 : 16;
    for (struct conn *c = srv->conns; c; c = c->next)
        if (c->family == family && memcmp(c->addr, addr, len) == 0 && !c->env.over_limit)
            n++;
    return n;
}

void conn_accept(struct server *srv, int fd, const struct sockaddr *sa, socklen_t salen,
                 enum conf_listener_kind kind)
{
    (void)salen;
    if (srv->nconns >= 2 * srv->conf->connections + 64) {
        close(fd); /* far past the limit: not even a 421 */
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->srv = srv;
    c->kind = kind;
    c->started = time(NULL);
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            c->family = AF_INET;
            memcpy(c->addr, s6->sin6_addr.s6_addr + 12, 4);
        } else {
            c->family = AF_INET6;
            memcpy(c->addr, &s6->sin6_addr, 16);
        }
        c->port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        c->family = AF_INET;
        memcpy(c->addr, &s4->sin_addr, 4);
        c->port = ntohs(s4->sin_port);
    }
    inet_ntop(c->family, c->addr, c->ip, sizeof c->ip);

    c->conf = conf_ref(srv->conf);
    const struct conf *cf = c->conf;
    c->env = (struct smtp_env){
        .hostname = cf->hostname,
        .peer_ip = c->ip,
        .submission = kind == LISTEN_SUBMISSION,
        .refuse = conf_denied(cf, c->family, c->addr),
        .over_limit = srv->nconns >= cf->connections ||
                      count_ip(srv, c->family, c->addr) >= cf->connections_per_ip,
        .max_message_size = cf->message_size,
        .max_recipients = cf->recipients,
        .max_bad_commands = cf->bad_commands,
        .max_junk_commands = cf->junk_commands,
        .vrfy = (enum smtp_disclose)cf->vrfy,
        .expn = (enum smtp_disclose)cf->expn,
        .tables = cf->tables,
        .storage_ok = storage_ok,
        .now = now,
        .ctx = c,
    };
    c->s = smtp_session_new(&c->env);
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    if (!c->s || !c->bev) {
        if (!c->bev)
            close(fd);
        conn_free(c);
        return;
    }
    log_info("connect from %s port %d on %s%s", c->ip, c->port,
             kind == LISTEN_SUBMISSION ? "submission" : "smtp",
             c->env.refuse       ? " (refused: deny list)"
             : c->env.over_limit ? " (over limit)"
                                 : "");
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, CONN_IN_HIGH);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    conn_drive(c); /* sends the greeting */
}

void conn_drain_all(struct server *srv, bool force)
{
    struct conn *next;
    for (struct conn *c = srv->conns; c; c = next) {
        next = c->next;
        if (c->committing || c->dead)
            continue; /* answered when the commit returns */
        if (force || !smtp_session_in_data(c->s)) {
            smtp_session_shutdown(c->s);
            conn_drive(c);
        }
    }
}

void conn_free_all(struct server *srv)
{
    while (srv->conns) {
        srv->conns->committing = false;
        conn_free(srv->conns);
    }
}

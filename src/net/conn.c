/* One client connection: moves bytes between its socket (a libevent bufferevent, with an
 * OpenSSL filter once TLS starts) and its SMTP session core, and performs the core's requests:
 * the store (conn_store.c: open/append on the loop, which touch only the page cache; the
 * fsync'ing commit on the worker pool), the TLS handshake, SASL steps (conn_auth.c, on the
 * worker pool: they hash) and XWATCH (conn_term.c). Applies the timeouts, connection limits and
 * AUTH throttling, and closes only after the last reply has been written. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "auth/sasl.h"
#include "auth/throttle.h"
#include "net/conn_priv.h"
#include "net/server.h"
#include "net/tls.h"
#include "smtp/session.h"
#include "store/maildir.h"
#include "relay/queue.h"
#include "store/spool.h"
#include "store/deliver.h"
#include "store/usage.h"
#include "util/log.h"
#include "work/pool.h"

static void conn_drive(struct conn *c);
void conn_poke(struct conn *c)
{
    conn_drive(c);
}

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

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

static bool mailbox_full(void *ctx, const char *box)
{
    struct conn *c = ctx;
    const struct tables_user *u = tables_user(c->conf->tables, box);
    return u && u->quota && usage_full(c->conf->data_dir, box, u->quota);
}

static time_t now(void *ctx)
{
    (void)ctx;
    return time(NULL);
}

static bool auth_mech_ok(void *ctx, const char *mech, size_t len)
{
    struct conn *c = ctx;
    return c->srv->sasl && sasl_supported(c->srv->sasl, mech, len);
}

static bool is_loopback(const struct conn *c)
{
    static const unsigned char v6[16] = {[15] = 1};
    return c->family == AF_INET ? c->addr[0] == 127 : memcmp(c->addr, v6, 16) == 0;
}

static void conn_free(struct conn *c)
{
    struct server *srv = c->srv;
    if (c->busy) { /* a worker still uses c->msg or c->sasl: finish that first */
        c->dead = true;
        return;
    }
    conn_watch_stop(c, "connection closed");
    conn_term_release(c);
    conn_audit_disconnect(c);
    json_decref(c->rcpts);
    EVP_MD_CTX_free(c->sha);
    if (c->s) {
        struct smtp_stats st;
        smtp_session_stats(c->s, &st);
        log_info("disconnect from %s port %d: %zu messages, %llu bytes in, %ld s", c->ip, c->port,
                 st.messages, (unsigned long long)st.bytes_in, (long)(time(NULL) - c->started));
    }
    maildir_free(c->msg);
    spool_free(c->spool);
    sasl_conn_free(c->sasl);
    if (c->hold)
        event_free(c->hold);
    if (c->linger)
        event_free(c->linger);
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

/* Reply bytes not yet handed to the kernel. Under STARTTLS they may sit, encrypted, in the
 * underlying bufferevent after the TLS one has drained: closing then would lose the 221. */
static size_t out_pending(struct conn *c)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
    struct bufferevent *u = bufferevent_get_underlying(c->bev);
    if (u)
        n += evbuffer_get_length(bufferevent_get_output(u));
    return n;
}

#define LINGER_TICK_MS 20
#define LINGER_TICKS 250 /* 5 s for a client to take its last reply */

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    if (out_pending(c) == 0 || ++c->linger_ticks >= LINGER_TICKS)
        conn_free(c);
}

/* The session is over: free the connection once its replies are out. */
static void close_when_sent(struct conn *c)
{
    bufferevent_disable(c->bev, EV_READ);
    conn_watch_stop(c, "closed"); /* no terminal message may follow the last reply */
    if (c->busy)
        return; /* the job's return frees it */
    if (out_pending(c) == 0) {
        conn_free(c);
        return;
    }
    if (!c->linger && (c->linger = event_new(c->srv->base, -1, EV_PERSIST, linger_cb, c))) {
        struct timeval tv = {0, LINGER_TICK_MS * 1000};
        evtimer_add(c->linger, &tv);
    }
}

static void flush(struct conn *c)
{
    const char *out;
    size_t n = smtp_session_pending_output(c->s, &out);
    if (n > 0 && bufferevent_write(c->bev, out, n) == 0) {
        smtp_session_output_sent(c->s, n);
        c->bytes_out += n;
    }
}

void conn_fail_result(struct smtp_result *r, int code, const char *enh, const char *text)
{
    r->ok = false;
    r->code = code;
    snprintf(r->enh, sizeof r->enh, "%s", enh);
    snprintf(r->text, sizeof r->text, "%s", text);
}

/* Hands a job to the pool; the connection waits (reads nothing) until it is done. */
bool conn_submit(struct conn *c, struct job *j, pool_fn run, pool_fn done)
{
    j->c = c; /* before submitting: a worker may start on it at once */
    if (pool_submit(c->srv->pool, run, done, j) != 0)
        return false;
    c->busy = true;
    bufferevent_disable(c->bev, EV_READ); /* pipelined input waits for the reply */
    return true;
}

/* A job is back on the loop: resume the session unless the client has gone. */
bool conn_job_back(struct conn *c)
{
    c->busy = false;
    if (c->dead) {
        conn_free(c);
        return false;
    }
    return true;
}

void conn_resume(struct conn *c, const struct smtp_result *r)
{
    smtp_session_resume(c->s, r);
    bufferevent_enable(c->bev, EV_READ);
    conn_drive(c);
}

/* --- TLS -------------------------------------------------------------------------------- */

/* Wraps the connection in TLS. For STARTTLS the 220 is already in the plain output buffer and
 * goes out first; whatever the client pipelined after STARTTLS is thrown away (CVE-2011-0411). */
static bool start_tls(struct conn *c)
{
    SSL *ssl = c->srv->tls_ctx ? SSL_new(c->srv->tls_ctx) : NULL;
    if (!ssl)
        return false;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    struct bufferevent *tb = bufferevent_openssl_filter_new(
        c->srv->base, c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!tb) {
        SSL_free(ssl);
        return false;
    }
    c->bev = tb;
    c->handshaking = true;
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, CONN_IN_HIGH);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return true;
}

/* --- driving the session ---------------------------------------------------------------- */

/* Performs the core's requests until one must wait (a worker, a handshake). False then. */
static bool do_requests(struct conn *c)
{
    const struct smtp_request *q;
    while ((q = smtp_session_request(c->s))) {
        struct smtp_result r = {.ok = true};
        switch (q->type) {
        case SMTP_REQ_STORE_BEGIN:
        case SMTP_REQ_STORE_APPEND:
        case SMTP_REQ_STORE_COMMIT:
        case SMTP_REQ_STORE_ABORT:
            if (!conn_store_request(c, q, &r))
                return false;
            break;
        case SMTP_REQ_WATCH:
            conn_watch_start(c, &r);
            break;
        case SMTP_REQ_STARTTLS:
            flush(c); /* the 220 goes out in clear, before the handshake */
            if (!start_tls(c)) {
                log_err("cannot start TLS for %s", c->ip);
                smtp_session_shutdown(c->s); /* promised TLS, cannot give it: give up */
                return true;
            }
            return false;
        case SMTP_REQ_AUTH:
            if (!conn_auth_request(c, q, &r))
                return false;
            break;
        case SMTP_REQ_TURN:
            flush(c); /* the 250 goes out first, then the peer greets us */
            conn_turn(c, q);
            return false;
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
    /* a terminal waits for messages as long as its user likes (TCP keepalive finds a dead
     * peer); one that stops reading them is still dropped after command_timeout */
    bufferevent_set_timeouts(c->bev, smtp_session_watching(c->s) ? NULL : &rd, &wr);
}

static void conn_drive(struct conn *c)
{
    if (!c->s || c->busy || c->handshaking || (c->hold && evtimer_pending(c->hold, NULL)))
        return;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *outbuf = bufferevent_get_output(c->bev);
    for (;;) {
        if (!do_requests(c)) {
            if (c->turned) { /* the connection is the queue manager's now */
                conn_free(c);
                return;
            }
            if (!c->handshaking)
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
        close_when_sent(c);
        return;
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
    if (!c->s)
        return;
    if (smtp_session_wants_close(c->s) != SMTP_OPEN) {
        if (!c->linger)
            close_when_sent(c);
        return;
    }
    if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
        conn_drive(c); /* input held back while the client was not reading */
}

static void start_session(struct conn *c);

static void handshake_done(struct conn *c)
{
    c->handshaking = false;
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    tls_describe(ssl, c->tls_info, sizeof c->tls_info);
    log_info("TLS with %s port %d: %s", c->ip, c->port, c->tls_info);
    conn_audit_tls(c);
    if (!c->s) { /* smtps: the greeting comes now */
        start_session(c);
        return;
    }
    struct smtp_result r = {.ok = true};
    snprintf(r.tls_info, sizeof r.tls_info, "%s", c->tls_info);
    conn_resume(c, &r);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if ((what & BEV_EVENT_CONNECTED) && c->handshaking) {
        handshake_done(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        log_info("timeout for %s port %d", c->ip, c->port);
        conn_audit_limit(c, "timeout",
                         !c->s || c->handshaking      ? "command_timeout: no TLS handshake in time"
                         : smtp_session_in_data(c->s) ? "data_timeout: no message data in time"
                                                      : "command_timeout: no command in time");
        if (!c->s || c->handshaking) {
            conn_free(c);
            return;
        }
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
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (c->handshaking) {
            unsigned long e = bufferevent_get_openssl_error(c->bev);
            char buf[256] = "connection closed";
            if (e)
                ERR_error_string_n(e, buf, sizeof buf);
            log_info("TLS handshake with %s port %d failed: %s", c->ip, c->port, buf);
            conn_audit_tls_fail(c, buf);
        }
        conn_free(c);
    }
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

/* The session begins: at accept, or after the handshake on the smtps listener. */
static void start_session(struct conn *c)
{
    if (c->kind == LISTEN_SMTPS)
        c->env.tls_info = c->tls_info;
    c->s = smtp_session_new(&c->env);
    if (!c->s) {
        conn_free(c);
        return;
    }
    conn_drive(c); /* sends the greeting */
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
    clock_gettime(CLOCK_MONOTONIC, &c->began);
    srv_session_id(srv, c->session, sizeof c->session);
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
        .submission = kind == LISTEN_SUBMISSION || kind == LISTEN_SMTPS, /* RFC 8314 3.3 */
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
        .tls_available = srv->tls_ctx != NULL,
        .tls_active = kind == LISTEN_SMTPS,
        .auth_mechs = srv->sasl ? sasl_mechanisms(srv->sasl) : NULL,
        .auth_cleartext_ok = cf->auth_plaintext_loopback && is_loopback(c),
        .auth_mech_ok = auth_mech_ok,
        .check_from = cf->check_from,
        .storage_ok = storage_ok,
        .mailbox_full = mailbox_full,
        .sender_header = cf->sender_header,
        .now = now,
        .event = srv->audit ? conn_audit_event : NULL,
        .relay_domain = cf->relay.ndomains ? conn_relay_domain : NULL,
        .terminal_allow = (enum smtp_terminal_allow)cf->terminal_allow,
        .terminal_max_size = cf->terminal_max_size,
        .terminal_live = conn_terminal_live,
        .etrn = kind == LISTEN_SMTP && srv->relay && cf->relay.ndomains ? conn_etrn : NULL,
        .ctx = c,
    };
    SSL *ssl = NULL;
    if (kind == LISTEN_SMTPS && srv->tls_ctx && (ssl = SSL_new(srv->tls_ctx)))
        c->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE);
    else if (kind != LISTEN_SMTPS)
        c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    if (!c->bev) {
        if (ssl)
            SSL_free(ssl);
        close(fd);
        conn_free(c);
        return;
    }
    log_info("connect from %s port %d on %s%s", c->ip, c->port,
             kind == LISTEN_SUBMISSION ? "submission"
             : kind == LISTEN_SMTPS    ? "smtps"
                                       : "smtp",
             c->env.refuse       ? " (refused: deny list)"
             : c->env.over_limit ? " (over limit)"
                                 : "");
    conn_audit_connect(c);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, CONN_IN_HIGH);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (kind == LISTEN_SMTPS) {
        c->handshaking = true;
        struct timeval tv = {cf->command_timeout, 0};
        bufferevent_set_timeouts(c->bev, &tv, &tv);
        return; /* the session starts when the handshake is done */
    }
    start_session(c);
}

void conn_drain_all(struct server *srv, bool force)
{
    struct conn *next;
    for (struct conn *c = srv->conns; c; c = next) {
        next = c->next;
        if (c->busy || c->dead)
            continue; /* answered when the job returns */
        if (!c->s || c->handshaking) {
            if (force)
                conn_free(c);
            continue;
        }
        if (force || !smtp_session_in_data(c->s)) {
            smtp_session_shutdown(c->s);
            conn_drive(c);
        }
    }
}

void conn_free_all(struct server *srv)
{
    while (srv->conns) {
        srv->conns->busy = false;
        conn_free(srv->conns);
    }
}

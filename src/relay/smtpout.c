/* The outbound client object (see smtpout.h): made by smtpout_connect or smtpout_attach, freed by
 * smtpout_free or by itself after smtpout_quit. Owns the bytes between the bufferevent and the
 * protocol core (commands out, replies in, matched in order and dispatched to the setup or the
 * transaction), the one deadline timer, and failures: a broken connection decides every
 * outstanding result and schedules the callback that is due. Callbacks and deferred frees run
 * from one "notify" event on the loop, never inside the caller's or libevent's stack frames of
 * this object, so a callback may free the object it is given. */
#include "relay/smtpout_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

#define PICK(v, def) ((v) > 0 ? (v) : (def))

/* ---- notifications and the end of the object ---- */

void so_notify(struct smtpout *s)
{
    event_active(s->notify, EV_TIMEOUT, 1);
}

static void destroy(struct smtpout *s)
{
    if (s->timer)
        event_free(s->timer);
    if (s->notify)
        event_free(s->notify);
    if (s->bev)
        bufferevent_free(s->bev);
    smtpc_free(s->core);
    so_txn_free(s->txn);
    free(s->helo);
    free(s->host);
    free(s->user);
    if (s->password) {
        OPENSSL_cleanse(s->password, strlen(s->password));
        free(s->password);
    }
    SSL_CTX_free(s->ctx);
    free(s);
}

/* Runs from the loop: closes a dead connection, then at most one callback (after which s may be
 * gone) or the deferred free. */
static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtpout *s = arg;
    (void)fd;
    (void)what;
    if (s->state == SO_DEAD && s->bev) {
        bufferevent_free(s->bev); /* the peer learns at once, whatever the caller does next */
        s->bev = NULL;
    }
    if (s->want_free) {
        destroy(s);
        return;
    }
    if (s->want_ready) {
        s->want_ready = false;
        s->ready_delivered = true;
        struct smtpout_reply err = s->err;
        s->ready(s->ready_arg, s, s->state == SO_DEAD ? &err : NULL);
        return;
    }
    if (s->want_done && s->txn) {
        s->want_done = false;
        struct smtpout_txn *t = s->txn;
        s->txn = NULL;
        t->done(t->arg, s, t->res, t->n);
        so_txn_free(t);
    }
}

/* The QUIT exchange is over (221, the close, or its timeout). */
static void quit_finished(struct smtpout *s)
{
    evtimer_del(s->timer);
    if (s->bev)
        bufferevent_disable(s->bev, EV_READ | EV_WRITE);
    s->state = SO_DEAD;
    if (s->quit_reports)
        s->want_ready = true; /* the refusal kept in s->err */
    else
        s->want_free = true;
    so_notify(s);
}

static void start_quit(struct smtpout *s)
{
    s->state = SO_QUIT;
    if (so_command(s, TERN_CMD_QUIT, "QUIT", false) < 0)
        return;
    so_flush(s, false);
    so_arm(s, so_timeout_for(s, TERN_CMD_QUIT));
}

/* The connection is over because of why: it decides what was outstanding. */
static void fail_with(struct smtpout *s, const struct smtpout_reply *why)
{
    if (s->state == SO_DEAD)
        return;
    if (s->state == SO_QUIT) {
        quit_finished(s);
        return;
    }
    s->state = SO_DEAD;
    evtimer_del(s->timer);
    if (s->bev)
        bufferevent_disable(s->bev, EV_READ | EV_WRITE);
    if (s->txn) {
        so_txn_fail_all(s, why);
        s->want_done = true;
    } else if (!s->ready_delivered) {
        s->err = *why;
        s->want_ready = true;
    }
    so_notify(s);
}

void so_fail(struct smtpout *s, const char *enh, const char *fmt, ...)
{
    if (s->state == SO_DEAD)
        return;
    struct smtpout_reply why;
    va_list ap;
    va_start(ap, fmt);
    so_vlocal(&why, 0, enh, so_stage_cmd(s), fmt, ap);
    va_end(ap);
    fail_with(s, &why);
}

void so_fail_reply(struct smtpout *s, const struct smtpout_reply *r)
{
    fail_with(s, r);
}

void so_ready(struct smtpout *s)
{
    s->state = SO_READY;
    evtimer_del(s->timer);
    s->want_ready = true;
    so_notify(s);
}

void so_refused(struct smtpout *s, const struct smtpout_reply *r)
{
    s->err = *r;
    s->quit_reports = true;
    start_quit(s); /* RFC 5321 §3.1, §4.1.1.10: say QUIT rather than just hang up */
}

/* ---- bytes out ---- */

size_t so_out_pending(struct smtpout *s)
{
    if (!s->bev)
        return 0;
    size_t n = evbuffer_get_length(bufferevent_get_output(s->bev));
    struct bufferevent *u = bufferevent_get_underlying(s->bev);
    if (u)
        n += evbuffer_get_length(bufferevent_get_output(u));
    if (n > s->stats.max_buffered)
        s->stats.max_buffered = n;
    return n;
}

static void wipe_free(const void *data, size_t len, void *extra)
{
    (void)extra;
    OPENSSL_cleanse((void *)data, len);
    free((void *)data);
}

void so_flush(struct smtpout *s, bool secret)
{
    const char *out;
    size_t n = smtpc_output(s->core, &out);
    if (n == 0)
        return;
    if (!s->bev || s->state == SO_DEAD) {
        smtpc_sent(s->core, n);
        return;
    }
    struct evbuffer *buf = bufferevent_get_output(s->bev);
    int rc;
    if (secret) {
        /* by reference, so the only plaintext copy is ours, wiped once TLS has taken it */
        char *copy = malloc(n);
        rc = copy ? 0 : -1;
        if (copy) {
            memcpy(copy, out, n);
            rc = evbuffer_add_reference(buf, copy, n, wipe_free, NULL);
            if (rc < 0)
                wipe_free(copy, n, NULL);
        }
    } else {
        rc = evbuffer_add(buf, out, n);
    }
    smtpc_sent(s->core, n);
    if (rc < 0) {
        so_fail(s, "4.3.0", "out of memory sending to %s", s->namaddr);
        return;
    }
    so_out_pending(s);
}

int so_command(struct smtpout *s, enum tern_cmd cmd, const char *line, bool secret)
{
    char why[200];
    if (smtpc_command(s->core, cmd, line, secret, why, sizeof why) < 0) {
        so_fail(s, "4.3.0", "cannot send %s to %s: %s", tern_cmd_name(cmd), s->namaddr, why);
        return -1;
    }
    return 0;
}

/* ---- bytes in ---- */

/* One complete reply, to whoever awaits it. */
static void dispatch(struct smtpout *s, const struct tern_reply *r)
{
    if (r->code == 421 && r->cmd != TERN_CMD_QUIT) {
        /* RFC 5321 §3.8: the server is closing; the replies still awaited will never come */
        struct smtpout_reply res;
        so_reply_of(&res, r);
        so_fail_reply(s, &res);
        return;
    }
    switch (s->state) {
    case SO_SETUP:
        so_setup_reply(s, r);
        break;
    case SO_TXN:
    case SO_DOT:
        so_txn_reply(s, r);
        break;
    case SO_QUIT:
        if (r->cmd == TERN_CMD_QUIT)
            quit_finished(s);
        break;
    default:
        break;
    }
    if (s->state == SO_SETUP || s->state == SO_TXN || s->state == SO_DOT || s->state == SO_QUIT)
        so_arm_reply(s); /* the next reply gets its whole timeout */
}

void so_process_input(struct smtpout *s)
{
    if (s->in_input)
        return; /* an inline callback inside our own loop: the loop below sees the bytes */
    s->in_input = true;
    bool stalled = false;
    while (s->state != SO_DEAD && s->bev) {
        struct tern_reply r = {0};
        if (smtpc_reply(s->core, &r)) {
            dispatch(s, &r);
            tern_reply_free(&r);
            stalled = false;
            continue;
        }
        struct evbuffer *in = bufferevent_get_input(s->bev);
        if (stalled || evbuffer_get_length(in) == 0)
            break;
        if (smtpc_waiting(s->core) == 0) {
            if (s->state == SO_QUIT) { /* after the 221: nothing more matters */
                evbuffer_drain(in, evbuffer_get_length(in));
                break;
            }
            so_fail(s, "4.4.2", "%s sent data nobody asked for while %s; closed the connection",
                    s->namaddr, so_stage(s));
            break;
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t used = smtpc_feed(s->core, v.iov_base, v.iov_len);
        evbuffer_drain(in, used);
        const char *broken = smtpc_broken(s->core);
        if (broken) {
            so_fail(s, "4.4.2",
                    "malformed reply from %s while %s: %s; closed the connection (is it an SMTP "
                    "server?)",
                    s->namaddr, so_stage(s), broken);
            break;
        }
        stalled = used == 0;
    }
    s->in_input = false;
}

/* ---- libevent callbacks ---- */

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    so_process_input(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct smtpout *s = arg;
    (void)bev;
    if (s->state == SO_BODY)
        so_txn_pump(s);
}

/* The reason a bufferevent reported an error: OpenSSL's, else the system's. */
static void bev_error(struct bufferevent *bev, int err, char *buf, size_t n)
{
    unsigned long e, last = 0;
    while ((e = bufferevent_get_openssl_error(bev)))
        last = e;
    if (last)
        ERR_error_string_n(last, buf, n);
    else if (err)
        snprintf(buf, n, "%s", strerror(err));
    else
        snprintf(buf, n, "connection closed");
}

static void connected(struct smtpout *s)
{
    int one = 1;
    evutil_socket_t fd = bufferevent_getfd(s->bev);
    /* commands are whole writes already: Nagle would only hold the last of a pipelined batch */
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    evtimer_del(s->timer);
    if (s->o.tls == SMTPOUT_TLS_WRAPPER || s->o.tls == SMTPOUT_TLS_WRAPPER_VERIFY)
        so_tls_start(s);
    else
        so_setup_begin(s);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtpout *s = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (s->state == SO_DEAD)
        return;
    if (s->state == SO_CONNECTING) {
        if (what & BEV_EVENT_CONNECTED) {
            connected(s);
            return;
        }
        so_fail(s, "4.4.1", "connect to %s: %s", s->peer,
                err ? strerror(err) : "connection failed");
        return;
    }
    if (s->state == SO_HANDSHAKE) {
        so_tls_event(s, what);
        return;
    }
    if (what & BEV_EVENT_CONNECTED) { /* an attached TLS bufferevent finished its handshake */
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        if (ssl)
            so_tls_record(s, ssl);
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    so_process_input(s); /* a last reply (a 421) may have come with the close */
    if (s->state == SO_DEAD)
        return;
    if (s->state == SO_QUIT) {
        quit_finished(s);
        return;
    }
    char buf[256];
    if (what & BEV_EVENT_EOF) {
        so_fail(s, "4.4.2", "lost connection with %s while %s", s->namaddr, so_stage(s));
        return;
    }
    bev_error(bev, err, buf, sizeof buf);
    so_fail(s, "4.4.2", "lost connection with %s while %s: %s", s->namaddr, so_stage(s), buf);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtpout *s = arg;
    (void)fd;
    (void)what;
    switch (s->state) {
    case SO_CONNECTING:
        so_fail(s, "4.4.1", "connect to %s: timed out after %d s", s->peer,
                PICK(s->o.connect_timeout, 30));
        break;
    case SO_HANDSHAKE:
        s->tls.failed = true;
        so_fail(s, "4.7.5", "TLS handshake with %s timed out after %d s", s->namaddr,
                so_timeout_for(s, TERN_CMD_STARTTLS));
        break;
    case SO_QUIT:
        quit_finished(s);
        break;
    case SO_READY:
    case SO_DEAD:
        break;
    default:
        so_fail(s, "4.4.2", "conversation with %s timed out while %s", s->namaddr, so_stage(s));
        break;
    }
}

void so_bev_setup(struct smtpout *s)
{
    bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
    /* our own timer bounds every wait; a bufferevent timeout (an attached one may carry the
     * server side's) would only disable reading behind our back */
    bufferevent_set_timeouts(s->bev, NULL, NULL);
    bufferevent_setwatermark(s->bev, EV_READ, 0, SMTPOUT_IN_HIGH);
    bufferevent_setwatermark(s->bev, EV_WRITE, SMTPOUT_OUT_LOW, 0);
    struct bufferevent *u = bufferevent_get_underlying(s->bev);
    if (u) {
        /* the TLS filter moves data into u only up to u's write high-water mark: this is what
         * keeps a big message from piling up, encrypted, below the filter */
        bufferevent_set_timeouts(u, NULL, NULL);
        bufferevent_setwatermark(u, EV_READ, 0, SMTPOUT_IN_HIGH);
        bufferevent_setwatermark(u, EV_WRITE, 0, SMTPOUT_OUT_HIGH);
    }
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

/* ---- making one ---- */

static int own(char **dst, const char **field)
{
    if (!*field)
        return 0;
    *dst = strdup(*field);
    *field = *dst;
    return *dst ? 0 : -1;
}

/* A name for SNI, EHLO and messages: 1..255 printable octets, no spaces. */
static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] == 0x7f)
            return false;
    return true;
}

/* Why the options cannot work, or 0. */
static int check_opts(const struct smtpout *s, char *why, size_t n)
{
    const struct smtpout_opts *o = &s->o;
    if (!name_ok(o->host) || !name_ok(o->helo)) {
        snprintf(why, n,
                 "smtpout needs the peer's host name and our EHLO name (1 to 255 printable "
                 "octets, no spaces)");
        return -1;
    }
    if ((unsigned)o->tls > SMTPOUT_TLS_WRAPPER_VERIFY) {
        snprintf(why, n, "unknown TLS mode %d", (int)o->tls);
        return -1;
    }
    if (o->tls != SMTPOUT_TLS_NONE && !s->ctx) {
        snprintf(why, n,
                 "TLS was asked for but no SSL_CTX was given (make one with "
                 "smtpout_ssl_ctx_new)");
        return -1;
    }
    if (!o->user != !o->password || (o->user && (strlen(o->user) > 255 || !o->user[0])) ||
        (o->password && strlen(o->password) > 1024)) {
        snprintf(why, n,
                 "AUTH needs both a user name (1 to 255 octets) and a password (up to 1024 "
                 "octets), or neither");
        return -1;
    }
    return 0;
}

static struct smtpout *new_object(struct event_base *base, const struct smtpout_opts *o,
                                  smtpout_ready_fn *ready, void *arg)
{
    if (!base || !o || !ready)
        return NULL;
    struct smtpout *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base = base;
    s->o = *o;
    s->ready = ready;
    s->ready_arg = arg;
    s->state = SO_SETUP;
    int bad = own(&s->helo, &s->o.helo) | own(&s->host, &s->o.host) | own(&s->user, &s->o.user) |
              own(&s->password, &s->o.password);
    s->core = smtpc_new(o->transcript, o->transcript_arg);
    s->timer = evtimer_new(base, timer_cb, s);
    s->notify = event_new(base, -1, 0, notify_cb, s);
    if (bad || !s->core || !s->timer || !s->notify) {
        destroy(s);
        return NULL;
    }
    if (o->ssl_ctx && SSL_CTX_up_ref(o->ssl_ctx) == 1)
        s->ctx = o->ssl_ctx;
    s->o.ssl_ctx = s->ctx;
    snprintf(s->namaddr, sizeof s->namaddr, "%.255s", s->host ? s->host : "?");
    snprintf(s->peer, sizeof s->peer, "%s", s->namaddr);
    return s;
}

/* "host[ip]" and "host[ip]:port" from the peer's address. */
static void set_peer(struct smtpout *s, const struct sockaddr *sa)
{
    char ip[INET6_ADDRSTRLEN] = "unix";
    int port = -1;
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
    }
    const char *host = s->host ? s->host : "?";
    snprintf(s->namaddr, sizeof s->namaddr, "%.250s[%s]", host, ip);
    if (port >= 0)
        snprintf(s->peer, sizeof s->peer, "%s:%d", s->namaddr, port);
    else
        snprintf(s->peer, sizeof s->peer, "%s", s->namaddr);
}

struct smtpout *smtpout_connect(struct event_base *base, const struct sockaddr *sa, socklen_t len,
                                const struct smtpout_opts *o, smtpout_ready_fn *ready, void *arg)
{
    struct smtpout *s = new_object(base, o, ready, arg);
    if (!s)
        return NULL;
    bool inet = sa && ((sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) ||
                       (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)));
    set_peer(s, inet ? sa : NULL);
    char why[256];
    if (check_opts(s, why, sizeof why) < 0) {
        so_fail(s, "4.3.5", "%s", why);
        return s;
    }
    if (!inet) {
        so_fail(s, "4.3.5", "smtpout connects to IPv4 or IPv6 addresses only");
        return s;
    }
    s->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!s->bev) {
        so_fail(s, "4.3.0", "out of memory connecting to %s", s->peer);
        return s;
    }
    so_bev_setup(s);
    s->state = SO_CONNECTING;
    so_arm(s, PICK(s->o.connect_timeout, 30));
    if (bufferevent_socket_connect(s->bev, sa, (int)len) < 0)
        so_fail(s, "4.4.1", "connect to %s: %s", s->peer, strerror(errno));
    return s;
}

struct smtpout *smtpout_attach(struct event_base *base, struct bufferevent *bev,
                               const struct smtpout_opts *o, smtpout_ready_fn *ready, void *arg)
{
    if (!bev)
        return NULL;
    struct smtpout *s = new_object(base, o, ready, arg);
    if (!s) {
        bufferevent_free(bev);
        return NULL;
    }
    s->bev = bev;
    struct bufferevent *low = bev, *u;
    while ((u = bufferevent_get_underlying(low)))
        low = u;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    evutil_socket_t fd = bufferevent_getfd(low);
    bool got = fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0;
    set_peer(s, got ? (struct sockaddr *)&ss : NULL);
    so_bev_setup(s);
    char why[256];
    if (check_opts(s, why, sizeof why) < 0) {
        so_fail(s, "4.3.5", "%s", why);
        return s;
    }
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl) {
        s->tls.on = true;
        if (SSL_is_init_finished(ssl))
            so_tls_record(s, ssl);
    } else if (s->o.tls == SMTPOUT_TLS_WRAPPER || s->o.tls == SMTPOUT_TLS_WRAPPER_VERIFY) {
        so_tls_start(s);
        return s;
    }
    so_setup_begin(s);
    return s;
}

/* ---- the rest of the API ---- */

bool smtpout_idle(const struct smtpout *s)
{
    return s && s->state == SO_READY && !s->spent && !s->txn && !s->want_ready && s->bev;
}

void smtpout_quit(struct smtpout *s)
{
    if (!s)
        return;
    s->want_ready = s->want_done = false; /* no callbacks from here on */
    s->ready_delivered = true;
    if (s->state != SO_READY || !s->bev) {
        destroy(s);
        return;
    }
    so_txn_free(s->txn); /* finished, its callback not yet delivered: it never will be */
    s->txn = NULL;
    s->quit_reports = false;
    start_quit(s);
}

void smtpout_free(struct smtpout *s)
{
    if (s)
        destroy(s);
}

const char *smtpout_peer(const struct smtpout *s)
{
    return s->peer;
}

const struct smtpout_tls_info *smtpout_tls(const struct smtpout *s)
{
    return &s->tls;
}

const struct tern_caps *smtpout_caps(const struct smtpout *s)
{
    return &s->caps;
}

void smtpout_stats(const struct smtpout *s, struct smtpout_stats *st)
{
    *st = s->stats;
}

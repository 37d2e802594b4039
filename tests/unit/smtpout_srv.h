/* The scripted SMTP server of test_client_srv.h, extended for the event-loop client's tests: a
 * loopback listener on a free port (or one end of a socketpair, for TURN), one thread, one
 * connection, and a script of steps: wait for exactly these bytes from the client, then send
 * these. Every byte the client sent is kept, so tests compare what went over the wire octet for
 * octet. Beyond the original: a step can check that the client sent nothing more before the
 * reply (lock-step, no pipelining), wait before reading (so the client meets back-pressure),
 * end the connection with a reset, and the whole session can start with a TLS handshake in
 * which this thread is the TLS client (the TURN case: the TLS roles stay while SMTP's reverse).
 * The self-signed certificate names "localhost" and 127.0.0.1 and is written to a PEM file tests
 * trust as their CA. Then the client side of the tests: a fixture with an event_base, client TLS
 * contexts that do and do not trust that certificate, callbacks that record what smtpout
 * reported, and the moves every test makes (connect and wait for ready, deliver a message from a
 * file, QUIT and collect what the server got). Include after cmocka.h. */
#ifndef TERN_TESTS_SMTPOUT_SRV_H
#define TERN_TESTS_SMTPOUT_SRV_H

#include "relay/smtpout.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SRV_TLS 1u    /* after sending, start TLS (server side) */
#define SRV_CLOSE 2u  /* after sending, close the connection */
#define SRV_HANG 4u   /* send nothing more: read until the client gives up */
#define SRV_ALONE 8u  /* the expected bytes must come alone: nothing more within 150 ms */
#define SRV_RESET 16u /* after sending, reset the connection (RST, not FIN) */

struct srv_step {
    const char *expect; /* exactly these bytes from the client first (NULL: none) */
    const char *send;   /* then these (NULL: none) */
    unsigned flags;
    unsigned delay_ms; /* wait this long before reading */
    size_t expect_len; /* of expect when not 0 (else strlen) */
};

struct srv {
    int lfd;
    char port[16];
    pthread_t th;
    const struct srv_step *steps;
    size_t nsteps;
    bool implicit_tls; /* the server begins with a TLS handshake as the TLS server */
    bool tls_client;   /* ... or as the TLS client (TURN over a TLS session) */
    SSL_CTX *ctx, *cctx;
    SSL *ssl;
    int fd;
    char *got; /* everything the client sent */
    size_t gotlen, gotcap;
    char why[512];        /* the first thing that went wrong, or "" */
    atomic_bool finished; /* the thread is done: the tests' event loops may stop */
};

static char srv_cert_path[64], srv_key_path[64];

/* Makes the self-signed certificate and key once per test program. */
static void srv_make_cert(void)
{
    if (srv_cert_path[0])
        return;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(key);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext =
        X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    snprintf(srv_cert_path, sizeof srv_cert_path, "/tmp/tern-test-cert-XXXXXX");
    snprintf(srv_key_path, sizeof srv_key_path, "/tmp/tern-test-key-XXXXXX");
    int cfd = mkstemp(srv_cert_path), kfd = mkstemp(srv_key_path);
    FILE *cf = fdopen(cfd, "w"), *kf = fdopen(kfd, "w");
    PEM_write_X509(cf, x);
    PEM_write_PrivateKey(kf, key, NULL, NULL, 0, NULL, NULL);
    fclose(cf);
    fclose(kf);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void srv_remove_cert(void)
{
    if (srv_cert_path[0]) {
        unlink(srv_cert_path);
        unlink(srv_key_path);
    }
}

/* A server context with the test certificate, for the tests' own TLS servers. */
static SSL_CTX *srv_server_ctx(void)
{
    srv_make_cert();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate_file(ctx, srv_cert_path, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, srv_key_path, SSL_FILETYPE_PEM), 1);
    return ctx;
}

static void srv_fail(struct srv *s, const char *what, const char *detail, size_t n)
{
    if (s->why[0])
        return;
    snprintf(s->why, sizeof s->why, "%s: \"", what);
    size_t o = strlen(s->why);
    for (size_t i = 0; i < n && o + 6 < sizeof s->why; i++) {
        unsigned char ch = (unsigned char)detail[i];
        o += (size_t)snprintf(s->why + o, sizeof s->why - o,
                              ch >= 0x20 && ch < 0x7f ? "%c" : "\\x%02x", ch);
    }
    snprintf(s->why + o, sizeof s->why - o, "\"");
}

/* Is there something to read within ms? */
static bool srv_readable(struct srv *s, int ms)
{
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    return (s->ssl && SSL_pending(s->ssl)) || poll(&p, 1, ms) > 0;
}

static ssize_t srv_read(struct srv *s, char *buf, size_t n)
{
    if (!srv_readable(s, 5000))
        return -1;
    if (s->ssl) {
        int rc = SSL_read(s->ssl, buf, n > 65536 ? 65536 : (int)n);
        return rc > 0 ? rc : SSL_get_error(s->ssl, rc) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
    }
    return read(s->fd, buf, n);
}

static void srv_write(struct srv *s, const char *buf, size_t n)
{
    if (s->ssl)
        SSL_write(s->ssl, buf, (int)n);
    else if (send(s->fd, buf, n, MSG_NOSIGNAL) < 0)
        srv_fail(s, "cannot send", "", 0);
}

/* Reads exactly n bytes into got; 0, or -1 when the client stopped short. */
static int srv_take(struct srv *s, size_t n)
{
    if (s->gotlen + n + 1 > s->gotcap) {
        s->gotcap = (s->gotlen + n + 1) * 2;
        s->got = realloc(s->got, s->gotcap);
        if (!s->got)
            abort();
    }
    size_t start = s->gotlen;
    while (s->gotlen - start < n) {
        ssize_t r = srv_read(s, s->got + s->gotlen, n - (s->gotlen - start));
        if (r <= 0)
            return -1;
        s->gotlen += (size_t)r;
    }
    s->got[s->gotlen] = '\0';
    return 0;
}

static bool srv_handshake(struct srv *s)
{
    s->ssl = SSL_new(s->tls_client ? s->cctx : s->ctx);
    SSL_set_fd(s->ssl, s->fd);
    return (s->tls_client ? SSL_connect(s->ssl) : SSL_accept(s->ssl)) == 1;
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    if (s->fd < 0) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0 || (s->fd = accept(s->lfd, NULL, NULL)) < 0) {
            srv_fail(s, "no client connected", "", 0);
            atomic_store(&s->finished, true);
            return NULL;
        }
    }
    if ((s->implicit_tls || s->tls_client) && !srv_handshake(s)) {
        srv_fail(s, "the first TLS handshake failed", "", 0);
        goto out;
    }
    for (size_t i = 0; i < s->nsteps; i++) {
        const struct srv_step *st = &s->steps[i];
        if (st->delay_ms) {
            struct timespec ts = {st->delay_ms / 1000, (long)(st->delay_ms % 1000) * 1000000};
            nanosleep(&ts, NULL);
        }
        if (st->expect) {
            size_t at = s->gotlen, n = st->expect_len ? st->expect_len : strlen(st->expect);
            if (srv_take(s, n) < 0 || memcmp(s->got + at, st->expect, n) != 0) {
                size_t show = s->gotlen - at < 300 ? s->gotlen - at : 300;
                srv_fail(s, "the client sent", s->got + at, show);
                goto out;
            }
            if ((st->flags & SRV_ALONE) && srv_readable(s, 150)) {
                srv_take(s, 1);
                srv_fail(s, "the client did not wait for the reply to", st->expect, n);
                goto out;
            }
        }
        if (st->send)
            srv_write(s, st->send, strlen(st->send));
        if ((st->flags & SRV_TLS) && !srv_handshake(s))
            goto out; /* the client may refuse our certificate: its test */
        if (st->flags & SRV_RESET) {
            struct linger l = {1, 0};
            setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            goto out;
        }
        if (st->flags & SRV_CLOSE)
            goto out;
        if (st->flags & SRV_HANG) {
            char buf[4096];
            while (srv_read(s, buf, sizeof buf) > 0)
                ;
            goto out;
        }
    }
    /* the rest (QUIT, or nothing) is kept for the test to look at */
    while (srv_take(s, 1) == 0)
        ;
out:
    if (s->ssl) {
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    close(s->fd);
    atomic_store(&s->finished, true);
    return NULL;
}

static struct srv *srv_new(const struct srv_step *steps, size_t n)
{
    struct srv *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->steps = steps;
    s->nsteps = n;
    s->fd = -1;
    s->lfd = -1;
    s->ctx = srv_server_ctx();
    s->cctx = SSL_CTX_new(TLS_client_method());
    return s;
}

/* Starts a server with this script on 127.0.0.1 (or ::1 when v6; NULL when there is none). */
static struct srv *srv_start(const struct srv_step *steps, size_t n, bool implicit_tls, bool v6)
{
    struct srv *s = srv_new(steps, n);
    s->implicit_tls = implicit_tls;
    s->lfd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    }
    if (bind(s->lfd, (struct sockaddr *)&ss, len) < 0 || listen(s->lfd, 4) < 0) {
        close(s->lfd);
        SSL_CTX_free(s->ctx);
        SSL_CTX_free(s->cctx);
        free(s);
        return NULL; /* no IPv6 here */
    }
    getsockname(s->lfd, (struct sockaddr *)&ss, &len);
    int port =
        ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    assert_true(port > 1024);
    snprintf(s->port, sizeof s->port, "%d", port);
    pthread_create(&s->th, NULL, srv_main, s);
    return s;
}

/* Runs the script over fd (one end of a socketpair), as the TLS client first when tls_client. */
static struct srv *srv_start_fd(const struct srv_step *steps, size_t n, int fd, bool tls_client)
{
    struct srv *s = srv_new(steps, n);
    s->fd = fd;
    s->tls_client = tls_client;
    pthread_create(&s->th, NULL, srv_main, s);
    return s;
}

/* Waits for the server to finish; asserts it saw what the script expected. Returns everything
 * the client sent (valid until srv_free). */
static const char *srv_join(struct srv *s)
{
    pthread_join(s->th, NULL);
    if (s->why[0])
        fail_msg("scripted server: %s", s->why);
    return s->got ? s->got : "";
}

static void srv_free(struct srv *s)
{
    if (s->lfd >= 0)
        close(s->lfd);
    SSL_CTX_free(s->ctx);
    SSL_CTX_free(s->cctx);
    free(s->got);
    free(s);
}

/* ---- the client side: an event_base, the callbacks and the moves every test makes ---- */

#define NSTEPS(a) (sizeof(a) / sizeof((a)[0]))
#define MAXR 8

struct fx {
    struct event_base *base;
    SSL_CTX *trusting; /* trusts the test certificate */
    SSL_CTX *system;   /* the system store: the test certificate is unknown to it */
    struct srv *srv;
    struct smtpout *s;
    int readies, dones;
    bool ok;
    struct smtpout_reply err, res[MAXR];
    size_t n;
    struct smtpout_opts o;
    char tlog[16384];
    size_t tlen;
    char *got;                 /* what the client sent to the last server */
    struct smtpout_msg *chain; /* sent from inside on_done, as a queue runner does */
};

static void log_line(void *arg, char dir, const char *line, size_t len)
{
    struct fx *f = arg;
    if (f->tlen < sizeof f->tlog)
        f->tlen += (size_t)snprintf(f->tlog + f->tlen, sizeof f->tlog - f->tlen, "%c: %.*s\n", dir,
                                    (int)len, line);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    srv_make_cert();
    char err[256];
    f->trusting = smtpout_ssl_ctx_new(srv_cert_path, err, sizeof err);
    f->system = smtpout_ssl_ctx_new(NULL, err, sizeof err);
    if (!f->base || !f->trusting || !f->system)
        return -1;
    f->o = (struct smtpout_opts){.helo = "client.test",
                                 .host = "localhost",
                                 .ssl_ctx = f->trusting,
                                 .connect_timeout = 5,
                                 .greeting_timeout = 5,
                                 .command_timeout = 5,
                                 .quit_timeout = 2,
                                 .transcript = log_line,
                                 .transcript_arg = f};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    smtpout_free(f->s);
    if (f->srv) {
        pthread_join(f->srv->th, NULL);
        srv_free(f->srv);
    }
    free(f->got);
    SSL_CTX_free(f->trusting);
    SSL_CTX_free(f->system);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void on_ready(void *arg, struct smtpout *s, const struct smtpout_reply *err)
{
    struct fx *f = arg;
    f->readies++;
    f->ok = !err;
    if (err) {
        f->err = *err;
        smtpout_free(s); /* in the callback, as the API allows */
        f->s = NULL;
    }
    event_base_loopbreak(f->base);
}

static void on_done(void *arg, struct smtpout *s, const struct smtpout_reply *r, size_t n)
{
    struct fx *f = arg;
    f->dones++;
    f->n = n;
    for (size_t i = 0; i < n && i < MAXR; i++)
        f->res[i] = r[i];
    if (f->chain) {
        assert_true(smtpout_idle(s));
        assert_int_equal(smtpout_send(s, f->chain, on_done, f), 0);
        f->chain = NULL;
    }
    event_base_loopbreak(f->base);
}

/* Runs the loop until cond holds (at most 30 s). */
#define RUN_UNTIL(f, cond)                                                                         \
    do {                                                                                           \
        time_t end_ = time(NULL) + 30;                                                             \
        while (!(cond) && time(NULL) < end_) {                                                     \
            struct timeval tv_ = {0, 50000};                                                       \
            event_base_loopexit((f)->base, &tv_);                                                  \
            event_base_dispatch((f)->base);                                                        \
        }                                                                                          \
        assert_true(cond);                                                                         \
    } while (0)

static struct sockaddr_in loopback(const struct srv *srv)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    a.sin_port = htons((uint16_t)atoi(srv->port));
    return a;
}

/* Starts the script and connects; returns whether ready came without error. */
static bool start(struct fx *f, const struct srv_step *steps, size_t n, bool implicit)
{
    f->srv = srv_start(steps, n, implicit, false);
    assert_non_null(f->srv);
    struct sockaddr_in a = loopback(f->srv);
    f->s = smtpout_connect(f->base, (struct sockaddr *)&a, sizeof a, &f->o, on_ready, f);
    assert_non_null(f->s);
    RUN_UNTIL(f, f->readies == 1);
    return f->ok;
}

static int msg_fd(const char *data, size_t len)
{
    char path[] = "/tmp/tern-smtpout-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    return fd;
}

/* Sends body from from to rcpts and waits for done. */
static void deliver(struct fx *f, const char *from, const char *const *rcpts, size_t n,
                    const char *body, bool utf8)
{
    int fd = msg_fd(body, strlen(body));
    struct smtpout_msg m = {.from = from, .rcpts = rcpts, .nrcpts = n, .fd = fd, .smtputf8 = utf8};
    int before = f->dones;
    assert_true(smtpout_idle(f->s));
    assert_int_equal(smtpout_send(f->s, &m, on_done, f), 0);
    close(fd); /* smtpout keeps its own descriptor */
    assert_false(smtpout_idle(f->s));
    RUN_UNTIL(f, f->dones == before + 1);
    assert_int_equal(f->n, n);
}

/* QUIT (when there is an object), then the server's end; returns what the client sent. The
 * fixture is ready for another round. */
static const char *finish(struct fx *f)
{
    if (f->s)
        smtpout_quit(f->s);
    f->s = NULL;
    RUN_UNTIL(f, atomic_load(&f->srv->finished));
    const char *got = srv_join(f->srv);
    free(f->got);
    f->got = malloc(f->srv->gotlen + 1);
    memcpy(f->got, got, f->srv->gotlen + 1);
    srv_free(f->srv);
    f->srv = NULL;
    f->readies = f->dones = 0;
    return f->got;
}

static void expect_reply(const struct smtpout_reply *r, int code, const char *enh, const char *text,
                         enum tern_cmd cmd, bool local)
{
    assert_int_equal(r->code, code);
    assert_string_equal(r->enh, enh);
    if (!strstr(r->text, text))
        fail_msg("\"%s\" not in \"%s\"", text, r->text);
    assert_int_equal(r->cmd, cmd);
    assert_int_equal(r->local, local);
}

#define GREET                                                                                      \
    {                                                                                              \
        NULL, "220 mx.test ESMTP\r\n", 0, 0, 0                                                     \
    }
#define EHLO(caps)                                                                                 \
    {                                                                                              \
        "EHLO client.test\r\n", "250-mx.test\r\n" caps, 0, 0, 0                                    \
    }
#define QUIT                                                                                       \
    {                                                                                              \
        "QUIT\r\n", "221 2.0.0 bye\r\n", 0, 0, 0                                                   \
    }

#endif

/* A tiny scripted SMTP server for libtern's driver tests: a loopback listener on a free port
 * (bound to port 0, so the kernel picks an unused one above 20000), one thread, one connection,
 * and a script of steps: wait for exactly these bytes from the client, then send these. Every
 * byte the client sent is kept, so tests compare what went over the wire octet for octet. A step
 * can start TLS (STARTTLS) after its reply, hang, or close; the whole session can be implicit
 * TLS, with a self-signed certificate for "localhost" and 127.0.0.1 made at start (and written
 * to a PEM file that tests trust as their CA). A step may also run a GNU SASL server exchange
 * (SCRAM-SHA-256) for real. Include after cmocka.h. */
#ifndef TERN_TESTS_CLIENT_SRV_H
#define TERN_TESTS_CLIENT_SRV_H

#include <arpa/inet.h>
#include <gsasl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SRV_TLS 1u         /* after sending, start TLS (server side) */
#define SRV_CLOSE 2u       /* after sending, close the connection */
#define SRV_HANG 4u        /* send nothing more: wait until the client gives up */
#define SRV_SCRAM 8u       /* run a SCRAM-SHA-256 exchange (password in send) */
#define SRV_SCRAM_EVIL 16u /* ... but sign the server-final message wrongly */

struct srv_step {
    const char *expect; /* exactly these bytes from the client first (NULL: none) */
    const char *send;   /* then these (NULL: none) */
    unsigned flags;
};

struct srv {
    int lfd;
    char port[16];
    pthread_t th;
    const struct srv_step *steps;
    size_t nsteps;
    bool implicit_tls;
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
    char *got; /* everything the client sent */
    size_t gotlen, gotcap;
    char why[512]; /* the first thing that went wrong, or "" */
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

static ssize_t srv_read(struct srv *s, char *buf, size_t n)
{
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    if (!(s->ssl && SSL_pending(s->ssl)) && poll(&p, 1, 5000) <= 0)
        return -1;
    if (s->ssl) {
        int rc = SSL_read(s->ssl, buf, (int)n);
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

/* One line from the client (for SASL), into got; NULL at the end. */
static char *srv_line(struct srv *s)
{
    size_t start = s->gotlen;
    for (;;) {
        if (srv_take(s, 1) < 0)
            return NULL;
        if (s->got[s->gotlen - 1] == '\n')
            break;
    }
    size_t n = s->gotlen - start - 2;
    char *line = malloc(n + 1);
    if (!line)
        abort(); /* out of memory: nothing to test */
    memcpy(line, s->got + start, n);
    line[n] = '\0';
    return line;
}

static int srv_scram_cb(Gsasl *ctx, Gsasl_session *sctx, Gsasl_property prop)
{
    (void)ctx;
    if (prop == GSASL_PASSWORD) {
        gsasl_property_set(sctx, GSASL_PASSWORD, gsasl_session_hook_get(sctx));
        return GSASL_OK;
    }
    return GSASL_NO_CALLBACK;
}

/* A SCRAM-SHA-256 exchange as a server: "AUTH SCRAM-SHA-256 <client-first>" was the expect. */
static void srv_scram(struct srv *s, const char *password, bool evil)
{
    Gsasl *ctx;
    Gsasl_session *ss;
    gsasl_init(&ctx);
    gsasl_callback_set(ctx, srv_scram_cb);
    gsasl_server_start(ctx, "SCRAM-SHA-256", &ss);
    gsasl_session_hook_set(ss, (void *)password);
    char *line = srv_line(s); /* "AUTH SCRAM-SHA-256 <b64>" */
    const char *in = line && strncmp(line, "AUTH SCRAM-SHA-256 ", 19) == 0 ? line + 19 : "";
    for (int step = 0; line && step < 4; step++) {
        char *out = NULL;
        int rc = gsasl_step64(ss, in, &out);
        if (rc == GSASL_NEEDS_MORE || (rc == GSASL_OK && out && out[0])) {
            if (evil && rc == GSASL_OK) { /* "v=<signature>": change one of its characters */
                char *plain = NULL, *b64 = NULL;
                size_t plen = 0;
                gsasl_base64_from(out, strlen(out), &plain, &plen);
                plain[4] = plain[4] == 'A' ? 'B' : 'A';
                gsasl_base64_to(plain, plen, &b64, NULL);
                gsasl_free(out);
                gsasl_free(plain);
                out = b64;
            }
            char reply[1024];
            snprintf(reply, sizeof reply, "334 %s\r\n", out);
            srv_write(s, reply, strlen(reply));
            gsasl_free(out);
            free(line);
            line = srv_line(s);
            in = line ? line : "";
            if (rc == GSASL_OK) { /* the client's empty final response, or "*" */
                const char *r = line && strcmp(line, "*") == 0 ? "501 5.7.0 cancelled\r\n"
                                                               : "235 2.7.0 Authenticated\r\n";
                srv_write(s, r, strlen(r));
                break;
            }
            continue;
        }
        gsasl_free(out);
        const char *r = rc == GSASL_OK ? "235 2.7.0 Authenticated\r\n"
                                       : "535 5.7.8 Authentication credentials invalid\r\n";
        srv_write(s, r, strlen(r));
        break;
    }
    free(line);
    gsasl_finish(ss);
    gsasl_done(ctx);
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    struct pollfd p = {.fd = s->lfd, .events = POLLIN};
    if (poll(&p, 1, 5000) <= 0 || (s->fd = accept(s->lfd, NULL, NULL)) < 0) {
        srv_fail(s, "no client connected", "", 0);
        return NULL;
    }
    if (s->implicit_tls) {
        s->ssl = SSL_new(s->ctx);
        SSL_set_fd(s->ssl, s->fd);
        if (SSL_accept(s->ssl) != 1) {
            srv_fail(s, "implicit TLS handshake failed", "", 0);
            goto out;
        }
    }
    for (size_t i = 0; i < s->nsteps; i++) {
        const struct srv_step *st = &s->steps[i];
        if (st->flags & SRV_SCRAM) {
            srv_scram(s, st->send, st->flags & SRV_SCRAM_EVIL);
            continue;
        }
        if (st->expect) {
            size_t at = s->gotlen, n = strlen(st->expect);
            if (srv_take(s, n) < 0 || memcmp(s->got + at, st->expect, n) != 0) {
                srv_fail(s, "the client sent", s->got + at, s->gotlen - at);
                goto out;
            }
        }
        if (st->send)
            srv_write(s, st->send, strlen(st->send));
        if (st->flags & SRV_TLS) {
            s->ssl = SSL_new(s->ctx);
            SSL_set_fd(s->ssl, s->fd);
            if (SSL_accept(s->ssl) != 1) /* the client may refuse our certificate: its test */
                goto out;
        }
        if (st->flags & SRV_CLOSE)
            goto out;
        if (st->flags & SRV_HANG) {
            char buf[256];
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
    return NULL;
}

/* Starts a server with this script on 127.0.0.1 (or ::1 when v6). */
static struct srv *srv_start(const struct srv_step *steps, size_t n, bool implicit_tls, bool v6)
{
    srv_make_cert();
    struct srv *s = calloc(1, sizeof *s);
    s->steps = steps;
    s->nsteps = n;
    s->implicit_tls = implicit_tls;
    s->fd = -1;
    s->ctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate_file(s->ctx, srv_cert_path, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(s->ctx, srv_key_path, SSL_FILETYPE_PEM), 1);
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
        free(s);
        return NULL; /* no IPv6 here */
    }
    getsockname(s->lfd, (struct sockaddr *)&ss, &len);
    int port =
        ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    assert_true(port > 20000);
    snprintf(s->port, sizeof s->port, "%d", port);
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
    close(s->lfd);
    SSL_CTX_free(s->ctx);
    free(s->got);
    free(s);
}

#endif

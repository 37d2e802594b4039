/* libtern's transport (see transport.h): TCP connect over every address of a name, OpenSSL TLS
 * with verification, non-blocking reads and writes, and poll with deadlines. OpenSSL writes to
 * the socket with write(2), which raises SIGPIPE when the server has gone; a library may not
 * change the process's signal handling, so every OpenSSL call runs with SIGPIPE blocked in the
 * calling thread and a SIGPIPE it caused is taken back before the mask is restored. */
#include "client/transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TPORT_MAX_ADDRS 16 /* addresses of one name tried, at most */

void tport_init(struct tport *t)
{
    memset(t, 0, sizeof *t);
    t->fd = -1;
}

const char *tport_strerror(int err, char *buf, size_t n)
{
    return strerror_r(err, buf, n); /* the GNU one: returns the message, maybe not in buf */
}

long long tport_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int poll_fd(int fd, short events, long long deadline_ms, char *why, size_t whylen)
{
    for (;;) {
        long long left = deadline_ms - tport_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (rc > 0)
            return 1; /* POLLERR and POLLHUP too: the next read or write tells what happened */
        if (rc < 0 && errno != EINTR) {
            snprintf(why, whylen, "poll failed: %s", ERRSTR(errno));
            return -1;
        }
    }
}

int tport_wait(struct tport *t, short events, long long deadline_ms, char *why, size_t whylen)
{
    return poll_fd(t->fd, events, deadline_ms, why, whylen);
}

/* Connects fd to one address within deadline: 0, or -1 with errno's reason in why. */
static int connect_one(int fd, const struct addrinfo *ai, long long deadline, char *why,
                       size_t whylen)
{
    /* Nagle would hold back a small write (the ".\r\n" after the message, a pipelined RCPT)
     * until the server acknowledges the last one: about 40 ms a message. Each write here is a
     * whole command or buffer, so there is nothing for Nagle to merge. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EINTR) {
        snprintf(why, whylen, "%s", ERRSTR(errno));
        return -1;
    }
    int rc = poll_fd(fd, POLLOUT, deadline, why, whylen);
    if (rc == 0) {
        snprintf(why, whylen, "no answer (timed out)");
        return -1;
    }
    if (rc < 0)
        return -1;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        snprintf(why, whylen, "%s", ERRSTR(err));
        return -1;
    }
    return 0;
}

int tport_connect(struct tport *t, const char *host, const char *port, unsigned timeout_ms,
                  char *why, size_t whylen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(why, whylen, "cannot resolve %s port %s: %s; check the host name and port", host,
                 port, gai == EAI_SYSTEM ? ERRSTR(errno) : gai_strerror(gai));
        return -1;
    }
    char last[INET6_ADDRSTRLEN + 140] = "no address";
    int tried = 0;
    for (struct addrinfo *ai = res; ai && tried < TPORT_MAX_ADDRS; ai = ai->ai_next, tried++) {
        char addr[INET6_ADDRSTRLEN] = "?";
        const void *in = ai->ai_family == AF_INET6
                             ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                             : (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        inet_ntop(ai->ai_family, in, addr, sizeof addr);
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        char reason[128];
        if (fd < 0) {
            snprintf(reason, sizeof reason, "%s", ERRSTR(errno));
        } else if (connect_one(fd, ai, tport_now_ms() + timeout_ms, reason, sizeof reason) == 0) {
            freeaddrinfo(res);
            t->fd = fd;
            return 0;
        } else {
            close(fd);
        }
        snprintf(last, sizeof last, "[%s]: %s", addr, reason);
    }
    freeaddrinfo(res);
    snprintf(why, whylen,
             "cannot connect to %s port %s (%d address%s tried, last %s); check the host, the port "
             "and that the server is running",
             host, port, tried, tried == 1 ? "" : "es", last);
    return -1;
}

/* ---- SIGPIPE, held off around OpenSSL calls (see the top of the file) ---- */

struct pipeguard {
    sigset_t old;
    bool pending_before;
};

static void pipe_hold(struct pipeguard *g)
{
    sigset_t s, pend;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s, &g->old);
    g->pending_before = sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE);
}

static void pipe_release(struct pipeguard *g)
{
    sigset_t s, pend;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    if (!g->pending_before && sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&s, NULL, &zero); /* ours: take it back */
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ---- TLS ---- */

/* OpenSSL's reason for the last failure, or fallback. */
static const char *ssl_reason(char *buf, size_t n, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        return fallback;
    ERR_error_string_n(e, buf, n);
    ERR_clear_error();
    return buf;
}

static int make_ctx(struct tport *t, const struct tport_tls *conf, char *why, size_t whylen)
{
    char err[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(why, whylen, "cannot set up TLS: %s", ssl_reason(err, sizeof err, "?"));
        return -1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* SMTP frames itself (221, end of data): a TCP close without close_notify is no attack */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, conf->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    /* the trust store is loaded even when insecure, so tern_tls_info can say what would fail */
    int ok = conf->ca_file || conf->ca_path
                 ? SSL_CTX_load_verify_locations(ctx, conf->ca_file, conf->ca_path)
                 : SSL_CTX_set_default_verify_paths(ctx);
    if (!ok) {
        snprintf(why, whylen, "cannot load the trusted CAs from %s: %s; check the path",
                 conf->ca_file   ? conf->ca_file
                 : conf->ca_path ? conf->ca_path
                                 : "the system store",
                 ssl_reason(err, sizeof err, "?"));
        SSL_CTX_free(ctx);
        return -1;
    }
    if (conf->client_cert &&
        (SSL_CTX_use_certificate_chain_file(ctx, conf->client_cert) != 1 ||
         SSL_CTX_use_PrivateKey_file(ctx, conf->client_key ? conf->client_key : conf->client_cert,
                                     SSL_FILETYPE_PEM) != 1)) {
        snprintf(why, whylen, "cannot load the client certificate %s: %s; check the files",
                 conf->client_cert, ssl_reason(err, sizeof err, "?"));
        SSL_CTX_free(ctx);
        return -1;
    }
    t->ctx = ctx;
    t->ctx_insecure = conf->insecure;
    return 0;
}

/* Why the handshake failed, in words that say what to do. */
static void handshake_reason(struct tport *t, const struct tport_tls *conf, int sslerr, int err,
                             char *why, size_t whylen)
{
    char buf[256];
    long vr = SSL_get_verify_result(t->ssl);
    if (!conf->insecure && vr != X509_V_OK) {
        snprintf(why, whylen,
                 "the TLS certificate of %s does not verify: %s; give the CA that signed it "
                 "(ca_file) or, for a test server only, turn verification off (insecure)",
                 conf->name, X509_verify_cert_error_string(vr));
    } else if (sslerr == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0) {
        snprintf(why, whylen, "TLS handshake with %s failed: %s; is this a TLS port?", conf->name,
                 err ? ERRSTR(err) : "the server closed the connection");
    } else {
        snprintf(why, whylen, "TLS handshake with %s failed: %s; is this a TLS port?", conf->name,
                 ssl_reason(buf, sizeof buf, "protocol error"));
    }
}

int tport_tls_start(struct tport *t, const struct tport_tls *conf, unsigned timeout_ms, char *why,
                    size_t whylen)
{
    ERR_clear_error();
    if (t->ctx && t->ctx_insecure != conf->insecure) {
        SSL_CTX_free(t->ctx);
        t->ctx = NULL;
    }
    if (!t->ctx && make_ctx(t, conf, why, whylen) < 0)
        return -1;
    char err[256];
    t->ssl = SSL_new(t->ctx);
    if (!t->ssl || SSL_set_fd(t->ssl, t->fd) != 1) {
        snprintf(why, whylen, "cannot set up TLS: %s", ssl_reason(err, sizeof err, "?"));
        return -1;
    }
    unsigned char ip[16];
    bool literal = inet_pton(AF_INET, conf->name, ip) == 1 || inet_pton(AF_INET6, conf->name, ip);
    int ok = literal
                 ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), conf->name)
                 : SSL_set_tlsext_host_name(t->ssl, conf->name) == 1 &&
                       SSL_set1_host(t->ssl, conf->name) == 1; /* RFC 6066 forbids SNI for IPs */
    if (!ok) {
        snprintf(why, whylen, "cannot check the certificate against \"%s\": %s", conf->name,
                 ssl_reason(err, sizeof err, "not a valid name"));
        return -1;
    }
    SSL_set_connect_state(t->ssl);
    long long deadline = tport_now_ms() + timeout_ms;
    for (;;) {
        struct pipeguard g;
        pipe_hold(&g);
        errno = 0;
        int rc = SSL_connect(t->ssl);
        int e = SSL_get_error(t->ssl, rc);
        int saved = errno;
        pipe_release(&g);
        if (rc == 1)
            return 0;
        short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!ev) {
            handshake_reason(t, conf, e, saved, why, whylen);
            return -1;
        }
        int w = poll_fd(t->fd, ev, deadline, why, whylen);
        if (w == 0)
            snprintf(why, whylen,
                     "TLS handshake with %s timed out after %u ms; is this a TLS port?", conf->name,
                     timeout_ms);
        if (w <= 0)
            return -1;
    }
}

/* The outcome of one SSL_read or SSL_write (rc), as tport_read/tport_write return it. */
static ssize_t ssl_result(struct tport *t, int rc, int e, int saved, short *events, char *why,
                          size_t whylen)
{
    char buf[256];
    if (rc > 0)
        return rc;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *events = POLLIN;
        return TPORT_WOULD_BLOCK;
    case SSL_ERROR_WANT_WRITE:
        *events = POLLOUT;
        return TPORT_WOULD_BLOCK;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_last_error() == 0) {
            if (saved == 0)
                return 0;
            snprintf(why, whylen, "%s", ERRSTR(saved));
            return -1;
        }
        break;
    default:
        break;
    }
    snprintf(why, whylen, "TLS error: %s", ssl_reason(buf, sizeof buf, "protocol error"));
    return -1;
}

/* One SSL_write of wbuf or, without it, SSL_read into rbuf: at most 64 KiB (SSL takes an int),
 * SIGPIPE held off. A write that finds the TLS session closed is an error: the server went away
 * mid-dialogue, where a read of it is the end of the stream. */
static ssize_t ssl_io(struct tport *t, const void *wbuf, void *rbuf, size_t n, short *events,
                      char *why, size_t whylen)
{
    int len = n > 65536 ? 65536 : (int)n;
    struct pipeguard g;
    pipe_hold(&g);
    ERR_clear_error();
    errno = 0;
    int rc = wbuf ? SSL_write(t->ssl, wbuf, len) : SSL_read(t->ssl, rbuf, len);
    int e = SSL_get_error(t->ssl, rc);
    int saved = errno;
    pipe_release(&g);
    if (wbuf && rc <= 0 && e == SSL_ERROR_ZERO_RETURN) {
        snprintf(why, whylen, "the server closed the connection");
        return -1;
    }
    return ssl_result(t, rc, e, saved, events, why, whylen);
}

/* One attempt at moving octets: a write of wbuf or, without it, a read into rbuf. */
static ssize_t tport_io(struct tport *t, const void *wbuf, void *rbuf, size_t n, short *events,
                        char *why, size_t whylen)
{
    if (t->fd < 0) {
        snprintf(why, whylen, "not connected");
        return -1;
    }
    if (t->ssl)
        return ssl_io(t, wbuf, rbuf, n, events, why, whylen);
    for (;;) {
        ssize_t rc = wbuf ? send(t->fd, wbuf, n, MSG_NOSIGNAL) : recv(t->fd, rbuf, n, 0);
        if (rc >= 0)
            return rc;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *events = wbuf ? POLLOUT : POLLIN;
            return TPORT_WOULD_BLOCK;
        }
        snprintf(why, whylen, "%s", ERRSTR(errno));
        return -1;
    }
}

ssize_t tport_read(struct tport *t, void *buf, size_t n, short *events, char *why, size_t whylen)
{
    return tport_io(t, NULL, buf, n, events, why, whylen);
}

ssize_t tport_write(struct tport *t, const void *buf, size_t n, short *events, char *why,
                    size_t whylen)
{
    return tport_io(t, buf, NULL, n, events, why, whylen);
}

size_t tport_pending(const struct tport *t)
{
    return t->ssl ? (size_t)SSL_pending(t->ssl) : 0;
}

void tport_close(struct tport *t)
{
    if (t->ssl) {
        struct pipeguard g;
        pipe_hold(&g);
        SSL_shutdown(t->ssl); /* one non-blocking try at close_notify; the peer may be gone */
        pipe_release(&g);
        SSL_free(t->ssl);
        t->ssl = NULL;
        ERR_clear_error();
    }
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
}

void tport_free(struct tport *t)
{
    tport_close(t);
    SSL_CTX_free(t->ctx);
    t->ctx = NULL;
}

/* A certificate name, RFC 2253 form with control and 8-bit octets escaped (terminal-safe). */
static void name_text(X509_NAME *name, char *out, size_t n)
{
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        int k = BIO_read(b, out, (int)n - 1);
        out[k > 0 ? k : 0] = '\0';
    }
    BIO_free(b);
}

int tport_tls_info(const struct tport *t, struct tern_tls_info *info)
{
    memset(info, 0, sizeof *info);
    if (!t->ssl)
        return -1;
    snprintf(info->protocol, sizeof info->protocol, "%s", SSL_get_version(t->ssl));
    snprintf(info->cipher, sizeof info->cipher, "%s", SSL_get_cipher_name(t->ssl));
    X509 *cert = SSL_get1_peer_certificate(t->ssl);
    long vr = SSL_get_verify_result(t->ssl);
    if (cert) {
        name_text(X509_get_subject_name(cert), info->subject, sizeof info->subject);
        name_text(X509_get_issuer_name(cert), info->issuer, sizeof info->issuer);
        struct tm tm;
        if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
            strftime(info->not_after, sizeof info->not_after, "%Y-%m-%d %H:%M:%S UTC", &tm);
        X509_free(cert);
    }
    info->verified = cert && vr == X509_V_OK;
    if (!info->verified)
        snprintf(info->verify_error, sizeof info->verify_error, "%s",
                 cert ? X509_verify_cert_error_string(vr) : "the server sent no certificate");
    return 0;
}

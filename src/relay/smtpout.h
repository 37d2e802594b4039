/* The outbound SMTP client of ternd: one object per outbound connection, driven by the event loop
 * (libevent bufferevents, OpenSSL filters for TLS) around the client protocol core of
 * src/client/client.h. It connects (or takes over a connected bufferevent, for TURN), reads the
 * greeting, says EHLO (HELO on 500/502), starts TLS as the mode asks, authenticates when given
 * credentials (PLAIN or LOGIN, only under TLS), and then delivers messages one after another on
 * the same connection: MAIL (with SIZE, BODY=8BITMIME, SMTPUTF8 as needed and offered), RCPT for
 * each recipient and DATA, pipelined when the server offers PIPELINING, the message streamed from
 * a file descriptor in bounded chunks. Every recipient gets a final result: the server's reply
 * that decided it, or a local one (code 0, temporary) saying why the connection failed. Every
 * wait is bounded by the RFC 5321 §4.5.3.2 timeouts; everything read from the server is bounded.
 *
 * Callbacks never run inside an smtpout_* call: they come from the event loop, and inside them
 * the caller may call smtpout_send, smtpout_quit or smtpout_free on the object. Writes may raise
 * SIGPIPE when a server goes away: the process must ignore it (ternd does). */
#ifndef TERN_RELAY_SMTPOUT_H
#define TERN_RELAY_SMTPOUT_H

#include "tern/client.h"

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SMTPOUT_MAX_RCPTS 1000 /* recipients of one smtpout_send: the caller splits bigger ones */
#define SMTPOUT_MAX_ADDR 1000  /* octets of one address (RFC 5321 allows 256) */

enum smtpout_tls {
    SMTPOUT_TLS_NONE,           /* never STARTTLS */
    SMTPOUT_TLS_MAY,            /* STARTTLS when offered, certificate not required to verify */
    SMTPOUT_TLS_ENCRYPT,        /* STARTTLS required, certificate not required to verify */
    SMTPOUT_TLS_VERIFY,         /* STARTTLS required, chain and host name verified */
    SMTPOUT_TLS_WRAPPER,        /* implicit TLS from the first byte (port 465), not verified */
    SMTPOUT_TLS_WRAPPER_VERIFY, /* implicit TLS, chain and host name verified */
};

/* Timeouts in seconds; 0 takes the default (RFC 5321 §4.5.3.2 where it names one). */
struct smtpout_opts {
    const char *helo;               /* our host name for EHLO/HELO */
    const char *host;               /* the peer's name: SNI, certificate check, messages */
    enum smtpout_tls tls;           /* what TLS to use */
    SSL_CTX *ssl_ctx;               /* client context (smtpout_ssl_ctx_new); smtpout takes a
                                     * reference, so the caller may free its own at any time */
    const char *user, *password;    /* AUTH PLAIN or LOGIN, only under TLS; NULL: no AUTH */
    int connect_timeout;            /* TCP connect, default 30 */
    int greeting_timeout;           /* the 220 greeting, default 300 */
    int command_timeout;            /* EHLO, STARTTLS and its handshake, AUTH, MAIL, RCPT, RSET:
                                     * default 300 */
    int data_init_timeout;          /* DATA until 354, default 120 */
    int data_timeout;               /* each block of message data written, default 180 */
    int dot_timeout;                /* end of data until the final reply, default 600 */
    int quit_timeout;               /* QUIT until 221 (or the close), default 10 */
    tern_transcript_fn *transcript; /* every line sent and received, AUTH masked, or NULL;
                                     * it must not call smtpout functions */
    void *transcript_arg;
};

/* A result. code 0 is a local, temporary failure (the connection failed, the message file
 * could not be read, ...): text says why. A few permanent local decisions carry the code a
 * server would have sent (552 5.3.4 too big for the server's SIZE, 550 5.6.7 SMTPUTF8 needed
 * and not offered, 553 an address that cannot be sent), with local set. text is one line
 * without control characters (the server's lines joined with spaces), cut at 511 octets. */
struct smtpout_reply {
    int code;
    char enh[16];      /* RFC 3463 code, "" when the server gave none */
    char text[512];    /* the server's text without code and enh, or the local reason */
    enum tern_cmd cmd; /* what it answers: TERN_CMD_RCPT, _MAIL, _DATA, _DATA_END, ... */
    bool local;        /* made by smtpout, not sent by the server */
};

/* 2 delivered, 4 temporary failure (try again later), 5 permanent failure. */
static inline int smtpout_class(const struct smtpout_reply *r)
{
    return r->code >= 200 && r->code < 600 ? r->code / 100 : 4;
}

/* Whether the message holds 8-bit octets decides BODY=8BITMIME, said only to a server offering
 * 8BITMIME; to one that does not, the message goes as it is (no MIME conversion). */
enum smtpout_body {
    SMTPOUT_BODY_SCAN, /* unknown: one pass of pread over the file, on the loop, when the
                        * server offers 8BITMIME (the caller who knows saves it) */
    SMTPOUT_BODY_7BIT, /* known to be 7-bit */
    SMTPOUT_BODY_8BIT, /* known to hold 8-bit octets */
};

struct smtpout_msg {
    const char *from;         /* "" for the null reverse-path */
    const char *const *rcpts; /* nrcpts addresses, 1..SMTPOUT_MAX_RCPTS */
    size_t nrcpts;
    int fd;          /* the message file, read with pread; smtpout keeps a dup */
    uint64_t offset; /* where the message begins in it (0, or after a Return-Path: line) */
    uint64_t size;   /* octets from offset to the end (0: taken from fstat) */
    bool smtputf8;   /* the message needs SMTPUTF8 (also assumed for non-ASCII addresses) */
    enum smtpout_body body;
};

/* What TLS the connection has, for logs and the audit log. */
struct smtpout_tls_info {
    bool on;                /* the connection is encrypted */
    bool verified;          /* the chain and the host name verified */
    bool failed;            /* a handshake was tried and failed (the caller may retry in clear) */
    char protocol[32];      /* "TLSv1.3" */
    char cipher[64];        /* "TLS_AES_256_GCM_SHA384" */
    char verify_error[128]; /* why not verified, "" when verified */
};

struct smtpout_stats {
    uint64_t messages;   /* transactions whose final dot got a 2xx */
    uint64_t octets;     /* message octets sent (after dot-stuffing) */
    size_t max_buffered; /* the most output ever waiting in the bufferevents, in octets */
};

struct smtpout;

/* ready: connected, greeted, EHLO/TLS/AUTH done (err NULL); or failed (err set, s is already
 * unusable: call smtpout_free). Called once. */
typedef void smtpout_ready_fn(void *arg, struct smtpout *s, const struct smtpout_reply *err);
/* rcpts[i] is the final result for recipient i (2xx = accepted and the final dot accepted),
 * valid during the call. Called once per smtpout_send that returned 0. */
typedef void smtpout_done_fn(void *arg, struct smtpout *s, const struct smtpout_reply *rcpts,
                             size_t n);

/* A client context: TLS 1.2 at least, trusting ca_file (PEM), or the system store when NULL.
 * NULL with a reason when it cannot be made. */
SSL_CTX *smtpout_ssl_ctx_new(const char *ca_file, char *err, size_t errlen);

/* Starts connecting to sa (IPv4 or IPv6). The options' strings are copied. NULL only when out of
 * memory or without base, o or ready; any other failure, unusable options included, comes
 * through ready, never before this returns. */
struct smtpout *smtpout_connect(struct event_base *base, const struct sockaddr *sa, socklen_t len,
                                const struct smtpout_opts *o, smtpout_ready_fn *ready, void *arg);
/* Takes over a connected bufferevent (RFC 821 TURN: the peer that was the client now greets
 * us): smtpout owns bev from now on, even when NULL is returned (out of memory; bev is then
 * freed). A TLS bufferevent (bufferevent_openssl, socket or filter) counts as encrypted and no
 * STARTTLS is tried; the WRAPPER modes start TLS over a plain one at once. */
struct smtpout *smtpout_attach(struct event_base *base, struct bufferevent *bev,
                               const struct smtpout_opts *o, smtpout_ready_fn *ready, void *arg);

/* Starts delivering m (copied; the fd is dup'ed). 0: done will be called; -1: nothing started
 * and done will not be called (not idle, or a message without sender, recipients or file, or
 * more than SMTPOUT_MAX_RCPTS recipients, or out of resources). */
int smtpout_send(struct smtpout *s, const struct smtpout_msg *m, smtpout_done_fn *done, void *arg);
/* Ready for smtpout_send: greeted and not busy with a message nor broken. */
bool smtpout_idle(const struct smtpout *s);
/* QUIT when idle, waits (quit_timeout) for the 221 or the close, then frees itself; anything
 * else (a message in flight, a broken connection) is closed and freed at once. No callbacks. */
void smtpout_quit(struct smtpout *s);
/* Closes now, no QUIT, no callbacks. NULL is allowed. */
void smtpout_free(struct smtpout *s);

/* For logs: "mx.example.net[192.0.2.1]:25" ("host[unix]" for a local socket). */
const char *smtpout_peer(const struct smtpout *s);
const struct smtpout_tls_info *smtpout_tls(const struct smtpout *s);
/* What the server's last EHLO announced (all zero after HELO). */
const struct tern_caps *smtpout_caps(const struct smtpout *s);
void smtpout_stats(const struct smtpout *s, struct smtpout_stats *st);

#endif

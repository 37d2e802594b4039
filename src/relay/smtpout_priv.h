/* What the files of the outbound client share (smtpout.c: the object, its I/O and failures;
 * smtpout_reply.c: results, step names, timeouts; smtpout_tls.c: TLS; smtpout_setup.c: greeting,
 * EHLO, STARTTLS, AUTH; smtpout_txn.c: the mail transaction): the object, its states and the
 * moves between them. Nothing here is public. */
#ifndef TERN_RELAY_SMTPOUT_PRIV_H
#define TERN_RELAY_SMTPOUT_PRIV_H

#include "client/client.h"
#include "relay/smtpout.h"

#include <stdarg.h>

#define SMTPOUT_CHUNK 65536           /* message octets read and transformed at a time */
#define SMTPOUT_OUT_HIGH (256u << 10) /* message data queued ahead in the bufferevent, at most */
#define SMTPOUT_OUT_LOW (64u << 10)   /* refilled once the queue drops to this */
#define SMTPOUT_IN_HIGH (64u << 10)   /* server octets read ahead of the parser, at most */

enum smtpout_state {
    SO_CONNECTING, /* TCP connect under way */
    SO_HANDSHAKE,  /* TLS handshake (implicit TLS, or after the 220 to STARTTLS) */
    SO_SETUP,      /* greeting, EHLO/HELO, STARTTLS, AUTH: replies awaited */
    SO_READY,      /* idle: smtpout_send may start a message */
    SO_TXN,        /* MAIL, RCPT, DATA, RSET: replies awaited */
    SO_BODY,       /* streaming the message after 354 */
    SO_DOT,        /* the end of data sent, its reply awaited */
    SO_QUIT,       /* QUIT sent: waiting for 221 or the close, then free (or report) */
    SO_DEAD,       /* failed or closed: only smtpout_free remains */
};

/* The message being delivered. */
struct smtpout_txn {
    char *from;
    char **rcpts;
    size_t n;
    int fd;
    uint64_t size;
    bool eight;      /* BODY=8BITMIME goes with MAIL */
    bool body_known; /* eight came from the caller: no need to read the file for it */
    bool utf8;       /* SMTPUTF8 goes with MAIL */
    struct smtpout_reply *res;
    bool *final;    /* res[i] is decided */
    bool *accepted; /* RCPT i got a positive reply */
    bool *queued;   /* RCPT i is (to be) sent: its address could go on a command line */
    size_t naccepted;
    size_t next_send;  /* lock-step: the next recipient to send RCPT for */
    size_t next_reply; /* the recipient the next RCPT reply answers */
    bool pipelined;
    bool mail_ok;  /* MAIL got 250 */
    bool aborting; /* 354 with no recipient: an empty message ends it, its reply means nothing */
    struct smtpc_stuff stuff;
    uint64_t start; /* where the message begins in the file */
    uint64_t off;   /* where the next octets to send are */
    char *buf;      /* SMTPOUT_CHUNK, while streaming */
    smtpout_done_fn *done;
    void *arg;
};

struct smtpout {
    struct event_base *base;
    struct bufferevent *bev; /* the top one: a TLS filter once TLS is on */
    struct event *timer;     /* the deadline of the current wait */
    struct event *notify;    /* runs callbacks and deferred frees from the loop */
    struct smtpc *core;
    enum smtpout_state state;
    struct smtpout_opts o; /* strings point into the copies below */
    char *helo, *host, *user, *password;
    SSL_CTX *ctx;      /* our reference */
    char peer[320];    /* "host[ip]:port" */
    char namaddr[300]; /* "host[ip]", for messages */
    struct tern_caps caps;
    struct smtpout_tls_info tls;
    struct smtpout_stats stats;
    bool after_starttls; /* the 220 to STARTTLS came: the handshake is that one */
    bool spent;          /* the connection is alive but must not take another message */
    bool quit_reports;   /* SO_QUIT after a refusal: report err, do not free */
    int auth_step;       /* AUTH: responses sent after the first line */
    bool auth_login;     /* AUTH LOGIN (else PLAIN) */
    bool auth_cancelled; /* "*" was sent to an AUTH challenge we cannot answer */
    bool in_input;       /* so_process_input is running */
    bool pumping;        /* so_txn_pump is running */
    /* pending notifications, delivered by notify_cb */
    bool want_ready, want_done, want_free;
    bool ready_delivered;     /* ready was called (or never will be) */
    struct smtpout_reply err; /* for ready */
    struct smtpout_txn *txn;
    smtpout_ready_fn *ready;
    void *ready_arg;
};

/* ---- smtpout.c and smtpout_reply.c ---- */
/* Moves the core's output into the bufferevent. secret: it holds AUTH data, added by reference
 * and wiped once sent. */
void so_flush(struct smtpout *s, bool secret);
/* Queues a command line in the core; -1 after failing the connection (it cannot be sent). */
int so_command(struct smtpout *s, enum tern_cmd cmd, const char *line, bool secret);
/* Arms the deadline for the reply the core awaits next (or clears it when none is). */
void so_arm_reply(struct smtpout *s);
void so_arm(struct smtpout *s, int seconds);
/* The connection failed (why, with an RFC 3463 code): every outstanding result gets it (code 0,
 * temporary), the object is dead, and the callback that is due is scheduled. Safe anywhere. */
void so_fail(struct smtpout *s, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with a reply the server sent (421: it is closing the connection). */
void so_fail_reply(struct smtpout *s, const struct smtpout_reply *r);
/* Setup is over: ready(NULL) is scheduled. */
void so_ready(struct smtpout *s);
/* Setup failed with r: QUIT is sent, and ready(err) follows its 221 or the close. */
void so_refused(struct smtpout *s, const struct smtpout_reply *r);
void so_notify(struct smtpout *s);
/* "while sending RCPT TO", for messages about the step that failed, and the command a failure
 * then answers in a result. */
const char *so_stage(const struct smtpout *s);
enum tern_cmd so_stage_cmd(const struct smtpout *s);
/* Timeouts with their defaults. */
int so_timeout_for(const struct smtpout *s, enum tern_cmd cmd);
/* r as a result: the server's reply flattened to one line. */
void so_reply_of(struct smtpout_reply *out, const struct tern_reply *r);
void so_local(struct smtpout_reply *out, int code, const char *enh, enum tern_cmd cmd,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void so_vlocal(struct smtpout_reply *out, int code, const char *enh, enum tern_cmd cmd,
               const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
/* Reads the replies that have arrived and dispatches them, in order. */
void so_process_input(struct smtpout *s);
/* Callbacks and watermarks on s->bev (and its underlying bufferevent). */
void so_bev_setup(struct smtpout *s);
/* Octets of output waiting in the top bufferevent (and its underlying one); updates the stats. */
size_t so_out_pending(struct smtpout *s);

/* ---- smtpout_tls.c ---- */
/* Wraps the connection in a client TLS filter; the handshake's end comes to so_tls_event. */
int so_tls_start(struct smtpout *s);
/* A bufferevent event while SO_HANDSHAKE. */
void so_tls_event(struct smtpout *s, short what);
/* Fills s->tls from an established session. */
void so_tls_record(struct smtpout *s, SSL *ssl);
bool so_tls_verify_mode(const struct smtpout *s);

/* ---- smtpout_setup.c ---- */
/* Expects the greeting (after connect, implicit TLS or attach). */
void so_setup_begin(struct smtpout *s);
/* After the STARTTLS handshake: EHLO again. */
void so_setup_after_tls(struct smtpout *s);
/* A reply during SO_SETUP. */
void so_setup_reply(struct smtpout *s, const struct tern_reply *r);

/* ---- smtpout_txn.c ---- */
/* A reply during SO_TXN or SO_DOT. */
void so_txn_reply(struct smtpout *s, const struct tern_reply *r);
/* Refills the output with message data while there is room (SO_BODY). */
void so_txn_pump(struct smtpout *s);
/* Fills every undecided result with a local failure (code, enh, why). */
void so_txn_fail_all(struct smtpout *s, const struct smtpout_reply *why);
void so_txn_free(struct smtpout_txn *t);

#endif

/* What conn.c and its satellites (conn_store.c: the store requests; conn_term.c: terminals;
 * conn_auth.c: SASL steps; conn_audit.c: the audit records of a session) share: the
 * connection, the jobs it hands to the worker pool, and the plumbing that suspends a session
 * while a job runs and resumes it after. */
#ifndef TERN_NET_CONN_PRIV_H
#define TERN_NET_CONN_PRIV_H

#include <event2/event.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <time.h>

#include "auth/sasl.h"
#include "net/server.h"
#include "smtp/session.h"
#include "store/deliver.h"
#include "work/pool.h"

#define CONN_IN_HIGH (256 * 1024)   /* stop reading while this much input is unprocessed */
#define CONN_OUT_HIGH (1024 * 1024) /* stop processing while the client is not reading */

struct conn {
    struct server *srv;
    struct conn *prev, *next;
    struct bufferevent *bev;
    struct conf *conf;
    struct smtp_env env;
    struct smtp_session *s; /* NULL until an smtps handshake is done */
    enum conf_listener_kind kind;
    int family;
    unsigned char addr[16];
    char ip[INET6_ADDRSTRLEN];
    int port;
    char tls_info[160];
    struct maildir_msg *msg;
    struct spool_msg *spool;
    struct sasl_conn *sasl;
    bool busy;            /* a job (commit or SASL step) is on the worker pool */
    bool dead;            /* the socket is gone: free when the job comes back */
    bool handshaking;     /* TLS handshake under way */
    bool turned;          /* TURN handed the socket to the queue manager: free the rest */
    struct event *hold;   /* delays the reply to a failed AUTH */
    struct event *linger; /* waits for the last reply to leave before closing */
    int linger_ticks;
    struct smtp_result held; /* that reply */
    time_t started;
    /* for the audit log (conn_audit.c) */
    char session[40];      /* the id every record of this connection carries */
    bool connect_recorded; /* a disconnect record only follows a connect record */
    struct timespec began; /* monotonic, for duration_ms */
    uint64_t bytes_out;
    json_t *rcpts;      /* recipients accepted in the transaction under way */
    EVP_MD_CTX *sha;    /* SHA-256 of the message being stored, as stored */
    uint64_t msg_bytes; /* its size so far */
    char spool_id[96];  /* its queue entry, when it has one */
    char msg_id[96];    /* its id (Received:, the 250, the Maildir name) */
    /* terminals (conn_term.c) */
    struct watcher *watcher; /* after XWATCH: this connection is a terminal */
    char *term;              /* the message as stored, for its terminals (SEND/SOML/SAML) */
    size_t term_len, term_cap;
    bool term_on;   /* the message has terminals: term collects it */
    bool term_over; /* it outgrew the terminal limit: no terminal gets it */
};

enum job_kind { JOB_BEGIN, JOB_COMMIT, JOB_AUTH };

struct job {
    struct conn *c;
    enum job_kind kind;
    enum deliver_status status;      /* COMMIT */
    char which[TABLES_ADDR_MAX + 1]; /* COMMIT: the full mailbox */
    const struct smtp_txn *txn;      /* COMMIT: read-only while the request is pending */
    char err[256];
    char *in;  /* AUTH: the client's response, or NULL */
    char *out; /* AUTH: the challenge */
    enum sasl_status st;
    char user[TABLES_ADDR_MAX + 1];
    json_t *rec;             /* COMMIT: the message record, appended and synced before the 250 */
    struct maildir_msg *msg; /* BEGIN: the files opened on the worker, NULL if none */
    struct spool_msg *spool;
    char id[96];       /* BEGIN: the message id */
    bool audit_failed; /* COMMIT: stored, but the record could not be made durable */
    char (*boxes)[TABLES_ADDR_MAX + 1]; /* COMMIT: the mailboxes that get it (SOML: without
                                           the users whose terminal took it), a copy */
    const char **ptrs;                  /* the same as pointers (maildir_keep, the record) */
    size_t nboxes;
    size_t shown; /* COMMIT: the users whose terminals took it before the commit */
};

void conn_fail_result(struct smtp_result *r, int code, const char *enh, const char *text);
/* Hands a job to the pool; the connection waits (reads nothing) until it is done. */
bool conn_submit(struct conn *c, struct job *j, pool_fn run, pool_fn done);
/* A job is back on the loop: false when the client has gone (c is freed then). */
bool conn_job_back(struct conn *c);
void conn_resume(struct conn *c, const struct smtp_result *r);
/* Moves the session on (input, requests, output, closing) after something outside it changed
 * it. Not while a job runs. */
void conn_poke(struct conn *c);

/* conn_auth.c: starts or continues a SASL exchange; false when a job went to the pool. */
bool conn_auth_request(struct conn *c, const struct smtp_request *q, struct smtp_result *r);

/* conn_audit.c: the session's audit records (see doc/tern.1 for their fields). Each is a no-op
 * when ternd keeps no audit log. */
void conn_audit_event(void *ctx, const struct smtp_event *ev); /* smtp_env.event */
void conn_audit_connect(struct conn *c);
void conn_audit_disconnect(struct conn *c);
void conn_audit_tls(struct conn *c);
void conn_audit_tls_fail(struct conn *c, const char *error);
void conn_audit_limit(struct conn *c, const char *what, const char *detail);
/* On the loop, when the store commits: the message record's fields (NULL without a log); the
 * message goes to the n mailboxes boxes. */
json_t *conn_audit_message(struct conn *c, const struct smtp_txn *t, const char *const *boxes,
                           size_t n, const char *id);
/* A terminal delivery: the message id went to user's terminals (watchers took it, dropped had
 * no room). */
void conn_audit_terminal(struct conn *c, const struct smtp_txn *t, const char *user,
                         size_t watchers, size_t dropped);
/* On the worker: appends the message record (stolen) before the message is made durable, makes
 * it durable once the message is (before the 250), or follows it with a message_failed record
 * when the commit failed (why: "quota" or "store"). */
int conn_audit_append(struct conn *c, json_t *rec, uint64_t *seq, char *err, size_t errlen);
int conn_audit_sync(struct conn *c, uint64_t seq, char *err, size_t errlen);
void conn_audit_failed(struct conn *c, const char *why, const char *detail);

/* conn_store.c: performs a STORE request; false when a job went to the pool. */
bool conn_store_request(struct conn *c, const struct smtp_request *q, struct smtp_result *r);

/* conn_term.c: terminals. smtp_env.terminal_live; XWATCH (the registration) and its end; the
 * copy of the message being received that its terminals get. */
bool conn_terminal_live(void *ctx, const char *mailbox);
void conn_watch_start(struct conn *c, struct smtp_result *r);
void conn_watch_stop(struct conn *c, const char *why);
void conn_term_begin(struct conn *c, const struct smtp_txn *t);
void conn_term_append(struct conn *c, const char *data, size_t len);
/* Writes the message to the live terminals of each of t's terminal users (one audit record
 * each); returns how many users' terminals took it. With boxes (SOML), those users are taken
 * out of boxes[0..*nboxes), which keeps its order. */
size_t conn_term_deliver(struct conn *c, const struct smtp_txn *t,
                         char (*boxes)[TABLES_ADDR_MAX + 1], size_t *nboxes);
void conn_term_release(struct conn *c);

/* conn_relay.c: the session's ties to the outbound queue (relay domains, ETRN, TURN). */
bool conn_relay_domain(void *ctx, const char *domain);
int conn_etrn(void *ctx, const char *node, bool subdomains, char *text, size_t textlen);
void conn_turn(struct conn *c, const struct smtp_request *q);

#endif

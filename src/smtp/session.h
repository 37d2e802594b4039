/* The SMTP server protocol core: one struct smtp_session per connection, a pure state machine.
 * It is fed the client's bytes, produces reply bytes, and asks for slow or effectful work
 * (storing a message) as requests the caller performs and resumes. It never touches a socket,
 * a file, a clock or a thread; while a request is pending it consumes no more input, which is
 * what keeps PIPELINING replies in order. */
#ifndef TERN_SMTP_SESSION_H
#define TERN_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "policy/tables.h"
#include "smtp/grammar.h"

enum smtp_disclose { SMTP_DISCLOSE_NONE, SMTP_DISCLOSE_AUTHENTICATED, SMTP_DISCLOSE_ALL };

/* Who may reach a user's terminal (SEND, and the terminal half of SOML and SAML). */
enum smtp_terminal_allow {
    SMTP_TERMINAL_ALL,           /* any client that may mail the user */
    SMTP_TERMINAL_AUTHENTICATED, /* authenticated clients: SEND from others gets 530, their SOML
                                    and SAML go to the mailbox only */
    SMTP_TERMINAL_NONE,          /* nobody: SEND 502 (not offered), SOML and SAML are MAIL */
};

/* What the core tells env->event, for the audit log: the final answer to a command that matters
 * (HELO EHLO MAIL SEND SOML SAML RCPT DATA BDAT AUTH ETRN TURN XWATCH), or a limit that closed the
 * session. The strings are valid during the call only; arg came from the network (hostile,
 * unterminated). */
struct smtp_event {
    bool limit;       /* a limit, not a command: verb names it (bad_commands, junk_commands,
                         auth_failures) and text says what happened */
    const char *verb; /* "MAIL", ...: for BDAT only the last chunk's answer (or a refusal) */
    const char *arg;  /* HELO/EHLO: the name; MAIL/RCPT: the address (as parsed when it
                         parsed, else the whole argument); AUTH: the user named or proved;
                         DATA/BDAT: the queue id once the message is open; ETRN: the node as
                         given ("example.com", "@example.com", "#queue"); TURN: the domains
                         handed over ("a.example,b.example"), "" when refused; XWATCH:
                         the user who would watch ("" before AUTH) */
    size_t arg_len;
    const char *mech; /* AUTH: the mechanism */
    int code;
    const char *enh;  /* "" without one */
    const char *rule; /* what decided, a short name: "ok", "syntax", "sequence", "relay",
                         "forward" (RCPT 251), "relay_domain", ... */
    const char *text; /* the reply text */
};

/* What the core needs to know about its world. Owned by the caller; must outlive the session. */
struct smtp_env {
    const char *hostname;  /* our name, for the greeting and Received: */
    const char *peer_ip;   /* client address as text, e.g. "127.0.0.1" or "::1" */
    const char *peer_name; /* verified reverse DNS name, or NULL */
    bool submission;       /* the submission listener */
    bool refuse;           /* deny list: greet 554, then 503 to all but QUIT */
    bool over_limit;       /* connection limits: greet 421 and close */
    uint64_t max_message_size;
    size_t max_recipients;
    size_t max_bad_commands;
    size_t max_junk_commands;
    enum smtp_disclose vrfy, expn;
    const struct tables *tables;
    bool tls_available;     /* a certificate is loaded: STARTTLS can be offered */
    bool tls_active;        /* implicit TLS (smtps): TLS from the first byte */
    const char *tls_info;   /* with tls_active: "TLSv1.3:CIPHER" for Received: */
    const char *auth_mechs; /* "PLAIN LOGIN SCRAM-SHA-256", or NULL: no AUTH */
    bool auth_cleartext_ok; /* AUTH allowed without TLS (loopback, by configuration) */
    bool check_from;        /* an authenticated user's From: header must be its own too */
    bool sender_header;     /* mail a member sends as a shared mailbox gets Sender: <member> */
    /* Is mech one of auth_mechs? */
    bool (*auth_mech_ok)(void *ctx, const char *mech, size_t len);
    /* Is there room to accept mail (statvfs above the floor)? NULL means always. */
    bool (*storage_ok)(void *ctx);
    /* Is mailbox (user@domain) at or over its quota? NULL means never. */
    bool (*mailbox_full)(void *ctx, const char *mailbox);
    /* Is domain (its ASCII letters lowercased) one tern holds and relays mail for, like a backup MX
     * for a customer? Mail to it is taken from any client on any listener and queued (txn foreign);
     * ETRN and TURN hand its queue over. NULL: there are none. */
    bool (*relay_domain)(void *ctx, const char *domain);
    /* ETRN (RFC 1985): start delivering the queue for node (a relay domain, lowercased; with
     * subdomains, also the mail for any name under it). Returns the reply code: 250 started,
     * 251 nothing waiting, 252/253 pending messages started, 458 cannot queue now, 459 not
     * allowed; text (textlen bytes, zeroed) may say more, "" takes the RFC's words. NULL: ETRN
     * is not offered. Never offered on the submission listener. */
    int (*etrn)(void *ctx, const char *node, bool subdomains, char *text, size_t textlen);
    /* Told of every answer and limit that belongs in the audit log (struct smtp_event). NULL:
     * nobody listens. Must not call back into the session. */
    void (*event)(void *ctx, const struct smtp_event *ev);
    /* Terminals (RFC 821 3.4: SEND, SOML, SAML): who may send to them, and the largest message
     * a terminal takes (0: no limit of its own). */
    enum smtp_terminal_allow terminal_allow;
    uint64_t terminal_max_size;
    /* Does mailbox (a local user, lowercased user@domain) have a live terminal, a `tern watch`
     * session? NULL: nobody ever has (SEND gets 450, SOML and SAML go to the mailbox), and
     * XWATCH is not offered. */
    bool (*terminal_live)(void *ctx, const char *mailbox);
    /* Current time, for the Received: header. NULL means 0 (tests). */
    time_t (*now)(void *ctx);
    void *ctx;
};

enum smtp_txn_kind { SMTP_TXN_MAIL, SMTP_TXN_SEND, SMTP_TXN_SOML, SMTP_TXN_SAML };

/* The envelope of the transaction in progress, for the store. */
struct smtp_txn {
    enum smtp_txn_kind kind;
    char from[SMTP_PATH_MAX + 1]; /* reverse-path mailbox, "" for <> */
    bool smtputf8;
    bool body_8bit;
    uint64_t declared_size;                 /* SIZE= or 0 */
    size_t nrcpts;                          /* accepted RCPT commands */
    char first_rcpt[SMTP_PATH_MAX + 1];     /* for Received: "for <...>" when there is one */
    char (*mailboxes)[TABLES_ADDR_MAX + 1]; /* distinct local mailboxes, user@domain */
    size_t nmailboxes;
    /* For the outbound queue, each address once: an authenticated user's recipients in other
     * domains, recipients in relay domains, and the forward addresses of forwarded users. */
    char (*foreign)[SMTP_PATH_MAX + 1];
    size_t nforeign;
    char auth_user[TABLES_ADDR_MAX + 1]; /* who authenticated, "" if nobody */
    /* SEND/SOML/SAML: the local users (lowercased user@domain, each once) whose live terminals
     * get the message, as decided at RCPT. SEND: they alone (mailboxes is empty). SAML: their
     * mailboxes get it too. SOML: each is in mailboxes as well, as the fallback the caller
     * stores when no terminal takes the message (the others go to the mailbox only). Emptied
     * for SOML and SAML when the message is larger than env->terminal_max_size. */
    char (*terminals)[TABLES_ADDR_MAX + 1];
    size_t nterminals;
};

enum smtp_req_type {
    SMTP_REQ_STORE_BEGIN = 1, /* open a message for txn; result gives the id */
    SMTP_REQ_STORE_APPEND,    /* add data/len (a bounded chunk) */
    SMTP_REQ_STORE_COMMIT,    /* make it durable in every mailbox; then 250 */
    SMTP_REQ_STORE_ABORT,     /* discard it; the result is ignored */
    SMTP_REQ_STARTTLS,        /* send the pending 220, drop unread input, handshake; resume
                                 with ok and tls_info, or close the connection on failure */
    SMTP_REQ_AUTH,            /* one SASL step: see auth_* fields */
    SMTP_REQ_WATCH,           /* XWATCH: make the connection a terminal of the authenticated
                                 user. Resume ok: the 250 follows, and from then on the caller
                                 writes terminal messages between the core's replies while the
                                 core takes only NOOP and QUIT; or not ok with the refusal. */
    SMTP_REQ_TURN,            /* RFC 821 TURN: the 250 is pending; send it, then the connection
                                 is the caller's: act as the client, deliver the queued mail
                                 for turn_domains to the peer (its next bytes are its greeting,
                                 left unread), then close. The core takes no more input; on
                                 resume (ok or not) it only wants to close. */
};

struct smtp_request {
    enum smtp_req_type type;
    const struct smtp_txn *txn;
    const char *data; /* APPEND only; valid until resume */
    size_t len;
    /* AUTH: mech is set on the first step (with auth_data NULL when there was no initial
     * response, "" for "="), NULL afterwards; auth_cancel when the client sent "*". */
    const char *mech;
    const char *auth_data;
    bool auth_cancel;
    /* TURN: the relay domains the authenticated user is entitled to (lowercased); valid until
     * the session is freed. NULL and 0 for every other request. */
    const char *const *turn_domains;
    size_t nturn;
};

/* The outcome of a request. On failure, code/enh/text is the reply to give (e.g. 451 4.3.0);
 * code 0 lets the core choose 451 4.3.0. */
struct smtp_result {
    bool ok;
    int code;
    char enh[12];
    char text[200];
    char id[96];                    /* BEGIN: the message id, shown in Received: and the 250 */
    bool more;                      /* AUTH: send 334 challenge, read another response */
    char challenge[4096];           /* AUTH: base64, without "334 " */
    char user[TABLES_ADDR_MAX + 1]; /* AUTH: the authenticated address; on failure the name
                                       the client gave, for the audit log only */
    char tls_info[160];             /* STARTTLS ok: "TLSv1.3:CIPHER" */
    size_t terminals;               /* COMMIT ok: the terminals that took the message (SEND:
                                       at least one; none is a failure, 450 4.2.1) */
};

enum smtp_close {
    SMTP_OPEN = 0,
    SMTP_CLOSE_AFTER_OUTPUT, /* QUIT, 421: flush the replies, then close */
};

struct smtp_session;

struct smtp_session *smtp_session_new(const struct smtp_env *env);
void smtp_session_free(struct smtp_session *s);

/* Consumes client bytes; returns how many it took. It stops early when a request is pending or
 * the session wants to close; the caller keeps the rest and feeds it again after resume. After
 * TURN it takes nothing more: what follows is the peer speaking as the server. */
size_t smtp_session_feed(struct smtp_session *s, const char *buf, size_t len);

/* Replies produced so far. */
size_t smtp_session_pending_output(const struct smtp_session *s, const char **out);
void smtp_session_output_sent(struct smtp_session *s, size_t n);

/* The next request, or NULL. The same request is returned until it is resumed. */
const struct smtp_request *smtp_session_request(struct smtp_session *s);
void smtp_session_resume(struct smtp_session *s, const struct smtp_result *r);

enum smtp_close smtp_session_wants_close(const struct smtp_session *s);

/* Receiving message data (after 354 or inside BDAT): a drain should let it finish. */
bool smtp_session_in_data(const struct smtp_session *s);

/* The caller's timer expired: 421 4.4.2 and close. */
void smtp_session_timeout(struct smtp_session *s);
/* The server is going down: 421 4.3.2 and close (the caller waits for in_data to end first). */
void smtp_session_shutdown(struct smtp_session *s);

/* The first Message-ID: field body of the message being received (hostile text), "" if none
 * yet. Valid until the next feed. */
const char *smtp_session_message_id(const struct smtp_session *s);

/* After XWATCH: the connection is a terminal, taking only NOOP and QUIT (no idle timeout). */
bool smtp_session_watching(const struct smtp_session *s);
/* The caller ends a watch (the user can no longer have a terminal): 421 4.7.0 with why, then
 * close. Nothing when not watching. */
void smtp_session_end_watch(struct smtp_session *s, const char *why);

/* Authenticated user, "" if none. */
const char *smtp_session_auth_user(const struct smtp_session *s);

/* Counters for logs. */
struct smtp_stats {
    size_t messages;   /* accepted */
    size_t rejected;   /* 4xx/5xx replies */
    uint64_t bytes_in; /* fed */
};
void smtp_session_stats(const struct smtp_session *s, struct smtp_stats *out);

#endif

/* The session core's private state, shared by session.c (input, dispatch, simple commands),
 * txn.c (MAIL/RCPT/DATA/BDAT and the store requests), route.c (where a recipient goes: local
 * mailboxes, terminals, forward addresses, relay domains), sendas.c (who may send as whom,
 * Sender:), info.c (HELP/VRFY/EXPN), turn.c (ETRN and TURN) and terminal.c (the [terminal]
 * policy of SEND/SOML/SAML, and XWATCH). */
#ifndef TERN_SMTP_SESSION_PRIV_H
#define TERN_SMTP_SESSION_PRIV_H

#include "smtp/data.h"
#include "smtp/reply.h"
#include "smtp/session.h"

#define SMTP_CMD_LINE_MAX 512       /* octets including CRLF, RFC 5321 4.5.3.1.4 */
#define SMTP_AUTH_LINE_MAX 12288    /* AUTH lines and responses, RFC 4954 4 */
#define SMTP_CHUNK 65536            /* message bytes handed to the store per APPEND */
#define SMTP_OUT_HIGH 65536         /* stop taking input while this much output is unsent */
#define SMTP_TXN_MAILBOXES_MAX 4096 /* mailbox entries (before dedup) in one transaction */
#define SMTP_TXN_FOREIGN_MAX 4096   /* distinct queued addresses in one transaction */
#define SMTP_SMALL_EXPANSION 8      /* mailboxes a lookup tries on the stack first */
#define SMTP_SENDER_RESERVE 400     /* chunk room kept for a Sender: field while in the header */

enum smtp_state {
    ST_REFUSED, /* greeted 554: only QUIT */
    ST_INIT,    /* greeted 220, waiting for HELO/EHLO */
    ST_READY,   /* no transaction */
    ST_MAIL,    /* MAIL accepted, taking RCPT / DATA / BDAT */
    ST_DATA,    /* after 354: message text */
    ST_BDAT,    /* inside a BDAT chunk */
    ST_AUTH,    /* after 334: the next line is an AUTH response */
    ST_WATCH,   /* after XWATCH: a terminal; only NOOP and QUIT */
};

/* What to do when the pending request is resumed. */
enum smtp_after {
    AFTER_NONE,
    AFTER_BEGIN_DATA, /* 354 or failure */
    AFTER_BEGIN_BDAT, /* read the chunk */
    AFTER_APPEND,     /* continue taking data */
    AFTER_FINISH,     /* last APPEND before COMMIT/ABORT */
    AFTER_COMMIT,     /* 250 or failure */
    AFTER_ABORT,      /* give the saved failure reply */
    AFTER_STARTTLS,   /* the handshake is done: start over */
    AFTER_AUTH,       /* 334, 235 or the failure */
    AFTER_TURN,       /* the caller is done with the connection: close */
    AFTER_WATCH,      /* the connection is a terminal now, or XWATCH's refusal */
};

struct smtp_session {
    const struct smtp_env *env;
    struct smtp_out out;
    enum smtp_state state;
    enum smtp_close close;
    bool esmtp; /* EHLO given: enhanced status codes and parameters */
    char helo[SMTP_DOMAIN_MAX + 1];

    char line[SMTP_CMD_LINE_MAX + 1];
    char *bigline; /* SMTP_AUTH_LINE_MAX + 1, only while an AUTH line is longer than 512 */
    size_t line_len;
    bool line_overflow;

    bool tls;
    char tls_info[160];
    bool authenticated;
    char auth_user[TABLES_ADDR_MAX + 1];
    size_t auth_failures;
    char auth_mech[32];
    char *auth_resp; /* the response being stepped (owned until resume) */

    /* the transaction */
    struct smtp_txn txn;
    size_t mailboxes_cap;
    size_t foreign_cap;
    size_t terminals_cap;
    size_t rcpt_attempts;
    bool bdat_used;  /* BDAT started: DATA is out of sequence */
    bool store_open; /* BEGIN succeeded and no COMMIT/ABORT yet */
    bool store_failed;
    struct smtp_result failure; /* the reply for a failed store */
    const char *fail_rule;      /* what refused the message at its end (for the audit log) */
    char msgid[96];

    /* message data */
    struct smtp_data data;
    char *chunk; /* SMTP_CHUNK bytes, allocated while a message is open */
    size_t chunk_len;
    uint64_t bdat_left;
    bool bdat_last;
    bool bdat_discard;         /* consume the chunk, then 503 */
    bool sender_added;         /* sendas_header_end wrote a Sender: field */
    enum smtp_state bdat_prev; /* the state to return to after a discarded chunk */

    /* the pending request */
    struct smtp_request req;
    bool req_pending;
    enum smtp_after after;

    /* the command whose final answer goes to env->event (NULL: none) and what decided it */
    const char *ev_verb;
    const char *ev_rule;
    char ev_arg[SMTP_CMD_LINE_MAX + 1];
    size_t ev_arg_len;
    char ev_user[TABLES_ADDR_MAX + 1]; /* AUTH: who was named, even when it failed */

    /* TURN: the roles are reversed; no more input is ours. The domains the request names. */
    bool turned;
    char turn_buf[TABLES_TURN_LEN];
    const char *turn_ptrs[TABLES_TURN_MAX];

    size_t bad;
    size_t junk;
    struct smtp_stats stats;
};

/* session.c */
void session_reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void session_reply_lines(struct smtp_session *s, int code, const char *enh,
                         const char *const *lines, size_t n);
void session_request(struct smtp_session *s, enum smtp_req_type type, enum smtp_after after);
/* Names what decides the answer about to be given to the current command (a string literal). */
static inline void session_rule(struct smtp_session *s, const char *rule)
{
    s->ev_rule = rule;
}
/* Replaces the argument the event will carry (e.g. with the address as parsed). */
void session_ev_arg(struct smtp_session *s, const char *arg, size_t len);
/* Reports a limit that ends the session (struct smtp_event, limit = true). */
void session_limit(struct smtp_session *s, const char *what, const char *text);
void session_bad(struct smtp_session *s);
bool session_junk(struct smtp_session *s);

/* txn.c */
void txn_mail(struct smtp_session *s, enum smtp_txn_kind kind, const char *arg, size_t len);
void txn_rcpt(struct smtp_session *s, const char *arg, size_t len);
void txn_data(struct smtp_session *s, const char *arg, size_t len);
void txn_bdat(struct smtp_session *s, const char *arg, size_t len);
void txn_reset(struct smtp_session *s);
size_t txn_feed_data(struct smtp_session *s, const char *buf, size_t len);
void txn_resume(struct smtp_session *s, const struct smtp_result *r);

/* terminal.c */
/* May this client reach terminals at all (policy, and a world that has them)? */
bool term_allowed(const struct smtp_session *s);
/* SEND/SOML/SAML FROM: the [terminal] policy's answer, before any other check of the
 * transaction; true when it answered (a refusal). */
bool term_mail_refused(struct smtp_session *s, enum smtp_txn_kind kind, uint64_t size);
/* At the end of a message, before its commit: a message too big for a terminal. SEND: true,
 * with the failure in f (552 5.3.4); SOML and SAML: the terminals are dropped (the mailbox gets
 * it). */
bool term_too_big(struct smtp_session *s, struct smtp_result *f);
/* Appends a user to the transaction's terminals; false when the bound is reached. */
bool term_add(struct smtp_session *s, const char *box);
/* Sorts the terminals and drops duplicates (at the start of the message). */
void term_dedup(struct smtp_session *s);
void term_xwatch(struct smtp_session *s, const char *arg, size_t len);
void term_resume(struct smtp_session *s, const struct smtp_result *r);

/* route.c */
/* Routes the recipient path (address addr, as formatted) past the checks txn_rcpt makes, and
 * gives the final answer to its RCPT. */
void route_rcpt(struct smtp_session *s, const struct smtp_path *path, const char *addr);
/* Is domain one env->relay_domain names? Any case; literals and over-long names never are. */
bool route_relay_domain(const struct smtp_session *s, const char *domain);

/* sendas.c */
/* Resolves local@domain into small first (almost every address is one mailbox) and only when it
 * expands further into a heap buffer, returned in *big for the caller to free. *boxes points at
 * whichever holds the result. */
enum tables_status txn_lookup(const struct smtp_session *s, const char *local, const char *domain,
                              char (*small)[TABLES_ADDR_MAX + 1], char (**big)[TABLES_ADDR_MAX + 1],
                              char (**boxes)[TABLES_ADDR_MAX + 1], size_t *n, char *fwd,
                              size_t fwdlen);
/* MAIL FROM: the null path or an address the authenticated user owns. */
bool sendas_owns_sender(const struct smtp_session *s, const struct smtp_path *p);
/* check_from: exactly one From: field, naming only addresses the user owns. */
bool sendas_owns_from(const struct smtp_session *s);
/* At the start of a message: ask the data scanner to stop where the header section ends. */
void sendas_arm(struct smtp_session *s);
/* Chunk room to keep free while a Sender: field may still be added. */
size_t sendas_reserve(const struct smtp_session *s);
/* At the end of the header section: add Sender: <user> to mail sent as a shared mailbox
 * (sender_header), unless the message has its own Sender: field. */
void sendas_header_end(struct smtp_session *s);

/* auth.c */
void auth_starttls(struct smtp_session *s, const char *arg, size_t len);
void auth_command(struct smtp_session *s, const char *arg, size_t len);
void auth_response(struct smtp_session *s, const char *line, size_t len);
void auth_resume(struct smtp_session *s, enum smtp_after after, const struct smtp_result *r);

/* turn.c */
void turn_etrn(struct smtp_session *s, const char *arg, size_t len);
void turn_command(struct smtp_session *s, const char *arg, size_t len);
void turn_resume(struct smtp_session *s, const struct smtp_result *r);

/* info.c */
void info_help(struct smtp_session *s, const char *arg, size_t len);
void info_vrfy(struct smtp_session *s, const char *arg, size_t len);
void info_expn(struct smtp_session *s, const char *arg, size_t len);

#endif

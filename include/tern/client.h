/* libtern: the tern SMTP client library. One handle (struct tern_client) is one SMTP connection,
 * driven by blocking calls: connect (plain, STARTTLS or implicit TLS, certificates verified by
 * default), EHLO/HELO, AUTH (PLAIN, LOGIN, SCRAM-SHA-256), one call per SMTP command, and
 * tern_send_message for a whole pipelined transaction. Every call that talks to the server fills
 * a struct tern_reply: the server's code, enhanced status code and lines, classified positive,
 * intermediate or negative for the command it answered. Failures the server did not answer are
 * replies too: code 101 (TERN_CODE_CONNECTION) when the connection failed or broke (DNS, connect,
 * TLS, timeout, a malformed reply), code 0 (TERN_CODE_LOCAL) when libtern refused before sending
 * anything (bad argument, password over an unencrypted connection). Handles share nothing: each
 * thread may run its own. Described in libtern(3). */
#ifndef TERN_CLIENT_H
#define TERN_CLIENT_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_CLIENT_API_VERSION 1

#define TERN_CODE_LOCAL 0        /* refused by libtern before anything was sent */
#define TERN_CODE_CONNECTION 101 /* "Server connection error": the connection failed or broke */

#define TERN_REPLY_MAX_LINE 2048 /* octets in one reply line before CRLF; RFC 5321 says 512 */
#define TERN_REPLY_MAX_LINES 100 /* lines in one multi-line reply */

/* How a reply answers the command it was for (the seeds' client table). */
enum tern_class {
    TERN_NEGATIVE = 0,     /* refused, failed, unexpected code, or no reply at all */
    TERN_POSITIVE = 1,     /* done: 220 greeting, 250 to MAIL, 250/251 to RCPT, 235 to AUTH ... */
    TERN_INTERMEDIATE = 2, /* go on: 354 to DATA, 334 to AUTH */
};

/* The command a reply answers. */
enum tern_cmd {
    TERN_CMD_CONNECT, /* the greeting */
    TERN_CMD_HELO,
    TERN_CMD_EHLO,
    TERN_CMD_MAIL,
    TERN_CMD_RCPT,
    TERN_CMD_DATA,     /* the DATA command itself: 354 */
    TERN_CMD_DATA_END, /* the message, ended by <CRLF>.<CRLF>: 250 */
    TERN_CMD_BDAT,
    TERN_CMD_RSET,
    TERN_CMD_VRFY,
    TERN_CMD_EXPN,
    TERN_CMD_HELP,
    TERN_CMD_NOOP,
    TERN_CMD_QUIT,
    TERN_CMD_SEND,
    TERN_CMD_SOML,
    TERN_CMD_SAML,
    TERN_CMD_TURN,
    TERN_CMD_STARTTLS,
    TERN_CMD_AUTH, /* AUTH and each response to a 334 */
    TERN_CMD_OTHER /* any other verb given to tern_command (ETRN, ...): 2yz positive */
};

/* One server reply. Zero-initialise before first use; every call that fills one frees what it
 * held before; tern_reply_free releases it. The strings are the server's bytes (NUL bytes are
 * refused as malformed), so escape them before printing them on a terminal. */
struct tern_reply {
    int code;            /* 200..599 from the server; 101 or 0 as above */
    char enh[16];        /* RFC 3463 enhanced status code of the first line, "2.1.0", or "" */
    char **lines;        /* each line's text after "CODE-"/"CODE " and the enhanced code */
    size_t nlines;       /* 1..TERN_REPLY_MAX_LINES (1 for codes 0 and 101: the reason) */
    char *text;          /* the lines joined by "\n" (never NULL once filled) */
    enum tern_class cls; /* classified for cmd */
    enum tern_cmd cmd;   /* which command this answers */
};

enum tern_tls {
    TERN_TLS_NONE,     /* cleartext; no STARTTLS */
    TERN_TLS_STARTTLS, /* connect in clear, EHLO, STARTTLS (required), EHLO again */
    TERN_TLS_IMPLICIT, /* TLS from the first byte (port 465, RFC 8314) */
};

/* Timeouts in milliseconds; 0 takes the default (RFC 5321 §4.5.3.2 where it names one). */
struct tern_timeouts {
    unsigned connect;    /* TCP connect and TLS handshake, default 60 s */
    unsigned greeting;   /* initial 220, default 5 min */
    unsigned mail;       /* MAIL, default 5 min */
    unsigned rcpt;       /* RCPT, default 5 min */
    unsigned data_init;  /* DATA until 354, default 2 min */
    unsigned data_block; /* each write of message data, default 3 min */
    unsigned data_end;   /* end of data (or the last BDAT) until 250, default 10 min */
    unsigned other;      /* every other command (EHLO, AUTH, NOOP, QUIT ...), default 5 min */
};

/* What the server announced in its last EHLO reply. Forgotten after STARTTLS until the next
 * EHLO; all zero after HELO. */
#define TERN_CAP_PIPELINING 0x0001u
#define TERN_CAP_8BITMIME 0x0002u
#define TERN_CAP_SMTPUTF8 0x0004u
#define TERN_CAP_ENHANCEDSTATUSCODES 0x0008u
#define TERN_CAP_CHUNKING 0x0010u
#define TERN_CAP_STARTTLS 0x0020u
#define TERN_CAP_SIZE 0x0040u
#define TERN_CAP_AUTH 0x0080u
#define TERN_CAP_DSN 0x0100u
#define TERN_CAP_BINARYMIME 0x0200u

struct tern_caps {
    int esmtp;               /* the server answered EHLO with 250 */
    unsigned flags;          /* TERN_CAP_* */
    unsigned long long size; /* SIZE limit in octets; 0 when none was announced */
    char auth[256];          /* AUTH mechanisms, upper case, space-separated ("" if none) */
    char domain[256];        /* the domain the EHLO/HELO reply's first line began with */
};

/* Called once for each line libtern sends ('C') or receives ('S'), without its CRLF, for a
 * --verbose transcript. AUTH responses come as "<auth data hidden>" and a message body as one
 * "<message: N octets>" line, so a transcript never holds a password or the message. line is
 * valid only during the call and is the server's bytes for 'S'. */
typedef void tern_transcript_fn(void *arg, char dir, const char *line, size_t len);

struct tern_client_opts {
    const char *helo_name;   /* the EHLO/HELO argument; NULL: gethostname(), else "localhost" */
    const char *ca_file;     /* PEM file of trusted CAs; NULL with ca_path NULL: system store */
    const char *ca_path;     /* hashed directory of trusted CAs (c_rehash) */
    const char *tls_name;    /* name the certificate must carry and SNI; NULL: the host */
    const char *client_cert; /* PEM certificate to present, or NULL */
    const char *client_key;  /* its PEM key (NULL: in client_cert) */
    int insecure;            /* 1: do not verify the certificate or its name (tests only) */
    int auth_without_tls;    /* 1: allow AUTH over a cleartext connection (loopback tests) */
    int no_pipelining;       /* 1: never pipeline, even when offered */
    int use_bdat;            /* 1: send messages with BDAT when CHUNKING is offered */
    size_t bdat_chunk;       /* octets per BDAT chunk; 0: 64 KiB */
    struct tern_timeouts timeouts;
    tern_transcript_fn *transcript; /* or NULL */
    void *transcript_arg;
};

/* Per-recipient outcome of tern_send_message / tern_send_file. Zero-initialise; every send
 * frees what it held before; tern_send_result_free releases it. */
struct tern_send_result {
    struct tern_reply mail;  /* reply to MAIL FROM */
    struct tern_reply *rcpt; /* nrcpt replies, one per recipient, in the order given */
    size_t nrcpt;
    size_t accepted;         /* recipients answered positively */
    struct tern_reply data;  /* reply to DATA (354), or to the first failing BDAT */
    struct tern_reply final; /* reply to the end of data or the last BDAT: 250 = delivered */
};

/* TLS details of the current connection, for `tern probe`. */
struct tern_tls_info {
    char protocol[32];      /* "TLSv1.3" */
    char cipher[128];       /* "TLS_AES_256_GCM_SHA384" */
    char subject[512];      /* peer certificate subject, RFC 2253 form, or "" */
    char issuer[512];       /* its issuer */
    char not_after[64];     /* "2026-05-01 12:00:00 UTC" */
    int verified;           /* 1 when the chain and the name verified (always checked) */
    char verify_error[256]; /* why not, when verified is 0 */
};

struct tern_client;

/* A new handle, not connected. opts may be NULL (all defaults); its strings are copied. NULL
 * only when out of memory. */
struct tern_client *tern_client_new(const struct tern_client_opts *opts);

/* Closes the connection without QUIT, and frees everything. NULL is allowed. */
void tern_free(struct tern_client *c);

/* Connects to host (name, IPv4 or IPv6 literal) on port (number or service name; NULL: "25", or
 * "465" for TERN_TLS_IMPLICIT), trying each address getaddrinfo gives, and reads the greeting.
 * TERN_TLS_IMPLICIT handshakes first; TERN_TLS_STARTTLS goes on with EHLO, STARTTLS and EHLO
 * again and fails (101) when STARTTLS is not offered. reply: the greeting, or the last EHLO
 * reply for TERN_TLS_STARTTLS. 0 when positive; -1 otherwise (the handle is then closed). */
int tern_connect(struct tern_client *c, const char *host, const char *port, enum tern_tls tls,
                 struct tern_reply *reply);

/* EHLO domain (NULL: opts.helo_name); on 500 or 502, HELO instead (reply then is HELO's).
 * Parses the capabilities (tern_caps). 0 when positive. */
int tern_ehlo(struct tern_client *c, const char *domain, struct tern_reply *reply);
int tern_helo(struct tern_client *c, const char *domain, struct tern_reply *reply);

/* STARTTLS, the handshake (verified as configured), then EHLO again with the old capabilities
 * forgotten. reply: the 220, or the new EHLO's reply. 0 when all went well. A refused STARTTLS
 * (454, 502 ...) leaves the connection usable in clear: the caller decides. */
int tern_starttls(struct tern_client *c, struct tern_reply *reply);

/* AUTH with mech ("PLAIN", "LOGIN", "SCRAM-SHA-256"; NULL: the best the server offers, SCRAM
 * first) through GNU SASL. Refused (code 0) over cleartext unless opts.auth_without_tls. The
 * password is never logged or put in a transcript. 0 on 235. */
int tern_auth(struct tern_client *c, const char *mech, const char *user, const char *password,
              struct tern_reply *reply);

/* MAIL FROM:<from> [params]; RCPT TO:<to> [params]. params (or NULL) are appended after a
 * space, e.g. "SIZE=1234 BODY=8BITMIME". from may be "" for the null reverse-path. */
int tern_mail(struct tern_client *c, const char *from, const char *params,
              struct tern_reply *reply);
int tern_rcpt(struct tern_client *c, const char *to, const char *params, struct tern_reply *reply);

/* DATA: 0 on 354. Then tern_data_write any number of times with the raw message (bare LF
 * becomes CRLF, lines starting with "." are dot-stuffed), then tern_data_end sends <CRLF>.<CRLF>
 * and reads the final reply (0 on 250). tern_data_write fills reply only on failure (101). */
int tern_data_begin(struct tern_client *c, struct tern_reply *reply);
int tern_data_write(struct tern_client *c, const void *buf, size_t len, struct tern_reply *reply);
int tern_data_end(struct tern_client *c, struct tern_reply *reply);

/* BDAT len [LAST] with len octets sent as they are (RFC 3030; no dot-stuffing). 0 on 250. */
int tern_bdat(struct tern_client *c, const void *buf, size_t len, int last,
              struct tern_reply *reply);

/* Which command opens a transaction (RFC 821 3.4): MAIL delivers to mailboxes; SEND to the
 * recipients' terminals only (tern: their `tern watch` sessions); SOML to the terminal, or the
 * mailbox when the user has none; SAML to the mailbox and the terminal too. */
enum tern_send_mode {
    TERN_SEND_MAIL = 0,
    TERN_SEND_SEND,
    TERN_SEND_SOML,
    TERN_SEND_SAML,
};

/* One whole transaction: MAIL FROM (with SIZE when the server announces it, BODY=8BITMIME when
 * the message has 8-bit octets and the server offers it, SMTPUTF8 when an address is not ASCII),
 * every RCPT, then DATA or BDAT (opts.use_bdat) — pipelined when the server offers PIPELINING.
 * Data is sent only if a recipient was accepted. The message is normalised to CRLF. 0 when the
 * message was accepted for at least one recipient (see res->accepted); -1 otherwise. After a
 * failed transaction RSET is sent so the handle can be used again. */
int tern_send_message(struct tern_client *c, const char *from, const char *const *rcpts, size_t n,
                      const void *msg, size_t len, struct tern_send_result *res);
/* The same, streaming the message from f (read to EOF; SIZE declared when f is a regular file). */
int tern_send_file(struct tern_client *c, const char *from, const char *const *rcpts, size_t n,
                   FILE *f, struct tern_send_result *res);
/* The same with SEND, SOML or SAML FROM instead of MAIL FROM (TERN_SEND_MAIL: as above);
 * res->mail answers that command. */
int tern_send_message_mode(struct tern_client *c, enum tern_send_mode mode, const char *from,
                           const char *const *rcpts, size_t n, const void *msg, size_t len,
                           struct tern_send_result *res);
int tern_send_file_mode(struct tern_client *c, enum tern_send_mode mode, const char *from,
                        const char *const *rcpts, size_t n, FILE *f, struct tern_send_result *res);
void tern_send_result_free(struct tern_send_result *res);

/* ---- terminal messages: tern's XWATCH ----
 * A user's terminal receives what SEND, SOML and SAML deliver to it. XWATCH (tern's private
 * command, RFC 5321 4.1.5) makes a submission connection one, after STARTTLS and AUTH; ternd
 * then writes each message to it as a frame (see tern(1), tern watch) until QUIT. */
#define TERN_TERM_TEXT_MAX (256 * 1024) /* octets of one message kept; the rest is dropped */

struct tern_term_message {
    long long time;          /* when ternd delivered it, Unix seconds (0: not said) */
    char id[128];            /* ternd's id of the message, as in its Received: field */
    char from[1024];         /* the envelope sender, without <>; "" for the null sender */
    unsigned long long size; /* the message's size in octets, as ternd announced it */
    char *text;              /* the message (header and body, CRLF lines) as ternd received
                                it, at most TERN_TERM_TEXT_MAX octets, NUL-terminated but
                                hostile: it may hold NULs, escape sequences, anything */
    size_t len;              /* octets in text */
    int truncated;           /* 1 when the message was longer than text */
};

/* XWATCH: 0 on 250; the handle then takes only tern_watch_next and tern_quit. */
int tern_watch(struct tern_client *c, struct tern_reply *reply);
/* Waits up to timeout_ms (-1: without limit) for the next terminal message: 1 with m filled
 * (what m held is freed), 0 when none came in time, -1 when the watch is over: reply is then
 * the server's (421 when it ended the session) or libtern's (101) and the handle is closed. */
int tern_watch_next(struct tern_client *c, int timeout_ms, struct tern_term_message *m,
                    struct tern_reply *reply);
/* Frees what m holds and zeroes it. NULL is allowed. */
void tern_term_message_free(struct tern_term_message *m);

/* Any command: verb (HELO EHLO MAIL RCPT DATA RSET VRFY EXPN HELP NOOP QUIT SEND SOML SAML TURN
 * STARTTLS AUTH, or another such as ETRN) and arg (NULL for none), one reply, classified for the
 * verb. Sent as "VERB arg": for MAIL, RCPT, SEND, SOML and SAML, arg is the whole rest, e.g.
 * "FROM:<a@b>". STARTTLS does the handshake as tern_starttls; QUIT closes as tern_quit; after a
 * 354 to DATA go on with tern_data_write. verb and arg may not hold CR or LF. 0 when positive or
 * intermediate. */
int tern_command(struct tern_client *c, const char *verb, const char *arg,
                 struct tern_reply *reply);

int tern_rset(struct tern_client *c, struct tern_reply *reply);
int tern_noop(struct tern_client *c, struct tern_reply *reply);
int tern_vrfy(struct tern_client *c, const char *what, struct tern_reply *reply);
int tern_expn(struct tern_client *c, const char *list, struct tern_reply *reply);
int tern_help(struct tern_client *c, const char *topic, struct tern_reply *reply);
/* SEND/SOML/SAML FROM:<from> (RFC 821): a transaction for a terminal, then RCPT and DATA. */
int tern_send_from(struct tern_client *c, const char *from, struct tern_reply *reply);
int tern_soml_from(struct tern_client *c, const char *from, struct tern_reply *reply);
int tern_saml_from(struct tern_client *c, const char *from, struct tern_reply *reply);
/* TURN: on 250 the roles reverse; libtern cannot be the server, so the handle is closed after. */
int tern_turn(struct tern_client *c, struct tern_reply *reply);

/* QUIT, read the 221, close. reply may be NULL. 0 on 221. The handle may connect again. While
 * watching (tern_watch), the messages that arrive before the 221 are dropped. */
int tern_quit(struct tern_client *c, struct tern_reply *reply);

/* The capabilities of the last EHLO (never NULL). */
const struct tern_caps *tern_caps(const struct tern_client *c);
/* 1 when connected, 0 when closed or broken. */
int tern_is_connected(const struct tern_client *c);
/* 1 when the connection is encrypted. */
int tern_is_tls(const struct tern_client *c);
/* TLS details; -1 when the connection is not encrypted. */
int tern_tls_info(const struct tern_client *c, struct tern_tls_info *info);

/* The reply's lines joined by "\n", or "" for an empty reply (never NULL). */
const char *tern_reply_text(const struct tern_reply *r);
/* Frees what r holds and zeroes it. */
void tern_reply_free(struct tern_reply *r);
/* "positive", "intermediate", "negative". */
const char *tern_class_name(enum tern_class cls);
/* "MAIL", "DATA", "end of data", ... */
const char *tern_cmd_name(enum tern_cmd cmd);
/* The library's version, "0.1". */
const char *tern_version(void);

#ifdef __cplusplus
}
#endif

#endif

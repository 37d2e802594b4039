/* Delivery status notifications (RFC 3464 inside an RFC 6522 multipart/report): the bounce a
 * sender gets when a recipient fails for good or the message expires in the queue, and the
 * warning it gets while delivery is still being retried. A pure function from a description
 * of the report to the bytes of the message; the relay sends them from <> (RFC 5321 4.5.5). */
#ifndef TERN_RELAY_DSN_H
#define TERN_RELAY_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define DSN_RCPTS_MAX 1000               /* recipients in one report, as in the spool */
#define DSN_ADDR_MAX 512                 /* octets of an address (sender, recipient, ORCPT) */
#define DSN_REPLY_MAX 2000               /* octets of a reply kept; the rest becomes "..." */
#define DSN_HEADERS_MAX (64u << 10)      /* the returned header section, cut at a line end */
#define DSN_FULL_MAX_DEFAULT (10u << 20) /* a whole message returned when max_original is 0 */
#define DSN_ERR_MAX 256

struct dsn_rcpt {
    const char *addr; /* the recipient as given in RCPT TO */
    /* ORCPT if known ("rfc822;addr", xtext decoded, or a bare address), else NULL; one over
     * DSN_ADDR_MAX octets is left out */
    const char *orcpt;
    bool delayed;       /* Action: delayed (else failed) */
    const char *status; /* "5.1.1"; NULL (or not a valid code for the action) → derived: from the
                           reply's enhanced code, else 5.0.0 / 4.0.0 by the reply code's class,
                           else by the action */
    int code;           /* remote reply code (200-599), 0 when none (local failure: DNS, timeout,
                           expiry) */
    const char *reply;  /* the remote reply text (joined lines) or the local reason; hostile */
    const char *remote_mta; /* MX host name or NULL */
    time_t last_attempt;    /* 0 = none */
};

struct dsn_report {
    const char *host;     /* reporting MTA, our hostname */
    const char *queue_id; /* letters, digits, '.', '-', '_' (the spool's ids) */
    const char *sender;   /* the original MAIL FROM, the report's recipient; never "" */
    time_t arrival;       /* when the message was queued (0: unknown, no Arrival-Date) */
    time_t now;
    time_t retry_until; /* for delay notices: expiry time */
    bool delay;         /* a delay notice (all rcpts delayed) rather than a failure report */
    const struct dsn_rcpt *rcpts;
    size_t nrcpts;
    const char *original; /* the queued message bytes (or just its head); hostile */
    size_t original_len;
    bool full_message;   /* attach message/rfc822 rather than text/rfc822-headers */
    size_t max_original; /* cap on the attached bytes; 0 = DSN_HEADERS_MAX for headers,
                            DSN_FULL_MAX_DEFAULT for a whole message. A message over its cap is
                            returned as headers only, and the text says so. */
    /* Additions to the brief's API, both optional: */
    const char *envid; /* ENVID of MAIL FROM (xtext decoded): Original-Envelope-Id, RFC 3461 6.3 */
    /* Random bytes for the Message-ID and the MIME boundary: NULL = getrandom(2); tests give a
     * fixed source to compare whole messages. Returns 0, or -1 (then a counter stands in). */
    int (*random)(void *ctx, void *buf, size_t len);
    void *random_ctx;
};

/* Returns a malloc'd message (CRLF line endings, every line at most 998 octets, NUL after the
 * last byte), its length in *len; NULL with a reason in err when the description is unusable:
 * sender "" or "<>" (mail from <> is never bounced), no recipients, a delay notice with a
 * failed recipient or a failure report with a delayed one, a host or queue id that is not one.
 * Text from the remote server and the original message is made harmless, never refused.
 * When any part holds 8-bit text (a UTF-8 address or reply, 8-bit original headers) the
 * message says Content-Transfer-Encoding: 8bit at its top: send it with BODY=8BITMIME (and
 * with SMTPUTF8 when the sender's address is not ASCII, as it then stands in To:). */
char *dsn_compose(const struct dsn_report *r, size_t *len, char *err, size_t errlen);

#endif

/* The delivery report itself (dsn.h): checks the description, derives each recipient's status
 * code, and writes the RFC 6522 multipart/report: a text/plain explanation for people, the
 * RFC 3464 message/delivery-status for programs, and the original's header section
 * (text/rfc822-headers) or the whole original (message/rfc822), under a boundary checked to
 * occur in none of them. Text helpers are dsn_text.c's, the original's copy dsn_orig.c's. */
#include "relay/dsn.h"

#include "relay/dsn_priv.h"
#include "util/err.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#define HOST_MAX 253
#define QUEUE_ID_MAX 95
#define ENVID_MAX 100 /* RFC 3461 4.4: ENVID is at most 100 characters */
#define STATUS_MAX 12 /* "5.999.999" and its NUL */
#define BOUNDARY_RANDOM 24
#define BOUNDARY_TRIES 16
#define NPARTS 3

/* Makes two reports of one queue entry in one second differ, and a stuck random source too. */
static atomic_uint dsn_counter;

/* Printed before the first part, for programs that do not know MIME. */
static const char preamble[] = "This is a MIME-encapsulated message.\r\n";

/* ---- checking the description ---- */

/* A host name: LDH labels of 1 to 63 octets, at most 253 in all. */
static bool is_host(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > HOST_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

/* A queue id fit for the left side of a Message-ID (a dot-atom-text of a few characters). */
static bool is_queue_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > QUEUE_ID_MAX || s[0] == '.' || s[n - 1] == '.' || strstr(s, ".."))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

/* An address we write as it is (To:, the recipients' lines): no controls, well-formed UTF-8 or
 * ASCII, within DSN_ADDR_MAX. what names it in the reason. */
static int check_addr(const char *what, const char *s, char *err, size_t errlen)
{
    size_t n = strnlen(s, DSN_ADDR_MAX + 1);
    if (n > DSN_ADDR_MAX) {
        err_set(err, errlen, "dsn: %s is longer than %d octets; no SMTP path is", what,
                DSN_ADDR_MAX);
        return -1;
    }
    struct dbuf b = {0};
    dsn_clean_utf8(&b, s, DSN_ADDR_MAX);
    bool same = !b.oom && b.n == n && (n == 0 || memcmp(b.p, s, n) == 0);
    bool oom = b.oom;
    db_free(&b);
    if (oom) {
        err_set(err, errlen, "dsn: out of memory checking %s", what);
        return -1;
    }
    if (!same) {
        err_set(err, errlen,
                "dsn: %s holds white space at its ends, a control character or malformed "
                "UTF-8; pass the address as RCPT TO or MAIL FROM gave it",
                what);
        return -1;
    }
    return 0;
}

static int check_report(const struct dsn_report *r, char *err, size_t errlen)
{
    if (!r->sender || r->sender[0] == 0 || strcmp(r->sender, "<>") == 0) {
        err_set(err, errlen,
                "dsn: the sender is <>, so the message was itself a report: never bounce it "
                "(RFC 5321 4.5.5); drop it instead");
        return -1;
    }
    if (check_addr("the sender", r->sender, err, errlen) < 0)
        return -1;
    if (!r->host || !is_host(r->host)) {
        err_set(err, errlen, "dsn: host '%.64s' is not a host name (letters, digits, '-', '.')",
                r->host ? r->host : "(null)");
        return -1;
    }
    if (!r->queue_id || !is_queue_id(r->queue_id)) {
        err_set(err, errlen,
                "dsn: queue id '%.64s' is not one: 1 to %d letters, digits, '-', '_' or inner "
                "'.'",
                r->queue_id ? r->queue_id : "(null)", QUEUE_ID_MAX);
        return -1;
    }
    if (!r->rcpts || r->nrcpts == 0 || r->nrcpts > DSN_RCPTS_MAX) {
        err_set(err, errlen, "dsn: a report names 1 to %d recipients, not %zu", DSN_RCPTS_MAX,
                r->rcpts ? r->nrcpts : 0);
        return -1;
    }
    if (r->delay && r->retry_until == 0) {
        err_set(err, errlen, "dsn: a delay notice needs retry_until, when the queue gives up");
        return -1;
    }
    if (r->original_len > 0 && !r->original) {
        err_set(err, errlen, "dsn: original_len is %zu but original is NULL", r->original_len);
        return -1;
    }
    for (size_t i = 0; i < r->nrcpts; i++) {
        const struct dsn_rcpt *rc = &r->rcpts[i];
        char what[48];
        snprintf(what, sizeof what, "recipient %zu", i + 1);
        if (!rc->addr || rc->addr[0] == 0) {
            err_set(err, errlen, "dsn: %s has no address", what);
            return -1;
        }
        if (check_addr(what, rc->addr, err, errlen) < 0)
            return -1;
        if (rc->delayed != r->delay) {
            err_set(err, errlen,
                    "dsn: %s <%s> is %s but this is a %s: send failures and delays as two "
                    "reports",
                    what, rc->addr, rc->delayed ? "delayed" : "failed",
                    r->delay ? "delay notice" : "failure report");
            return -1;
        }
        if (rc->code != 0 && (rc->code < 200 || rc->code > 599)) {
            err_set(err, errlen,
                    "dsn: %s's reply code %d is not an SMTP reply code (200 to 599, or 0 for "
                    "a local failure)",
                    what, rc->code);
            return -1;
        }
    }
    return 0;
}

/* ---- status codes (RFC 3463) ---- */

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Length of the enhanced status code class.subject.detail at s (class 2, 4 or 5; subject and
 * detail 1 to 3 digits) when it ends at a space or the end of s, else 0. */
static size_t enhanced_len(const char *s)
{
    if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return 0;
    size_t i = 2;
    for (int part = 0; part < 2; part++) {
        size_t d = 0;
        while (digit(s[i]) && d < 4)
            i++, d++;
        if (d == 0 || d > 3)
            return 0;
        if (part == 0 && s[i++] != '.')
            return 0;
    }
    return s[i] == 0 || s[i] == ' ' ? i : 0;
}

/* Can an action take a code of this class? A failure may be final (5) or the last temporary
 * one before the message expired (4, as Postfix reports it); a delay only temporary. */
static bool class_fits(const struct dsn_rcpt *rc, char cls)
{
    return cls == '4' || (cls == '5' && !rc->delayed);
}

/* The recipient's Status: the caller's when it is a code the action can take; else the
 * enhanced code leading the reply (RFC 2034), when its class matches the reply code's; else
 * X.0.0 by the reply code's class, else by the action. */
static void derive_status(const struct dsn_rcpt *rc, char out[STATUS_MAX])
{
    if (rc->status && enhanced_len(rc->status) == strlen(rc->status) &&
        class_fits(rc, rc->status[0])) {
        snprintf(out, STATUS_MAX, "%s", rc->status);
        return;
    }
    char cls = rc->code >= 400 ? (char)('0' + rc->code / 100) : 0;
    const char *s = rc->reply ? rc->reply : "";
    while (*s == ' ')
        s++;
    if (digit(s[0]) && digit(s[1]) && digit(s[2]) && (s[3] == ' ' || s[3] == '-')) {
        if (cls != 0 && s[0] != cls)
            s = ""; /* the text does not go with the code: trust neither */
        cls = cls ? cls : s[0];
        s += *s ? 4 : 0;
    }
    size_t k = enhanced_len(s);
    if (k > 0 && class_fits(rc, s[0]) && (cls == 0 || s[0] == cls)) {
        snprintf(out, STATUS_MAX, "%.*s", (int)k, s);
        return;
    }
    if (cls == '4' || (cls == '5' && !rc->delayed))
        snprintf(out, STATUS_MAX, "%c.0.0", cls);
    else
        snprintf(out, STATUS_MAX, "%s", rc->delayed ? "4.0.0" : "5.0.0");
}

/* The reply as it stands after "smtp; " in Diagnostic-Code and after "said: " in the text:
 * cleaned (ASCII or UTF-8), led by its reply code when the text does not already start with
 * it. Nothing for a local failure with no reason. */
static void reply_text(struct dbuf *b, const struct dsn_rcpt *rc, bool utf8)
{
    size_t start = b->n;
    if (utf8)
        dsn_clean_utf8(b, rc->reply, DSN_REPLY_MAX);
    else
        dsn_clean_ascii(b, rc->reply, DSN_REPLY_MAX);
    if (rc->code == 0)
        return;
    char code[8];
    snprintf(code, sizeof code, "%d", rc->code);
    const char *t = b->p ? b->p + start : "";
    size_t tn = b->n - start;
    if (tn >= 3 && memcmp(t, code, 3) == 0 && (tn == 3 || t[3] == ' ' || t[3] == '-'))
        return;
    /* the code in front of the text (copied aside, as it moves) */
    struct dbuf tmp = {0};
    db_put(&tmp, t, tn);
    b->n = start;
    db_puts(b, code);
    if (tn > 0) {
        db_put(b, " ", 1);
        db_put(b, tmp.p, tmp.n);
    }
    b->oom |= tmp.oom;
    db_free(&tmp);
}

/* ---- the parts ---- */

struct parts {
    struct dbuf p[NPARTS]; /* each part: its header fields, empty line, content */
    size_t n;
    bool eight;   /* some part went as 8bit */
    bool cut;     /* the header section was cut short */
    bool too_big; /* a whole message was asked for, but only its headers fit */
    size_t attach_max;
};

/* A paragraph of the text part: s wrapped at 78 columns, then an empty line. */
static void para(struct dbuf *b, const char *s)
{
    dsn_wrap(b, 0, s, strlen(s), "");
    db_puts(b, "\r\n\r\n");
}

/* The recipient's ORCPT, or NULL when there is none or it is too long to be one (RFC 3461
 * 4.2 allows 500 characters): a note for the sender, not worth losing the report over. */
static const char *orcpt_of(const struct dsn_rcpt *rc)
{
    if (!rc->orcpt || rc->orcpt[0] == 0 || strnlen(rc->orcpt, DSN_ADDR_MAX + 1) > DSN_ADDR_MAX)
        return NULL;
    return rc->orcpt;
}

/* "<addr>: host MX said: REPLY" for the text part, one recipient. */
static void text_rcpt(struct dbuf *b, const struct dsn_rcpt *rc)
{
    struct dbuf line = {0};
    db_puts(&line, "<");
    db_puts(&line, rc->addr);
    db_puts(&line, ">");
    const char *orcpt = orcpt_of(rc);
    if (orcpt && strncasecmp(orcpt, "rfc822;", 7) == 0)
        orcpt += 7; /* people know addresses, not address types */
    if (orcpt && strcmp(orcpt, rc->addr) != 0) {
        db_puts(&line, " (originally ");
        dsn_clean_utf8(&line, orcpt, DSN_ADDR_MAX);
        db_puts(&line, ")");
    }
    db_puts(&line, ": ");
    if (rc->code != 0) {
        db_puts(&line, "host ");
        if (rc->remote_mta && rc->remote_mta[0])
            dsn_clean_utf8(&line, rc->remote_mta, HOST_MAX);
        else
            db_puts(&line, "(unknown)");
        db_puts(&line, " said: ");
        reply_text(&line, rc, true);
    } else if (rc->reply && rc->reply[0]) {
        reply_text(&line, rc, true);
    } else {
        db_puts(&line, rc->delayed ? "delivery is being retried" : "delivery failed");
    }
    dsn_wrap(b, 0, line.p ? line.p : "", line.n, "    ");
    db_puts(b, "\r\n");
    b->oom |= line.oom;
    db_free(&line);
}

static void text_part(const struct dsn_report *r, struct parts *ps, struct dbuf *b)
{
    char date[DSN_DATE_MAX], until[DSN_DATE_MAX], s[1024];
    struct dbuf t = {0};
    snprintf(s, sizeof s, "This is the mail system at host %s.", r->host);
    para(&t, s);
    const char *attached = "";
    if (r->original_len > 0)
        attached = r->full_message && !ps->too_big ? " It is attached below."
                                                   : " Its header section is attached below.";
    if (!r->delay) {
        snprintf(s, sizeof s,
                 "I'm sorry to have to inform you that your message could not be delivered to "
                 "one or more recipients.%s",
                 attached);
        para(&t, s);
        snprintf(s, sizeof s,
                 "For further assistance, please send mail to postmaster@%s. If you do so, "
                 "please include this problem report.",
                 r->host);
        para(&t, s);
    } else {
        para(&t, "This is only a warning: you do not need to send your message again.");
        char queued[DSN_DATE_MAX + 16] = "";
        if (r->arrival != 0 && dsn_date(date, r->arrival) == 0)
            snprintf(queued, sizeof queued, ", queued on %s,", date);
        if (dsn_date(until, r->retry_until) < 0)
            snprintf(until, sizeof until, "its expiry");
        snprintf(s, sizeof s,
                 "Your message%s has not yet been delivered to the recipients below. The mail "
                 "system will keep trying until %s, and will tell you if it gives up.%s",
                 queued, until, attached);
        para(&t, s);
    }
    if (ps->too_big) {
        snprintf(s, sizeof s,
                 "The message is %zu octets, more than the %zu returned in full, so only its "
                 "header section is attached.",
                 r->original_len, ps->attach_max);
        para(&t, s);
    }
    if (ps->cut) {
        snprintf(s, sizeof s,
                 "The header section was longer than %zu octets: what follows that is left "
                 "out.",
                 ps->attach_max < DSN_HEADERS_MAX ? ps->attach_max : (size_t)DSN_HEADERS_MAX);
        para(&t, s);
    }
    db_puts(&t, "                   The mail system\r\n\r\n");
    for (size_t i = 0; i < r->nrcpts; i++)
        text_rcpt(&t, &r->rcpts[i]);

    bool eight = false;
    for (size_t i = 0; i < t.n && !eight; i++)
        eight = (unsigned char)t.p[i] >= 0x80;
    ps->eight |= eight;
    db_puts(b, "Content-Description: Notification\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n");
    db_puts(b, eight ? "Content-Transfer-Encoding: 8bit\r\n\r\n"
                     : "Content-Transfer-Encoding: 7bit\r\n\r\n");
    db_put(b, t.p, t.n);
    b->oom |= t.oom;
    db_free(&t);
}

/* One field whose value is built in v (then emptied); none when v is empty (an ENVID of
 * nothing but controls and spaces). */
static void field(struct dbuf *b, const char *name, struct dbuf *v)
{
    if (v->n > 0)
        dsn_field(b, name, v->p, v->n);
    b->oom |= v->oom;
    v->n = 0;
}

static void date_field(struct dbuf *b, const char *name, time_t t)
{
    char d[DSN_DATE_MAX];
    if (t != 0 && dsn_date(d, t) == 0)
        dsn_field(b, name, d, strlen(d));
}

/* The message/delivery-status part, fields in RFC 3464 section 2's order. */
static void status_part(const struct dsn_report *r, struct dbuf *b)
{
    struct dbuf v = {0};
    db_puts(b, "Content-Description: Delivery report\r\n"
               "Content-Type: message/delivery-status\r\n\r\n");
    if (r->envid) {
        dsn_clean_ascii(&v, r->envid, ENVID_MAX);
        field(b, "Original-Envelope-Id", &v);
    }
    db_printf(&v, "dns; %s", r->host);
    field(b, "Reporting-MTA", &v);
    date_field(b, "Arrival-Date", r->arrival);
    /* an extension field: after the standard ones (2.2's grammar) */
    dsn_field(b, "X-Tern-Queue-ID", r->queue_id, strlen(r->queue_id));
    for (size_t i = 0; i < r->nrcpts; i++) {
        const struct dsn_rcpt *rc = &r->rcpts[i];
        char status[STATUS_MAX];
        db_puts(b, "\r\n");
        if (orcpt_of(rc)) {
            dsn_orcpt_value(&v, rc->orcpt);
            field(b, "Original-Recipient", &v);
        }
        dsn_addr_value(&v, rc->addr);
        field(b, "Final-Recipient", &v);
        db_puts(b, rc->delayed ? "Action: delayed\r\n" : "Action: failed\r\n");
        derive_status(rc, status);
        db_printf(b, "Status: %s\r\n", status);
        if (rc->remote_mta && rc->remote_mta[0]) {
            db_puts(&v, "dns; ");
            dsn_clean_ascii(&v, rc->remote_mta, HOST_MAX);
            field(b, "Remote-MTA", &v);
        }
        if (rc->code != 0 || (rc->reply && rc->reply[0])) {
            /* a local reason is not an SMTP reply: a private diagnostic type (2.3.6) */
            db_puts(&v, rc->code != 0 ? "smtp; " : "X-tern; ");
            reply_text(&v, rc, false);
            field(b, "Diagnostic-Code", &v);
        }
        date_field(b, "Last-Attempt-Date", rc->last_attempt);
        if (rc->delayed)
            date_field(b, "Will-Retry-Until", r->retry_until);
    }
    b->oom |= v.oom;
    db_free(&v);
}

/* The third part: the original's header section, or all of it when asked and within the cap. */
static void original_part(const struct dsn_report *r, struct parts *ps, struct dbuf *b)
{
    struct dbuf c = {0};
    bool eight = false;
    const char *what = r->delay ? "Delayed Message" : "Undelivered Message";
    if (r->full_message && !ps->too_big) {
        dsn_orig_full(&c, r->original, r->original_len, &eight);
        db_printf(b, "Content-Description: %s\r\nContent-Type: message/rfc822\r\n", what);
    } else {
        size_t max = ps->attach_max < DSN_HEADERS_MAX ? ps->attach_max : DSN_HEADERS_MAX;
        dsn_orig_headers(&c, r->original, r->original_len, max, &ps->cut, &eight);
        db_printf(b, "Content-Description: %s Headers\r\nContent-Type: text/rfc822-headers\r\n",
                  what);
    }
    if (eight)
        db_puts(b, "Content-Transfer-Encoding: 8bit\r\n");
    db_puts(b, "\r\n");
    db_put(b, c.p, c.n);
    b->oom |= c.oom;
    ps->eight |= eight;
    db_free(&c);
}

/* ---- randomness, boundary, assembly ---- */

/* n random bytes from the caller's source or getrandom; past a failure, bytes from the time,
 * the counter and a mixing step (the boundary is still checked, the Message-ID still carries
 * the counter). */
static void fill_random(const struct dsn_report *r, unsigned char *buf, size_t n)
{
    if (r->random ? r->random(r->random_ctx, buf, n) == 0
                  : getrandom(buf, n, GRND_NONBLOCK) == (ssize_t)n)
        return;
    uint64_t x = (uint64_t)r->now ^ ((uint64_t)atomic_fetch_add(&dsn_counter, 1) << 32);
    for (size_t i = 0; i < n; i++) {
        x += 0x9E3779B97F4A7C15u; /* splitmix64 */
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
        buf[i] = (unsigned char)(z ^ (z >> 31));
    }
}

static bool occurs(const struct parts *ps, const char *s)
{
    size_t sn = strlen(s);
    for (size_t i = 0; i < ps->n; i++)
        if (ps->p[i].n > 0 && memmem(ps->p[i].p, ps->p[i].n, s, sn) != NULL)
            return true;
    return memmem(preamble, sizeof preamble - 1, s, sn) != NULL;
}

/* A boundary found nowhere in any part (so no reading of a part can take it for a delimiter):
 * random, so that a collision takes a part written to match it; the try number on the end, so
 * that a stuck random source still gives distinct candidates. */
static int choose_boundary(const struct dsn_report *r, const struct parts *ps, char *bnd,
                           size_t bndlen, char *err, size_t errlen)
{
    static const char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for (size_t k = 0; k < BOUNDARY_TRIES; k++) {
        unsigned char rnd[BOUNDARY_RANDOM];
        fill_random(r, rnd, sizeof rnd);
        size_t w = (size_t)snprintf(bnd, bndlen, "=_tern_dsn_");
        for (size_t i = 0; i < sizeof rnd; i++)
            bnd[w++] = alnum[rnd[i] % 62];
        bnd[w] = 0;
        if (k > 0)
            snprintf(bnd + w, bndlen - w, "_%zu", k);
        if (!occurs(ps, bnd))
            return 0;
    }
    err_set(err, errlen,
            "dsn: no MIME boundary absent from the report's parts after %d tries: the random "
            "source keeps repeating itself",
            BOUNDARY_TRIES);
    return -1;
}

/* The message's header fields, up to and including the empty line. */
static int top_header(const struct dsn_report *r, const struct parts *ps, const char *bnd,
                      struct dbuf *m, char *err, size_t errlen)
{
    char date[DSN_DATE_MAX];
    if (dsn_date(date, r->now) < 0) {
        err_set(err, errlen, "dsn: now (%lld) is not a time a Date: field can show",
                (long long)r->now);
        return -1;
    }
    /* unique by the queue id, the time and 64 random bits (or, when there were none, the
     * counter fill_random mixed in) */
    unsigned char rnd[8];
    fill_random(r, rnd, sizeof rnd);
    db_printf(m, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", r->host);
    db_puts(m, "To: <");
    db_puts(m, r->sender);
    db_puts(m, ">\r\n");
    db_puts(m, r->delay ? "Subject: Delayed Mail (still being retried)\r\n"
                        : "Subject: Undelivered Mail Returned to Sender\r\n");
    db_printf(m, "Date: %s\r\n", date);
    db_printf(m, "Message-ID: <%s.%llx.", r->queue_id, (unsigned long long)r->now);
    for (size_t i = 0; i < sizeof rnd; i++)
        db_printf(m, "%02x", rnd[i]);
    db_printf(m, "@%s>\r\n", r->host);
    db_puts(m, "Auto-Submitted: auto-replied\r\n"
               "MIME-Version: 1.0\r\n"
               "Content-Type: multipart/report; report-type=delivery-status;\r\n");
    db_printf(m, " boundary=\"%s\"\r\n", bnd);
    if (ps->eight)
        db_puts(m, "Content-Transfer-Encoding: 8bit\r\n"); /* RFC 2045 6.4 */
    db_puts(m, "\r\n");
    return 0;
}

char *dsn_compose(const struct dsn_report *r, size_t *len, char *err, size_t errlen)
{
    if (!r || !len) {
        err_set(err, errlen, "dsn: no report or no length to fill in");
        return NULL;
    }
    *len = 0;
    if (check_report(r, err, errlen) < 0)
        return NULL;

    struct parts ps = {0};
    struct dbuf m = {0};
    char *out = NULL;
    bool has_orig = r->original_len > 0;
    size_t full_max = r->max_original ? r->max_original : DSN_FULL_MAX_DEFAULT;
    ps.attach_max = r->max_original ? r->max_original : DSN_HEADERS_MAX;
    if (r->full_message && has_orig && r->original_len > full_max) {
        ps.too_big = true;
        ps.attach_max = full_max;
    }
    /* the third part first: the text part tells what became of it */
    if (has_orig)
        original_part(r, &ps, &ps.p[2]);
    text_part(r, &ps, &ps.p[0]);
    status_part(r, &ps.p[1]);
    ps.n = has_orig ? 3 : 2;

    char bnd[64];
    if (choose_boundary(r, &ps, bnd, sizeof bnd, err, errlen) < 0)
        goto done;
    if (top_header(r, &ps, bnd, &m, err, errlen) < 0)
        goto done;
    db_puts(&m, preamble);
    /* each delimiter's leading CRLF belongs to it (RFC 2046 5.1.1): every part keeps its own
     * last line break */
    for (size_t i = 0; i < ps.n; i++) {
        db_printf(&m, "\r\n--%s\r\n", bnd);
        db_put(&m, ps.p[i].p, ps.p[i].n);
        m.oom |= ps.p[i].oom;
    }
    db_printf(&m, "\r\n--%s--\r\n", bnd);
    if (m.oom) {
        err_set(err, errlen, "dsn: out of memory writing the report for queue entry %s",
                r->queue_id);
        goto done;
    }
    out = m.p;
    *len = m.n;
    m = (struct dbuf){0};
done:
    for (size_t i = 0; i < NPARTS; i++)
        db_free(&ps.p[i]);
    db_free(&m);
    return out;
}

/* tern_send_message and tern_send_file: one whole mail transaction. MAIL FROM carries what the
 * message needs (SIZE when the server announces it, BODY=8BITMIME for 8-bit octets, SMTPUTF8 for
 * addresses that are not ASCII); the RCPTs and DATA go in pipelined groups when the server offers
 * PIPELINING (RFC 2920), one at a time otherwise; the message goes with DATA (dot-stuffed) or
 * BDAT (RFC 3030) and is normalised to CRLF either way. Every recipient gets its own reply in the
 * result, and every reply of the result is filled, with a local one for what was not sent. */
#include "client/driver.h"
#include "client/reply.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SEND_GROUP 100           /* RCPTs queued before their replies are read, when pipelining */
#define SEND_CHUNK 65536         /* octets read from the message at a time */
#define SEND_BDAT_MAX (1u << 24) /* largest BDAT chunk libtern sends */

/* The message: a buffer or a stream. */
struct source {
    const char *buf;
    size_t len, off;
    FILE *f;
};

/* Next piece of the message into tmp (or pointed to in the buffer): octets, 0 at the end, -1 on
 * a read error (errno). */
static ssize_t src_next(struct source *s, char *tmp, size_t cap, const char **piece)
{
    if (!s->f) {
        size_t n = s->len - s->off < cap ? s->len - s->off : cap;
        *piece = s->buf + s->off;
        s->off += n;
        return (ssize_t)n;
    }
    size_t n = fread(tmp, 1, cap, s->f);
    *piece = tmp;
    if (n == 0 && ferror(s->f))
        return -1;
    return (ssize_t)n;
}

/* The SIZE to declare and whether there are 8-bit octets: known for a buffer and for a regular
 * file (read once, then rewound); *known is false otherwise. */
static int measure(struct source *s, unsigned long long *size, bool *eight, bool *known)
{
    struct smtpc_stuff st = {.bol = true};
    *known = false;
    if (!s->f) {
        *size = smtpc_measure(&st, s->buf, s->len, true);
        *eight = st.eight;
        *known = true;
        return 0;
    }
    struct stat sb;
    off_t start = ftello(s->f);
    if (start < 0 || fstat(fileno(s->f), &sb) < 0 || !S_ISREG(sb.st_mode))
        return 0; /* a pipe: sent without SIZE */
    char *tmp = malloc(SEND_CHUNK);
    if (!tmp)
        return -1;
    unsigned long long total = 0;
    size_t n;
    while ((n = fread(tmp, 1, SEND_CHUNK, s->f)) > 0)
        total += smtpc_measure(&st, tmp, n, false);
    free(tmp);
    total += smtpc_measure(&st, "", 0, true);
    if (ferror(s->f) || fseeko(s->f, start, SEEK_SET) < 0)
        return -1;
    *size = total;
    *eight = st.eight;
    *known = true;
    return 0;
}

static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* Fills every reply of res that is still empty with a local "not sent" reason. */
static void fill_unsent(struct tern_send_result *res, const char *why)
{
    if (!res->mail.text && res->mail.code == 0)
        creply_local(&res->mail, TERN_CODE_LOCAL, TERN_CMD_MAIL, "not sent: %s", why);
    for (size_t i = 0; i < res->nrcpt; i++)
        if (!res->rcpt[i].text && res->rcpt[i].code == 0)
            creply_local(&res->rcpt[i], TERN_CODE_LOCAL, TERN_CMD_RCPT, "not sent: %s", why);
    if (!res->data.text && res->data.code == 0)
        creply_local(&res->data, TERN_CODE_LOCAL, TERN_CMD_DATA, "not sent: %s", why);
    if (!res->final.text && res->final.code == 0)
        creply_local(&res->final, TERN_CODE_LOCAL, TERN_CMD_DATA_END, "not sent: %s", why);
}

/* The MAIL FROM parameters for this message into buf; -1 (res->mail local) when it cannot go. */
static int mail_params(struct tern_client *c, const char *from, const char *const *rcpts, size_t n,
                       struct source *src, char *buf, size_t len, struct tern_send_result *res)
{
    unsigned long long size = 0;
    bool eight = false, known = false;
    if (measure(src, &size, &eight, &known) < 0) {
        creply_local(&res->mail, TERN_CODE_LOCAL, TERN_CMD_MAIL,
                     "cannot read the message: %s; check the file", ERRSTR(errno));
        return -1;
    }
    const struct tern_caps *caps = &c->caps;
    if (known && caps->size > 0 && size > caps->size) {
        creply_local(&res->mail, TERN_CODE_LOCAL, TERN_CMD_MAIL,
                     "the message is %llu octets and %s takes at most %llu (its SIZE); make it "
                     "smaller",
                     size, c->host, caps->size);
        return -1;
    }
    bool utf8 = !is_ascii(from);
    for (size_t i = 0; i < n; i++)
        utf8 |= !is_ascii(rcpts[i]);
    if (utf8 && !(caps->flags & TERN_CAP_SMTPUTF8)) {
        creply_local(&res->mail, TERN_CODE_LOCAL, TERN_CMD_MAIL,
                     "an address is not ASCII and %s does not offer SMTPUTF8; use an ASCII address",
                     c->host);
        return -1;
    }
    /* a longer address would be cut short where the MAIL line is built, and go out so */
    if (strlen(from) > SMTPC_MAX_COMMAND - (sizeof "MAIL FROM:<> " - 1) - len) {
        creply_local(&res->mail, TERN_CODE_LOCAL, TERN_CMD_MAIL,
                     "the sender address is longer than a command may be; give a shorter one");
        return -1;
    }
    int k = 0;
    buf[0] = '\0';
    if (known && (caps->flags & TERN_CAP_SIZE))
        k += snprintf(buf + k, len - (size_t)k, "SIZE=%llu", size);
    /* a stream we could not read ahead may hold 8-bit octets: declare it when we may */
    if ((eight || !known) && (caps->flags & TERN_CAP_8BITMIME))
        k += snprintf(buf + k, len - (size_t)k, "%sBODY=8BITMIME", k ? " " : "");
    if (utf8)
        snprintf(buf + k, len - (size_t)k, "%sSMTPUTF8", k ? " " : "");
    return 0;
}

/* Sends the message as DATA (354 already received). 0 when the final reply is positive. */
static int send_data(struct tern_client *c, struct source *src, struct tern_send_result *res)
{
    char *tmp = src->f ? malloc(SEND_CHUNK) : NULL;
    if (src->f && !tmp) {
        drv_fail(c, TERN_CMD_DATA_END, &res->final, "out of memory sending the message");
        return -1;
    }
    const char *piece;
    ssize_t n;
    int rc = 0;
    while ((n = src_next(src, tmp, SEND_CHUNK, &piece)) > 0)
        if ((rc = tern_data_write(c, piece, (size_t)n, &res->final)) < 0)
            break;
    int err = errno; /* of a failed read, before free may change it */
    free(tmp);
    if (rc < 0)
        return -1;
    if (n < 0) {
        /* SMTP cannot take back half a message: only closing makes the server drop it */
        drv_fail(c, TERN_CMD_DATA_END, &res->final,
                 "cannot read the message: %s; closed the connection so the server drops the "
                 "part sent",
                 ERRSTR(err));
        return -1;
    }
    return tern_data_end(c, &res->final);
}

/* Sends the message in BDAT chunks, the last marked LAST. 0 when all were accepted. */
static int send_bdat(struct tern_client *c, struct source *src, struct tern_send_result *res)
{
    size_t chunk = c->o.bdat_chunk ? c->o.bdat_chunk : 65536;
    if (chunk > SEND_BDAT_MAX)
        chunk = SEND_BDAT_MAX;
    char *cur = malloc(SMTPC_TRANSFORM_MAX(chunk)), *next = malloc(SMTPC_TRANSFORM_MAX(chunk));
    char *tmp = src->f ? malloc(chunk) : NULL;
    int rc = -1;
    if (!cur || !next || (src->f && !tmp)) {
        drv_fail(c, TERN_CMD_BDAT, &res->final, "out of memory sending the message");
        goto out;
    }
    struct smtpc_stuff st = {.bol = true}; /* no dot-stuffing: BDAT counts octets */
    const char *piece;
    ssize_t n = src_next(src, tmp, chunk, &piece);
    size_t curlen = n > 0 ? smtpc_transform(&st, piece, (size_t)n, false, cur) : 0;
    bool first = true;
    for (;;) {
        ssize_t m = n > 0 ? src_next(src, tmp, chunk, &piece) : n;
        if (m < 0) {
            drv_fail(c, TERN_CMD_BDAT, &res->final,
                     "cannot read the message: %s; closed the connection so the server drops "
                     "the part sent",
                     ERRSTR(errno));
            goto out;
        }
        bool last = m == 0;
        size_t nextlen = smtpc_transform(&st, piece, (size_t)m, last, last ? cur + curlen : next);
        if (last)
            curlen += nextlen; /* the final CRLF belongs to this chunk */
        if (tern_bdat(c, cur, curlen, last, &res->final) < 0 || last) {
            rc = res->final.cls == TERN_POSITIVE ? 0 : -1;
            if (first || rc < 0)
                creply_copy(&res->data, &res->final);
            goto out;
        }
        if (first)
            creply_copy(&res->data, &res->final);
        first = false;
        char *swap = cur;
        cur = next;
        next = swap;
        curlen = nextlen;
        n = m;
    }
out:
    free(cur);
    free(next);
    free(tmp);
    return rc;
}

/* The command that opens a transaction of mode, and its verb. */
static enum tern_cmd mode_cmd(enum tern_send_mode mode, const char **verb)
{
    static const struct {
        const char *verb;
        enum tern_cmd cmd;
    } modes[] = {{"MAIL", TERN_CMD_MAIL},
                 {"SEND", TERN_CMD_SEND},
                 {"SOML", TERN_CMD_SOML},
                 {"SAML", TERN_CMD_SAML}};
    size_t i = (size_t)mode < sizeof modes / sizeof modes[0] ? (size_t)mode : 0;
    *verb = modes[i].verb;
    return modes[i].cmd;
}

/* MAIL (or SEND, SOML, SAML), the RCPTs and (when pipelining and not BDAT) DATA, in groups.
 * Returns 1 when DATA got its 354, 0 when data may go next by BDAT or a separate DATA, -1 when
 * the transaction is over. */
static int envelope(struct tern_client *c, enum tern_send_mode mode, const char *from,
                    const char *params, const char *const *rcpts, size_t n, bool bdat,
                    struct tern_send_result *res)
{
    bool pipe = drv_pipelining(c);
    size_t group = pipe ? SEND_GROUP : 1;
    char line[SMTPC_MAX_COMMAND + 1];
    const char *verb;
    enum tern_cmd cmd = mode_cmd(mode, &verb);
    /* mail_params saw to it that the line fits */
    snprintf(line, sizeof line, "%s FROM:<%s>%s%s", verb, from, params[0] ? " " : "", params);
    if (drv_queue(c, cmd, line, false, &res->mail) < 0)
        return -1;
    bool *queued = calloc(n, sizeof *queued);
    if (!queued) {
        drv_fail(c, TERN_CMD_MAIL, &res->mail, "out of memory sending a message");
        return -1;
    }
    bool mail_read = false, data_queued = false, mail_ok = false;
    int rc = -1;
    for (size_t next = 0, got = 0; got < n || !mail_read;) {
        for (; next < n && next - got < group && (mail_ok || pipe); next++) {
            int k = snprintf(line, sizeof line, "RCPT TO:<%s>", rcpts[next]);
            if (k < 0 || (size_t)k >= sizeof line)
                creply_local(&res->rcpt[next], TERN_CODE_LOCAL, TERN_CMD_RCPT,
                             "not sent: the address is longer than a command may be");
            else
                queued[next] = drv_queue(c, TERN_CMD_RCPT, line, false, &res->rcpt[next]) == 0;
            if (!queued[next] && !c->connected)
                goto out;
        }
        if (next == n && pipe && !bdat && !data_queued)
            data_queued = drv_queue(c, TERN_CMD_DATA, "DATA", false, &res->data) == 0;
        if (!mail_read) {
            if (drv_reply(c, &res->mail) < 0)
                goto out;
            mail_read = true;
            mail_ok = res->mail.cls == TERN_POSITIVE;
            if (!mail_ok && !pipe)
                break;
            continue;
        }
        for (; got < next; got++) {
            if (!queued[got])
                continue;
            if (drv_reply(c, &res->rcpt[got]) < 0)
                goto out;
            res->accepted += res->rcpt[got].cls == TERN_POSITIVE;
        }
        if (next == n)
            break;
    }
    if (data_queued) {
        if (drv_reply(c, &res->data) < 0)
            goto out;
        if (res->data.cls == TERN_INTERMEDIATE) {
            rc = 1;
            c->data_mode = true;
            c->stuff = (struct smtpc_stuff){.bol = true, .dots = true};
        }
        goto out;
    }
    rc = mail_ok && res->accepted > 0 ? 0 : -1;
out:
    free(queued);
    return rc;
}

static int transaction(struct tern_client *c, enum tern_send_mode mode, const char *from,
                       const char *const *rcpts, size_t n, struct source *src,
                       struct tern_send_result *res)
{
    tern_send_result_free(res);
    if (n > 0 && !(res->rcpt = calloc(n, sizeof *res->rcpt))) {
        creply_local(&res->mail, TERN_CODE_LOCAL, TERN_CMD_MAIL, "out of memory");
        return -1;
    }
    res->nrcpt = n;
    bool bad = !from || (n > 0 && !rcpts);
    for (size_t i = 0; !bad && i < n; i++)
        bad = !rcpts[i];
    if (bad || n == 0) {
        creply_local(&res->mail, TERN_CODE_LOCAL, TERN_CMD_MAIL,
                     bad ? "a sender and recipient addresses are needed (NULL given)"
                         : "no recipients: give at least one");
        fill_unsent(res, "no transaction was started");
        return -1;
    }
    char params[128];
    if (drv_ready(c, TERN_CMD_MAIL, &res->mail) < 0 ||
        mail_params(c, from, rcpts, n, src, params, sizeof params, res) < 0) {
        fill_unsent(res, "the transaction could not start");
        return -1;
    }
    bool bdat = c->o.use_bdat && (c->caps.flags & TERN_CAP_CHUNKING);
    int env = envelope(c, mode, from, params, rcpts, n, bdat, res);
    int rc = -1;
    if (env == 1 && res->accepted == 0) {
        /* 354 with no recipient (RFC 2920 §3.1): end the empty message; the server refuses it */
        tern_data_end(c, &res->final);
    } else if (env == 1) {
        rc = send_data(c, src, res);
    } else if (env == 0 && bdat) {
        rc = send_bdat(c, src, res);
    } else if (env == 0) {
        if (tern_data_begin(c, &res->data) == 0)
            rc = send_data(c, src, res);
    }
    if (rc < 0 && c->connected && !c->data_mode) {
        struct tern_reply r = {0};
        tern_rset(c, &r); /* leave the handle ready for the next transaction */
        tern_reply_free(&r);
    }
    fill_unsent(res, res->accepted == 0 ? "no recipient was accepted"
                                        : "the transaction failed before this step");
    return rc == 0 && res->accepted > 0 ? 0 : -1;
}

int tern_send_message_mode(struct tern_client *c, enum tern_send_mode mode, const char *from,
                           const char *const *rcpts, size_t n, const void *msg, size_t len,
                           struct tern_send_result *res)
{
    struct source src = {.buf = msg ? msg : "", .len = msg ? len : 0};
    return transaction(c, mode, from, rcpts, n, &src, res);
}

int tern_send_message(struct tern_client *c, const char *from, const char *const *rcpts, size_t n,
                      const void *msg, size_t len, struct tern_send_result *res)
{
    return tern_send_message_mode(c, TERN_SEND_MAIL, from, rcpts, n, msg, len, res);
}

int tern_send_file_mode(struct tern_client *c, enum tern_send_mode mode, const char *from,
                        const char *const *rcpts, size_t n, FILE *f, struct tern_send_result *res)
{
    if (!f) {
        tern_send_result_free(res);
        creply_local(&res->mail, TERN_CODE_LOCAL, TERN_CMD_MAIL, "no message file given (NULL)");
        fill_unsent(res, "no message");
        return -1;
    }
    struct source src = {.f = f};
    return transaction(c, mode, from, rcpts, n, &src, res);
}

int tern_send_file(struct tern_client *c, const char *from, const char *const *rcpts, size_t n,
                   FILE *f, struct tern_send_result *res)
{
    return tern_send_file_mode(c, TERN_SEND_MAIL, from, rcpts, n, f, res);
}

void tern_send_result_free(struct tern_send_result *res)
{
    if (!res)
        return;
    tern_reply_free(&res->mail);
    for (size_t i = 0; i < res->nrcpt; i++)
        tern_reply_free(&res->rcpt[i]);
    free(res->rcpt);
    tern_reply_free(&res->data);
    tern_reply_free(&res->final);
    memset(res, 0, sizeof *res);
}

/* The mail transaction inside the session core: MAIL (and SEND/SOML/SAML), RCPT (its syntax and
 * routing tricks; route.c decides where it goes), DATA and BDAT, the trace headers (Return-Path,
 * Received), and the sequence of store requests BEGIN -> APPEND* -> COMMIT | ABORT that makes a
 * message durable before its 250. */
#include "smtp/session_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "smtp/grammar.h"
#include "smtp/hdr.h"

#define PARAMS_MAX 16

/* Accepts "FROM:" / "TO:" in any case, with the spaces some clients put after the colon. */
static bool take_prefix(const char **arg, size_t *len, const char *word)
{
    size_t w = strlen(word);
    if (*len < w || !smtp_word_eq(*arg, w, word))
        return false;
    *arg += w;
    *len -= w;
    while (*len > 0 && **arg == ' ') {
        (*arg)++;
        (*len)--;
    }
    return *len > 0 && **arg == '<';
}

static bool parse_number(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

static void free_message(struct smtp_session *s)
{
    free(s->chunk);
    s->chunk = NULL;
    s->chunk_len = 0;
}

void txn_reset(struct smtp_session *s)
{
    if (s->store_open) {
        s->store_open = false;
        session_request(s, SMTP_REQ_STORE_ABORT, AFTER_NONE);
    }
    free_message(s);
    free(s->txn.mailboxes);
    free(s->txn.foreign);
    free(s->txn.terminals);
    memset(&s->txn, 0, sizeof s->txn);
    s->msgid[0] = '\0';
    s->mailboxes_cap = 0;
    s->foreign_cap = 0;
    s->terminals_cap = 0;
    s->rcpt_attempts = 0;
    s->bdat_used = false;
    s->store_failed = false;
    s->fail_rule = NULL;
    s->bdat_discard = false;
    s->sender_added = false;
    if (s->state != ST_INIT && s->state != ST_REFUSED)
        s->state = ST_READY;
}

/* MAIL FROM:<path> [params], and SEND/SOML/SAML FROM: which open the same kind of transaction. */
void txn_mail(struct smtp_session *s, enum smtp_txn_kind kind, const char *arg, size_t len)
{
    static const char *const verbs[] = {"MAIL", "SEND", "SOML", "SAML"};
    if (s->state == ST_INIT) {
        session_reply(s, 503, "5.5.1", "Send HELO or EHLO first");
        session_bad(s);
        return;
    }
    if (s->state != ST_READY) {
        session_reply(s, 503, "5.5.1", "Nested MAIL command: send RSET first");
        session_bad(s);
        return;
    }
    if (s->env->submission && !s->authenticated) {
        /* RFC 6409: the submission port takes mail only from authenticated users */
        session_rule(s, "auth_required");
        session_reply(s, 530, "5.7.0", "Authentication required");
        return;
    }
    if (!take_prefix(&arg, &len, "FROM:")) {
        session_reply(s, 501, "5.5.2", "Syntax: %s FROM:<address>", verbs[kind]);
        session_bad(s);
        return;
    }
    struct smtp_path path;
    size_t used;
    enum smtp_path_err e =
        smtp_parse_path(arg, len, SMTP_PATH_REVERSE | SMTP_PATH_UTF8, &path, &used);
    if (e != SMTP_PATH_OK) {
        session_rule(s, "syntax");
        session_reply(s, 553, "5.1.7", "Sender address is not a valid mailbox (RFC 5321 4.1.2)");
        return;
    }
    char addr[SMTP_PATH_MAX + 1];
    smtp_path_format(&path, addr, sizeof addr);
    session_ev_arg(s, addr, strlen(addr));
    struct smtp_param p[PARAMS_MAX];
    int np = smtp_parse_params(arg + used, len - used, true, p, PARAMS_MAX);
    if (np < 0) {
        session_reply(s, 501, "5.5.4", "Syntax error in parameters");
        session_bad(s);
        return;
    }
    if (np > 0 && !s->esmtp) {
        session_reply(s, 555, "5.5.4", "Parameters need EHLO, not HELO");
        session_bad(s);
        return;
    }
    bool utf8 = false, body8 = false, seen_size = false, seen_body = false;
    uint64_t size = 0;
    for (int i = 0; i < np; i++) {
        if (smtp_word_eq(p[i].key, p[i].keylen, "SIZE") && !seen_size) {
            seen_size = true;
            if (!p[i].value || !parse_number(p[i].value, p[i].valuelen, &size)) {
                session_reply(s, 501, "5.5.4", "SIZE takes a number of octets");
                session_bad(s);
                return;
            }
        } else if (smtp_word_eq(p[i].key, p[i].keylen, "BODY") && !seen_body) {
            seen_body = true;
            if (p[i].value && smtp_word_eq(p[i].value, p[i].valuelen, "8BITMIME"))
                body8 = true;
            else if (!p[i].value || !smtp_word_eq(p[i].value, p[i].valuelen, "7BIT")) {
                session_reply(s, 501, "5.5.4", "BODY must be 7BIT or 8BITMIME");
                session_bad(s);
                return;
            }
        } else if (smtp_word_eq(p[i].key, p[i].keylen, "SMTPUTF8") && !p[i].value && !utf8) {
            utf8 = true;
        } else {
            session_reply(s, 555, "5.5.4", "Unsupported parameter: %.*s", (int)p[i].keylen,
                          p[i].key);
            session_bad(s);
            return;
        }
    }
    if (path.utf8 && !utf8) {
        session_rule(s, "smtputf8");
        session_reply(s, 553, "5.6.7", "Non-ASCII address needs the SMTPUTF8 parameter");
        return;
    }
    if (size > s->env->max_message_size) {
        session_rule(s, "message_size");
        session_reply(s, 552, "5.3.4", "Message size exceeds fixed limit of %llu octets",
                      (unsigned long long)s->env->max_message_size);
        return;
    }
    if (term_mail_refused(s, kind, size))
        return;
    if (s->authenticated && !sendas_owns_sender(s, &path)) {
        session_rule(s, "send_as");
        session_reply(s, 553, "5.7.1", "Sender address not owned by user %s", s->auth_user);
        return;
    }
    /* SEND stores nothing: a full disk is no reason to refuse it */
    if (kind != SMTP_TXN_SEND && s->env->storage_ok && !s->env->storage_ok(s->env->ctx)) {
        session_rule(s, "min_free_space");
        session_reply(s, 452, "4.3.1", "Insufficient system storage, try again later");
        return;
    }
    memset(&s->txn, 0, sizeof s->txn);
    snprintf(s->txn.auth_user, sizeof s->txn.auth_user, "%s", s->auth_user);
    s->txn.kind = kind;
    s->txn.smtputf8 = utf8;
    s->txn.body_8bit = body8;
    s->txn.declared_size = size;
    smtp_path_format(&path, s->txn.from, sizeof s->txn.from);
    s->state = ST_MAIL;
    session_reply(s, 250, "2.1.0", "Sender <%s> OK", s->txn.from);
}

void txn_rcpt(struct smtp_session *s, const char *arg, size_t len)
{
    if (s->state != ST_MAIL) {
        session_reply(s, 503, "5.5.1", "Need MAIL before RCPT");
        session_bad(s);
        return;
    }
    if (!take_prefix(&arg, &len, "TO:")) {
        session_reply(s, 501, "5.5.2", "Syntax: RCPT TO:<address>");
        session_bad(s);
        return;
    }
    unsigned flags = SMTP_PATH_POSTMASTER | (s->txn.smtputf8 ? SMTP_PATH_UTF8 : 0);
    struct smtp_path path;
    size_t used;
    enum smtp_path_err e = smtp_parse_path(arg, len, flags, &path, &used);
    if (e == SMTP_PATH_NEEDS_UTF8) {
        session_rule(s, "smtputf8");
        session_reply(s, 553, "5.6.7", "Non-ASCII address needs SMTPUTF8 in MAIL FROM");
        return;
    }
    if (e != SMTP_PATH_OK) {
        session_rule(s, "syntax");
        session_reply(s, 553, "5.1.3", "Recipient address is not a valid mailbox (RFC 5321 4.1.2)");
        return;
    }
    struct smtp_param p[PARAMS_MAX];
    int np = smtp_parse_params(arg + used, len - used, s->txn.smtputf8, p, PARAMS_MAX);
    if (np != 0) {
        session_reply(s, np < 0 ? 501 : 555, "5.5.4",
                      np < 0 ? "Syntax error in parameters" : "Unsupported RCPT parameter");
        session_bad(s);
        return;
    }
    s->rcpt_attempts++;
    char addr[SMTP_PATH_MAX + 1];
    smtp_path_format(&path, addr, sizeof addr);
    session_ev_arg(s, addr, strlen(addr));
    if (s->txn.nrcpts >= s->env->max_recipients) {
        session_rule(s, "recipients");
        session_reply(s, 452, "4.5.3", "Too many recipients (at most %zu per message)",
                      s->env->max_recipients);
        return;
    }
    /* Promise 2: the %-hack, bang paths and quoted '@' never route anywhere. */
    if (strpbrk(path.local, "%!@")) {
        session_rule(s, "source_route");
        session_reply(s, 550, "5.7.1",
                      "<%s>: relaying through %%, ! or @ in the local part is "
                      "not allowed",
                      addr);
        return;
    }
    if (path.literal && !(s->authenticated && s->env->submission)) {
        session_rule(s, "relay");
        session_reply(s, 550, "5.7.1", "<%s>: relaying denied: address literals are not local",
                      addr);
        return;
    }
    route_rcpt(s, &path, addr);
}

static int cmp_mailbox(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Checks common to DATA and BDAT before the first octet of a message. */
static bool ready_for_message(struct smtp_session *s, bool bdat)
{
    if (s->state != ST_MAIL) {
        session_reply(s, 503, "5.5.1", "Need MAIL before %s", bdat ? "BDAT" : "DATA");
        session_bad(s);
        return false;
    }
    if (s->txn.nrcpts == 0) {
        if (s->rcpt_attempts > 0) { /* RFC 2920 3.1: pipelined RCPTs all failed */
            session_rule(s, "no_recipients");
            session_reply(s, 554, "5.5.1", "No valid recipients");
        } else {
            session_reply(s, 503, "5.5.1", "Need RCPT before %s", bdat ? "BDAT" : "DATA");
            session_bad(s);
        }
        return false;
    }
    return true;
}

static void end_chunk(struct smtp_session *s);

/* A BDAT of zero octets has no data to wait for: finish it now. */
static void bdat_check_empty(struct smtp_session *s)
{
    if (s->state == ST_BDAT && s->bdat_left == 0 && !s->req_pending)
        end_chunk(s);
}

static void open_message(struct smtp_session *s, bool bdat)
{
    /* one file per distinct mailbox even when aliases overlap */
    if (s->txn.nmailboxes > 1) /* none at all when every recipient is foreign */
        qsort(s->txn.mailboxes, s->txn.nmailboxes, sizeof *s->txn.mailboxes, cmp_mailbox);
    size_t w = 0;
    for (size_t i = 0; i < s->txn.nmailboxes; i++)
        if (w == 0 || strcmp(s->txn.mailboxes[w - 1], s->txn.mailboxes[i]) != 0)
            memmove(s->txn.mailboxes[w++], s->txn.mailboxes[i], sizeof *s->txn.mailboxes);
    s->txn.nmailboxes = w;
    term_dedup(s);
    smtp_data_init(&s->data, bdat, s->env->max_message_size);
    s->sender_added = false;
    sendas_arm(s);
    s->store_failed = false;
    s->chunk_len = 0;
    if (!s->chunk && !(s->chunk = malloc(SMTP_CHUNK))) {
        session_reply(s, 451, "4.3.0", "Out of memory, try again later");
        txn_reset(s);
        return;
    }
    session_request(s, SMTP_REQ_STORE_BEGIN, bdat ? AFTER_BEGIN_BDAT : AFTER_BEGIN_DATA);
}

void txn_data(struct smtp_session *s, const char *arg, size_t len)
{
    if (len) {
        session_reply(s, 501, "5.5.4", "Syntax: DATA (no parameters)");
        session_bad(s);
        return;
    }
    if (s->bdat_used) {
        session_reply(s, 503, "5.5.1", "DATA after BDAT: finish with BDAT LAST or RSET");
        session_bad(s);
        return;
    }
    if (ready_for_message(s, false))
        open_message(s, false);
}

void txn_bdat(struct smtp_session *s, const char *arg, size_t len)
{
    size_t n = 0;
    while (n < len && arg[n] != ' ')
        n++;
    size_t r = n;
    while (r < len && arg[r] == ' ')
        r++;
    uint64_t size;
    bool last = r < len && smtp_word_eq(arg + r, len - r, "LAST");
    if (!parse_number(arg, n, &size) || (r < len && !last)) {
        session_reply(s, 501, "5.5.4", "Syntax: BDAT <octets> [LAST]");
        session_bad(s);
        return; /* without a valid size there is no chunk to skip */
    }
    s->bdat_left = size;
    s->bdat_last = last;
    /* RFC 3030 2: the chunk's octets are read even when the command is refused. */
    if (s->state != ST_MAIL || s->txn.nrcpts == 0) {
        s->bdat_discard = true;
        s->bdat_prev = s->state;
        s->state = ST_BDAT;
        bdat_check_empty(s);
        return;
    }
    s->bdat_discard = false;
    if (!s->bdat_used) {
        s->bdat_used = true;
        open_message(s, true);
        return;
    }
    s->state = ST_BDAT;
    bdat_check_empty(s);
}

/* Return-Path and an RFC 5321 4.4 Received: field, ahead of the message. */
static void trace_headers(struct smtp_session *s)
{
    const struct smtp_env *e = s->env;
    char date[64] = "Thu, 1 Jan 1970 00:00:00 +0000";
    time_t now = e->now ? e->now(e->ctx) : 0;
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    bool v6 = strchr(e->peer_ip, ':') != NULL;
    /* RFC 3848 / 6531: S for TLS, A for authenticated */
    char with[32];
    snprintf(with, sizeof with, "%s%s%s",
             s->txn.smtputf8 ? "UTF8SMTP"
             : s->esmtp      ? "ESMTP"
                             : "SMTP",
             s->tls && s->esmtp ? "S" : "", s->authenticated ? "A" : "");
    char tls[200] = "";
    if (s->tls)
        snprintf(tls, sizeof tls, " (%s)", s->tls_info);
    char forclause[SMTP_PATH_MAX + 16] = "";
    if (s->txn.nrcpts == 1)
        snprintf(forclause, sizeof forclause, "\r\n\tfor <%s>", s->txn.first_rcpt);
    int n =
        snprintf(s->chunk, SMTP_CHUNK,
                 "Return-Path: <%s>\r\n"
                 "Received: from %s (%s%s[%s%s])\r\n"
                 "\tby %s (tern) with %s%s id %s%s;\r\n\t%s\r\n",
                 s->txn.from, s->helo, e->peer_name ? e->peer_name : "", e->peer_name ? " " : "",
                 v6 ? "IPv6:" : "", e->peer_ip, e->hostname, with, tls, s->msgid, forclause, date);
    s->chunk_len = n > 0 && n < SMTP_CHUNK ? (size_t)n : 0;
}

static void fail_reply(struct smtp_session *s, const struct smtp_result *r)
{
    session_rule(s, s->fail_rule          ? s->fail_rule
                    : r && r->code == 552 ? "quota"
                    : r && r->code == 450 ? "terminal" /* SEND: every terminal went */
                                          : "store");
    s->fail_rule = NULL;
    if (r && r->code >= 400)
        session_reply(s, r->code, r->enh, "%s", r->text);
    else
        session_reply(s, 451, "4.3.0", "Local error in processing, message not accepted");
}

/* The end of a message (text or last chunk): flush, then commit or abort. */
static void finish_message(struct smtp_session *s)
{
    if (s->data.in_header && s->data.line_len == 0)
        sendas_header_end(s); /* a message that is all header: the field goes at its end */
    if (!s->store_failed && !smtp_data_failed(&s->data) && s->chunk_len > 0) {
        session_request(s, SMTP_REQ_STORE_APPEND, AFTER_FINISH);
        return;
    }
    const struct smtp_data *d = &s->data;
    struct smtp_result *f = &s->failure;
    if (!s->store_failed) {
        memset(f, 0, sizeof *f);
        if (d->too_big) {
            s->fail_rule = "message_size";
            f->code = 552;
            snprintf(f->enh, sizeof f->enh, "5.3.4");
            snprintf(f->text, sizeof f->text, "Message size exceeds fixed limit of %llu octets",
                     (unsigned long long)s->env->max_message_size);
        } else if (d->received > SMTP_DATA_MAX_RECEIVED) {
            s->fail_rule = "mail_loop";
            f->code = 554;
            snprintf(f->enh, sizeof f->enh, "5.4.6");
            snprintf(f->text, sizeof f->text, "Too many Received: headers: mail loop detected");
        } else if (d->bare_crlf) {
            s->fail_rule = "bare_lf";
            f->code = 554;
            snprintf(f->enh, sizeof f->enh, "5.6.0");
            snprintf(f->text, sizeof f->text,
                     "Bare CR or LF in message: lines must end with CRLF (RFC 5321 2.3.8)");
        } else if (d->line_too_long) {
            s->fail_rule = "line_length";
            f->code = 554;
            snprintf(f->enh, sizeof f->enh, "5.6.0");
            snprintf(f->text, sizeof f->text, "Line longer than 1000 octets (RFC 5321 4.5.3.1.6)");
        } else if (s->env->check_from && s->authenticated && !sendas_owns_from(s)) {
            s->fail_rule = "check_from";
            f->code = 553;
            snprintf(f->enh, sizeof f->enh, "5.7.1");
            snprintf(f->text, sizeof f->text,
                     "From: header names an address this user does not own (check_from)");
        } else if (term_too_big(s, f)) {
            /* SEND: refused; SOML and SAML: the terminals are dropped, the mailbox takes it */
        } else if (s->txn.kind != SMTP_TXN_SEND && s->env->storage_ok &&
                   !s->env->storage_ok(s->env->ctx)) {
            s->fail_rule = "min_free_space";
            f->code = 452;
            snprintf(f->enh, sizeof f->enh, "4.3.1");
            snprintf(f->text, sizeof f->text, "Insufficient system storage, try again later");
        } else {
            session_request(s, SMTP_REQ_STORE_COMMIT, AFTER_COMMIT);
            return;
        }
        s->store_failed = true;
    }
    if (s->store_open) {
        s->store_open = false;
        session_request(s, SMTP_REQ_STORE_ABORT, AFTER_ABORT);
    } else {
        fail_reply(s, f);
        txn_reset(s);
    }
}

/* After a BDAT chunk has been read completely. */
static void end_chunk(struct smtp_session *s)
{
    if (s->bdat_discard) {
        s->bdat_discard = false;
        s->state = s->bdat_prev;
        session_reply(s, 503, "5.5.1",
                      s->state == ST_INIT ? "Send HELO or EHLO first" : "BDAT needs MAIL and RCPT");
        session_bad(s);
        return;
    }
    s->state = ST_MAIL;
    /* The last chunk, or any chunk after which the message cannot be accepted, ends it. */
    if (s->bdat_last || s->store_failed || smtp_data_failed(&s->data)) {
        finish_message(s);
        return;
    }
    s->ev_verb = NULL; /* the audit log hears the answer to the last chunk only */
    session_reply(s, 250, "2.0.0", "%llu octets received", (unsigned long long)s->data.size);
}

size_t txn_feed_data(struct smtp_session *s, const char *buf, size_t len)
{
    if (s->state == ST_BDAT && s->bdat_discard) {
        size_t take = s->bdat_left < len ? (size_t)s->bdat_left : len;
        s->bdat_left -= take;
        if (s->bdat_left == 0)
            end_chunk(s);
        return take;
    }
    size_t avail = s->state == ST_BDAT && s->bdat_left < len ? (size_t)s->bdat_left : len;
    size_t out = 0;
    size_t room = SMTP_CHUNK - s->chunk_len, reserve = sendas_reserve(s);
    size_t used = smtp_data_feed(&s->data, buf, avail, s->chunk + s->chunk_len,
                                 room > reserve ? room - reserve : 0, &out);
    if (s->store_failed)
        out = 0; /* the store has given up: read to the end, keep nothing */
    s->chunk_len += out;
    if (s->data.header_end) {
        s->data.header_end = false;
        sendas_header_end(s);
    }
    if (s->state == ST_BDAT)
        s->bdat_left -= used;
    bool ended = s->state == ST_DATA ? s->data.done : s->bdat_left == 0;
    if (ended) {
        if (s->state == ST_DATA) {
            s->state = ST_MAIL;
            finish_message(s);
        } else {
            end_chunk(s);
        }
    } else if (SMTP_CHUNK - s->chunk_len < 2 + sendas_reserve(s)) {
        if (s->store_failed || smtp_data_failed(&s->data))
            s->chunk_len = 0;
        else
            session_request(s, SMTP_REQ_STORE_APPEND, AFTER_APPEND);
    }
    return used;
}

void txn_resume(struct smtp_session *s, const struct smtp_result *r)
{
    enum smtp_after after = s->after;
    s->after = AFTER_NONE;
    switch (after) {
    case AFTER_NONE:
    case AFTER_STARTTLS: /* auth.c's */
    case AFTER_AUTH:
    case AFTER_TURN:  /* turn.c's */
    case AFTER_WATCH: /* terminal.c's */
        break;
    case AFTER_BEGIN_DATA:
    case AFTER_BEGIN_BDAT:
        if (!r->ok) {
            if (after == AFTER_BEGIN_DATA) {
                fail_reply(s, r);
                txn_reset(s);
                return;
            }
            /* BDAT: the chunk is still read; its end gives this failure */
            s->store_failed = true;
            s->failure = *r;
            s->state = ST_BDAT;
            bdat_check_empty(s);
            return;
        }
        s->store_open = true;
        snprintf(s->msgid, sizeof s->msgid, "%s", r->id);
        trace_headers(s);
        if (after == AFTER_BEGIN_DATA) {
            s->state = ST_DATA;
            session_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
        } else {
            s->state = ST_BDAT;
            bdat_check_empty(s);
        }
        break;
    case AFTER_APPEND:
    case AFTER_FINISH:
        s->chunk_len = 0;
        if (!r->ok && !s->store_failed) {
            s->store_failed = true;
            s->failure = *r;
        }
        if (after == AFTER_FINISH)
            finish_message(s);
        break;
    case AFTER_COMMIT:
        s->store_open = false;
        if (r->ok && s->txn.kind == SMTP_TXN_SEND) {
            s->stats.messages++;
            s->junk = 0;
            session_reply(s, 250, "2.0.0", "Ok: delivered to %zu terminal%s as %s", r->terminals,
                          r->terminals == 1 ? "" : "s", s->msgid);
        } else if (r->ok) {
            s->stats.messages++;
            s->junk = 0;
            if (r->terminals)
                session_reply(s, 250, "2.0.0", "Ok: accepted as %s and shown on %zu terminal%s",
                              s->msgid, r->terminals, r->terminals == 1 ? "" : "s");
            else
                session_reply(s, 250, "2.0.0", "Ok: queued as %s", s->msgid);
        } else {
            fail_reply(s, r);
        }
        txn_reset(s);
        break;
    case AFTER_ABORT:
        fail_reply(s, &s->failure);
        txn_reset(s);
        break;
    }
}

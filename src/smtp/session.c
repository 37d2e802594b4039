/* The SMTP session core's front half: the greeting, command-line assembly with its limits, the
 * command table (a check-then-proceed handler per verb, after OpenSMTPD's shape), the simple
 * commands (HELO EHLO RSET NOOP QUIT), error counting, and the request/resume plumbing. The
 * transaction lives in txn.c and route.c, HELP/VRFY/EXPN in info.c, ETRN and TURN in turn.c,
 * the terminal policy and XWATCH in terminal.c. */
#include "smtp/session_priv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/grammar.h"

/* The rule behind an answer nobody named: what the reply code itself says. */
static const char *default_rule(int code)
{
    if (code < 400)
        return "ok";
    if (code == 500 || code == 501 || code == 555)
        return "syntax";
    if (code == 503)
        return "sequence";
    return "error";
}

/* The final answer to a tracked command goes to env->event once; 334 and 354 are not final. */
static void session_event(struct smtp_session *s, int code, const char *enh, const char *text)
{
    if (!s->ev_verb || code == 334 || code == 354)
        return;
    struct smtp_event ev = {
        .verb = s->ev_verb,
        .arg = s->ev_arg,
        .arg_len = s->ev_arg_len,
        .mech = strcmp(s->ev_verb, "AUTH") == 0 ? s->auth_mech : "",
        .code = code,
        .enh = enh && s->esmtp ? enh : "",
        .rule = s->ev_rule ? s->ev_rule : default_rule(code),
        .text = text,
    };
    if (strcmp(s->ev_verb, "AUTH") == 0) {
        ev.arg = s->ev_user;
        ev.arg_len = strlen(s->ev_user);
    } else if (strcmp(s->ev_verb, "DATA") == 0 || strcmp(s->ev_verb, "BDAT") == 0) {
        ev.arg = s->msgid;
        ev.arg_len = strlen(s->msgid);
    }
    s->ev_verb = NULL;
    s->ev_rule = NULL;
    s->env->event(s->env->ctx, &ev);
}

void session_ev_arg(struct smtp_session *s, const char *arg, size_t len)
{
    if (len > SMTP_CMD_LINE_MAX)
        len = SMTP_CMD_LINE_MAX;
    memmove(s->ev_arg, arg, len);
    s->ev_arg_len = len;
}

void session_limit(struct smtp_session *s, const char *what, const char *text)
{
    if (!s->env->event)
        return;
    struct smtp_event ev = {.limit = true,
                            .verb = what,
                            .arg = "",
                            .enh = "4.7.0",
                            .rule = what,
                            .code = 421,
                            .text = text,
                            .mech = ""};
    s->env->event(s->env->ctx, &ev);
}

/* Replies carry an enhanced status code only once the client has said EHLO (RFC 2034). */
void session_reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    reply_add(&s->out, s->esmtp, code, enh, "%s", text);
    if (code >= 400)
        s->stats.rejected++;
    session_event(s, code, enh, text);
}

void session_reply_lines(struct smtp_session *s, int code, const char *enh,
                         const char *const *lines, size_t n)
{
    reply_add_lines(&s->out, s->esmtp, code, enh, lines, n);
    if (code >= 400)
        s->stats.rejected++;
    session_event(s, code, enh, n ? lines[0] : "");
}

void session_request(struct smtp_session *s, enum smtp_req_type type, enum smtp_after after)
{
    s->req.type = type;
    s->req.txn = &s->txn;
    s->req.data = type == SMTP_REQ_STORE_APPEND ? s->chunk : NULL;
    s->req.len = type == SMTP_REQ_STORE_APPEND ? s->chunk_len : 0;
    s->req.turn_domains = NULL; /* turn.c fills them for TURN */
    s->req.nturn = 0;
    s->req_pending = true;
    s->after = after;
}

/* A protocol error. Past the limit the client is misbehaving or lost: 421 and close. */
void session_bad(struct smtp_session *s)
{
    if (++s->bad >= s->env->max_bad_commands && s->close == SMTP_OPEN) {
        session_reply(s, 421, "4.7.0", "%s Too many errors, closing connection", s->env->hostname);
        s->close = SMTP_CLOSE_AFTER_OUTPUT;
        session_limit(s, "bad_commands", "too many errors, connection closed");
    }
}

/* A command that moves no mail forward (NOOP RSET VRFY EXPN HELP). Returns false, having
 * answered 421, once a client sends too many of them. */
bool session_junk(struct smtp_session *s)
{
    if (++s->junk > s->env->max_junk_commands) {
        session_reply(s, 421, "4.7.0", "%s Too many commands without mail, closing connection",
                      s->env->hostname);
        s->close = SMTP_CLOSE_AFTER_OUTPUT;
        session_limit(s, "junk_commands", "too many commands without mail, connection closed");
        return false;
    }
    return true;
}

static void cmd_helo(struct smtp_session *s, const char *arg, size_t len, bool ehlo)
{
    if (len == 0) {
        session_reply(s, 501, "5.5.4", "Syntax: %s hostname", ehlo ? "EHLO" : "HELO");
        session_bad(s);
        return;
    }
    if (!smtp_valid_helo(arg, len)) {
        session_reply(s, 501, "5.5.2", "Invalid domain name or address literal");
        session_bad(s);
        return;
    }
    txn_reset(s); /* RFC 5321 4.1.4: a second HELO/EHLO is an implicit RSET */
    memcpy(s->helo, arg, len);
    s->helo[len] = '\0';
    s->state = ST_READY;
    s->esmtp = ehlo;
    if (!ehlo) {
        session_reply(s, 250, NULL, "%s Hello %s [%s]", s->env->hostname, s->helo, s->env->peer_ip);
        return;
    }
    char first[512], size[64];
    snprintf(first, sizeof first, "%s Hello %s [%s]", s->env->hostname, s->helo, s->env->peer_ip);
    snprintf(size, sizeof size, "SIZE %llu", (unsigned long long)s->env->max_message_size);
    char auth[128];
    const char *lines[16] = {first,      "PIPELINING",          size,       "8BITMIME",
                             "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "HELP"};
    size_t n = 8;
    if (s->env->terminal_allow != SMTP_TERMINAL_NONE) /* SEND needs a terminal; none: 502 */
        lines[n++] = "SEND";
    lines[n++] = "SOML"; /* these two always work: the mailbox is there to fall back on */
    lines[n++] = "SAML";
    if (s->env->etrn && !s->env->submission) /* RFC 1985: for servers pulling their queue */
        lines[n++] = "ETRN";
    if (s->env->tls_available && !s->tls)
        lines[n++] = "STARTTLS";
    if (s->env->auth_mechs && (s->tls || s->env->auth_cleartext_ok) && !s->authenticated) {
        snprintf(auth, sizeof auth, "AUTH %s", s->env->auth_mechs);
        lines[n++] = auth;
    }
    /* tern's private command, shown only to whom it would work for */
    if (s->env->submission && s->authenticated && s->tls && s->env->terminal_live &&
        s->env->terminal_allow != SMTP_TERMINAL_NONE)
        lines[n++] = "XWATCH";
    /* EHLO keywords carry no enhanced code: RFC 2034 exempts the EHLO response lines. */
    reply_add_lines(&s->out, false, 250, NULL, lines, n);
    session_event(s, 250, NULL, first);
}

static void cmd_rset(struct smtp_session *s, const char *arg, size_t len)
{
    if (len) {
        session_reply(s, 501, "5.5.4", "Syntax: RSET (no parameters)");
        session_bad(s);
        return;
    }
    if (!session_junk(s))
        return;
    txn_reset(s);
    session_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(struct smtp_session *s, const char *arg, size_t len)
{
    (void)arg; /* RFC 5321 4.1.1.9: a parameter may be given and is ignored */
    (void)len;
    if (session_junk(s))
        session_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_quit(struct smtp_session *s, const char *arg, size_t len)
{
    if (len) {
        session_reply(s, 501, "5.5.4", "Syntax: QUIT (no parameters)");
        session_bad(s);
        return;
    }
    txn_reset(s);
    session_reply(s, 221, "2.0.0", "%s closing connection", s->env->hostname);
    s->close = SMTP_CLOSE_AFTER_OUTPUT;
}

static void cmd_helo_plain(struct smtp_session *s, const char *a, size_t n)
{
    cmd_helo(s, a, n, false);
}
static void cmd_ehlo(struct smtp_session *s, const char *a, size_t n)
{
    cmd_helo(s, a, n, true);
}
static void cmd_mail(struct smtp_session *s, const char *a, size_t n)
{
    txn_mail(s, SMTP_TXN_MAIL, a, n);
}
static void cmd_send(struct smtp_session *s, const char *a, size_t n)
{
    txn_mail(s, SMTP_TXN_SEND, a, n);
}
static void cmd_soml(struct smtp_session *s, const char *a, size_t n)
{
    txn_mail(s, SMTP_TXN_SOML, a, n);
}
static void cmd_saml(struct smtp_session *s, const char *a, size_t n)
{
    txn_mail(s, SMTP_TXN_SAML, a, n);
}

/* Which commands the audit log hears about, and whether their argument goes with them (never
 * AUTH's: an initial response holds the password). */
enum track { T_NO, T_VERB, T_ARG };

static const struct {
    const char *verb;
    void (*fn)(struct smtp_session *, const char *, size_t);
    enum track args;
} commands[] = {
    /* one command a line: */
    /* clang-format off */
    {"HELO", cmd_helo_plain, T_ARG},
    {"EHLO", cmd_ehlo, T_ARG},
    {"MAIL", cmd_mail, T_ARG},
    {"RCPT", txn_rcpt, T_ARG},
    {"DATA", txn_data, T_VERB},
    {"BDAT", txn_bdat, T_VERB},
    {"RSET", cmd_rset, T_NO},
    {"NOOP", cmd_noop, T_NO},
    {"QUIT", cmd_quit, T_NO},
    {"HELP", info_help, T_NO},
    {"VRFY", info_vrfy, T_NO},
    {"EXPN", info_expn, T_NO},
    {"SEND", cmd_send, T_ARG},
    {"SOML", cmd_soml, T_ARG},
    {"SAML", cmd_saml, T_ARG},
    {"TURN", turn_command, T_VERB}, /* the event names the domains handed over */
    {"STARTTLS", auth_starttls, T_NO},
    {"AUTH", auth_command, T_VERB},
    {"ETRN", turn_etrn, T_ARG},
    {"XWATCH", term_xwatch, T_VERB}, /* the event names the user who would watch */
    /* clang-format on */
};

static void track(struct smtp_session *s, const char *verb, enum track t, const char *arg,
                  size_t len)
{
    s->ev_verb = s->env->event && t != T_NO ? verb : NULL;
    s->ev_rule = NULL;
    s->ev_arg_len = 0;
    s->ev_user[0] = '\0';
    if (s->ev_verb && t == T_ARG)
        session_ev_arg(s, arg, len);
}

static void dispatch(struct smtp_session *s, const char *line, size_t len)
{
    if (s->state == ST_AUTH) {
        auth_response(s, line, len);
        return;
    }
    s->ev_verb = NULL; /* only the commands in the table below are tracked */
    size_t vlen = 0;
    while (vlen < len && line[vlen] != ' ')
        vlen++;
    size_t a = vlen;
    while (a < len && line[a] == ' ')
        a++;
    size_t alen = len - a;
    while (alen > 0 && line[a + alen - 1] == ' ') /* trailing spaces are noise, not arguments */
        alen--;

    if (s->state == ST_REFUSED) {
        if (smtp_word_eq(line, vlen, "QUIT")) {
            cmd_quit(s, line + a, alen);
            return;
        }
        /* RFC 5321 3.1: after a 554 greeting, wait for QUIT and answer 503 meanwhile */
        session_reply(s, 503, "5.7.1", "Bad sequence of commands: connection refused, send QUIT");
        session_bad(s);
        return;
    }
    if (s->state == ST_WATCH && !smtp_word_eq(line, vlen, "QUIT") &&
        !smtp_word_eq(line, vlen, "NOOP")) {
        /* a terminal: everything else would interleave with the messages it carries */
        session_reply(s, 503, "5.5.1", "Watching terminal messages: only NOOP and QUIT");
        session_bad(s);
        return;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (smtp_word_eq(line, vlen, commands[i].verb)) {
            track(s, commands[i].verb, commands[i].args, line + a, alen);
            commands[i].fn(s, line + a, alen);
            return;
        }
    }
    session_reply(s, 500, "5.5.2", "Command unrecognized");
    session_bad(s);
}

/* AUTH lines may be long (RFC 4954 4: 12288 octets); every other command line is 512. The verb
 * may still be partly in buf, not yet in the line buffer. */
static bool long_line_ok(const struct smtp_session *s, const char *buf, size_t len)
{
    if (s->state == ST_AUTH)
        return true;
    char head[5];
    size_t n = s->line_len < 5 ? s->line_len : 5;
    memcpy(head, s->line, n);
    if (n < 5 && len >= 5 - n)
        memcpy(head + n, buf, 5 - n);
    else if (n < 5)
        return false;
    return smtp_word_eq(head, 4, "AUTH") && head[4] == ' ';
}

/* Takes bytes up to and including LF into the line buffer; a line over the limit is consumed to
 * its end and refused as a whole. A bare LF ends a command line (lenient for humans on telnet);
 * it never ends message data (data.c). */
static size_t feed_line(struct smtp_session *s, const char *buf, size_t len)
{
    const char *nl = memchr(buf, '\n', len);
    size_t take = nl ? (size_t)(nl - buf) + 1 : len;
    size_t body = nl ? take - 1 : take;
    if (!s->line_overflow) {
        char *line = s->bigline ? s->bigline : s->line;
        if (!s->bigline && s->line_len + body > SMTP_CMD_LINE_MAX - 1 &&
            long_line_ok(s, buf, body) && (s->bigline = malloc(SMTP_AUTH_LINE_MAX + 1))) {
            memcpy(s->bigline, s->line, s->line_len);
            line = s->bigline;
        }
        size_t cap = s->bigline ? SMTP_AUTH_LINE_MAX - 1 : SMTP_CMD_LINE_MAX - 1;
        if (s->line_len + body > cap) {
            s->line_overflow = true;
        } else {
            memcpy(line + s->line_len, buf, body);
            s->line_len += body;
        }
    }
    if (!nl)
        return take;

    char *line = s->bigline ? s->bigline : s->line;
    size_t max = s->bigline ? SMTP_AUTH_LINE_MAX - 2 : SMTP_CMD_LINE_MAX - 2;
    size_t n = s->line_len;
    bool overflow = s->line_overflow;
    s->line_len = 0;
    s->line_overflow = false;
    if (n > 0 && line[n - 1] == '\r')
        n--;
    if (overflow || n > max) {
        bool auth = s->bigline || s->state == ST_AUTH;
        if (s->state == ST_AUTH)
            s->state = ST_READY; /* the exchange cannot go on */
        session_reply(s, 500, "5.5.2", "Line too long: commands are at most %d octets",
                      auth ? SMTP_AUTH_LINE_MAX : SMTP_CMD_LINE_MAX);
        session_bad(s);
    } else if (n == 0 && s->state != ST_AUTH) {
        session_reply(s, 500, "5.5.2", "Empty command");
        session_bad(s);
    } else if (memchr(line, '\0', n) || memchr(line, '\r', n)) {
        if (s->state == ST_AUTH)
            s->state = ST_READY;
        session_reply(s, 500, "5.5.2", "Command contains a NUL or bare CR");
        session_bad(s);
    } else {
        dispatch(s, line, n);
    }
    /* the AUTH step copied what it needs: the long buffer can go */
    free(s->bigline);
    s->bigline = NULL;
    return take;
}

struct smtp_session *smtp_session_new(const struct smtp_env *env)
{
    struct smtp_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->env = env;
    if (env->over_limit) {
        session_reply(s, 421, NULL, "%s Too many connections, try again later", env->hostname);
        s->close = SMTP_CLOSE_AFTER_OUTPUT;
    } else if (env->refuse) {
        session_reply(s, 554, NULL, "%s ESMTP tern: no SMTP service for you [%s]", env->hostname,
                      env->peer_ip);
        s->state = ST_REFUSED;
    } else {
        session_reply(s, 220, NULL, "%s ESMTP tern", env->hostname);
        s->state = ST_INIT;
        s->tls = env->tls_active;
        if (env->tls_info)
            snprintf(s->tls_info, sizeof s->tls_info, "%s", env->tls_info);
    }
    return s;
}

void smtp_session_free(struct smtp_session *s)
{
    if (!s)
        return;
    reply_free(&s->out);
    free(s->txn.mailboxes);
    free(s->txn.foreign);
    free(s->txn.terminals);
    free(s->chunk);
    free(s->bigline);
    free(s->auth_resp);
    free(s);
}

size_t smtp_session_feed(struct smtp_session *s, const char *buf, size_t len)
{
    size_t used = 0;
    while (used < len && !s->req_pending && !s->turned && s->close == SMTP_OPEN &&
           reply_pending(&s->out) < SMTP_OUT_HIGH && !s->out.failed) {
        if (s->state == ST_DATA || s->state == ST_BDAT)
            used += txn_feed_data(s, buf + used, len - used);
        else
            used += feed_line(s, buf + used, len - used);
    }
    s->stats.bytes_in += used;
    return used;
}

size_t smtp_session_pending_output(const struct smtp_session *s, const char **out)
{
    *out = s->out.buf ? s->out.buf + s->out.off : "";
    return reply_pending(&s->out);
}

void smtp_session_output_sent(struct smtp_session *s, size_t n)
{
    reply_sent(&s->out, n);
}

const struct smtp_request *smtp_session_request(struct smtp_session *s)
{
    return s->req_pending ? &s->req : NULL;
}

void smtp_session_resume(struct smtp_session *s, const struct smtp_result *r)
{
    if (!s->req_pending)
        return;
    s->req_pending = false;
    if (s->after == AFTER_TURN) {
        s->after = AFTER_NONE;
        turn_resume(s, r);
        return;
    }
    if (s->after == AFTER_WATCH) {
        s->after = AFTER_NONE;
        term_resume(s, r);
        return;
    }
    if (s->after == AFTER_STARTTLS || s->after == AFTER_AUTH) {
        enum smtp_after after = s->after;
        s->after = AFTER_NONE;
        auth_resume(s, after, r);
        return;
    }
    txn_resume(s, r);
}

enum smtp_close smtp_session_wants_close(const struct smtp_session *s)
{
    return s->out.failed ? SMTP_CLOSE_AFTER_OUTPUT : s->close;
}

bool smtp_session_in_data(const struct smtp_session *s)
{
    return s->state == ST_DATA || s->state == ST_BDAT || s->req_pending || s->store_open;
}

void smtp_session_timeout(struct smtp_session *s)
{
    if (s->close != SMTP_OPEN || s->turned) /* after TURN the peer is the server */
        return;
    session_rule(s, "timeout"); /* a command waiting for its final answer (DATA, AUTH) */
    session_reply(s, 421, "4.4.2", "%s Timeout exceeded, closing connection", s->env->hostname);
    s->close = SMTP_CLOSE_AFTER_OUTPUT;
}

void smtp_session_shutdown(struct smtp_session *s)
{
    if (s->close != SMTP_OPEN || s->turned)
        return;
    session_rule(s, "shutdown");
    session_reply(s, 421, "4.3.2", "%s Service shutting down, closing connection",
                  s->env->hostname);
    s->close = SMTP_CLOSE_AFTER_OUTPUT;
}

bool smtp_session_watching(const struct smtp_session *s)
{
    return s->state == ST_WATCH && s->close == SMTP_OPEN;
}

const char *smtp_session_message_id(const struct smtp_session *s)
{
    return s->data.msgid;
}

void smtp_session_stats(const struct smtp_session *s, struct smtp_stats *out)
{
    *out = s->stats;
}

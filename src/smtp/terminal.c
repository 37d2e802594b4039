/* The terminal side of the session core (RFC 821 3.4: SEND, SOML, SAML): the [terminal] policy's
 * answers at MAIL time and at the end of a message, the transaction's list of terminals, and
 * XWATCH, tern's private command (RFC 5321 4.1.5 leaves X-verbs to private use) that makes an
 * authenticated submission connection a terminal of its user. Where each recipient goes is
 * route.c's; which terminals are live is the caller's (env->terminal_live), and writing to them
 * is the caller's too: the core only decides and answers. */
#include "smtp/session_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool term_allowed(const struct smtp_session *s)
{
    const struct smtp_env *e = s->env;
    if (!e->terminal_live || e->terminal_allow == SMTP_TERMINAL_NONE)
        return false;
    return e->terminal_allow == SMTP_TERMINAL_ALL || s->authenticated;
}

bool term_mail_refused(struct smtp_session *s, enum smtp_txn_kind kind, uint64_t size)
{
    if (kind != SMTP_TXN_SEND)
        return false; /* SOML and SAML always have the mailbox to fall back on */
    const struct smtp_env *e = s->env;
    if (e->terminal_allow == SMTP_TERMINAL_NONE) {
        /* RFC 5321 4.2.4: a command this server does not carry out (EHLO does not offer it) */
        session_rule(s, "terminal_disabled");
        session_reply(s, 502, "5.5.1", "SEND is not offered here: terminal messages are disabled");
        session_bad(s);
        return true;
    }
    if (e->terminal_allow == SMTP_TERMINAL_AUTHENTICATED && !s->authenticated) {
        /* RFC 4954 6: the client may authenticate and try again */
        session_rule(s, "auth_required");
        session_reply(s, 530, "5.7.0", "Authentication required to send to a terminal");
        return true;
    }
    if (e->terminal_max_size && size > e->terminal_max_size) {
        session_rule(s, "terminal_size");
        session_reply(s, 552, "5.3.4", "Terminal messages are limited to %llu octets",
                      (unsigned long long)e->terminal_max_size);
        return true;
    }
    return false;
}

bool term_too_big(struct smtp_session *s, struct smtp_result *f)
{
    uint64_t max = s->env->terminal_max_size;
    if (s->txn.kind == SMTP_TXN_MAIL || !max || s->data.size <= max)
        return false;
    if (s->txn.kind != SMTP_TXN_SEND) {
        s->txn.nterminals = 0; /* SOML: to the mailbox instead; SAML: to the mailbox only */
        return false;
    }
    s->fail_rule = "terminal_size";
    memset(f, 0, sizeof *f);
    f->code = 552;
    snprintf(f->enh, sizeof f->enh, "5.3.4");
    snprintf(f->text, sizeof f->text, "Terminal messages are limited to %llu octets",
             (unsigned long long)max);
    return true;
}

bool term_add(struct smtp_session *s, const char *box)
{
    if (s->txn.nterminals >= SMTP_TXN_MAILBOXES_MAX)
        return false;
    if (s->txn.nterminals == s->terminals_cap) {
        size_t cap = s->terminals_cap ? s->terminals_cap * 2 : 4;
        void *p = realloc(s->txn.terminals, cap * sizeof *s->txn.terminals);
        if (!p)
            return false;
        s->txn.terminals = p;
        s->terminals_cap = cap;
    }
    snprintf(s->txn.terminals[s->txn.nterminals++], sizeof *s->txn.terminals, "%s", box);
    return true;
}

static int cmp_box(const void *a, const void *b)
{
    return strcmp(a, b);
}

void term_dedup(struct smtp_session *s)
{
    struct smtp_txn *t = &s->txn;
    if (t->nterminals > 1)
        qsort(t->terminals, t->nterminals, sizeof *t->terminals, cmp_box);
    size_t w = 0;
    for (size_t i = 0; i < t->nterminals; i++)
        if (w == 0 || strcmp(t->terminals[w - 1], t->terminals[i]) != 0)
            memmove(t->terminals[w++], t->terminals[i], sizeof *t->terminals);
    t->nterminals = w;
}

/* XWATCH: no argument; the user is the one who authenticated. Refused where it would hand mail
 * to someone unproven or in clear. */
void term_xwatch(struct smtp_session *s, const char *arg, size_t len)
{
    const struct smtp_env *e = s->env;
    (void)arg;
    if (!e->submission || !e->terminal_live || e->terminal_allow == SMTP_TERMINAL_NONE) {
        session_reply(s, 502, "5.5.1", "XWATCH is not offered here");
        session_bad(s);
        return;
    }
    if (len) {
        session_reply(s, 501, "5.5.4", "Syntax: XWATCH (no parameters)");
        session_bad(s);
        return;
    }
    if (s->state == ST_INIT || !s->esmtp) {
        session_reply(s, 503, "5.5.1", "Send EHLO first");
        session_bad(s);
        return;
    }
    if (!s->tls) {
        /* the terminal carries mail: never in clear, whatever AUTH was allowed */
        session_rule(s, "encryption_required");
        session_reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
        return;
    }
    if (!s->authenticated) {
        session_rule(s, "auth_required");
        session_reply(s, 530, "5.7.0", "Authentication required");
        return;
    }
    if (s->state != ST_READY) {
        session_reply(s, 503, "5.5.1", "XWATCH inside a mail transaction: send RSET first");
        session_bad(s);
        return;
    }
    session_ev_arg(s, s->auth_user, strlen(s->auth_user));
    session_request(s, SMTP_REQ_WATCH, AFTER_WATCH);
}

void term_resume(struct smtp_session *s, const struct smtp_result *r)
{
    if (r->ok) {
        s->state = ST_WATCH;
        s->junk = 0;
        session_reply(s, 250, "2.0.0", "watching %s: terminal messages follow; QUIT to stop",
                      s->auth_user);
        return;
    }
    session_rule(s, "watch");
    if (r->code >= 400)
        session_reply(s, r->code, r->enh, "%s", r->text);
    else
        session_reply(s, 451, "4.3.0", "Cannot watch now, try again later");
}

void smtp_session_end_watch(struct smtp_session *s, const char *why)
{
    if (s->state != ST_WATCH || s->close != SMTP_OPEN)
        return;
    session_reply(s, 421, "4.7.0", "%s The watch is over: %.200s", s->env->hostname, why);
    s->close = SMTP_CLOSE_AFTER_OUTPUT;
}

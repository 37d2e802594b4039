/* Where a recipient goes, inside the session core, once txn_rcpt has parsed it and refused the
 * routing tricks: the local mailboxes it resolves to (aliases expanded), the forward address of a
 * user marked forward= (RCPT 251), the queue of a relay domain (from any client: tern holds that
 * mail like a backup MX), an authenticated user's mail to other domains (submission only), or a
 * refusal. Queued addresses go to the transaction's foreign list, each once. For SEND, SOML and
 * SAML also the terminals: the users reached whose terminals are live (RFC 821 3.4). */
#include "smtp/session_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Appends one resolved mailbox; false when the transaction's bound is reached. */
static bool add_mailbox(struct smtp_session *s, const char *box)
{
    if (s->txn.nmailboxes >= SMTP_TXN_MAILBOXES_MAX)
        return false;
    if (s->txn.nmailboxes == s->mailboxes_cap) {
        size_t cap = s->mailboxes_cap ? s->mailboxes_cap * 2 : 4;
        void *p = realloc(s->txn.mailboxes, cap * sizeof *s->txn.mailboxes);
        if (!p)
            return false;
        s->txn.mailboxes = p;
        s->mailboxes_cap = cap;
    }
    snprintf(s->txn.mailboxes[s->txn.nmailboxes++], sizeof *s->txn.mailboxes, "%s", box);
    return true;
}

/* The same address: the domain in any case, the local part exactly (it is the remote's). */
static bool same_address(const char *a, const char *b)
{
    const char *at = strrchr(a, '@'), *bt = strrchr(b, '@');
    if (!at || !bt || at - a != bt - b)
        return strcmp(a, b) == 0;
    return memcmp(a, b, (size_t)(at - a)) == 0 && strcasecmp(at, bt) == 0;
}

/* Keeps an address for the outbound queue, once however often it is reached; false when the
 * transaction's bound is reached (or memory is short). */
static bool add_foreign(struct smtp_session *s, const char *addr)
{
    for (size_t i = 0; i < s->txn.nforeign; i++)
        if (same_address(s->txn.foreign[i], addr))
            return true;
    if (s->txn.nforeign >= SMTP_TXN_FOREIGN_MAX)
        return false;
    if (s->txn.nforeign == s->foreign_cap) {
        size_t cap = s->foreign_cap ? s->foreign_cap * 2 : 4;
        void *p = realloc(s->txn.foreign, cap * sizeof *s->txn.foreign);
        if (!p)
            return false;
        s->txn.foreign = p;
        s->foreign_cap = cap;
    }
    snprintf(s->txn.foreign[s->txn.nforeign++], sizeof *s->txn.foreign, "%s", addr);
    return true;
}

bool route_relay_domain(const struct smtp_session *s, const char *domain)
{
    char d[SMTP_DOMAIN_MAX + 1];
    size_t n = strlen(domain);
    if (!s->env->relay_domain || n == 0 || n > SMTP_DOMAIN_MAX || domain[0] == '[')
        return false;
    for (size_t i = 0; i <= n; i++)
        d[i] = (char)(domain[i] >= 'A' && domain[i] <= 'Z' ? domain[i] + 32 : domain[i]);
    return s->env->relay_domain(s->env->ctx, d);
}

/* What one recipient added to the transaction. */
struct added {
    size_t boxes;    /* local mailboxes */
    size_t forwards; /* forwarded users reached */
    bool several;    /* ... whose forward addresses differ */
    bool full;       /* a bound was reached: the recipient must be refused */
    char first[TABLES_ADDR_MAX + 1];
};

/* Resolves a local recipient: its mailboxes join the transaction, and the forward addresses of
 * the forwarded users it reaches join the foreign list. moved gets a moved user's address. */
static enum tables_status take(struct smtp_session *s, const struct smtp_path *p, char *moved,
                               size_t movedlen, struct added *a)
{
    char small[SMTP_SMALL_EXPANSION][TABLES_ADDR_MAX + 1];
    char(*big)[TABLES_ADDR_MAX + 1], (*boxes)[TABLES_ADDR_MAX + 1];
    size_t n = 0;
    enum tables_status st = txn_lookup(s, p->local, p->postmaster ? NULL : p->domain, small, &big,
                                       &boxes, &n, moved, movedlen);
    for (size_t i = 0; (st == TABLES_OK || st == TABLES_FORWARD) && i < n && !a->full; i++) {
        const struct tables_user *u = tables_user(s->env->tables, boxes[i]);
        if (!u || !u->forward[0]) {
            a->full = !add_mailbox(s, boxes[i]);
            a->boxes++;
            continue;
        }
        a->full = !add_foreign(s, u->forward);
        if (a->forwards++ == 0)
            snprintf(a->first, sizeof a->first, "%s", u->forward);
        else if (!same_address(a->first, u->forward))
            a->several = true;
    }
    free(big);
    return st;
}

/* Counts an accepted recipient. */
static void accepted(struct smtp_session *s, const char *addr)
{
    if (s->txn.nrcpts == 0)
        snprintf(s->txn.first_rcpt, sizeof s->txn.first_rcpt, "%s", addr);
    s->txn.nrcpts++;
}

/* A recipient whose mail is only queued: a relay domain's, or an authenticated user's. */
static void queue_only(struct smtp_session *s, const char *addr, const char *rule)
{
    if (!add_foreign(s, addr)) {
        session_rule(s, "recipients");
        session_reply(s, 452, "4.5.3", "Too many recipients, send the rest later");
        return;
    }
    accepted(s, addr);
    session_rule(s, rule);
    session_reply(s, 250, "2.1.5", "Recipient <%s> OK, queued for delivery", addr);
}

/* One full mailbox refuses the recipient: nothing is accepted and then lost. */
static bool any_full(struct smtp_session *s, const char *addr, size_t before)
{
    for (size_t i = before; s->env->mailbox_full && i < s->txn.nmailboxes; i++)
        if (s->env->mailbox_full(s->env->ctx, s->txn.mailboxes[i])) {
            /* which member of a list is full is not the sender's business */
            session_rule(s, "quota");
            session_reply(s, 552, "5.2.2", "<%s>: %s", addr,
                          strcasecmp(addr, s->txn.mailboxes[i]) == 0
                              ? "mailbox full"
                              : "mailbox full (one of the mailboxes it reaches)");
            return true;
        }
    return false;
}

/* SEND/SOML/SAML, a local recipient resolved into mailboxes [before, end) and forward
 * addresses [fbefore, end): which of its users get the message on a terminal, which in the
 * mailbox, and the answer saying so. A user has a terminal only with a mailbox here: forwarded
 * users and shared mailboxes never have one. */
static void route_terminal(struct smtp_session *s, const char *addr, size_t before, size_t fbefore,
                           const struct added *a)
{
    enum smtp_txn_kind kind = s->txn.kind;
    size_t tbefore = s->txn.nterminals, boxes = s->txn.nmailboxes - before, live = 0;
    bool allowed = term_allowed(s), full = false;
    for (size_t i = before; allowed && i < s->txn.nmailboxes && !full; i++) {
        if (!s->env->terminal_live(s->env->ctx, s->txn.mailboxes[i]))
            continue;
        full = !term_add(s, s->txn.mailboxes[i]);
        live++;
    }
    bool refused = false;
    if (full) {
        session_rule(s, "expansion");
        session_reply(s, 452, "4.5.3", "Too many terminals in this message, send the rest later");
        refused = true;
    } else if (kind == SMTP_TXN_SEND) {
        /* the terminals alone: no mailbox, no forward address */
        s->txn.nmailboxes = before;
        s->txn.nforeign = fbefore;
        if (live == 0) {
            /* RFC 821 4.1.1: 450 when the user is not logged in; at least one live terminal of
             * the users the recipient reaches is enough (see doc/tern.conf.5, [terminal]) */
            session_rule(s, "terminal");
            session_reply(s, 450, "4.2.1", "<%s> is not accepting terminal messages", addr);
            refused = true;
        }
    } else {
        /* SOML: the users with a live terminal keep their mailbox only as the fallback, so
         * only the others' quotas matter now; SAML: every mailbox gets it */
        for (size_t i = before; !refused && s->env->mailbox_full && i < s->txn.nmailboxes; i++) {
            bool on_terminal = false;
            for (size_t k = tbefore; kind == SMTP_TXN_SOML && k < s->txn.nterminals; k++)
                on_terminal |= strcmp(s->txn.terminals[k], s->txn.mailboxes[i]) == 0;
            if (!on_terminal && s->env->mailbox_full(s->env->ctx, s->txn.mailboxes[i])) {
                session_rule(s, "quota");
                session_reply(s, 552, "5.2.2", "<%s>: %s", addr,
                              strcasecmp(addr, s->txn.mailboxes[i]) == 0
                                  ? "mailbox full"
                                  : "mailbox full (one of the mailboxes it reaches)");
                refused = true;
            }
        }
    }
    if (refused) {
        s->txn.nmailboxes = before; /* the recipient leaves no trace in the transaction */
        s->txn.nforeign = fbefore;
        s->txn.nterminals = tbefore;
        return;
    }
    accepted(s, addr);
    if (kind == SMTP_TXN_SEND) {
        if (boxes == 1)
            session_reply(s, 250, "2.1.5", "Recipient <%s> OK, will deliver to the terminal", addr);
        else
            session_reply(s, 250, "2.1.5",
                          "Recipient <%s> OK, will deliver to the terminals of %zu of its %zu "
                          "users",
                          addr, live, boxes);
        return;
    }
    if (a->boxes == 0 && a->forwards > 0 && !a->several) {
        session_rule(s, "forward"); /* RFC 5321 3.4, as for MAIL */
        session_reply(s, 251, "2.1.5", "User not local; will forward to <%s>", a->first);
        return;
    }
    const char *why = allowed || !s->env->terminal_live ? "no terminal"
                      : s->env->terminal_allow == SMTP_TERMINAL_NONE
                          ? "terminal messages are disabled"
                          : "terminals take only authenticated senders";
    if (live == 0)
        session_reply(s, 250, "2.1.5", "Recipient <%s> OK, will deliver to the mailbox (%s)", addr,
                      why);
    else if (kind == SMTP_TXN_SAML)
        session_reply(s, 250, "2.1.5", "Recipient <%s> OK, will deliver to the mailbox and %s",
                      addr, live == 1 ? "the terminal" : "the live terminals");
    else if (live == boxes)
        session_reply(s, 250, "2.1.5", "Recipient <%s> OK, will deliver to the terminal%s", addr,
                      live == 1 ? "" : "s");
    else
        session_reply(s, 250, "2.1.5",
                      "Recipient <%s> OK, will deliver to %zu terminal%s and %zu mailbox%s", addr,
                      live, live == 1 ? "" : "s", boxes - live, boxes - live == 1 ? "" : "es");
}

void route_rcpt(struct smtp_session *s, const struct smtp_path *path, const char *addr)
{
    char moved[TABLES_ADDR_MAX + 1] = "";
    struct added a = {0};
    size_t before = s->txn.nmailboxes, fbefore = s->txn.nforeign;
    enum tables_status st = path->literal ? TABLES_FOREIGN : take(s, path, moved, sizeof moved, &a);
    /* SEND reaches a terminal, and no terminal is reached through the queue */
    bool mail = s->txn.kind != SMTP_TXN_SEND;
    if (st == TABLES_FOREIGN && mail && !path->literal && route_relay_domain(s, path->domain)) {
        queue_only(s, addr, "relay_domain");
        return;
    }
    if (st == TABLES_FOREIGN && s->authenticated && s->env->submission && mail) {
        /* Promise 2: only an authenticated user relays, and only through submission (587, 465):
         * the smtp listener never relays. The mail waits in the spool. */
        queue_only(s, addr, "relay_authenticated");
        return;
    }
    switch (st) {
    case TABLES_UNKNOWN:
        session_rule(s, "unknown_user");
        session_reply(s, 550, "5.1.1", "<%s>: no such user here", addr);
        return;
    case TABLES_MOVED:
        session_rule(s, "moved");
        session_reply(s, 551, "5.1.6", "User not local; please try <%s>", moved);
        return;
    case TABLES_FOREIGN:
        session_rule(s, "relay");
        if (!mail)
            session_reply(s, 550, "5.7.1", "<%s>: only this server's own users have terminals here",
                          addr);
        else
            session_reply(s, 550, "5.7.1",
                          "<%s>: relaying denied: this server takes mail only for its own "
                          "domains",
                          addr);
        return;
    case TABLES_TOO_MANY:
        session_rule(s, "expansion");
        session_reply(s, 452, "4.5.3", "<%s>: expands to too many mailboxes", addr);
        return;
    case TABLES_OK:
    case TABLES_FORWARD:
        break;
    }
    bool refused = true;
    if (a.full) {
        session_rule(s, "expansion");
        session_reply(s, 452, "4.5.3", "Too many mailboxes in this message, send the rest later");
    } else if (s->txn.kind != SMTP_TXN_MAIL) {
        route_terminal(s, addr, before, fbefore, &a);
        return;
    } else if (any_full(s, addr, before)) {
        /* answered */
    } else {
        refused = false;
    }
    if (refused) {
        s->txn.nmailboxes = before; /* the recipient leaves no trace in the transaction */
        s->txn.nforeign = fbefore;
        return;
    }
    accepted(s, addr);
    if (a.boxes == 0 && a.forwards > 0 && !a.several) {
        /* RFC 5321 3.4: our user, whose mail we take and pass on */
        session_rule(s, "forward");
        session_reply(s, 251, "2.1.5", "User not local; will forward to <%s>", a.first);
        return;
    }
    session_reply(s, 250, "2.1.5", "Recipient <%s> OK", addr);
}

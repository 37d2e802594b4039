/* The commands that inform rather than move mail: HELP (214/504), VRFY (250, 251 for a user
 * whose mail is forwarded, 551/550/553, or 252 when policy hides users) and EXPN (250 list/550, 252
 * or 502 per policy). What they reveal is decided by the vrfy/expn disclosure settings: harvesting
 * addresses must be a choice. The members of a shared mailbox are shown only to its own
 * authenticated members. */
#include "smtp/session_priv.h"

#include <stdio.h>
#include <string.h>

#include "smtp/help.h"

#define INFO_LINES_MAX 20 /* lines of a VRFY candidate list or an EXPN listing */

void info_help(struct smtp_session *s, const char *arg, size_t len)
{
    if (!session_junk(s))
        return;
    if (len == 0) {
        size_t n;
        const char *const *lines = smtp_help_overview(&n);
        session_reply_lines(s, 214, "2.0.0", lines, n);
        return;
    }
    const char *t = smtp_help_topic(arg, len);
    if (!t) {
        session_reply(s, 504, "5.5.1", "HELP topic unknown; send HELP for the list of commands");
        return;
    }
    session_reply(s, 214, "2.0.0", "%s", t);
}

/* Does policy let this client see real answers? */
static bool disclosed(const struct smtp_session *s, enum smtp_disclose d)
{
    return d == SMTP_DISCLOSE_ALL || (d == SMTP_DISCLOSE_AUTHENTICATED && s->authenticated);
}

/* Copies the argument without surrounding angle brackets, lowercased, into buf. */
static bool take_name(const char *arg, size_t len, char *buf, size_t n)
{
    if (len >= 2 && arg[0] == '<' && arg[len - 1] == '>') {
        arg++;
        len -= 2;
    }
    if (len == 0 || len >= n)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)arg[i];
        if (c < 0x20 || c == 0x7f)
            return false;
        buf[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    buf[len] = '\0';
    return true;
}

static void vrfy_user(struct smtp_session *s, const struct tables_user *u)
{
    if (u->moved[0])
        session_reply(s, 551, "5.1.6", "User not local; please try <%s>", u->moved);
    else if (u->forward[0]) /* RFC 5321 3.5.1: ours, passed on */
        session_reply(s, 251, "2.1.5", "User not local; will forward to <%s>", u->forward);
    else if (u->name[0])
        session_reply(s, 250, "2.1.5", "%s <%s>", u->name, u->addr);
    else
        session_reply(s, 250, "2.1.5", "<%s>", u->addr);
}

void info_vrfy(struct smtp_session *s, const char *arg, size_t len)
{
    char q[TABLES_ADDR_MAX + 1];
    if (!take_name(arg, len, q, sizeof q)) {
        session_reply(s, 501, "5.5.2", "Syntax: VRFY <user or address>");
        session_bad(s);
        return;
    }
    if (!session_junk(s))
        return;
    if (!disclosed(s, s->env->vrfy)) {
        session_reply(s, 252, "2.5.2",
                      "Cannot VRFY user, but will accept message and attempt delivery");
        return;
    }
    const char *at = strrchr(q, '@');
    if (at && !tables_is_local_domain(s->env->tables, at + 1)) {
        session_reply(s, 550, "5.7.1", "<%s>: not a local domain", q);
        return;
    }
    const struct tables_user *found[INFO_LINES_MAX];
    size_t n = tables_vrfy(s->env->tables, q, found, INFO_LINES_MAX);
    if (n == 1) {
        vrfy_user(s, found[0]);
        return;
    }
    if (n > 1) {
        char lines[INFO_LINES_MAX + 1][TABLES_ADDR_MAX + 140];
        const char *ptrs[INFO_LINES_MAX + 1];
        size_t k = 0;
        snprintf(lines[k], sizeof lines[k], "User ambiguous; possibilities are");
        ptrs[k] = lines[k];
        k++;
        for (size_t i = 0; i < n && i < INFO_LINES_MAX; i++, k++) {
            snprintf(lines[k], sizeof lines[k], "%s <%s>", found[i]->name, found[i]->addr);
            ptrs[k] = lines[k];
        }
        session_reply_lines(s, 553, "5.1.4", ptrs, k);
        return;
    }
    const char *members[1];
    if (tables_expn(s->env->tables, q, members, 1) >= 0) {
        session_reply(s, 250, "2.1.5", "<%s> is a mailing list; EXPN shows its members", q);
        return;
    }
    session_reply(s, 550, "5.1.1", "<%s>: no such user here", q);
}

/* q as a full address: a bare local part is taken in the primary domain, as EXPN does. */
static bool full_address(const struct smtp_session *s, const char *q, char *out, size_t n)
{
    if (strchr(q, '@'))
        return (size_t)snprintf(out, n, "%s", q) < n;
    const char *d = tables_domain(s->env->tables, 0);
    return d && (size_t)snprintf(out, n, "%s@%s", q, d) < n;
}

/* 250 with one line per member (n of them, the first INFO_LINES_MAX in members). */
static void reply_members(struct smtp_session *s, const char *q, const char *const *members, long n)
{
    char lines[INFO_LINES_MAX + 1][TABLES_ADDR_MAX + 140];
    const char *ptrs[INFO_LINES_MAX + 1];
    size_t k = 0;
    for (long i = 0; i < n && i < INFO_LINES_MAX; i++, k++) {
        const struct tables_user *u = tables_user(s->env->tables, members[i]);
        if (u && u->name[0])
            snprintf(lines[k], sizeof lines[k], "%s <%s>", u->name, members[i]);
        else
            snprintf(lines[k], sizeof lines[k], "<%s>", members[i]);
        ptrs[k] = lines[k];
    }
    if (n > INFO_LINES_MAX) {
        snprintf(lines[k], sizeof lines[k], "... and %ld more", n - INFO_LINES_MAX);
        ptrs[k] = lines[k];
        k++;
    }
    if (k == 0) {
        session_reply(s, 250, "2.1.5", "<%s> has no members", q);
        return;
    }
    session_reply_lines(s, 250, "2.1.5", ptrs, k);
}

/* EXPN of a shared mailbox: its members, to its members only. */
static void expn_shared(struct smtp_session *s, const char *box)
{
    if (!s->authenticated || !tables_is_member(s->env->tables, box, s->auth_user)) {
        session_reply(s, 550, "5.7.1",
                      "<%s> is a shared mailbox; its members are shown to its members only", box);
        return;
    }
    const char *members[INFO_LINES_MAX];
    long n = tables_shared_members(s->env->tables, box, members, INFO_LINES_MAX);
    reply_members(s, box, members, n);
}

void info_expn(struct smtp_session *s, const char *arg, size_t len)
{
    char q[TABLES_ADDR_MAX + 1];
    if (!take_name(arg, len, q, sizeof q)) {
        session_reply(s, 501, "5.5.2", "Syntax: EXPN <list>");
        session_bad(s);
        return;
    }
    if (!session_junk(s))
        return;
    if (s->env->expn == SMTP_DISCLOSE_NONE) {
        session_reply(s, 502, "5.5.1", "EXPN is disabled by policy");
        return;
    }
    if (!disclosed(s, s->env->expn)) {
        session_reply(s, 252, "2.5.2", "Cannot EXPN: members are shown to authenticated users");
        return;
    }
    char box[TABLES_ADDR_MAX + 1];
    if (full_address(s, q, box, sizeof box) && tables_is_shared(s->env->tables, box)) {
        expn_shared(s, box);
        return;
    }
    const char *members[INFO_LINES_MAX];
    long n = tables_expn(s->env->tables, q, members, INFO_LINES_MAX);
    if (n < 0) {
        session_reply(s, 550, "5.1.1", "<%s>: no such mailing list here", q);
        return;
    }
    reply_members(s, q, members, n);
}

/* The commands that hand queued mail to the peer, inside the session core. ETRN (RFC 1985) asks
 * tern to start delivering a relay domain's queue: the core checks syntax, sequence and that the
 * node is a relay domain, then env->etrn starts the run. TURN (RFC 821 4.1.1) reverses the roles
 * on this connection; RFC 2645 explains why it is given only to an authenticated user entitled
 * to the domain (turn= in the users file): otherwise anyone naming a domain could take its mail.
 * After the 250 the core issues SMTP_REQ_TURN and takes no more input. */
#include "smtp/session_priv.h"

#include <stdio.h>
#include <string.h>

#include "smtp/grammar.h"

#define ETRN_TEXT_MAX 200 /* reply text env->etrn may write */

/* Gives the hook's answer for node: its text, or else RFC 1985 5.1's words, with the enhanced
 * code the reply's class calls for (RFC 3463: 4.x.x with a 4yz reply). */
static void etrn_answer(struct smtp_session *s, int code, const char *text, const char *node)
{
    if (code != 250 && code != 251 && code != 252 && code != 253 && code != 459)
        code = 458; /* anything else the queue says is "cannot start it now" */
    const char *enh = code < 300 ? "2.0.0" : code == 459 ? "4.7.1" : "4.3.0";
    if (code >= 400)
        session_rule(s, "queue");
    if (text[0])
        session_reply(s, code, enh, "%s", text);
    else if (code == 250)
        session_reply(s, code, enh, "OK, queuing for node %s started", node);
    else if (code == 251)
        session_reply(s, code, enh, "OK, no messages waiting for node %s", node);
    else if (code < 300)
        session_reply(s, code, enh, "OK, pending messages for node %s started", node);
    else if (code == 459)
        session_reply(s, code, enh, "Node %s not allowed", node);
    else
        session_reply(s, code, enh, "Unable to queue messages for node %s", node);
}

/* Writes the n names joined by sep into buf (cap bytes, always terminated); its length. */
static size_t join(char *buf, size_t cap, const char *const *names, size_t n, const char *sep)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used + 1 < cap; i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i ? sep : "", names[i]);
        if (w < 0)
            break;
        used += (size_t)w < cap - used ? (size_t)w : cap - used - 1;
    }
    return used;
}

/* A queue name after '#': printable ASCII, no blanks (it is echoed in the reply). */
static bool queue_name_ok(const char *name, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (name[i] <= ' ' || name[i] > '~')
            return false;
    return len > 0;
}

/* ETRN node | ETRN @node (and its subdomains) | ETRN #queue. */
void turn_etrn(struct smtp_session *s, const char *arg, size_t len)
{
    if (!s->env->etrn || s->env->submission) {
        /* RFC 1985 is for mail servers pulling their queue, never for submission clients */
        session_rule(s, "not_available");
        session_reply(s, 502, "5.5.1", "ETRN is not available on this listener");
        session_bad(s);
        return;
    }
    bool queue = len > 0 && arg[0] == '#', subdomains = len > 0 && arg[0] == '@';
    const char *name = queue || subdomains ? arg + 1 : arg;
    size_t nlen = queue || subdomains ? len - 1 : len;
    if (len == 0) {
        session_reply(s, 501, "5.5.4", "Syntax: ETRN node, ETRN @node or ETRN #queue");
        session_bad(s);
        return;
    }
    bool ok = queue ? queue_name_ok(name, nlen)
                    : nlen <= SMTP_DOMAIN_MAX && smtp_valid_domain(name, nlen, false);
    if (!ok) {
        session_reply(s, 501, "5.5.2", "Syntax: ETRN %s: not a valid %s name",
                      queue ? "#queue" : "node", queue ? "queue" : "domain");
        session_bad(s);
        return;
    }
    if (!session_junk(s)) /* each ETRN may start a queue run: a flood of them is junk */
        return;
    if (s->state != ST_READY) {
        session_reply(s, 503, "5.5.1",
                      s->state == ST_INIT ? "Send HELO or EHLO first"
                                          : "ETRN inside a mail transaction: send RSET first");
        session_bad(s);
        return;
    }
    char node[SMTP_DOMAIN_MAX + 1];
    for (size_t i = 0; i < nlen && i < SMTP_DOMAIN_MAX; i++)
        node[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    node[nlen < SMTP_DOMAIN_MAX ? nlen : SMTP_DOMAIN_MAX] = '\0';
    if (queue) {
        /* 459, not 458: there will never be such a queue here, so retrying cannot help */
        session_rule(s, "named_queue");
        session_reply(s, 459, "4.5.4", "Node #%s not allowed: tern has no named queues", node);
        return;
    }
    if (!route_relay_domain(s, node)) {
        session_rule(s, "not_relay_domain");
        session_reply(s, 459, "4.7.1", "Node %s not allowed: not a domain this server relays for",
                      node);
        return;
    }
    char text[ETRN_TEXT_MAX];
    memset(text, 0, sizeof text);
    int code = s->env->etrn(s->env->ctx, node, subdomains, text, sizeof text);
    text[sizeof text - 1] = '\0';
    etrn_answer(s, code, text, node);
}

/* TURN: 502 without AUTH, 503 inside a transaction, 550 without a relay domain to hand over;
 * else 250 and the roles reverse. */
void turn_command(struct smtp_session *s, const char *arg, size_t len)
{
    if (len) {
        session_reply(s, 501, "5.5.4", "Syntax: TURN (no parameters)");
        session_bad(s);
        return;
    }
    if (!session_junk(s)) /* refused TURNs move no mail: bounded like NOOP */
        return;
    if (!s->authenticated) {
        /* RFC 2645 1: an unauthenticated TURN would give a domain's mail to whoever asks */
        session_rule(s, "auth_required");
        session_reply(s, 502, "5.7.0", "TURN needs AUTH: authenticate first (RFC 2645)");
        return;
    }
    if (s->state != ST_READY) {
        session_reply(s, 503, "5.5.1", "TURN inside a mail transaction: send RSET first");
        session_bad(s);
        return;
    }
    const char *all[TABLES_TURN_MAX];
    size_t n = tables_turn_domains(tables_user(s->env->tables, s->auth_user), s->turn_buf,
                                   sizeof s->turn_buf, all, TABLES_TURN_MAX);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) /* relay domains now, not when the users file was read */
        if (route_relay_domain(s, all[i]))
            s->turn_ptrs[k++] = all[i];
    if (k == 0) {
        session_rule(s, "not_entitled");
        session_reply(s, 550, "5.7.1", "No relay domain to TURN for %s", s->auth_user);
        return;
    }
    char list[TABLES_TURN_LEN], shown[TABLES_TURN_LEN + TABLES_TURN_MAX];
    session_ev_arg(s, list, join(list, sizeof list, s->turn_ptrs, k, ","));
    join(shown, sizeof shown, s->turn_ptrs, k, ", ");
    session_reply(s, 250, "2.0.0", "OK, reversing roles for %s", shown);
    s->turned = true;
    session_request(s, SMTP_REQ_TURN, AFTER_TURN);
    s->req.turn_domains = s->turn_ptrs;
    s->req.nturn = k;
}

/* The caller has delivered, or could not take the connection over: it ends either way. In the
 * second case the peer hears why, though it may no longer listen: it took the server's role. */
void turn_resume(struct smtp_session *s, const struct smtp_result *r)
{
    if (!r->ok)
        session_reply(s, r->code >= 400 ? r->code : 421, r->code >= 400 ? r->enh : "4.3.0", "%s",
                      r->code >= 400 ? r->text : "Cannot reverse roles now, closing connection");
    s->close = SMTP_CLOSE_AFTER_OUTPUT;
}

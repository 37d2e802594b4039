/* The session core's security commands: STARTTLS (RFC 3207) and AUTH (RFC 4954). The core only
 * sequences them: the handshake and every SASL step are requests the caller performs (the steps
 * on worker threads, since they hash passwords). After STARTTLS everything learnt in clear is
 * forgotten, including input the client pipelined behind the command (CVE-2011-0411). */
#include "smtp/session_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_FAILURES_MAX 3 /* failed AUTH commands in one session before 421 */

void auth_starttls(struct smtp_session *s, const char *arg, size_t len)
{
    if (len) {
        session_reply(s, 501, "5.5.4", "Syntax: STARTTLS (no parameters)");
        session_bad(s);
        return;
    }
    if (s->tls) {
        session_reply(s, 503, "5.5.1", "TLS is already active");
        session_bad(s);
        return;
    }
    if (s->state == ST_MAIL) {
        session_reply(s, 503, "5.5.1", "STARTTLS inside a mail transaction: send RSET first");
        session_bad(s);
        return;
    }
    if (!s->env->tls_available) {
        session_reply(s, 454, "4.7.0", "TLS not available: no certificate is configured");
        return;
    }
    session_reply(s, 220, "2.0.0", "Ready to start TLS");
    session_request(s, SMTP_REQ_STARTTLS, AFTER_STARTTLS);
}

/* Is the AUTH command (or a continuation) allowed here? Answers the refusal if not. */
static bool auth_allowed(struct smtp_session *s)
{
    if (s->state == ST_INIT || !s->esmtp) {
        session_reply(s, 503, "5.5.1", "Send EHLO first");
        session_bad(s);
        return false;
    }
    if (s->authenticated) {
        session_reply(s, 503, "5.5.1", "Already authenticated");
        session_bad(s);
        return false;
    }
    if (s->state != ST_READY) {
        session_reply(s, 503, "5.5.1", "AUTH is not allowed during a mail transaction");
        session_bad(s);
        return false;
    }
    if (!s->env->auth_mechs) {
        session_reply(s, 502, "5.5.1", "AUTH is not available on this listener");
        session_bad(s);
        return false;
    }
    if (!s->tls && !s->env->auth_cleartext_ok) {
        /* RFC 4954 4: never take a password in clear */
        session_rule(s, "encryption_required");
        session_reply(s, 538, "5.7.11",
                      "Encryption required for requested authentication "
                      "mechanism");
        return false;
    }
    return true;
}

/* Hands a copy of the response (or NULL) to the caller as the next SASL step. */
static void step(struct smtp_session *s, const char *mech, const char *data, size_t len,
                 bool has_data)
{
    free(s->auth_resp);
    s->auth_resp = NULL;
    if (has_data) {
        s->auth_resp = malloc(len + 1);
        if (!s->auth_resp) {
            session_reply(s, 454, "4.7.0", "Temporary authentication failure");
            s->state = ST_READY;
            return;
        }
        memcpy(s->auth_resp, data, len);
        s->auth_resp[len] = '\0';
    }
    session_request(s, SMTP_REQ_AUTH, AFTER_AUTH);
    s->req.mech = mech;
    s->req.auth_data = s->auth_resp;
    s->req.auth_cancel = false;
}

void auth_command(struct smtp_session *s, const char *arg, size_t len)
{
    if (!auth_allowed(s))
        return;
    size_t m = 0;
    while (m < len && arg[m] != ' ')
        m++;
    if (m == 0 || m >= sizeof s->auth_mech) {
        session_reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
        session_bad(s);
        return;
    }
    /* copied first, so that the audit log names what was asked for even when refused */
    for (size_t i = 0; i < m; i++)
        s->auth_mech[i] = (char)(arg[i] >= 'a' && arg[i] <= 'z' ? arg[i] - 32 : arg[i]);
    s->auth_mech[m] = '\0';
    if (!s->env->auth_mech_ok || !s->env->auth_mech_ok(s->env->ctx, arg, m)) {
        session_rule(s, "mechanism");
        session_reply(s, 504, "5.5.4", "Unrecognized authentication mechanism; use one of %s",
                      s->env->auth_mechs);
        return;
    }
    size_t r = m;
    while (r < len && arg[r] == ' ')
        r++;
    if (r == len) {
        step(s, s->auth_mech, NULL, 0, false);
    } else if (len - r == 1 && arg[r] == '=') {
        step(s, s->auth_mech, "", 0, true); /* "=" is an empty initial response */
    } else if (memchr(arg + r, ' ', len - r)) {
        session_reply(s, 501, "5.5.2", "Invalid base64 in the initial response");
        session_bad(s);
    } else {
        step(s, s->auth_mech, arg + r, len - r, true);
    }
}

/* A line after 334: the client's next response, or "*" to give up. */
void auth_response(struct smtp_session *s, const char *line, size_t len)
{
    if (len == 1 && line[0] == '*') {
        session_request(s, SMTP_REQ_AUTH, AFTER_AUTH);
        s->req.mech = NULL;
        s->req.auth_data = NULL;
        s->req.auth_cancel = true;
        return;
    }
    step(s, NULL, line, len, true);
}

void auth_resume(struct smtp_session *s, enum smtp_after after, const struct smtp_result *r)
{
    free(s->auth_resp);
    s->auth_resp = NULL;
    free(s->bigline); /* long AUTH lines are over */
    s->bigline = NULL;
    if (after == AFTER_STARTTLS) {
        /* RFC 3207 4.2: forget everything learnt before the handshake */
        txn_reset(s);
        s->state = ST_INIT;
        s->esmtp = false;
        s->helo[0] = '\0';
        s->authenticated = false;
        s->auth_user[0] = '\0';
        s->tls = true;
        snprintf(s->tls_info, sizeof s->tls_info, "%s", r->tls_info);
        return;
    }
    if (s->req.auth_cancel) {
        s->state = ST_READY;
        session_rule(s, "cancelled");
        session_reply(s, 501, "5.0.0", "Authentication cancelled");
        return;
    }
    if (r->ok && r->more) {
        s->state = ST_AUTH;
        reply_add(&s->out, false, 334, NULL, "%s", r->challenge); /* 334 has no status code */
        return;
    }
    s->state = ST_READY;
    snprintf(s->ev_user, sizeof s->ev_user, "%s", r->user); /* named even when it failed */
    if (r->ok) {
        s->authenticated = true;
        snprintf(s->auth_user, sizeof s->auth_user, "%s", r->user);
        session_reply(s, 235, "2.7.0", "Authentication successful");
        return;
    }
    session_rule(s, r->code == 535 ? "credentials" : r->code == 454 ? "temporary" : NULL);
    if (r->code >= 400)
        session_reply(s, r->code, r->enh, "%s", r->text);
    else
        session_reply(s, 454, "4.7.0", "Temporary authentication failure");
    if (r->code == 535 && ++s->auth_failures >= AUTH_FAILURES_MAX && s->close == SMTP_OPEN) {
        session_reply(s, 421, "4.7.0", "%s Too many authentication failures, closing connection",
                      s->env->hostname);
        s->close = SMTP_CLOSE_AFTER_OUTPUT;
        session_limit(s, "auth_failures", "too many failed AUTH commands, connection closed");
    }
}

const char *smtp_session_auth_user(const struct smtp_session *s)
{
    return s->auth_user;
}

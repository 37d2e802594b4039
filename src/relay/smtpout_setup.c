/* The outbound client's way to "ready": the greeting (220, anything else is the failure), EHLO
 * (HELO when EHLO gets 500 or 502, RFC 5321 §4.1.1.1 and §3.2), STARTTLS as the TLS mode asks
 * and EHLO again after it with the old capabilities forgotten (RFC 3207 §4.2), then AUTH PLAIN
 * or LOGIN (RFC 4954) when credentials were given, which is refused over cleartext: a password
 * never leaves unencrypted. A refusal at any step is reported after a polite QUIT. */
#include "relay/smtpout_priv.h"

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const mode_names[] = {"none",   "may",     "encrypt",
                                         "verify", "wrapper", "wrapper+verify"};

void so_setup_begin(struct smtpout *s)
{
    s->state = SO_SETUP;
    if (smtpc_expect(s->core, TERN_CMD_CONNECT) < 0) {
        so_fail(s, "4.3.0", "cannot await the greeting of %s", s->namaddr);
        return;
    }
    so_arm_reply(s);
    so_process_input(s); /* an attached connection may hold the greeting already */
}

static void greet(struct smtpout *s, bool ehlo)
{
    char line[300];
    snprintf(line, sizeof line, "%s %s", ehlo ? "EHLO" : "HELO", s->helo);
    if (so_command(s, ehlo ? TERN_CMD_EHLO : TERN_CMD_HELO, line, false) == 0)
        so_flush(s, false);
}

void so_setup_after_tls(struct smtpout *s)
{
    memset(&s->caps, 0, sizeof s->caps); /* RFC 3207 §4.2: forget what was said in clear */
    s->state = SO_SETUP;
    greet(s, true);
    so_arm_reply(s);
}

/* A refusal of ours, reported like the server's. */
static void refuse(struct smtpout *s, const char *enh, enum tern_cmd cmd, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void refuse(struct smtpout *s, const char *enh, enum tern_cmd cmd, const char *fmt, ...)
{
    struct smtpout_reply r;
    va_list ap;
    va_start(ap, fmt);
    so_vlocal(&r, 0, enh, cmd, fmt, ap);
    va_end(ap);
    so_refused(s, &r);
}

/* Is mech in the space-separated list of caps->auth? */
static bool offered(const struct tern_caps *caps, const char *mech)
{
    size_t n = strlen(mech);
    for (const char *p = caps->auth; *p; p += strcspn(p, " "), p += *p == ' ')
        if (strncasecmp(p, mech, n) == 0 && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

/* Sends "prefix<base64 of data>" as an AUTH line, wiping every copy. */
static void send_b64(struct smtpout *s, const char *prefix, const unsigned char *data, size_t n)
{
    size_t plen = strlen(prefix), cap = plen + 4 * ((n + 2) / 3) + 1;
    char *line = malloc(cap);
    if (!line) {
        so_fail(s, "4.3.0", "out of memory authenticating to %s", s->namaddr);
        return;
    }
    memcpy(line, prefix, plen);
    EVP_EncodeBlock((unsigned char *)line + plen, data, (int)n);
    if (so_command(s, TERN_CMD_AUTH, line, true) == 0)
        so_flush(s, true);
    OPENSSL_cleanse(line, cap);
    free(line);
}

static void start_auth(struct smtpout *s)
{
    if (!s->tls.on) {
        refuse(s, "4.7.11", TERN_CMD_AUTH,
               "refusing to send the password for %s to %s without TLS (TLS mode %s%s); use "
               "TLS, or no credentials for this host",
               s->user, s->namaddr, mode_names[s->o.tls],
               s->o.tls == SMTPOUT_TLS_MAY ? ", and the server offers no STARTTLS" : "");
        return;
    }
    bool plain = offered(&s->caps, "PLAIN"), login = offered(&s->caps, "LOGIN");
    if (!plain && !login) {
        refuse(s, "4.7.8", TERN_CMD_AUTH,
               "%s offers no SASL mechanism smtpout speaks (it offers \"%s\"; smtpout speaks "
               "PLAIN and LOGIN), and credentials are configured for it",
               s->namaddr, s->caps.auth);
        return;
    }
    s->auth_step = 0;
    s->auth_login = !plain;
    s->auth_cancelled = false;
    if (s->auth_login) {
        if (so_command(s, TERN_CMD_AUTH, "AUTH LOGIN", false) == 0)
            so_flush(s, false);
        return;
    }
    /* RFC 4616: authzid (empty) NUL authcid NUL passwd, as the initial response */
    size_t ul = strlen(s->user), pl = strlen(s->password), n = ul + pl + 2;
    unsigned char *msg = malloc(n);
    if (!msg) {
        so_fail(s, "4.3.0", "out of memory authenticating to %s", s->namaddr);
        return;
    }
    msg[0] = 0;
    memcpy(msg + 1, s->user, ul);
    msg[1 + ul] = 0;
    memcpy(msg + 2 + ul, s->password, pl);
    send_b64(s, "AUTH PLAIN ", msg, n);
    OPENSSL_cleanse(msg, n);
    free(msg);
}

/* TLS is settled (on, or not to be): AUTH, or ready. */
static void after_tls(struct smtpout *s)
{
    if (s->user)
        start_auth(s);
    else
        so_ready(s);
}

/* After the (first or second) EHLO or HELO: STARTTLS when the mode asks for it. */
static void after_greet(struct smtpout *s)
{
    enum smtpout_tls m = s->o.tls;
    bool want = m == SMTPOUT_TLS_MAY || m == SMTPOUT_TLS_ENCRYPT || m == SMTPOUT_TLS_VERIFY;
    if (s->tls.on || !want) {
        after_tls(s);
        return;
    }
    if (s->caps.flags & TERN_CAP_STARTTLS) {
        if (so_command(s, TERN_CMD_STARTTLS, "STARTTLS", false) == 0)
            so_flush(s, false);
        return;
    }
    if (m == SMTPOUT_TLS_MAY) {
        after_tls(s); /* opportunistic: cleartext it is */
        return;
    }
    refuse(s, "4.7.4", TERN_CMD_STARTTLS,
           "%s does not offer STARTTLS%s and TLS is required for it (TLS mode %s)", s->namaddr,
           s->caps.esmtp ? "" : " (it does not speak ESMTP)", mode_names[m]);
}

static void on_starttls(struct smtpout *s, const struct tern_reply *r,
                        const struct smtpout_reply *res)
{
    if (r->cls != TERN_POSITIVE) {
        if (s->o.tls == SMTPOUT_TLS_MAY)
            after_tls(s); /* refused, the session unchanged: go on in clear */
        else
            so_refused(s, res);
        return;
    }
    if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
        /* anything after the 220 came before TLS, in clear: an injection attempt (the
         * server-side twin is CVE-2011-0411) or a broken server; never read it as encrypted */
        s->tls.failed = true;
        so_fail(s, "4.7.0",
                "%s sent data after its 220 to STARTTLS, before TLS began; closed the connection "
                "(a broken server, or someone injecting commands)",
                s->namaddr);
        return;
    }
    s->after_starttls = true;
    so_tls_start(s);
}

static void on_auth(struct smtpout *s, const struct tern_reply *r, const struct smtpout_reply *res)
{
    if (r->cls == TERN_POSITIVE) {
        so_ready(s);
        return;
    }
    if (r->cls == TERN_INTERMEDIATE && !s->auth_cancelled) {
        if (!s->auth_login || s->auth_step >= 2) {
            /* a challenge PLAIN or LOGIN does not have: RFC 4954 §4 cancels with "*" */
            s->auth_cancelled = true;
            if (so_command(s, TERN_CMD_AUTH, "*", false) == 0)
                so_flush(s, false);
            return;
        }
        /* LOGIN asks for the user name, then the password (its prompts are not checked:
         * servers word them differently) */
        const char *v = s->auth_step++ == 0 ? s->user : s->password;
        send_b64(s, "", (const unsigned char *)v, strlen(v));
        return;
    }
    if (s->auth_cancelled) {
        refuse(s, "4.7.0", TERN_CMD_AUTH,
               "%s sent more AUTH %s challenges than the mechanism has; AUTH cancelled", s->namaddr,
               s->auth_login ? "LOGIN" : "PLAIN");
        return;
    }
    so_refused(s, res);
}

void so_setup_reply(struct smtpout *s, const struct tern_reply *r)
{
    struct smtpout_reply res;
    so_reply_of(&res, r);
    switch (r->cmd) {
    case TERN_CMD_CONNECT:
        if (r->cls != TERN_POSITIVE)
            so_refused(s, &res);
        else
            greet(s, true);
        break;
    case TERN_CMD_EHLO:
        if (r->cls == TERN_POSITIVE) {
            smtpc_parse_caps(r, true, &s->caps);
            after_greet(s);
        } else if (r->code == 500 || r->code == 502) {
            greet(s, false); /* an RFC 821 server */
        } else {
            so_refused(s, &res);
        }
        break;
    case TERN_CMD_HELO:
        if (r->cls == TERN_POSITIVE) {
            smtpc_parse_caps(r, false, &s->caps);
            after_greet(s);
        } else {
            so_refused(s, &res);
        }
        break;
    case TERN_CMD_STARTTLS:
        on_starttls(s, r, &res);
        break;
    case TERN_CMD_AUTH:
        on_auth(s, r, &res);
        break;
    default:
        break;
    }
}

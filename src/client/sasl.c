/* tern_auth: the client side of SMTP AUTH (RFC 4954) through GNU SASL, for PLAIN, LOGIN and
 * SCRAM-SHA-256. One Gsasl context serves the process, made once (pthread_once) and only read
 * afterwards; everything an exchange changes is in its own Gsasl_session, so handles on different
 * threads authenticate at once. The credentials go to GNU SASL as session properties, never
 * through a callback, a log or the transcript, and every buffer that held an encoding of the
 * password is wiped before it is freed. */
#include "client/driver.h"
#include "client/reply.h"

#include <gsasl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AUTH_MAX_STEPS 8 /* SCRAM needs 3 responses, LOGIN 2, PLAIN 0 after the first line */

static const char *const mechs_by_preference[] = {"SCRAM-SHA-256", "PLAIN", "LOGIN"};
#define NMECHS (sizeof mechs_by_preference / sizeof mechs_by_preference[0])

static pthread_once_t gsasl_once = PTHREAD_ONCE_INIT;
static Gsasl *gsasl_ctx; /* the one global: GNU SASL's library context, never written after */
static int gsasl_rc;

static void gsasl_setup(void)
{
    gsasl_rc = gsasl_init(&gsasl_ctx);
}

/* Overwrites a string that held an encoding of the password, before it is freed. */
static void wipe(char *s)
{
    if (!s)
        return;
    volatile char *v = s;
    for (size_t i = 0; s[i]; i++)
        v[i] = 0;
}

static void wipe_gsasl_free(char *s)
{
    wipe(s);
    gsasl_free(s);
}

/* Is mech (any case) in the space-separated list? */
static bool listed(const char *list, const char *mech)
{
    size_t n = strlen(mech);
    for (const char *p = list; *p; p += strcspn(p, " "), p += *p == ' ')
        if (strncasecmp(p, mech, n) == 0 && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

/* The mechanism to use: mech if libtern speaks it, else the best the server offers. */
static const char *choose(struct tern_client *c, const char *mech, struct tern_reply *r)
{
    if (mech) {
        for (size_t i = 0; i < NMECHS; i++)
            if (strcasecmp(mech, mechs_by_preference[i]) == 0)
                return mechs_by_preference[i];
        creply_local(r, TERN_CODE_LOCAL, TERN_CMD_AUTH,
                     "libtern does not speak the SASL mechanism \"%.40s\": use SCRAM-SHA-256, "
                     "PLAIN or LOGIN",
                     mech);
        return NULL;
    }
    if (!c->caps.auth[0]) {
        creply_local(r, TERN_CODE_LOCAL, TERN_CMD_AUTH,
                     "%s does not offer AUTH here (many servers offer it only after STARTTLS, "
                     "and only after EHLO)",
                     c->host);
        return NULL;
    }
    for (size_t i = 0; i < NMECHS; i++)
        if (listed(c->caps.auth, mechs_by_preference[i]))
            return mechs_by_preference[i];
    creply_local(r, TERN_CODE_LOCAL, TERN_CMD_AUTH,
                 "%s offers no SASL mechanism libtern speaks (it offers %s; libtern speaks "
                 "SCRAM-SHA-256, PLAIN, LOGIN)",
                 c->host, c->caps.auth);
    return NULL;
}

/* Cancels the exchange with "*" (RFC 4954 §4) after the client side could not go on; r then
 * says why (code 0), unless the connection broke meanwhile (101). */
static int cancel(struct tern_client *c, struct tern_reply *r, const char *why)
{
    struct tern_reply tmp = {0};
    if (drv_exchange(c, TERN_CMD_AUTH, "*", false, &tmp) < 0 && tmp.code == TERN_CODE_CONNECTION)
        creply_copy(r, &tmp);
    else
        creply_local(r, TERN_CODE_LOCAL, TERN_CMD_AUTH, "%s", why);
    tern_reply_free(&tmp);
    return -1;
}

int tern_auth(struct tern_client *c, const char *mech, const char *user, const char *password,
              struct tern_reply *reply)
{
    if (!user || !password) {
        creply_local(reply, TERN_CODE_LOCAL, TERN_CMD_AUTH,
                     "AUTH needs a user name and a password");
        return -1;
    }
    if (drv_ready(c, TERN_CMD_AUTH, reply) < 0)
        return -1;
    if (!tern_is_tls(c) && !c->o.auth_without_tls) {
        creply_local(reply, TERN_CODE_LOCAL, TERN_CMD_AUTH,
                     "refusing to send a password over a connection without TLS: use STARTTLS or "
                     "implicit TLS (auth_without_tls is for loopback tests)");
        return -1;
    }
    const char *name = choose(c, mech, reply);
    if (!name)
        return -1;
    pthread_once(&gsasl_once, gsasl_setup);
    Gsasl_session *s = NULL;
    int rc = gsasl_rc == GSASL_OK ? gsasl_client_start(gsasl_ctx, name, &s) : gsasl_rc;
    if (rc != GSASL_OK) {
        creply_local(reply, TERN_CODE_LOCAL, TERN_CMD_AUTH,
                     "cannot start SASL %s: %s; is GNU SASL built with it?", name,
                     gsasl_strerror(rc));
        return -1;
    }
    gsasl_property_set(s, GSASL_AUTHID, user);
    gsasl_property_set(s, GSASL_PASSWORD, password);

    char *out = NULL;
    char *line = NULL;
    int result = -1;
    bool login = strcmp(name, "LOGIN") == 0;
    if (!login) { /* PLAIN and SCRAM begin with the client: an initial response (RFC 4954 §4) */
        rc = gsasl_step64(s, "", &out);
        if (rc != GSASL_OK && rc != GSASL_NEEDS_MORE) {
            creply_local(reply, TERN_CODE_LOCAL, TERN_CMD_AUTH, "SASL %s cannot begin: %s", name,
                         gsasl_strerror(rc));
            goto done;
        }
    }
    size_t n = strlen(name) + (out ? strlen(out) : 0) + 8;
    if (!(line = malloc(n))) {
        creply_local(reply, TERN_CODE_LOCAL, TERN_CMD_AUTH, "out of memory starting AUTH");
        goto done;
    }
    snprintf(line, n, "AUTH %s%s%s", name, login ? "" : " ", login ? "" : out[0] ? out : "=");
    wipe_gsasl_free(out);
    out = NULL;
    int ex = drv_exchange(c, TERN_CMD_AUTH, line, !login, reply);
    for (int step = 0; ex == 1; step++) { /* 334: a challenge to answer */
        if (step == AUTH_MAX_STEPS) {
            char why[400];
            snprintf(why, sizeof why, "%s sent more %s challenges than the mechanism has; gave up",
                     c->host, name);
            cancel(c, reply, why);
            goto done;
        }
        rc = gsasl_step64(s, reply->nlines ? reply->lines[0] : "", &out);
        if (rc != GSASL_OK && rc != GSASL_NEEDS_MORE) {
            /* SCRAM lands here when the server's signature is wrong: it does not know the
             * password, so it is not the server it claims to be */
            char why[400];
            snprintf(why, sizeof why, "cannot answer the %s challenge of %s: %s; AUTH cancelled",
                     name, c->host, gsasl_strerror(rc));
            cancel(c, reply, why);
            goto done;
        }
        ex = drv_exchange(c, TERN_CMD_AUTH, out, true, reply);
        wipe_gsasl_free(out);
        out = NULL;
    }
    result = ex == 0 ? 0 : -1;
done:
    wipe_gsasl_free(out);
    wipe(line);
    free(line);
    gsasl_finish(s);
    return result;
}

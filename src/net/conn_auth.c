/* AUTH for one connection: each SASL step of the session core's AUTH requests runs on the worker
 * pool (GNU SASL hashes), and its outcome goes through the brute-force throttle, which may hold
 * a failed reply back before the session sees it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/sasl.h"
#include "auth/throttle.h"
#include "net/conn_priv.h"
#include "util/log.h"

/* --- AUTH, step by step
 * ------------------------------------------------------------------------------ */

static void auth_run(void *arg)
{
    struct job *j = arg;
    char why[256] = "";
    j->st = sasl_conn_step(j->c->sasl, j->in, &j->out, j->user, sizeof j->user, why, sizeof why);
    snprintf(j->err, sizeof j->err, "%s", why);
}

static void hold_done(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    conn_resume(c, &c->held);
}

static void auth_done(void *arg)
{
    struct job *j = arg;
    struct conn *c = j->c;
    struct smtp_result r = {0};
    char authid[TABLES_ADDR_MAX + 1];
    snprintf(authid, sizeof authid, "%s", c->sasl ? sasl_conn_authid(c->sasl) : "");
    time_t t = time(NULL);
    unsigned delay = 0;
    switch (j->st) {
    case SASL_CONTINUE:
        r.ok = true;
        r.more = true;
        if (snprintf(r.challenge, sizeof r.challenge, "%s", j->out ? j->out : "") >=
            (int)sizeof r.challenge)
            conn_fail_result(&r, 454, "4.7.0", "Temporary authentication failure");
        break;
    case SASL_OK:
        /* keyed on who proved the password: an admin acting for a user is the admin */
        if (throttle_blocked(c->srv->throttle, c->ip, authid, t)) {
            log_warn("auth refused for %s from %s: too many recent failures", authid, c->ip);
            conn_audit_limit(c, "auth_throttle", "AUTH refused: too many recent failures");
            conn_fail_result(&r, 454, "4.7.0", "Too many authentication failures; try again later");
            break;
        }
        r.ok = true;
        snprintf(r.user, sizeof r.user, "%s", j->user);
        log_info("auth ok: %s from %s port %d", j->user, c->ip, c->port);
        break;
    case SASL_BAD_BASE64:
        conn_fail_result(&r, 501, "5.5.2", "Invalid base64 data");
        break;
    case SASL_FAIL:
    case SASL_NOT_ADMIN:
        throttle_fail(c->srv->throttle, c->ip, authid, t);
        delay = throttle_delay(c->srv->throttle, c->ip, authid, t);
        log_warn("auth failed for '%s' from %s port %d: %s", authid, c->ip, c->port, j->err);
        /* Promise 3: the same reply whether the user or the password was wrong */
        conn_fail_result(&r, 535, "5.7.8", "Authentication credentials invalid");
        break;
    case SASL_TEMP:
        log_err("auth error for '%s' from %s: %s", authid, c->ip, j->err);
        conn_fail_result(&r, 454, "4.7.0", "Temporary authentication failure");
        break;
    }
    if (!r.ok) /* who the client claimed to be, for the audit log */
        snprintf(r.user, sizeof r.user, "%s", authid);
    if (!r.more) {
        sasl_conn_free(c->sasl);
        c->sasl = NULL;
    }
    free(j->in);
    free(j->out);
    free(j);
    if (!conn_job_back(c))
        return;
    if (delay > 0) {
        c->held = r;
        if (!c->hold)
            c->hold = evtimer_new(c->srv->base, hold_done, c);
        struct timeval tv = {delay, 0};
        if (c->hold && evtimer_add(c->hold, &tv) == 0)
            return; /* the reply goes out when the delay is over; input waits */
    }
    conn_resume(c, &r);
}

/* Starts or continues a SASL exchange; false when a job went to the pool. */
bool conn_auth_request(struct conn *c, const struct smtp_request *q, struct smtp_result *r)
{
    if (q->auth_cancel) {
        sasl_conn_free(c->sasl);
        c->sasl = NULL;
        r->ok = true;
        return true;
    }
    if (q->mech) {
        char err[256];
        if (throttle_blocked(c->srv->throttle, c->ip, "", time(NULL))) {
            conn_audit_limit(c, "auth_throttle", "AUTH refused: too many recent failures");
            conn_fail_result(r, 454, "4.7.0", "Too many authentication failures; try again later");
            return true;
        }
        sasl_conn_free(c->sasl);
        c->sasl = sasl_conn_new(c->srv->sasl, q->mech, c->conf->tables, err, sizeof err);
        if (!c->sasl) {
            log_err("cannot start %s for %s: %s", q->mech, c->ip, err);
            conn_fail_result(r, 454, "4.7.0", "Temporary authentication failure");
            return true;
        }
    }
    struct job *j = calloc(1, sizeof *j);
    if (j && q->auth_data && !(j->in = strdup(q->auth_data))) {
        free(j);
        j = NULL;
    }
    if (!j || !conn_submit(c, j, auth_run, auth_done)) {
        if (j)
            free(j->in);
        free(j);
        conn_fail_result(r, 454, "4.7.0", "Temporary authentication failure");
        return true;
    }
    j->kind = JOB_AUTH;
    return false;
}

/* The daemon's side of the audit log (src/audit/ is the writer): opens DATA_DIR/audit at start
 * and tells the admin about a new first key, records start, stop and reload, runs the writer's
 * periodic work (key evolution, rotation by size, head) on a worker every few seconds, rotates
 * on SIGUSR1, and hands out session ids. Everything here runs on the loop; what blocks goes to
 * the pool. */
#include <errno.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/log.h"
#include "audit/record.h"
#include "net/server.h"
#include "util/version.h"
#include "util/log.h"
#include "work/pool.h"

#define AUDIT_TICK_SECONDS 5 /* how often the key, the size and head are looked at */

void srv_audit(struct server *srv, const char *event, json_t *fields)
{
    if (!srv->audit) {
        json_decref(fields);
        return;
    }
    char err[256];
    if (audit_append(srv->audit, event, fields, NULL, err, sizeof err) != 0)
        log_err("audit log: cannot record %s: %s", event, err);
}

void srv_session_id(struct server *srv, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s.%llu", srv->session_prefix, ++srv->sessions);
}

/* --- periodic work and rotation, on the pool ------------------------------------------------ */

struct maint_job {
    struct server *srv;
    bool rotate; /* SIGUSR1 */
    int rc;
    char err[256];
};

static void maint_run(void *arg)
{
    struct maint_job *j = arg;
    j->rc = j->rotate ? audit_rotate(j->srv->audit, j->err, sizeof j->err)
                      : audit_maintain(j->srv->audit, time(NULL), j->err, sizeof j->err);
}

static void maint_done(void *arg)
{
    struct maint_job *j = arg;
    j->srv->audit_busy = false;
    if (j->rc != 0)
        log_err("audit log: %s failed: %s", j->rotate ? "rotation" : "maintenance", j->err);
    else if (j->rotate)
        log_info("audit log rotated (SIGUSR1)");
    free(j);
}

static void maint_submit(struct server *srv, bool rotate)
{
    if (!srv->audit || srv->audit_busy) {
        if (rotate && srv->audit)
            log_warn("audit log: SIGUSR1 while maintenance runs; send it again in a moment");
        return;
    }
    struct maint_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->srv = srv;
    j->rotate = rotate;
    srv->audit_busy = true;
    if (pool_submit(srv->pool, maint_run, maint_done, j) != 0) {
        srv->audit_busy = false;
        free(j);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maint_submit(arg, false);
}

static void usr1_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maint_submit(arg, true);
}

/* --- start, reload, stop -------------------------------------------------------------------- */

int srv_audit_open(struct server *srv, char *err, size_t errlen)
{
    const struct conf *c = srv->conf;
    snprintf(srv->session_prefix, sizeof srv->session_prefix, "%lx%04x", (unsigned long)time(NULL),
             (unsigned)getpid() & 0xffff);
    srv->control_fd = -1;
    if (!c->audit_enabled) {
        log_warn("audit log disabled ([audit] enabled = no): nothing records who did what");
        return 0;
    }
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s/audit", c->data_dir) >= (int)sizeof dir) {
        snprintf(err, errlen, "audit log: the path %s/audit is too long", c->data_dir);
        return -1;
    }
    struct audit_opts o = {.dir = dir,
                           .epoch_seconds = (unsigned)c->audit_epoch,
                           .max_bytes = c->audit_max_size,
                           .syslog = c->audit_syslog,
                           .lock_wait_ms = 3000}; /* `tern` may be writing an admin record */
    struct audit_open_info info;
    char why[512];
    srv->audit = audit_open(&o, &info, why, sizeof why);
    if (!srv->audit) {
        snprintf(err, errlen,
                 "audit log: %s (or, to run without one, set enabled = no in [audit] of %s)", why,
                 c->path);
        return -1;
    }
    if (info.created) {
        /* shown once: the only copies are this output and the file the admin must move away */
        fprintf(
            stderr,
            "ternd: created the audit log in %s. Its first key is\n"
            "    %s\n"
            "and is also in %s: move that file off this machine and keep it safe;\n"
            "`tern audit verify --key FILE` proves with it that no past record was rewritten.\n",
            dir, info.first_key_hex, info.first_key_path);
        OPENSSL_cleanse(info.first_key_hex, sizeof info.first_key_hex);
    } else if (info.first_key_present) {
        log_warn(
            "audit log: %s is still on this machine: anyone who takes the machine can "
            "rewrite the log's past with it; move it elsewhere (keep it: verify --key needs it)",
            info.first_key_path);
    }
    if (info.dropped_bytes)
        log_warn("audit log: cut %llu bytes of a record torn by a crash (a recover record says so)",
                 (unsigned long long)info.dropped_bytes);
    json_t *f =
        json_pack("{s:s,s:o,s:s,s:I}", "version", TERN_VERSION, "config", audit_str(c->path),
                  "config_sha256", c->sha256, "pid", (json_int_t)getpid());
    srv_audit(srv, "start", f);
    srv->audit_timer = event_new(srv->base, -1, EV_PERSIST, tick_cb, srv);
    struct timeval tv = {AUDIT_TICK_SECONDS, 0};
    if (srv->audit_timer)
        evtimer_add(srv->audit_timer, &tv);
    srv->sig_usr1 = evsignal_new(srv->base, SIGUSR1, usr1_cb, srv);
    if (srv->sig_usr1)
        evsignal_add(srv->sig_usr1, NULL);
    return 0;
}

void srv_audit_reload(struct server *srv, const char *sha, bool ok, const char *error)
{
    if (!srv->audit)
        return;
    json_t *f = json_pack("{s:s,s:b}", "config_sha256", sha, "ok", ok);
    if (f && error)
        json_object_set_new(f, "error", audit_str(error));
    srv_audit(srv, "reload", f);
}

/* After the pool has finished: nothing else uses the log any more. */
void srv_audit_close(struct server *srv, const char *reason)
{
    if (srv->audit_timer)
        event_free(srv->audit_timer);
    if (srv->sig_usr1)
        event_free(srv->sig_usr1);
    srv->audit_timer = srv->sig_usr1 = NULL;
    if (!srv->audit)
        return;
    srv_audit(srv, "stop", json_pack("{s:s}", "reason", reason));
    char err[256];
    if (audit_close(srv->audit, err, sizeof err) != 0)
        log_err("audit log: closing: %s", err);
    srv->audit = NULL;
}

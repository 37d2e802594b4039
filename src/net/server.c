/* The server: hands accepted sockets to conn.c, and owns the process-wide events: SIGTERM and
 * SIGINT (drain: stop accepting, let messages in flight finish within shutdown_timeout, then
 * exit), SIGHUP (reload the configuration, users and aliases without dropping a connection). */
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "auth/sasl.h"
#include "auth/throttle.h"
#include "net/control.h"
#include "net/server.h"
#include "net/tls.h"
#include "net/watch.h"
#include "net/watch_sock.h"
#include "relay/queue.h"
#include "store/acl.h"
#include "util/log.h"
#include "work/pool.h"

#define WATCH_SECONDS 2 /* how often the config, users and aliases files are looked at */
#define THROTTLE_KEYS 65536

struct listener_ctx {
    struct server *srv;
    enum conf_listener_kind kind;
};

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct listener_ctx *lc = arg;
    (void)l;
    if (lc->srv->draining) {
        evutil_closesocket(fd);
        return;
    }
    evutil_make_socket_nonblocking(fd);
    conn_accept(lc->srv, fd, sa, (socklen_t)len, lc->kind);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)arg;
    (void)l;
    /* EMFILE and friends: the connection stays in the backlog and is tried again */
    log_warn("accept failed: %s (raise the open-files limit or lower [limits] connections)",
             evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    log_warn("shutdown_timeout reached: closing %zu connections still busy", srv->nconns);
    conn_drain_all(srv, true);
    struct timeval tv = {5, 0}; /* long enough for the 421s and any fsync in flight */
    event_base_loopexit(srv->base, &tv);
}

static void term_cb(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    (void)what;
    if (srv->draining)
        return;
    log_info("signal %d: draining %zu connections (at most %d s)", (int)sig, srv->nconns,
             srv->conf->shutdown_timeout);
    srv->draining = true;
    srv->stop_reason = sig == SIGTERM ? "SIGTERM" : "SIGINT";
    for (size_t i = 0; i < srv->nlisteners; i++) {
        evconnlistener_free(srv->listeners[i]);
        srv->listeners[i] = NULL;
    }
    conn_drain_all(srv, false);
    if (srv->nconns == 0) {
        event_base_loopexit(srv->base, NULL);
        return;
    }
    struct timeval tv = {srv->conf->shutdown_timeout, 0};
    srv->drain_timer = evtimer_new(srv->base, drain_timeout_cb, srv);
    evtimer_add(srv->drain_timer, &tv);
}

/* Dovecot's view of the shared mailboxes follows the mailboxes file (store/acl.h). acl_sync
 * writes and fsyncs, so it runs on a worker; one at a time, so that the sync of an older
 * configuration can never finish after, and undo, the sync of a newer one. */
struct acl_job {
    struct server *srv;
    struct conf *conf; /* a reference, held while the worker reads it */
    int rc;
    size_t changed;
    char err[1024];
};

static void sync_acls(struct server *srv);

static void acl_run(void *arg)
{
    struct acl_job *j = arg;
    j->rc = acl_sync(j->conf->data_dir, j->conf->tables, (uid_t)-1, (gid_t)-1, &j->changed, j->err,
                     sizeof j->err);
}

static void acl_done(void *arg)
{
    struct acl_job *j = arg;
    struct server *srv = j->srv;
    if (j->rc != 0)
        log_err("shared mailboxes: %s", j->err);
    else if (j->changed)
        log_info("shared mailboxes: %zu dovecot-acl file(s) updated", j->changed);
    conf_unref(j->conf);
    free(j);
    srv->acl_busy = false;
    if (srv->acl_again) {
        srv->acl_again = false;
        sync_acls(srv);
    }
}

static void sync_acls(struct server *srv)
{
    if (srv->acl_busy) {
        srv->acl_again = true; /* done() starts another with the configuration of that moment */
        return;
    }
    struct acl_job *j = calloc(1, sizeof *j);
    if (!j) {
        log_err("shared mailboxes: out of memory; the dovecot-acl files are synced at the next "
                "reload");
        return;
    }
    j->srv = srv;
    j->conf = conf_ref(srv->conf);
    srv->acl_busy = true;
    if (pool_submit(srv->pool, acl_run, acl_done, j) != 0) {
        srv->acl_busy = false;
        conf_unref(j->conf);
        free(j);
    }
}

/* Size, mtime and inode of the four files, to notice edits (including atomic renames). */
static void stamp_files(const struct conf *c, struct file_stamp *out)
{
    const char *paths[4] = {c->path, c->users_file, c->aliases_file, c->mailboxes_file};
    for (int i = 0; i < 4; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0) {
            out[i] = (struct file_stamp){-1, -1, -1};
            continue;
        }
        out[i] =
            (struct file_stamp){(long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec,
                                (long long)st.st_size, (long long)st.st_ino};
    }
}

static void reload(struct server *srv, const char *why)
{
    char err[8192];
    log_info("reloading %s (%s)", srv->conf->path, why);
    char sha[65];
    struct conf *c = conf_load_sha256(srv->conf->path, sha, err, sizeof err);
    if (!c) {
        log_err("reload of %s failed; keeping the running configuration:\n%s", srv->conf->path,
                err);
        srv_audit_reload(srv, sha, false, err);
        return;
    }
    bool same =
        c->nlisteners == srv->conf->nlisteners &&
        memcmp(c->listeners, srv->conf->listeners, c->nlisteners * sizeof c->listeners[0]) == 0;
    if (!same)
        log_warn("reload: [listen] changes take effect only after a restart");
    char terr[512];
    SSL_CTX *ctx = tls_ctx_new(c, terr, sizeof terr);
    if (!ctx && terr[0]) {
        log_err("reload of %s failed; keeping the running configuration: %s", c->path, terr);
        srv_audit_reload(srv, c->sha256, false, terr);
        conf_unref(c);
        return;
    }
    SSL_CTX_free(srv->tls_ctx); /* sessions under way hold their own reference */
    srv->tls_ctx = ctx;
    conf_unref(srv->conf);
    srv->conf = c; /* new connections see it; open ones keep the configuration they began with */
    relay_queue_set_conf(srv->relay, c);
    watch_recheck(srv, c->tables); /* a user deleted or locked loses its terminals */
    stamp_files(c, srv->stamps);
    sync_acls(srv);
    srv_audit_reload(srv, c->sha256, true, NULL);
    log_info("reloaded %s: %zu users, %zu shared mailboxes%s", c->path,
             tables_nusers(c->tables) - tables_nshared(c->tables), tables_nshared(c->tables),
             ctx ? ", certificate reloaded" : "");
}

/* The queue manager's records go to the audit log like the sessions'. */
static void queue_audit(void *arg, const char *event, json_t *fields)
{
    srv_audit(arg, event, fields);
}

static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    reload(arg, "SIGHUP");
}

/* `tern user` and editors change the users file: pick it up without a signal. */
static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    struct file_stamp now[4];
    stamp_files(srv->conf, now);
    if (memcmp(now, srv->stamps, sizeof now) != 0) {
        memcpy(srv->stamps, now, sizeof now); /* a broken file is reported once, not every 2 s */
        reload(srv, "a file changed");
    }
}

int server_run(struct conf *c, const int *fds, char *err, size_t errlen)
{
    static struct server srv;
    static struct listener_ctx lctx[CONF_MAX_LISTENERS];
    memset(&srv, 0, sizeof srv);
    signal(SIGPIPE, SIG_IGN);
    if (evthread_use_pthreads() != 0 || !(srv.base = event_base_new())) {
        snprintf(err, errlen, "cannot initialise libevent");
        return -1;
    }
    srv.conf = c;
    char terr[512];
    srv.tls_ctx = tls_ctx_new(c, terr, sizeof terr);
    if (!srv.tls_ctx && terr[0]) {
        snprintf(err, errlen, "%s", terr);
        return -1;
    }
    char serr[256];
    srv.sasl = sasl_new(serr, sizeof serr);
    if (!srv.sasl)
        log_err("AUTH is unavailable: %s", serr);
    srv.throttle =
        throttle_new((unsigned)c->auth_max_failures, (unsigned)c->auth_window, THROTTLE_KEYS);
    stamp_files(c, srv.stamps);
    srv.pool = pool_new(srv.base, c->workers);
    if (!srv.pool) {
        snprintf(err, errlen, "cannot start %d worker threads", c->workers);
        return -1;
    }
    if (srv_audit_open(&srv, err, errlen) != 0) {
        pool_free(srv.pool);
        return -1;
    }
    if (control_open(&srv, err, errlen) != 0) { /* admin actions could not be recorded */
        pool_free(srv.pool);
        srv_audit_close(&srv, "start failed");
        return -1;
    }
    if (watch_sock_open(&srv, err, errlen) != 0) {
        pool_free(srv.pool);
        control_close(&srv);
        srv_audit_close(&srv, "start failed");
        return -1;
    }
    sync_acls(&srv);
    char qerr[768];
    srv.relay = relay_queue_new(
        &(struct relay_queue_opts){srv.base, srv.pool, c, queue_audit, &srv}, qerr, sizeof qerr);
    if (!srv.relay) /* inbound mail still works; queued mail waits for a restart */
        log_err("%s; outbound mail stays queued until this is fixed and ternd restarted", qerr);
    for (size_t i = 0; i < c->nlisteners; i++) {
        lctx[i] = (struct listener_ctx){&srv, c->listeners[i].kind};
        srv.listeners[i] =
            evconnlistener_new(srv.base, accept_cb, &lctx[i],
                               LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fds[i]);
        if (!srv.listeners[i]) {
            snprintf(err, errlen, "cannot watch listening socket %zu", i);
            return -1;
        }
        evconnlistener_set_error_cb(srv.listeners[i], accept_error_cb);
        log_info("listening on %s port %d (%s)", c->listeners[i].host, c->listeners[i].port,
                 c->listeners[i].kind == LISTEN_SUBMISSION ? "submission"
                 : c->listeners[i].kind == LISTEN_SMTPS    ? "smtps"
                                                           : "smtp");
    }
    srv.nlisteners = c->nlisteners;
    srv.sig_term = evsignal_new(srv.base, SIGTERM, term_cb, &srv);
    srv.sig_int = evsignal_new(srv.base, SIGINT, term_cb, &srv);
    srv.sig_hup = evsignal_new(srv.base, SIGHUP, hup_cb, &srv);
    evsignal_add(srv.sig_term, NULL);
    evsignal_add(srv.sig_int, NULL);
    evsignal_add(srv.sig_hup, NULL);
    srv.watch = event_new(srv.base, -1, EV_PERSIST, watch_cb, &srv);
    struct timeval wtv = {WATCH_SECONDS, 0};
    evtimer_add(srv.watch, &wtv);

    event_base_dispatch(srv.base);

    log_info("stopping: %zu connections left", srv.nconns);
    relay_queue_stop(srv.relay); /* outbound connections end; what they carried stays queued */
    pool_free(srv.pool);         /* finishes the fsyncs in flight and answers their sessions */
    relay_queue_free(srv.relay);
    srv.relay = NULL;
    conn_free_all(&srv);
    control_close(&srv);
    watch_sock_close(&srv);
    watch_free_all(&srv);
    srv_audit_close(&srv, srv.stop_reason ? srv.stop_reason : "stopped");
    for (size_t i = 0; i < srv.nlisteners; i++)
        if (srv.listeners[i])
            evconnlistener_free(srv.listeners[i]);
    event_free(srv.sig_term);
    event_free(srv.sig_int);
    event_free(srv.sig_hup);
    if (srv.drain_timer)
        event_free(srv.drain_timer);
    event_free(srv.watch);
    SSL_CTX_free(srv.tls_ctx);
    sasl_free(srv.sasl);
    throttle_free(srv.throttle);
    conf_unref(srv.conf);
    event_base_free(srv.base);
    return 0;
}

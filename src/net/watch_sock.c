/* ternd's local watch socket, DATA_DIR/watch (mode 0666: any local user may ask): the way
 * `tern watch` becomes a terminal of a user on this machine. The client sends one line and gets
 * one, then only terminal messages (client/termframe.h) until it closes:
 *
 *   client:  {"watch":"alice@example.org"}\n            (or {} : the user whose uid is mine)
 *            {"watch":"alice@example.org","password":"..."}\n
 *   ternd:   ok alice@example.org\n   then the frames
 *            error REASON\n           and ternd closes
 *
 * Who the client is comes from SO_PEERCRED, never from its word: root may watch any user; any
 * other uid the users whose uid field (the passwd-file's third) it is; anyone who gives the
 * user's password, verified on the worker pool against the users file and counted in the AUTH
 * throttle (per uid and per user) like a failed AUTH. Each client is bounded: one line of at
 * most WSOCK_LINE_MAX octets within WSOCK_TIMEOUT seconds, WSOCK_PENDING_MAX asking at once,
 * and once watching, the registry's bounds (net/watch.h); what it sends after its line is
 * read and thrown away. Like control.c, the clients live in a list of this file. */
#include "net/watch_sock.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "auth/passwd.h"
#include "auth/throttle.h"
#include "net/server.h"
#include "net/watch.h"
#include "util/err.h"
#include "util/log.h"
#include "work/pool.h"

#define WSOCK_BACKLOG 64

enum wstate { W_READING, W_VERIFYING, W_HOLDING, W_WATCHING };

struct wclient {
    struct wclient *prev, *next;
    struct server *srv;
    struct bufferevent *bev; /* owns the socket */
    struct event *timer;     /* the request's deadline, then a failed password's delay */
    unsigned long uid;
    long pid;
    enum wstate state;
    bool dead;     /* the peer went while its password was being verified */
    bool orphaned; /* watch_sock_close ran meanwhile: done() only frees */
    struct watcher *watcher;
    const char *why; /* why the watch ends, for its watch_end record */
    char user[TABLES_ADDR_MAX + 1];
    char key[32]; /* "uid:N", the throttle's address key */
    /* W_VERIFYING: the job's input and outcome */
    char stored[256];
    char *password;
    size_t pwlen;
    int verified;
};

static struct wclient *clients;
static size_t npending; /* clients not yet watching */
static int listen_fd = -1;
static struct event *listen_ev, *pause_timer;
static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static dev_t sock_dev;
static ino_t sock_ino;

static json_t *who(const struct wclient *c)
{
    return json_pack("{s:I,s:I}", "uid", (json_int_t)c->uid, "pid", (json_int_t)c->pid);
}

static void client_free(struct wclient *c)
{
    if (c->watcher)
        watch_remove(c->srv, c->watcher, c->why ? c->why : "closed");
    else if (!c->orphaned)
        npending--;
    if (c->password) {
        explicit_bzero(c->password, c->pwlen);
        free(c->password);
    }
    explicit_bzero(c->stored, sizeof c->stored);
    if (c->timer)
        event_free(c->timer);
    if (c->bev)
        bufferevent_free(c->bev);
    if (!c->orphaned) {
        if (c->prev)
            c->prev->next = c->next;
        else
            clients = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    free(c);
}

/* Sends one line straight to the socket (its output is empty: nothing was written to it yet;
 * a client that went away just misses it). */
static void say(struct wclient *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct wclient *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof line - 1 ? (size_t)n : sizeof line - 2;
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';
    int fd = c->bev ? bufferevent_getfd(c->bev) : -1;
    if (fd >= 0 && send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("watch socket: reply to pid %ld not sent: %s", c->pid, strerror(errno));
}

/* Refuses: the reason to the client and the audit log, then closes. */
static void refuse(struct wclient *c, const char *why)
{
    watch_audit_refused(c->srv, WATCH_SOCKET, c->user, who(c), why);
    log_info("watch socket: uid %lu (pid %ld) may not watch %s: %s", c->uid, c->pid,
             c->user[0] ? c->user : "(nobody named)", why);
    say(c, "error %s", why);
    client_free(c);
}

/* The registry asks to end the watch (a reload took the user away). */
static void kick(void *owner, const char *why)
{
    struct wclient *c = owner;
    watch_remove(c->srv, c->watcher, why);
    c->watcher = NULL;
    npending++; /* client_free counts it as one not watching */
    client_free(c);
}

static void start_watching(struct wclient *c)
{
    char err[160];
    c->watcher = watch_add(c->srv, c->user, c->bev, WATCH_SOCKET, kick, c, who(c), err, sizeof err);
    if (!c->watcher) {
        say(c, "error %s", err); /* watch_add recorded the refusal */
        client_free(c);
        return;
    }
    npending--;
    c->state = W_WATCHING;
    evtimer_del(c->timer);
    /* no limit on waiting for messages; one on a terminal that stops taking them */
    struct timeval wr = {c->srv->conf->command_timeout, 0};
    bufferevent_set_timeouts(c->bev, NULL, &wr);
    say(c, "ok %s", c->user);
}

/* ---- the password, on a worker ---------------------------------------------------------- */

static void verify_run(void *arg)
{
    struct wclient *c = arg;
    c->verified = c->stored[0] ? passwd_verify(c->stored, c->password, c->pwlen)
                               : passwd_verify_dummy(c->password, c->pwlen);
}

static void hold_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    refuse(arg, "authentication failed");
}

static void verify_done(void *arg)
{
    struct wclient *c = arg;
    explicit_bzero(c->password, c->pwlen);
    free(c->password);
    c->password = NULL;
    if (c->orphaned || c->dead) {
        client_free(c);
        return;
    }
    time_t now = time(NULL);
    const char *unfit = watch_unfit(c->srv->conf->tables, c->user);
    if (c->verified == 1 && !unfit) {
        if (throttle_blocked(c->srv->throttle, c->key, c->user, now)) {
            refuse(c, "too many failed attempts; try again later");
            return;
        }
        start_watching(c);
        return;
    }
    /* the same answer whether the user or the password was wrong (Promise 3) */
    throttle_fail(c->srv->throttle, c->key, c->user, now);
    unsigned delay = throttle_delay(c->srv->throttle, c->key, c->user, now);
    log_warn("watch socket: wrong password for %s from uid %lu (pid %ld)", c->user, c->uid, c->pid);
    struct timeval tv = {delay, 0};
    c->state = W_HOLDING;
    if (delay == 0 || evtimer_assign(c->timer, c->srv->base, hold_cb, c) != 0 ||
        evtimer_add(c->timer, &tv) != 0)
        refuse(c, "authentication failed");
}

/* ---- the request ------------------------------------------------------------------------- */

/* The users whose uid field is uid: the one, or a reason why not. */
static const char *user_of_uid(struct wclient *c)
{
    const struct tables *t = c->srv->conf->tables;
    size_t found = 0;
    for (size_t i = 0; i < tables_nusers(t); i++) {
        const struct tables_user *u = tables_user_at(t, i);
        if (u->has_uid && u->uid == c->uid && !watch_unfit(t, u->addr)) {
            if (found++ == 0)
                snprintf(c->user, sizeof c->user, "%s", u->addr);
        }
    }
    if (found == 1)
        return NULL;
    c->user[0] = '\0';
    return found ? "several users have this uid; name one (tern watch USER)"
                 : "no user has this uid; name one (tern watch USER)";
}

/* One request line (len octets, no newline): decides, or starts the password's check. */
static void request(struct wclient *c, const char *line, size_t len)
{
    const struct conf *cf = c->srv->conf;
    if (cf->terminal_allow == TERMINAL_ALLOW_NONE) {
        refuse(c, "terminal messages are disabled here ([terminal] allow = none)");
        return;
    }
    json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *jw = json_object_get(req, "watch"), *jp = json_object_get(req, "password");
    size_t members = json_object_size(req);
    bool ok = json_is_object(req) && members == (size_t)(jw != NULL) + (jp != NULL) &&
              (!jw || json_is_string(jw)) && (!jp || json_is_string(jp));
    const char *w = ok && jw ? json_string_value(jw) : "";
    if (!ok || strlen(w) != (jw ? json_string_length(jw) : 0) || strlen(w) > TABLES_ADDR_MAX) {
        json_decref(req);
        refuse(c, "send one line {\"watch\":\"USER\"} (with \"password\" to give it)");
        return;
    }
    snprintf(c->user, sizeof c->user, "%s", w);
    conf_lowercase(c->user);
    if (jp) {
        size_t n = json_string_length(jp);
        if (!c->user[0] || n > PASSWD_MAX || !(c->password = malloc(n + 1))) {
            json_decref(req);
            refuse(c, c->user[0] ? "the password is too long" : "name the user with the password");
            return;
        }
        memcpy(c->password, json_string_value(jp), n + 1);
        c->pwlen = n;
    }
    json_decref(req);
    if (!c->password) {
        const char *why = c->user[0] ? NULL : user_of_uid(c);
        const struct tables_user *u = c->user[0] ? tables_user(cf->tables, c->user) : NULL;
        if (!why && c->uid != 0 && !(u && u->has_uid && u->uid == c->uid))
            why = "this uid may not watch the user; give its password (tern watch --password)";
        if (!why)
            why = watch_unfit(cf->tables, c->user);
        if (why)
            refuse(c, why);
        else
            start_watching(c);
        return;
    }
    if (throttle_blocked(c->srv->throttle, c->key, c->user, time(NULL))) {
        refuse(c, "too many failed attempts; try again later");
        return;
    }
    const struct tables_user *u = tables_user(cf->tables, c->user);
    if (u && !watch_unfit(cf->tables, c->user))
        snprintf(c->stored, sizeof c->stored, "%s", u->password);
    c->state = W_VERIFYING;
    evtimer_del(c->timer);
    if (pool_submit(c->srv->pool, verify_run, verify_done, c) != 0)
        refuse(c, "ternd is stopping; try again once it runs");
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct wclient *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->state != W_READING) { /* nothing more is asked of the client: its bytes go */
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
    if (eol.pos < 0) {
        if (evbuffer_get_length(in) >= WSOCK_LINE_MAX)
            refuse(c, "the request is too long; send one short line");
        return;
    }
    if ((size_t)eol.pos >= WSOCK_LINE_MAX) {
        refuse(c, "the request is too long; send one short line");
        return;
    }
    char line[WSOCK_LINE_MAX];
    size_t len = (size_t)eol.pos;
    evbuffer_remove(in, line, len);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (len > 0 && line[len - 1] == '\r')
        len--;
    request(c, line, len);
    explicit_bzero(line, sizeof line);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wclient *c = arg;
    (void)bev;
    if (what & BEV_EVENT_TIMEOUT)
        c->why = "stopped reading"; /* for command_timeout with messages waiting */
    else if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (c->state == W_VERIFYING) {
        c->dead = true; /* verify_done frees it */
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        return;
    }
    client_free(c);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    refuse(arg, "no request line in time; send it at once");
}

static void client_new(struct server *srv, int fd)
{
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (npending >= WSOCK_PENDING_MAX ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || clen != sizeof cred) {
        static const char busy[] = "error ternd cannot take this request now; try again\n";
        if (send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            log_debug("watch socket: refusal not sent: %s", strerror(errno));
        close(fd);
        return;
    }
    struct wclient *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->srv = srv;
    c->uid = (unsigned long)cred.uid;
    c->pid = (long)cred.pid;
    snprintf(c->key, sizeof c->key, "uid:%lu", c->uid);
    c->next = clients;
    if (clients)
        clients->prev = c;
    clients = c;
    npending++;
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(srv->base, timeout_cb, c);
    struct timeval tv = {WSOCK_TIMEOUT, 0};
    if (!c->bev || !c->timer || evtimer_add(c->timer, &tv) != 0) {
        if (!c->bev)
            close(fd);
        client_free(c);
        return;
    }
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, WSOCK_LINE_MAX);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (listen_ev)
        event_add(listen_ev, NULL);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    struct server *srv = arg;
    (void)what;
    for (int i = 0; i < 32; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            client_new(srv, fd);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            log_warn("watch socket: cannot accept: %s; trying again in 1 s", strerror(errno));
            struct timeval tv = {1, 0};
            event_del(listen_ev);
            evtimer_add(pause_timer, &tv);
        }
        return;
    }
}

/* Is there a ternd answering on path? A stale socket (a crash) refuses the connection. */
static bool in_use(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    bool used = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    return used;
}

int watch_sock_open(struct server *srv, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof sa.sun_path, "%s/%s", srv->conf->data_dir, WSOCK_NAME);
    if (n < 0 || (size_t)n >= sizeof sa.sun_path) {
        err_set(err, errlen,
                "watch socket: %s/%s is longer than the %zu bytes a Unix socket's path may "
                "have; choose a shorter data_dir in %s",
                srv->conf->data_dir, WSOCK_NAME, sizeof sa.sun_path - 1, srv->conf->path);
        return -1;
    }
    struct stat st;
    if (lstat(sa.sun_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode) || in_use(sa.sun_path)) {
            err_set(err, errlen,
                    "watch socket: %s %s; stop the other ternd or move it away, then start "
                    "ternd again",
                    sa.sun_path,
                    S_ISSOCK(st.st_mode) ? "is served by another ternd" : "is not a socket");
            return -1;
        }
        unlink(sa.sun_path); /* left by a ternd that died */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err_set(err, errlen, "watch socket: socket(): %s", strerror(errno));
        return -1;
    }
    /* Every local user may ask; SO_PEERCRED and the password decide who gets an answer. */
    if (fchmod(fd, 0666) != 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        chmod(sa.sun_path, 0666) != 0 || lstat(sa.sun_path, &st) != 0 ||
        listen(fd, WSOCK_BACKLOG) != 0) {
        int e = errno;
        err_set(err, errlen, "watch socket: cannot listen on %s: %s%s", sa.sun_path, strerror(e),
                e == EACCES ? "; data_dir must be writable by the user ternd runs as" : "");
        close(fd);
        unlink(sa.sun_path);
        return -1;
    }
    listen_ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, accept_cb, srv);
    pause_timer = evtimer_new(srv->base, resume_cb, srv);
    if (!listen_ev || !pause_timer || event_add(listen_ev, NULL) != 0) {
        err_set(err, errlen, "watch socket: cannot watch %s (out of memory?)", sa.sun_path);
        if (listen_ev)
            event_free(listen_ev);
        if (pause_timer)
            event_free(pause_timer);
        listen_ev = pause_timer = NULL;
        close(fd);
        unlink(sa.sun_path);
        return -1;
    }
    listen_fd = fd;
    memcpy(sock_path, sa.sun_path, sizeof sock_path);
    sock_dev = st.st_dev;
    sock_ino = st.st_ino;
    log_info("watch socket %s: tern watch connects here", sock_path);
    return 0;
}

void watch_sock_close(struct server *srv)
{
    (void)srv;
    if (listen_ev)
        event_free(listen_ev);
    if (pause_timer)
        event_free(pause_timer);
    listen_ev = pause_timer = NULL;
    if (listen_fd >= 0) {
        close(listen_fd);
        struct stat st;
        if (lstat(sock_path, &st) == 0 && st.st_dev == sock_dev && st.st_ino == sock_ino)
            unlink(sock_path);
    }
    listen_fd = -1;
    while (clients) {
        struct wclient *c = clients;
        clients = c->next;
        c->prev = c->next = NULL;
        if (c->state == W_VERIFYING) { /* its job is still out: done() frees it */
            if (!c->watcher)
                npending--;
            c->orphaned = true;
            continue;
        }
        if (!c->watcher)
            npending--;
        c->orphaned = true;
        client_free(c);
    }
}

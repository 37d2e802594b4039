/* ternd's control socket (control.h has the protocol): listening on DATA_DIR/audit/control,
 * the clients it accepts, their request lines, and the admin records they ask for. The loop
 * only moves bytes: parsing, the password database and the log's append and fsync run on the
 * worker pool. Every client is bounded: one line of at most CONTROL_LINE_MAX bytes within
 * CONTROL_TIMEOUT_SECONDS, at most CONTROL_CLIENTS_MAX at once, one reply, then close.
 *
 * A second kind of request tells the queue manager that `tern queue` changed the spool (tern
 * did the file operation itself; its admin record comes as a request of its own):
 *
 *   client:  {"queue":"flush"|"delete"|"hold"|"release","id":"ID"}\n   (no id: flush all)
 *   ternd:   ok\n  |  error REASON\n
 *
 * The verb and the id are checked (only those two members, an id shaped like the spool's)
 * before relay_queue_poke hears of them, on the loop.
 *
 * The clients live in a list of this file, not in struct server: there is one server in the
 * process, and nothing else needs to see them. */
#include "net/control.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "audit/log.h"
#include "audit/record.h"
#include "net/server.h"
#include "relay/queue.h"
#include "store/spool.h"
#include "util/err.h"
#include "util/log.h"
#include "work/pool.h"

#define CONTROL_BACKLOG 64
#define PWBUF_MAX (1u << 20) /* the largest password-database entry looked up */

struct client {
    struct server *srv;
    struct client *prev, *next; /* in clients */
    int fd;
    unsigned long uid; /* SO_PEERCRED, at connect */
    long pid;
    struct event *read_ev, *timer;
    bool busy;     /* its record is on the pool */
    bool orphaned; /* control_close ran while it was: done() only answers and frees */
    size_t len;    /* bytes in line */
    char line[CONTROL_LINE_MAX];
    char reply[CONTROL_REPLY_MAX];
    bool queue_req;     /* the line is a queue request (set by the worker) */
    char queue_verb[8]; /* its verb, once checked */
    char queue_id[sizeof(((struct spool_entry *)0)->id)]; /* its id, "" for all (flush) */
};

static struct client *clients;
static size_t nclients;
static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static dev_t sock_dev;
static ino_t sock_ino;
static struct event *pause_timer; /* accept paused after EMFILE, resumed by this */

/* ---- the request, pure ------------------------------------------------------------------- */

/* audit_strn of a member that must be a non-empty string; NULL with a reason otherwise. */
static json_t *take_string(json_t *req, const char *key, char *err, size_t errlen)
{
    json_t *v = json_object_get(req, key);
    if (!json_is_string(v) || json_string_length(v) == 0) {
        err_set(err, errlen, "\"%s\" must be a non-empty string", key);
        return NULL;
    }
    json_t *s = audit_strn(json_string_value(v), json_string_length(v));
    if (!s)
        err_set(err, errlen, "out of memory");
    return s;
}

/* The args member: an array of strings, its first CONTROL_ARGS_MAX - 1 kept and the rest
 * counted in a last entry, so a record says that something was cut. */
static json_t *take_args(json_t *req, char *err, size_t errlen)
{
    json_t *v = json_object_get(req, "args");
    json_t *out = json_array();
    if (!out) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    if (!v)
        return out;
    if (!json_is_array(v)) {
        err_set(err, errlen, "\"args\" must be an array of strings");
        json_decref(out);
        return NULL;
    }
    size_t n = json_array_size(v);
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(v, i);
        if (!json_is_string(a)) {
            err_set(err, errlen, "\"args\" must be an array of strings (entry %zu is not)", i);
            json_decref(out);
            return NULL;
        }
        json_t *s = NULL;
        if (n <= CONTROL_ARGS_MAX || i < CONTROL_ARGS_MAX - 1) {
            s = audit_strn(json_string_value(a), json_string_length(a));
        } else {
            char more[64];
            snprintf(more, sizeof more, "...[+%zu more args]", n - i);
            s = json_string(more);
        }
        if (!s || json_array_append_new(out, s) != 0) {
            err_set(err, errlen, "out of memory");
            json_decref(out);
            return NULL;
        }
        if (json_array_size(out) == CONTROL_ARGS_MAX)
            break;
    }
    return out;
}

json_t *control_admin_fields(const char *line, size_t len, unsigned long uid, const char *unix_user,
                             char *err, size_t errlen)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    json_error_t jerr;
    json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!req) {
        err_set(err, errlen, "the request is not JSON (%s at byte %d)", jerr.text, jerr.position);
        return NULL;
    }
    if (!json_is_object(req)) {
        json_decref(req);
        err_set(err, errlen, "the request must be a JSON object");
        return NULL;
    }
    json_t *command = take_string(req, "command", err, errlen);
    json_t *args = command ? take_args(req, err, errlen) : NULL;
    json_t *result = args ? take_string(req, "result", err, errlen) : NULL;
    json_t *user = result ? audit_str(unix_user ? unix_user : "") : NULL;
    json_t *f = NULL;
    if (user)
        f = json_pack("{s:o,s:I,s:o,s:o,s:o}", "unix_user", user, "uid", (json_int_t)uid, "command",
                      command, "args", args, "result", result);
    else {
        json_decref(command);
        json_decref(args);
        json_decref(result);
    }
    if (user && !f)
        err_set(err, errlen, "out of memory");
    json_decref(req);
    return f;
}

/* The queue verbs tern sends, and whether each may go without an id. */
static const struct {
    const char *verb;
    bool id_optional;
} queue_verbs[] = {{"flush", true}, {"delete", false}, {"hold", false}, {"release", false}};

/* Is the line (len bytes, without its newline) a queue request? 0: no (an admin record's, or
 * not JSON at all: that path says what is wrong); 1: yes, verb and id filled; -1: one that is
 * malformed, with a reason. */
static int queue_request(const char *line, size_t len, char *verb, size_t verblen, char *id,
                         size_t idlen, char *err, size_t errlen)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    json_error_t jerr;
    json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *q = json_object_get(req, "queue");
    int rc = -1;
    if (!q) {
        rc = 0;
        goto done;
    }
    json_t *jid = json_object_get(req, "id");
    size_t members = json_object_size(req);
    const char *v = json_string_value(q);
    size_t i = 0;
    while (v && i < sizeof queue_verbs / sizeof queue_verbs[0] && strcmp(v, queue_verbs[i].verb))
        i++;
    if (!v || i == sizeof queue_verbs / sizeof queue_verbs[0] || strlen(v) >= verblen) {
        err_set(err, errlen, "\"queue\" must be \"flush\", \"delete\", \"hold\" or \"release\"");
        goto done;
    }
    if (members != (jid ? 2u : 1u)) {
        err_set(err, errlen, "a queue request has only \"queue\" and \"id\"");
        goto done;
    }
    if (!jid && !queue_verbs[i].id_optional) {
        err_set(err, errlen, "queue %s needs an \"id\"", v);
        goto done;
    }
    const char *s = json_string_value(jid);
    if (jid &&
        (!s || strlen(s) != json_string_length(jid) || strlen(s) >= idlen || !spool_id_valid(s))) {
        err_set(err, errlen, "\"id\" must be a queue id (digits, a-f and '-', under 96 bytes)");
        goto done;
    }
    snprintf(verb, verblen, "%s", v);
    snprintf(id, idlen, "%s", jid ? s : "");
    rc = 1;
done:
    json_decref(req);
    return rc;
}

/* ---- the record, on a worker ------------------------------------------------------------ */

/* The name of uid from the password database into out; "" when it has none. */
static void user_name(unsigned long uid, char *out, size_t outlen)
{
    out[0] = '\0';
    long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t size = hint > 0 ? (size_t)hint : 4096;
    for (;;) {
        char *buf = malloc(size);
        if (!buf)
            return;
        struct passwd pw, *res = NULL;
        int rc = getpwuid_r((uid_t)uid, &pw, buf, size, &res);
        if (rc == 0 && res)
            snprintf(out, outlen, "%s", res->pw_name);
        free(buf);
        if (rc != ERANGE || size >= PWBUF_MAX)
            return;
        size *= 2;
    }
}

/* Makes a reply line of at most CONTROL_REPLY_MAX bytes, one line whatever the reason holds. */
static void set_reply(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_reply(struct client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->reply, sizeof c->reply - 1, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof c->reply - 1 ? (size_t)n : sizeof c->reply - 2;
    for (size_t i = 0; i < len; i++)
        if (c->reply[i] == '\n' || c->reply[i] == '\r')
            c->reply[i] = ' ';
    c->reply[len] = '\n';
    c->reply[len + 1] = '\0';
}

static void record_run(void *arg)
{
    struct client *c = arg;
    struct audit *a = c->srv->audit;
    char err[512], name[256];
    int q = queue_request(c->line, c->len, c->queue_verb, sizeof c->queue_verb, c->queue_id,
                          sizeof c->queue_id, err, sizeof err);
    if (q != 0) {
        c->queue_req = true;
        if (q > 0)
            set_reply(c, "ok");
        else
            set_reply(c,
                      "error %s; send one line {\"queue\":\"flush\",\"id\":\"ID\"} (or "
                      "delete, hold, release)",
                      err);
        return;
    }
    user_name(c->uid, name, sizeof name);
    json_t *f = control_admin_fields(c->line, c->len, c->uid, name, err, sizeof err);
    if (!f) {
        set_reply(c, "error %s; send one line {\"command\":...,\"args\":[...],\"result\":...}",
                  err);
        return;
    }
    uint64_t seq = 0;
    if (audit_append(a, "admin", f, &seq, err, sizeof err) != 0 ||
        audit_sync(a, seq, err, sizeof err) != 0) {
        set_reply(c, "error ternd could not record it: %s", err);
        return;
    }
    set_reply(c, "ok %llu", (unsigned long long)seq);
}

/* ---- clients on the loop ------------------------------------------------------------------ */

static void client_free(struct client *c)
{
    if (c->read_ev)
        event_free(c->read_ev);
    if (c->timer)
        event_free(c->timer);
    if (c->fd >= 0)
        close(c->fd);
    if (!c->orphaned) {
        if (c->prev)
            c->prev->next = c->next;
        else
            clients = c->next;
        if (c->next)
            c->next->prev = c->prev;
        nclients--;
    }
    free(c);
}

/* Sends the reply (one short line to a socket whose buffer is empty: one send does it; a
 * client that went away just misses it) and closes. */
static void client_finish(struct client *c)
{
    size_t len = strlen(c->reply);
    if (c->fd >= 0 && len > 0 && send(c->fd, c->reply, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("control: reply to pid %ld not sent: %s", c->pid, strerror(errno));
    client_free(c);
}

static void record_done(void *arg)
{
    struct client *c = arg;
    c->busy = false;
    if (c->queue_req) {
        if (strcmp(c->reply, "ok\n") != 0) {
            log_warn("control: queue request of uid %lu (pid %ld) refused: %.*s", c->uid, c->pid,
                     (int)strcspn(c->reply + 6, "\n"), c->reply + 6);
        } else if (!c->orphaned) { /* orphaned: ternd is stopping, and rescans at start */
            log_info("control: tern queue %s %s from uid %lu (pid %ld)", c->queue_verb,
                     c->queue_id[0] ? c->queue_id : "(all)", c->uid, c->pid);
            relay_queue_poke(c->srv->relay, c->queue_verb, c->queue_id[0] ? c->queue_id : NULL);
        }
        client_finish(c);
        return;
    }
    if (strncmp(c->reply, "ok ", 3) == 0)
        log_info("control: admin record %.*s from uid %lu (pid %ld)",
                 (int)strcspn(c->reply + 3, "\n"), c->reply + 3, c->uid, c->pid);
    else
        log_warn("control: no admin record for uid %lu (pid %ld): %.*s", c->uid, c->pid,
                 (int)strcspn(c->reply + 6, "\n"), c->reply + 6); /* after "error " */
    client_finish(c);
}

/* The request is whole: stop watching the client and hand the line to a worker. */
static void client_submit(struct client *c)
{
    event_del(c->read_ev);
    evtimer_del(c->timer);
    c->busy = true;
    if (pool_submit(c->srv->pool, record_run, record_done, c) != 0) {
        c->busy = false;
        set_reply(c, "error ternd is stopping; try again once it runs");
        client_finish(c);
    }
}

static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    (void)what;
    ssize_t n = recv(fd, c->line + c->len, sizeof c->line - c->len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        client_free(c);
        return;
    }
    if (n == 0) { /* end of input: what came is the request, if anything did */
        if (c->len == 0)
            client_free(c);
        else
            client_submit(c);
        return;
    }
    const char *nl = memchr(c->line + c->len, '\n', (size_t)n);
    c->len += (size_t)n;
    if (nl) {
        c->len = (size_t)(nl - c->line); /* anything after the line is ignored */
        client_submit(c);
    } else if (c->len == sizeof c->line) {
        set_reply(c, "error the request is longer than %d bytes; send one shorter line",
                  CONTROL_LINE_MAX);
        log_warn("control: dropped pid %ld (uid %lu): a request longer than %d bytes", c->pid,
                 c->uid, CONTROL_LINE_MAX);
        client_finish(c);
    }
}

static void client_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    (void)fd;
    (void)what;
    set_reply(c, "error no whole request line within %d s; send it at once",
              CONTROL_TIMEOUT_SECONDS);
    log_warn("control: dropped pid %ld (uid %lu): no request within %d s", c->pid, c->uid,
             CONTROL_TIMEOUT_SECONDS);
    client_finish(c);
}

/* Refuses a client we cannot serve, with the reason as its reply. */
static void refuse(int fd, const char *reply)
{
    if (send(fd, reply, strlen(reply), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("control: refusal not sent: %s", strerror(errno));
    close(fd);
}

static void client_new(struct server *srv, int fd)
{
    if (nclients >= CONTROL_CLIENTS_MAX) {
        log_warn("control: %d clients at once already; refused one more", CONTROL_CLIENTS_MAX);
        char why[128];
        snprintf(why, sizeof why,
                 "error ternd serves %d control clients at once already; try again in a moment\n",
                 CONTROL_CLIENTS_MAX);
        refuse(fd, why);
        return;
    }
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || clen != sizeof cred) {
        log_warn("control: cannot tell who connected (SO_PEERCRED: %s); refused", strerror(errno));
        refuse(fd, "error ternd cannot tell which user you are; nothing recorded\n");
        return;
    }
    struct client *c = calloc(1, sizeof *c);
    if (!c) {
        refuse(fd, "error ternd is out of memory; try again\n");
        return;
    }
    c->srv = srv;
    c->fd = fd;
    c->uid = (unsigned long)cred.uid;
    c->pid = (long)cred.pid;
    c->read_ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, client_read_cb, c);
    c->timer = evtimer_new(srv->base, client_timeout_cb, c);
    c->next = clients;
    if (clients)
        clients->prev = c;
    clients = c;
    nclients++;
    struct timeval tv = {CONTROL_TIMEOUT_SECONDS, 0};
    if (!c->read_ev || !c->timer || event_add(c->read_ev, NULL) != 0 ||
        evtimer_add(c->timer, &tv) != 0) {
        set_reply(c, "error ternd cannot watch the connection; try again");
        client_finish(c);
    }
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    if (srv->control_ev)
        event_add(srv->control_ev, NULL);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    struct server *srv = arg;
    (void)what;
    for (int i = 0; i < CONTROL_CLIENTS_MAX; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            client_new(srv, fd);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* the connection stays in the backlog; without a pause the loop would spin on it */
            log_warn("control: cannot accept: %s; trying again in 1 s (raise the open-files "
                     "limit if this repeats)",
                     strerror(errno));
            struct timeval tv = {1, 0};
            event_del(srv->control_ev);
            evtimer_add(pause_timer, &tv);
        }
        return; /* EAGAIN: all taken; anything else is the client's loss, not ours */
    }
}

/* ---- the socket ----------------------------------------------------------------------------- */

int control_open(struct server *srv, char *err, size_t errlen)
{
    srv->control_fd = -1;
    srv->control_ev = NULL;
    if (!srv->audit)
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof sa.sun_path, "%s/audit/%s", srv->conf->data_dir,
                     CONTROL_SOCKET_NAME);
    if (n < 0 || (size_t)n >= sizeof sa.sun_path) {
        err_set(err, errlen,
                "control socket: %s/audit/%s is longer than the %zu bytes a Unix socket's path "
                "may have; choose a shorter data_dir in %s",
                srv->conf->data_dir, CONTROL_SOCKET_NAME, sizeof sa.sun_path - 1, srv->conf->path);
        return -1;
    }
    /* We hold the audit lock, so no other ternd serves this folder: what is there is stale. */
    struct stat st;
    if (lstat(sa.sun_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            err_set(err, errlen,
                    "control socket: %s exists and is not a socket; move it away and start "
                    "ternd again",
                    sa.sun_path);
            return -1;
        }
        unlink(sa.sun_path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err_set(err, errlen, "control socket: socket(): %s", strerror(errno));
        return -1;
    }
    /* On Linux a socket's mode before bind is the file's mode: 0600 from its first moment,
     * without touching the process-wide umask under the workers' feet. */
    if (fchmod(fd, 0600) != 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        chmod(sa.sun_path, 0600) != 0 || lstat(sa.sun_path, &st) != 0 ||
        listen(fd, CONTROL_BACKLOG) != 0) {
        int e = errno;
        err_set(err, errlen, "control socket: cannot listen on %s: %s%s", sa.sun_path, strerror(e),
                e == EACCES ? "; the audit folder must be writable by the user ternd runs as" : "");
        close(fd);
        unlink(sa.sun_path);
        return -1;
    }
    srv->control_ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, accept_cb, srv);
    pause_timer = evtimer_new(srv->base, resume_cb, srv);
    if (!srv->control_ev || !pause_timer || event_add(srv->control_ev, NULL) != 0) {
        err_set(err, errlen, "control socket: cannot watch %s (out of memory?)", sa.sun_path);
        if (srv->control_ev)
            event_free(srv->control_ev);
        if (pause_timer)
            event_free(pause_timer);
        srv->control_ev = pause_timer = NULL;
        close(fd);
        unlink(sa.sun_path);
        return -1;
    }
    srv->control_fd = fd;
    memcpy(sock_path, sa.sun_path, sizeof sock_path);
    sock_dev = st.st_dev;
    sock_ino = st.st_ino;
    log_info("control socket %s: tern records admin actions through it", sock_path);
    return 0;
}

void control_close(struct server *srv)
{
    if (srv->control_ev)
        event_free(srv->control_ev);
    if (pause_timer)
        event_free(pause_timer);
    srv->control_ev = pause_timer = NULL;
    if (srv->control_fd >= 0) {
        close(srv->control_fd);
        struct stat st;
        if (lstat(sock_path, &st) == 0 && st.st_dev == sock_dev && st.st_ino == sock_ino)
            unlink(sock_path);
    }
    srv->control_fd = -1;
    while (clients) {
        struct client *c = clients;
        clients = c->next;
        nclients--;
        /* its events go now, before the base they belong to */
        if (c->read_ev)
            event_free(c->read_ev);
        if (c->timer)
            event_free(c->timer);
        c->read_ev = c->timer = NULL;
        c->orphaned = true;
        if (!c->busy)
            client_free(c);
    }
}

/* The registry of terminals (watch.h): a list of watchers on struct server, the bounded writes
 * of terminal-message frames to them, and their audit records (watch, watch_end). Writing to a
 * bufferevent may run another connection's callbacks, which may end a watch; a watcher removed
 * while a write loop runs is only marked, and unlinked once the loop is over. */
#include "net/watch.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/record.h"
#include "net/server.h"
#include "util/log.h"

struct watcher {
    struct watcher *prev, *next;
    char user[TABLES_ADDR_MAX + 1];
    struct bufferevent *bev; /* NULL once removed */
    enum watch_via via;
    void (*kick)(void *owner, const char *why);
    void *owner;
    json_t *fields; /* who, for the audit records */
    unsigned long long delivered, dropped;
    struct timespec began;
};

static const char *via_name(enum watch_via v)
{
    return v == WATCH_SOCKET ? "socket" : "xwatch";
}

const char *watch_unfit(const struct tables *t, const char *user)
{
    const struct tables_user *u = tables_user(t, user);
    if (!u)
        return "no such user";
    if (u->shared)
        return "a shared mailbox has no terminal";
    if (u->locked)
        return "the user is locked";
    if (u->forward[0] || u->moved[0])
        return "the user's mail goes elsewhere";
    return NULL;
}

/* Appends an audit record: fields (borrowed) first, then the rest (stolen). */
static void record(struct server *srv, const char *event, json_t *fields, json_t *rest)
{
    json_t *f = json_object();
    if (f && fields)
        json_object_update(f, fields);
    if (f && rest)
        json_object_update(f, rest);
    json_decref(rest);
    srv_audit(srv, event, f);
}

void watch_audit_refused(struct server *srv, enum watch_via via, const char *user, json_t *fields,
                         const char *why)
{
    record(srv, "watch", fields,
           json_pack("{s:s,s:o,s:s,s:o}", "via", via_name(via), "user", audit_str(user), "result",
                     "fail", "reason", audit_str(why)));
    json_decref(fields);
}

static size_t count_user(const struct server *srv, const char *user)
{
    size_t n = 0;
    for (const struct watcher *x = srv->watchers; x; x = x->next)
        n += x->bev && strcmp(x->user, user) == 0;
    return n;
}

struct watcher *watch_add(struct server *srv, const char *user, struct bufferevent *bev,
                          enum watch_via via, void (*kick)(void *owner, const char *why),
                          void *owner, json_t *fields, char *err, size_t errlen)
{
    const char *why = NULL;
    struct watcher *x = NULL;
    if (srv->nwatchers >= WATCH_MAX)
        why = "too many terminals are open on this server";
    else if (count_user(srv, user) >= WATCH_PER_USER)
        why = "too many terminals are open for this user";
    else if (strlen(user) > TABLES_ADDR_MAX || !(x = calloc(1, sizeof *x)))
        why = "out of memory";
    if (why) {
        snprintf(err, errlen, "%s (at most %d, %d a user)", why, WATCH_MAX, WATCH_PER_USER);
        watch_audit_refused(srv, via, user, fields, why);
        return NULL;
    }
    snprintf(x->user, sizeof x->user, "%s", user);
    x->bev = bev;
    x->via = via;
    x->kick = kick;
    x->owner = owner;
    x->fields = fields;
    clock_gettime(CLOCK_MONOTONIC, &x->began);
    x->next = srv->watchers;
    if (srv->watchers)
        srv->watchers->prev = x;
    srv->watchers = x;
    srv->nwatchers++;
    record(srv, "watch", fields,
           json_pack("{s:s,s:s,s:s}", "via", via_name(via), "user", x->user, "result", "ok"));
    log_info("terminal: %s watching over %s (%zu terminals open)", x->user, via_name(via),
             srv->nwatchers);
    return x;
}

static void unlink_one(struct server *srv, struct watcher *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        srv->watchers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    json_decref(x->fields);
    free(x);
}

void watch_remove(struct server *srv, struct watcher *x, const char *why)
{
    if (!x || !x->bev)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    json_int_t ms = (json_int_t)(now.tv_sec - x->began.tv_sec) * 1000 +
                    (now.tv_nsec - x->began.tv_nsec) / 1000000;
    record(srv, "watch_end", x->fields,
           json_pack("{s:s,s:s,s:I,s:I,s:I,s:s}", "via", via_name(x->via), "user", x->user,
                     "delivered", (json_int_t)x->delivered, "dropped", (json_int_t)x->dropped,
                     "duration_ms", ms, "reason", why));
    log_info("terminal: %s stopped watching (%s; %llu messages, %llu dropped)", x->user, why,
             x->delivered, x->dropped);
    x->bev = NULL;
    srv->nwatchers--;
    if (srv->watch_busy == 0)
        unlink_one(srv, x); /* else the loop that runs unlinks it when done */
}

/* Unlinks the watchers removed while a loop ran over the list. */
static void purge(struct server *srv)
{
    struct watcher *next;
    for (struct watcher *x = srv->watchers; x; x = next) {
        next = x->next;
        if (!x->bev)
            unlink_one(srv, x);
    }
}

bool watch_live(const struct server *srv, const char *user)
{
    for (const struct watcher *x = srv->watchers; x; x = x->next)
        if (x->bev && strcmp(x->user, user) == 0)
            return true;
    return false;
}

/* Octets waiting to go out to the watcher: its bufferevent's, and under TLS the encrypted ones
 * the underlying one still holds. */
static size_t pending(struct bufferevent *bev)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(bev));
    struct bufferevent *u = bufferevent_get_underlying(bev);
    if (u)
        n += evbuffer_get_length(bufferevent_get_output(u));
    return n;
}

size_t watch_write(struct server *srv, const char *user, const char *frame, size_t len,
                   size_t *dropped)
{
    size_t took = 0;
    *dropped = 0;
    srv->watch_busy++;
    for (struct watcher *x = srv->watchers; x; x = x->next) {
        if (!x->bev || strcmp(x->user, user) != 0)
            continue;
        if (pending(x->bev) + len > WATCH_OUT_MAX || bufferevent_write(x->bev, frame, len) != 0) {
            x->dropped++; /* a terminal that does not read loses messages, not our memory */
            (*dropped)++;
            continue;
        }
        x->delivered++;
        took++;
    }
    if (--srv->watch_busy == 0)
        purge(srv);
    return took;
}

void watch_recheck(struct server *srv, const struct tables *t)
{
    srv->watch_busy++;
    for (struct watcher *x = srv->watchers; x; x = x->next) {
        const char *why = x->bev ? watch_unfit(t, x->user) : NULL;
        if (why)
            x->kick(x->owner, why); /* the owner removes it (maybe later) */
    }
    if (--srv->watch_busy == 0)
        purge(srv);
}

void watch_free_all(struct server *srv)
{
    struct watcher *next;
    for (struct watcher *x = srv->watchers; x; x = next) {
        next = x->next;
        json_decref(x->fields);
        free(x);
    }
    srv->watchers = NULL;
    srv->nwatchers = 0;
}

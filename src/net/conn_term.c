/* Terminals in one connection: the session core's terminal_live hook, XWATCH (the connection
 * registers itself as a terminal of its authenticated user, net/watch.c, and leaves the
 * registry when it closes or a reload takes the user away), and the copy of a message being
 * received that goes to its recipients' terminals: collected while it is stored, bounded by
 * [terminal] max_size, framed once (client/termframe.h) and written to every live watcher. */
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "client/termframe.h"
#include "net/conn_priv.h"
#include "net/watch.h"
#include "util/log.h"

#define TERM_TRACE_ROOM 8192 /* octets of trace header (Return-Path, Received) above max_size */

_Static_assert((int)TERMINAL_ALLOW_ALL == (int)SMTP_TERMINAL_ALL &&
                   (int)TERMINAL_ALLOW_AUTHENTICATED == (int)SMTP_TERMINAL_AUTHENTICATED &&
                   (int)TERMINAL_ALLOW_NONE == (int)SMTP_TERMINAL_NONE,
               "[terminal] allow and the core's enum must agree");

bool conn_terminal_live(void *ctx, const char *mailbox)
{
    struct conn *c = ctx;
    return watch_live(c->srv, mailbox);
}

/* The registry's request to end this watch (a reload took the user away): 421, then close. */
static void kick(void *owner, const char *why)
{
    struct conn *c = owner;
    smtp_session_end_watch(c->s, why);
    conn_watch_stop(c, why);
    if (!c->busy)
        conn_poke(c);
}

void conn_watch_start(struct conn *c, struct smtp_result *r)
{
    const char *user = smtp_session_auth_user(c->s);
    const char *unfit = watch_unfit(c->conf->tables, user);
    char err[160];
    if (unfit) { /* e.g. a forwarded user: authenticated, but no terminal here */
        watch_audit_refused(c->srv, WATCH_XWATCH, user, json_pack("{s:s}", "session", c->session),
                            unfit);
        snprintf(err, sizeof err, "No terminal for %.80s here: %s", user, unfit);
        conn_fail_result(r, 550, "5.7.1", err);
        return;
    }
    c->watcher = watch_add(c->srv, user, c->bev, WATCH_XWATCH, kick, c,
                           json_pack("{s:s}", "session", c->session), err, sizeof err);
    if (!c->watcher) {
        conn_fail_result(r, 452, "4.3.1", err);
        return;
    }
    /* a watcher waits for hours: let the kernel find a peer that vanished without a word */
    struct bufferevent *u = bufferevent_get_underlying(c->bev);
    int fd = bufferevent_getfd(u ? u : c->bev);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
}

void conn_watch_stop(struct conn *c, const char *why)
{
    if (!c->watcher)
        return;
    watch_remove(c->srv, c->watcher, why);
    c->watcher = NULL;
}

void conn_term_release(struct conn *c)
{
    free(c->term);
    c->term = NULL;
    c->term_len = c->term_cap = 0;
    c->term_on = c->term_over = false;
}

void conn_term_begin(struct conn *c, const struct smtp_txn *t)
{
    conn_term_release(c);
    c->term_on = t->nterminals > 0;
}

void conn_term_append(struct conn *c, const char *data, size_t len)
{
    if (!c->term_on || c->term_over || len == 0)
        return;
    size_t max = (size_t)c->conf->terminal_max_size + TERM_TRACE_ROOM;
    if (len > max - c->term_len) {
        c->term_over = true; /* the core drops the terminals at the end; free the copy now */
        free(c->term);
        c->term = NULL;
        c->term_len = c->term_cap = 0;
        return;
    }
    if (c->term_len + len > c->term_cap) {
        size_t cap = c->term_cap ? c->term_cap : 16384;
        while (cap < c->term_len + len)
            cap *= 2;
        if (cap > max)
            cap = max;
        char *p = realloc(c->term, cap);
        if (!p) {
            c->term_over = true;
            return;
        }
        c->term = p;
        c->term_cap = cap;
    }
    memcpy(c->term + c->term_len, data, len);
    c->term_len += len;
}

size_t conn_term_deliver(struct conn *c, const struct smtp_txn *t,
                         char (*boxes)[TABLES_ADDR_MAX + 1], size_t *nboxes)
{
    if (!c->term_on || t->nterminals == 0)
        return 0;
    size_t flen = 0;
    char *frame = c->term_over ? NULL
                               : tframe_format((long long)time(NULL), c->msg_id, t->from,
                                               c->term ? c->term : "", c->term_len, &flen);
    if (!frame && !c->term_over)
        log_err("terminal: out of memory framing %s; no terminal gets it", c->msg_id);
    size_t shown = 0;
    for (size_t i = 0; i < t->nterminals; i++) {
        const char *user = t->terminals[i];
        size_t dropped = 0;
        size_t took = frame ? watch_write(c->srv, user, frame, flen, &dropped) : 0;
        conn_audit_terminal(c, t, user, took, dropped);
        if (!took)
            continue;
        shown++;
        for (size_t k = 0; boxes && k < *nboxes; k++)
            if (strcmp(boxes[k], user) == 0) {
                memmove(boxes + k, boxes + k + 1, (*nboxes - k - 1) * sizeof *boxes);
                (*nboxes)--;
                break;
            }
    }
    free(frame);
    return shown;
}

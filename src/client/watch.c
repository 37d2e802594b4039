/* libtern's side of XWATCH: turning a connection into a terminal (tern_watch), reading the
 * terminal messages ternd frames on it (tern_watch_next, through the reader of termframe.c),
 * and QUIT while watching. Once watching, the bytes from the server are no longer replies to
 * commands but frames with an occasional reply between them, so they bypass the client core:
 * what the core left unread after the 250 is where the first frame begins. */
#include "client/driver.h"
#include "client/reply.h"
#include "client/termframe.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WATCH_FOREVER_MS (365LL * 86400 * 1000)
#define WATCH_QUIT_MS 10000 /* for the 221 after QUIT, messages still arriving before it */

void tern_term_message_free(struct tern_term_message *m)
{
    if (!m)
        return;
    free(m->text);
    memset(m, 0, sizeof *m);
}

void drv_watch_reset(struct tern_client *c)
{
    if (!c->frames)
        return;
    tframe_free(c->frames);
    free(c->frames);
    c->frames = NULL;
}

int tern_watch(struct tern_client *c, struct tern_reply *reply)
{
    struct tframe *f = malloc(sizeof *f);
    if (!f) {
        creply_local(reply, TERN_CODE_LOCAL, TERN_CMD_OTHER, "out of memory");
        return -1;
    }
    if (drv_exchange(c, TERN_CMD_OTHER, "XWATCH", false, reply) != 0 || reply->code != 250) {
        free(f);
        return -1;
    }
    tframe_init(f);
    c->frames = f;
    return 0;
}

/* Reads what the server sent into c->in, waiting until deadline: 1 read, 0 timed out, -1 the
 * connection is gone (r filled, closed). */
static int watch_read(struct tern_client *c, long long deadline, struct tern_reply *r)
{
    char why[256];
    for (;;) {
        short ev = 0;
        ssize_t n =
            tport_read(&c->tp, c->in + c->inlen, sizeof c->in - c->inlen, &ev, why, sizeof why);
        if (n > 0) {
            c->inlen += (size_t)n;
            return 1;
        }
        if (n == 0) {
            drv_fail(c, TERN_CMD_OTHER, r, "%s closed the connection while watching", c->host);
            return -1;
        }
        if (n != TPORT_WOULD_BLOCK) {
            drv_fail(c, TERN_CMD_OTHER, r, "reading from %s: %s", c->host, why);
            return -1;
        }
        if (tport_pending(&c->tp) > 0)
            continue;
        int p = tport_wait(&c->tp, ev ? ev : POLLIN, deadline, why, sizeof why);
        if (p == 0)
            return 0;
        if (p < 0) {
            drv_fail(c, TERN_CMD_OTHER, r, "%s", why);
            return -1;
        }
    }
}

/* The next frame or reply of what was read: 1 message (m), 2 reply (r), 0 need more, -1 bad
 * (r filled, closed). */
static int watch_parse(struct tern_client *c, struct tern_term_message *m, struct tern_reply *r)
{
    size_t used = 0;
    enum tframe_event ev = tframe_feed(c->frames, c->in, c->inlen, &used);
    memmove(c->in, c->in + used, c->inlen - used);
    c->inlen -= used;
    switch (ev) {
    case TFRAME_MORE:
        return 0;
    case TFRAME_MESSAGE:
        tframe_take_message(c->frames, m);
        return 1;
    case TFRAME_REPLY:
        if (tframe_take_reply(c->frames, r) < 0)
            return -1;
        r->cmd = TERN_CMD_OTHER;
        r->cls = smtpc_classify(TERN_CMD_OTHER, r->code);
        return 2;
    case TFRAME_BAD:
        break;
    }
    drv_fail(c, TERN_CMD_OTHER, r, "%s sent what is not a terminal message (%s); closed", c->host,
             c->frames->why);
    return -1;
}

int tern_watch_next(struct tern_client *c, int timeout_ms, struct tern_term_message *m,
                    struct tern_reply *reply)
{
    if (!c->connected || !c->frames) {
        creply_local(
            reply, c->failure[0] ? TERN_CODE_CONNECTION : TERN_CODE_LOCAL, TERN_CMD_OTHER, "%s",
            c->failure[0] ? c->failure : "not watching: tern_watch must get its 250 first");
        return -1;
    }
    long long deadline = tport_now_ms() + (timeout_ms < 0 ? WATCH_FOREVER_MS : timeout_ms);
    for (;;) {
        int p = c->inlen ? watch_parse(c, m, reply) : 0;
        if (p == 1)
            return 1;
        if (p == 2) { /* the server ends the watch (421), or answers a QUIT sent some other way */
            char text[256];
            snprintf(text, sizeof text, "%d %.200s", reply->code, tern_reply_text(reply));
            drv_fail(c, TERN_CMD_OTHER, NULL, "the server ended the watch: %s", text);
            return -1;
        }
        if (p < 0)
            return -1;
        if (c->inlen == sizeof c->in) { /* cannot happen: the reader takes any octet */
            drv_fail(c, TERN_CMD_OTHER, reply, "the terminal stream from %s is stuck", c->host);
            return -1;
        }
        int rd = watch_read(c, deadline, reply);
        if (rd <= 0)
            return rd;
    }
}

int drv_watch_quit(struct tern_client *c, struct tern_reply *r)
{
    char why[256];
    const char quit[] = "QUIT\r\n";
    size_t off = 0;
    long long deadline = tport_now_ms() + WATCH_QUIT_MS;
    if (c->o.transcript)
        c->o.transcript(c->o.transcript_arg, 'C', "QUIT", 4);
    while (off < sizeof quit - 1) {
        short ev = 0;
        ssize_t w = tport_write(&c->tp, quit + off, sizeof quit - 1 - off, &ev, why, sizeof why);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w != TPORT_WOULD_BLOCK || tport_wait(&c->tp, ev, deadline, why, sizeof why) <= 0) {
            drv_fail(c, TERN_CMD_QUIT, r, "cannot send QUIT to %s", c->host);
            c->failure[0] = '\0';
            return -1;
        }
    }
    struct tern_term_message m = {0};
    int rc = -1;
    for (;;) {
        int p = c->inlen ? watch_parse(c, &m, r) : 0;
        if (p == 2) {
            r->cmd = TERN_CMD_QUIT;
            r->cls = smtpc_classify(TERN_CMD_QUIT, r->code);
            rc = r->code == 221 ? 0 : -1;
            break;
        }
        if (p < 0)
            break;
        if (p == 1)
            continue; /* a message that was on its way: dropped */
        int rd = watch_read(c, deadline, r);
        if (rd == 0)
            creply_local(r, TERN_CODE_CONNECTION, TERN_CMD_QUIT, "no reply to QUIT from %s",
                         c->host);
        if (rd <= 0)
            break;
    }
    tern_term_message_free(&m);
    drv_fail(c, TERN_CMD_QUIT, NULL, "closed after QUIT");
    c->failure[0] = '\0';
    return rc;
}

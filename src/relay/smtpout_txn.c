/* One mail transaction on an outbound connection: the checks that need no server (SIZE,
 * SMTPUTF8, addresses that cannot go on a command line), MAIL FROM with its parameters, RCPT TO
 * for each recipient and DATA, all in one write when the server offers PIPELINING (RFC 2920)
 * and one at a time otherwise, the message streamed from its file through the core's
 * dot-stuffing no faster than the server takes it, and the final result of every recipient: the
 * reply that decided it (a refused RCPT, or MAIL, DATA or the final dot for the others). A
 * transaction that did not reach the final dot after MAIL was accepted ends with RSET, so the
 * connection can take the next message. */
#include "relay/smtpout_priv.h"

#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void so_txn_free(struct smtpout_txn *t)
{
    if (!t)
        return;
    if (t->fd >= 0)
        close(t->fd);
    free(t->from);
    for (size_t i = 0; t->rcpts && i < t->n; i++)
        free(t->rcpts[i]);
    free(t->rcpts);
    free(t->res);
    free(t->final);
    free(t->accepted);
    free(t->queued);
    free(t->buf);
    free(t);
}

void so_txn_fail_all(struct smtpout *s, const struct smtpout_reply *why)
{
    struct smtpout_txn *t = s->txn;
    for (size_t i = 0; t && i < t->n; i++) {
        if (!t->final[i]) {
            t->res[i] = *why;
            t->final[i] = true;
        }
    }
}

/* The transaction is over: done is scheduled and the connection takes the next message. */
static void finish(struct smtpout *s)
{
    struct smtpout_txn *t = s->txn;
    for (size_t i = 0; i < t->n; i++) /* cannot happen: every path decides them all */
        if (!t->final[i])
            so_local(&t->res[i], 0, "4.3.0", TERN_CMD_RCPT, "no final reply for this recipient");
    memset(t->final, 1, t->n * sizeof *t->final);
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
    s->state = SO_READY;
    evtimer_del(s->timer);
    s->want_done = true;
    so_notify(s);
}

/* Every undecided recipient gets r. */
static void decide_rest(struct smtpout_txn *t, const struct smtpout_reply *r, bool only_accepted)
{
    for (size_t i = 0; i < t->n; i++) {
        if (!t->final[i] && (!only_accepted || t->accepted[i])) {
            t->res[i] = *r;
            t->final[i] = true;
        }
    }
}

static size_t next_queued(const struct smtpout_txn *t, size_t from)
{
    while (from < t->n && !t->queued[from])
        from++;
    return from;
}

/* Can addr go inside "<...>" on a command line? */
static bool addr_ok(const char *addr)
{
    return strlen(addr) <= SMTPOUT_MAX_ADDR && !strpbrk(addr, "\r\n");
}

static bool ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* 1 when the file holds an octet >= 0x80, 0 when not, -1 on a read error (errno). */
static int has_8bit(int fd, uint64_t from, char *buf)
{
    for (off_t off = (off_t)from;;) {
        ssize_t n = pread(fd, buf, SMTPOUT_CHUNK, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return (int)n;
        unsigned char acc = 0;
        for (ssize_t i = 0; i < n; i++) /* no early exit: the compiler vectorises it */
            acc |= (unsigned char)buf[i];
        if (acc & 0x80)
            return 1;
        off += n;
    }
}

/* The checks no server is needed for; false when they decided every recipient. */
static bool precheck(struct smtpout *s)
{
    struct smtpout_txn *t = s->txn;
    struct smtpout_reply r;
    if (s->caps.size > 0 && t->size > s->caps.size) {
        so_local(&r, 552, "5.3.4", TERN_CMD_MAIL,
                 "message size %llu exceeds the limit of %llu octets that %s announces (SIZE)",
                 (unsigned long long)t->size, s->caps.size, s->namaddr);
        decide_rest(t, &r, false);
        return false;
    }
    if (t->utf8 && !(s->caps.flags & TERN_CAP_SMTPUTF8)) {
        so_local(&r, 550, "5.6.7", TERN_CMD_MAIL,
                 "SMTPUTF8 is required, but was not offered by host %s", s->namaddr);
        decide_rest(t, &r, false);
        return false;
    }
    if (!addr_ok(t->from)) {
        so_local(&r, 553, "5.1.7", TERN_CMD_MAIL,
                 "the sender address is longer than %d octets or holds a line break: it "
                 "cannot be sent",
                 SMTPOUT_MAX_ADDR);
        decide_rest(t, &r, false);
        return false;
    }
    size_t nq = 0;
    for (size_t i = 0; i < t->n; i++) {
        t->queued[i] = addr_ok(t->rcpts[i]);
        nq += t->queued[i];
        if (!t->queued[i]) {
            so_local(&t->res[i], 553, "5.1.3", TERN_CMD_RCPT,
                     "the recipient address is longer than %d octets or holds a line break: it "
                     "cannot be sent",
                     SMTPOUT_MAX_ADDR);
            t->final[i] = true;
        }
    }
    if (nq == 0)
        return false;
    if (s->caps.flags & TERN_CAP_8BITMIME) { /* else BODY= cannot be said: no need to know */
        int e = t->body_known ? t->eight : has_8bit(t->fd, t->start, t->buf);
        if (e < 0) {
            so_local(&r, 0, "4.3.0", TERN_CMD_MAIL, "cannot read the message file: %s",
                     strerror(errno));
            decide_rest(t, &r, false);
            return false;
        }
        t->eight = e == 1;
    }
    return true;
}

static void send_rcpt(struct smtpout *s, size_t i)
{
    char line[SMTPOUT_MAX_ADDR + 16];
    snprintf(line, sizeof line, "RCPT TO:<%s>", s->txn->rcpts[i]);
    so_command(s, TERN_CMD_RCPT, line, false);
}

static void rset(struct smtpout *s)
{
    if (so_command(s, TERN_CMD_RSET, "RSET", false) == 0)
        so_flush(s, false);
}

static void start(struct smtpout *s)
{
    struct smtpout_txn *t = s->txn;
    if (!precheck(s)) {
        finish(s);
        return;
    }
    char line[SMTPOUT_MAX_ADDR + 100];
    snprintf(line, sizeof line, "MAIL FROM:<%s>", t->from);
    size_t k = strlen(line);
    if (s->caps.flags & TERN_CAP_SIZE)
        k += (size_t)snprintf(line + k, sizeof line - k, " SIZE=%llu", (unsigned long long)t->size);
    if (t->eight && (s->caps.flags & TERN_CAP_8BITMIME))
        k += (size_t)snprintf(line + k, sizeof line - k, " BODY=8BITMIME");
    if (t->utf8)
        snprintf(line + k, sizeof line - k, " SMTPUTF8");
    t->pipelined = (s->caps.flags & TERN_CAP_PIPELINING) != 0;
    t->next_reply = next_queued(t, 0);
    t->next_send = t->next_reply;
    if (so_command(s, TERN_CMD_MAIL, line, false) < 0)
        return;
    if (t->pipelined) { /* RFC 2920 §3.1: DATA is the last command of the group */
        for (size_t i = next_queued(t, 0); i < t->n; i = next_queued(t, i + 1))
            send_rcpt(s, i);
        so_command(s, TERN_CMD_DATA, "DATA", false);
    }
    so_flush(s, false);
    so_arm_reply(s);
}

int smtpout_send(struct smtpout *s, const struct smtpout_msg *m, smtpout_done_fn *done, void *arg)
{
    if (!smtpout_idle(s) || !m || !done || !m->from || !m->rcpts || m->nrcpts == 0 ||
        m->nrcpts > SMTPOUT_MAX_RCPTS || m->fd < 0)
        return -1;
    for (size_t i = 0; i < m->nrcpts; i++)
        if (!m->rcpts[i])
            return -1;
    struct smtpout_txn *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    t->fd = fcntl(m->fd, F_DUPFD_CLOEXEC, 3);
    t->n = m->nrcpts;
    t->from = strdup(m->from);
    t->rcpts = calloc(t->n, sizeof *t->rcpts);
    t->res = calloc(t->n, sizeof *t->res);
    t->final = calloc(t->n, sizeof *t->final);
    t->accepted = calloc(t->n, sizeof *t->accepted);
    t->queued = calloc(t->n, sizeof *t->queued);
    t->buf = malloc(SMTPOUT_CHUNK);
    bool bad = t->fd < 0 || !t->from || !t->rcpts || !t->res || !t->final || !t->accepted ||
               !t->queued || !t->buf;
    bool utf8 = m->smtputf8 || !ascii(m->from);
    for (size_t i = 0; !bad && i < t->n; i++) {
        bad = !(t->rcpts[i] = strdup(m->rcpts[i]));
        utf8 |= !ascii(m->rcpts[i]);
    }
    struct stat st;
    t->size = m->size;
    if (!bad && t->size == 0) {
        bad = fstat(t->fd, &st) < 0;
        t->size = bad || (uint64_t)st.st_size < m->offset ? 0 : (uint64_t)st.st_size - m->offset;
    }
    if (bad) {
        so_txn_free(t);
        return -1;
    }
    t->utf8 = utf8;
    t->eight = m->body == SMTPOUT_BODY_8BIT;
    t->body_known = m->body != SMTPOUT_BODY_SCAN;
    t->start = t->off = m->offset;
    t->done = done;
    t->arg = arg;
    s->txn = t;
    s->state = SO_TXN;
    start(s);
    return 0;
}

/* ---- replies ---- */

static void on_mail(struct smtpout *s, const struct tern_reply *r, const struct smtpout_reply *res)
{
    struct smtpout_txn *t = s->txn;
    if (r->cls == TERN_POSITIVE) {
        t->mail_ok = true;
        if (!t->pipelined) {
            send_rcpt(s, t->next_send);
            so_flush(s, false);
        }
        return;
    }
    decide_rest(t, res, false);
    if (!t->pipelined)
        finish(s); /* nothing else was sent; nothing to reset */
    /* pipelined: the RCPT and DATA replies still come, and DATA's ends it */
}

static void on_rcpt(struct smtpout *s, const struct tern_reply *r, const struct smtpout_reply *res)
{
    struct smtpout_txn *t = s->txn;
    size_t i = t->next_reply;
    if (i >= t->n)
        return; /* the core matched it to an RCPT we sent: cannot happen */
    t->next_reply = next_queued(t, i + 1);
    if (t->mail_ok && !t->final[i]) {
        t->res[i] = *res; /* final when refused; the final dot decides the others */
        if (r->cls == TERN_POSITIVE) {
            t->accepted[i] = true;
            t->naccepted++;
        } else {
            t->final[i] = true;
        }
    }
    if (t->pipelined)
        return;
    t->next_send = next_queued(t, i + 1);
    if (t->next_send < t->n)
        send_rcpt(s, t->next_send);
    else if (t->naccepted > 0)
        so_command(s, TERN_CMD_DATA, "DATA", false);
    else
        so_command(s, TERN_CMD_RSET, "RSET", false); /* MAIL was accepted: clear it */
    so_flush(s, false);
}

static void on_data(struct smtpout *s, const struct tern_reply *r, const struct smtpout_reply *res)
{
    struct smtpout_txn *t = s->txn;
    if (r->cls == TERN_INTERMEDIATE) {
        t->stuff = (struct smtpc_stuff){.bol = true, .dots = true};
        if (t->mail_ok && t->naccepted > 0) {
            s->state = SO_BODY;
            so_txn_pump(s);
            return;
        }
        /* 354 with no recipient (RFC 2920 §3.1 says a server answers 554 or 503): an empty
         * message ends it, and its reply decides nothing */
        t->aborting = true;
        if (smtpc_data_end(s->core, &t->stuff) < 0) {
            so_fail(s, "4.3.0", "out of memory ending a message to %s", s->namaddr);
            return;
        }
        so_flush(s, false);
        s->state = SO_DOT;
        return;
    }
    decide_rest(t, res, true);
    if (t->mail_ok)
        rset(s);
    else
        finish(s);
}

void so_txn_reply(struct smtpout *s, const struct tern_reply *r)
{
    struct smtpout_txn *t = s->txn;
    if (!t)
        return;
    struct smtpout_reply res;
    so_reply_of(&res, r);
    switch (r->cmd) {
    case TERN_CMD_MAIL:
        on_mail(s, r, &res);
        break;
    case TERN_CMD_RCPT:
        on_rcpt(s, r, &res);
        break;
    case TERN_CMD_DATA:
        on_data(s, r, &res);
        break;
    case TERN_CMD_DATA_END:
        if (!t->aborting) {
            decide_rest(t, &res, true);
            if (r->cls == TERN_POSITIVE)
                s->stats.messages++;
        }
        finish(s); /* RFC 5321 §4.1.1.4: the transaction is over whatever the reply */
        break;
    case TERN_CMD_RSET:
        if (r->cls != TERN_POSITIVE)
            s->spent = true; /* the server is in a state we do not know: no more messages */
        finish(s);
        break;
    default:
        break;
    }
}

/* ---- the message ---- */

void so_txn_pump(struct smtpout *s)
{
    struct smtpout_txn *t = s->txn;
    if (s->pumping || !t || !s->bev)
        return; /* a write callback run inline by our own write: the loop below goes on */
    s->pumping = true;
    struct evbuffer *out = bufferevent_get_output(s->bev);
    while (s->state == SO_BODY && evbuffer_get_length(out) < SMTPOUT_OUT_HIGH) {
        ssize_t n = pread(t->fd, t->buf, SMTPOUT_CHUNK, (off_t)t->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            /* only closing makes the server drop the part it has: a "." would deliver it */
            so_fail(s, "4.3.0",
                    "cannot read the message file: %s; closed the connection to %s so the "
                    "server drops the part sent",
                    strerror(errno), s->namaddr);
            break;
        }
        int rc = n == 0 ? smtpc_data_end(s->core, &t->stuff)
                        : smtpc_data(s->core, &t->stuff, t->buf, (size_t)n);
        if (rc < 0) {
            so_fail(s, "4.3.0", "out of memory sending a message to %s", s->namaddr);
            break;
        }
        const char *o;
        s->stats.octets += smtpc_output(s->core, &o);
        t->off += (uint64_t)n;
        if (n == 0)
            s->state = SO_DOT;
        so_flush(s, false);
    }
    if (s->state == SO_BODY) /* the next block of data must leave within this */
        so_arm(s, s->o.data_timeout > 0 ? s->o.data_timeout : 180);
    else if (s->state == SO_DOT)
        so_arm_reply(s);
    s->pumping = false;
}

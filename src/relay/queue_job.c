/* The queue manager's work on the pool: delivering queued mail for local recipients into their
 * Maildirs (bounces to local senders, forwards to local addresses), and the end of every attempt
 * on an entry: the reports to its sender (a bounce for recipients that failed or expired, a
 * delay notice once), queued before the entry's new state is saved or the entry removed, so that
 * nobody's mail leaves the spool without either a 250 somewhere or a report on its way. */
#include "relay/queue_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/tables.h"
#include "relay/dsn.h"
#include "store/deliver.h"
#include "store/maildir.h"
#include "util/log.h"
#include "work/pool.h"

/* --- local delivery --------------------------------------------------------------------------- */

struct local_job {
    struct relay_queue *q;
    struct conf *conf;
    struct rq_unit *u;
    struct smtpout_reply *r;
};

static void reply(struct smtpout_reply *r, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reply(struct smtpout_reply *r, int code, const char *enh, const char *fmt, ...)
{
    r->code = code;
    r->local = true;
    snprintf(r->enh, sizeof r->enh, "%s", enh);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof r->text, fmt, ap);
    va_end(ap);
}

/* Copies the spool's message (it starts with the Return-Path: the final delivery wants) into
 * m. */
static int copy_message(int fd, struct maildir_msg *m, char *err, size_t errlen)
{
    char buf[65536];
    ssize_t n;
    off_t off = 0;
    while ((n = pread(fd, buf, sizeof buf, off)) > 0) {
        if (maildir_append(m, buf, (size_t)n, err, errlen) != 0)
            return -1;
        off += n;
    }
    if (n < 0)
        snprintf(err, errlen, "cannot read the queued message: %s", strerror(errno));
    return n < 0 ? -1 : 0;
}

static void local_run(void *arg)
{
    struct local_job *j = arg;
    const struct rq_entry *ent = j->u->ent;
    const struct tables *t = j->conf->tables;
    size_t cap = TABLES_MAX_EXPANSION;
    char(*boxes)[TABLES_ADDR_MAX + 1] = calloc(cap, sizeof *boxes);
    bool *ok = calloc(j->u->n, sizeof *ok);
    size_t nb = 0;
    if (!boxes || !ok) {
        for (size_t k = 0; k < j->u->n; k++)
            reply(&j->r[k], 0, "4.3.0", "%s", "out of memory delivering locally");
        goto out;
    }
    for (size_t k = 0; k < j->u->n; k++) {
        char addr[320], fwd[TABLES_ADDR_MAX + 1] = "";
        snprintf(addr, sizeof addr, "%s", ent->e.rcpts[j->u->idx[k]]);
        char *at = strrchr(addr, '@');
        if (at)
            *at = '\0';
        size_t n = 0;
        enum tables_status st =
            tables_resolve(t, addr, at ? at + 1 : NULL, boxes + nb, cap - nb, &n, fwd, sizeof fwd);
        if (st == TABLES_OK || st == TABLES_FORWARD) {
            /* a forward = user's own mail went out through the spool already; what reaches
             * here (a report to it) stays with the mailbox rather than travel again */
            for (size_t i = 0; i < n; i++) { /* one copy per mailbox */
                bool dup = false;
                for (size_t b = 0; b < nb && !dup; b++)
                    dup = strcmp(boxes[b], boxes[nb + i]) == 0;
                if (!dup && i)
                    memmove(boxes[nb], boxes[nb + i], sizeof boxes[0]);
                nb += !dup;
            }
            ok[k] = true;
        } else if (st == TABLES_MOVED) {
            reply(&j->r[k], 551, "5.1.6", "User has moved; try <%s>", fwd);
        } else if (st == TABLES_TOO_MANY) {
            reply(&j->r[k], 550, "5.7.0", "%s", "Recipient expands to too many mailboxes");
        } else {
            reply(&j->r[k], 550, "5.1.1", "%s", "No such user here");
        }
    }
    if (nb) {
        char err[512] = "", which[TABLES_ADDR_MAX + 1] = "", id[MAILDIR_ID_MAX];
        const char *list[TABLES_MAX_EXPANSION];
        for (size_t b = 0; b < nb; b++)
            list[b] = boxes[b];
        int fd = spool_msg_open(j->conf->data_dir, ent->e.id, err, sizeof err);
        struct maildir_msg *m = fd < 0 ? NULL
                                       : maildir_begin(j->conf->data_dir, j->conf->hostname, list,
                                                       nb, id, sizeof id, err, sizeof err);
        enum deliver_status ds = DELIVER_FAILED;
        if (m && copy_message(fd, m, err, sizeof err) == 0)
            ds = deliver_commit(j->conf->data_dir, t, m, NULL,
                                (const char(*)[TABLES_ADDR_MAX + 1]) boxes, nb, which, sizeof which,
                                err, sizeof err);
        maildir_free(m);
        if (fd >= 0)
            close(fd);
        for (size_t k = 0; k < j->u->n; k++) {
            if (!ok[k])
                continue;
            if (ds == DELIVER_OK)
                reply(&j->r[k], 250, "2.0.0", "Delivered to the mailbox as %s", id);
            else if (ds == DELIVER_FULL) /* temporary: the owner may make room */
                reply(&j->r[k], 452, "4.2.2", "Mailbox %s is full", which);
            else
                reply(&j->r[k], 0, "4.3.0", "%s", err);
        }
    }
out:
    free(boxes);
    free(ok);
}

static void local_done(void *arg)
{
    struct local_job *j = arg;
    if (j->q->stopping)
        free(j->u);
    else
        rq_unit_done(j->q, j->u, j->r, "local", NULL);
    conf_unref(j->conf);
    free(j->r);
    free(j);
}

void rq_local_deliver(struct relay_queue *q, struct rq_unit *u)
{
    struct local_job *j = calloc(1, sizeof *j);
    if (j)
        j->r = calloc(u->n, sizeof *j->r);
    if (!j || !j->r) {
        free(j);
        rq_unit_fail_all(q, u, 0, "4.3.0", "out of memory delivering locally", "local");
        return;
    }
    j->q = q;
    j->conf = conf_ref(q->conf);
    j->u = u;
    if (pool_submit(q->pool, local_run, local_done, j) != 0) {
        conf_unref(j->conf);
        free(j->r);
        free(j);
        rq_unit_fail_all(q, u, 0, "4.3.0", "ternd is stopping", "local");
    }
}

/* --- the end of an attempt -------------------------------------------------------------------- */

struct fin_job {
    struct relay_queue *q;
    struct conf *conf;
    struct rq_entry *ent;
    time_t now;
    bool remove, bounce, delay;
    char bounce_id[96], delay_id[96];
    char err[512];
};

/* Queues a report (from <>, to the entry's sender) as a new spool entry; its id into id. */
static int queue_report(struct fin_job *j, bool delay, const char *head, size_t headlen, char *id,
                        size_t idlen)
{
    const struct rq_entry *ent = j->ent;
    struct dsn_rcpt *rr = calloc(ent->st.nrcpts, sizeof *rr);
    if (!rr) {
        snprintf(j->err, sizeof j->err, "out of memory");
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < ent->st.nrcpts; i++) {
        const struct spool_rcpt_state *s = &ent->st.rcpts[i];
        if (delay ? s->status != SPOOL_RCPT_PENDING : !ent->fresh_fail[i])
            continue;
        /* the reply as saved is "CODE ENH text"; the report wants the text after the code */
        const char *text = s->reply;
        if (s->code && strlen(text) > 4 && text[3] == ' ')
            text += 4;
        rr[n++] = (struct dsn_rcpt){.addr = ent->e.rcpts[i],
                                    .delayed = delay,
                                    .code = s->code,
                                    .reply = text,
                                    .remote_mta = s->remote[0] ? s->remote : NULL,
                                    .last_attempt = ent->st.last_try ? ent->st.last_try : j->now};
    }
    struct dsn_report rep = {.host = j->conf->hostname,
                             .queue_id = ent->e.id,
                             .sender = ent->e.from,
                             .arrival = ent->e.queued,
                             .now = j->now,
                             .retry_until = ent->e.queued + j->conf->relay.max_lifetime,
                             .delay = delay,
                             .rcpts = rr,
                             .nrcpts = n,
                             .original = head,
                             .original_len = headlen};
    size_t len = 0;
    char *msg = n ? dsn_compose(&rep, &len, j->err, sizeof j->err) : NULL;
    free(rr);
    if (!msg)
        return -1;
    const char *to[1] = {ent->e.from};
    static const char rp[] = "Return-Path: <>\r\n"; /* as every stored copy starts */
    struct spool_msg *sp =
        spool_begin(j->conf->data_dir, "", to, 1, "", id, idlen, j->err, sizeof j->err);
    int rc = sp && spool_append(sp, rp, sizeof rp - 1, j->err, sizeof j->err) == 0 &&
                     spool_append(sp, msg, len, j->err, sizeof j->err) == 0 &&
                     spool_commit(sp, j->err, sizeof j->err) == 0
                 ? 0
                 : -1;
    spool_free(sp);
    free(msg);
    return rc;
}

static void fin_run(void *arg)
{
    struct fin_job *j = arg;
    struct rq_entry *ent = j->ent;
    char *head = NULL;
    size_t headlen = 0;
    if (j->bounce || j->delay) {
        char why[256];
        int fd = spool_msg_open(j->conf->data_dir, ent->e.id, why, sizeof why);
        if (fd >= 0 && (head = malloc(RQ_DSN_HEAD_MAX))) {
            ssize_t n = pread(fd, head, RQ_DSN_HEAD_MAX, 0);
            headlen = n > 0 ? (size_t)n : 0;
        }
        if (fd >= 0)
            close(fd);
    }
    if (j->bounce && queue_report(j, false, head, headlen, j->bounce_id, sizeof j->bounce_id)) {
        /* no report, no removal: the failed recipients wait to fail (and be reported) again */
        log_err("queue: %s: cannot queue the bounce to <%s>: %s; trying again later", ent->e.id,
                ent->e.from, j->err);
        j->bounce_id[0] = '\0';
        for (size_t i = 0; i < ent->st.nrcpts; i++)
            if (ent->fresh_fail[i])
                ent->st.rcpts[i].status = SPOOL_RCPT_PENDING;
        j->remove = false;
        ent->st.next_try = j->now + j->conf->relay.retry_min;
    }
    if (j->delay && queue_report(j, true, head, headlen, j->delay_id, sizeof j->delay_id)) {
        log_warn("queue: %s: cannot queue the delay notice to <%s>: %s", ent->e.id, ent->e.from,
                 j->err);
        j->delay_id[0] = '\0';
        ent->st.delay_notified = false;
    }
    free(head);
    char err[512];
    if (j->remove) {
        if (spool_remove(j->conf->data_dir, ent->e.id, err, sizeof err) != 0 && errno != ENOENT)
            log_err("queue: %s is delivered but stays in the spool: %s; remove it with tern queue "
                    "delete %s",
                    ent->e.id, err, ent->e.id);
    } else if (spool_state_save(j->conf->data_dir, ent->e.id, &ent->st, err, sizeof err) != 0 &&
               errno != ENOENT) {
        log_err("queue: %s: cannot save its state: %s (recipients already delivered may get it "
                "again)",
                ent->e.id, err);
    }
}

static void fin_done(void *arg)
{
    struct fin_job *j = arg;
    struct relay_queue *q = j->q;
    struct rq_entry *ent = j->ent;
    if (!q->stopping && q->audit) {
        if (j->bounce_id[0])
            q->audit(q->audit_arg, "bounce",
                     json_pack("{s:s, s:s, s:s, s:s}", "id", ent->e.id, "to", ent->e.from, "report",
                               j->bounce_id, "kind", "failed"));
        if (j->delay_id[0])
            q->audit(q->audit_arg, "bounce",
                     json_pack("{s:s, s:s, s:s, s:s}", "id", ent->e.id, "to", ent->e.from, "report",
                               j->delay_id, "kind", "delayed"));
    }
    if (j->remove)
        log_info("queue: %s: done, removed from the spool", ent->e.id);
    char bounce[96], delay[96];
    snprintf(bounce, sizeof bounce, "%s", j->bounce_id);
    snprintf(delay, sizeof delay, "%s", j->delay_id);
    rq_entry_free(q, ent);
    conf_unref(j->conf);
    free(j);
    if (bounce[0])
        relay_queue_poke(q, "new", bounce);
    if (delay[0])
        relay_queue_poke(q, "new", delay);
}

void rq_finish(struct relay_queue *q, struct rq_entry *ent)
{
    const struct conf_relay *r = &q->conf->relay;
    time_t now = time(NULL);
    ent->finishing = true;
    size_t pending = 0;
    for (size_t i = 0; i < ent->st.nrcpts; i++)
        pending += ent->st.rcpts[i].status == SPOOL_RCPT_PENDING;
    if (pending && now - ent->e.queued >= r->max_lifetime) {
        for (size_t i = 0; i < ent->st.nrcpts; i++) {
            struct spool_rcpt_state *s = &ent->st.rcpts[i];
            if (s->status != SPOOL_RCPT_PENDING)
                continue;
            char last[sizeof s->reply];
            snprintf(last, sizeof last, "%s", s->reply[0] ? s->reply : "no answer");
            s->status = SPOOL_RCPT_FAILED;
            s->done = now;
            s->code = 0;
            snprintf(s->reply, sizeof s->reply,
                     "4.4.7 delivery time expired after %d days; the last attempt: %.400s",
                     r->max_lifetime / 86400, last);
            ent->fresh_fail[i] = true;
        }
        pending = 0;
    }
    struct fin_job *j = calloc(1, sizeof *j);
    if (!j) { /* tried again from the spool at the next scan */
        rq_entry_free(q, ent);
        return;
    }
    bool sender = ent->e.from[0] != '\0'; /* mail from <> is never reported on (RFC 5321 4.5.5) */
    for (size_t i = 0; i < ent->st.nrcpts; i++)
        j->bounce |= sender && ent->fresh_fail[i];
    j->delay = sender && pending && r->delay_warning > 0 && !ent->st.delay_notified &&
               now - ent->e.queued >= r->delay_warning;
    if (j->delay)
        ent->st.delay_notified = true;
    if (pending) {
        ent->st.attempts++;
        ent->st.last_try = now;
        long long wait = r->retry_min;
        for (unsigned a = 1; a < ent->st.attempts && wait < r->retry_max; a++)
            wait *= 2;
        ent->st.next_try = now + (wait < r->retry_max ? wait : r->retry_max);
    }
    j->remove = pending == 0;
    j->q = q;
    j->conf = conf_ref(q->conf);
    j->ent = ent;
    j->now = now;
    if (pool_submit(q->pool, fin_run, fin_done, j) != 0) {
        conf_unref(j->conf);
        free(j);
        rq_entry_free(q, ent);
    }
}

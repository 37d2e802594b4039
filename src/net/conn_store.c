/* The store requests of one session: opening and appending on the loop (page cache only), the
 * fsync'ing commit on the worker pool before the 250 (Promise 1), and the terminal deliveries
 * around it (RFC 821 3.4): SEND's message goes to the terminals alone once it is complete;
 * SOML's goes to each user's terminal when one takes it, else to the mailbox, decided just
 * before the commit so that a terminal that vanished sends the message to the mailbox instead
 * of losing it; SAML's goes to the terminals after the mailboxes have it durably. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/conn_priv.h"
#include "relay/queue.h"
#include "store/deliver.h"
#include "store/maildir.h"
#include "store/spool.h"
#include "util/log.h"

static void commit_run(void *arg)
{
    struct job *j = arg;
    struct conn *c = j->c;
    /* The record goes into the log before the Maildir fsyncs, so that while they run another
     * session's audit fsync may already carry it: audit then rarely costs an fsync of its own.
     * It is durable before the 250 either way; a commit that fails after it gets a
     * message_failed record. A log that cannot take it refuses the message before it is stored. */
    uint64_t seq = 0;
    if (j->rec && conn_audit_append(c, j->rec, &seq, j->err, sizeof j->err) != 0) {
        j->rec = NULL;
        j->status = DELIVER_FAILED;
        return;
    }
    j->rec = NULL;
    j->status = deliver_commit(c->conf->data_dir, c->conf->tables, c->msg, c->spool,
                               (const char(*)[TABLES_ADDR_MAX + 1]) j->boxes, j->nboxes, j->which,
                               sizeof j->which, j->err, sizeof j->err);
    if (seq && j->status == DELIVER_OK)
        j->audit_failed = conn_audit_sync(c, seq, j->err, sizeof j->err) != 0;
    else if (seq)
        conn_audit_failed(c, j->status == DELIVER_FULL ? "quota" : "store",
                          j->status == DELIVER_FULL ? j->which : j->err);
}

static void job_free(struct job *j)
{
    free(j->boxes);
    free(j->ptrs);
    free(j);
}

/* What a commit leaves to clean up, done or not. */
static void store_release(struct conn *c)
{
    maildir_free(c->msg);
    c->msg = NULL;
    spool_free(c->spool);
    c->spool = NULL;
    EVP_MD_CTX_free(c->sha);
    c->sha = NULL;
}

static void commit_done(void *arg)
{
    struct job *j = arg;
    struct conn *c = j->c;
    struct smtp_result r = {.ok = j->status == DELIVER_OK};
    const struct smtp_txn *t = smtp_session_request(c->s)->txn;
    json_decref(j->rec); /* NULL unless the job never ran */
    if (j->status == DELIVER_OK && j->audit_failed) {
        /* stored, but unrecorded: refuse, so that the client keeps the message and tries again
         * (the recipients may then get it twice; nobody loses it, and nothing goes unrecorded) */
        log_err("message %s from <%s> (%s) was stored but the audit log could not record it: "
                "%s; mail is refused until the audit log works again (fix the disk, restart "
                "ternd)",
                c->msg_id, t->from, c->ip, j->err);
        conn_fail_result(&r, 451, "4.3.0",
                         "Local error in processing: could not record the message, try again "
                         "later");
    } else if (j->status == DELIVER_OK)
        log_info("accepted %s from <%s> via %s%s%s: %zu recipients, %zu mailboxes, %zu queued, "
                 "%zu bytes",
                 c->ip, t->from, c->kind == LISTEN_SUBMISSION ? "submission" : "smtp",
                 t->auth_user[0] ? " as " : "", t->auth_user, t->nrcpts, j->nboxes, t->nforeign,
                 (size_t)c->msg_bytes);
    else if (j->status == DELIVER_FULL) {
        log_info("refused message from <%s> (%s): mailbox %s is full", t->from, c->ip, j->which);
        conn_fail_result(&r, 552, "5.2.2", "Mailbox full: the message does not fit in the quota");
    } else {
        log_err("could not store message from <%s> (%s): %s", t->from, c->ip, j->err);
        conn_fail_result(&r, 451, "4.3.0",
                         "Local error in processing: message not stored, try "
                         "again later");
    }
    if (c->spool && r.ok && !j->audit_failed) /* the queue manager delivers it from now on */
        relay_queue_poke(c->srv->relay, "new", c->spool_id);
    store_release(c);
    r.terminals = j->shown;
    if (r.ok && t->kind == SMTP_TXN_SAML) /* best effort, now that the mailboxes have it */
        r.terminals += conn_term_deliver(c, t, NULL, NULL);
    conn_term_release(c);
    job_free(j);
    if (conn_job_back(c))
        conn_resume(c, &r);
}

/* Opens the message's files: the spool copy for other domains, the Maildir copy for local
 * mailboxes (an id for each; the Maildir's wins, the spool's is kept for spool_id). Creating a
 * file is an inode allocation, a fraction of a millisecond on a busy file system: it runs on a
 * worker (store_begin), the loop only takes the result. */
static void open_files(struct conn *c, struct job *j)
{
    const struct smtp_txn *t = j->txn;
    char err[256];
    size_t n = t->nmailboxes > t->nforeign ? t->nmailboxes : t->nforeign;
    const char **list = calloc(n ? n : 1, sizeof *list);
    if (!list)
        return;
    if (t->nforeign) {
        for (size_t i = 0; i < t->nforeign; i++)
            list[i] = t->foreign[i];
        j->spool = spool_begin(c->conf->data_dir, t->from, list, t->nforeign, t->auth_user, j->id,
                               sizeof j->id, err, sizeof err);
        if (!j->spool)
            log_err("could not open a queue file: %s", err);
        snprintf(j->which, sizeof j->which, "%s", j->spool ? j->id : "");
    }
    if (t->nmailboxes && (j->spool || !t->nforeign)) {
        for (size_t i = 0; i < t->nmailboxes; i++)
            list[i] = t->mailboxes[i];
        j->msg = maildir_begin(c->conf->data_dir, c->conf->hostname, list, t->nmailboxes, j->id,
                               sizeof j->id, err, sizeof err);
        if (!j->msg)
            log_err("could not open a message file: %s", err);
    }
    free(list);
}

static void begin_run(void *arg)
{
    struct job *j = arg;
    open_files(j->c, j);
}

/* The files are open (or not): the conn takes them, and the core its id. */
static void begin_finish(struct conn *c, struct job *j, struct smtp_result *r)
{
    const struct smtp_txn *t = j->txn;
    c->spool = j->spool;
    c->msg = j->msg;
    snprintf(c->spool_id, sizeof c->spool_id, "%.95s", j->which);
    snprintf(r->id, sizeof r->id, "%s", j->id);
    if ((t->nforeign && !c->spool) || (t->nmailboxes && !c->msg)) {
        store_release(c);
        conn_fail_result(r, 451, "4.3.0",
                         "Local error in processing: cannot store mail now, try later");
        return;
    }
    if (!t->nforeign && !t->nmailboxes) /* SEND: terminals only, stored nowhere */
        maildir_new_id(r->id, sizeof r->id, c->conf->hostname);
    snprintf(c->msg_id, sizeof c->msg_id, "%s", r->id);
    c->msg_bytes = 0;
    EVP_MD_CTX_free(c->sha);
    c->sha = NULL;
    if (c->srv->audit &&
        (!(c->sha = EVP_MD_CTX_new()) || EVP_DigestInit_ex(c->sha, EVP_sha256(), NULL) != 1)) {
        EVP_MD_CTX_free(c->sha);
        c->sha = NULL;
        conn_fail_result(r, 451, "4.3.0", "Out of memory, try again later");
        return;
    }
    conn_term_begin(c, t);
}

static void begin_done(void *arg)
{
    struct job *j = arg;
    struct conn *c = j->c;
    struct smtp_result r = {.ok = true};
    if (c->dead) { /* the client is gone: nothing will be written to these */
        maildir_free(j->msg);
        spool_free(j->spool);
        job_free(j);
        conn_job_back(c);
        return;
    }
    begin_finish(c, j, &r);
    job_free(j);
    if (conn_job_back(c))
        conn_resume(c, &r);
}

/* STORE_BEGIN: false when the files are being opened on a worker (the session resumes from
 * begin_done); true when r holds the answer now. */
static bool store_begin(struct conn *c, const struct smtp_request *q, struct smtp_result *r)
{
    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        conn_fail_result(r, 451, "4.3.0", "Out of memory, try again later");
        return true;
    }
    j->kind = JOB_BEGIN;
    j->txn = q->txn;
    if (!q->txn->nforeign && !q->txn->nmailboxes) { /* SEND: no file to open */
        begin_finish(c, j, r);
        job_free(j);
        return true;
    }
    if (conn_submit(c, j, begin_run, begin_done))
        return false;
    open_files(c, j); /* the pool is stopping: do it here */
    begin_finish(c, j, r);
    job_free(j);
    return true;
}

static void store_append(struct conn *c, const struct smtp_request *q, struct smtp_result *r)
{
    char err[256];
    if ((c->msg && maildir_append(c->msg, q->data, q->len, err, sizeof err) != 0) ||
        (c->spool && spool_append(c->spool, q->data, q->len, err, sizeof err) != 0)) {
        log_err("could not write message data: %s", err);
        conn_fail_result(r, 451, "4.3.0",
                         "Local error in processing: cannot store mail now, try later");
        return;
    }
    /* the digest of exactly the bytes stored, for the message's audit record */
    if (c->sha && EVP_DigestUpdate(c->sha, q->data, q->len) != 1) {
        /* a message record without its digest would not say what was stored: refuse */
        log_err("cannot hash message data for the audit log; refusing the message");
        conn_fail_result(r, 451, "4.3.0", "Local error in processing: try again later");
        return;
    }
    c->msg_bytes += q->len;
    conn_term_append(c, q->data, q->len);
}

/* The commit: SEND's terminals now and nothing stored; SOML's terminals now, and the mailboxes
 * of the users no terminal took it for; then (with anything to store) the job. False when the
 * job went to the pool. */
static bool store_commit(struct conn *c, const struct smtp_txn *t, struct smtp_result *r)
{
    size_t n = t->nmailboxes ? t->nmailboxes : 1;
    struct job *j = calloc(1, sizeof *j);
    if (j) {
        j->boxes = calloc(n, sizeof *j->boxes);
        j->ptrs = calloc(n, sizeof *j->ptrs);
    }
    if (!j || !j->boxes || !j->ptrs) {
        if (j)
            job_free(j);
        store_release(c);
        conn_term_release(c);
        conn_fail_result(r, 451, "4.3.0", "Local error in processing: try again later");
        return true;
    }
    if (t->nmailboxes) /* (mailboxes is NULL without any) */
        memcpy(j->boxes, t->mailboxes, t->nmailboxes * sizeof *j->boxes);
    j->nboxes = t->nmailboxes;
    if (t->kind == SMTP_TXN_SEND || t->kind == SMTP_TXN_SOML)
        j->shown = conn_term_deliver(c, t, t->kind == SMTP_TXN_SOML ? j->boxes : NULL, &j->nboxes);
    for (size_t i = 0; i < j->nboxes; i++)
        j->ptrs[i] = j->boxes[i];
    if (c->msg && j->nboxes < t->nmailboxes && maildir_keep(c->msg, j->ptrs, j->nboxes) == 0) {
        maildir_free(c->msg); /* every user saw it on a terminal: nothing to store */
        c->msg = NULL;
    }
    if (!c->msg && !c->spool) {
        if (t->kind == SMTP_TXN_SEND && j->shown == 0)
            conn_fail_result(r, 450, "4.2.1",
                             "No terminal took the message: the recipients stopped watching");
        else
            log_info("shown %s from <%s> via %s%s%s on %zu terminals, %zu bytes", c->msg_id,
                     t->from, c->kind == LISTEN_SUBMISSION ? "submission" : "smtp",
                     t->auth_user[0] ? " as " : "", t->auth_user, j->shown, (size_t)c->msg_bytes);
        r->terminals = j->shown;
        store_release(c);
        conn_term_release(c);
        job_free(j);
        return true;
    }
    j->kind = JOB_COMMIT;
    j->txn = t;
    j->rec = conn_audit_message(c, t, j->ptrs, j->nboxes, c->msg_id);
    /* With an audit log, a message without its record (out of memory making it) is refused:
     * commit_run would otherwise store it and answer 250 unrecorded. */
    if ((c->srv->audit && !j->rec) || !conn_submit(c, j, commit_run, commit_done)) {
        json_decref(j->rec);
        store_release(c);
        conn_term_release(c);
        job_free(j);
        conn_fail_result(r, 451, "4.3.0", "Local error in processing: try again later");
        return true;
    }
    return false;
}

bool conn_store_request(struct conn *c, const struct smtp_request *q, struct smtp_result *r)
{
    switch (q->type) {
    case SMTP_REQ_STORE_BEGIN:
        return store_begin(c, q, r);
    case SMTP_REQ_STORE_APPEND:
        store_append(c, q, r);
        break;
    case SMTP_REQ_STORE_COMMIT:
        return store_commit(c, q->txn, r);
    case SMTP_REQ_STORE_ABORT:
        store_release(c);
        conn_term_release(c);
        break;
    default:
        break;
    }
    return true;
}

/* The queue manager's entries: reading the spool on the pool (all of it on a timer, on ETRN,
 * TURN and an admin's flush; one entry when ternd has just queued it), deciding which are due,
 * splitting each entry's pending recipients into units per destination, and taking in what
 * became of each recipient. Also the manager's life: start, reload, stop. */
#include "relay/queue_priv.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/tables.h"
#include "util/log.h"
#include "work/pool.h"

struct rq_entry *rq_find(struct relay_queue *q, const char *id)
{
    for (struct rq_entry *e = q->entries; e; e = e->next)
        if (strcmp(e->e.id, id) == 0)
            return e;
    return NULL;
}

void rq_entry_free(struct relay_queue *q, struct rq_entry *ent)
{
    for (struct rq_entry **p = &q->entries; *p; p = &(*p)->next)
        if (*p == ent) {
            *p = ent->next;
            q->nentries--;
            break;
        }
    spool_state_free(&ent->st);
    free(ent->e.rcpts);
    free(ent->fresh_fail);
    free(ent);
}

void rq_domain(const char *addr, char *out, size_t outlen)
{
    const char *at = strrchr(addr, '@');
    snprintf(out, outlen, "%s", at ? at + 1 : addr);
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
}

/* --- reading the spool ------------------------------------------------------------------------ */

struct loaded {
    struct spool_entry e;
    struct spool_state st;
};

struct scan_job {
    struct relay_queue *q;
    struct conf *conf;
    char id[96]; /* one entry, or "" for the whole queue */
    struct loaded *items;
    size_t n, cap;
    char err[512];
};

static int keep(struct scan_job *j, const struct spool_entry *e)
{
    if (j->n >= RQ_MAX_ENTRIES)
        return 1; /* the rest waits for a later scan */
    if (j->n == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 16;
        struct loaded *v = realloc(j->items, cap * sizeof *v);
        if (!v)
            return -1;
        j->items = v;
        j->cap = cap;
    }
    struct loaded *l = &j->items[j->n];
    l->e = *e;
    l->e.rcpts = malloc(e->nrcpts * sizeof *e->rcpts);
    if (!l->e.rcpts)
        return -1;
    memcpy(l->e.rcpts, e->rcpts, e->nrcpts * sizeof *e->rcpts);
    char why[256];
    if (spool_state_load(j->conf->data_dir, &l->e, &l->st, why, sizeof why) != 0) {
        log_warn("queue: entry %s: %s; it waits until its state is mended or deleted", e->id, why);
        free(l->e.rcpts);
        return 0;
    }
    j->n++;
    return 0;
}

static int list_cb(void *ctx, const struct spool_entry *e)
{
    return keep(ctx, e) < 0 ? -1 : 0;
}

static void scan_run(void *arg)
{
    struct scan_job *j = arg;
    if (j->id[0]) {
        struct spool_entry e;
        if (spool_entry_load(j->conf->data_dir, j->id, false, &e, j->err, sizeof j->err) == 0) {
            keep(j, &e);
            free(e.rcpts);
        }
        return;
    }
    if (spool_list(j->conf->data_dir, list_cb, j, j->err, sizeof j->err) < 0)
        log_warn("queue: cannot read the spool: %s", j->err);
}

static bool domain_matches(const char *domain, const char *node, bool sub)
{
    if (strcmp(domain, node) == 0)
        return true;
    size_t dl = strlen(domain), nl = strlen(node);
    return sub && dl > nl && domain[dl - nl - 1] == '.' && strcmp(domain + dl - nl, node) == 0;
}

/* Is an ETRN waiting for one of ent's pending recipients? */
static bool etrn_wants(const struct relay_queue *q, const struct rq_entry *ent)
{
    for (size_t r = 0; r < ent->st.nrcpts; r++) {
        if (ent->st.rcpts[r].status != SPOOL_RCPT_PENDING)
            continue;
        char dom[256];
        rq_domain(ent->e.rcpts[r], dom, sizeof dom);
        for (size_t k = 0; k < q->netrn; k++)
            if (domain_matches(dom, q->etrn[k], q->etrn_sub[k]))
                return true;
    }
    return false;
}

static void scan_done(void *arg)
{
    struct scan_job *j = arg;
    struct relay_queue *q = j->q;
    time_t now = time(NULL);
    bool whole = !j->id[0];
    struct rq_conn *turns = NULL;
    if (whole) {
        q->scanning = false;
        turns = q->turn_wait;
        q->turn_wait = NULL;
    }
    for (size_t i = 0; i < j->n; i++) {
        struct loaded *l = &j->items[i];
        struct rq_entry *ent = NULL;
        bool due = l->st.next_try <= now ||
                   (whole && etrn_wants(q, &(struct rq_entry){.e = l->e, .st = l->st}));
        bool wanted_by_turn = turns != NULL;
        if (!q->stopping && !rq_find(q, l->e.id) && q->nentries < RQ_MAX_ENTRIES &&
            (due || wanted_by_turn))
            ent = calloc(1, sizeof *ent);
        if (ent)
            ent->fresh_fail = calloc(l->e.nrcpts ? l->e.nrcpts : 1, sizeof *ent->fresh_fail);
        if (!ent || !ent->fresh_fail) {
            free(ent);
            spool_state_free(&l->st);
            free(l->e.rcpts);
            continue;
        }
        ent->e = l->e;
        ent->st = l->st;
        ent->next = q->entries;
        q->entries = ent;
        q->nentries++;
        if (due)
            rq_schedule(q, ent);
    }
    if (whole)
        q->netrn = 0;
    for (struct rq_conn *t = turns, *next; t; t = next) {
        next = t->next;
        rq_turn_start(q, t);
    }
    /* entries loaded only for a TURN that did not take them go back to the spool's care */
    for (struct rq_entry *e = q->entries, *next; e; e = next) {
        next = e->next;
        if (!e->busy && !e->finishing)
            rq_entry_free(q, e);
    }
    free(j->items);
    conf_unref(j->conf);
    free(j);
    if (whole && q->rescan && !q->stopping) {
        q->rescan = false;
        rq_scan(q);
    }
}

static void submit_scan(struct relay_queue *q, const char *id)
{
    struct scan_job *j = calloc(1, sizeof *j);
    if (!j) {
        log_err("queue: out of memory; the spool is read again in %d s", RQ_SCAN_SECONDS);
        return;
    }
    j->q = q;
    j->conf = conf_ref(q->conf);
    snprintf(j->id, sizeof j->id, "%s", id ? id : "");
    if (!id)
        q->scanning = true;
    if (pool_submit(q->pool, scan_run, scan_done, j) != 0) {
        if (!id)
            q->scanning = false;
        conf_unref(j->conf);
        free(j);
    }
}

void rq_scan(struct relay_queue *q)
{
    if (q->stopping)
        return;
    if (q->scanning) {
        q->rescan = true;
        return;
    }
    submit_scan(q, NULL);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    rq_scan(arg);
}

/* --- scheduling ------------------------------------------------------------------------------- */

/* Adds u (its recipients all in domain) to its destination. */
static void send_unit(struct relay_queue *q, struct rq_unit *u, const char *domain)
{
    u->ent->busy++;
    rq_dest_add(q, u, domain);
}

void rq_schedule(struct relay_queue *q, struct rq_entry *ent)
{
    /* group the pending recipients by domain, in order; one unit per domain (split past
     * SMTPOUT_MAX_RCPTS). The entry counts itself busy meanwhile: a unit answered at once (a
     * destination that already failed) must not finish it while more are being made. */
    size_t n = ent->st.nrcpts;
    char(*dom)[256] = calloc(n ? n : 1, sizeof *dom);
    bool *take = calloc(n ? n : 1, sizeof *take);
    bool held = false, sent = false;
    if (!dom || !take) {
        free(dom);
        free(take);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        rq_domain(ent->e.rcpts[i], dom[i], sizeof dom[i]);
        take[i] = ent->st.rcpts[i].status == SPOOL_RCPT_PENDING;
        if (take[i] && q->conf->relay.defer &&
            !(q->conf->tables && tables_is_local_domain(q->conf->tables, dom[i]))) {
            take[i] = false; /* [relay] defer = yes: waits, untouched, not even counted a try */
            held = true;
        }
    }
    ent->busy++;
    for (size_t i = 0; i < n; i++) {
        if (!take[i])
            continue;
        struct rq_unit *u = NULL;
        for (size_t k = i; k < n; k++) {
            if (!take[k] || strcmp(dom[k], dom[i]) != 0)
                continue;
            if (!u && !(u = calloc(1, sizeof *u + SMTPOUT_MAX_RCPTS * sizeof u->idx[0])))
                break;
            u->ent = ent;
            u->idx[u->n++] = k;
            take[k] = false;
            if (u->n == SMTPOUT_MAX_RCPTS) {
                send_unit(q, u, dom[i]);
                u = NULL;
                sent = true;
            }
        }
        if (u) {
            send_unit(q, u, dom[i]);
            sent = true;
        }
    }
    free(dom);
    free(take);
    /* nothing pending and nothing held: an entry a crash left between its steps */
    if (--ent->busy == 0 && !ent->finishing && (sent || !held))
        rq_finish(q, ent);
}

/* --- results ---------------------------------------------------------------------------------- */

static void audit_result(struct relay_queue *q, const struct rq_entry *ent, size_t r,
                         const char *result, const char *tls)
{
    if (!q->audit)
        return;
    const struct spool_rcpt_state *s = &ent->st.rcpts[r];
    json_t *f =
        json_pack("{s:s, s:s, s:s, s:i, s:s, s:s}", "id", ent->e.id, "rcpt", ent->e.rcpts[r],
                  "result", result, "code", s->code, "reply", s->reply, "remote", s->remote);
    if (f && tls && *tls)
        json_object_set_new(f, "tls", json_string(tls));
    if (f)
        q->audit(q->audit_arg, "relay", f);
}

void rq_unit_done(struct relay_queue *q, struct rq_unit *u, const struct smtpout_reply *r,
                  const char *remote, const char *tls)
{
    struct rq_entry *ent = u->ent;
    time_t now = time(NULL);
    for (size_t k = 0; k < u->n; k++) {
        size_t i = u->idx[k];
        struct spool_rcpt_state *s = &ent->st.rcpts[i];
        int cls = smtpout_class(&r[k]);
        s->code = r[k].code;
        if (r[k].code)
            snprintf(s->reply, sizeof s->reply, "%d %s%s%.480s", r[k].code, r[k].enh,
                     r[k].enh[0] ? " " : "", r[k].text);
        else
            snprintf(s->reply, sizeof s->reply, "%s", r[k].text);
        snprintf(s->remote, sizeof s->remote, "%s", remote ? remote : "");
        if (cls == 2) {
            s->status = SPOOL_RCPT_SENT;
            s->done = now;
        } else if (cls == 5) {
            s->status = SPOOL_RCPT_FAILED;
            s->done = now;
            ent->fresh_fail[i] = true;
        }
        audit_result(q, ent, i, cls == 2 ? "sent" : cls == 5 ? "failed" : "deferred", tls);
        log_info("queue: %s to <%s> via %s: %s: %s", ent->e.id, ent->e.rcpts[i],
                 remote && *remote ? remote : "-",
                 cls == 2   ? "sent"
                 : cls == 5 ? "failed"
                            : "deferred",
                 s->reply);
    }
    free(u);
    if (--ent->busy == 0)
        rq_finish(q, ent);
}

void rq_unit_fail_all(struct relay_queue *q, struct rq_unit *u, int code, const char *enh,
                      const char *text, const char *remote)
{
    struct smtpout_reply *r = calloc(u->n, sizeof *r);
    if (!r) { /* nothing to report with: the entry stays pending, tried again later */
        struct rq_entry *ent = u->ent;
        free(u);
        if (--ent->busy == 0)
            rq_finish(q, ent);
        return;
    }
    for (size_t k = 0; k < u->n; k++) {
        r[k].code = code;
        r[k].local = true;
        snprintf(r[k].enh, sizeof r[k].enh, "%s", enh ? enh : "");
        snprintf(r[k].text, sizeof r[k].text, "%s", text);
    }
    rq_unit_done(q, u, r, remote, NULL);
    free(r);
}

/* --- the manager ------------------------------------------------------------------------------ */

struct relay_queue *relay_queue_new(const struct relay_queue_opts *o, char *err, size_t errlen)
{
    struct relay_queue *q = calloc(1, sizeof *q);
    if (!q) {
        snprintf(err, errlen, "queue: out of memory");
        return NULL;
    }
    q->base = o->base;
    q->pool = o->pool;
    q->conf = conf_ref(o->conf);
    q->audit = o->audit;
    q->audit_arg = o->audit_arg;
    char why[512];
    q->dns = relay_dns_new(q->base, q->conf->relay.resolver, why, sizeof why);
    if (!q->dns) {
        snprintf(err, errlen, "queue: cannot start the resolver: %s", why);
        goto fail;
    }
    q->ssl = smtpout_ssl_ctx_new(q->conf->relay.ca_file[0] ? q->conf->relay.ca_file : NULL, why,
                                 sizeof why);
    if (!q->ssl) {
        snprintf(err, errlen, "queue: cannot make a TLS client context: %s", why);
        goto fail;
    }
    int every =
        q->conf->relay.retry_min < RQ_SCAN_SECONDS ? q->conf->relay.retry_min : RQ_SCAN_SECONDS;
    struct timeval tv = {every > 0 ? every : 1, 0};
    q->timer = event_new(q->base, -1, EV_PERSIST, timer_cb, q);
    if (!q->timer || event_add(q->timer, &tv) != 0) {
        snprintf(err, errlen, "queue: cannot start its timer");
        goto fail;
    }
    if (spool_sweep(q->conf->data_dir, time(NULL), why, sizeof why) < 0)
        log_warn("queue: sweeping the spool: %s", why);
    rq_scan(q);
    return q;
fail:
    relay_queue_free(q);
    return NULL;
}

void relay_queue_set_conf(struct relay_queue *q, struct conf *c)
{
    if (!q)
        return;
    struct conf *old = q->conf;
    q->conf = conf_ref(c);
    conf_unref(old);
    rq_scan(q); /* new routes, defer = no, ...: what waits may go now */
}

void relay_queue_poke(struct relay_queue *q, const char *verb, const char *id)
{
    if (!q || q->stopping)
        return;
    if (id && strcmp(verb, "new") == 0 && !rq_find(q, id) && spool_id_valid(id))
        submit_scan(q, id);
    else
        rq_scan(q); /* flush set next_try in the files; delete/hold/release change the list */
}

int relay_queue_etrn(struct relay_queue *q, const char *domain, bool subdomains)
{
    if (!q || q->stopping)
        return -1;
    if (q->netrn == sizeof q->etrn / sizeof q->etrn[0])
        return -1; /* a flood of ETRN: the next scan serves those already waiting */
    rq_domain(domain, q->etrn[q->netrn], sizeof q->etrn[0]); /* lowercased */
    q->etrn_sub[q->netrn++] = subdomains;
    int n = 0;
    for (struct rq_entry *e = q->entries; e; e = e->next)
        n += etrn_wants(q, e);
    rq_scan(q);
    return n;
}

void relay_queue_stop(struct relay_queue *q)
{
    if (!q || q->stopping)
        return;
    q->stopping = true;
    if (q->timer)
        event_del(q->timer);
    rq_out_stop(q);
}

void relay_queue_free(struct relay_queue *q)
{
    if (!q)
        return;
    relay_queue_stop(q);
    while (q->entries)
        rq_entry_free(q, q->entries);
    if (q->timer)
        event_free(q->timer);
    relay_dns_free(q->dns);
    SSL_CTX_free(q->ssl);
    conf_unref(q->conf);
    free(q);
}

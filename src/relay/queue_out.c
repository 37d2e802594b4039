/* The queue manager's destinations and connections: units grouped by where they go (a domain's
 * MX hosts, a route = next hop, the relayhost, or the local Maildirs), the route looked up once
 * per destination, up to `concurrency` connections per destination and `connections` in all,
 * each trying the route's addresses in order (and, at tls = may, an address once more in clear
 * after a failed handshake, as Postfix does), then sending one unit after another over the same
 * connection. A destination none of whose addresses answers defers everything waiting for it.
 * Also TURN: the same sending over a connection a client handed over. */
#include "relay/queue_priv.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/tables.h"
#include "util/log.h"

static void conn_next(struct rq_conn *c);
static void conn_try(struct rq_conn *c);

static void dest_free(struct relay_queue *q, struct rq_dest *d)
{
    for (struct rq_dest **p = &q->dests; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            break;
        }
    relay_dns_cancel(d->query);
    free(d);
}

void rq_dest_add(struct relay_queue *q, struct rq_unit *u, const char *domain)
{
    const struct conf *cf = q->conf;
    if (cf->tables && tables_is_local_domain(cf->tables, domain)) {
        rq_local_deliver(q, u);
        return;
    }
    const struct conf_nexthop *hop = conf_relay_route(cf, domain);
    char key[600];
    if (hop)
        snprintf(key, sizeof key, "hop %s %u %d", hop->host, hop->port, hop->mx);
    else
        snprintf(key, sizeof key, "mx %s", domain);
    struct rq_dest *d = q->dests;
    while (d && strcmp(d->key, key) != 0)
        d = d->next;
    if (!d) {
        if (!(d = calloc(1, sizeof *d))) {
            rq_unit_fail_all(q, u, 0, "4.3.0", "out of memory in the queue manager", NULL);
            return;
        }
        snprintf(d->key, sizeof d->key, "%s", key);
        snprintf(d->name, sizeof d->name, "%s", hop ? hop->host : domain);
        d->relayhost = hop == &cf->relay.relayhost;
        d->mx = hop ? hop->mx : true;
        d->port = hop ? hop->port : (unsigned)cf->relay.smtp_port;
        d->tail = &d->units;
        d->q = q;
        d->next = q->dests;
        q->dests = d;
    }
    *d->tail = u;
    d->tail = &u->next;
    u->next = NULL;
    d->nunits++;
    rq_dest_run(q, d);
}

static struct rq_unit *take_unit(struct rq_dest *d)
{
    struct rq_unit *u = d->units;
    if (u) {
        d->units = u->next;
        if (!d->units)
            d->tail = &d->units;
        d->nunits--;
        u->next = NULL;
    }
    return u;
}

/* Every unit waiting for d gets the same answer (code 0: deferred). */
static void fail_waiting(struct relay_queue *q, struct rq_dest *d, int code, const char *enh,
                         const char *why)
{
    struct rq_unit *u;
    while ((u = take_unit(d)))
        rq_unit_fail_all(q, u, code, enh, why, d->name);
}

static void route_cb(void *arg, enum relay_dns_status st, const struct relay_route *route,
                     const char *why)
{
    struct rq_dest *d = arg;
    struct relay_queue *q = d->q;
    d->query = NULL;
    if (st == RELAY_DNS_OK) {
        d->route = *route;
        d->rstate = ROUTE_OK;
    } else {
        d->rstate = ROUTE_FAILED;
        d->route_code = st == RELAY_DNS_NULLMX ? 556 : st == RELAY_DNS_PERM ? 550 : 0;
        snprintf(d->route_err, sizeof d->route_err, "%s", why && *why ? why : "no route");
    }
    rq_dest_run(q, d);
}

static void resolve(struct relay_queue *q, struct rq_dest *d)
{
    char why[512] = "";
    d->rstate = ROUTE_PENDING;
    d->query = strncmp(d->key, "mx ", 3) == 0 /* a recipient domain, or an address literal */
                   ? relay_dns_route(q->dns, d->name, d->port, route_cb, d, why, sizeof why)
                   : relay_dns_host(q->dns, d->name, d->port, d->mx, route_cb, d, why, sizeof why);
    if (!d->query) {
        d->rstate = ROUTE_FAILED;
        d->route_code = 0;
        snprintf(d->route_err, sizeof d->route_err, "cannot look up %.240s: %.240s", d->name, why);
        rq_dest_run(q, d);
    }
}

void rq_dest_run(struct relay_queue *q, struct rq_dest *d)
{
    if (q->stopping)
        return;
    if (!d->units) {
        if (!d->nconns && d->rstate != ROUTE_PENDING)
            dest_free(q, d);
        return;
    }
    if (d->rstate == ROUTE_NONE) {
        resolve(q, d);
        return;
    }
    if (d->rstate == ROUTE_PENDING)
        return;
    if (d->rstate == ROUTE_FAILED) {
        const char *enh = d->route_code == 556 ? "5.1.10" : d->route_code ? "5.1.2" : "4.4.3";
        fail_waiting(q, d, d->route_code, enh, d->route_err);
        if (!d->nconns)
            dest_free(q, d);
        return;
    }
    const struct conf_relay *r = &q->conf->relay;
    while (d->nunits > d->nfree && d->nconns < r->concurrency && q->nconns < r->connections) {
        struct rq_conn *c = calloc(1, sizeof *c);
        if (!c)
            break;
        c->q = q;
        c->d = d;
        c->fd = -1;
        c->next = q->conns;
        q->conns = c;
        q->nconns++;
        d->nconns++;
        d->nfree++;
        conn_try(c);
    }
}

static enum smtpout_tls tls_mode(const struct rq_conn *c)
{
    enum conf_tls_level l =
        c->d->relayhost ? c->q->conf->relay.relayhost_tls : c->q->conf->relay.tls;
    if (c->plain_retry)
        return SMTPOUT_TLS_NONE;
    switch (l) {
    case TLS_LEVEL_NONE:
        return SMTPOUT_TLS_NONE;
    case TLS_LEVEL_MAY:
        return SMTPOUT_TLS_MAY;
    case TLS_LEVEL_ENCRYPT:
        return SMTPOUT_TLS_ENCRYPT;
    case TLS_LEVEL_VERIFY:
        return SMTPOUT_TLS_VERIFY;
    case TLS_LEVEL_WRAPPER:
        return SMTPOUT_TLS_WRAPPER_VERIFY;
    }
    return SMTPOUT_TLS_MAY;
}

static void conn_unlink(struct rq_conn *c)
{
    struct relay_queue *q = c->q;
    for (struct rq_conn **p = &q->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    q->nconns--;
}

/* The connection is over (s already freed or quitting). dead: none of the route's addresses
 * would talk; everything waiting for the destination is deferred with why. */
static void conn_end(struct rq_conn *c, bool dead)
{
    struct relay_queue *q = c->q;
    struct rq_dest *d = c->d;
    conn_unlink(c);
    if (c->fd >= 0)
        close(c->fd);
    d->nconns--;
    if (!c->cur)
        d->nfree--;
    if (dead && !q->stopping)
        fail_waiting(q, d, 0, "4.4.1", c->last_err);
    free(c);
    rq_dest_run(q, d);
}

static void ready_cb(void *arg, struct smtpout *s, const struct smtpout_reply *err)
{
    struct rq_conn *c = arg;
    if (!err) {
        conn_next(c);
        return;
    }
    const struct smtpout_tls_info *ti = smtpout_tls(s);
    bool tls_failed = ti && ti->failed;
    if (err->code && !err->local)
        snprintf(c->last_err, sizeof c->last_err, "%s said: %d %s%s%.400s", smtpout_peer(s),
                 err->code, err->enh, err->enh[0] ? " " : "", err->text);
    else
        snprintf(c->last_err, sizeof c->last_err, "%s: %.400s", smtpout_peer(s), err->text);
    log_info("queue: %s", c->last_err);
    smtpout_free(s);
    c->so = NULL;
    if (tls_failed && tls_mode(c) == SMTPOUT_TLS_MAY && !c->plain_retry) {
        c->plain_retry = true;
        conn_try(c);
        return;
    }
    c->plain_retry = false;
    if (++c->addr < c->d->route.n) {
        conn_try(c);
        return;
    }
    conn_end(c, true);
}

static void conn_try(struct rq_conn *c)
{
    struct relay_queue *q = c->q;
    const struct relay_addr *a = &c->d->route.addrs[c->addr];
    bool creds = c->d->relayhost && q->conf->relay.user[0];
    struct smtpout_opts o = {
        .helo = q->conf->hostname,
        .host = a->host,
        .tls = tls_mode(c),
        .ssl_ctx = q->ssl,
        .user = creds ? q->conf->relay.user : NULL,
        .password = creds ? q->conf->relay.password : NULL,
    };
    c->so = smtpout_connect(q->base, (const struct sockaddr *)&a->ss, a->len, &o, ready_cb, c);
    if (!c->so) {
        snprintf(c->last_err, sizeof c->last_err, "out of memory connecting to %s", a->host);
        conn_end(c, true);
    }
}

static void tls_text(struct smtpout *s, char *out, size_t outlen)
{
    const struct smtpout_tls_info *ti = smtpout_tls(s);
    if (ti && ti->on)
        snprintf(out, outlen, "%s %s%s", ti->protocol, ti->cipher, ti->verified ? " verified" : "");
    else
        snprintf(out, outlen, "none");
}

static void done_cb(void *arg, struct smtpout *s, const struct smtpout_reply *r, size_t n)
{
    struct rq_conn *c = arg;
    struct rq_unit *u = c->cur;
    c->cur = NULL;
    if (c->d)
        c->d->nfree++;
    close(c->fd);
    c->fd = -1;
    char tls[128];
    tls_text(s, tls, sizeof tls);
    rq_unit_done(c->q, u, r, smtpout_peer(s), tls);
    if (smtpout_idle(s)) {
        conn_next(c);
        return;
    }
    smtpout_free(s);
    c->so = NULL;
    if (c->d)
        conn_end(c, false);
    else
        conn_next(c); /* a TURN: what is left is deferred there */
}

/* The Return-Path: line ternd wrote at the top of the stored copy is for the final delivery
 * (RFC 5321 4.4): a relay sends the message without it. */
static uint64_t skip_return_path(int fd)
{
    char head[1024];
    ssize_t n = pread(fd, head, sizeof head, 0);
    static const char rp[] = "Return-Path:";
    if (n < (ssize_t)sizeof rp || strncasecmp(head, rp, sizeof rp - 1) != 0)
        return 0;
    const char *nl = memchr(head, '\n', (size_t)n);
    return nl ? (uint64_t)(nl - head + 1) : 0;
}

static void conn_next(struct rq_conn *c)
{
    struct relay_queue *q = c->q;
    struct rq_unit *u = NULL;
    if (!q->stopping) {
        if (c->d)
            u = take_unit(c->d);
        else if ((u = c->turn_units))
            c->turn_units = u->next;
    }
    if (!u) {
        smtpout_quit(c->so);
        c->so = NULL;
        if (c->d) {
            conn_end(c, false);
        } else {
            conn_unlink(c);
            free(c->turn_domains);
            free(c);
        }
        return;
    }
    if (c->d)
        c->d->nfree--;
    c->cur = u;
    struct rq_entry *ent = u->ent;
    char why[512];
    const char *rcpts[SMTPOUT_MAX_RCPTS];
    for (size_t k = 0; k < u->n; k++)
        rcpts[k] = ent->e.rcpts[u->idx[k]];
    c->fd = spool_msg_open(q->conf->data_dir, ent->e.id, why, sizeof why);
    uint64_t off = c->fd >= 0 ? skip_return_path(c->fd) : 0;
    struct smtpout_msg m = {.from = ent->e.from,
                            .rcpts = rcpts,
                            .nrcpts = u->n,
                            .fd = c->fd,
                            .offset = off,
                            .size = ent->e.size > off ? ent->e.size - off : 0,
                            .body = SMTPOUT_BODY_SCAN};
    if (c->fd < 0 || smtpout_send(c->so, &m, done_cb, c) != 0) {
        if (c->fd >= 0)
            snprintf(why, sizeof why, "cannot start sending %s", ent->e.id);
        c->cur = NULL;
        if (c->d)
            c->d->nfree++;
        rq_unit_fail_all(q, u, 0, "4.3.0", why, smtpout_peer(c->so));
        smtpout_free(c->so);
        c->so = NULL;
        if (c->d) {
            conn_end(c, false);
        } else {
            conn_unlink(c);
            free(c->turn_domains);
            free(c);
        }
    }
}

/* --- TURN ------------------------------------------------------------------------------------- */

void relay_queue_turn(struct relay_queue *q, struct bufferevent *bev, const char *const *domains,
                      size_t ndomains, const char *peer)
{
    struct rq_conn *t = q && !q->stopping ? calloc(1, sizeof *t) : NULL;
    if (t && ndomains)
        t->turn_domains = calloc(ndomains, sizeof *t->turn_domains);
    if (!t || !t->turn_domains) {
        free(t);
        bufferevent_free(bev);
        return;
    }
    t->q = q;
    t->fd = -1;
    t->bev = bev;
    t->nturn = ndomains;
    for (size_t i = 0; i < ndomains; i++)
        rq_domain(domains[i], t->turn_domains[i], sizeof t->turn_domains[0]);
    snprintf(t->peer, sizeof t->peer, "%s", peer ? peer : "turn");
    t->next = q->turn_wait;
    q->turn_wait = t;
    rq_scan(q);
}

static bool turn_takes(const struct rq_conn *t, const char *domain)
{
    for (size_t i = 0; i < t->nturn; i++)
        if (strcmp(t->turn_domains[i], domain) == 0)
            return true;
    return false;
}

static void turn_ready(void *arg, struct smtpout *s, const struct smtpout_reply *err)
{
    struct rq_conn *t = arg;
    if (!err) {
        conn_next(t);
        return;
    }
    log_info("queue: TURN to %s: %s", t->peer, err->text);
    smtpout_free(s);
    t->so = NULL;
    struct rq_unit *u;
    while ((u = t->turn_units)) {
        t->turn_units = u->next;
        rq_unit_fail_all(t->q, u, 0, "4.4.2", err->text, t->peer);
    }
    conn_unlink(t);
    free(t->turn_domains);
    free(t);
}

void rq_turn_start(struct relay_queue *q, struct rq_conn *t)
{
    struct rq_unit **tail = &t->turn_units;
    for (struct rq_entry *ent = q->entries; ent; ent = ent->next) {
        if (ent->busy || ent->finishing)
            continue;
        struct rq_unit *u = NULL;
        for (size_t i = 0; i < ent->st.nrcpts; i++) {
            char dom[256];
            rq_domain(ent->e.rcpts[i], dom, sizeof dom);
            if (ent->st.rcpts[i].status != SPOOL_RCPT_PENDING || !turn_takes(t, dom))
                continue;
            if (!u && !(u = calloc(1, sizeof *u + ent->st.nrcpts * sizeof u->idx[0])))
                break;
            if (u->n == SMTPOUT_MAX_RCPTS)
                break;
            u->ent = ent;
            u->idx[u->n++] = i;
        }
        if (u) {
            ent->busy++;
            *tail = u;
            tail = &u->next;
        }
    }
    t->next = q->conns;
    q->conns = t;
    q->nconns++;
    struct smtpout_opts o = {.helo = q->conf->hostname, .host = t->peer, .tls = SMTPOUT_TLS_NONE};
    struct bufferevent *bev = t->bev;
    t->bev = NULL;
    t->so = smtpout_attach(q->base, bev, &o, turn_ready, t);
    if (!t->so) {
        struct smtpout_reply r = {.code = 0, .local = true};
        snprintf(r.text, sizeof r.text, "out of memory");
        /* turn_ready frees t; smtpout_attach freed bev */
        struct rq_unit *u;
        while ((u = t->turn_units)) {
            t->turn_units = u->next;
            rq_unit_fail_all(q, u, 0, "4.3.0", r.text, t->peer);
        }
        conn_unlink(t);
        free(t->turn_domains);
        free(t);
    }
}

void rq_out_stop(struct relay_queue *q)
{
    while (q->conns) {
        struct rq_conn *c = q->conns;
        q->conns = c->next;
        smtpout_free(c->so);
        if (c->fd >= 0)
            close(c->fd);
        free(c->cur);
        for (struct rq_unit *u = c->turn_units, *n; u; u = n) {
            n = u->next;
            free(u);
        }
        free(c->turn_domains);
        free(c);
    }
    q->nconns = 0;
    for (struct rq_conn *t = q->turn_wait, *n; t; t = n) {
        n = t->next;
        bufferevent_free(t->bev);
        free(t->turn_domains);
        free(t);
    }
    q->turn_wait = NULL;
    while (q->dests) {
        struct rq_dest *d = q->dests;
        struct rq_unit *u;
        while ((u = take_unit(d)))
            free(u);
        dest_free(q, d);
    }
}

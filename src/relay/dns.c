/* The asynchronous half of outbound routing: libunbound in threaded-async mode on ternd's libevent
 * loop. Owns the unbound context, the event on ub_fd() that runs ub_process(), and each route's
 * lookups: MX first, then AAAA and A of every chosen host in parallel (at most 1 + 2 ×
 * RELAY_MAX_HOSTS in flight per route), collected into one answer that is handed to the caller
 * from an event of its own, never from inside ub_process() or the starting call. mx.c decides
 * the order and the status; this file only asks and parses. */
#include "relay/dns.h"

#include "relay/mx.h"
#include "util/err.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#define WHO "relay dns"
#define RR_A 1
#define RR_MX 15
#define RR_AAAA 28
#define CLASS_IN 1
#define MAX_LOOKUPS (1 + 2 * RELAY_MAX_HOSTS)
#define MAX_QUERIES 4096 /* routes in progress per relay_dns: a runaway caller fails early */
#define DEFAULT_TIMEOUT_MS 60000u

/* One ub_resolve_async in flight; its callback argument. A lookup whose ub_cancel failed is
 * orphaned (q NULL) and kept on d->orphans until its answer comes or the context goes. */
struct lookup {
    struct relay_dns *d;
    struct relay_dns_query *q;
    struct lookup *next; /* on d->orphans */
    int id;
    int slot;   /* in q->lk */
    int target; /* in q->t, or -1 for the MX lookup */
    int rrtype;
};

struct relay_dns {
    struct event_base *base;
    struct ub_ctx *ub;
    struct event *ub_ev;
    struct relay_dns_query *queries; /* not yet handed to their fn */
    struct lookup *orphans;
    size_t nqueries;
    bool ipv4, ipv6;
    bool broken; /* ub_process failed: the worker is gone, new routes fail at once */
    unsigned timeout_ms;
    mx_random_fn *rng;
    void *rng_arg;
};

struct relay_dns_query {
    struct relay_dns *d;
    struct relay_dns_query *prev, *next;
    relay_dns_fn *fn;
    void *arg;
    unsigned port;
    enum mx_kind kind;
    bool mx_secure;
    bool decided;    /* st, route and why are final; done_ev is active */
    bool delivering; /* fn is running */
    size_t pending;  /* lookups in flight */
    struct event *done_ev, *timer;
    struct lookup *lk[MAX_LOOKUPS];
    size_t ntargets;
    struct mx_target t[RELAY_MAX_HOSTS];
    enum relay_dns_status st;
    struct relay_route route;
    char domain[256];
    char notes[512]; /* what mx_select skipped */
    char why[1024];
};

static uint32_t default_rng(void *arg)
{
    (void)arg;
    return arc4random();
}

/* A hostile string made fit for a log line: printable ASCII, at most max characters. */
static void printable(const char *s, size_t max, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; s[i] && o + 4 < outlen; i++) {
        if (i == max) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[o] = '\0';
}

static const char *rcode_name(int rcode)
{
    switch (rcode) {
    case 1:
        return "FORMERR";
    case 2:
        return "SERVFAIL";
    case 4:
        return "NOTIMP";
    case 5:
        return "REFUSED";
    default:
        return NULL;
    }
}

/* How a lookup ended; for a temporary failure, why into fail. MX_ADDRS means "has data". */
static enum mx_outcome classify(int err, const struct ub_result *res, char *fail, size_t faillen)
{
    fail[0] = '\0';
    if (err) {
        snprintf(fail, faillen, "resolver error: %s", ub_strerror(err));
        return MX_TEMP;
    }
    if (!res) {
        snprintf(fail, faillen, "no result from the resolver");
        return MX_TEMP;
    }
    if (res->bogus) {
        char b[64];
        printable(res->why_bogus ? res->why_bogus : "", 48, b, sizeof(b));
        snprintf(fail, faillen, "DNSSEC validation failed: %s", b);
        return MX_TEMP;
    }
    if (res->nxdomain || res->rcode == 3)
        return MX_NXDOMAIN;
    if (res->rcode != 0) {
        const char *name = rcode_name(res->rcode);
        if (name)
            snprintf(fail, faillen, "%s", name);
        else
            snprintf(fail, faillen, "rcode %d", res->rcode);
        return MX_TEMP;
    }
    return res->havedata && res->data && res->data[0] ? MX_ADDRS : MX_NODATA;
}

static void unlink_query(struct relay_dns_query *q)
{
    struct relay_dns *d = q->d;
    if (q->prev)
        q->prev->next = q->next;
    else if (d->queries == q)
        d->queries = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
    d->nqueries--;
}

/* Stops every lookup of q still in flight; their callbacks will not come (or find an orphan). */
static void cancel_lookups(struct relay_dns_query *q)
{
    struct relay_dns *d = q->d;
    for (size_t i = 0; i < MAX_LOOKUPS; i++) {
        struct lookup *lk = q->lk[i];
        if (!lk)
            continue;
        q->lk[i] = NULL;
        if (ub_cancel(d->ub, lk->id) == 0) {
            free(lk);
        } else { /* cannot be sure the callback will not come: keep its argument alive */
            lk->q = NULL;
            lk->next = d->orphans;
            d->orphans = lk;
        }
    }
    q->pending = 0;
}

static void free_query(struct relay_dns_query *q)
{
    if (q->done_ev)
        event_free(q->done_ev);
    if (q->timer)
        event_free(q->timer);
    free(q);
}

/* The answer is final: stop what is left and hand it over from done_ev. */
static void decide(struct relay_dns_query *q, enum relay_dns_status st, const char *why)
{
    if (q->decided)
        return;
    q->decided = true;
    q->st = st;
    snprintf(q->why, sizeof(q->why), "%s", why);
    if (st != RELAY_DNS_OK)
        q->route.n = 0;
    cancel_lookups(q);
    if (q->timer)
        event_del(q->timer);
    event_active(q->done_ev, EV_TIMEOUT, 0);
}

/* Every lookup has ended (or the timer gave up on the rest): assemble the route. */
static void finish(struct relay_dns_query *q)
{
    char why[1024];
    enum relay_dns_status st = mx_assemble(q->kind, q->domain, q->t, q->ntargets, q->port,
                                           q->mx_secure, &q->route, why, sizeof(why));
    if (q->notes[0]) {
        size_t len = strlen(why);
        snprintf(why + len, sizeof(why) - len, "%s%s", len ? "; " : "", q->notes);
    }
    decide(q, st, why);
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct relay_dns_query *q = arg;
    unlink_query(q); /* before fn: it may free d, or start and cancel other routes */
    q->delivering = true;
    q->fn(q->arg, q->st, &q->route, q->why);
    free_query(q);
}

static void ub_cb(void *arg, int err, struct ub_result *res);

/* Starts one lookup for q: 0, or a libunbound error code. */
static int start(struct relay_dns_query *q, int target, int rrtype)
{
    size_t slot = 0;
    while (slot < MAX_LOOKUPS && q->lk[slot])
        slot++;
    if (slot == MAX_LOOKUPS)
        return UB_NOMEM; /* cannot happen: a route never needs more */
    struct lookup *lk = calloc(1, sizeof(*lk));
    if (!lk)
        return UB_NOMEM;
    lk->d = q->d;
    lk->q = q;
    lk->slot = (int)slot;
    lk->target = target;
    lk->rrtype = rrtype;
    const char *name = target < 0 ? q->domain : q->t[target].name;
    int r = ub_resolve_async(q->d->ub, name, rrtype, CLASS_IN, lk, ub_cb, &lk->id);
    if (r) {
        free(lk);
        return r;
    }
    q->lk[slot] = lk;
    q->pending++;
    return 0;
}

/* AAAA and A of target i (the families turned on); a lookup that cannot start is a
 * temporary failure of that family. */
static void start_addrs(struct relay_dns_query *q, size_t i)
{
    struct mx_target *t = &q->t[i];
    t->out6 = t->out4 = MX_NODATA; /* a family turned off is as good as absent */
    if (q->d->ipv6) {
        int r = start(q, (int)i, RR_AAAA);
        t->out6 = r ? MX_TEMP : MX_PENDING;
        if (r)
            snprintf(t->fail6, sizeof(t->fail6), "resolver error: %s", ub_strerror(r));
    }
    if (q->d->ipv4) {
        int r = start(q, (int)i, RR_A);
        t->out4 = r ? MX_TEMP : MX_PENDING;
        if (r)
            snprintf(t->fail4, sizeof(t->fail4), "resolver error: %s", ub_strerror(r));
    }
}

static void on_mx(struct relay_dns_query *q, int err, const struct ub_result *res)
{
    char fail[96], why[1024];
    switch (classify(err, res, fail, sizeof(fail))) {
    case MX_NXDOMAIN:
        snprintf(why, sizeof(why), "domain %s does not exist (NXDOMAIN)", q->domain);
        decide(q, RELAY_DNS_PERM, why);
        return;
    case MX_TEMP:
    case MX_PENDING:
        snprintf(why, sizeof(why), "MX lookup for %s failed: %s", q->domain, fail);
        decide(q, RELAY_DNS_TEMP, why);
        return;
    case MX_NODATA: /* RFC 5321 §5.1: the domain itself is the implicit MX, preference 0 */
        q->kind = MX_KIND_IMPLICIT;
        q->mx_secure = res->secure;
        q->ntargets = 1;
        memset(&q->t[0], 0, sizeof(q->t[0]));
        memcpy(q->t[0].name, q->domain, sizeof(q->t[0].name));
        start_addrs(q, 0);
        return;
    case MX_ADDRS:
        break;
    }
    struct mx_rr *rrs = calloc(MX_MAX_RRS, sizeof(*rrs));
    if (!rrs) {
        snprintf(why, sizeof(why), "MX lookup for %s: out of memory", q->domain);
        decide(q, RELAY_DNS_TEMP, why);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; res->data[i] && n < MX_MAX_RRS; i++) {
        if (res->len[i] < 0 || mx_parse_rdata((const unsigned char *)res->data[i],
                                              (size_t)res->len[i], &rrs[n]) != 0) {
            rrs[n].pref = 0;
            rrs[n].valid = false;
            snprintf(rrs[n].name, sizeof(rrs[n].name), "(malformed MX record)");
        }
        n++;
    }
    enum relay_dns_status st = mx_select(q->domain, rrs, n, q->d->rng, q->d->rng_arg, q->t,
                                         &q->ntargets, q->notes, sizeof(q->notes));
    free(rrs);
    if (st != RELAY_DNS_OK) {
        decide(q, st, q->notes);
        return;
    }
    q->mx_secure = res->secure;
    for (size_t i = 0; i < q->ntargets; i++)
        start_addrs(q, i);
}

static void on_addr(struct relay_dns_query *q, int target, int rrtype, int err,
                    const struct ub_result *res)
{
    struct mx_target *t = &q->t[target];
    bool six = rrtype == RR_AAAA;
    size_t want = six ? 16 : 4;
    char fail[96];
    enum mx_outcome o = classify(err, res, fail, sizeof(fail));
    size_t n = 0;
    if (o == MX_ADDRS) {
        for (size_t i = 0; res->data[i] && n < RELAY_MAX_ADDRS; i++) {
            if (res->len[i] < 0 || (size_t)res->len[i] != want)
                continue; /* malformed: not an address of this family */
            memcpy(six ? t->a6[n] : t->a4[n], res->data[i], want);
            n++;
        }
        if (n == 0) {
            o = MX_TEMP;
            snprintf(fail, sizeof(fail), "malformed %s records", six ? "AAAA" : "A");
        }
    }
    if (six) {
        t->out6 = o;
        t->n6 = n;
        t->secure6 = res && res->secure;
        memcpy(t->fail6, fail, sizeof(t->fail6));
    } else {
        t->out4 = o;
        t->n4 = n;
        t->secure4 = res && res->secure;
        memcpy(t->fail4, fail, sizeof(t->fail4));
    }
}

static void ub_cb(void *arg, int err, struct ub_result *res)
{
    struct lookup *lk = arg;
    struct relay_dns_query *q = lk->q;
    if (!q) { /* orphaned by a failed cancel */
        struct lookup **pp = &lk->d->orphans;
        while (*pp && *pp != lk)
            pp = &(*pp)->next;
        if (*pp)
            *pp = lk->next;
        free(lk);
        ub_resolve_free(res);
        return;
    }
    q->lk[lk->slot] = NULL;
    q->pending--;
    int target = lk->target, rrtype = lk->rrtype;
    free(lk);
    if (!q->decided) {
        if (target < 0)
            on_mx(q, err, res);
        else
            on_addr(q, target, rrtype, err, res);
        if (!q->decided && q->pending == 0)
            finish(q);
    }
    ub_resolve_free(res);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct relay_dns_query *q = arg;
    if (q->decided)
        return;
    char why[1024];
    unsigned ms = q->d->timeout_ms;
    for (size_t i = 0; i < MAX_LOOKUPS; i++) {
        struct lookup *lk = q->lk[i];
        if (!lk)
            continue;
        if (lk->target < 0) {
            snprintf(why, sizeof(why), "MX lookup for %s timed out after %u.%03u s", q->domain,
                     ms / 1000, ms % 1000);
            decide(q, RELAY_DNS_TEMP, why);
            return;
        }
        struct mx_target *t = &q->t[lk->target];
        bool six = lk->rrtype == RR_AAAA;
        *(six ? &t->out6 : &t->out4) = MX_TEMP;
        snprintf(six ? t->fail6 : t->fail4, sizeof(t->fail6), "timed out after %u.%03u s",
                 ms / 1000, ms % 1000);
    }
    cancel_lookups(q);
    finish(q);
}

static void ub_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct relay_dns *d = arg;
    int r = ub_process(d->ub);
    if (r == 0)
        return;
    /* the worker's pipe failed: nothing more will come, so fail what waits and stop polling */
    d->broken = true;
    event_del(d->ub_ev);
    char why[256];
    snprintf(why, sizeof(why), "the DNS resolver failed (%s); ternd needs a restart",
             ub_strerror(r));
    for (struct relay_dns_query *q = d->queries; q; q = q->next)
        decide(q, RELAY_DNS_TEMP, why);
}

struct relay_dns *relay_dns_new(struct event_base *base, const char *conf, char *err, size_t errlen)
{
    struct relay_dns *d = calloc(1, sizeof(*d));
    if (!d || !(d->ub = ub_ctx_create())) {
        err_set(err, errlen, WHO ": cannot create the libunbound context (out of memory?)");
        free(d);
        return NULL;
    }
    d->base = base;
    d->ipv4 = d->ipv6 = true;
    d->timeout_ms = DEFAULT_TIMEOUT_MS;
    d->rng = default_rng;
    int r;
    if (conf && conf[0]) {
        if ((r = ub_ctx_config(d->ub, conf)) != 0) {
            err_set(err, errlen,
                    WHO ": cannot use the unbound configuration %s (%s): check that it exists and "
                        "passes unbound-checkconf",
                    conf, ub_strerror(r));
            goto fail;
        }
    } else {
        if ((r = ub_ctx_resolvconf(d->ub, NULL)) != 0) {
            err_set(err, errlen,
                    WHO ": cannot read the name servers from /etc/resolv.conf (%s); fix it or "
                        "name an unbound.conf in the configuration",
                    ub_strerror(r));
            goto fail;
        }
        /* a missing /etc/hosts is fine; one that libunbound cannot parse is reported */
        if ((r = ub_ctx_hosts(d->ub, NULL)) != 0 && r != UB_READFILE) {
            err_set(err, errlen, WHO ": cannot use /etc/hosts (%s)", ub_strerror(r));
            goto fail;
        }
    }
    if ((r = ub_ctx_async(d->ub, 1)) != 0) {
        err_set(err, errlen, WHO ": cannot make libunbound asynchronous (%s)", ub_strerror(r));
        goto fail;
    }
    int fd = ub_fd(d->ub);
    if (fd < 0 || !(d->ub_ev = event_new(base, fd, EV_READ | EV_PERSIST, ub_readable, d)) ||
        event_add(d->ub_ev, NULL) != 0) {
        err_set(err, errlen, WHO ": cannot watch libunbound's answer pipe on the event loop");
        goto fail;
    }
    return d;
fail:
    if (d->ub_ev)
        event_free(d->ub_ev);
    ub_ctx_delete(d->ub);
    free(d);
    return NULL;
}

struct relay_dns_query *relay_dns_host(struct relay_dns *d, const char *host, unsigned port,
                                       bool mx_lookup, relay_dns_fn *fn, void *arg, char *why,
                                       size_t whylen)
{
    const char *what = mx_lookup ? "domain" : "host";
    char shown[128], reason[256];
    if (!d || !host || !fn) {
        err_set(why, whylen, WHO ": no resolver, %s or callback given", what);
        return NULL;
    }
    printable(host, 80, shown, sizeof(shown));
    if (port == 0 || port > 65535) {
        err_set(why, whylen, WHO ": port %u for %s is out of range (1-65535)", port, shown);
        return NULL;
    }
    if (d->broken) {
        err_set(why, whylen, WHO ": the DNS resolver has failed; ternd needs a restart");
        return NULL;
    }
    if (d->nqueries >= MAX_QUERIES) {
        err_set(why, whylen, WHO ": %d DNS lookups already in progress; try %s later", MAX_QUERIES,
                shown);
        return NULL;
    }
    struct relay_dns_query *q = calloc(1, sizeof(*q));
    if (!q || !(q->done_ev = event_new(d->base, -1, 0, done_cb, q)) ||
        (d->timeout_ms && !(q->timer = evtimer_new(d->base, timer_cb, q)))) {
        err_set(why, whylen, WHO ": out of memory routing %s", shown);
        if (q)
            free_query(q);
        return NULL;
    }
    q->d = d;
    q->fn = fn;
    q->arg = arg;
    q->port = port;
    q->kind = mx_lookup ? MX_KIND_MX : MX_KIND_HOST;
    q->mx_secure = !mx_lookup; /* no MX answer to distrust */
    reason[0] = '\0';
    int lit = mx_literal(host, port, &q->route.addrs[0], reason, sizeof(reason));
    unsigned char octets[16];
    int family = 0;
    if (lit == 0 && !mx_lookup) {
        if (inet_pton(AF_INET, host, octets) == 1)
            family = AF_INET;
        else if (inet_pton(AF_INET6, host, octets) == 1)
            family = AF_INET6;
    }
    if (lit < 0) {
        err_set(why, whylen, WHO ": address literal \"%s\": %s", shown, reason);
        free_query(q);
        return NULL;
    }
    /* linked before anything can finish, so cancel and free find it */
    q->next = d->queries;
    if (d->queries)
        d->queries->prev = q;
    d->queries = q;
    d->nqueries++;
    if (lit > 0 || family) {
        if (family)
            mx_set_addr(&q->route.addrs[0], family, octets, port, host, 0);
        q->route.n = 1;
        decide(q, RELAY_DNS_OK, "");
        return q;
    }
    if (!mx_check_host(host, reason, sizeof(reason))) {
        err_set(why, whylen, WHO ": %s \"%s\" is not valid: %s", what, shown, reason);
        goto fail;
    }
    snprintf(q->domain, sizeof(q->domain), "%s", host);
    if (mx_lookup) {
        int r = start(q, -1, RR_MX);
        if (r) {
            err_set(why, whylen, WHO ": cannot look up the MX records of %s: %s", host,
                    ub_strerror(r));
            goto fail;
        }
    } else {
        q->ntargets = 1;
        memcpy(q->t[0].name, q->domain, sizeof(q->t[0].name));
        start_addrs(q, 0);
        if (q->pending == 0) {
            err_set(why, whylen, WHO ": cannot look up the address of %s: %s", host,
                    q->t[0].fail6[0] ? q->t[0].fail6 : q->t[0].fail4);
            goto fail;
        }
    }
    if (q->timer) {
        struct timeval tv = {d->timeout_ms / 1000, (d->timeout_ms % 1000) * 1000};
        evtimer_add(q->timer, &tv);
    }
    return q;
fail:
    unlink_query(q);
    cancel_lookups(q);
    free_query(q);
    return NULL;
}

struct relay_dns_query *relay_dns_route(struct relay_dns *d, const char *domain, unsigned port,
                                        relay_dns_fn *fn, void *arg, char *why, size_t whylen)
{
    return relay_dns_host(d, domain, port, true, fn, arg, why, whylen);
}

void relay_dns_cancel(struct relay_dns_query *q)
{
    if (!q || q->delivering)
        return;
    unlink_query(q);
    cancel_lookups(q);
    free_query(q);
}

void relay_dns_free(struct relay_dns *d)
{
    if (!d)
        return;
    while (d->queries)
        relay_dns_cancel(d->queries);
    event_free(d->ub_ev);
    ub_ctx_delete(d->ub); /* joins the worker: no callback can come after this */
    while (d->orphans) {
        struct lookup *lk = d->orphans;
        d->orphans = lk->next;
        free(lk);
    }
    free(d);
}

void relay_dns_set_protocols(struct relay_dns *d, bool ipv4, bool ipv6)
{
    if (!ipv4 && !ipv6)
        return; /* at least one: keep what was set */
    d->ipv4 = ipv4;
    d->ipv6 = ipv6;
}

void relay_dns_set_timeout(struct relay_dns *d, unsigned ms)
{
    d->timeout_ms = ms;
}

void relay_dns_set_random(struct relay_dns *d, uint32_t (*rng)(void *arg), void *arg)
{
    d->rng = rng ? rng : default_rng;
    d->rng_arg = rng ? arg : NULL;
}

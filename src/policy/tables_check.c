/* What tables_finish checks once every domain, user, alias and shared mailbox is added: alias
 * members that resolve to someone (a local user, or through other aliases, without loops and no
 * deeper than TABLES_MAX_DEPTH), aliases that reach a mailbox or a forward address, postmaster
 * in every domain, and (shared.c) shared mailbox members. Every reason is collected, each on its
 * own line with the file:line it came from, so the admin fixes them all in one pass. */
#include "policy/tables.h"
#include "policy/tables_priv.h"
#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tables_reason(struct reasons *r, const char *origin, const char *fmt, ...)
{
    r->n++;
    if (!r->cap)
        return;
    if (origin && r->len + 1 < r->cap)
        r->len += (size_t)snprintf(r->buf + r->len, r->cap - r->len, "%s: ", origin);
    if (r->len + 1 < r->cap) {
        va_list ap;
        va_start(ap, fmt);
        r->len += (size_t)vsnprintf(r->buf + r->len, r->cap - r->len, fmt, ap);
        va_end(ap);
    }
    if (r->len + 1 < r->cap)
        r->len += (size_t)snprintf(r->buf + r->len, r->cap - r->len, "\n");
    if (r->len >= r->cap)
        r->len = r->cap - 1; /* truncated: the buffer stays terminated */
}

/* The origin of an alias, or NULL. */
static const char *origin_of(const struct alias *a)
{
    return a ? a->origin : NULL;
}

enum { VISIT_NEW, VISIT_ACTIVE, VISIT_DONE, VISIT_BAD };

struct check {
    const struct tables *t;
    unsigned char *state; /* per alias */
    unsigned char *reach; /* per alias: reaches at least one mailbox */
    unsigned char *depth; /* per alias: levels of aliases, itself included */
    uint32_t path[TABLES_MAX_DEPTH + 1];
    struct reasons *r;
};

/* Writes "a -> b -> c" for the path from position from to the end, then next. */
static void path_text(const struct check *c, size_t from, size_t plen, uint32_t next, char *buf,
                      size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = from; i < plen && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s -> ", c->t->aliases[c->path[i]]->name);
    if (len < n)
        snprintf(buf + len, n - len, "%s", c->t->aliases[next]->name);
}

/* Depth-first walk from alias ai at path position plen; depth, or -1 when it is broken
 * (the reason is then already given). The path bound keeps the recursion shallow. */
static int check_alias(struct check *c, uint32_t ai, size_t plen)
{
    const struct tables *t = c->t;
    char buf[1024];
    switch (c->state[ai]) {
    case VISIT_DONE:
        if (plen + c->depth[ai] > TABLES_MAX_DEPTH) {
            path_text(c, 0, plen, ai, buf, sizeof(buf));
            tables_reason(c->r, origin_of(t->aliases[c->path[0]]),
                          "alias %s: nests more than %d aliases deep (%s ...); flatten it",
                          t->aliases[c->path[0]]->name, TABLES_MAX_DEPTH, buf);
            return -1;
        }
        return c->depth[ai];
    case VISIT_BAD:
        return -1;
    case VISIT_ACTIVE:
        for (size_t i = 0; i < plen; i++)
            if (c->path[i] == ai) {
                path_text(c, i, plen, ai, buf, sizeof(buf));
                tables_reason(c->r, origin_of(t->aliases[ai]),
                              "alias %s: loops back to itself (%s); remove one of the members that "
                              "closes the loop",
                              t->aliases[ai]->name, buf);
                break;
            }
        return -1;
    }
    const struct alias *a = t->aliases[ai];
    if (plen >= TABLES_MAX_DEPTH) {
        path_text(c, 0, plen, ai, buf, sizeof(buf));
        tables_reason(c->r, origin_of(t->aliases[c->path[0]]),
                      "alias %s: nests more than %d aliases deep (%s ...); flatten it",
                      t->aliases[c->path[0]]->name, TABLES_MAX_DEPTH, buf);
        return -1;
    }
    c->state[ai] = VISIT_ACTIVE;
    c->path[plen] = ai;
    bool bad = false, reach = false;
    int maxd = 0;
    for (size_t i = 0; i < a->nmembers; i++) {
        const char *m = a->members[i];
        uint32_t idx = 0;
        switch (tables_target_of(t, m, &idx)) {
        case TARGET_USER:
            reach |= t->users[idx]->moved[0] == '\0';
            break;
        case TARGET_ALIAS: {
            int d = check_alias(c, idx, plen + 1);
            if (d < 0) {
                bad = true;
            } else {
                if (d > maxd)
                    maxd = d;
                reach |= c->reach[idx] != 0;
            }
            break;
        }
        case TARGET_FOREIGN:
            tables_reason(c->r, origin_of(a),
                          "alias %s: member %s is not a local user; outbound delivery is not "
                          "available yet",
                          a->name, m);
            bad = true;
            break;
        case TARGET_NONE:
            tables_reason(
                c->r, origin_of(a),
                "alias %s: member %s is not a local user; add it to the users file or fix "
                "the member",
                a->name, m);
            bad = true;
            break;
        }
    }
    if (bad) {
        c->state[ai] = VISIT_BAD;
        return -1;
    }
    c->state[ai] = VISIT_DONE;
    c->depth[ai] = (unsigned char)(maxd + 1);
    c->reach[ai] = reach;
    return maxd + 1;
}

int tables_finish(struct tables *t, char *err, size_t errlen)
{
    struct reasons r = {err, 0, err ? errlen : 0, 0};
    if (r.cap)
        err[0] = '\0';
    if (t->ndomains == 0)
        tables_reason(&r, NULL, "no local domains; list them in domains = under [server]");
    struct check c = {.t = t, .r = &r};
    size_t n = t->naliases ? t->naliases : 1;
    c.state = calloc(n, 1);
    c.reach = calloc(n, 1);
    c.depth = calloc(n, 1);
    if (!c.state || !c.reach || !c.depth) {
        free(c.state);
        free(c.reach);
        free(c.depth);
        err_set(err, errlen, "out of memory checking aliases; free some memory\n");
        return -1;
    }
    for (uint32_t i = 0; i < t->naliases; i++)
        check_alias(&c, i, 0);
    for (uint32_t i = 0; i < t->naliases; i++)
        if (c.state[i] == VISIT_DONE && !c.reach[i])
            tables_reason(
                &r, origin_of(t->aliases[i]),
                "alias %s: reaches no mailbox, every user on it has moved; add a member or "
                "remove the alias",
                t->aliases[i]->name);
    tables_shared_finish(t, &r);
    for (size_t d = 0; d < t->ndomains; d++) {
        char addr[TABLES_ADDR_MAX + 1];
        snprintf(addr, sizeof(addr), "postmaster@%s", t->domains[d]);
        uint32_t idx = 0;
        enum target k = tables_target_of(t, addr, &idx);
        if (k == TARGET_ALIAS && (c.state[idx] != VISIT_DONE || !c.reach[idx]))
            continue; /* a broken or empty alias: its reason is given above */
        if (k == TARGET_USER && t->users[idx]->moved[0])
            tables_reason(&r, NULL,
                          "%s is a user marked moved, and postmaster must always reach someone; "
                          "remove moved= from it or add `postmaster: you@%s` to aliases",
                          addr, t->domains[d]);
        else if (k != TARGET_USER && k != TARGET_ALIAS)
            tables_reason(&r, NULL, "%s reaches no one; add `postmaster: you@%s` to aliases", addr,
                          t->domains[d]);
    }
    free(c.state);
    free(c.reach);
    free(c.depth);
    return r.n ? -1 : 0;
}

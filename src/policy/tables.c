/* The in-memory address tables: local domains, users and aliases held in open-addressing hash
 * maps keyed by lowercased address, so every lookup the SMTP core makes is O(1) however many
 * users there are. Built once by conf/, checked by tables_finish (tables_check.c), then
 * read-only: lookups keep all their state on the caller's stack, so any number of threads may
 * share one table. */
#include "util/err.h"
#include "policy/tables.h"
#include "policy/tables_priv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* FNV-1a: short keys, no adversary choosing them (the admin writes the files). */
static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

const struct map_entry *tables_map_get(const struct map *m, const char *key)
{
    if (m->cap == 0)
        return NULL;
    uint32_t h = hash_str(key);
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const struct map_entry *e = &m->e[i];
        if (!e->key)
            return NULL;
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    }
}

static void map_insert(struct map_entry *tab, size_t cap, const char *key, uint32_t h, uint32_t v)
{
    size_t i = h & (cap - 1);
    while (tab[i].key)
        i = (i + 1) & (cap - 1);
    tab[i] = (struct map_entry){key, h, v};
}

/* Adds a key known to be absent. -1 on allocation failure. */
int tables_map_put(struct map *m, const char *key, uint32_t val)
{
    if ((m->n + 1) * 10 >= m->cap * 7) { /* keep the load under 0.7 */
        size_t ncap = m->cap ? m->cap * 2 : 64;
        struct map_entry *ne = calloc(ncap, sizeof(*ne));
        if (!ne)
            return -1;
        for (size_t i = 0; i < m->cap; i++)
            if (m->e[i].key)
                map_insert(ne, ncap, m->e[i].key, m->e[i].hash, m->e[i].val);
        free(m->e);
        m->e = ne;
        m->cap = ncap;
    }
    map_insert(m->e, m->cap, key, hash_str(key), val);
    m->n++;
    return 0;
}

/* Returns arr with room for element n (one of size elem), updating cap; NULL when out of memory,
 * arr then left as it was. */
void *tables_grow(void *arr, size_t elem, size_t n, size_t *cap)
{
    if (n < *cap)
        return arr;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *na = realloc(arr, ncap * elem);
    if (na)
        *cap = ncap;
    return na;
}

/* Lowercased copy; -1 when it does not fit in n bytes. */
int tables_lower_copy(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src);
    if (len >= n)
        return -1;
    for (size_t i = 0; i <= len; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch);
    }
    return 0;
}

struct tables *tables_new(void)
{
    return calloc(1, sizeof(struct tables));
}

static void alias_free(struct alias *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nmembers; i++)
        free(a->members[i]);
    free(a->members);
    free(a->name);
    free(a->origin);
    free(a);
}

void tables_free(struct tables *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ndomains; i++)
        free(t->domains[i]);
    free(t->domains);
    for (size_t i = 0; i < t->nusers; i++)
        free(t->users[i]);
    free(t->users);
    for (size_t i = 0; i < t->naliases; i++)
        alias_free(t->aliases[i]);
    free(t->aliases);
    free(t->domain_map.e);
    free(t->user_map.e);
    free(t->alias_map.e);
    tables_shared_free(t);
    free(t);
}

int tables_add_domain(struct tables *t, const char *domain, char *err, size_t errlen)
{
    char d[TABLES_ADDR_MAX + 1];
    if (!domain || !*domain || strchr(domain, '@') || tables_lower_copy(d, 256, domain) < 0) {
        err_set(err, errlen, "'%s' is not a domain name; write a name such as example.org",
                domain ? domain : "");
        return -1;
    }
    if (tables_map_get(&t->domain_map, d)) {
        err_set(err, errlen, "domain %s is listed twice; remove one", d);
        return -1;
    }
    char *copy = strdup(d);
    char **nd = tables_grow(t->domains, sizeof(*t->domains), t->ndomains, &t->domcap);
    if (nd)
        t->domains = nd;
    if (!copy || !nd || tables_map_put(&t->domain_map, copy, (uint32_t)t->ndomains) < 0) {
        free(copy);
        err_set(err, errlen, "out of memory adding domain %s; free some memory", d);
        return -1;
    }
    t->domains[t->ndomains++] = copy;
    return 0;
}

bool tables_is_local_domain(const struct tables *t, const char *domain)
{
    char d[256];
    if (!domain || tables_lower_copy(d, sizeof(d), domain) < 0)
        return false;
    return tables_map_get(&t->domain_map, d) != NULL;
}

size_t tables_ndomains(const struct tables *t)
{
    return t->ndomains;
}

const char *tables_domain(const struct tables *t, size_t i)
{
    return i < t->ndomains ? t->domains[i] : NULL;
}

/* Splits a lowercased address at its only '@'; -1 unless both sides are non-empty. */
int tables_split_addr(const char *addr, size_t *locallen)
{
    const char *at = strchr(addr, '@');
    if (!at || at == addr || !at[1] || strchr(at + 1, '@'))
        return -1;
    *locallen = (size_t)(at - addr);
    return 0;
}

/* forward=: an address in another domain, never with moved= (which answers 551 instead).
 * Within the local domains forwarding is an alias's job, and would loop through the queue. */
static int check_forward(const struct tables *t, const char *user, const char *fwd, char *err,
                         size_t errlen)
{
    char f[TABLES_ADDR_MAX + 1];
    size_t ll;
    if (tables_lower_copy(f, sizeof(f), fwd) < 0 || tables_split_addr(f, &ll) < 0) {
        err_set(err, errlen, "user %s: forward=%s is not an address; write forward=user@domain",
                user, fwd);
        return -1;
    }
    if (tables_map_get(&t->domain_map, f + ll + 1)) {
        err_set(err, errlen,
                "user %s: forward=%s is in a local domain; forward= sends mail to other "
                "domains: for a local address use an alias instead",
                user, f);
        return -1;
    }
    return 0;
}

/* turn=: lowercased in place; distinct names, none of them a local domain (TURN hands over
 * mail queued for relay domains, never the mail of tern's own domains). */
static int check_turn(const struct tables *t, const char *user, char *list, char *err,
                      size_t errlen)
{
    char copy[TABLES_TURN_LEN];
    const char *d[TABLES_TURN_MAX + 1];
    memcpy(copy, list, sizeof(copy));
    size_t n = 0;
    for (char *p = copy, *end; p; p = end ? end + 1 : NULL) {
        end = strchr(p, ',');
        if (end)
            *end = '\0';
        if (!*p || strchr(p, '@') || strlen(p) > 255) {
            err_set(err, errlen,
                    "user %s: turn=%s holds '%s', which is not a domain; write "
                    "turn=domain1,domain2 (no blanks)",
                    user, list, p);
            return -1;
        }
        if (n == TABLES_TURN_MAX) {
            err_set(err, errlen, "user %s: turn= lists more than %d domains; list at most %d", user,
                    TABLES_TURN_MAX, TABLES_TURN_MAX);
            return -1;
        }
        if (tables_map_get(&t->domain_map, p)) {
            err_set(err, errlen,
                    "user %s: turn=%s names %s, a local domain; TURN hands over mail queued for "
                    "relay domains only: remove it",
                    user, list, p);
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            if (strcmp(d[i], p) == 0) {
                err_set(err, errlen, "user %s: turn= names %s twice; remove one", user, p);
                return -1;
            }
        d[n++] = p;
    }
    return 0;
}

int tables_add_user(struct tables *t, const struct tables_user *u, char *err, size_t errlen)
{
    char addr[TABLES_ADDR_MAX + 1];
    size_t ll;
    if (tables_lower_copy(addr, sizeof(addr), u->addr) < 0 || tables_split_addr(addr, &ll) < 0) {
        err_set(err, errlen, "user '%s' is not an address; write it as user@domain", u->addr);
        return -1;
    }
    const char *what = u->shared ? "shared mailbox" : "user"; /* shared.c adds those here too */
    if (!tables_map_get(&t->domain_map, addr + ll + 1)) {
        err_set(err, errlen,
                "%s %s: %s is not one of the local domains; add it to domains = in [server] or "
                "fix the address",
                what, addr, addr + ll + 1);
        return -1;
    }
    const struct map_entry *dup = tables_map_get(&t->user_map, addr);
    if (dup && t->users[dup->val]->shared == u->shared) {
        err_set(err, errlen, "%s %s is listed twice; %s", what, addr,
                u->shared ? "rename one of the two" : "remove one of the lines");
        return -1;
    }
    if (dup) {
        err_set(err, errlen, "%s %s is also a %s; rename one of the two", what, addr,
                u->shared ? "user" : "shared mailbox");
        return -1;
    }
    if (tables_map_get(&t->alias_map, addr)) {
        err_set(err, errlen, "%s %s is also an alias; rename one of the two", what, addr);
        return -1;
    }
    if (u->forward[0] && u->moved[0]) {
        err_set(err, errlen,
                "user %s has both moved= and forward=; keep one (moved= answers 551 with the new "
                "address, forward= takes the mail and passes it on)",
                addr);
        return -1;
    }
    if (u->forward[0] && check_forward(t, addr, u->forward, err, errlen) < 0)
        return -1;
    char turn[TABLES_TURN_LEN];
    if (tables_lower_copy(turn, sizeof(turn), u->turn) < 0) {
        err_set(err, errlen, "user %s: turn= is longer than %d characters; list fewer domains",
                addr, TABLES_TURN_LEN - 1);
        return -1;
    }
    if (turn[0] && check_turn(t, addr, turn, err, errlen) < 0)
        return -1;
    struct tables_user *copy = malloc(sizeof(*copy));
    struct tables_user **nu = tables_grow(t->users, sizeof(*t->users), t->nusers, &t->usercap);
    if (nu)
        t->users = nu;
    if (!copy || !nu) {
        free(copy);
        err_set(err, errlen, "out of memory adding user %s; free some memory", addr);
        return -1;
    }
    *copy = *u;
    memcpy(copy->addr, addr, sizeof(addr));
    tables_lower_copy(copy->moved, sizeof(copy->moved), u->moved); /* same size: always fits */
    /* the domain any case, the local part as written: it is the other domain's to interpret */
    memcpy(copy->forward, u->forward, sizeof(copy->forward));
    char *fat = strrchr(copy->forward, '@');
    if (fat)
        tables_lower_copy(fat, sizeof(copy->forward) - (size_t)(fat - copy->forward), fat);
    memcpy(copy->turn, turn, sizeof(turn));
    if (tables_map_put(&t->user_map, copy->addr, (uint32_t)t->nusers) < 0) {
        free(copy);
        err_set(err, errlen, "out of memory adding user %s; free some memory", addr);
        return -1;
    }
    t->users[t->nusers++] = copy;
    return 0;
}

const struct tables_user *tables_user(const struct tables *t, const char *addr)
{
    char a[TABLES_ADDR_MAX + 1];
    if (!addr || tables_lower_copy(a, sizeof(a), addr) < 0)
        return NULL;
    const struct map_entry *e = tables_map_get(&t->user_map, a);
    return e ? t->users[e->val] : NULL;
}

size_t tables_nusers(const struct tables *t)
{
    return t->nusers;
}

const struct tables_user *tables_user_at(const struct tables *t, size_t i)
{
    return i < t->nusers ? t->users[i] : NULL;
}

size_t tables_naliases(const struct tables *t)
{
    return t->naliases;
}

int tables_add_alias(struct tables *t, const char *name, const char *const *members,
                     size_t nmembers, char *err, size_t errlen)
{
    return tables_add_alias_at(t, NULL, name, members, nmembers, err, errlen);
}

/* The member as local@domain: a bare local part takes the alias's domain. */
static char *member_normalise(const char *member, const char *domain)
{
    char m[TABLES_ADDR_MAX + 1];
    size_t ll;
    if (tables_lower_copy(m, sizeof(m), member) < 0)
        return NULL;
    if (!strchr(m, '@')) {
        size_t len = strlen(m);
        if (len == 0 || len + 1 + strlen(domain) > TABLES_ADDR_MAX)
            return NULL;
        m[len] = '@';
        strcpy(m + len + 1, domain);
    }
    if (tables_split_addr(m, &ll) < 0)
        return NULL;
    return strdup(m);
}

int tables_add_alias_at(struct tables *t, const char *origin, const char *name,
                        const char *const *members, size_t nmembers, char *err, size_t errlen)
{
    char n[TABLES_ADDR_MAX + 1];
    size_t ll;
    /* "@domain" is the domain's catch-all: it takes every address no user or alias names */
    bool catchall = name && name[0] == '@';
    if (!name || tables_lower_copy(n, sizeof(n), name) < 0 || !*n ||
        (catchall ? !n[1] || strchr(n + 1, '@')
                  : strchr(n, '@') && tables_split_addr(n, &ll) < 0)) {
        err_set(err, errlen, "alias '%s' is not a name; write local@domain or a bare local part",
                name ? name : "");
        return -1;
    }
    if (t->ndomains == 0) {
        err_set(err, errlen, "alias %s: no local domains yet; list them in domains = first", n);
        return -1;
    }
    const char *at = strchr(n, '@');
    const char *domain = at ? at + 1 : t->domains[0];
    if (at && !tables_map_get(&t->domain_map, domain)) {
        err_set(err, errlen,
                "alias %s: %s is not one of the local domains; add it to domains = in [server] "
                "or fix the name",
                n, domain);
        return -1;
    }
    const struct map_entry *dup = tables_map_get(&t->alias_map, n);
    if (dup) {
        const char *first = t->aliases[dup->val]->origin;
        if (first)
            err_set(err, errlen, "alias %s is defined twice (first at %s); merge them into one", n,
                    first);
        else
            err_set(err, errlen, "alias %s is defined twice; merge them into one", n);
        return -1;
    }
    if (at && tables_map_get(&t->user_map, n)) {
        err_set(err, errlen, "alias %s is also a user; rename one of the two", n);
        return -1;
    }
    if (nmembers == 0) {
        err_set(err, errlen, "alias %s has no members; list at least one local user", n);
        return -1;
    }
    struct alias *a = calloc(1, sizeof(*a));
    if (!a)
        goto oom;
    a->name = strdup(n);
    a->origin = origin ? strdup(origin) : NULL;
    a->members = calloc(nmembers, sizeof(*a->members));
    if (!a->name || (origin && !a->origin) || !a->members)
        goto oom;
    for (size_t i = 0; i < nmembers; i++) {
        a->members[i] = member_normalise(members[i], domain);
        if (!a->members[i]) {
            err_set(err, errlen,
                    "alias %s: member '%s' is not an address; write user@domain or a bare "
                    "local part",
                    n, members[i]);
            alias_free(a);
            return -1;
        }
        a->nmembers = i + 1;
    }
    struct alias **na = tables_grow(t->aliases, sizeof(*t->aliases), t->naliases, &t->aliascap);
    if (!na)
        goto oom;
    t->aliases = na;
    if (tables_map_put(&t->alias_map, a->name, (uint32_t)t->naliases) < 0)
        goto oom;
    t->aliases[t->naliases++] = a;
    return 0;
oom:
    alias_free(a);
    err_set(err, errlen, "out of memory adding alias %s; free some memory", n);
    return -1;
}

/* What a lowercased local@domain names: a user first, then a full alias, then a bare alias. */
enum target tables_target_of(const struct tables *t, const char *addr, uint32_t *idx)
{
    const char *at = strrchr(addr, '@');
    if (!at || !tables_map_get(&t->domain_map, at + 1))
        return TARGET_FOREIGN;
    const struct map_entry *e = tables_map_get(&t->user_map, addr);
    if (e) {
        *idx = e->val;
        return TARGET_USER;
    }
    e = tables_map_get(&t->alias_map, addr);
    if (!e) {
        char local[TABLES_ADDR_MAX + 1];
        size_t ll = (size_t)(at - addr);
        memcpy(local, addr, ll);
        local[ll] = '\0';
        e = tables_map_get(&t->alias_map, local);
    }
    if (!e)
        e = tables_map_get(&t->alias_map, at); /* the domain's catch-all, "@domain" */
    if (e) {
        *idx = e->val;
        return TARGET_ALIAS;
    }
    return TARGET_NONE;
}

/* A set of small integers (index + 1) in a fixed open-addressing table. */
#define SET_CAP 2048 /* > 2 * (TABLES_MAX_EXPANSION + 1): load stays under one half */

struct expansion {
    uint32_t users[SET_CAP];
    uint32_t aliases[SET_CAP];
    size_t naliases;
    uint32_t found[TABLES_MAX_EXPANSION + 1]; /* user indices, in the order reached */
    size_t nfound, limit;
    bool too_many;
};

/* Adds v; false if it was already there. */
static bool set_add(uint32_t *set, uint32_t v)
{
    uint32_t key = v + 1;
    for (size_t i = (key * 2654435761u) & (SET_CAP - 1);; i = (i + 1) & (SET_CAP - 1)) {
        if (set[i] == key)
            return false;
        if (set[i] == 0) {
            set[i] = key;
            return true;
        }
    }
}

/* Collects the mailboxes alias ai reaches; a moved user is skipped, each alias expanded once. */
static void expand(const struct tables *t, uint32_t ai, int depth, struct expansion *x)
{
    if (x->too_many)
        return;
    if (depth > TABLES_MAX_DEPTH || x->naliases >= SET_CAP / 2) {
        x->too_many = true; /* tables_finish rejects this; never trust it blindly */
        return;
    }
    if (!set_add(x->aliases, ai))
        return;
    x->naliases++;
    const struct alias *a = t->aliases[ai];
    for (size_t i = 0; i < a->nmembers && !x->too_many; i++) {
        uint32_t idx = 0;
        switch (tables_target_of(t, a->members[i], &idx)) {
        case TARGET_USER:
            if (t->users[idx]->moved[0] || !set_add(x->users, idx))
                break;
            if (x->nfound >= x->limit) {
                x->too_many = true;
                break;
            }
            x->found[x->nfound++] = idx;
            break;
        case TARGET_ALIAS:
            expand(t, idx, depth + 1, x);
            break;
        case TARGET_NONE:
        case TARGET_FOREIGN:
            break; /* tables_finish refuses these */
        }
    }
}

enum tables_status tables_resolve(const struct tables *t, const char *local, const char *domain,
                                  char (*mailboxes)[TABLES_ADDR_MAX + 1], size_t max,
                                  size_t *nmailboxes, char *forward, size_t forwardlen)
{
    *nmailboxes = 0;
    if (forward && forwardlen)
        forward[0] = '\0';
    char addr[TABLES_ADDR_MAX + 1];
    if (!domain || !*domain) {
        if (t->ndomains == 0)
            return TABLES_UNKNOWN;
        domain = t->domains[0];
    }
    if (!tables_is_local_domain(t, domain))
        return TABLES_FOREIGN;
    /* A quoted local part may hold '@'; no local name does, and it must not reach a bare
     * alias lookup that would take "a@b" for a full name. */
    if (!local || !*local || strchr(local, '@') ||
        (size_t)snprintf(addr, sizeof(addr), "%s@%s", local, domain) >= sizeof(addr))
        return TABLES_UNKNOWN;
    tables_lower_copy(addr, sizeof(addr), addr);

    uint32_t idx = 0;
    switch (tables_target_of(t, addr, &idx)) {
    case TARGET_USER: {
        const struct tables_user *u = t->users[idx];
        if (u->moved[0]) {
            if (forward && forwardlen)
                snprintf(forward, forwardlen, "%s", u->moved);
            return TABLES_MOVED;
        }
        if (max < 1)
            return TABLES_TOO_MANY;
        memcpy(mailboxes[0], u->addr, sizeof(mailboxes[0]));
        *nmailboxes = 1;
        if (!u->forward[0])
            return TABLES_OK;
        if (forward && forwardlen)
            snprintf(forward, forwardlen, "%s", u->forward);
        return TABLES_FORWARD;
    }
    case TARGET_ALIAS: {
        struct expansion *x = calloc(1, sizeof(*x)); /* ~25 KiB: keep it off small stacks */
        if (!x)
            return TABLES_TOO_MANY;
        x->limit = max < TABLES_MAX_EXPANSION ? max : TABLES_MAX_EXPANSION;
        expand(t, idx, 1, x);
        enum tables_status st = TABLES_OK;
        if (x->too_many)
            st = TABLES_TOO_MANY;
        else if (x->nfound == 0)
            st = TABLES_UNKNOWN; /* everyone on it has moved; tables_finish refuses this */
        else
            for (size_t i = 0; i < x->nfound; i++)
                memcpy(mailboxes[i], t->users[x->found[i]]->addr, sizeof(mailboxes[i]));
        if (st == TABLES_OK) {
            *nmailboxes = x->nfound;
            /* an alias whose every user is forwarded keeps nothing here: 251 like the user */
            const char *first = t->users[x->found[0]]->forward;
            for (size_t i = 0; i < x->nfound && first[0]; i++)
                if (!t->users[x->found[i]]->forward[0])
                    first = "";
            if (first[0]) {
                st = TABLES_FORWARD;
                if (forward && forwardlen)
                    snprintf(forward, forwardlen, "%s", first);
            }
        }
        free(x);
        return st;
    }
    case TARGET_NONE:
    case TARGET_FOREIGN:
        break;
    }
    return TABLES_UNKNOWN;
}

size_t tables_turn_domains(const struct tables_user *u, char *buf, size_t buflen, const char **out,
                           size_t max)
{
    size_t n = 0;
    if (!u || !u->turn[0] || buflen <= strlen(u->turn))
        return 0;
    strcpy(buf, u->turn);
    for (char *p = buf, *end; p && n < max; p = end ? end + 1 : NULL) {
        end = strchr(p, ',');
        if (end)
            *end = '\0';
        if (*p) /* tables_add_user refuses empty names; never hand one out */
            out[n++] = p;
    }
    return n;
}

/* Does the user's local part equal q (already lowercased)? */
static bool local_is(const struct tables_user *u, const char *q, size_t qlen)
{
    return strncmp(u->addr, q, qlen) == 0 && u->addr[qlen] == '@';
}

size_t tables_vrfy(const struct tables *t, const char *query, const struct tables_user **out,
                   size_t max)
{
    char q[TABLES_ADDR_MAX + 1];
    if (!query || !*query || tables_lower_copy(q, sizeof(q), query) < 0)
        return 0;
    if (strchr(q, '@')) {
        const struct map_entry *e = tables_map_get(&t->user_map, q);
        if (!e)
            return 0;
        if (max > 0)
            out[0] = t->users[e->val];
        return 1;
    }
    size_t n = 0, qlen = strlen(q);
    /* Exact local parts first (the likeliest meaning), by hash in each domain... */
    for (size_t d = 0; d < t->ndomains; d++) {
        char addr[TABLES_ADDR_MAX + 1];
        if ((size_t)snprintf(addr, sizeof(addr), "%s@%s", q, t->domains[d]) >= sizeof(addr))
            continue;
        const struct map_entry *e = tables_map_get(&t->user_map, addr);
        if (e) {
            if (n < max)
                out[n] = t->users[e->val];
            n++;
        }
    }
    /* ...then full names, a linear scan: VRFY is rare and counted as a junk command. */
    for (size_t i = 0; i < t->nusers; i++) {
        const struct tables_user *u = t->users[i];
        if (u->name[0] && !local_is(u, q, qlen) && strcasestr(u->name, q)) {
            if (n < max)
                out[n] = u;
            n++;
        }
    }
    return n;
}

long tables_expn(const struct tables *t, const char *name, const char **out, size_t max)
{
    char addr[TABLES_ADDR_MAX + 1];
    if (!name || !*name || t->ndomains == 0)
        return -1;
    if (strchr(name, '@')) {
        if (tables_lower_copy(addr, sizeof(addr), name) < 0)
            return -1;
    } else if ((size_t)snprintf(addr, sizeof(addr), "%s@%s", name, t->domains[0]) >= sizeof(addr)) {
        return -1;
    } else {
        tables_lower_copy(addr, sizeof(addr), addr);
    }
    size_t ll;
    uint32_t idx = 0;
    if (tables_split_addr(addr, &ll) < 0 || tables_target_of(t, addr, &idx) != TARGET_ALIAS)
        return -1;
    const struct alias *a = t->aliases[idx];
    for (size_t i = 0; i < a->nmembers && i < max; i++)
        out[i] = a->members[i];
    return (long)a->nmembers;
}

bool tables_names_alias(const struct tables *t, const char *addr)
{
    char a[TABLES_ADDR_MAX + 1];
    size_t ll;
    uint32_t idx = 0;
    if (!addr || tables_lower_copy(a, sizeof(a), addr) < 0 || tables_split_addr(a, &ll) < 0)
        return false;
    /* a catch-all's name is "@domain" */
    return tables_target_of(t, a, &idx) == TARGET_ALIAS && t->aliases[idx]->name[0] != '@';
}

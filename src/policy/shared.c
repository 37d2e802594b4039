/* Shared mailboxes (the `mailboxes` file): one Maildir that several users receive into, read
 * and send as. Each is stored as a user entry (shared = true) so that delivery, VRFY and aliases
 * treat it like any mailbox; this file adds who its members are, checks them in tables_finish
 * and answers the membership questions send-as, EXPN and the Dovecot ACLs ask. */
#include "policy/tables.h"
#include "policy/tables_priv.h"
#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void shared_free(struct shared *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nmembers; i++)
        free(s->members[i]);
    free(s->members);
    free(s->users);
    free(s->origin);
    free(s);
}

void tables_shared_free(struct tables *t)
{
    for (size_t i = 0; i < t->nshared; i++)
        shared_free(t->shared[i]);
    free(t->shared);
    free(t->shared_map.e);
}

/* A member as lowercased local@domain; a bare local part takes domain. NULL when malformed. */
static char *member_copy(const char *member, const char *domain)
{
    char m[TABLES_ADDR_MAX + 1];
    size_t ll;
    if (tables_lower_copy(m, sizeof(m), member) < 0 || !*m)
        return NULL;
    if (!strchr(m, '@')) {
        size_t len = strlen(m);
        if (len + 1 + strlen(domain) > TABLES_ADDR_MAX)
            return NULL;
        m[len] = '@';
        strcpy(m + len + 1, domain);
    }
    return tables_split_addr(m, &ll) < 0 ? NULL : strdup(m);
}

int tables_add_shared(struct tables *t, const char *origin, const char *addr,
                      const char *const *members, size_t nmembers, uint64_t quota, char *err,
                      size_t errlen)
{
    struct tables_user u;
    memset(&u, 0, sizeof(u));
    if (!addr || tables_lower_copy(u.addr, sizeof(u.addr), addr) < 0 || !strchr(u.addr, '@')) {
        err_set(err, errlen, "shared mailbox '%s' is not an address; write team@domain",
                addr ? addr : "");
        return -1;
    }
    if (nmembers == 0) {
        err_set(err, errlen, "shared mailbox %s has no members; list at least one user", u.addr);
        return -1;
    }
    u.shared = true;
    u.locked = true; /* it has no password; nobody logs in as it */
    u.quota = quota;
    snprintf(u.name, sizeof(u.name), "Shared mailbox");
    /* tables_add_user checks the domain and that no user or alias has this address */
    if (tables_add_user(t, &u, err, errlen) < 0)
        return -1;
    uint32_t uidx = (uint32_t)(tables_nusers(t) - 1);
    const char *a = t->users[uidx]->addr;
    struct shared *s = calloc(1, sizeof(*s));
    struct shared **ns = tables_grow(t->shared, sizeof(*t->shared), t->nshared, &t->sharedcap);
    if (ns)
        t->shared = ns;
    if (!s || !ns || !(s->members = calloc(nmembers, sizeof(*s->members))) ||
        (origin && !(s->origin = strdup(origin))))
        goto oom;
    s->user = uidx;
    const char *domain = strchr(a, '@') + 1;
    for (size_t i = 0; i < nmembers; i++) {
        s->members[i] = member_copy(members[i], domain);
        if (!s->members[i]) {
            err_set(err, errlen,
                    "shared mailbox %s: member '%s' is not an address; write user@domain or a "
                    "bare local part",
                    a, members[i]);
            shared_free(s);
            return -1; /* the user entry stays: the load fails as a whole anyway */
        }
        s->nmembers = i + 1;
    }
    if (tables_map_put(&t->shared_map, a, (uint32_t)t->nshared) < 0)
        goto oom;
    t->shared[t->nshared++] = s;
    return 0;
oom:
    shared_free(s);
    err_set(err, errlen, "out of memory adding shared mailbox %s; free some memory", a);
    return -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks s's members and computes its member users (sorted, distinct, no shared mailboxes). */
static void finish_one(struct tables *t, struct shared *s, char (*buf)[TABLES_ADDR_MAX + 1],
                       struct reasons *r)
{
    const char *name = t->users[s->user]->addr;
    size_t cap = 0;
    bool bad = false;
    for (size_t i = 0; i < s->nmembers; i++) {
        const char *m = s->members[i];
        uint32_t idx = 0;
        switch (tables_target_of(t, m, &idx)) {
        case TARGET_USER:
            if (t->users[idx]->shared) {
                tables_reason(r, s->origin,
                              "shared mailbox %s: member %s is itself a shared mailbox; list "
                              "its members instead",
                              name, m);
                bad = true;
            }
            break;
        case TARGET_ALIAS:
            break;
        case TARGET_FOREIGN:
        case TARGET_NONE:
            tables_reason(r, s->origin,
                          "shared mailbox %s: member %s is not a local user or alias; add it to "
                          "the users file or fix the member",
                          name, m);
            bad = true;
            break;
        }
        if (bad)
            continue;
        char local[TABLES_ADDR_MAX + 1];
        const char *at = strrchr(m, '@');
        memcpy(local, m, (size_t)(at - m));
        local[at - m] = '\0';
        size_t n = 0;
        enum tables_status st =
            tables_resolve(t, local, at + 1, buf, TABLES_MAX_EXPANSION, &n, NULL, 0);
        /* a forwarded user gets its mail elsewhere but is still a person here: a member */
        if (st != TABLES_OK && st != TABLES_FORWARD)
            continue; /* a moved user, or a broken alias whose reason is given already */
        for (size_t j = 0; j < n; j++) {
            const struct tables_user *u = tables_user(t, buf[j]);
            if (!u || u->shared) /* an alias may name the shared mailbox itself: not a person */
                continue;
            if (s->nusers == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                const char **nu = realloc(s->users, ncap * sizeof(*nu));
                if (!nu) {
                    tables_reason(r, s->origin, "out of memory reading shared mailbox %s", name);
                    return;
                }
                s->users = nu;
                cap = ncap;
            }
            s->users[s->nusers++] = u->addr;
        }
    }
    if (s->nusers > 1) {
        qsort(s->users, s->nusers, sizeof(*s->users), cmp_str);
        size_t w = 1;
        for (size_t i = 1; i < s->nusers; i++)
            if (strcmp(s->users[w - 1], s->users[i]) != 0)
                s->users[w++] = s->users[i];
        s->nusers = w;
    }
    if (!bad && s->nusers == 0)
        tables_reason(r, s->origin,
                      "shared mailbox %s: no member reaches a user (every one has moved); add a "
                      "member",
                      name);
}

void tables_shared_finish(struct tables *t, struct reasons *r)
{
    if (t->nshared == 0)
        return;
    char(*buf)[TABLES_ADDR_MAX + 1] = malloc(TABLES_MAX_EXPANSION * sizeof(*buf));
    if (!buf) {
        tables_reason(r, NULL, "out of memory checking shared mailboxes; free some memory");
        return;
    }
    for (size_t i = 0; i < t->nshared; i++) {
        struct shared *s = t->shared[i];
        free(s->users);
        s->users = NULL;
        s->nusers = 0;
        finish_one(t, s, buf, r);
    }
    free(buf);
}

static const struct shared *find(const struct tables *t, const char *addr)
{
    char a[TABLES_ADDR_MAX + 1];
    if (!addr || tables_lower_copy(a, sizeof(a), addr) < 0)
        return NULL;
    const struct map_entry *e = tables_map_get(&t->shared_map, a);
    return e ? t->shared[e->val] : NULL;
}

size_t tables_nshared(const struct tables *t)
{
    return t->nshared;
}

const char *tables_shared_at(const struct tables *t, size_t i)
{
    return i < t->nshared ? t->users[t->shared[i]->user]->addr : NULL;
}

bool tables_is_shared(const struct tables *t, const char *addr)
{
    return find(t, addr) != NULL;
}

bool tables_is_member(const struct tables *t, const char *addr, const char *user)
{
    const struct shared *s = find(t, addr);
    char u[TABLES_ADDR_MAX + 1];
    if (!s || !user || tables_lower_copy(u, sizeof(u), user) < 0 || s->nusers == 0)
        return false;
    const char *key = u;
    return bsearch(&key, s->users, s->nusers, sizeof(*s->users), cmp_str) != NULL;
}

long tables_shared_members(const struct tables *t, const char *addr, const char **out, size_t max)
{
    const struct shared *s = find(t, addr);
    if (!s)
        return -1;
    for (size_t i = 0; i < s->nmembers && i < max; i++)
        out[i] = s->members[i];
    return (long)s->nmembers;
}

long tables_shared_users(const struct tables *t, const char *addr, const char **out, size_t max)
{
    const struct shared *s = find(t, addr);
    if (!s)
        return -1;
    for (size_t i = 0; i < s->nusers && i < max; i++)
        out[i] = s->users[i];
    return (long)s->nusers;
}

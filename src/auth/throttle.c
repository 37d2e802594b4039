/* AUTH failure counting for throttle.h: one entry per key ("ip:<addr>", "user:<name>") holding
 * its failure count and the time of its last failure, in a chained hash table of at most
 * max_keys entries. Entries also sit on a list in the order of their last failure, so when the
 * table is full the one that failed longest ago is forgotten in O(1). Keys come from the
 * network (any user name a client cares to try), so buckets are chosen by SipHash-2-4 under a
 * random per-table key: nobody can aim many names at one chain. Not locked: one thread owns it. */
#include "auth/throttle.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define THROTTLE_MAX_DELAY 30
#define THROTTLE_KEY_MAX 400 /* longer names are cut: they only share a counter */
#define NONE UINT32_MAX

struct entry {
    char *key;
    uint64_t hash;
    unsigned failures;
    time_t last;
    uint32_t chain; /* next in the bucket */
    uint32_t older; /* neighbours on the last-failure list */
    uint32_t newer;
};

struct throttle {
    unsigned limit;
    time_t window;
    size_t max_keys;
    uint64_t sipkey[2];
    struct entry *e;
    size_t n, cap;    /* entries in use, allocated */
    uint32_t *bucket; /* heads of chains */
    size_t nbuckets;  /* a power of two */
    uint32_t oldest, newest;
};

/* ---- SipHash-2-4 (Aumasson and Bernstein), written from the paper ---- */

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND(v0, v1, v2, v3)                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = x << 8 | p[i];
    return x;
}

static uint64_t siphash(const uint64_t k[2], const unsigned char *m, size_t len)
{
    uint64_t v0 = k[0] ^ 0x736f6d6570736575ULL, v1 = k[1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k[0] ^ 0x6c7967656e657261ULL, v3 = k[1] ^ 0x7465646279746573ULL;
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t w = load_le64(m + i);
        v3 ^= w;
        SIPROUND(v0, v1, v2, v3);
        SIPROUND(v0, v1, v2, v3);
        v0 ^= w;
    }
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < len % 8; i++)
        last |= (uint64_t)m[whole + i] << (8 * i);
    v3 ^= last;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    v0 ^= last;
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the table ---- */

struct throttle *throttle_new(unsigned limit, unsigned window_seconds, size_t max_keys)
{
    if (max_keys == 0 || max_keys >= NONE)
        return NULL;
    struct throttle *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->limit = limit;
    t->window = (time_t)window_seconds;
    t->max_keys = max_keys;
    t->oldest = t->newest = NONE;
    t->nbuckets = 16;
    t->bucket = malloc(t->nbuckets * sizeof(*t->bucket));
    if (!t->bucket || getrandom(t->sipkey, sizeof(t->sipkey), 0) != (ssize_t)sizeof(t->sipkey)) {
        free(t->bucket);
        free(t);
        return NULL;
    }
    memset(t->bucket, 0xff, t->nbuckets * sizeof(*t->bucket)); /* all NONE */
    return t;
}

void throttle_free(struct throttle *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->e[i].key);
    free(t->e);
    free(t->bucket);
    free(t);
}

/* key = prefix + name, cut to THROTTLE_KEY_MAX. Returns its length. */
static size_t make_key(char *key, const char *prefix, const char *name)
{
    size_t pl = strlen(prefix), nl = strnlen(name, THROTTLE_KEY_MAX - pl);
    memcpy(key, prefix, pl);
    memcpy(key + pl, name, nl);
    key[pl + nl] = '\0';
    return pl + nl;
}

static uint32_t find(const struct throttle *t, const char *key, uint64_t h)
{
    for (uint32_t i = t->bucket[h & (t->nbuckets - 1)]; i != NONE; i = t->e[i].chain) {
        if (t->e[i].hash == h && strcmp(t->e[i].key, key) == 0)
            return i;
    }
    return NONE;
}

static void list_unlink(struct throttle *t, uint32_t i)
{
    struct entry *x = &t->e[i];
    if (x->older != NONE)
        t->e[x->older].newer = x->newer;
    else
        t->oldest = x->newer;
    if (x->newer != NONE)
        t->e[x->newer].older = x->older;
    else
        t->newest = x->older;
    x->older = x->newer = NONE;
}

static void list_append(struct throttle *t, uint32_t i)
{
    t->e[i].older = t->newest;
    t->e[i].newer = NONE;
    if (t->newest != NONE)
        t->e[t->newest].newer = i;
    else
        t->oldest = i;
    t->newest = i;
}

static void chain_unlink(struct throttle *t, uint32_t i)
{
    uint32_t *p = &t->bucket[t->e[i].hash & (t->nbuckets - 1)];
    while (*p != i)
        p = &t->e[*p].chain;
    *p = t->e[i].chain;
}

static void chain_insert(struct throttle *t, uint32_t i)
{
    uint32_t *head = &t->bucket[t->e[i].hash & (t->nbuckets - 1)];
    t->e[i].chain = *head;
    *head = i;
}

/* Keeps chains short: doubles the buckets once there are more entries than buckets. */
static void maybe_grow_buckets(struct throttle *t)
{
    if (t->n <= t->nbuckets || t->nbuckets >= t->max_keys)
        return;
    uint32_t *nb = malloc(2 * t->nbuckets * sizeof(*nb));
    if (!nb)
        return; /* longer chains, still correct */
    free(t->bucket);
    t->bucket = nb;
    t->nbuckets *= 2;
    memset(t->bucket, 0xff, t->nbuckets * sizeof(*t->bucket));
    for (uint32_t i = 0; i < t->n; i++)
        chain_insert(t, i);
}

/* A slot for a new key: a fresh one while below max_keys, else the oldest, forgotten. */
static uint32_t take_slot(struct throttle *t)
{
    if (t->n < t->max_keys) {
        if (t->n == t->cap) {
            size_t nc = t->cap ? t->cap * 2 : 64;
            if (nc > t->max_keys)
                nc = t->max_keys;
            struct entry *ne = realloc(t->e, nc * sizeof(*ne));
            if (!ne)
                goto evict;
            t->e = ne;
            t->cap = nc;
        }
        uint32_t i = (uint32_t)t->n++;
        memset(&t->e[i], 0, sizeof(t->e[i]));
        t->e[i].older = t->e[i].newer = t->e[i].chain = NONE;
        return i;
    }
evict:
    if (t->oldest == NONE)
        return NONE;
    uint32_t i = t->oldest;
    list_unlink(t, i);
    chain_unlink(t, i);
    free(t->e[i].key);
    t->e[i].key = NULL;
    return i;
}

/* Failures of an entry still inside the window at now. */
static unsigned live_failures(const struct throttle *t, const struct entry *x, time_t now)
{
    time_t age = now > x->last ? now - x->last : 0; /* a clock stepping back counts as now */
    return age < t->window ? x->failures : 0;
}

static void fail_key(struct throttle *t, const char *prefix, const char *name, time_t now)
{
    if (!name || !*name)
        return;
    char key[THROTTLE_KEY_MAX + 1];
    size_t len = make_key(key, prefix, name);
    uint64_t h = siphash(t->sipkey, (const unsigned char *)key, len);
    uint32_t i = find(t, key, h);
    if (i == NONE) {
        char *copy = malloc(len + 1);
        if (!copy)
            return; /* forgetting a failure is the safe side of running out of memory */
        i = take_slot(t);
        if (i == NONE) {
            free(copy);
            return;
        }
        memcpy(copy, key, len + 1);
        t->e[i].key = copy;
        t->e[i].hash = h;
        t->e[i].failures = 0;
        chain_insert(t, i);
        list_append(t, i);
        maybe_grow_buckets(t);
    } else {
        list_unlink(t, i);
        list_append(t, i);
        t->e[i].failures = live_failures(t, &t->e[i], now);
    }
    if (t->e[i].failures < UINT_MAX)
        t->e[i].failures++;
    t->e[i].last = now;
}

static unsigned failures_of(const struct throttle *t, const char *prefix, const char *name,
                            time_t now)
{
    if (!name || !*name)
        return 0;
    char key[THROTTLE_KEY_MAX + 1];
    size_t len = make_key(key, prefix, name);
    uint32_t i = find(t, key, siphash(t->sipkey, (const unsigned char *)key, len));
    return i == NONE ? 0 : live_failures(t, &t->e[i], now);
}

void throttle_fail(struct throttle *t, const char *ip, const char *user, time_t now)
{
    fail_key(t, "ip:", ip, now);
    fail_key(t, "user:", user, now);
}

static unsigned delay_for(unsigned failures)
{
    if (failures == 0)
        return 0;
    if (failures > 5) /* 2^5 = 32 is past the cap already */
        return THROTTLE_MAX_DELAY;
    unsigned d = 1u << (failures - 1);
    return d < THROTTLE_MAX_DELAY ? d : THROTTLE_MAX_DELAY;
}

unsigned throttle_delay(const struct throttle *t, const char *ip, const char *user, time_t now)
{
    unsigned a = delay_for(failures_of(t, "ip:", ip, now));
    unsigned b = delay_for(failures_of(t, "user:", user, now));
    return a > b ? a : b;
}

bool throttle_blocked(const struct throttle *t, const char *ip, const char *user, time_t now)
{
    if (t->limit == 0) /* no limit configured: delays only */
        return false;
    return failures_of(t, "ip:", ip, now) >= t->limit ||
           failures_of(t, "user:", user, now) >= t->limit;
}

/* The insides of struct tables, shared by the files of policy/ that build and read it
 * (tables.c: domains, users, aliases; tables_check.c: tables_finish; shared.c: shared
 * mailboxes). Nothing outside policy/ includes this. */
#ifndef TERN_POLICY_TABLES_PRIV_H
#define TERN_POLICY_TABLES_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "policy/tables.h"

/* A string-keyed hash map of indices. Keys point into strings the tables own. */
struct map_entry {
    const char *key; /* NULL: empty slot */
    uint32_t hash;
    uint32_t val;
};

struct map {
    struct map_entry *e;
    size_t cap; /* a power of two, or 0 */
    size_t n;
};

struct alias {
    char *name;      /* lowercased "local@domain", or "local" when bare */
    char *origin;    /* where it came from, for tables_finish's reasons; may be NULL */
    char **members;  /* normalised lowercased "local@domain" */
    size_t nmembers; /* >= 1 */
};

/* A shared mailbox: its entry in users (shared = true) plus who its members are. */
struct shared {
    uint32_t user;      /* index of its entry in tables.users */
    char *origin;       /* "mailboxes:12", for reasons; may be NULL */
    char **members;     /* as written, normalised lowercased local@domain */
    size_t nmembers;    /* >= 1 */
    const char **users; /* member users, aliases expanded, sorted; set by tables_finish */
    size_t nusers;
};

struct tables {
    char **domains;
    size_t ndomains, domcap;
    struct map domain_map;

    struct tables_user **users; /* one allocation each, so pointers handed out stay valid */
    size_t nusers, usercap;
    struct map user_map;

    struct alias **aliases;
    size_t naliases, aliascap;
    struct map alias_map; /* full and bare names share it: only full names contain '@' */

    struct shared **shared;
    size_t nshared, sharedcap;
    struct map shared_map; /* address -> index in shared */
};

enum target { TARGET_NONE, TARGET_FOREIGN, TARGET_USER, TARGET_ALIAS };

const struct map_entry *tables_map_get(const struct map *m, const char *key);
int tables_map_put(struct map *m, const char *key, uint32_t val); /* key absent; -1: no memory */
void *tables_grow(void *arr, size_t elem, size_t n, size_t *cap);
int tables_lower_copy(char *dst, size_t n, const char *src); /* -1 when it does not fit */
int tables_split_addr(const char *addr, size_t *locallen);
/* What a lowercased local@domain names: a user first, then a full alias, then a bare alias. */
enum target tables_target_of(const struct tables *t, const char *addr, uint32_t *idx);

/* A growing list of reasons, one per line, for tables_finish. */
struct reasons {
    char *buf;
    size_t len, cap;
    int n;
};
void tables_reason(struct reasons *r, const char *origin, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* shared.c: tables_finish's part for shared mailboxes (members exist, member sets computed),
 * and freeing them. */
void tables_shared_finish(struct tables *t, struct reasons *r);
void tables_shared_free(struct tables *t);

#endif

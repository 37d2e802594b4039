/* The loader's state while it reads tern.conf, shared by config.c (reading lines and keys) and
 * finish.c (what is checked once the whole file is read: defaults, paths, TLS files, the users
 * and aliases files). Internal to src/conf/. */
#ifndef TERN_CONF_LOADER_H
#define TERN_CONF_LOADER_H

#include <limits.h>
#include <stdio.h>

#include "conf/config.h"

#define CONF_NKEYS 54 /* entries of conf_keys[] (checked in config.c) */

#define MAX_DOMAINS 1024

enum section {
    SEC_SERVER,
    SEC_LISTEN,
    SEC_LIMITS,
    SEC_POLICY,
    SEC_TLS,
    SEC_AUTH,
    SEC_AUDIT,
    SEC_RELAY,
    SEC_TERMINAL,
    SEC_COUNT,
    SEC_NONE
};

enum ktype {
    K_HOSTNAME,
    K_DATA_DIR,
    K_USER,
    K_USERS,
    K_ALIASES,
    K_MAILBOXES,
    K_DOMAINS,
    K_WORKERS,
    K_LISTEN,
    K_COUNT,   /* a size_t count */
    K_SECONDS, /* an int number of seconds */
    K_SIZE,    /* a uint64_t byte size */
    K_DENY,
    K_DISCLOSE,
    K_TLS_CERT,
    K_TLS_KEY,
    K_PLAINTEXT,
    K_SNI,
    K_CHECK_FROM,
    K_BOOL,  /* yes|no into a bool field */
    K_RELAY, /* [relay] keys with their own syntax: conf/relay.c */
    K_TERMINAL_ALLOW,
};

struct key {
    enum section sec;
    const char *name;
    enum ktype type;
    bool repeat; /* may appear more than once */
    size_t off;  /* field in struct conf, for the generic types */
    long long min, max;
    int kind; /* K_LISTEN: enum conf_listener_kind */
};

/* Everything one conf_load carries while it reads. */
struct loader {
    struct conf *c;
    struct conf_errors *e;
    const char *file;
    FILE *f;
    struct evp_md_ctx_st *sha; /* SHA-256 of the bytes read, for the audit log; NULL if none */
    char *linebuf;
    size_t linecap;
    int line;                    /* the line inih is looking at */
    int section_line[SEC_COUNT]; /* where each section starts, 0 if absent */
    int key_line[CONF_NKEYS];    /* where each key was set, 0 if not */
    char data_dir[PATH_MAX];     /* as written */
    char users[PATH_MAX];        /* as written */
    char aliases[PATH_MAX];      /* as written */
    char mailboxes[PATH_MAX];    /* as written */
    char tls_cert[PATH_MAX];     /* as written, "" when not set */
    char tls_key[PATH_MAX];      /* as written */
    int sni_line[CONF_MAX_SNI];  /* where each sni = was, for errors about its files */
    char *domains[MAX_DOMAINS];
    size_t ndomains;
};

extern const struct key conf_keys[CONF_NKEYS];

/* The line to point at for something about section s: where it starts, else the end. */
int conf_where(const struct loader *l, enum section s);

/* An error at the line inih is on. */
void conf_lerr(struct loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* relay.c: one [relay] key with its own syntax; the checks once the file is read (paths made
 * absolute, the relayhost's credentials read). */
void conf_relay_set(struct loader *l, const char *key, const char *v);
void conf_relay_finish(struct loader *l, bool dirs_ok);

/* Defaults, paths, required keys, then the users and aliases files. */
void conf_finish(struct loader *l);

#endif

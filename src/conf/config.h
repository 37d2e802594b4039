/* The daemon's configuration: tern.conf (INI, read with inih) parsed into one immutable struct,
 * plus the users/aliases tables it names. Every error names file:line. A loaded config is
 * reference-counted so SIGHUP can swap in a new one while sessions still hold the old. */
#ifndef TERN_CONF_CONFIG_H
#define TERN_CONF_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/tables.h"

#define CONF_MAX_LISTENERS 8
#define CONF_MAX_DENY 256
#define CONF_MAX_SNI 16

enum conf_listener_kind { LISTEN_SMTP, LISTEN_SUBMISSION, LISTEN_SMTPS };

struct conf_listener {
    enum conf_listener_kind kind;
    char host[64]; /* numeric address: "127.0.0.1", "::1", "0.0.0.0" */
    int port;
};

/* A CIDR block from `deny =`: clients in it get 554 at greeting. */
struct conf_cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int prefix;
};

/* Who may see real answers to VRFY / EXPN. */
enum conf_disclose {
    DISCLOSE_NONE,          /* never: VRFY 252, EXPN 502 */
    DISCLOSE_AUTHENTICATED, /* only to authenticated clients; others VRFY 252 / EXPN 252 */
    DISCLOSE_ALL,           /* to anyone */
};

/* [terminal] allow: who may send to a user's terminal (SEND, and the terminal half of SOML and
 * SAML). The values match enum smtp_terminal_allow. */
enum conf_terminal_allow {
    TERMINAL_ALLOW_ALL,           /* any client that may mail the user (the default) */
    TERMINAL_ALLOW_AUTHENTICATED, /* authenticated clients only */
    TERMINAL_ALLOW_NONE,          /* nobody: SEND 502, SOML and SAML act as MAIL */
};
#define CONF_TERMINAL_MAX_SIZE (1u << 20) /* the largest [terminal] max_size */

/* [relay]: outbound delivery (src/relay/). */
#define CONF_MAX_ROUTES 64
#define CONF_MAX_RELAY_DOMAINS 64

/* How much TLS an outbound connection insists on. */
enum conf_tls_level {
    TLS_LEVEL_NONE,    /* never STARTTLS */
    TLS_LEVEL_MAY,     /* STARTTLS when offered, certificate not checked (opportunistic) */
    TLS_LEVEL_ENCRYPT, /* STARTTLS required, certificate not checked */
    TLS_LEVEL_VERIFY,  /* STARTTLS required, certificate checked against the host name */
    TLS_LEVEL_WRAPPER, /* TLS from the first byte (port 465), certificate checked */
};

/* Where mail goes next: "[host]:port" (that host) or "host:port" (its MX records). */
struct conf_nexthop {
    char host[256]; /* a host name or a numeric address (IPv4 or IPv6), lowercased */
    unsigned port;
    bool mx; /* look up MX records of host (written without brackets) */
};

struct conf_relay {
    bool
        defer; /* defer = yes: outbound mail stays queued, nothing leaves (local still delivered) */
    bool has_relayhost; /* relayhost = : all outbound mail goes there */
    struct conf_nexthop relayhost;
    enum conf_tls_level tls;           /* tls (default may): to MX hosts and routes */
    enum conf_tls_level relayhost_tls; /* relayhost_tls (default may) */
    char auth_file[PATH_MAX];          /* relayhost_auth: "USER PASSWORD" file, 0600 */
    char user[256], password[256];     /* read from it */
    char ca_file[PATH_MAX];            /* ca_file: for verify; "" = the system's store */
    char resolver[PATH_MAX];           /* resolver: an unbound.conf; "" = /etc/resolv.conf */
    size_t smtp_port;                  /* smtp_port (default 25): MX hosts' port */
    int retry_min, retry_max;          /* first retry after, longest wait (5m, 1h) */
    int max_lifetime;                  /* bounce after (5d) */
    int delay_warning;                 /* tell the sender after (4h; 0 = never) */
    size_t concurrency;                /* connections per destination (10) */
    size_t connections;                /* outbound connections in all (100) */
    struct conf_route {                /* route = DOMAIN NEXTHOP: this domain goes there */
        char domain[256];
        struct conf_nexthop hop;
    } routes[CONF_MAX_ROUTES];
    size_t nroutes;
    char domains[CONF_MAX_RELAY_DOMAINS][256]; /* domains: mail held and relayed for them */
    size_t ndomains;
};

#define CONF_RELAY_DEFAULTS                                                                        \
    {                                                                                              \
        .tls = TLS_LEVEL_MAY, .relayhost_tls = TLS_LEVEL_MAY, .smtp_port = 25, .retry_min = 300,   \
        .retry_max = 3600, .max_lifetime = 5 * 86400, .delay_warning = 4 * 3600,                   \
        .concurrency = 10, .connections = 100,                                                     \
    }

struct conf {
    int refs;
    char path[PATH_MAX];       /* the file this came from, made absolute */
    char sha256[65];           /* hex SHA-256 of the bytes of it that were parsed */
    char hostname[256];        /* [server] hostname; default: gethostname() */
    char data_dir[PATH_MAX];   /* [server] data_dir, made absolute (relative to the config file) */
    char user[64];             /* [server] user: ternd drops to it when started as root */
    char users_file[PATH_MAX]; /* [server] users, default DATA_DIR/users */
    char aliases_file[PATH_MAX];   /* [server] aliases, default DATA_DIR/aliases */
    char mailboxes_file[PATH_MAX]; /* [server] mailboxes, default DATA_DIR/mailboxes (optional) */
    int workers;                   /* [server] workers: worker threads for fsync etc. (default 4) */

    struct conf_listener listeners[CONF_MAX_LISTENERS]; /* [listen] smtp/submission/smtps */
    size_t nlisteners;

    /* [limits] */
    uint64_t message_size;     /* message_size (default 25M): SIZE advertised, 552 over it */
    size_t recipients;         /* recipients (default 100): 452 past it */
    size_t connections;        /* connections (default 1000): total, 421 past it */
    size_t connections_per_ip; /* connections_per_ip (default 50): 421 past it */
    size_t bad_commands;       /* bad_commands (default 20): 421 and close past it */
    size_t junk_commands;      /* junk_commands (default 1000): NOOP/RSET/VRFY/HELP flood */
    int command_timeout;       /* command_timeout seconds (default 300, RFC 5321 4.5.3.2.7) */
    int data_timeout;          /* data_timeout seconds (default 600): between data chunks */
    int shutdown_timeout;      /* shutdown_timeout seconds (default 30): drain on SIGTERM */
    uint64_t min_free_space;   /* min_free_space (default 100M): 452 below it */

    /* [policy] */
    struct conf_cidr deny[CONF_MAX_DENY]; /* deny: clients refused with 554 */
    size_t ndeny;
    enum conf_disclose vrfy; /* vrfy = none|authenticated|all (default authenticated) */
    enum conf_disclose expn; /* expn = none|authenticated|all (default authenticated) */
    bool check_from;         /* check_from = yes: authenticated users' From: must be theirs */
    bool sender_header;      /* sender_header = yes (default): mail a member sends as a shared
                              * mailbox gets Sender: <member> */

    /* [tls] */
    char tls_cert[PATH_MAX]; /* cert: PEM chain, absolute; "" = no TLS */
    char tls_key[PATH_MAX];  /* key: PEM private key, absolute */
    struct conf_sni {        /* sni = HOST CERT KEY: another certificate for one host name */
        char host[256];      /* lowercased; "*.example.org" matches one label */
        char cert[PATH_MAX];
        char key[PATH_MAX];
    } sni[CONF_MAX_SNI];
    size_t nsni;

    /* [auth] */
    bool auth_plaintext_loopback; /* plaintext = loopback: AUTH in clear from 127/8 and ::1 */
    size_t auth_max_failures;     /* max_failures (default 5) per IP and per user in window */
    int auth_window;              /* window seconds (default 600) */

    /* [audit] */
    bool audit_enabled;      /* enabled = yes (default): ternd keeps DATA_DIR/audit/audit.log */
    bool audit_syslog;       /* syslog = yes: each record is copied to syslog (LOG_MAIL) too */
    int audit_epoch;         /* epoch seconds (default 900): the key evolves this often */
    uint64_t audit_max_size; /* max_size (default 256M; 0 = never): rotate past this size */

    struct conf_relay relay; /* [relay] */

    /* [terminal]: SEND/SOML/SAML to a user's `tern watch` sessions (RFC 821 3.4) */
    enum conf_terminal_allow terminal_allow; /* allow = all (default)|authenticated|none */
    uint64_t terminal_max_size;              /* max_size (default 64K, at most 1M) */

    struct tables *tables; /* domains + users + aliases, owned */
};

/* Reads and validates FILE and the users/aliases files it names. On success returns a config
 * with refs=1. On failure returns NULL and writes every error, one per line, each as
 * "FILE:LINE: what is wrong; what to do", into err (truncated at errlen). */
struct conf *conf_load(const char *file, char *err, size_t errlen);

/* conf_load that also gives the hex SHA-256 of the bytes it read (sha256, 65 bytes, may be
 * NULL), whether or not they made a valid configuration: the audit log's config_sha256. */
struct conf *conf_load_sha256(const char *file, char sha256[65], char *err, size_t errlen);

struct conf *conf_ref(struct conf *c);
void conf_unref(struct conf *c);

/* The route for domain (lowercased): a route = entry, else the relayhost, else NULL (MX). */
const struct conf_nexthop *conf_relay_route(const struct conf *c, const char *domain);
/* Is domain (lowercased) one of [relay] domains? */
bool conf_relay_domain(const struct conf *c, const char *domain);

/* Does the address (AF_INET/AF_INET6 bytes) fall in the deny list? */
bool conf_denied(const struct conf *c, int family, const void *addr);

/* The configuration file to use when none is named: $TERN_CONF, else /etc/tern/tern.conf if it
 * exists, else ./var/tern.conf (what `make run` creates). Defined in conf/path.c. */
const char *conf_default_path(void);

/* [server] data_dir of FILE ("." when unset) joined to FILE's folder, into out, reading nothing
 * else and checking nothing else (path.c). 0, or -1 with a reason. */
int conf_peek_data_dir(const char *file, char *out, size_t outlen, char *err, size_t errlen);

/* Parses "25M", "1048576", "4k", "1G" into bytes; -1 on error. */
int conf_parse_size(const char *s, uint64_t *out);

/* Syntax checks shared by the loader and `tern init`: an RFC 5321 domain name of LDH labels
 * (no trailing dot, no address literal), and a dot-atom local part of at most 64 octets. */
bool conf_valid_domain(const char *s);
bool conf_valid_local(const char *s);
/* Lowercases the ASCII letters of s in place (addresses and domains compare without case; other
 * bytes, UTF-8 included, are left alone). Shared by the loader, the file editors and tern. */
void conf_lowercase(char *s);

/* Errors collected while loading, each "FILE:LINE: what is wrong; what to do\n", kept in a
 * caller's buffer (cap 0: only counted). */
struct conf_errors {
    char *buf;
    size_t cap, len;
    int n;
    bool truncated;
};
void conf_error(struct conf_errors *e, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Read the users file (passwd-file format) and the aliases file into t, whose domains are
 * already added; each error goes to e with its file:line. Return the number of errors.
 * conf_load_aliases sets *nlines to the file's line count (for errors about what is missing). */
int conf_load_users(struct tables *t, const char *path, struct conf_errors *e);
int conf_load_aliases(struct tables *t, const char *path, struct conf_errors *e, int *nlines);
/* The shared mailboxes file: `team@domain: member, member [quota=SIZE]`, like aliases. */
int conf_load_mailboxes(struct tables *t, const char *path, struct conf_errors *e, int *nlines);

#endif

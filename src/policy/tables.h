/* The in-memory address tables: local domains, users (from the passwd-file `users`), aliases
 * (from `aliases`) and shared mailboxes (from `mailboxes`), and the lookups the SMTP core makes
 * against them: resolve a recipient to mailboxes, answer VRFY and EXPN. Pure: no I/O here; conf/
 * fills the tables from files. */
#ifndef TERN_POLICY_TABLES_H
#define TERN_POLICY_TABLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TABLES_ADDR_MAX 320       /* local@domain, lowercased */
#define TABLES_MAX_EXPANSION 1000 /* mailboxes one recipient may expand to */
#define TABLES_MAX_DEPTH 10       /* alias nesting */
#define TABLES_TURN_MAX 16        /* domains in one user's turn= list */
#define TABLES_TURN_LEN 512       /* a turn= list as text, with its NUL */

struct tables;

/* A local user, from one line of `users` (Dovecot passwd-file format):
 *   user@domain:{SCHEME}hash:uid:gid:Full Name:home:shell:extra fields
 * Extra fields are space-separated; `moved=new@addr` marks a user who has left (RCPT 551),
 * `forward=addr` one whose mail goes elsewhere (RCPT 251; no mailbox here), `turn=dom1,dom2`
 * the relay domains whose queued mail the user may take with TURN (RFC 2645). */
struct tables_user {
    char addr[TABLES_ADDR_MAX + 1];    /* lowercased user@domain */
    char password[256];                /* "{CRYPT}$y$..." as stored; empty when none */
    char name[128];                    /* gecos: full name, may be empty */
    char moved[TABLES_ADDR_MAX + 1];   /* non-empty when marked moved */
    char forward[TABLES_ADDR_MAX + 1]; /* non-empty when forwarded: an address in another
                                          domain (lowercased, the local part as written),
                                          never together with moved */
    char turn[TABLES_TURN_LEN];        /* "dom1,dom2": lowercased, comma-separated, at most
                                          TABLES_TURN_MAX; "" when none */
    bool locked;                       /* extra field `nologin` (Dovecot's): may not authenticate */
    bool admin;        /* extra field `admin`: may authorize as another user (AUTH PLAIN authzid) */
    bool shared;       /* a shared mailbox (from `mailboxes`): no password, never logs in */
    uint64_t quota;    /* bytes; 0 = none. Users: extra field userdb_quota_rule=*:storage=SIZE
                        * (Dovecot's); shared mailboxes: quota=SIZE in `mailboxes` */
    bool has_uid;      /* the uid field is a number: */
    unsigned long uid; /* the Unix user who may `tern watch` this user without its password */
};

struct tables *tables_new(void);
void tables_free(struct tables *t);

/* Building (conf/ uses these). Each returns 0, or -1 with a reason in err. */
int tables_add_domain(struct tables *t, const char *domain, char *err, size_t errlen);
int tables_add_user(struct tables *t, const struct tables_user *u, char *err, size_t errlen);
/* name is "local@domain" or a bare "local" (applies in every local domain); members are
 * addresses or bare local parts (taken in the alias's domain, or the first domain). */
int tables_add_alias(struct tables *t, const char *name, const char *const *members,
                     size_t nmembers, char *err, size_t errlen);
/* Like tables_add_alias; origin (e.g. "aliases:12", copied) starts every reason tables_finish
 * gives about this alias, so conf/ can point the admin at the line. NULL: no prefix. */
int tables_add_alias_at(struct tables *t, const char *origin, const char *name,
                        const char *const *members, size_t nmembers, char *err, size_t errlen);
/* A shared mailbox addr (local@domain, a local domain, not a user or alias) whose members are
 * users or aliases (addresses, or bare local parts taken in addr's domain), with a quota in bytes
 * (0: none). It is stored like a user (shared = true, locked, no password): it resolves to its
 * own Maildir, VRFY finds it, aliases may name it. origin as in tables_add_alias_at. */
int tables_add_shared(struct tables *t, const char *origin, const char *addr,
                      const char *const *members, size_t nmembers, uint64_t quota, char *err,
                      size_t errlen);

/* After all adds: checks every alias member resolves to a local user (directly or through other
 * aliases, no cycles) and that postmaster reaches someone in every domain. -1 with reasons. */
int tables_finish(struct tables *t, char *err, size_t errlen);

bool tables_is_local_domain(const struct tables *t, const char *domain);
size_t tables_ndomains(const struct tables *t);
const char *tables_domain(const struct tables *t, size_t i); /* first one is the primary */
const struct tables_user *tables_user(const struct tables *t, const char *addr);
size_t tables_nusers(const struct tables *t);
const struct tables_user *tables_user_at(const struct tables *t, size_t i);
size_t tables_naliases(const struct tables *t); /* full and bare aliases */

enum tables_status {
    TABLES_OK,       /* deliverable: mailboxes filled */
    TABLES_UNKNOWN,  /* local domain, no such user or alias: 550 5.1.1 */
    TABLES_MOVED,    /* user marked moved: 551 5.1.6, forward holds the new address */
    TABLES_FOREIGN,  /* not a local domain: relayed only by policy (relay domains, AUTH) */
    TABLES_TOO_MANY, /* expands past TABLES_MAX_EXPANSION */
    TABLES_FORWARD,  /* every user reached is marked forward= (251 2.1.5): forward holds the
                        first one's address; mailboxes as for TABLES_OK */
};

/* Resolves local@domain (the path's unquoted local part; domain as given, any case). A bare
 * "postmaster" (domain NULL or "") resolves in the primary domain. Fills mailboxes with the
 * distinct user addresses (lowercased user@domain) it reaches, at most max. A user marked
 * forward= is among them but has no mailbox here: whoever delivers sends its mail to
 * tables_user(t, box)->forward instead (users marked moved are left out). */
enum tables_status tables_resolve(const struct tables *t, const char *local, const char *domain,
                                  char (*mailboxes)[TABLES_ADDR_MAX + 1], size_t max,
                                  size_t *nmailboxes, char *forward, size_t forwardlen);

/* Splits u's turn= list into out: up to max domains, pointing into buf (buflen bytes, at least
 * TABLES_TURN_LEN), which the caller keeps while it uses them. Returns the count. */
size_t tables_turn_domains(const struct tables_user *u, char *buf, size_t buflen, const char **out,
                           size_t max);

/* VRFY: finds users by full address, by local part in any local domain, or by a substring of the
 * full name (case-insensitive). Writes up to max matches. Returns the number of matches found
 * (may exceed max). */
size_t tables_vrfy(const struct tables *t, const char *query, const struct tables_user **out,
                   size_t max);

/* EXPN: the direct members of an alias (name as given to VRFY: full address or bare local part).
 * Returns -1 if not an alias, else the member count (may exceed max); members written as given
 * in the aliases file, normalised to user@domain. */
long tables_expn(const struct tables *t, const char *name, const char **out, size_t max);
/* Does addr (local@domain, any case) name an alias, full or bare? A domain's catch-all does not
 * count: it only takes addresses nothing else names, so a new user or shared mailbox may take
 * one. A user's address is not an alias. */
bool tables_names_alias(const struct tables *t, const char *addr);

/* Shared mailboxes, after tables_finish. addr and user in any case. */
size_t tables_nshared(const struct tables *t);
const char *tables_shared_at(const struct tables *t, size_t i); /* lowercased local@domain */
bool tables_is_shared(const struct tables *t, const char *addr);
/* Is user (a user's address) a member of shared mailbox addr, directly or through an alias? */
bool tables_is_member(const struct tables *t, const char *addr, const char *user);
/* The direct members as written in `mailboxes`, normalised to lowercased local@domain: -1 if
 * addr is not a shared mailbox, else the count (may exceed max). */
long tables_shared_members(const struct tables *t, const char *addr, const char **out, size_t max);
/* The users who are members (aliases expanded, moved users left out), sorted: -1 if addr is not
 * a shared mailbox, else the count (may exceed max). */
long tables_shared_users(const struct tables *t, const char *addr, const char **out, size_t max);

#endif

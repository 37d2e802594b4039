/* The two address files tern.conf names: `users` (Dovecot passwd-file, so one file serves tern
 * and Dovecot) and `aliases` (`name: member, member`). Reads them line by line into the policy
 * tables, checking each line's syntax here so every error carries FILE:LINE; what the entries
 * mean together (members that exist, no loops, postmaster) is tables_finish's job. */
#include "conf/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\f' || ch == '\v';
}

/* Strips the line end; returns the first non-blank character. */
static char *line_trim(char *s, ssize_t n, bool *indented)
{
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || is_space(s[n - 1])))
        s[--n] = '\0';
    *indented = is_space(*s);
    while (is_space(*s))
        s++;
    return s;
}

/* Checks user@domain (or a bare local part when bare_ok); says why not in why. */
static bool addr_check(const char *a, bool bare_ok, const char **why)
{
    char local[TABLES_ADDR_MAX + 1];
    const char *at = strchr(a, '@');
    if (strlen(a) > TABLES_ADDR_MAX) {
        *why = "it is longer than 320 characters";
        return false;
    }
    if (!at) {
        *why = "it has no @domain";
        if (!bare_ok)
            return false;
        *why = "the local part may hold letters, digits, dots (not first, last or doubled) "
               "and !#$%&'*+-/=?^_`{|}~, at most 64";
        return conf_valid_local(a);
    }
    if (strchr(at + 1, '@')) {
        *why = "it has more than one @";
        return false;
    }
    memcpy(local, a, (size_t)(at - a));
    local[at - a] = '\0';
    if (!conf_valid_local(local)) {
        *why = "the local part may hold letters, digits, dots (not first, last or doubled) and "
               "!#$%&'*+-/=?^_`{|}~, at most 64";
        return false;
    }
    if (!conf_valid_domain(at + 1)) {
        *why = "the domain is not a valid name like example.org";
        return false;
    }
    return true;
}

/* turn=dom1,dom2: each a domain name, copied into out (n bytes); false (error given) if not.
 * Whether they are relay domains is decided at TURN time, when the configuration may differ. */
static bool turn_check(const char *path, int line, const char *user, const char *list, char *out,
                       size_t n, struct conf_errors *e)
{
    if (strlen(list) >= n) {
        conf_error(e, path, line, "turn= of %s is longer than %zu characters; list fewer domains",
                   user, n - 1);
        return false;
    }
    char copy[TABLES_TURN_LEN];
    strcpy(copy, list);
    char *save = NULL, *d = NULL;
    bool any = false;
    for (char *p = copy;; p = NULL) {
        d = strtok_r(p, ",", &save);
        if (!d)
            break;
        any = true;
        if (!conf_valid_domain(d)) {
            conf_error(e, path, line,
                       "turn=%s for %s: '%s' is not a domain name like example.org; write "
                       "turn=domain1,domain2",
                       list, user, d);
            return false;
        }
    }
    /* ",a" "a,,b" "a,": strtok_r would skip the empty names silently */
    if (!any || list[0] == ',' || list[strlen(list) - 1] == ',' || strstr(list, ",,")) {
        conf_error(e, path, line,
                   "turn=%s for %s has an empty domain name; write turn=domain1,domain2", list,
                   user);
        return false;
    }
    strcpy(out, list);
    return true;
}

/* One passwd-file line: user@domain:password:uid:gid:gecos:home:shell:extra fields. */
static void users_line(struct tables *t, const char *path, int line, char *s, struct conf_errors *e)
{
    enum { F_USER, F_PASS, F_UID, F_GID, F_GECOS, F_HOME, F_SHELL, F_EXTRA, NF };
    char *f[NF] = {0};
    size_t nf = 0;
    f[nf++] = s;
    for (char *p = s; nf < NF && (p = strchr(p, ':')); p++) {
        *p = '\0';
        f[nf++] = p + 1;
    }
    if (nf < 2) {
        conf_error(e, path, line,
                   "'%s' has no password field; write user@domain:{CRYPT}hash (the hash may be "
                   "empty: user@domain:)",
                   s);
        return;
    }
    struct tables_user u;
    memset(&u, 0, sizeof(u));
    const char *why;
    if (!addr_check(f[F_USER], false, &why)) {
        conf_error(e, path, line, "user '%s' is not an address: %s; write it as user@domain",
                   f[F_USER], why);
        return;
    }
    strcpy(u.addr, f[F_USER]);
    const char *pw = f[F_PASS];
    if (*pw) {
        /* the two schemes passwd.c verifies: crypt(3) hashes and SCRAM stored keys */
        bool hashed = (strncasecmp(pw, "{CRYPT}", 7) == 0 && pw[7]) ||
                      (strncasecmp(pw, "{SCRAM-SHA-256}", 15) == 0 && pw[15]);
        for (const char *p = pw; hashed && *p; p++)
            hashed = !is_space(*p);
        if (!hashed) {
            conf_error(e, path, line,
                       "the password of %s is not a {CRYPT} or {SCRAM-SHA-256} hash; store only "
                       "hashes: set it with `tern user passwd %s`",
                       u.addr, u.addr);
            return;
        }
        if (strlen(pw) >= sizeof(u.password)) {
            conf_error(e, path, line,
                       "the password hash of %s is longer than %zu characters; "
                       "use yescrypt or sha512-crypt",
                       u.addr, sizeof(u.password) - 1);
            return;
        }
        strcpy(u.password, pw);
    }
    if (nf > F_UID && f[F_UID][0]) {
        /* Dovecot also takes a system user's name here; tern maps only numbers (a name is
         * left to Dovecot, and gives `tern watch` no uid mapping) */
        const char *p = f[F_UID];
        unsigned long long v = 0;
        while (*p >= '0' && *p <= '9' && v <= 0xffffffffULL)
            v = v * 10 + (unsigned long long)(*p++ - '0');
        if (!*p && v <= 0xfffffffeULL) { /* (uid_t)-1 is nobody's */
            u.has_uid = true;
            u.uid = (unsigned long)v;
        }
    }
    if (nf > F_GECOS) {
        if (strlen(f[F_GECOS]) >= sizeof(u.name)) {
            conf_error(e, path, line,
                       "the full name of %s is longer than %zu characters; "
                       "shorten it",
                       u.addr, sizeof(u.name) - 1);
            return;
        }
        strcpy(u.name, f[F_GECOS]);
    }
    if (nf > F_EXTRA) {
        char *save = NULL;
        for (char *tok = strtok_r(f[F_EXTRA], " \t", &save); tok;
             tok = strtok_r(NULL, " \t", &save)) {
            if (strcasecmp(tok, "nologin") == 0 || strncasecmp(tok, "nologin=", 8) == 0) {
                u.locked = true; /* Dovecot's field: `tern user lock` writes it */
                continue;
            }
            if (strcasecmp(tok, "admin") == 0 || strcasecmp(tok, "admin=yes") == 0) {
                u.admin = true;
                continue;
            }
            if (strncasecmp(tok, "userdb_quota_rule=*:storage=", 28) == 0) {
                /* Dovecot's quota rule, so that both servers enforce one limit */
                if (conf_parse_size(tok + 28, &u.quota) < 0) {
                    conf_error(e, path, line,
                               "%s of %s is not a size; write "
                               "userdb_quota_rule=*:storage=500M (k, M or G)",
                               tok, u.addr);
                    return;
                }
                continue;
            }
            if (strncasecmp(tok, "forward=", 8) == 0) {
                if (!addr_check(tok + 8, false, &why)) {
                    conf_error(e, path, line,
                               "forward=%s for %s is not an address: %s; write "
                               "forward=user@domain",
                               tok + 8, u.addr, why);
                    return;
                }
                strcpy(u.forward, tok + 8);
                continue;
            }
            if (strncasecmp(tok, "turn=", 5) == 0) {
                if (!turn_check(path, line, u.addr, tok + 5, u.turn, sizeof(u.turn), e))
                    return;
                continue;
            }
            if (strncasecmp(tok, "moved=", 6) != 0)
                continue; /* Dovecot's own extra fields: not ours to judge */
            if (!addr_check(tok + 6, false, &why)) {
                conf_error(e, path, line,
                           "moved=%s for %s is not an address: %s; write moved=user@domain",
                           tok + 6, u.addr, why);
                return;
            }
            strcpy(u.moved, tok + 6);
        }
    }
    char reason[512];
    if (tables_add_user(t, &u, reason, sizeof(reason)) < 0)
        conf_error(e, path, line, "%s", reason);
}

/* Splits "name: member, member # comment" at its colon; NULL (error given) when there is none.
 * what is "alias" or "shared mailbox", for the message. */
static char *split_entry(const char *path, int line, char *s, bool indented, const char *what,
                         struct conf_errors *e)
{
    for (char *p = s + 1; *p; p++) /* a comment after the members */
        if (*p == '#' && is_space(p[-1])) {
            *p = '\0';
            break;
        }
    char *colon = strchr(s, ':');
    if (!colon) {
        conf_error(e, path, line, "'%s' is not %s %s; write name: member, member%s", s,
                   what[0] == 'a' ? "an" : "a", what,
                   indented ? " (all on one line: continuation lines are not supported)" : "");
        return NULL;
    }
    *colon = '\0';
    for (char *end = colon; end > s && is_space(end[-1]);)
        *--end = '\0';
    return colon + 1;
}

/* The members after the colon, checked one by one; a malloc'd array (free it) or NULL with
 * *bad set. A `quota=SIZE` word goes to *quota when quota is not NULL. */
static const char **entry_members(const char *path, int line, const char *name, char *list,
                                  const char *what, uint64_t *quota, size_t *n, bool *bad,
                                  struct conf_errors *e)
{
    const char **members = NULL;
    size_t cap = 0;
    const char *why;
    *n = 0;
    *bad = false;
    char *save = NULL;
    for (char *tok = strtok_r(list, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        if (quota && strncasecmp(tok, "quota=", 6) == 0) {
            if (conf_parse_size(tok + 6, quota) < 0) {
                conf_error(e, path, line,
                           "%s %s: %s is not a size; write quota=500M (k, M or G), or "
                           "quota=0 for none",
                           what, name, tok);
                *bad = true;
            }
            continue;
        }
        if (tok[0] == '|' || tok[0] == '/' || tok[0] == ':' || tok[0] == '"') {
            conf_error(e, path, line,
                       "%s %s: member '%s': pipes, files, :include: and quoted names are not "
                       "supported; list local users",
                       what, name, tok);
            *bad = true;
            continue;
        }
        if (!addr_check(tok, true, &why)) {
            conf_error(e, path, line,
                       "%s %s: member '%s' is not valid: %s; write user or "
                       "user@domain",
                       what, name, tok, why);
            *bad = true;
            continue;
        }
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            const char **nm = realloc(members, ncap * sizeof(*nm));
            if (!nm) {
                conf_error(e, path, line, "out of memory; free some memory and try again");
                free(members);
                *bad = true;
                return NULL;
            }
            members = nm;
            cap = ncap;
        }
        members[(*n)++] = tok;
    }
    if (!*bad && *n == 0) {
        conf_error(e, path, line, "%s %s has no members; list at least one user after the ':'",
                   what, name);
        *bad = true;
    }
    return members;
}

/* One aliases line: name: member, member ... */
static void aliases_line(struct tables *t, const char *path, int line, char *s, bool indented,
                         struct conf_errors *e)
{
    char *list = split_entry(path, line, s, indented, "alias", e);
    if (!list)
        return;
    char *name = s;
    const char *why;
    bool catchall = name[0] == '@';
    if (catchall ? !conf_valid_domain(name + 1) : !addr_check(name, true, &why)) {
        conf_error(e, path, line,
                   "alias name '%s' is not valid: %s; write local, local@domain or @domain", name,
                   catchall ? "the domain is not a valid name like example.org" : why);
        return;
    }
    size_t nmembers;
    bool bad;
    const char **members = entry_members(path, line, name, list, "alias", NULL, &nmembers, &bad, e);
    if (!bad) {
        char origin[PATH_MAX + 16];
        char reason[1024];
        snprintf(origin, sizeof(origin), "%s:%d", path, line);
        if (tables_add_alias_at(t, origin, name, members, nmembers, reason, sizeof(reason)) < 0)
            conf_error(e, path, line, "%s", reason);
    }
    free(members);
}

/* One mailboxes line: team@domain: member, member [quota=SIZE] */
static void mailboxes_line(struct tables *t, const char *path, int line, char *s, bool indented,
                           struct conf_errors *e)
{
    char *list = split_entry(path, line, s, indented, "shared mailbox", e);
    if (!list)
        return;
    const char *why;
    if (!addr_check(s, false, &why)) {
        conf_error(e, path, line, "shared mailbox '%s' is not valid: %s; write team@domain", s,
                   why);
        return;
    }
    size_t nmembers;
    bool bad;
    uint64_t quota = 0;
    const char **members =
        entry_members(path, line, s, list, "shared mailbox", &quota, &nmembers, &bad, e);
    if (!bad) {
        char origin[PATH_MAX + 16];
        char reason[1024];
        snprintf(origin, sizeof(origin), "%s:%d", path, line);
        if (tables_add_shared(t, origin, s, members, nmembers, quota, reason, sizeof(reason)) < 0)
            conf_error(e, path, line, "%s", reason);
    }
    free(members);
}

/* One meaningful line of a users or aliases file: comments and blank lines are skipped. */
typedef void (*line_fn)(struct tables *t, const char *path, int line, char *s, bool indented,
                        struct conf_errors *e);

/* Reads a line-based table file, handing each meaningful line to fn. Sets *nlines to the file's
 * line count; returns the number of errors added. */
static int read_table_file(struct tables *t, const char *path, const char *what, line_fn fn,
                           struct conf_errors *e, int *nlines)
{
    int before = e->n;
    *nlines = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        conf_error(e, path, 0,
                   "cannot read the %s file: %s; check it exists and that this user may read it",
                   what, strerror(errno));
        return e->n - before;
    }
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    int line = 0;
    while ((n = getline(&buf, &cap, f)) >= 0) {
        line++;
        bool indented;
        char *s = line_trim(buf, n, &indented);
        if (*s && *s != '#')
            fn(t, path, line, s, indented, e);
    }
    if (ferror(f))
        conf_error(e, path, line + 1, "read error: %s; check the file", strerror(errno));
    *nlines = line;
    free(buf);
    fclose(f);
    return e->n - before;
}

/* users_line without the indentation flag, which passwd-files do not use. */
static void users_line_any(struct tables *t, const char *path, int line, char *s, bool indented,
                           struct conf_errors *e)
{
    (void)indented;
    users_line(t, path, line, s, e);
}

int conf_load_users(struct tables *t, const char *path, struct conf_errors *e)
{
    int nlines;
    return read_table_file(t, path, "users", users_line_any, e, &nlines);
}

int conf_load_aliases(struct tables *t, const char *path, struct conf_errors *e, int *nlines)
{
    return read_table_file(t, path, "aliases", aliases_line, e, nlines);
}

int conf_load_mailboxes(struct tables *t, const char *path, struct conf_errors *e, int *nlines)
{
    return read_table_file(t, path, "mailboxes", mailboxes_line, e, nlines);
}

/* tern.conf: reads the INI file with inih through our own line reader, which counts lines (inih
 * gives its handler none) and checks each line's shape first, so every error, not only the
 * first, comes out as FILE:LINE. Applies defaults, resolves paths against the file's folder,
 * then has tables_load.c read the users and aliases files. Also owns the reference count and
 * the deny-list match. */
#include "conf/config.h"
#include "conf/values.h"
#include "conf/loader.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/evp.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const section_names[SEC_COUNT] = {"server", "listen", "limits", "policy",  "tls",
                                                     "auth",   "audit",  "relay",  "terminal"};

#define F(field) offsetof(struct conf, field)

const struct key conf_keys[CONF_NKEYS] = {
    {SEC_SERVER, "hostname", K_HOSTNAME, false, 0, 0, 0, 0},
    {SEC_SERVER, "data_dir", K_DATA_DIR, false, 0, 0, 0, 0},
    {SEC_SERVER, "user", K_USER, false, 0, 0, 0, 0},
    {SEC_SERVER, "users", K_USERS, false, 0, 0, 0, 0},
    {SEC_SERVER, "aliases", K_ALIASES, false, 0, 0, 0, 0},
    {SEC_SERVER, "mailboxes", K_MAILBOXES, false, 0, 0, 0, 0},
    {SEC_SERVER, "domains", K_DOMAINS, false, 0, 0, 0, 0},
    {SEC_SERVER, "workers", K_WORKERS, false, F(workers), 1, 64, 0},
    {SEC_LISTEN, "smtp", K_LISTEN, true, 0, 0, 0, LISTEN_SMTP},
    {SEC_LISTEN, "submission", K_LISTEN, true, 0, 0, 0, LISTEN_SUBMISSION},
    {SEC_LISTEN, "smtps", K_LISTEN, true, 0, 0, 0, LISTEN_SMTPS},
    {SEC_LIMITS, "message_size", K_SIZE, false, F(message_size), 1024, 0, 0},
    {SEC_LIMITS, "recipients", K_COUNT, false, F(recipients), 1, 1000000, 0},
    {SEC_LIMITS, "connections", K_COUNT, false, F(connections), 1, 1000000, 0},
    {SEC_LIMITS, "connections_per_ip", K_COUNT, false, F(connections_per_ip), 1, 1000000, 0},
    {SEC_LIMITS, "bad_commands", K_COUNT, false, F(bad_commands), 1, 1000000, 0},
    {SEC_LIMITS, "junk_commands", K_COUNT, false, F(junk_commands), 1, 1000000, 0},
    {SEC_LIMITS, "command_timeout", K_SECONDS, false, F(command_timeout), 1, 86400, 0},
    {SEC_LIMITS, "data_timeout", K_SECONDS, false, F(data_timeout), 1, 86400, 0},
    {SEC_LIMITS, "shutdown_timeout", K_SECONDS, false, F(shutdown_timeout), 0, 86400, 0},
    {SEC_LIMITS, "min_free_space", K_SIZE, false, F(min_free_space), 0, 0, 0},
    {SEC_POLICY, "deny", K_DENY, true, 0, 0, 0, 0},
    {SEC_POLICY, "vrfy", K_DISCLOSE, false, F(vrfy), 0, 0, 0},
    {SEC_POLICY, "expn", K_DISCLOSE, false, F(expn), 0, 0, 0},
    {SEC_POLICY, "check_from", K_CHECK_FROM, false, 0, 0, 0, 0},
    {SEC_POLICY, "sender_header", K_BOOL, false, F(sender_header), 0, 0, 0},
    {SEC_TLS, "cert", K_TLS_CERT, false, 0, 0, 0, 0},
    {SEC_TLS, "key", K_TLS_KEY, false, 0, 0, 0, 0},
    {SEC_TLS, "sni", K_SNI, true, 0, 0, 0, 0},
    {SEC_AUTH, "plaintext", K_PLAINTEXT, false, 0, 0, 0, 0},
    {SEC_AUTH, "max_failures", K_COUNT, false, F(auth_max_failures), 1, 1000000, 0},
    {SEC_AUTH, "window", K_SECONDS, false, F(auth_window), 1, 86400, 0},
    {SEC_AUDIT, "enabled", K_BOOL, false, F(audit_enabled), 0, 0, 0},
    {SEC_AUDIT, "syslog", K_BOOL, false, F(audit_syslog), 0, 0, 0},
    {SEC_AUDIT, "epoch", K_SECONDS, false, F(audit_epoch), 60, 86400, 0},
    {SEC_AUDIT, "max_size", K_SIZE, false, F(audit_max_size), 0, 0, 0},
    {SEC_RELAY, "defer", K_BOOL, false, F(relay.defer), 0, 0, 0},
    {SEC_RELAY, "relayhost", K_RELAY, false, 0, 0, 0, 0},
    {SEC_RELAY, "relayhost_auth", K_RELAY, false, 0, 0, 0, 0},
    {SEC_RELAY, "relayhost_tls", K_RELAY, false, 0, 0, 0, 0},
    {SEC_RELAY, "tls", K_RELAY, false, 0, 0, 0, 0},
    {SEC_RELAY, "ca_file", K_RELAY, false, 0, 0, 0, 0},
    {SEC_RELAY, "resolver", K_RELAY, false, 0, 0, 0, 0},
    {SEC_RELAY, "smtp_port", K_COUNT, false, F(relay.smtp_port), 1, 65535, 0},
    {SEC_RELAY, "domains", K_RELAY, false, 0, 0, 0, 0},
    {SEC_RELAY, "route", K_RELAY, true, 0, 0, 0, 0},
    {SEC_RELAY, "retry_min", K_SECONDS, false, F(relay.retry_min), 1, 86400 * 7, 0},
    {SEC_RELAY, "retry_max", K_SECONDS, false, F(relay.retry_max), 1, 86400 * 7, 0},
    {SEC_RELAY, "max_lifetime", K_SECONDS, false, F(relay.max_lifetime), 60, 86400 * 100, 0},
    {SEC_RELAY, "delay_warning", K_SECONDS, false, F(relay.delay_warning), 0, 86400 * 100, 0},
    {SEC_RELAY, "concurrency", K_COUNT, false, F(relay.concurrency), 1, 1000, 0},
    {SEC_RELAY, "connections", K_COUNT, false, F(relay.connections), 1, 10000, 0},
    {SEC_TERMINAL, "allow", K_TERMINAL_ALLOW, false, F(terminal_allow), 0, 0, 0},
    {SEC_TERMINAL, "max_size", K_SIZE, false, F(terminal_max_size), 1024, CONF_TERMINAL_MAX_SIZE,
     0},
};

_Static_assert(sizeof(conf_keys) / sizeof(conf_keys[0]) == CONF_NKEYS,
               "CONF_NKEYS in loader.h must count conf_keys");

void conf_error(struct conf_errors *e, const char *file, int line, const char *fmt, ...)
{
    e->n++;
    if (e->truncated || e->cap == 0)
        return;
    static const char more[] = "... more errors not shown\n";
    char msg[2048];
    int n = line > 0 ? snprintf(msg, sizeof(msg), "%s:%d: ", file, line)
                     : snprintf(msg, sizeof(msg), "%s: ", file);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + len, sizeof(msg) - len, fmt, ap);
    va_end(ap);
    len = strlen(msg);
    if (len + 2 > sizeof(msg))
        len = sizeof(msg) - 2;
    msg[len++] = '\n';
    msg[len] = '\0';
    /* Keep room for the note that says the list was cut. */
    if (e->len + len + sizeof(more) > e->cap) {
        e->truncated = true;
        if (e->len + sizeof(more) <= e->cap) {
            memcpy(e->buf + e->len, more, sizeof(more));
            e->len += sizeof(more) - 1;
        }
        return;
    }
    memcpy(e->buf + e->len, msg, len + 1);
    e->len += len;
}

#define lerr conf_lerr

void conf_lerr(struct loader *l, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    conf_error(l->e, l->file, l->line, "%s", msg);
}

/* Where to point at something missing: its section's header, else the end of the file. */
int conf_where(const struct loader *l, enum section s)
{
    if (s < SEC_COUNT && l->section_line[s])
        return l->section_line[s];
    return l->line > 0 ? l->line : 1;
}

static enum section section_find(const char *name)
{
    for (int i = 0; i < SEC_COUNT; i++)
        if (strcasecmp(name, section_names[i]) == 0)
            return (enum section)i;
    return SEC_NONE;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\f' || ch == '\v';
}

/* Checks the shape of one line (already left-trimmed): blank, comment, [section] or key = value.
 * Says why a line is wrong, and whether inih should see it, not at all, or as a header of an
 * unknown section (so the keys under a broken header are skipped, not taken for the section
 * before). May trim what inih should not read: text after a header, a '#' comment. */
enum line_verdict { LINE_DROP, LINE_PASS, LINE_UNKNOWN_SECTION };

static enum line_verdict line_check(struct loader *l, char *s)
{
    if (*s == '\0' || *s == '#' || *s == ';')
        return LINE_PASS;
    if (*s == '[') {
        char *end = strchr(s, ']');
        if (!end) {
            lerr(l, "section header '%s' has no closing ']'; write it like [server]", s);
            return LINE_UNKNOWN_SECTION;
        }
        char *rest = end + 1;
        while (is_space(*rest))
            rest++;
        *end = '\0';
        if (*rest && *rest != '#' && *rest != ';')
            lerr(l, "text after the section header; put only [%s] on this line", s + 1);
        enum section sec = section_find(s + 1);
        if (sec == SEC_NONE)
            lerr(l,
                 "unknown section [%s]; valid sections are [server], [listen], [limits] and "
                 "[policy]",
                 s + 1);
        else if (!l->section_line[sec])
            l->section_line[sec] = l->line;
        end[0] = ']';
        end[1] = '\0';
        return LINE_PASS;
    }
    /* A comment after a value starts with whitespace and ';' (inih drops those) or '#'. */
    for (char *p = s + 1; *p; p++)
        if (*p == '#' && is_space(p[-1])) {
            *p = '\0';
            break;
        }
    size_t eq = strcspn(s, "=:");
    if (s[eq] == '\0') {
        lerr(l, "'%s' is not a setting; write key = value, or start a comment with #", s);
        return LINE_DROP;
    }
    if (eq == 0) {
        lerr(l, "no key before '%c'; write key = value", s[0]);
        return LINE_DROP;
    }
    return LINE_PASS;
}

/* inih's fgets-style reader: one whole line at a time, counted and checked. A line inih must
 * not see (bad shape, too long) is handed over as an empty line so the counts stay equal. */
static char *conf_reader(char *str, int num, void *stream)
{
    struct loader *l = stream;
    ssize_t n = getline(&l->linebuf, &l->linecap, l->f);
    if (n < 0)
        return NULL;
    if (l->sha && EVP_DigestUpdate(l->sha, l->linebuf, (size_t)n) != 1) {
        EVP_MD_CTX_free(l->sha);
        l->sha = NULL;
    }
    l->line++;
    char *s = l->linebuf;
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    if (l->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3; /* a UTF-8 byte order mark */
    /* Dropping leading space also turns off inih's multi-line values, which would take an
     * indented line as more of the previous value. */
    while (is_space(*s))
        s++;
    str[0] = '\0';
    if (num < 3)
        return str;
    if (strlen(s) + 2 > (size_t)num) {
        lerr(l,
             "line is longer than %d characters; shorten it (deny and listeners may be split "
             "over several lines with the same key)",
             num - 3);
        return str;
    }
    switch (line_check(l, s)) {
    case LINE_DROP:
        break;
    case LINE_PASS:
        snprintf(str, (size_t)num, "%s\n", s);
        break;
    case LINE_UNKNOWN_SECTION:
        snprintf(str, (size_t)num, "[?]\n");
        break;
    }
    return str;
}

/* Calls fn on each item of a comma- and/or space-separated list; counts the items. */
static int list_each(struct loader *l, const char *value,
                     void (*fn)(struct loader *l, char *item, void *arg), void *arg)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", value);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        fn(l, tok, arg);
        n++;
    }
    return n;
}

static void domain_item(struct loader *l, char *d, void *arg)
{
    conf_lowercase(d);
    if (!conf_valid_domain(d)) {
        lerr(l,
             "'%s' is not a valid domain name; use letters, digits, '-' and dots, like "
             "example.org",
             d);
        return;
    }
    for (size_t i = 0; i < l->ndomains; i++)
        if (strcmp(l->domains[i], d) == 0) {
            lerr(l, "domain %s is listed twice; remove one", d);
            return;
        }
    if (l->ndomains >= MAX_DOMAINS) {
        lerr(l, "more than %d domains; this server takes at most that many", MAX_DOMAINS);
        return;
    }
    l->domains[l->ndomains] = strdup(d);
    if (l->domains[l->ndomains])
        l->ndomains++;
}

static void set_listen(struct loader *l, const struct key *k, const char *v)
{
    struct conf *c = l->c;
    struct conf_listener li = {.kind = (enum conf_listener_kind)k->kind};
    unsigned char addr[16];
    int family;
    const char *why = NULL;
    if (conf_parse_hostport(v, &li, &family, addr, &why) < 0) {
        lerr(l, "%s = %s: not a listening address; %s", k->name, v, why);
        return;
    }
    for (size_t i = 0; i < c->nlisteners; i++) {
        const struct conf_listener *o = &c->listeners[i];
        bool same_family = (strchr(o->host, ':') != NULL) == (family == AF_INET6);
        if (o->port == li.port && same_family &&
            (strcmp(o->host, li.host) == 0 || conf_is_wildcard(o->host) ||
             conf_is_wildcard(li.host))) {
            lerr(l, "%s = %s: %s:%d is already used by another listener; give each its own port",
                 k->name, v, li.host, li.port);
            return;
        }
    }
    if (c->nlisteners >= CONF_MAX_LISTENERS) {
        lerr(l, "more than %d listeners; remove some", CONF_MAX_LISTENERS);
        return;
    }
    c->listeners[c->nlisteners++] = li;
}

static void deny_item(struct loader *l, char *item, void *arg)
{
    struct conf *c = l->c;
    struct conf_cidr cidr;
    if (conf_parse_cidr(item, &cidr) < 0) {
        lerr(l, "deny: '%s' is not an address or CIDR block; write 192.0.2.0/24 or 2001:db8::/32",
             item);
        return;
    }
    if (c->ndeny >= CONF_MAX_DENY) {
        lerr(l, "deny: more than %d entries; merge them into wider blocks", CONF_MAX_DENY);
        return;
    }
    c->deny[c->ndeny++] = cidr;
}

static void set_path(struct loader *l, const struct key *k, const char *v, char *dst)
{
    if (!*v)
        lerr(l, "%s is empty; give a path or remove the line to use the default", k->name);
    else if (strlen(v) >= PATH_MAX)
        lerr(l, "%s is longer than %d characters; use a shorter path", k->name, PATH_MAX - 1);
    else
        strcpy(dst, v);
}

static void set_value(struct loader *l, const struct key *k, const char *v)
{
    struct conf *c = l->c;
    char *field = (char *)c + k->off;
    unsigned long long n;
    uint64_t size;
    switch (k->type) {
    case K_HOSTNAME:
        if (!conf_valid_domain(v)) {
            lerr(l,
                 "hostname '%s' is not a valid domain name; write this server's name, like "
                 "mail.example.org",
                 v);
            return;
        }
        snprintf(c->hostname, sizeof(c->hostname), "%s", v);
        conf_lowercase(c->hostname);
        return;
    case K_DATA_DIR:
        set_path(l, k, v, l->data_dir);
        return;
    case K_USERS:
        set_path(l, k, v, l->users);
        return;
    case K_ALIASES:
        set_path(l, k, v, l->aliases);
        return;
    case K_MAILBOXES:
        set_path(l, k, v, l->mailboxes);
        return;
    case K_BOOL:
        if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "no") == 0)
            *(bool *)field = strcasecmp(v, "yes") == 0;
        else
            lerr(l, "%s = %s: write yes or no", k->name, v);
        return;
    case K_TLS_CERT:
        set_path(l, k, v, l->tls_cert);
        return;
    case K_TLS_KEY:
        set_path(l, k, v, l->tls_key);
        return;
    case K_CHECK_FROM:
        if (strcasecmp(v, "yes") == 0)
            c->check_from = true;
        else if (strcasecmp(v, "no") == 0)
            c->check_from = false;
        else
            lerr(l,
                 "check_from = %s: write yes (the From: header of mail from authenticated users "
                 "must be theirs too) or no",
                 v);
        return;
    case K_SNI: {
        char host[256], cert[PATH_MAX], key[PATH_MAX], extra;
        if (c->nsni >= CONF_MAX_SNI) {
            lerr(l, "sni: more than %d entries; use a certificate with several names",
                 CONF_MAX_SNI);
            return;
        }
        if (strlen(v) >= PATH_MAX ||
            sscanf(v, "%255s %4095s %4095s %c", host, cert, key, &extra) != 3) {
            lerr(l,
                 "sni = %s: write sni = HOSTNAME CERT KEY (three words, paths relative to "
                 "data_dir)",
                 v);
            return;
        }
        conf_lowercase(host);
        const char *name = strncmp(host, "*.", 2) == 0 ? host + 2 : host;
        if (!conf_valid_domain(name)) {
            lerr(l,
                 "sni = %s: '%s' is not a host name; write one like mail.example.net or "
                 "*.example.net",
                 v, host);
            return;
        }
        struct conf_sni *e = &c->sni[c->nsni];
        snprintf(e->host, sizeof e->host, "%s", host);
        snprintf(e->cert, sizeof e->cert, "%s", cert); /* made absolute in conf_finish_tls */
        snprintf(e->key, sizeof e->key, "%s", key);
        l->sni_line[c->nsni++] = l->line;
        return;
    }
    case K_PLAINTEXT:
        if (strcasecmp(v, "no") == 0)
            c->auth_plaintext_loopback = false;
        else if (strcasecmp(v, "loopback") == 0)
            c->auth_plaintext_loopback = true;
        else
            lerr(l,
                 "plaintext = %s: not a choice; write no (AUTH only under TLS) or loopback "
                 "(also in clear from 127.0.0.1 and ::1, for tests)",
                 v);
        return;
    case K_USER: {
        size_t len = strlen(v);
        bool ok = len > 0 && len < 32 && !(v[0] >= '0' && v[0] <= '9') && v[0] != '-';
        for (size_t i = 0; ok && i < len; i++)
            ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
                 (v[i] >= '0' && v[i] <= '9') || v[i] == '_' || v[i] == '-' || v[i] == '.';
        if (!ok) {
            lerr(l,
                 "user '%s' is not a Unix user name; write one like tern (letters, digits, "
                 "'_', '-', '.')",
                 v);
            return;
        }
        snprintf(c->user, sizeof(c->user), "%s", v);
        return;
    }
    case K_DOMAINS:
        if (list_each(l, v, domain_item, NULL) == 0)
            lerr(l, "domains is empty; list the mail domains, the primary first, like "
                    "domains = example.org, example.net");
        return;
    case K_LISTEN:
        set_listen(l, k, v);
        return;
    case K_DENY:
        /* "deny =" with nothing after it denies nobody, as an admin emptying the list means */
        list_each(l, v, deny_item, NULL);
        return;
    case K_DISCLOSE: {
        enum conf_disclose d;
        if (strcasecmp(v, "none") == 0)
            d = DISCLOSE_NONE;
        else if (strcasecmp(v, "authenticated") == 0)
            d = DISCLOSE_AUTHENTICATED;
        else if (strcasecmp(v, "all") == 0)
            d = DISCLOSE_ALL;
        else {
            lerr(l, "%s = %s: not a choice; write none, authenticated or all", k->name, v);
            return;
        }
        memcpy(field, &d, sizeof(d));
        return;
    }
    case K_WORKERS:
    case K_COUNT:
    case K_SECONDS:
        if ((k->type == K_SECONDS ? conf_parse_seconds(v, &n) : conf_parse_uint(v, &n)) < 0 ||
            n < (unsigned long long)k->min || n > (unsigned long long)k->max) {
            lerr(l, "%s = %s: not a number from %lld to %lld%s; fix the value", k->name, v, k->min,
                 k->max, k->type == K_SECONDS ? " seconds (suffixes s, m, h, d allowed)" : "");
            return;
        }
        if (k->type == K_COUNT) {
            size_t z = (size_t)n;
            memcpy(field, &z, sizeof(z));
        } else {
            int i = (int)n;
            memcpy(field, &i, sizeof(i));
        }
        return;
    case K_RELAY:
        conf_relay_set(l, k->name, v);
        return;
    case K_TERMINAL_ALLOW: {
        enum conf_terminal_allow a;
        if (strcasecmp(v, "all") == 0)
            a = TERMINAL_ALLOW_ALL;
        else if (strcasecmp(v, "authenticated") == 0)
            a = TERMINAL_ALLOW_AUTHENTICATED;
        else if (strcasecmp(v, "none") == 0)
            a = TERMINAL_ALLOW_NONE;
        else {
            lerr(l, "allow = %s: not a choice; write all, authenticated or none", v);
            return;
        }
        memcpy(field, &a, sizeof(a));
        return;
    }
    case K_SIZE:
        if (conf_parse_size(v, &size) < 0) {
            lerr(l,
                 "%s = %s: not a size; write a number of bytes with an optional K, M or G "
                 "suffix, like 25M",
                 k->name, v);
            return;
        }
        if (size < (uint64_t)k->min) {
            lerr(l, "%s = %s: less than the minimum of 1K; raise it", k->name, v);
            return;
        }
        if (k->max && size > (uint64_t)k->max) {
            lerr(l, "%s = %s: more than the maximum of %lldK; lower it", k->name, v, k->max >> 10);
            return;
        }
        memcpy(field, &size, sizeof(size));
        return;
    }
}

static int conf_handler(void *user, const char *section, const char *name, const char *value)
{
    struct loader *l = user;
    enum section sec = section_find(section);
    if (!*section) {
        lerr(l, "%s is outside any section; put it under its section, like [server]", name);
        return 1;
    }
    if (sec == SEC_NONE)
        return 1; /* the reader already reported the unknown section */
    for (size_t i = 0; i < CONF_NKEYS; i++) {
        const struct key *k = &conf_keys[i];
        if (k->sec != sec || strcasecmp(k->name, name) != 0)
            continue;
        if (l->key_line[i] && !k->repeat) {
            lerr(l, "%s is already set on line %d; keep only one", k->name, l->key_line[i]);
            return 1;
        }
        l->key_line[i] = l->line;
        set_value(l, k, value);
        return 1;
    }
    char valid[512] = "";
    size_t len = 0;
    for (size_t i = 0; i < CONF_NKEYS; i++)
        if (conf_keys[i].sec == sec && len < sizeof(valid))
            len += (size_t)snprintf(valid + len, sizeof(valid) - len, "%s%s", len ? ", " : "",
                                    conf_keys[i].name);
    lerr(l, "unknown key '%s' in [%s]; valid keys there are %s", name, section_names[sec], valid);
    return 1;
}

struct conf *conf_load(const char *file, char *err, size_t errlen)
{
    return conf_load_sha256(file, NULL, err, errlen);
}

/* The hex SHA-256 of what l read, into out (65 bytes), "" when it could not be made. */
static void sha256_hex(struct loader *l, char *out)
{
    unsigned char md[32];
    unsigned len = 0;
    out[0] = '\0';
    if (l->sha && EVP_DigestFinal_ex(l->sha, md, &len) == 1 && len == 32)
        for (int i = 0; i < 32; i++)
            snprintf(out + 2 * i, 3, "%02x", md[i]);
    EVP_MD_CTX_free(l->sha);
    l->sha = NULL;
}

struct conf *conf_load_sha256(const char *file, char sha256[65], char *err, size_t errlen)
{
    struct conf_errors e = {err, err ? errlen : 0, 0, 0, false};
    if (e.cap)
        err[0] = '\0';
    if (sha256)
        sha256[0] = '\0';
    struct loader *l = calloc(1, sizeof(*l));
    struct conf *c = calloc(1, sizeof(*c));
    if (!l || !c) {
        free(l);
        free(c);
        conf_error(&e, file, 0, "out of memory; free some memory and try again");
        return NULL;
    }
    *c = (struct conf){
        .refs = 1,
        .user = "tern",
        .workers = 4,
        .message_size = 25u << 20,
        .recipients = 100,
        .connections = 1000,
        .connections_per_ip = 50,
        .bad_commands = 20,
        .junk_commands = 1000,
        .command_timeout = 300,
        .data_timeout = 600,
        .shutdown_timeout = 30,
        .min_free_space = 100u << 20,
        .vrfy = DISCLOSE_AUTHENTICATED,
        .expn = DISCLOSE_AUTHENTICATED,
        .auth_max_failures = 5,
        .auth_window = 600,
        .sender_header = true,
        .audit_enabled = true,
        .audit_epoch = 900,
        .audit_max_size = 256u << 20,
        .relay = CONF_RELAY_DEFAULTS,
        .terminal_allow = TERMINAL_ALLOW_ALL,
        .terminal_max_size = 64u << 10,
    };
    snprintf(c->path, sizeof(c->path), "%s", file);
    l->c = c;
    l->e = &e;
    l->file = file;
    strcpy(l->data_dir, ".");
    strcpy(l->users, "users");
    strcpy(l->aliases, "aliases");
    strcpy(l->mailboxes, "mailboxes");

    l->f = fopen(file, "r");
    if ((l->sha = EVP_MD_CTX_new()) && EVP_DigestInit_ex(l->sha, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(l->sha);
        l->sha = NULL;
    }
    if (!l->f) {
        conf_error(&e, file, 0, "cannot read: %s; check the path, or create one with tern init",
                   strerror(errno));
    } else {
        int r = ini_parse_stream(conf_reader, l, conf_handler, l);
        if (ferror(l->f))
            conf_error(&e, file, l->line, "read error: %s; check the file", strerror(errno));
        else if (r < 0)
            conf_error(&e, file, 0, "out of memory parsing; free some memory and try again");
        else if (r > 0 && e.n == 0)
            conf_error(&e, file, r, "cannot parse this line; write key = value");
        fclose(l->f);
        conf_finish(l);
    }
    sha256_hex(l, c->sha256);
    if (sha256)
        memcpy(sha256, c->sha256, sizeof c->sha256);
    free(l->linebuf);
    for (size_t i = 0; i < l->ndomains; i++)
        free(l->domains[i]);
    free(l);
    if (e.n) {
        conf_unref(c);
        return NULL;
    }
    return c;
}

struct conf *conf_ref(struct conf *c)
{
    if (c)
        __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    return c;
}

void conf_unref(struct conf *c)
{
    if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    tables_free(c->tables);
    free(c);
}

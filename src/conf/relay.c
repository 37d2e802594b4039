/* The [relay] section of tern.conf: where outbound mail goes (relayhost, route), how much TLS it
 * insists on, the relayhost's credentials, the resolver, the domains tern holds and relays mail
 * for, and the lookups the queue makes of them. The numeric keys (retry_*, concurrency, ...) are
 * parsed by config.c's generic types; this file owns the keys with a syntax of their own. */
#include "conf/loader.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/values.h"

/* "[host]:port", "[host]", "host:port" or "host" (port 25 when absent). Brackets mean: that
 * host, no MX lookup (as Postfix's relayhost). Inside brackets an IPv6 address may hold
 * colons. 0, or -1 with why. */
static int parse_nexthop(const char *v, struct conf_nexthop *h, char *why, size_t whylen)
{
    char host[256];
    const char *rest;
    *h = (struct conf_nexthop){.port = 25, .mx = true};
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close || close - v - 1 <= 0 || (size_t)(close - v - 1) >= sizeof host) {
            snprintf(why, whylen, "'%s' has no closing ']' or an empty or too long host", v);
            return -1;
        }
        memcpy(host, v + 1, (size_t)(close - v - 1));
        host[close - v - 1] = '\0';
        rest = close + 1;
        h->mx = false;
    } else {
        size_t n = strcspn(v, ":");
        if (n == 0 || n >= sizeof host) {
            snprintf(why, whylen, "'%s' has an empty or too long host", v);
            return -1;
        }
        memcpy(host, v, n);
        host[n] = '\0';
        rest = v + n;
    }
    if (*rest == ':') {
        unsigned long long port;
        if (conf_parse_uint(rest + 1, &port) < 0 || port < 1 || port > 65535) {
            snprintf(why, whylen, "'%s': the port is not a number from 1 to 65535", v);
            return -1;
        }
        h->port = (unsigned)port;
    } else if (*rest) {
        snprintf(why, whylen, "'%s': unexpected text after the host; write [host]:port", v);
        return -1;
    }
    conf_lowercase(host);
    unsigned char bin[16];
    bool numeric = inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1;
    if (numeric && h->mx) {
        snprintf(why, whylen, "'%s': an address has no MX records; write it in brackets, [%s]", v,
                 host);
        return -1;
    }
    if (!numeric && !conf_valid_domain(host)) {
        snprintf(why, whylen, "'%s' is not a host name or an address", host);
        return -1;
    }
    snprintf(h->host, sizeof h->host, "%s", host);
    return 0;
}

static int parse_level(const char *v, bool wrapper_ok, enum conf_tls_level *out)
{
    static const struct {
        const char *name;
        enum conf_tls_level level;
    } levels[] = {{"none", TLS_LEVEL_NONE},
                  {"may", TLS_LEVEL_MAY},
                  {"encrypt", TLS_LEVEL_ENCRYPT},
                  {"verify", TLS_LEVEL_VERIFY},
                  {"wrapper", TLS_LEVEL_WRAPPER}};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (strcasecmp(v, levels[i].name) == 0 && (wrapper_ok || i < 4)) {
            *out = levels[i].level;
            return 0;
        }
    return -1;
}

static void set_path(struct loader *l, char *dst, const char *v, const char *key)
{
    if (strlen(v) >= PATH_MAX) {
        conf_lerr(l, "%s: the path is too long", key);
        return;
    }
    snprintf(dst, PATH_MAX, "%s", v); /* made absolute in conf_relay_finish */
}

static void add_domains(struct loader *l, const char *v)
{
    struct conf_relay *r = &l->c->relay;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", v);
    char *save = NULL;
    for (char *d = strtok_r(buf, ", \t", &save); d; d = strtok_r(NULL, ", \t", &save)) {
        conf_lowercase(d);
        if (!conf_valid_domain(d)) {
            conf_lerr(l, "domains: '%s' is not a domain name; write domains = example.net, ...", d);
            continue;
        }
        if (r->ndomains >= CONF_MAX_RELAY_DOMAINS) {
            conf_lerr(l, "domains: more than %d relay domains", CONF_MAX_RELAY_DOMAINS);
            return;
        }
        snprintf(r->domains[r->ndomains++], sizeof r->domains[0], "%s", d);
    }
}

static void add_route(struct loader *l, const char *v)
{
    struct conf_relay *r = &l->c->relay;
    char domain[256], hop[512], extra;
    char why[512];
    if (strlen(v) >= sizeof hop || sscanf(v, "%255s %511s %c", domain, hop, &extra) != 2) {
        conf_lerr(l, "route = %s: write route = DOMAIN [HOST]:PORT (or HOST:PORT for its MX)", v);
        return;
    }
    conf_lowercase(domain);
    if (!conf_valid_domain(domain)) {
        conf_lerr(l, "route = %s: '%s' is not a domain name", v, domain);
        return;
    }
    if (r->nroutes >= CONF_MAX_ROUTES) {
        conf_lerr(l, "route: more than %d routes", CONF_MAX_ROUTES);
        return;
    }
    for (size_t i = 0; i < r->nroutes; i++)
        if (strcmp(r->routes[i].domain, domain) == 0) {
            conf_lerr(l, "route: %s already has a route; keep one", domain);
            return;
        }
    struct conf_route *e = &r->routes[r->nroutes];
    if (parse_nexthop(hop, &e->hop, why, sizeof why) != 0) {
        conf_lerr(l, "route = %s: %s", v, why);
        return;
    }
    snprintf(e->domain, sizeof e->domain, "%s", domain);
    r->nroutes++;
}

void conf_relay_set(struct loader *l, const char *key, const char *v)
{
    struct conf_relay *r = &l->c->relay;
    char why[512];
    if (strcasecmp(key, "relayhost") == 0) {
        if (!*v)
            return; /* relayhost = (empty): MX delivery, as Postfix */
        if (parse_nexthop(v, &r->relayhost, why, sizeof why) != 0)
            conf_lerr(l, "relayhost = %s: %s; write relayhost = [smtp.example.net]:587", v, why);
        else
            r->has_relayhost = true;
    } else if (strcasecmp(key, "tls") == 0 || strcasecmp(key, "relayhost_tls") == 0) {
        bool relayhost = strcasecmp(key, "relayhost_tls") == 0;
        if (parse_level(v, relayhost, relayhost ? &r->relayhost_tls : &r->tls) != 0)
            conf_lerr(l, "%s = %s: not a choice; write none, may, encrypt, verify%s", key, v,
                      relayhost ? " or wrapper" : "");
    } else if (strcasecmp(key, "relayhost_auth") == 0) {
        set_path(l, r->auth_file, v, key);
    } else if (strcasecmp(key, "ca_file") == 0) {
        set_path(l, r->ca_file, v, key);
    } else if (strcasecmp(key, "resolver") == 0) {
        set_path(l, r->resolver, v, key);
    } else if (strcasecmp(key, "domains") == 0) {
        add_domains(l, v);
    } else if (strcasecmp(key, "route") == 0) {
        add_route(l, v);
    }
}

/* dst (as written, relative to data_dir) made absolute and checked readable. */
static void finish_path(struct loader *l, char *dst, const char *key)
{
    if (!dst[0])
        return;
    char abs[PATH_MAX];
    if (dst[0] == '/')
        snprintf(abs, sizeof abs, "%s", dst);
    else if (snprintf(abs, sizeof abs, "%s/%s", l->c->data_dir, dst) >= (int)sizeof abs) {
        conf_error(l->e, l->file, conf_where(l, SEC_RELAY), "%s: the path is too long", key);
        return;
    }
    if (access(abs, R_OK) != 0)
        conf_error(l->e, l->file, conf_where(l, SEC_RELAY), "%s %s: %s; create it or fix the path",
                   key, abs, strerror(errno));
    snprintf(dst, PATH_MAX, "%s", abs);
}

/* The relayhost's "USER PASSWORD" line: the file must be the owner's alone (0600 or less),
 * like Postfix's sasl_passwd. */
static void read_auth(struct loader *l)
{
    struct conf_relay *r = &l->c->relay;
    int line = conf_where(l, SEC_RELAY);
    int fd = open(r->auth_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        conf_error(l->e, l->file, line, "relayhost_auth %s: %s", r->auth_file, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    if (st.st_mode & 077) {
        conf_error(l->e, l->file, line,
                   "relayhost_auth %s is readable by others (mode %03o); chmod 600 it",
                   r->auth_file, (unsigned)(st.st_mode & 0777));
        close(fd);
        return;
    }
    char buf[600];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    char *sp = strchr(buf, ' ');
    if (n <= 0 || !sp || sp == buf || !sp[1] || strlen(buf) >= sizeof buf - 1 ||
        (size_t)(sp - buf) >= sizeof r->user || strlen(sp + 1) >= sizeof r->password) {
        conf_error(l->e, l->file, line,
                   "relayhost_auth %s: write one line 'USER PASSWORD' (each under 256 bytes)",
                   r->auth_file);
        return;
    }
    *sp = '\0'; /* both lengths were checked above */
    memcpy(r->user, buf, (size_t)(sp - buf) + 1);
    memcpy(r->password, sp + 1, strlen(sp + 1) + 1);
    explicit_bzero(buf, sizeof buf);
}

void conf_relay_finish(struct loader *l, bool dirs_ok)
{
    struct conf_relay *r = &l->c->relay;
    if (!dirs_ok)
        return;
    finish_path(l, r->ca_file, "ca_file");
    finish_path(l, r->resolver, "resolver");
    finish_path(l, r->auth_file, "relayhost_auth");
    if (r->auth_file[0] && !r->has_relayhost)
        conf_error(l->e, l->file, conf_where(l, SEC_RELAY),
                   "relayhost_auth is set without relayhost; add relayhost = [host]:port");
    else if (r->auth_file[0])
        read_auth(l);
    if (r->retry_min > r->retry_max)
        conf_error(l->e, l->file, conf_where(l, SEC_RELAY),
                   "retry_min (%d s) is longer than retry_max (%d s); lower it", r->retry_min,
                   r->retry_max);
    for (size_t i = 0; i < r->ndomains; i++)
        for (size_t j = 0; j < l->ndomains; j++)
            if (strcmp(l->domains[j], r->domains[i]) == 0)
                conf_error(l->e, l->file, conf_where(l, SEC_RELAY),
                           "relay domain %s is also a local domain; list it in one place only",
                           r->domains[i]);
}

const struct conf_nexthop *conf_relay_route(const struct conf *c, const char *domain)
{
    for (size_t i = 0; i < c->relay.nroutes; i++)
        if (strcmp(c->relay.routes[i].domain, domain) == 0)
            return &c->relay.routes[i].hop;
    return c->relay.has_relayhost ? &c->relay.relayhost : NULL;
}

bool conf_relay_domain(const struct conf *c, const char *domain)
{
    for (size_t i = 0; i < c->relay.ndomains; i++)
        if (strcasecmp(c->relay.domains[i], domain) == 0)
            return true;
    return false;
}

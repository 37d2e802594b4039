/* Outbound routing: a recipient domain (or a relay host) becomes the ordered list of addresses
 * to try, found asynchronously with libunbound on ternd's libevent loop (RFC 5321 §5.1 MX
 * ordering, RFC 7505 null MX, §4.1.3 address literals). Within one MX host the IPv6 addresses
 * come before the IPv4 ones, as in Postfix with inet_protocols=all and
 * smtp_address_preference=ipv6; relay_dns_set_protocols turns a family off. */
#ifndef TERN_RELAY_DNS_H
#define TERN_RELAY_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define RELAY_MAX_HOSTS 10
#define RELAY_MAX_ADDRS 20

struct event_base;

enum relay_dns_status { RELAY_DNS_OK, RELAY_DNS_TEMP, RELAY_DNS_PERM, RELAY_DNS_NULLMX };

struct relay_addr {
    struct sockaddr_storage ss;
    socklen_t len;  /* port already set */
    char host[256]; /* the MX host name (for TLS SNI / certificate checks), or the domain for an
                       implicit MX, or the literal */
    unsigned pref;
    bool secure; /* the MX and address answers it came from were DNSSEC-validated (for DANE) */
};

struct relay_route {
    size_t n;
    struct relay_addr addrs[RELAY_MAX_ADDRS];
    bool implicit_mx;
    bool mx_secure; /* the MX answer (or its NODATA) was DNSSEC-validated */
};

/* st is RELAY_DNS_OK with route->n >= 1, or a failure with route->n == 0. why says what failed
 * (for the log and a bounce's Diagnostic-Code); on OK it is "" or notes on MX hosts skipped. */
typedef void relay_dns_fn(void *arg, enum relay_dns_status st, const struct relay_route *route,
                          const char *why);

struct relay_dns;
struct relay_dns_query;

/* conf: "" or NULL → /etc/resolv.conf (ub_ctx_resolvconf) and /etc/hosts (ub_ctx_hosts);
 * otherwise an unbound.conf file (ub_ctx_config) — what the tests and a DNSSEC-minded admin use. */
struct relay_dns *relay_dns_new(struct event_base *base, const char *conf, char *err,
                                size_t errlen);
/* fn is always called later from the loop, never from inside this call; exactly once unless
 * cancelled. NULL with why on immediate failure (a malformed domain or literal, a bad port, too
 * many lookups in progress, a resolver error). port: the TCP port to put in every address.
 * The domain is ASCII (A-labels), lowercase, without a trailing dot, or an address literal
 * "[192.0.2.1]" / "[IPv6:2001:db8::1]" (no DNS). The query handle is gone once fn returns. */
struct relay_dns_query *relay_dns_route(struct relay_dns *d, const char *domain, unsigned port,
                                        relay_dns_fn *fn, void *arg, char *why, size_t whylen);
/* fn is never called after this. From inside the query's own fn it does nothing. */
void relay_dns_cancel(struct relay_dns_query *q);
/* Cancels everything outstanding (no fn is called). Not from inside a libunbound callback
 * (relay_dns never runs a caller's fn from one). */
void relay_dns_free(struct relay_dns *d);
/* The same routing for a host given explicitly (a relayhost "[host]:port" with brackets meaning
 * no MX lookup, like Postfix): relay_dns_host(d, "smtp.example.net", port, mx_lookup=false, ...).
 * Without mx_lookup, host may also be a bare IPv4 or IPv6 address (no DNS). */
struct relay_dns_query *relay_dns_host(struct relay_dns *d, const char *host, unsigned port,
                                       bool mx_lookup, relay_dns_fn *fn, void *arg, char *why,
                                       size_t whylen);

/* Which address families to look up (default both); at least one. Affects later queries. */
void relay_dns_set_protocols(struct relay_dns *d, bool ipv4, bool ipv6);
/* A whole route gives up after this many milliseconds (default 60000; 0: only libunbound's own
 * timeouts apply): TEMP if nothing usable arrived, else OK with the addresses found so far. */
void relay_dns_set_timeout(struct relay_dns *d, unsigned ms);
/* The random source for ordering MX hosts of equal preference (tests inject one); NULL restores
 * arc4random. */
void relay_dns_set_random(struct relay_dns *d, uint32_t (*rng)(void *arg), void *arg);

#endif

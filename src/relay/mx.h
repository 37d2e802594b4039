/* The pure core of outbound routing, with no I/O: domain and host name checks, address literals,
 * MX rdata parsing, MX ordering (preference, random tie-break, null MX, caps) and assembling the
 * address lookups' answers into a relay_route with one status. dns.c does the lookups. */
#ifndef TERN_RELAY_MX_H
#define TERN_RELAY_MX_H

#include "relay/dns.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* MX records considered per domain; more are ignored (a real domain has a handful). */
#define MX_MAX_RRS 100

typedef uint32_t mx_random_fn(void *arg);

/* One MX record. name is lowercase text, "." for the root (null MX); valid says it is a usable
 * host name (mx_check_host). A malformed target has valid false and a printable name. */
struct mx_rr {
    unsigned pref;
    bool valid;
    char name[256];
};

/* How an AAAA or A lookup of one host ended. */
enum mx_outcome { MX_PENDING, MX_ADDRS, MX_NODATA, MX_NXDOMAIN, MX_TEMP };

/* A host to look up and what its lookups found. */
struct mx_target {
    char name[256];
    unsigned pref;
    enum mx_outcome out6, out4;
    bool secure6, secure4;
    char fail6[96], fail4[96]; /* why a lookup failed temporarily ("SERVFAIL", "timed out") */
    size_t n6, n4;
    unsigned char a6[RELAY_MAX_ADDRS][16];
    unsigned char a4[RELAY_MAX_ADDRS][4];
};

/* What the targets are: the MX hosts of a domain, the domain itself (no MX records), or a host
 * named explicitly (a relay host). Only the wording of why depends on it. */
enum mx_kind { MX_KIND_MX, MX_KIND_IMPLICIT, MX_KIND_HOST };

/* A host name as tern accepts it: LDH labels of 1-63 octets (no leading or trailing hyphen),
 * lowercase, at most 253 characters (255 octets in wire form), no trailing dot, and a last label
 * that is not all digits (so no IPv4 address passes as a name). false with why. */
bool mx_check_host(const char *name, char *why, size_t whylen);

/* An address literal "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 §4.1.3): 1 and *out filled
 * (port set, host = the literal, pref 0); 0 if s does not start with '['; -1 with why if it is
 * malformed or a General-address-literal. */
int mx_literal(const char *s, unsigned port, struct relay_addr *out, char *why, size_t whylen);

/* Fills a (sockaddr with port, host, pref) from 4 or 16 address octets. */
void mx_set_addr(struct relay_addr *a, int family, const unsigned char *octets, unsigned port,
                 const char *host, unsigned pref);

/* A wire-format name at p (len octets available): its text into out (lowercased, "." for the
 * root; a byte outside LDH or '_' is written as '?' and makes *clean false). Returns the octets
 * the name took, or -1 if truncated, compressed (libunbound hands rdata uncompressed) or longer
 * than 255 octets. */
int mx_wire_name(const unsigned char *p, size_t len, char *out, size_t outlen, bool *clean);

/* MX rdata (2-octet preference + wire-format name, nothing after it): 0 and *rr, or -1. */
int mx_parse_rdata(const unsigned char *rdata, size_t len, struct mx_rr *rr);

/* Orders the MX set (n records; the array is reordered) into at most RELAY_MAX_HOSTS targets:
 * a set of only "." is RELAY_DNS_NULLMX; "." mixed with real records, malformed names and
 * IP-address targets are skipped; duplicates keep their lowest preference; preference
 * ascending, equal preferences in an order drawn from rng (the records are first put in name
 * order, so the result depends on rng alone). RELAY_DNS_OK with *nout >= 1, or RELAY_DNS_TEMP
 * when no record names a usable host; why says which. Targets come back with no answers. */
enum relay_dns_status mx_select(const char *domain, struct mx_rr *rrs, size_t n, mx_random_fn *rng,
                                void *rng_arg, struct mx_target *out, size_t *nout, char *why,
                                size_t whylen);

/* Appends an address unless the route is full or already holds it: true if appended. */
bool mx_route_add(struct relay_route *r, int family, const unsigned char *octets, unsigned port,
                  const char *host, unsigned pref, bool secure);

/* The targets' answers, in order (per host AAAA then A), into r (capped at RELAY_MAX_ADDRS,
 * duplicates dropped). OK if any address; else TEMP if any lookup failed temporarily or is still
 * pending, PERM if all were NXDOMAIN or NODATA. why says what failed (notes on OK). */
enum relay_dns_status mx_assemble(enum mx_kind kind, const char *domain, const struct mx_target *t,
                                  size_t n, unsigned port, bool mx_secure, struct relay_route *r,
                                  char *why, size_t whylen);

#endif

/* The pure core of outbound routing (RFC 5321 §5.1, RFC 7505, §4.1.3): host name checks,
 * address literals, MX rdata parsing, the MX ordering (preference ascending, ties in random
 * order, null MX, at most RELAY_MAX_HOSTS hosts) and the assembly of the address answers into
 * one relay_route and one status. No I/O: dns.c feeds it what libunbound answered, the unit
 * tests feed it by hand. Everything from DNS is hostile: every length is checked here. */
#include "relay/mx.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Appends to a NUL-terminated buffer, truncating; a NULL or empty buffer is left alone. */
__attribute__((format(printf, 3, 4))) static void append(char *buf, size_t cap, const char *fmt,
                                                         ...)
{
    if (!buf || cap == 0)
        return;
    size_t len = strnlen(buf, cap);
    if (len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

static void set_why(char *why, size_t whylen, const char *text)
{
    if (why && whylen) {
        why[0] = '\0';
        append(why, whylen, "%s", text);
    }
}

bool mx_check_host(const char *name, char *why, size_t whylen)
{
    size_t len = strnlen(name, 254);
    if (len == 0) {
        set_why(why, whylen, "empty name");
        return false;
    }
    if (len > 253) {
        set_why(why, whylen, "longer than 253 characters (255 octets in DNS)");
        return false;
    }
    if (name[len - 1] == '.') {
        set_why(why, whylen, "trailing dot (give the name without it)");
        return false;
    }
    const char *label = name;
    bool digits_only = true;
    for (const char *p = name;; p++) {
        if (*p == '.' || *p == '\0') {
            size_t l = (size_t)(p - label);
            if (l == 0) {
                set_why(why, whylen, "empty label (two dots in a row, or a leading dot)");
                return false;
            }
            if (l > 63) {
                set_why(why, whylen, "a label longer than 63 octets");
                return false;
            }
            if (label[0] == '-' || p[-1] == '-') {
                set_why(why, whylen, "a label starts or ends with a hyphen");
                return false;
            }
            if (*p == '\0')
                break;
            label = p + 1;
            digits_only = true;
            continue;
        }
        unsigned char c = (unsigned char)*p;
        if (c >= 'A' && c <= 'Z') {
            set_why(why, whylen, "upper-case letters (give it lowercased)");
            return false;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            char msg[96];
            snprintf(msg, sizeof(msg),
                     "character 0x%02x is not allowed (letters, digits and hyphens only; "
                     "IDNs as A-labels)",
                     c);
            set_why(why, whylen, msg);
            return false;
        }
        if (!(c >= '0' && c <= '9'))
            digits_only = false;
    }
    if (digits_only) {
        set_why(why, whylen,
                "the last label is all digits: an IP address is not a host name (write an "
                "address literal such as [192.0.2.1])");
        return false;
    }
    return true;
}

void mx_set_addr(struct relay_addr *a, int family, const unsigned char *octets, unsigned port,
                 const char *host, unsigned pref)
{
    memset(a, 0, sizeof(*a));
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        memcpy(&s6->sin6_addr, octets, 16);
        a->len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        memcpy(&s4->sin_addr, octets, 4);
        a->len = sizeof(*s4);
    }
    snprintf(a->host, sizeof(a->host), "%s", host);
    a->pref = pref;
}

int mx_literal(const char *s, unsigned port, struct relay_addr *out, char *why, size_t whylen)
{
    if (s[0] != '[')
        return 0;
    size_t len = strnlen(s, 256);
    if (len > 255) {
        set_why(why, whylen, "address literal longer than 255 characters");
        return -1;
    }
    if (len < 3 || s[len - 1] != ']') {
        set_why(why, whylen, "address literal without its closing ']' or empty");
        return -1;
    }
    char inner[256];
    memcpy(inner, s + 1, len - 2);
    inner[len - 2] = '\0';
    unsigned char octets[16];
    if (strncasecmp(inner, "IPv6:", 5) == 0) {
        if (inet_pton(AF_INET6, inner + 5, octets) != 1) {
            set_why(why, whylen, "malformed IPv6 address literal (expected [IPv6:2001:db8::1])");
            return -1;
        }
        mx_set_addr(out, AF_INET6, octets, port, s, 0);
        return 1;
    }
    if (strchr(inner, ':')) {
        set_why(why, whylen,
                "unsupported address literal tag (only IPv4 and [IPv6:...] literals are "
                "routable)");
        return -1;
    }
    if (inet_pton(AF_INET, inner, octets) != 1) {
        set_why(why, whylen,
                "malformed IPv4 address literal (expected four numbers 0-255, "
                "such as [192.0.2.1])");
        return -1;
    }
    mx_set_addr(out, AF_INET, octets, port, s, 0);
    return 1;
}

int mx_wire_name(const unsigned char *p, size_t len, char *out, size_t outlen, bool *clean)
{
    size_t pos = 0, o = 0;
    *clean = true;
    if (outlen < 2)
        return -1;
    for (;;) {
        if (pos >= len)
            return -1;
        size_t l = p[pos];
        if (l & 0xc0)
            return -1; /* a compression pointer or an extended label type */
        if (l == 0) {
            pos++;
            break;
        }
        if (pos + 1 + l > len || pos + 1 + l + 1 > 255)
            return -1;
        if (o + (o ? 1 : 0) + l + 1 > outlen)
            return -1;
        if (o)
            out[o++] = '.';
        for (size_t i = 0; i < l; i++) {
            unsigned char c = p[pos + 1 + i];
            if (c >= 'A' && c <= 'Z')
                c = (unsigned char)(c - 'A' + 'a');
            /* keep the text printable and its labels intact: a '.' inside a label would make
             * another name of it */
            if (c <= 0x20 || c >= 0x7f || c == '.') {
                c = '?';
                *clean = false;
            }
            out[o++] = (char)c;
        }
        pos += 1 + l;
    }
    if (o == 0)
        out[o++] = '.';
    out[o] = '\0';
    return (int)pos;
}

int mx_parse_rdata(const unsigned char *rdata, size_t len, struct mx_rr *rr)
{
    if (len < 3)
        return -1;
    bool clean;
    int n = mx_wire_name(rdata + 2, len - 2, rr->name, sizeof(rr->name), &clean);
    if (n < 0 || (size_t)n != len - 2)
        return -1;
    rr->pref = (unsigned)rdata[0] << 8 | rdata[1];
    rr->valid = clean && mx_check_host(rr->name, NULL, 0);
    return 0;
}

/* Index insertion sorts (n <= MX_MAX_RRS): by name then preference, and stable by preference. */
static void sort_by_name(const struct mx_rr *rrs, size_t *idx, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        size_t v = idx[i], j = i;
        while (j > 0) {
            int c = strcmp(rrs[idx[j - 1]].name, rrs[v].name);
            if (c < 0 || (c == 0 && rrs[idx[j - 1]].pref <= rrs[v].pref))
                break;
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

static void sort_by_pref(const struct mx_rr *rrs, size_t *idx, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        size_t v = idx[i], j = i;
        while (j > 0 && rrs[idx[j - 1]].pref > rrs[v].pref) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

enum relay_dns_status mx_select(const char *domain, struct mx_rr *rrs, size_t n, mx_random_fn *rng,
                                void *rng_arg, struct mx_target *out, size_t *nout, char *why,
                                size_t whylen)
{
    *nout = 0;
    set_why(why, whylen, "");
    if (n > MX_MAX_RRS)
        n = MX_MAX_RRS;
    size_t nnull = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(rrs[i].name, ".") == 0)
            nnull++;
    if (n > 0 && nnull == n) {
        append(why, whylen, "%s does not accept mail: it publishes a null MX (RFC 7505)", domain);
        return RELAY_DNS_NULLMX;
    }
    size_t idx[MX_MAX_RRS], m = 0, nbad = 0;
    for (size_t i = 0; i < n; i++) {
        if (rrs[i].valid) {
            idx[m++] = i;
        } else if (strcmp(rrs[i].name, ".") != 0) {
            append(why, whylen, "%s%s", nbad++ ? ", " : "", rrs[i].name);
        }
    }
    if (m == 0) {
        char bad[256];
        snprintf(bad, sizeof(bad), "%s", why ? why : "");
        set_why(why, whylen, "");
        append(why, whylen, "the MX records of %s name no usable host%s%s%s", domain,
               nbad ? " (not host names: " : "", nbad ? bad : "", nbad ? ")" : "");
        return RELAY_DNS_TEMP;
    }
    if (nbad) {
        char bad[256];
        snprintf(bad, sizeof(bad), "%s", why ? why : "");
        set_why(why, whylen, "");
        append(why, whylen, "skipped MX targets of %s that are not host names: %s", domain, bad);
    }
    sort_by_name(rrs, idx, m);
    size_t k = 0; /* duplicates are adjacent now; the first has the lowest preference */
    for (size_t i = 0; i < m; i++)
        if (k == 0 || strcmp(rrs[idx[k - 1]].name, rrs[idx[i]].name) != 0)
            idx[k++] = idx[i];
    m = k;
    for (size_t i = m - 1; i > 0; i--) { /* Fisher-Yates */
        size_t j = rng(rng_arg) % (i + 1);
        size_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    sort_by_pref(rrs, idx, m);
    if (m > RELAY_MAX_HOSTS)
        m = RELAY_MAX_HOSTS;
    for (size_t i = 0; i < m; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        memcpy(out[i].name, rrs[idx[i]].name, sizeof(out[i].name));
        out[i].pref = rrs[idx[i]].pref;
    }
    *nout = m;
    return RELAY_DNS_OK;
}

bool mx_route_add(struct relay_route *r, int family, const unsigned char *octets, unsigned port,
                  const char *host, unsigned pref, bool secure)
{
    if (r->n >= RELAY_MAX_ADDRS)
        return false;
    for (size_t i = 0; i < r->n; i++) {
        const struct sockaddr_storage *ss = &r->addrs[i].ss;
        if (ss->ss_family != family)
            continue;
        const void *have = family == AF_INET6
                               ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
                               : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;
        if (memcmp(have, octets, family == AF_INET6 ? 16 : 4) == 0)
            return false;
    }
    mx_set_addr(&r->addrs[r->n], family, octets, port, host, pref);
    r->addrs[r->n].secure = secure;
    r->n++;
    return true;
}

/* What went wrong for a target without addresses. Sets *temp if it may come right later. */
static void describe(const struct mx_target *t, char *buf, size_t cap, bool *temp)
{
    buf[0] = '\0';
    if (t->out6 == MX_NXDOMAIN || t->out4 == MX_NXDOMAIN) {
        append(buf, cap, "no such host (NXDOMAIN)");
        return;
    }
    const char *sep = "";
    if (t->out6 == MX_TEMP || t->out6 == MX_PENDING) {
        append(buf, cap, "AAAA lookup failed (%s)", t->out6 == MX_PENDING ? "no answer" : t->fail6);
        sep = ", ";
        *temp = true;
    }
    if (t->out4 == MX_TEMP || t->out4 == MX_PENDING) {
        append(buf, cap, "%sA lookup failed (%s)", sep,
               t->out4 == MX_PENDING ? "no answer" : t->fail4);
        *temp = true;
    }
    if (!buf[0])
        append(buf, cap, "no A or AAAA records");
}

enum relay_dns_status mx_assemble(enum mx_kind kind, const char *domain, const struct mx_target *t,
                                  size_t n, unsigned port, bool mx_secure, struct relay_route *r,
                                  char *why, size_t whylen)
{
    r->n = 0;
    r->implicit_mx = kind == MX_KIND_IMPLICIT;
    r->mx_secure = mx_secure;
    set_why(why, whylen, "");
    bool temp = false;
    size_t nfailed = 0;
    char fails[768] = "";
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < t[i].n6 && k < RELAY_MAX_ADDRS; k++)
            mx_route_add(r, AF_INET6, t[i].a6[k], port, t[i].name, t[i].pref,
                         mx_secure && t[i].secure6);
        for (size_t k = 0; k < t[i].n4 && k < RELAY_MAX_ADDRS; k++)
            mx_route_add(r, AF_INET, t[i].a4[k], port, t[i].name, t[i].pref,
                         mx_secure && t[i].secure4);
        if (t[i].n6 + t[i].n4 == 0) {
            char what[256];
            describe(&t[i], what, sizeof(what), &temp);
            append(fails, sizeof(fails), "%s%s: %s", nfailed++ ? "; " : "", t[i].name, what);
        } else if (t[i].out6 == MX_TEMP || t[i].out4 == MX_TEMP) {
            append(fails, sizeof(fails), "%s%s: %s lookup failed (%s)", nfailed++ ? "; " : "",
                   t[i].name, t[i].out6 == MX_TEMP ? "AAAA" : "A",
                   t[i].out6 == MX_TEMP ? t[i].fail6 : t[i].fail4);
        }
    }
    if (r->n > 0) {
        if (nfailed)
            append(why, whylen, "skipped or partly resolved: %s", fails);
        return RELAY_DNS_OK;
    }
    switch (kind) {
    case MX_KIND_MX:
        append(why, whylen, "no MX host of %s has an address: %s", domain, fails);
        break;
    case MX_KIND_IMPLICIT:
        if (temp)
            append(why, whylen, "%s has no MX records, and looking up its own address failed: %s",
                   domain, fails);
        else
            append(why, whylen, "%s has no MX records and no address (%s)", domain, fails);
        break;
    case MX_KIND_HOST:
        append(why, whylen, "host %s has no address: %s", domain, fails);
        break;
    }
    return temp ? RELAY_DNS_TEMP : RELAY_DNS_PERM;
}

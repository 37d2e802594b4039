/* The value parsers of tern.conf (see values.h): numbers with size and time suffixes, domain
 * names and local parts, listening addresses, CIDR blocks and the deny-list match. */
#include "conf/values.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

int conf_parse_uint(const char *s, unsigned long long *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long long v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (ULLONG_MAX - (unsigned)(*s - '0')) / 10)
            return -1;
        v = v * 10 + (unsigned)(*s - '0');
    }
    if (*s)
        return -1;
    *out = v;
    return 0;
}

int conf_parse_size(const char *s, uint64_t *out)
{
    char digits[32];
    size_t len = s ? strlen(s) : 0;
    if (len == 0 || len >= sizeof(digits))
        return -1;
    unsigned shift = 0;
    switch (s[len - 1]) {
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    }
    memcpy(digits, s, len + 1);
    if (shift)
        digits[len - 1] = '\0';
    unsigned long long v;
    if (conf_parse_uint(digits, &v) < 0 || v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

/* "300", "300s", "5m", "1h" into seconds. */
int conf_parse_seconds(const char *s, unsigned long long *out)
{
    char digits[32];
    size_t len = strlen(s);
    if (len == 0 || len >= sizeof(digits))
        return -1;
    unsigned long long mul = 1;
    memcpy(digits, s, len + 1);
    switch (s[len - 1]) {
    case 's':
        mul = 1;
        break;
    case 'm':
        mul = 60;
        break;
    case 'h':
        mul = 3600;
        break;
    case 'd':
        mul = 86400;
        break;
    default:
        len = 0;
    }
    if (len)
        digits[len - 1] = '\0';
    unsigned long long v;
    if (conf_parse_uint(digits, &v) < 0 || v > ULLONG_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

bool conf_valid_domain(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.' || ch == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || (ch == '-' && label > 0);
        if (!ok)
            return false;
        label++;
    }
    return true;
}

bool conf_valid_local(const char *s)
{
    static const char specials[] = "!#$%&'*+-/=?^_`{|}~";
    size_t len = strlen(s);
    if (len == 0 || len > 64 || s[0] == '.' || s[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.') {
            if (s[i + 1] == '.')
                return false;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              (ch && strchr(specials, ch))))
            return false;
    }
    return true;
}

void conf_lowercase(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s + ('a' - 'A'));
}

/* "127.0.0.1:25" or "[::1]:25" into a listener. */
int conf_parse_hostport(const char *v, struct conf_listener *out, int *family, unsigned char *addr,
                        const char **why)
{
    char host[INET6_ADDRSTRLEN + 8];
    const char *port;
    if (v[0] == '[') {
        const char *end = strchr(v, ']');
        if (!end || end[1] != ':' || (size_t)(end - v - 1) >= sizeof(host)) {
            *why = "write an IPv6 listener as [::1]:2525";
            return -1;
        }
        memcpy(host, v + 1, (size_t)(end - v - 1));
        host[end - v - 1] = '\0';
        port = end + 2;
        *family = AF_INET6;
    } else {
        const char *colon = strrchr(v, ':');
        if (!colon || (size_t)(colon - v) >= sizeof(host)) {
            *why = "write it as address:port, like 127.0.0.1:2525 or [::1]:2525";
            return -1;
        }
        if (memchr(v, ':', (size_t)(colon - v))) {
            *why = "put an IPv6 address in brackets, like [::1]:2525";
            return -1;
        }
        memcpy(host, v, (size_t)(colon - v));
        host[colon - v] = '\0';
        port = colon + 1;
        *family = AF_INET;
    }
    if (inet_pton(*family, host, addr) != 1) {
        *why = *family == AF_INET ? "the address must be numeric, like 127.0.0.1 or 0.0.0.0"
                                  : "the address must be numeric, like [::1] or [::]";
        return -1;
    }
    unsigned long long p;
    if (conf_parse_uint(port, &p) < 0 || p < 1 || p > 65535) {
        *why = "the port must be a number from 1 to 65535";
        return -1;
    }
    inet_ntop(*family, addr, out->host, sizeof(out->host));
    out->port = (int)p;
    return 0;
}

bool conf_is_wildcard(const char *host)
{
    return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

int conf_parse_cidr(const char *s, struct conf_cidr *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (strlen(s) >= sizeof(buf))
        return -1;
    strcpy(buf, s);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    out->family = strchr(buf, ':') ? AF_INET6 : AF_INET;
    memset(out->addr, 0, sizeof(out->addr));
    if (inet_pton(out->family, buf, out->addr) != 1)
        return -1;
    int max = out->family == AF_INET ? 32 : 128;
    unsigned long long p = (unsigned long long)max;
    if (slash && (conf_parse_uint(slash + 1, &p) < 0 || p > (unsigned long long)max))
        return -1;
    out->prefix = (int)p;
    /* Clear host bits so "192.0.2.1/24" means the block it names. */
    for (int bit = out->prefix; bit < max; bit++)
        out->addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
    return 0;
}

static bool cidr_match(const struct conf_cidr *d, const unsigned char *a)
{
    int full = d->prefix / 8, rest = d->prefix % 8;
    if (memcmp(d->addr, a, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff00u >> rest);
    return (d->addr[full] & mask) == (a[full] & mask);
}

bool conf_denied(const struct conf *c, int family, const void *addr)
{
    const unsigned char *a = addr;
    const unsigned char *v4 = NULL;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (family == AF_INET)
        v4 = a;
    else if (family == AF_INET6 && memcmp(a, mapped, sizeof(mapped)) == 0)
        v4 = a + 12; /* an IPv4 client on a dual-stack socket */
    else if (family != AF_INET6)
        return false;
    for (size_t i = 0; i < c->ndeny; i++) {
        const struct conf_cidr *d = &c->deny[i];
        if (d->family == AF_INET6 && family == AF_INET6 && cidr_match(d, a))
            return true;
        if (d->family == AF_INET && v4 && cidr_match(d, v4))
            return true;
    }
    return false;
}

/* The value parsers of tern.conf, shared by the loader (config.c) and kept apart from it: numbers,
 * durations, host:port, CIDR blocks. Pure; each returns 0 or -1 (and a reason where it can). The
 * public ones (sizes, domains, local parts, the deny check) are declared in config.h. */
#ifndef TERN_CONF_VALUES_H
#define TERN_CONF_VALUES_H

#include <stdbool.h>

#include "conf/config.h"

int conf_parse_uint(const char *s, unsigned long long *out);
/* "90", "90s", "5m", "1h" in seconds */
int conf_parse_seconds(const char *s, unsigned long long *out);
/* "127.0.0.1:25" or "[::1]:25"; why says what is wrong */
int conf_parse_hostport(const char *v, struct conf_listener *out, int *family, unsigned char *addr,
                        const char **why);
bool conf_is_wildcard(const char *host);
/* "192.0.2.0/24", "2001:db8::/32", or one address */
int conf_parse_cidr(const char *s, struct conf_cidr *out);

#endif

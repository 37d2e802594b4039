/* RFC 5321 section 4.1.2 syntax, and RFC 6531 (SMTPUTF8) where the client declared it:
 * reverse- and forward-paths, mailboxes (dot-string and quoted-string local parts), domains,
 * IPv4/IPv6/general address literals, and ESMTP parameters. Pure functions over byte ranges;
 * nothing here allocates. */
#ifndef TERN_SMTP_GRAMMAR_H
#define TERN_SMTP_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_LOCAL_MAX 64   /* RFC 5321 4.5.3.1.1 */
#define SMTP_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2 */
#define SMTP_PATH_MAX 256   /* RFC 5321 4.5.3.1.3, including the angle brackets */

enum smtp_path_err {
    SMTP_PATH_OK = 0,
    SMTP_PATH_SYNTAX,     /* not a valid path */
    SMTP_PATH_TOO_LONG,   /* a part over its RFC 5321 4.5.3.1 limit */
    SMTP_PATH_NEEDS_UTF8, /* non-ASCII without SMTPUTF8 declared (553 5.6.7) */
};

/* flags for smtp_parse_path */
#define SMTP_PATH_REVERSE 0x1    /* reverse-path: "<>" allowed */
#define SMTP_PATH_POSTMASTER 0x2 /* forward-path: bare "<Postmaster>" allowed (any case) */
#define SMTP_PATH_UTF8 0x4       /* SMTPUTF8: UTF-8 allowed in local part and domain */

struct smtp_path {
    bool null;       /* "<>" */
    bool postmaster; /* bare <postmaster>: local = "postmaster", domain empty */
    bool quoted;     /* local part was a quoted-string (whether or not it needed quotes) */
    bool had_route;  /* an RFC 5321 4.1.1.3 source route "@a,@b:" was present and dropped */
    bool utf8;       /* contains octets >= 0x80 */
    bool literal;    /* domain is an address literal "[...]" */
    char local[SMTP_LOCAL_MAX + 1];   /* local part, quotes and quoted-pairs removed */
    char domain[SMTP_DOMAIN_MAX + 1]; /* domain as written (literal with its brackets) */
};

/* Parses a path that starts at s[0] == '<' and ends at the matching '>'. *consumed is set to the
 * number of bytes through '>'. UTF-8 is validated (well-formed, no overlongs) when allowed. */
enum smtp_path_err smtp_parse_path(const char *s, size_t len, unsigned flags, struct smtp_path *out,
                                   size_t *consumed);

/* RFC 5321 Domain: sub-domains of Let-dig [Ldh-str], labels <= 63, total <= 255. With utf8,
 * labels may also contain UTF-8 (U-labels). */
bool smtp_valid_domain(const char *s, size_t len, bool utf8);

/* RFC 5321 address-literal including brackets: [IPv4], [IPv6:...] (all four RFC forms),
 * [tag:content] general literal. */
bool smtp_valid_address_literal(const char *s, size_t len);

/* HELO/EHLO argument: a Domain or an address-literal. */
bool smtp_valid_helo(const char *s, size_t len);

/* Writes the mailbox as local@domain, quoting the local part if it is not a dot-string.
 * Null path gives "". Returns the length (output truncated to n-1, always NUL-terminated). */
size_t smtp_path_format(const struct smtp_path *p, char *buf, size_t n);

/* An ESMTP parameter (RFC 5321 4.1.2 esmtp-param), pointing into the parsed string. */
struct smtp_param {
    const char *key;
    size_t keylen;
    const char *value; /* NULL when the parameter has no "=value" */
    size_t valuelen;
};

/* Parses space-separated esmtp-params (leading/trailing spaces allowed). Keys must be
 * esmtp-keyword; values esmtp-value (UTF-8 allowed with utf8). Returns the number of params, or
 * -1 on a syntax error, or -2 when there are more than max. */
int smtp_parse_params(const char *s, size_t len, bool utf8, struct smtp_param *out, size_t max);

/* Case-insensitive comparison of a byte range with a NUL-terminated ASCII word. */
bool smtp_word_eq(const char *s, size_t len, const char *word);

#endif

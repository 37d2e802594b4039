/* The SMTP syntax layer: RFC 5321 4.1.2 paths, mailboxes, domains and ESMTP parameters, the
 * 4.1.3 address literals, the 4.5.3.1 size limits, and the RFC 6531 UTF-8 extensions. Every
 * function here is a pure check over a byte range that is not NUL-terminated; nothing reads
 * past len, allocates, or keeps state. */
#include "smtp/grammar.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

/* How octets >= 0x80 are treated where RFC 6531 allows UTF8-non-ascii. */
enum grammar_octets {
    GRAMMAR_ASCII, /* rejected */
    GRAMMAR_UTF8,  /* well-formed UTF-8 only */
    GRAMMAR_LOOSE, /* any octet, so that a path can be recognised before we decide whether
                      the real problem is the client's missing SMTPUTF8 */
};

static bool grammar_is_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool grammar_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool grammar_is_alnum(unsigned char c)
{
    return grammar_is_alpha(c) || grammar_is_digit(c);
}

static bool grammar_is_hex(unsigned char c)
{
    return grammar_is_digit(c) || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

/* RFC 5321 atext (via RFC 5322): ALPHA / DIGIT and the listed specials. */
static bool grammar_is_atext(unsigned char c)
{
    return grammar_is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* qtextSMTP: %d32-33 / %d35-91 / %d93-126 (printable ASCII and space minus '"' and '\'). */
static bool grammar_is_qtext(unsigned char c)
{
    return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

/* Length of the non-ASCII character starting at s[0] (>= 0x80), or 0 if mode rejects it. In
 * UTF-8 mode this is RFC 3629 UTF8-2/3/4, which already excludes overlongs, surrogates and
 * anything above U+10FFFF; C1 controls (U+0080..U+009F) are refused too, as every other control
 * character is. */
static size_t grammar_utf8_len(const unsigned char *s, size_t n, enum grammar_octets mode)
{
    if (mode == GRAMMAR_LOOSE)
        return 1;
    if (mode != GRAMMAR_UTF8)
        return 0;
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t more;
    if (c >= 0xC2 && c <= 0xDF) {
        more = 1;
    } else if (c == 0xE0) {
        more = 2;
        lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        more = 2;
    } else if (c == 0xED) {
        more = 2;
        hi = 0x9F;
    } else if (c == 0xF0) {
        more = 3;
        lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
        more = 3;
    } else if (c == 0xF4) {
        more = 3;
        hi = 0x8F;
    } else {
        return 0;
    }
    if (n <= more || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i <= more; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    }
    if (c == 0xC2 && s[1] <= 0x9F)
        return 0;
    return more + 1;
}

/* Domain syntax (labels of Let-dig [Ldh-str], each <= 63 octets, no empty label, no trailing
 * dot). The 255-octet total is left to callers so a path can report TOO_LONG rather than
 * SYNTAX. *saw8 is set when any octet >= 0x80 was accepted. */
static bool grammar_domain_syntax(const unsigned char *s, size_t len, enum grammar_octets mode,
                                  bool *saw8)
{
    size_t i = 0;
    if (len == 0)
        return false;
    while (i < len) {
        size_t start = i;
        bool hyphen_last = false;
        while (i < len && s[i] != '.') {
            unsigned char c = s[i];
            if (c == '-') {
                if (i == start)
                    return false;
                hyphen_last = true;
                i++;
            } else if (grammar_is_alnum(c)) {
                hyphen_last = false;
                i++;
            } else if (c >= 0x80) {
                size_t k = grammar_utf8_len(s + i, len - i, mode);
                if (k == 0)
                    return false;
                *saw8 = true;
                hyphen_last = false;
                i += k;
            } else {
                return false;
            }
        }
        if (i == start || hyphen_last || i - start > 63)
            return false;
        if (i < len) {
            i++; /* the dot */
            if (i == len)
                return false;
        }
    }
    return true;
}

/* Snum 3("." Snum), Snum = 1*3DIGIT with a value of at most 255. */
static bool grammar_ipv4(const unsigned char *s, size_t n)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
        unsigned value = 0;
        size_t digits = 0;
        while (i < n && grammar_is_digit(s[i]) && digits < 3) {
            value = value * 10 + (unsigned)(s[i] - '0');
            digits++;
            i++;
        }
        if (digits == 0 || value > 255)
            return false;
    }
    return i == n;
}

/* Counts IPv6-hex *(":" IPv6-hex) groups filling s[0..n) exactly; an empty range has 0 groups.
 * Returns -1 when the range is not such a list. */
static int grammar_hex_groups(const unsigned char *s, size_t n)
{
    int groups = 0;
    size_t i = 0;
    if (n == 0)
        return 0;
    for (;;) {
        size_t digits = 0;
        while (i < n && grammar_is_hex(s[i]) && digits < 4) {
            digits++;
            i++;
        }
        if (digits == 0)
            return -1;
        groups++;
        if (i == n)
            return groups;
        if (s[i] != ':' || groups >= 8)
            return -1;
        i++;
    }
}

/* IPv6-addr exactly as RFC 5321 4.1.3 writes it. Note the compressed forms are stricter than
 * RFC 4291: "::" must stand for at least two groups, so at most 6 (or 4 beside an IPv4 tail)
 * explicit groups may accompany it. */
static bool grammar_ipv6(const unsigned char *s, size_t n)
{
    size_t dc = SIZE_MAX; /* offset of the one "::" */
    bool v4 = false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.')
            v4 = true;
        if (s[i] == ':' && i + 1 < n && s[i + 1] == ':') {
            if (dc != SIZE_MAX)
                return false;
            dc = i;
            i++;
        }
    }
    if (!v4) {
        if (dc == SIZE_MAX)
            return grammar_hex_groups(s, n) == 8;
        int left = grammar_hex_groups(s, dc);
        int right = grammar_hex_groups(s + dc + 2, n - dc - 2);
        return left >= 0 && right >= 0 && left + right <= 6;
    }

    size_t lc = SIZE_MAX; /* the last ':' introduces the IPv4 tail */
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ':')
            lc = i;
    }
    if (lc == SIZE_MAX || !grammar_ipv4(s + lc + 1, n - lc - 1))
        return false;
    if (dc == SIZE_MAX)
        return grammar_hex_groups(s, lc) == 6;
    /* lc == dc + 1: the "::" itself leads into the IPv4 part. lc == dc + 2 would be ":::",
     * whose empty right-hand range hex_groups would count as 0 groups. */
    if (lc == dc + 2)
        return false;
    int left = grammar_hex_groups(s, dc);
    int right = lc == dc + 1 ? 0 : grammar_hex_groups(s + dc + 2, lc - dc - 2);
    return left >= 0 && right >= 0 && left + right <= 4;
}

/* address-literal syntax, brackets included, without the 255-octet limit. */
static bool grammar_literal_syntax(const unsigned char *s, size_t len)
{
    if (len < 3 || s[0] != '[' || s[len - 1] != ']')
        return false;
    const unsigned char *c = s + 1;
    size_t n = len - 2;
    size_t colon = 0;
    while (colon < n && c[colon] != ':')
        colon++;
    if (colon == n)
        return grammar_ipv4(c, n);

    /* Standardized-tag = Ldh-str: letters, digits and hyphens, ending in a letter or digit. */
    if (colon == 0 || !grammar_is_alnum(c[colon - 1]))
        return false;
    for (size_t i = 0; i < colon; i++) {
        if (!grammar_is_alnum(c[i]) && c[i] != '-')
            return false;
    }
    const unsigned char *body = c + colon + 1;
    size_t blen = n - colon - 1;
    if (smtp_word_eq((const char *)c, colon, "IPv6"))
        return grammar_ipv6(body, blen);
    if (blen == 0)
        return false;
    for (size_t i = 0; i < blen; i++) {
        unsigned char d = body[i];
        if (!((d >= 33 && d <= 90) || (d >= 94 && d <= 126)))
            return false;
    }
    return true;
}

bool smtp_valid_domain(const char *s, size_t len, bool utf8)
{
    bool saw8 = false;
    if (s == NULL || len > SMTP_DOMAIN_MAX)
        return false;
    return grammar_domain_syntax((const unsigned char *)s, len, utf8 ? GRAMMAR_UTF8 : GRAMMAR_ASCII,
                                 &saw8);
}

bool smtp_valid_address_literal(const char *s, size_t len)
{
    /* A literal stands where a domain would, so the domain's length limit applies. */
    if (s == NULL || len > SMTP_DOMAIN_MAX)
        return false;
    return grammar_literal_syntax((const unsigned char *)s, len);
}

bool smtp_valid_helo(const char *s, size_t len)
{
    if (s != NULL && len > 0 && s[0] == '[')
        return smtp_valid_address_literal(s, len);
    return smtp_valid_domain(s, len, false);
}

bool smtp_word_eq(const char *s, size_t len, const char *word)
{
    size_t i = 0;
    for (; i < len; i++) {
        unsigned char a = (unsigned char)s[i], b = (unsigned char)word[i];
        if (b == 0)
            return false;
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z')
            b = (unsigned char)(b - 'A' + 'a');
        if (a != b)
            return false;
    }
    return word[i] == 0;
}

/* Cursor over a path being parsed. */
struct grammar_cursor {
    const unsigned char *s;
    size_t len;
    size_t pos;
    enum grammar_octets mode;
    bool saw8;
};

static bool grammar_is_domain_octet(unsigned char c)
{
    return grammar_is_alnum(c) || c == '-' || c == '.' || c >= 0x80;
}

/* Domain at the cursor (the maximal run of octets a domain could contain). Sets *start and *n. */
static bool grammar_take_domain(struct grammar_cursor *cur, size_t *start, size_t *n)
{
    *start = cur->pos;
    while (cur->pos < cur->len && grammar_is_domain_octet(cur->s[cur->pos]))
        cur->pos++;
    *n = cur->pos - *start;
    return grammar_domain_syntax(cur->s + *start, *n, cur->mode, &cur->saw8);
}

/* A-d-l ":" after the '<': At-domain *("," At-domain) ":". Only syntax matters; the route is
 * dropped (RFC 5321 4.1.1.3: "SHOULD strip off the source route"). */
static bool grammar_take_route(struct grammar_cursor *cur)
{
    for (;;) {
        size_t start, n;
        if (cur->pos >= cur->len || cur->s[cur->pos] != '@')
            return false;
        cur->pos++;
        if (!grammar_take_domain(cur, &start, &n))
            return false;
        if (cur->pos >= cur->len)
            return false;
        if (cur->s[cur->pos] == ':') {
            cur->pos++;
            return true;
        }
        if (cur->s[cur->pos] != ',')
            return false;
        cur->pos++;
    }
}

/* Local-part at the cursor. Writes the unquoted form to local[] (only as far as it fits;
 * the caller rejects over-long parts) and the as-written length to *raw. */
static bool grammar_take_local(struct grammar_cursor *cur, struct smtp_path *p, size_t *raw)
{
    size_t start = cur->pos, out = 0;
    const unsigned char *s = cur->s;

    if (cur->pos < cur->len && s[cur->pos] == '"') {
        p->quoted = true;
        cur->pos++;
        for (;;) {
            if (cur->pos >= cur->len)
                return false;
            unsigned char c = s[cur->pos];
            size_t k = 1;
            if (c == '"') {
                cur->pos++;
                break;
            }
            if (c == '\\') {
                if (cur->pos + 1 >= cur->len || s[cur->pos + 1] < 32 || s[cur->pos + 1] > 126)
                    return false;
                cur->pos++;
            } else if (c >= 0x80) {
                k = grammar_utf8_len(s + cur->pos, cur->len - cur->pos, cur->mode);
                if (k == 0)
                    return false;
                cur->saw8 = true;
            } else if (!grammar_is_qtext(c)) {
                return false;
            }
            for (size_t j = 0; j < k; j++, cur->pos++) {
                if (out < SMTP_LOCAL_MAX)
                    p->local[out++] = (char)s[cur->pos];
            }
        }
    } else {
        bool need_atom = true; /* at the start or just after a dot */
        while (cur->pos < cur->len) {
            unsigned char c = s[cur->pos];
            size_t k = 1;
            if (c == '.') {
                if (need_atom)
                    return false;
                need_atom = true;
            } else if (c >= 0x80) {
                k = grammar_utf8_len(s + cur->pos, cur->len - cur->pos, cur->mode);
                if (k == 0)
                    return false;
                cur->saw8 = true;
                need_atom = false;
            } else if (grammar_is_atext(c)) {
                need_atom = false;
            } else {
                break;
            }
            for (size_t j = 0; j < k; j++, cur->pos++) {
                if (out < SMTP_LOCAL_MAX)
                    p->local[out++] = (char)s[cur->pos];
            }
        }
        if (need_atom)
            return false; /* empty, or a trailing dot */
    }
    p->local[out] = 0;
    *raw = cur->pos - start;
    return true;
}

static bool grammar_has_8bit(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s >= 0x80)
            return true;
    }
    return false;
}

/* Everything of smtp_parse_path except clearing the outputs on failure. */
static enum smtp_path_err grammar_path(const char *str, size_t len, unsigned flags,
                                       struct smtp_path *p, size_t *consumed)
{
    const unsigned char *s = (const unsigned char *)str;

    if (s == NULL || len < 2 || s[0] != '<')
        return SMTP_PATH_SYNTAX;
    if (s[1] == '>') {
        if (!(flags & SMTP_PATH_REVERSE))
            return SMTP_PATH_SYNTAX;
        p->null = true;
        *consumed = 2;
        return SMTP_PATH_OK;
    }
    if ((flags & SMTP_PATH_POSTMASTER) && len >= 12 && s[11] == '>' &&
        smtp_word_eq(str + 1, 10, "postmaster")) {
        p->postmaster = true;
        memcpy(p->local, "postmaster", sizeof "postmaster");
        *consumed = 12;
        return SMTP_PATH_OK;
    }

    /* Without SMTPUTF8, still parse 8-bit octets loosely: a path that is fine apart from its
     * non-ASCII octets deserves 553 5.6.7 rather than a plain syntax error. */
    struct grammar_cursor cur = {
        .s = s,
        .len = len,
        .pos = 1,
        .mode = (flags & SMTP_PATH_UTF8) ? GRAMMAR_UTF8 : GRAMMAR_LOOSE,
        .saw8 = false,
    };
    if (s[1] == '@') {
        if (!grammar_take_route(&cur))
            return SMTP_PATH_SYNTAX;
        p->had_route = true;
    }

    size_t local_raw;
    if (!grammar_take_local(&cur, p, &local_raw))
        return SMTP_PATH_SYNTAX;
    if (cur.pos >= len || s[cur.pos] != '@')
        return SMTP_PATH_SYNTAX;
    cur.pos++;

    size_t dstart, dlen;
    if (cur.pos < len && s[cur.pos] == '[') {
        /* dcontent excludes ']', so the first one closes the literal. */
        dstart = cur.pos;
        while (cur.pos < len && s[cur.pos] != ']')
            cur.pos++;
        if (cur.pos >= len)
            return SMTP_PATH_SYNTAX;
        cur.pos++;
        dlen = cur.pos - dstart;
        if (!grammar_literal_syntax(s + dstart, dlen))
            return SMTP_PATH_SYNTAX;
        p->literal = true;
    } else if (!grammar_take_domain(&cur, &dstart, &dlen)) {
        return SMTP_PATH_SYNTAX;
    }
    if (cur.pos >= len || s[cur.pos] != '>')
        return SMTP_PATH_SYNTAX;
    cur.pos++;

    if (cur.saw8 && !(flags & SMTP_PATH_UTF8))
        return SMTP_PATH_NEEDS_UTF8;
    if (local_raw > SMTP_LOCAL_MAX || dlen > SMTP_DOMAIN_MAX || cur.pos > SMTP_PATH_MAX)
        return SMTP_PATH_TOO_LONG;

    memcpy(p->domain, s + dstart, dlen);
    p->domain[dlen] = 0;
    p->utf8 = grammar_has_8bit(p->local) || grammar_has_8bit(p->domain);
    *consumed = cur.pos;
    return SMTP_PATH_OK;
}

/* On any error *out is all zero and *consumed is 0. Checks run in the order syntax, then
 * NEEDS_UTF8, then the length limits: the 8-bit octets are the more fundamental fault. */
enum smtp_path_err smtp_parse_path(const char *s, size_t len, unsigned flags, struct smtp_path *out,
                                   size_t *consumed)
{
    struct smtp_path scratch;
    size_t used = 0;
    struct smtp_path *p = out != NULL ? out : &scratch;

    memset(p, 0, sizeof *p);
    enum smtp_path_err err = grammar_path(s, len, flags, p, &used);
    if (err != SMTP_PATH_OK) {
        memset(p, 0, sizeof *p);
        used = 0;
    }
    if (consumed != NULL)
        *consumed = used;
    return err;
}

/* Bounded output buffer that still counts what did not fit, as snprintf does. */
struct grammar_out {
    char *buf;
    size_t n;
    size_t len;
};

static void grammar_put(struct grammar_out *o, char c)
{
    if (o->len + 1 < o->n)
        o->buf[o->len] = c;
    o->len++;
}

static bool grammar_is_dot_string(const char *s, size_t n)
{
    bool need_atom = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (need_atom)
                return false;
            need_atom = true;
        } else if (grammar_is_atext(c) || c >= 0x80) {
            need_atom = false;
        } else {
            return false;
        }
    }
    return !need_atom;
}

/* The return value is the full length, like snprintf: a result >= n means truncation. */
size_t smtp_path_format(const struct smtp_path *p, char *buf, size_t n)
{
    struct grammar_out o = {.buf = buf, .n = n, .len = 0};

    if (!p->null) {
        size_t llen = strnlen(p->local, sizeof p->local);
        size_t dlen = strnlen(p->domain, sizeof p->domain);
        if (grammar_is_dot_string(p->local, llen)) {
            for (size_t i = 0; i < llen; i++)
                grammar_put(&o, p->local[i]);
        } else {
            grammar_put(&o, '"');
            for (size_t i = 0; i < llen; i++) {
                if (p->local[i] == '"' || p->local[i] == '\\')
                    grammar_put(&o, '\\');
                grammar_put(&o, p->local[i]);
            }
            grammar_put(&o, '"');
        }
        if (!(p->postmaster && dlen == 0)) {
            grammar_put(&o, '@');
            for (size_t i = 0; i < dlen; i++)
                grammar_put(&o, p->domain[i]);
        }
    }
    if (n > 0)
        buf[o.len < n ? o.len : n - 1] = 0;
    return o.len;
}

int smtp_parse_params(const char *s, size_t len, bool utf8, struct smtp_param *out, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, count = 0;
    enum grammar_octets mode = utf8 ? GRAMMAR_UTF8 : GRAMMAR_ASCII;

    if (s == NULL)
        return len == 0 ? 0 : -1;
    if (out == NULL)
        max = 0;
    for (;;) {
        while (i < len && u[i] == ' ')
            i++;
        if (i == len)
            break;

        size_t key = i;
        if (!grammar_is_alnum(u[i]))
            return -1;
        while (i < len && (grammar_is_alnum(u[i]) || u[i] == '-'))
            i++;
        size_t keylen = i - key;

        const char *value = NULL;
        size_t valuelen = 0;
        if (i < len && u[i] == '=') {
            size_t v = ++i;
            while (i < len && u[i] != ' ') {
                unsigned char c = u[i];
                if (c >= 33 && c <= 126 && c != '=') {
                    i++;
                } else if (c >= 0x80) {
                    size_t k = grammar_utf8_len(u + i, len - i, mode);
                    if (k == 0)
                        return -1;
                    i += k;
                } else {
                    return -1;
                }
            }
            if (i == v)
                return -1;
            value = s + v;
            valuelen = i - v;
        }
        if (i < len && u[i] != ' ')
            return -1;

        if (count < max) {
            out[count].key = s + key;
            out[count].keylen = keylen;
            out[count].value = value;
            out[count].valuelen = valuelen;
        }
        count++;
    }
    /* A syntax error anywhere wins over "too many", so keep scanning past max. */
    if (count > max || count > INT_MAX)
        return -2;
    return (int)count;
}

/* Text for delivery reports (dsn_priv.h): the byte buffer, the cleaners that make a remote
 * server's reply or a hostile address harmless (no line breaks, controls or escape sequences
 * reach a header or a status field), the line breaker that keeps every line within RFC 5322's
 * limits, RFC 5322 dates, and the address forms of RFC 3464 and RFC 6533. */
#include "relay/dsn_priv.h"

#include "util/utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void db_put(struct dbuf *b, const void *s, size_t n)
{
    if (b->oom || n == 0)
        return;
    if (n >= b->cap - b->n || b->cap == 0) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n <= n) {
            if (cap > ((size_t)-1) / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void db_puts(struct dbuf *b, const char *s)
{
    db_put(b, s, strlen(s));
}

void db_printf(struct dbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    /* only short, fixed texts go through here: a longer one is a bug, not input */
    if (n < 0 || (size_t)n >= sizeof tmp)
        b->oom = true;
    else
        db_put(b, tmp, (size_t)n);
}

void db_free(struct dbuf *b)
{
    free(b->p);
    *b = (struct dbuf){0};
}

/* The cleaners' common walk: utf8 keeps well-formed characters from U+00A0 on. Runs of white
 * space become one space, so a reply's joined lines read as one. */
static void clean(struct dbuf *out, const char *s, size_t max, bool utf8)
{
    if (!s)
        return;
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strnlen(s, max + 1), i = 0, start = out->n;
    bool space = false; /* a space is owed before the next character */
    while (i < n && i < max) {
        unsigned char c = u[i];
        if (c == '\r' || c == '\n' || c == '\t' || c == ' ') {
            space = out->n > start;
            i++;
            continue;
        }
        if (space)
            db_put(out, " ", 1);
        space = false;
        if (c >= 0x21 && c < 0x7f) {
            db_put(out, &u[i], 1);
            i++;
            continue;
        }
        size_t k = c >= 0x80 ? utf8_char_len(u + i, n - i) : 0;
        /* a character running past max is cut off with the rest */
        if (k > 0 && i + k > max)
            break;
        /* U+0080..U+009F are C1 controls: CSI (U+009B) starts terminal escape sequences */
        bool c1 = k == 2 && c == 0xC2 && u[i + 1] < 0xA0;
        if (utf8 && k > 0 && !c1)
            db_put(out, &u[i], k);
        else
            db_put(out, "?", 1);
        i += k > 0 ? k : 1;
    }
    if (n > max)
        db_put(out, out->n > start ? " ..." : "...", out->n > start ? 4 : 3);
}

void dsn_clean_ascii(struct dbuf *out, const char *s, size_t max)
{
    clean(out, s, max, false);
}

void dsn_clean_utf8(struct dbuf *out, const char *s, size_t max)
{
    clean(out, s, max, true);
}

/* Where to cut s (n octets, n > want) so that the first piece has at most want octets and
 * does not end inside a UTF-8 character; at least 1. */
static size_t cut_at(const char *s, size_t n, size_t want)
{
    size_t k = want;
    for (int back = 0; back < 3 && k > 1 && k < n && ((unsigned char)s[k] & 0xC0) == 0x80; back++)
        k--;
    return k;
}

void dsn_wrap(struct dbuf *b, size_t col, const char *s, size_t n, const char *lead)
{
    size_t leadn = strlen(lead), i = 0;
    bool content = false; /* a word is on the current line */
    while (i < n) {
        size_t ws = i;
        while (ws < n && s[ws] == ' ')
            ws++;
        size_t we = ws;
        while (we < n && s[we] != ' ')
            we++;
        size_t spaces = ws - i, wlen = we - ws;
        if (content && spaces > 0 && wlen > 0 && col + spaces + wlen > DSN_SOFT_LINE) {
            /* the break stands for one of the spaces */
            db_put(b, "\r\n", 2);
            db_put(b, lead, leadn);
            col = leadn;
            spaces--;
        }
        db_put(b, s + i, spaces);
        col += spaces;
        const char *w = s + ws;
        while (col + wlen > DSN_HARD_LINE) {
            size_t room = DSN_HARD_LINE > col ? DSN_HARD_LINE - col : 1;
            size_t k = cut_at(w, wlen, room);
            db_put(b, w, k);
            db_put(b, "\r\n", 2);
            db_put(b, lead, leadn);
            col = leadn;
            w += k;
            wlen -= k;
        }
        db_put(b, w, wlen);
        col += wlen;
        content = content || wlen > 0;
        i = we;
    }
}

void dsn_field(struct dbuf *b, const char *name, const char *s, size_t n)
{
    db_puts(b, name);
    db_put(b, ": ", 2);
    dsn_wrap(b, strlen(name) + 2, s, n, " ");
    db_put(b, "\r\n", 2);
}

int dsn_date(char out[DSN_DATE_MAX], time_t t)
{
    /* fixed English names: strftime's %a and %b follow the locale */
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year < 0 || tm.tm_year > 9999 - 1900)
        return -1;
    snprintf(out, DSN_DATE_MAX, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday],
             tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return 0;
}

bool dsn_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

/* RFC 6533 utf-8-addr-xtext of s: QCHAR as itself, anything else as \x{HEX}. backslash:
 * escape '\' too (false for an ORCPT already in this form, whose '\' starts an escape). */
static void put_xtext(struct dbuf *b, const char *s, bool backslash)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (c < 0x20 || c == 0x7f) {
            db_put(b, "?", 1);
            i++;
        } else if (c < 0x7f) {
            if (c == ' ' || c == '+' || c == '=' || (c == '\\' && backslash))
                db_printf(b, "\\x{%02X}", c);
            else
                db_put(b, &u[i], 1);
            i++;
        } else {
            size_t k = utf8_char_len(u + i, n - i);
            if (k == 0) {
                db_put(b, "?", 1);
                i++;
                continue;
            }
            unsigned long cp = c & (0xFF >> (k + 1));
            for (size_t j = 1; j < k; j++)
                cp = cp << 6 | (u[i + j] & 0x3F);
            db_printf(b, "\\x{%lX}", cp);
            i += k;
        }
    }
}

void dsn_addr_value(struct dbuf *b, const char *addr)
{
    bool ascii = true;
    for (const char *p = addr; *p && ascii; p++)
        ascii = (unsigned char)*p < 0x80;
    if (ascii) {
        db_puts(b, "rfc822; ");
        for (const char *p = addr; *p; p++)
            db_put(b, (unsigned char)*p < 0x20 || *p == 0x7f ? "?" : p, 1);
        return;
    }
    db_puts(b, "utf-8; ");
    put_xtext(b, addr, true);
}

void dsn_orcpt_value(struct dbuf *b, const char *orcpt)
{
    const char *semi = strchr(orcpt, ';');
    size_t tn = semi ? (size_t)(semi - orcpt) : 0;
    bool typed = tn > 0 && tn <= 32;
    for (size_t i = 0; typed && i < tn; i++) {
        char c = orcpt[i];
        typed =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    }
    if (!typed) {
        dsn_addr_value(b, orcpt);
        return;
    }
    const char *a = semi + 1;
    while (*a == ' ')
        a++;
    if (tn == 6 && strncasecmp(orcpt, "rfc822", 6) == 0) {
        dsn_addr_value(b, a);
    } else if (tn == 5 && strncasecmp(orcpt, "utf-8", 5) == 0) {
        /* already utf-8-addr-xtext or -unitext: only its non-ASCII needs escaping */
        db_puts(b, "utf-8; ");
        put_xtext(b, a, false);
    } else {
        db_put(b, orcpt, tn);
        db_put(b, "; ", 2);
        dsn_clean_ascii(b, a, DSN_HARD_LINE);
    }
}

/* The original message inside a delivery report (dsn_priv.h): its header section for
 * text/rfc822-headers, cut at a line end to a size cap, or the whole of it for message/rfc822.
 * The bytes are the queued message's, which anyone could have written: every line leaves here
 * ending in CRLF, within 998 octets, with no NUL and no bare CR, so that the part is what its
 * 7bit or 8bit transfer encoding promises and nothing in it can end it early (the boundary
 * around it is checked against it by dsn.c). */
#include "relay/dsn_priv.h"

#include "util/utf8.h"

#include <string.h>

static const unsigned char question = '?';

/* One line of the original (n octets, its line break taken off) into out, then CRLF. A header
 * line loses its controls but HTAB and its malformed UTF-8, and goes on after a break with SP
 * (a folded line); a body line loses only NUL and CR, 8-bit text being allowed there. */
static void put_line(struct dbuf *out, const unsigned char *s, size_t n, bool header, bool *eight)
{
    size_t col = 0, i = 0;
    while (i < n) {
        unsigned char c = s[i];
        const unsigned char *w = &s[i];
        size_t k = 1;
        if (header && ((c < 0x20 && c != '\t') || c == 0x7f)) {
            w = &question;
        } else if (header && c >= 0x80) {
            k = utf8_char_len(s + i, n - i);
            if (k == 0)
                w = &question;
            *eight |= k > 0;
            k = k > 0 ? k : 1;
        } else if (!header && (c == 0 || c == '\r')) {
            w = &question;
        } else if (c >= 0x80) {
            *eight = true;
        }
        size_t wn = w == &question ? 1 : k;
        if (col + wn > DSN_HARD_LINE) {
            db_put(out, header ? "\r\n " : "\r\n", header ? 3 : 2);
            col = header ? 1 : 0;
        }
        db_put(out, w, wn);
        col += wn;
        i += k;
    }
    db_put(out, "\r\n", 2);
}

/* The line of s (len octets) starting at i: its length without LF or CRLF into *n, where the
 * next one starts into *next. */
static void line_at(const unsigned char *s, size_t len, size_t i, size_t *n, size_t *next)
{
    const unsigned char *lf = memchr(s + i, '\n', len - i);
    size_t end = lf ? (size_t)(lf - s) : len;
    *next = lf ? end + 1 : len;
    *n = end - i;
    if (*n > 0 && s[end - 1] == '\r')
        (*n)--;
}

void dsn_orig_headers(struct dbuf *out, const char *orig, size_t len, size_t max, bool *cut,
                      bool *eight)
{
    const unsigned char *s = (const unsigned char *)orig;
    struct dbuf line = {0};
    size_t start = out->n, i = 0;
    *cut = false;
    *eight = false;
    while (i < len) {
        size_t n, next;
        line_at(s, len, i, &n, &next);
        if (n == 0)
            break; /* the empty line that ends the header section */
        bool e8 = false;
        line.n = 0;
        /* a line longer than the cap cannot fit however it is cleaned: not even read */
        if (n <= max)
            put_line(&line, s + i, n, true, &e8);
        if (n > max || out->n - start + line.n > max) {
            *cut = true;
            break;
        }
        db_put(out, line.p, line.n);
        *eight |= e8;
        i = next;
    }
    out->oom |= line.oom;
    db_free(&line);
}

void dsn_orig_full(struct dbuf *out, const char *orig, size_t len, bool *eight)
{
    const unsigned char *s = (const unsigned char *)orig;
    bool header = true;
    *eight = false;
    for (size_t i = 0; i < len;) {
        size_t n, next;
        line_at(s, len, i, &n, &next);
        if (n == 0)
            header = false;
        put_line(out, s + i, n, header, eight);
        i = next;
    }
}

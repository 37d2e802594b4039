/* Printing text that came from outside (the network, a log someone may have edited) where a
 * person reads it: the one place that decides which bytes a terminal would obey and how they
 * are shown instead, for every `tern` command that prints such text; and how times are
 * shown. */
#include "cli/cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Is p (with at least 3 bytes left) the UTF-8 encoding of a bidirectional embedding, override
 * or isolate (U+202A..U+202E, U+2066..U+2069)? Those reorder what follows on screen, so an
 * address could pose as another. */
static bool is_bidi(const unsigned char *p, size_t left)
{
    return left >= 3 && p[0] == 0xe2 &&
           ((p[1] == 0x80 && p[2] >= 0xaa && p[2] <= 0xae) ||
            (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9));
}

void cli_put_safe(FILE *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    for (; p < end; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            fprintf(out, "\\x%02x", *p);
        } else if (*p == '\\') {
            fputs("\\\\", out);
        } else if (*p == 0xc2 && end - p >= 2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            fprintf(out, "\\u%04x", (unsigned)p[1]);
            p++; /* the second byte of the pair */
        } else if (is_bidi(p, (size_t)(end - p))) {
            fprintf(out, "\\u%04x", 0x2000u | (unsigned)(p[1] & 0x3f) << 6 | (p[2] & 0x3f));
            p += 2;
        } else {
            putc(*p, out);
        }
    }
}

/* The length of the UTF-8 sequence at p (left bytes), or 0 when it is not a valid one: no
 * overlong forms, no surrogates, nothing past U+10FFFF. */
static size_t utf8_len(const unsigned char *p, size_t left)
{
    size_t n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    if (n == 0 || left < n || (p[0] >= 0xf5))
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((n == 3 && p[0] == 0xe0 && p[1] < 0xa0) || (n == 3 && p[0] == 0xed && p[1] >= 0xa0) ||
        (n == 4 && p[0] == 0xf0 && p[1] < 0x90) || (n == 4 && p[0] == 0xf4 && p[1] >= 0x90))
        return 0;
    return n;
}

size_t cli_put_safe_cols(FILE *out, const char *s, size_t len, size_t maxcols)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    size_t cols = 0;
    while (p < end) {
        char esc[16];
        size_t take = 1, width;
        if (*p < 0x20 || *p == 0x7f) {
            width = (size_t)snprintf(esc, sizeof esc, "\\x%02x", *p);
        } else if (*p == '\\') {
            width = (size_t)snprintf(esc, sizeof esc, "\\\\");
        } else if (*p < 0x80) {
            esc[0] = (char)*p;
            esc[1] = '\0';
            width = 1;
        } else if ((take = utf8_len(p, (size_t)(end - p))) == 0) {
            take = 1; /* not UTF-8: a lone byte some terminals would obey (0x9b is CSI) */
            width = (size_t)snprintf(esc, sizeof esc, "\\x%02x", *p);
        } else if (take == 2 && p[0] == 0xc2 && p[1] <= 0x9f) {
            width = (size_t)snprintf(esc, sizeof esc, "\\u%04x", (unsigned)p[1]);
        } else if (is_bidi(p, (size_t)(end - p))) {
            width = (size_t)snprintf(esc, sizeof esc, "\\u%04x",
                                     0x2000u | (unsigned)(p[1] & 0x3f) << 6 | (p[2] & 0x3f));
        } else {
            memcpy(esc, p, take);
            esc[take] = '\0';
            width = 1;
        }
        if (cols + width > maxcols)
            break;
        fwrite(esc, 1, strlen(esc), out);
        cols += width;
        p += take;
    }
    return (size_t)(p - (const unsigned char *)s);
}

void cli_format_time(time_t t, char *out, size_t outlen)
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, outlen, "@%lld", (long long)t);
}

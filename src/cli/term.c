/* Printing text that came from outside (the network, a log someone may have edited) where a
 * person reads it: the one place that decides which bytes a terminal would obey and how they
 * are shown instead, for every `tern` command that prints such text; and how times are
 * shown. */
#include "cli/cli.h"

#include <stdbool.h>
#include <stdio.h>
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

void cli_format_time(time_t t, char *out, size_t outlen)
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, outlen, "@%lld", (long long)t);
}

/* SMTP reply formatting into the session's output buffer (see reply.h). */
#include "smtp/reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLY_LINE_MAX 512 /* RFC 5321 4.5.3.1.5: reply line including the code and CRLF */

static bool reserve(struct smtp_out *o, size_t n)
{
    if (o->failed)
        return false;
    if (o->off > 0 && o->off == o->len)
        o->off = o->len = 0;
    if (o->len + n <= o->cap)
        return true;
    if (o->off > 0) { /* slide unsent bytes to the front before growing */
        memmove(o->buf, o->buf + o->off, o->len - o->off);
        o->len -= o->off;
        o->off = 0;
        if (o->len + n <= o->cap)
            return true;
    }
    size_t cap = o->cap ? o->cap : 1024;
    while (cap < o->len + n)
        cap *= 2;
    char *b = realloc(o->buf, cap);
    if (!b) {
        o->failed = true;
        return false;
    }
    o->buf = b;
    o->cap = cap;
    return true;
}

static void add_line(struct smtp_out *o, bool esc, int code, char sep, const char *enh,
                     const char *text)
{
    char line[REPLY_LINE_MAX];
    int n;
    if (esc && enh)
        n = snprintf(line, sizeof line - 2, "%03d%c%s %s", code, sep, enh, text);
    else
        n = snprintf(line, sizeof line - 2, "%03d%c%s", code, sep, text);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line - 2 ? (size_t)n : sizeof line - 3;
    for (size_t i = 4; i < len; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    line[len++] = '\r';
    line[len++] = '\n';
    if (!reserve(o, len))
        return;
    memcpy(o->buf + o->len, line, len);
    o->len += len;
}

void reply_add(struct smtp_out *o, bool esc, int code, const char *enh, const char *fmt, ...)
{
    char text[REPLY_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    add_line(o, esc, code, ' ', enh, text);
}

void reply_add_lines(struct smtp_out *o, bool esc, int code, const char *enh,
                     const char *const *lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        add_line(o, esc, code, i + 1 < n ? '-' : ' ', enh, lines[i]);
}

size_t reply_pending(const struct smtp_out *o)
{
    return o->len - o->off;
}

void reply_sent(struct smtp_out *o, size_t n)
{
    o->off += n < reply_pending(o) ? n : reply_pending(o);
}

void reply_free(struct smtp_out *o)
{
    free(o->buf);
    memset(o, 0, sizeof *o);
}

/* The client's reply parser and the struct tern_reply helpers of the public API: an incremental
 * reader of multi-line SMTP replies from a hostile server, bounded in line length and line
 * count, which strips the RFC 3463 enhanced status code of each line into enh. A reply that
 * breaks the grammar is never guessed at: it is an error naming what was wrong, because a client
 * that resynchronises on garbage would match later replies to the wrong commands. */
#include "client/reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rparse_init(struct rparse *p)
{
    memset(p, 0, sizeof *p);
}

static void drop_lines(struct rparse *p)
{
    for (size_t i = 0; i < p->nlines; i++)
        free(p->lines[i]);
    free(p->lines);
    p->lines = NULL;
    p->nlines = 0;
    p->code = 0;
    p->done = false;
}

void rparse_reset(struct rparse *p)
{
    drop_lines(p);
    p->len = 0;
    p->failed = false;
    p->err[0] = '\0';
}

static int fail(struct rparse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct rparse *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    p->failed = true;
    return -1;
}

/* The code of a line, or -1 when its first three octets are not a reply code RFC 5321 §4.2
 * allows: 2yz to 5yz (1yz is not used in SMTP), second digit 0 to 5. */
static int line_code(const char *s)
{
    if (s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '5' || s[2] < '0' || s[2] > '9')
        return -1;
    return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

/* Printable form of the first octets of a bad line, for an error message. */
static void show(char *out, size_t n, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < 12 && o + 5 < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f)
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, n - o, "\\x%02x", ch);
    }
    out[o] = '\0';
}

/* One complete line (without its LF) in p->line: checks it and keeps its text. */
static int end_line(struct rparse *p)
{
    size_t len = p->len;
    if (len > 0 && p->line[len - 1] == '\r')
        len--;
    p->len = 0;
    if (len > TERN_REPLY_MAX_LINE)
        return fail(p, "the server sent a reply line longer than %d octets", TERN_REPLY_MAX_LINE);
    if (memchr(p->line, '\r', len))
        return fail(p, "the server sent a bare CR inside a reply line");
    char shown[64];
    show(shown, sizeof shown, p->line, len);
    int code = len >= 3 ? line_code(p->line) : -1;
    if (code < 0)
        return fail(p, "the server sent \"%s\", which does not begin with a reply code 200-559",
                    shown);
    bool last;
    if (len == 3 || p->line[3] == ' ')
        last = true; /* RFC 5321 §4.2: the text after the code may be absent */
    else if (p->line[3] == '-')
        last = false;
    else
        return fail(p, "the server sent \"%s\": no space or hyphen after the reply code", shown);
    if (p->nlines > 0 && code != p->code)
        return fail(p, "the server mixed reply codes in one reply (%d, then %d)", p->code, code);
    if (p->nlines >= TERN_REPLY_MAX_LINES)
        return fail(p, "the server sent a reply of more than %d lines", TERN_REPLY_MAX_LINES);
    if (p->nlines == 0) {
        p->lines = calloc(TERN_REPLY_MAX_LINES, sizeof *p->lines);
        if (!p->lines)
            return fail(p, "out of memory reading a reply");
    }
    size_t tlen = len > 4 ? len - 4 : 0;
    char *text = malloc(tlen + 1);
    if (!text)
        return fail(p, "out of memory reading a reply");
    memcpy(text, p->line + 4, tlen);
    text[tlen] = '\0';
    p->lines[p->nlines++] = text;
    p->code = code;
    p->done = last;
    return 0;
}

int rparse_feed(struct rparse *p, const char *buf, size_t len, size_t *used)
{
    size_t i = 0;
    int rc = 0;
    if (p->failed || p->done) {
        *used = 0;
        return p->failed ? -1 : 1;
    }
    while (i < len) {
        char ch = buf[i++];
        if (ch == '\0') {
            rc = fail(p, "the server sent a NUL byte in a reply");
            break;
        }
        if (ch == '\n') {
            if ((rc = end_line(p)) < 0)
                break;
            if (p->done) {
                rc = 1;
                break;
            }
            continue;
        }
        /* room for TERN_REPLY_MAX_LINE octets and the CR before LF; one more is too long */
        if (p->len == sizeof p->line) {
            rc = fail(p, "the server sent a reply line longer than %d octets", TERN_REPLY_MAX_LINE);
            break;
        }
        p->line[p->len++] = ch;
    }
    *used = i;
    return rc;
}

/* The enhanced status code at the start of s (class must match the reply code's), its length,
 * or 0 when there is none: class "." 1*3digit "." 1*3digit, then space or end (RFC 3463). */
static size_t enh_len(const char *s, int code)
{
    if (s[0] != (char)('0' + code / 100) || s[1] != '.')
        return 0;
    size_t i = 2;
    for (int part = 0; part < 2; part++) {
        size_t start = i;
        while (s[i] >= '0' && s[i] <= '9' && i - start < 4)
            i++;
        if (i == start || i - start > 3)
            return 0;
        if (part == 0) {
            if (s[i] != '.')
                return 0;
            i++;
        }
    }
    return s[i] == ' ' || s[i] == '\0' ? i : 0;
}

/* Removes the first n octets (and a space after them) from s in place. */
static void cut(char *s, size_t n)
{
    if (s[n] == ' ')
        n++;
    memmove(s, s + n, strlen(s + n) + 1);
}

int rparse_take(struct rparse *p, struct tern_reply *r)
{
    tern_reply_free(r);
    if (!p->done)
        return -1;
    r->code = p->code;
    size_t n = 0;
    if (p->code != 334 && (n = enh_len(p->lines[0], p->code)) > 0) {
        memcpy(r->enh, p->lines[0], n);
        r->enh[n] = '\0';
        /* RFC 2034 puts the code on every line; strip it wherever it is the same one */
        for (size_t i = 0; i < p->nlines; i++)
            if (strncmp(p->lines[i], r->enh, n) == 0 && enh_len(p->lines[i], p->code) == n)
                cut(p->lines[i], n);
    }
    size_t total = 0;
    for (size_t i = 0; i < p->nlines; i++)
        total += strlen(p->lines[i]) + 1;
    char *text = malloc(total);
    if (!text) {
        drop_lines(p);
        creply_local(r, TERN_CODE_CONNECTION, TERN_CMD_OTHER, "out of memory reading a reply");
        return -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < p->nlines; i++) {
        size_t l = strlen(p->lines[i]);
        memcpy(text + o, p->lines[i], l);
        o += l;
        text[o++] = i + 1 < p->nlines ? '\n' : '\0';
    }
    r->text = text;
    r->lines = p->lines; /* calloc'd for TERN_REPLY_MAX_LINES; the caller only sees nlines */
    r->nlines = p->nlines;
    p->lines = NULL;
    p->nlines = 0;
    p->code = 0;
    p->done = false;
    return 0;
}

void creply_local(struct tern_reply *r, int code, enum tern_cmd cmd, const char *fmt, ...)
{
    tern_reply_free(r);
    r->code = code;
    r->cls = TERN_NEGATIVE;
    r->cmd = cmd;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    r->lines = malloc(sizeof *r->lines);
    r->text = strdup(buf);
    char *line = strdup(buf);
    if (!r->lines || !r->text || !line) {
        /* out of memory: code and class still tell the caller; tern_reply_text gives "" */
        free(r->lines);
        free(r->text);
        free(line);
        r->lines = NULL;
        r->text = NULL;
        return;
    }
    r->lines[0] = line;
    r->nlines = 1;
}

int creply_copy(struct tern_reply *dst, const struct tern_reply *src)
{
    tern_reply_free(dst);
    *dst = *src;
    dst->lines = NULL;
    dst->nlines = 0;
    dst->text = src->text ? strdup(src->text) : NULL;
    if (src->nlines > 0)
        dst->lines = calloc(src->nlines, sizeof *dst->lines);
    if ((src->text && !dst->text) || (src->nlines > 0 && !dst->lines))
        goto oom;
    for (size_t i = 0; i < src->nlines; i++) {
        if (!(dst->lines[i] = strdup(src->lines[i])))
            goto oom;
        dst->nlines = i + 1;
    }
    return 0;
oom:
    creply_local(dst, TERN_CODE_LOCAL, src->cmd, "out of memory copying a reply");
    return -1;
}

const char *tern_reply_text(const struct tern_reply *r)
{
    return r && r->text ? r->text : "";
}

void tern_reply_free(struct tern_reply *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nlines; i++)
        free(r->lines[i]);
    free(r->lines);
    free(r->text);
    memset(r, 0, sizeof *r);
}

const char *tern_class_name(enum tern_class cls)
{
    switch (cls) {
    case TERN_POSITIVE:
        return "positive";
    case TERN_INTERMEDIATE:
        return "intermediate";
    case TERN_NEGATIVE:
        break;
    }
    return "negative";
}

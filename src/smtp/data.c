/* The message-data scanner (see data.h): dot transparency, end-of-data detection that only
 * <CRLF>.<CRLF> triggers, bare CR/LF detection, line and size limits, Received: counting. */
#include "smtp/data.h"

#include <ctype.h>
#include <string.h>

enum { ST_BOL, ST_MID, ST_CR, ST_DOT, ST_DOT_CR };

void smtp_data_init(struct smtp_data *d, bool raw, uint64_t max_size)
{
    memset(d, 0, sizeof *d);
    d->raw = raw;
    d->max_size = max_size;
    d->in_header = true;
    d->state = ST_BOL;
}

bool smtp_data_failed(const struct smtp_data *d)
{
    return d->bare_crlf || d->line_too_long || d->too_big || d->received > SMTP_DATA_MAX_RECEIVED;
}

static void from_add(struct smtp_data *d, const char *s, size_t n)
{
    if (d->from_len + n > sizeof d->from) {
        d->from_overflow = true;
        return;
    }
    memcpy(d->from + d->from_len, s, n);
    d->from_len += n;
}

/* One octet of a line's content (not its CRLF): line limit, header-name capture, and the From:
 * field's body with its continuation lines. */
static void line_octet(struct smtp_data *d, char c)
{
    d->line_len++;
    if (!d->raw && d->line_len > SMTP_DATA_LINE_MAX - 2)
        d->line_too_long = true;
    if (!d->in_header)
        return;
    if (d->line_len == 1) {
        if (c != ' ' && c != '\t')
            d->in_from = d->in_msgid = false; /* a new field */
        else if (d->in_from)
            from_add(d, "\r\n", 2); /* folding is part of the field body */
    }
    if (d->in_from)
        from_add(d, &c, 1);
    if (d->in_msgid && d->msgid_len < sizeof d->msgid - 1) {
        d->msgid[d->msgid_len++] = c;
        d->msgid[d->msgid_len] = '\0';
    }
    if (d->hdr_len < sizeof d->hdr - 1 && d->hdr_len + 1 == d->line_len) {
        d->hdr[d->hdr_len++] = (char)tolower((unsigned char)c);
        if (d->hdr_len == 9 && memcmp(d->hdr, "received:", 9) == 0)
            d->received++;
        if (d->hdr_len == 5 && memcmp(d->hdr, "from:", 5) == 0) {
            d->in_from = true;
            d->nfrom++;
        }
        if (d->hdr_len == 7 && memcmp(d->hdr, "sender:", 7) == 0)
            d->nsender++;
        if (d->hdr_len == 11 && memcmp(d->hdr, "message-id:", 11) == 0 && d->msgid_len == 0)
            d->in_msgid = true; /* the first one only */
    }
}

static void line_end(struct smtp_data *d)
{
    if (d->in_header && d->line_len == 0)
        d->in_header = false; /* the empty line that ends the header section */
    d->line_len = 0;
    d->hdr_len = 0;
}

/* Counts an octet of the message and writes it while the message can still be accepted: once
 * it is doomed there is no point in storing more. */
static void put(struct smtp_data *d, char c, char *out, size_t *o)
{
    d->size++;
    if (d->size > d->max_size)
        d->too_big = true;
    if (!smtp_data_failed(d))
        out[(*o)++] = c;
}

/* Is c, at this point, the CR of the empty line that ends the header section, where the caller
 * asked to stop? Then the stop is taken (once). */
static bool header_stop(struct smtp_data *d, char c)
{
    /* BDAT is stored as sent and may end its lines with a bare LF: then LF LF ends the header */
    if (!d->stop_at_header_end || (c != '\r' && !(d->raw && c == '\n')) || !d->in_header ||
        d->line_len != 0)
        return false;
    d->stop_at_header_end = false;
    d->header_end = true;
    d->header_end_lf = c == '\n';
    return true;
}

static size_t feed_raw(struct smtp_data *d, const char *in, size_t n, char *out, size_t cap,
                       size_t *outlen)
{
    size_t i = 0, o = 0;
    for (; i < n && o < cap; i++) {
        char c = in[i];
        if (header_stop(d, c))
            break;
        put(d, c, out, &o);
        if (c == '\n')
            line_end(d);
        else if (c != '\r')
            line_octet(d, c);
    }
    *outlen = o;
    return i;
}

size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t n, char *out, size_t cap,
                      size_t *outlen)
{
    if (d->raw)
        return feed_raw(d, in, n, out, cap, outlen);
    size_t i = 0, o = 0;
    while (i < n && !d->done && cap - o >= 2) {
        char c = in[i];
        switch (d->state) {
        case ST_BOL:
            if (c == '.') {
                d->state = ST_DOT;
                i++;
            } else {
                d->state = ST_MID; /* take c as the line's first octet */
            }
            break;
        case ST_DOT:
            if (c == '\r') {
                d->state = ST_DOT_CR;
                i++;
            } else {
                d->state = ST_MID; /* a stuffed dot: dropped, c is the first octet */
            }
            break;
        case ST_DOT_CR:
            if (c == '\n') {
                i++;
                d->done = true;
            } else {
                d->bare_crlf = true; /* ".<CR>" then not <LF> */
                d->state = ST_MID;
            }
            break;
        case ST_MID:
            if (header_stop(d, c)) {
                *outlen = o;
                return i;
            }
            if (c == '\r') {
                d->state = ST_CR;
            } else if (c == '\n') {
                d->bare_crlf = true; /* a bare LF never ends a line */
            } else {
                put(d, c, out, &o);
                line_octet(d, c);
            }
            i++;
            break;
        case ST_CR:
            if (c == '\n') {
                put(d, '\r', out, &o);
                put(d, '\n', out, &o);
                line_end(d);
                d->state = ST_BOL;
                i++;
            } else {
                d->bare_crlf = true; /* a bare CR never ends a line */
                d->state = ST_MID;
            }
            break;
        }
    }
    *outlen = o;
    return i;
}

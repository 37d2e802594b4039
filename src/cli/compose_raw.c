/* The two checks of what a user hands `tern send` as is: compose_raw_check for a --raw message
 * (a header section with a From, lines SMTP can carry, CRLF throughout) and
 * compose_envelope_addr for the address behind a --from or --to, read with the same RFC 5322
 * parser the server's send-as policy uses (smtp/hdr.h), so both sides agree on what a mailbox
 * means. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/compose_priv.h"
#include "util/err.h"

/* RFC 5321 4.1.2 Dot-string, atext widened to UTF-8 (RFC 6531 3.3). */
static bool is_dot_string(const char *s, size_t n)
{
    bool after_dot = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (after_dot)
                return false;
            after_dot = true;
        } else if (enc_atext(c) || c >= 0x80) {
            after_dot = false;
        } else {
            return false;
        }
    }
    return n > 0 && !after_dot;
}

int compose_envelope_addr(const char *given, char out[HDR_ADDR_MAX + 1], char *err, size_t errlen)
{
    char addrs[2][HDR_ADDR_MAX + 1];

    out[0] = 0;
    if (given == NULL || given[0] == 0) {
        err_set(err, errlen, "an address is empty: write it as user@example.org");
        return -1;
    }
    char what[COMPOSE_ERR_MAX / 2];
    snprintf(what, sizeof what, "the address '%s'", given);
    if (compose_check_controls(what, given, err, errlen) < 0)
        return -1;
    int n = hdr_from_addresses(given, strlen(given), addrs, 2);
    if (n < 0) {
        err_set(err, errlen,
                "'%s' is not an email address: write it as user@example.org or 'Name "
                "<user@example.org>', with a name that holds punctuation in double quotes",
                given);
        return -1;
    }
    if (n > 1) {
        err_set(err, errlen, "'%s' holds %d addresses; give one address per option", given, n);
        return -1;
    }

    /* hdr.h gives the local part unquoted; the envelope needs it quoted again unless it is a
     * dot-string ("john doe"@example.org stays quoted, john.doe@example.org does not). */
    const char *a = addrs[0];
    const char *at = strrchr(a, '@');
    size_t ln = (size_t)(at - a);
    if (is_dot_string(a, ln)) {
        memcpy(out, a, strlen(a) + 1);
        return 0;
    }
    size_t w = 0;
    char q[2 * HDR_ADDR_MAX + 4];
    q[w++] = '"';
    for (size_t i = 0; i < ln; i++) {
        if (a[i] == '"' || a[i] == '\\')
            q[w++] = '\\';
        q[w++] = a[i];
    }
    q[w++] = '"';
    size_t dn = strlen(at);
    if (w + dn > HDR_ADDR_MAX) {
        err_set(err, errlen, "'%s' is too long once its local part is quoted (over %d octets)",
                given, HDR_ADDR_MAX);
        return -1;
    }
    memcpy(out, q, w);
    memcpy(out + w, at, dn + 1);
    return 0;
}

/* Bare LF to CRLF, a last line break added; NUL, bare CR and over-long lines refused. */
static int raw_normalise(const unsigned char *s, size_t n, struct cbuf *b, char *err, size_t errlen)
{
    size_t line = 1, col = 0, run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n') {
            if (i == 0 || s[i - 1] != '\r') {
                cb_put(b, s + run, i - run);
                cb_put(b, "\r\n", 2);
                run = i + 1;
            }
            line++;
            col = 0;
            continue;
        }
        if (s[i] == 0) {
            err_set(err, errlen,
                    "line %zu holds a NUL octet, which SMTP cannot carry; send binary data "
                    "as an attachment (tern send --attach) instead of --raw",
                    line);
            return -1;
        }
        if (s[i] == '\r' && (i + 1 == n || s[i + 1] != '\n')) {
            err_set(err, errlen,
                    "line %zu holds a carriage return that does not end the line; SMTP "
                    "allows CR only before LF: convert the file (dos2unix) or remove it",
                    line);
            return -1;
        }
        if (s[i] != '\r' && ++col > COMPOSE_HARD_LINE) {
            err_set(err, errlen,
                    "line %zu is longer than 998 octets, which SMTP does not allow (RFC 5322 "
                    "2.1.1); wrap it, or leave out --raw so tern send encodes the body",
                    line);
            return -1;
        }
    }
    cb_put(b, s + run, n - run);
    if (b->n < 2 || memcmp(b->p + b->n - 2, "\r\n", 2) != 0)
        cb_put(b, "\r\n", 2);
    return 0;
}

/* Length of a header field name at s (a line of n octets), up to and with its colon
 * (obs-optional WSP before it allowed, RFC 5322 4.5); 0 when the line is not a field. */
static size_t field_name(const char *s, size_t n, size_t *name_len)
{
    size_t i = 0;
    while (i < n && enc_ftext((unsigned char)s[i]))
        i++;
    *name_len = i;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return *name_len > 0 && i < n && s[i] == ':' ? i + 1 : 0;
}

/* The header section of m: fields and their folds up to an empty line or the end. */
static int raw_headers(const char *m, size_t n, char *err, size_t errlen)
{
    size_t from_count = 0, from_v = 0, from_end = 0, line = 0;
    bool in_from = false;

    for (size_t i = 0; i < n;) {
        const char *crlf = memmem(m + i, n - i, "\r\n", 2);
        size_t e = (size_t)(crlf - m); /* normalised: every line ends in CRLF */
        line++;
        if (e == i)
            break; /* the empty line: the body follows */
        if (m[i] == ' ' || m[i] == '\t') {
            if (line == 1) {
                err_set(err, errlen,
                        "line 1 starts with white space; a message starts with a header field "
                        "such as 'From: you@example.org'");
                return -1;
            }
            if (in_from)
                from_end = e;
        } else {
            size_t nl, v = field_name(m + i, e - i, &nl);
            if (v == 0 && line == 1 && e - i >= 5 && memcmp(m, "From ", 5) == 0) {
                err_set(err, errlen,
                        "line 1 is an mbox separator ('From sender date'), not a header field; "
                        "remove it: the message starts at the line after");
                return -1;
            }
            if (v == 0) {
                err_set(err, errlen,
                        "line %zu is not a header field ('Name: value') and no empty line comes "
                        "before it; %s",
                        line,
                        line == 1 ? "--raw needs a whole message: header fields (From: ...), "
                                    "an empty line, then the body"
                                  : "put an empty line between the header fields and the body");
                return -1;
            }
            in_from = nl == 4 && strncasecmp(m + i, "From", 4) == 0;
            if (in_from) {
                from_count++;
                from_v = i + v;
                from_end = e;
            }
        }
        i = e + 2;
    }
    if (from_count == 0) {
        err_set(err, errlen,
                "the message has no From field; --raw sends it as it is, so write "
                "'From: you@example.org' among its header fields");
        return -1;
    }
    if (from_count > 1) {
        err_set(err, errlen, "the message has %zu From fields; RFC 5322 allows one", from_count);
        return -1;
    }
    if (hdr_from_addresses(m + from_v, from_end - from_v, NULL, 0) < 0) {
        err_set(err, errlen,
                "the From field is not a list of addresses; write it as 'From: "
                "you@example.org' or 'From: Name <you@example.org>'");
        return -1;
    }
    return 0;
}

int compose_raw_check(const void *msg, size_t len, size_t max_size, char **out, size_t *out_len,
                      char *err, size_t errlen)
{
    size_t max = max_size > 0 ? max_size : COMPOSE_MAX_DEFAULT;
    struct cbuf b = {0};
    char lim[COMPOSE_SIZE_TEXT];

    *out = NULL;
    *out_len = 0;
    if (len == 0) {
        err_set(err, errlen,
                "the message is empty; --raw needs a whole message: header fields (From: ...), "
                "an empty line, then the body");
        return -1;
    }
    if (len > max) {
        err_set(err, errlen,
                "the message is %zu octets, over the limit of %s; send less, or share large "
                "files another way",
                len, compose_size_text(lim, max));
        return -1;
    }
    if (raw_normalise(msg, len, &b, err, errlen) < 0 ||
        (!b.oom && raw_headers(b.p, b.n, err, errlen) < 0)) {
        cb_free(&b);
        return -1;
    }
    if (b.oom) {
        err_set(err, errlen, "out of memory reading the message (%zu octets)", len);
        cb_free(&b);
        return -1;
    }
    *out = b.p;
    *out_len = b.n;
    return 0;
}

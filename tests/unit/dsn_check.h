/* What the delivery report tests (test_dsn.c, test_dsn_hostile.c) share: a fixed report
 * (clock, random source, recipients, original) and readers that take a report apart the way a
 * mail program would: parts split at the boundary (which must occur nowhere else), fields
 * unfolded, status blocks separated, wrapped text joined again; every report read is checked
 * for CRLF only and lines of at most 998 octets. Include after cmocka.h. */
#ifndef TERN_TESTS_DSN_CHECK_H
#define TERN_TESTS_DSN_CHECK_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "relay/dsn.h"

#define DSN_UNUSED __attribute__((unused))

#define NOW 1700000000 /* Tue, 14 Nov 2023 22:13:20 +0000 */
#define NOW_DATE "Tue, 14 Nov 2023 22:13:20 +0000"
#define ARRIVAL (NOW - 4 * 3600)
#define ARRIVAL_DATE "Tue, 14 Nov 2023 18:13:20 +0000"
#define UNTIL (NOW + 4 * 86400)
#define UNTIL_DATE "Sat, 18 Nov 2023 22:13:20 +0000"
#define QID "1700000000-000042-4242-7-beef"

DSN_UNUSED static const char original[] = "Received: from client.example.org by mx.test.example\r\n"
                                          "From: Alice <alice@example.org>\r\n"
                                          "To: Bob <bob@example.com>\r\n"
                                          "Subject: Lunch on Friday?\r\n"
                                          "Message-ID: <lunch@example.org>\r\n"
                                          "\r\n"
                                          "BODY-MARKER: noon at the usual place?\r\n";

DSN_UNUSED static const struct dsn_rcpt bob = {
    .addr = "bob@example.com",
    .orcpt = "rfc822;bob@alias.example.com",
    .code = 550,
    .reply = "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown",
    .remote_mta = "mx.example.com",
    .last_attempt = NOW - 60,
};

DSN_UNUSED static const struct dsn_rcpt carol = {
    .addr = "carol@nowhere.example",
    .reply = "Host or domain name not found. Name service error for name=nowhere.example",
};

DSN_UNUSED static const struct dsn_rcpt dave_delayed = {
    .addr = "dave@example.net",
    .delayed = true,
    .code = 451,
    .reply = "451 4.7.1 Greylisted, please try again later",
    .remote_mta = "mx.example.net",
    .last_attempt = NOW - 600,
};

DSN_UNUSED static unsigned char rng_state;

/* successive byte values: a fixed "random" source */
DSN_UNUSED static int rng_count(void *ctx, void *buf, size_t len)
{
    unsigned char *next = ctx, *b = buf;
    for (size_t i = 0; i < len; i++)
        b[i] = (*next)++;
    return 0;
}

DSN_UNUSED static int rng_stuck(void *ctx, void *buf, size_t len)
{
    (void)ctx;
    memset(buf, 7, len);
    return 0;
}

DSN_UNUSED static int rng_fail(void *ctx, void *buf, size_t len)
{
    (void)ctx;
    (void)buf;
    (void)len;
    return -1;
}

DSN_UNUSED static struct dsn_report base(const struct dsn_rcpt *rcpts, size_t n)
{
    rng_state = 0;
    return (struct dsn_report){
        .host = "mx.test.example",
        .queue_id = QID,
        .sender = "alice@example.org",
        .arrival = ARRIVAL,
        .now = NOW,
        .rcpts = rcpts,
        .nrcpts = n,
        .original = original,
        .original_len = sizeof original - 1,
        .random = rng_count,
        .random_ctx = &rng_state,
    };
}

/* ---- reading a report back ---- */

/* CRLF only, no NUL, every line within 998 octets. */
DSN_UNUSED static void check_lines(const char *m, size_t len)
{
    size_t line = 0;
    for (size_t i = 0; i < len; i++) {
        if (m[i] == 0)
            fail_msg("NUL at octet %zu", i);
        if (m[i] == '\r') {
            if (i + 1 >= len || m[i + 1] != '\n')
                fail_msg("bare CR at octet %zu", i);
            if (line > 998)
                fail_msg("line of %zu octets ending at %zu", line, i);
            line = 0;
            i++;
            continue;
        }
        if (m[i] == '\n')
            fail_msg("bare LF at octet %zu", i);
        line++;
    }
    assert_int_equal(line, 0); /* ends with CRLF */
}

DSN_UNUSED static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

struct report {
    char *m;
    size_t len;
    char bnd[80];
    char *part[4]; /* each part: header fields, empty line, content (malloc'd) */
    size_t nparts;
};

/* The header section's unfolded value of name (before the first empty line of s), malloc'd,
 * or NULL. */
DSN_UNUSED static char *field(const char *s, const char *name)
{
    size_t nn = strlen(name);
    const char *end = strstr(s, "\r\n\r\n");
    for (const char *p = s; p && (!end || p <= end);) {
        if (strncasecmp(p, name, nn) == 0 && p[nn] == ':') {
            const char *v = p + nn + 1;
            while (*v == ' ')
                v++;
            char *out = calloc(1, strlen(v) + 1);
            size_t o = 0;
            for (; *v; v++) {
                if (v[0] == '\r' && v[1] == '\n') {
                    if (v[2] != ' ' && v[2] != '\t')
                        break;
                    v++; /* unfold: CRLF goes, the white space stays */
                    continue;
                }
                out[o++] = *v;
            }
            return out;
        }
        p = strstr(p, "\r\n");
        p = p ? p + 2 : NULL;
    }
    return NULL;
}

DSN_UNUSED static void assert_field(const char *s, const char *name, const char *want)
{
    char *v = field(s, name);
    if (!v)
        fail_msg("no %s field", name);
    if (strcmp(v, want) != 0)
        fail_msg("%s: '%s', wanted '%s'", name, v, want);
    free(v);
}

/* What follows the first empty line of s. */
DSN_UNUSED static const char *content(const char *s)
{
    const char *e = strstr(s, "\r\n\r\n");
    assert_non_null(e);
    return e + 4;
}

/* The k-th block of the delivery-status content (0: per-message, then one per recipient),
 * malloc'd with an empty line after it, so that field() reads only it. */
DSN_UNUSED static char *block(const struct report *rp, size_t k)
{
    const char *s = content(rp->part[1]);
    for (size_t i = 0; i < k; i++) {
        s = strstr(s, "\r\n\r\n");
        if (!s)
            return NULL;
        s += 4;
    }
    const char *e = strstr(s, "\r\n\r\n");
    size_t n = e ? (size_t)(e - s) : strlen(s);
    char *out = malloc(n + 5);
    memcpy(out, s, n);
    memcpy(out + n, "\r\n\r\n", 5);
    return out;
}

/* Text with each line break (and the indent after it) read as one space. */
DSN_UNUSED static char *unwrapped(const char *s)
{
    char *out = malloc(strlen(s) + 1);
    size_t o = 0;
    for (; *s; s++) {
        if (s[0] == '\r' && s[1] == '\n') {
            s += 2;
            while (*s == ' ')
                s++;
            s--;
            out[o++] = ' ';
            continue;
        }
        out[o++] = *s;
    }
    out[o] = 0;
    return out;
}

DSN_UNUSED static struct report take_apart(char *m, size_t len)
{
    struct report rp = {.m = m, .len = len};
    assert_int_equal(strlen(m), len);
    check_lines(m, len);
    char *ct = field(m, "Content-Type");
    assert_non_null(ct);
    assert_non_null(strstr(ct, "multipart/report; report-type=delivery-status;"));
    const char *b = strstr(ct, "boundary=\"");
    assert_non_null(b);
    b += 10;
    size_t bn = strcspn(b, "\"");
    assert_true(bn > 0 && bn < sizeof rp.bnd);
    memcpy(rp.bnd, b, bn);
    free(ct);

    char delim[96], close[96];
    snprintf(delim, sizeof delim, "\r\n--%s\r\n", rp.bnd);
    snprintf(close, sizeof close, "\r\n--%s--\r\n", rp.bnd);
    const char *p = strstr(content(m), delim);
    assert_non_null(p);
    while (p && rp.nparts < 4) {
        p += strlen(delim);
        const char *next = strstr(p, delim);
        const char *end = next ? next : strstr(p, close);
        assert_non_null(end);
        rp.part[rp.nparts] = strndup(p, (size_t)(end - p));
        rp.nparts++;
        p = next;
    }
    /* the boundary: once in Content-Type, once per delimiter, nowhere else */
    assert_int_equal(count(m, rp.bnd), 1 + rp.nparts + 1);
    assert_int_equal(count(m, close), 1);
    assert_true(len >= strlen(close) && strcmp(m + len - strlen(close), close) == 0);
    return rp;
}

DSN_UNUSED static void report_free(struct report *rp)
{
    for (size_t i = 0; i < rp->nparts; i++)
        free(rp->part[i]);
    free(rp->m);
}

DSN_UNUSED static struct report compose_ok(const struct dsn_report *r)
{
    char err[DSN_ERR_MAX] = "";
    size_t len = 0;
    char *m = dsn_compose(r, &len, err, sizeof err);
    if (!m)
        fail_msg("dsn_compose failed: %s", err);
    return take_apart(m, len);
}

DSN_UNUSED static void compose_bad(const struct dsn_report *r, const char *want)
{
    char err[DSN_ERR_MAX] = "";
    size_t len = 7;
    char *m = dsn_compose(r, &len, err, sizeof err);
    if (m)
        fail_msg("dsn_compose took a report it should refuse (%s)", want);
    assert_int_equal(len, 0);
    if (!strstr(err, want))
        fail_msg("reason '%s' does not say '%s'", err, want);
}

#endif

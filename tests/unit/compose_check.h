/* What the composer's unit tests (test_compose.c, test_compose_hdr.c) share: a fixed input
 * with a deterministic random source, compose-or-fail helpers, and readers that take a message
 * apart as a mail program would (field unfolding, RFC 2047, quoted-printable, base64), so the
 * tests check what a recipient gets, not just how the bytes look. Include after cmocka.h. */
#ifndef TERN_TESTS_COMPOSE_CHECK_H
#define TERN_TESTS_COMPOSE_CHECK_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "cli/compose.h"

/* ---- a deterministic random source: successive byte values from *ctx on ---- */

static inline int rng_count(void *ctx, void *buf, size_t len)
{
    unsigned char *next = ctx, *b = buf;
    for (size_t i = 0; i < len; i++)
        b[i] = (*next)++;
    return 0;
}

static inline int rng_stuck(void *ctx, void *buf, size_t len)
{
    (void)ctx;
    memset(buf, 7, len);
    return 0;
}

static inline int rng_fail(void *ctx, void *buf, size_t len)
{
    (void)ctx;
    (void)buf;
    (void)len;
    return -1;
}

static const char *const one_to[] = {"Bob <bob@example.org>"};
static unsigned char rng_state;

/* A message with everything fixed: 2023-11-14 22:13:20 UTC, shown in +0100. */
static inline struct compose_input base(void)
{
    rng_state = 0;
    return (struct compose_input){
        .from = "Ann Example <ann@example.org>",
        .to = one_to,
        .n_to = 1,
        .host = "mail.example.org",
        .now = 1700000000,
        .utc_offset = 3600,
        .random = rng_count,
        .random_ctx = &rng_state,
    };
}

/* Not inlined: gcc's -Wdangling-pointer would take the message for a pointer to out itself,
 * whose address compose_message is handed. */
__attribute__((noinline, unused)) static char *compose_ok(const struct compose_input *in, size_t *n)
{
    char err[COMPOSE_ERR_MAX], *out = NULL;
    size_t len = 0;
    if (compose_message(in, &out, &len, err, sizeof err) < 0)
        fail_msg("compose_message failed: %s", err);
    assert_int_equal(strlen(out), len); /* NUL after, and none inside for these inputs */
    if (n != NULL)
        *n = len;
    return out;
}

static inline void compose_bad(const struct compose_input *in, const char *want)
{
    char err[COMPOSE_ERR_MAX] = "", *out = (char *)1;
    size_t len = 1;
    if (compose_message(in, &out, &len, err, sizeof err) == 0)
        fail_msg("composed, but wanted the error '%s'", want);
    assert_null(out);
    assert_int_equal(len, 0);
    if (strstr(err, want) == NULL)
        fail_msg("error '%s' does not say '%s'", err, want);
}

/* Every line ends in CRLF, and no CR or LF stands alone. */
static inline void assert_crlf(const char *m, size_t n)
{
    assert_true(n >= 2 && memcmp(m + n - 2, "\r\n", 2) == 0);
    for (size_t i = 0; i < n; i++) {
        if (m[i] == '\r' && (i + 1 == n || m[i + 1] != '\n'))
            fail_msg("bare CR at %zu", i);
        if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r'))
            fail_msg("bare LF at %zu", i);
    }
}

/* Every line of m[0, n) at most max octets. */
static inline void assert_lines_within(const char *m, size_t n, size_t max)
{
    size_t start = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (m[i] == '\r' && m[i + 1] == '\n') {
            if (i - start > max)
                fail_msg("line of %zu octets over %zu: %.*s", i - start, max, (int)(i - start),
                         m + start);
            start = i + 2;
        }
    }
}

static inline size_t header_end(const char *m, size_t n)
{
    const char *e = memmem(m, n, "\r\n\r\n", 4);
    assert_non_null(e);
    return (size_t)(e - m) + 2;
}

/* The first field named name in m's header section, unfolded; NULL when absent. */
static inline char *field(const char *m, size_t n, const char *name)
{
    size_t hend = header_end(m, n), nl = strlen(name);
    for (size_t i = 0; i < hend;) {
        const char *e = memmem(m + i, hend - i, "\r\n", 2);
        if (strncasecmp(m + i, name, nl) == 0 && m[i + nl] == ':') {
            size_t v = i + nl + 1, end = (size_t)(e - m);
            while (end + 2 < hend && (m[end + 2] == ' ' || m[end + 2] == '\t'))
                end = (size_t)((const char *)memmem(m + end + 2, hend - end - 2, "\r\n", 2) - m);
            char *out = malloc(end - v + 1);
            size_t w = 0;
            for (size_t k = v; k < end; k++) {
                if (m[k] != '\r' && m[k] != '\n')
                    out[w++] = m[k];
            }
            out[w] = 0;
            return out;
        }
        i = (size_t)(e - m) + 2;
    }
    return NULL;
}

static inline size_t b64_decode(const char *s, size_t n, unsigned char *out)
{
    char *clean = malloc(n + 1);
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\r' && s[i] != '\n')
            clean[c++] = s[i];
    }
    assert_int_equal(c % 4, 0);
    int got = EVP_DecodeBlock(out, (const unsigned char *)clean, (int)c);
    assert_true(got >= 0);
    size_t len = (size_t)got;
    if (c > 0 && clean[c - 1] == '=')
        len--;
    if (c > 1 && clean[c - 2] == '=')
        len--;
    free(clean);
    return len;
}

static inline int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static inline size_t qp_decode(const char *s, size_t n, unsigned char *out)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '=') {
            out[w++] = (unsigned char)s[i];
        } else if (i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n') {
            i += 2; /* soft break */
        } else {
            assert_true(i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0);
            out[w++] = (unsigned char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
    }
    return w;
}

/* An unfolded field value with its RFC 2047 encoded-words (utf-8, B or Q) decoded, white space
 * between two of them dropped; each encoded-word checked to be at most 75 characters. */
static inline char *decode_2047(const char *v)
{
    size_t n = strlen(v), w = 0, pending_ws = 0;
    char *out = malloc(n + 1);
    bool last_encoded = false;
    for (size_t i = 0; i < n;) {
        if (v[i] == ' ' || v[i] == '\t') {
            size_t ws = i;
            while (i < n && (v[i] == ' ' || v[i] == '\t'))
                i++;
            pending_ws = i - ws;
            memcpy(out + w, v + ws, pending_ws); /* tentatively */
            w += pending_ws;
            continue;
        }
        size_t tok = i;
        while (i < n && v[i] != ' ' && v[i] != '\t')
            i++;
        if (strncasecmp(v + tok, "=?utf-8?", 8) == 0 && i - tok >= 12 &&
            memcmp(v + i - 2, "?=", 2) == 0) {
            assert_true(i - tok <= 75);
            if (last_encoded)
                w -= pending_ws;
            char kind = v[tok + 8];
            const char *text = v + tok + 10;
            size_t tn = i - tok - 12;
            if (kind == 'b' || kind == 'B') {
                w += b64_decode(text, tn, (unsigned char *)out + w);
            } else {
                for (size_t k = 0; k < tn; k++) {
                    if (text[k] == '_') {
                        out[w++] = ' ';
                    } else if (text[k] == '=') {
                        out[w++] = (char)(hexval(text[k + 1]) * 16 + hexval(text[k + 2]));
                        k += 2;
                    } else {
                        out[w++] = text[k];
                    }
                }
            }
            last_encoded = true;
        } else {
            memcpy(out + w, v + tok, i - tok);
            w += i - tok;
            last_encoded = false;
        }
        pending_ws = 0;
    }
    out[w] = 0;
    return out;
}

/* The value after "Subject:", decoded, compared with want (the single SP after the colon is
 * the writer's, not the subject's). */
static inline void assert_subject(const char *m, size_t n, const char *want)
{
    char *v = field(m, n, "Subject");
    assert_non_null(v);
    assert_true(v[0] == ' ' || v[0] == 0);
    char *d = decode_2047(v[0] == ' ' ? v + 1 : v);
    assert_string_equal(d, want);
    free(d);
    free(v);
}

#endif

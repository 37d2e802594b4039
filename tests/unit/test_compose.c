/* Unit tests for the body side of src/cli/compose*.c, the message `tern send` builds: whole
 * messages compared byte for byte for a fixed clock and random source (ASCII, UTF-8 as 8bit
 * and as quoted-printable, attachments); then, for what goldens cannot cover, the message read
 * back the way a mail reader would: quoted-printable and base64 decoded and compared with the
 * input octet for octet, multipart split at its boundary (also when a part holds the boundary
 * drawn first), every line checked for CRLF and length; and the size limits. The header side
 * is test_compose_hdr.c's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "compose_check.h"

/* ---- whole messages ---- */

static void test_golden_ascii(void **state)
{
    (void)state;
    static const char *const cc[] = {"carol@example.net", "\"Doe, John\" <john@example.net>"};
    static const char body[] = "Hi Bob,\n\nNoon at the usual place?\n\n-- \nAnn\n";
    struct compose_input in = base();
    in.cc = cc;
    in.n_cc = 2;
    in.subject = "Lunch on Friday?";
    in.body = body;
    in.body_len = strlen(body);
    static const char want[] = "Date: Tue, 14 Nov 2023 23:13:20 +0100\r\n"
                               "From: Ann Example <ann@example.org>\r\n"
                               "To: Bob <bob@example.org>\r\n"
                               "Cc: carol@example.net, \"Doe, John\" <john@example.net>\r\n"
                               "Subject: Lunch on Friday?\r\n"
                               "Message-ID: <000102030405060708090a0b0c0d0e0f@mail.example.org>\r\n"
                               "MIME-Version: 1.0\r\n"
                               "Content-Type: text/plain; charset=us-ascii\r\n"
                               "Content-Transfer-Encoding: 7bit\r\n"
                               "\r\n"
                               "Hi Bob,\r\n\r\nNoon at the usual place?\r\n\r\n-- \r\nAnn\r\n";
    char *m = compose_ok(&in, NULL);
    assert_string_equal(m, want);
    free(m);
}

static void test_golden_utf8(void **state)
{
    (void)state;
    static const char *const to[] = {"Zoë Ärger <zoe@example.org>"};
    static const char body[] = "Schöne Grüße aus Köln!\n";
    struct compose_input in = base();
    in.to = to;
    in.subject = "Grüße aus Köln";
    in.body = body;
    in.body_len = strlen(body);
    in.utc_offset = -(3 * 3600 + 30 * 60);
    in.eight_bit = true;
    static const char head[] = "Date: Tue, 14 Nov 2023 18:43:20 -0330\r\n"
                               "From: Ann Example <ann@example.org>\r\n"
                               "To: =?utf-8?q?Zo=C3=AB_=C3=84rger?= <zoe@example.org>\r\n"
                               "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n"
                               "Message-ID: <000102030405060708090a0b0c0d0e0f@mail.example.org>\r\n"
                               "MIME-Version: 1.0\r\n"
                               "Content-Type: text/plain; charset=utf-8\r\n";
    char *m = compose_ok(&in, NULL);
    char *want = NULL;
    assert_true(asprintf(&want,
                         "%sContent-Transfer-Encoding: 8bit\r\n\r\n"
                         "Sch\xc3\xb6ne Gr\xc3\xbc\xc3\x9f"
                         "e aus K\xc3\xb6ln!\r\n",
                         head) > 0);
    assert_string_equal(m, want);
    free(m);
    free(want);

    /* the same without 8BITMIME: quoted-printable */
    in.eight_bit = false;
    rng_state = 0;
    m = compose_ok(&in, NULL);
    assert_true(asprintf(&want,
                         "%sContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                         "Sch=C3=B6ne Gr=C3=BC=C3=9Fe aus K=C3=B6ln!\r\n",
                         head) > 0);
    assert_string_equal(m, want);
    free(m);
    free(want);
}

static void test_golden_attachment(void **state)
{
    (void)state;
    static const char body[] = "See attached.\n";
    struct compose_attachment at[] = {
        {.path = "/home/ann/report.pdf", .data = "%PDF-1.7\n\x00\xff", .len = 11},
        {.path = "notes/r\xc3\xa9sum\xc3\xa9.txt", .data = "caf\xc3\xa9\n", .len = 6},
    };
    struct compose_input in = base();
    in.body = body;
    in.body_len = strlen(body);
    in.attach = at;
    in.n_attach = 2;
    static const char want[] =
        "Date: Tue, 14 Nov 2023 23:13:20 +0100\r\n"
        "From: Ann Example <ann@example.org>\r\n"
        "To: Bob <bob@example.org>\r\n"
        "Message-ID: <000102030405060708090a0b0c0d0e0f@mail.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"=_tern_GHIJKLMNOPQRSTUVWXYZabcd\"\r\n"
        "\r\n"
        "This is a multi-part message in MIME format.\r\n"
        "--=_tern_GHIJKLMNOPQRSTUVWXYZabcd\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
        "See attached.\r\n"
        "\r\n"
        "--=_tern_GHIJKLMNOPQRSTUVWXYZabcd\r\n"
        "Content-Type: application/pdf; name=\"report.pdf\"\r\n"
        "Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "JVBERi0xLjcKAP8=\r\n"
        "--=_tern_GHIJKLMNOPQRSTUVWXYZabcd\r\n"
        "Content-Type: text/plain; charset=utf-8; name*=utf-8''r%C3%A9sum%C3%A9.txt\r\n"
        "Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.txt\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "Y2Fmw6kK\r\n"
        "--=_tern_GHIJKLMNOPQRSTUVWXYZabcd--\r\n";
    size_t n;
    char *m = compose_ok(&in, &n);
    assert_string_equal(m, want);
    free(m);
}

/* ---- bodies ---- */

/* The body of a single-part message and its Content-Transfer-Encoding. */
static const char *body_of(const char *m, size_t n, size_t *bn)
{
    size_t h = header_end(m, n) + 2;
    *bn = n - h;
    return m + h;
}

static void test_long_lines_qp(void **state)
{
    (void)state;
    size_t len = 3000;
    char *body = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        body[i] = (char)('a' + i % 26);
    memcpy(body + 100, " = \t", 4); /* '=' and white space inside a line */
    body[1500] = '\n';
    memcpy(body + len - 3, "  \n", 3); /* white space at a line's end must be encoded */
    body[len] = 0;
    struct compose_input in = base();
    in.body = body;
    in.body_len = len;
    size_t n;
    char *m = compose_ok(&in, &n);
    assert_crlf(m, n);
    char *cte = field(m, n, "Content-Transfer-Encoding");
    assert_string_equal(cte, " quoted-printable");
    size_t bn;
    const char *b = body_of(m, n, &bn);
    assert_lines_within(b, bn, 76);
    assert_null(memmem(b, bn, " \r\n", 3)); /* no line ends in white space */
    unsigned char *dec = malloc(bn);
    size_t dn = qp_decode(b, bn, dec);
    body[1500] = '\r'; /* what was sent: CRLF for the LF */
    char *want = NULL;
    assert_true(asprintf(&want, "%.1500s\r\n%s\r\n", body, body + 1501) > 0);
    want[strlen(want) - 3] = '\r'; /* the final LF, too */
    want[strlen(want) - 2] = '\n';
    want[strlen(want) - 1] = 0;
    assert_int_equal(dn, strlen(want));
    assert_memory_equal(dec, want, dn);
    free(want);
    free(dec);
    free(cte);
    free(m);
    free(body);
}

/* NUL and bare CR cannot go as 7bit or 8bit: quoted-printable, which brings them back. */
static void test_nul_and_bare_cr_qp(void **state)
{
    (void)state;
    static const char body[] = "a\0b\rc\r\nd\n";
    struct compose_input in = base();
    in.body = body;
    in.body_len = sizeof body - 1;
    in.eight_bit = true;
    size_t n;
    char *m = compose_ok(&in, &n);
    assert_crlf(m, n);
    size_t bn;
    const char *b = body_of(m, n, &bn);
    assert_int_equal(bn, strlen("a=00b=0Dc\r\nd\r\n"));
    assert_memory_equal(b, "a=00b=0Dc\r\nd\r\n", bn);
    free(m);
}

static void test_bare_lf(void **state)
{
    (void)state;
    static const char body[] = "\none\ntwo\r\n\nthree"; /* no final line break either */
    struct compose_input in = base();
    in.body = body;
    in.body_len = strlen(body);
    size_t n;
    char *m = compose_ok(&in, &n);
    assert_crlf(m, n);
    size_t bn;
    const char *b = body_of(m, n, &bn);
    assert_int_equal(bn, strlen("\r\none\r\ntwo\r\n\r\nthree\r\n"));
    assert_memory_equal(b, "\r\none\r\ntwo\r\n\r\nthree\r\n", bn);
    /* lines starting with "." stay as they are: dot-stuffing is the SMTP layer's */
    in.body = ".\n..x\n";
    in.body_len = 6;
    rng_state = 0;
    free(m);
    m = compose_ok(&in, &n);
    b = body_of(m, n, &bn);
    assert_int_equal(bn, 8);
    assert_memory_equal(b, ".\r\n..x\r\n", 8);
    free(m);
}

/* Not UTF-8 and no charset given: unknown-8bit, the octets unchanged; a charset given is used. */
static void test_charset(void **state)
{
    (void)state;
    static const char latin1[] = "caf\xe9\n";
    struct compose_input in = base();
    in.body = latin1;
    in.body_len = 5;
    in.eight_bit = true;
    size_t n;
    char *m = compose_ok(&in, &n);
    assert_non_null(strstr(m, "charset=unknown-8bit\r\nContent-Transfer-Encoding: 8bit\r\n"));
    free(m);
    in.body_charset = "iso-8859-1";
    m = compose_ok(&in, &n);
    assert_non_null(strstr(m, "charset=iso-8859-1\r\n"));
    free(m);
    in.body_charset = "utf-8\r\nBcc: x";
    compose_bad(&in, "not a charset name");
}

/* ---- multipart ---- */

struct part {
    const char *p;
    size_t n;
};

/* Splits the body of m at the boundary its Content-Type names, checking the delimiters. */
static size_t split_parts(const char *m, size_t n, struct part *parts, size_t max, char *bnd)
{
    char *ct = field(m, n, "Content-Type");
    const char *q = strstr(ct, "boundary=\"");
    assert_non_null(q);
    q += 10;
    size_t bl = strcspn(q, "\"");
    memcpy(bnd, q, bl);
    bnd[bl] = 0;
    free(ct);

    char delim[96];
    snprintf(delim, sizeof delim, "\r\n--%s", bnd);
    size_t dl = strlen(delim), np = 0;
    const char *at = memmem(m, n, delim, dl);
    assert_non_null(at);
    for (;;) {
        const char *start = at + dl;
        if (memcmp(start, "--\r\n", 4) == 0) {
            assert_int_equal((size_t)(start + 4 - m), n); /* nothing after the close */
            return np;
        }
        assert_memory_equal(start, "\r\n", 2);
        start += 2;
        at = memmem(start, n - (size_t)(start - m), delim, dl);
        assert_non_null(at);
        assert_true(np < max);
        parts[np].p = start;
        parts[np].n = (size_t)(at - start);
        np++;
    }
}

/* An attachment of every octet value, three times over (not a multiple of 3 long, so padded):
 * decoded from the message, it is the same bytes; the text part comes first. */
static void test_attachment_roundtrip(void **state)
{
    (void)state;
    unsigned char bin[770];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)(i * 7 + i / 256);
    struct compose_attachment at[] = {{.path = "x/photo.JPG", .data = bin, .len = sizeof bin}};
    struct compose_input in = base();
    in.body = "Hello\n";
    in.body_len = 6;
    in.attach = at;
    in.n_attach = 1;
    size_t n;
    char *m = compose_ok(&in, &n);
    assert_crlf(m, n);
    assert_lines_within(m, n, 78);
    struct part parts[4];
    char bnd[80];
    assert_int_equal(split_parts(m, n, parts, 4, bnd), 2);
    assert_non_null(memmem(parts[0].p, parts[0].n, "text/plain", 10));
    assert_non_null(memmem(parts[0].p, parts[0].n, "\r\n\r\nHello\r\n", 11));
    const char *h = memmem(parts[1].p, parts[1].n, "\r\n\r\n", 4);
    assert_non_null(h);
    assert_non_null(memmem(parts[1].p, (size_t)(h - parts[1].p), "Content-Type: image/jpeg;", 25));
    assert_non_null(memmem(parts[1].p, (size_t)(h - parts[1].p), "base64", 6));
    const char *b64 = h + 4;
    size_t b64n = parts[1].n - (size_t)(b64 - parts[1].p);
    assert_lines_within(b64, b64n, 76);
    assert_memory_equal(b64 + 76, "\r\n", 2); /* full lines are 76 */
    unsigned char dec[sizeof bin + 3];
    assert_int_equal(b64_decode(b64, b64n, dec), sizeof bin);
    assert_memory_equal(dec, bin, sizeof bin);
    free(m);
}

/* A text part holding the boundary the composer would draw first: it draws another, and that
 * one is in no part. With a random source stuck on one value the retry count still makes a new
 * one; with none working, an error. */
static void test_boundary_collision(void **state)
{
    (void)state;
    struct compose_attachment at[] = {{.path = "a.bin", .data = "xyz", .len = 3}};
    struct compose_input in = base();
    in.body = "x\n";
    in.body_len = 2;
    in.attach = at;
    in.n_attach = 1;
    for (int stuck = 0; stuck < 2; stuck++) {
        if (stuck)
            in.random = rng_stuck;
        rng_state = 0;
        size_t n;
        char *m = compose_ok(&in, &n);
        struct part parts[4];
        char first[80], bnd[80];
        split_parts(m, n, parts, 4, first);
        free(m);

        char *body = NULL;
        assert_true(asprintf(&body, "--%s\nText quoting the boundary: --%s--\n", first, first) > 0);
        in.body = body;
        in.body_len = strlen(body);
        rng_state = 0;
        m = compose_ok(&in, &n);
        assert_int_equal(split_parts(m, n, parts, 4, bnd), 2);
        assert_string_not_equal(bnd, first);
        for (size_t i = 0; i < 2; i++)
            assert_null(memmem(parts[i].p, parts[i].n, bnd, strlen(bnd)));
        assert_non_null(memmem(parts[0].p, parts[0].n, first, strlen(first)));
        if (stuck)
            assert_non_null(strstr(bnd, "_1"));
        free(m);
        free(body);
        in.body = "x\n";
        in.body_len = 2;
    }
    in.random = rng_fail;
    compose_bad(&in, "random");
}

/* 8bit text inside a multipart: the multipart says 8bit too (RFC 2045 6.4). A text file gets
 * the charset its bytes have. Names in RFC 2231, cut in pieces when long. */
static void test_attachment_headers(void **state)
{
    (void)state;
    char longname[200];
    strcpy(longname, "dir/");
    for (int i = 0; i < 30; i++)
        strcat(longname, "\xc3\xa9t\xc3\xa9");
    strcat(longname, ".csv");
    struct compose_attachment at[] = {
        {.path = longname, .data = "a,b\n", .len = 4},
        {.path = "q\"uote\\.html", .data = "<p>\xff</p>", .len = 8},
        {.path = "plain", .name = "shown.dat", .type = "application/x-thing", .data = "", .len = 0},
    };
    struct compose_input in = base();
    in.body = "\xc3\xa9\n";
    in.body_len = 3;
    in.eight_bit = true;
    in.attach = at;
    in.n_attach = 3;
    size_t n;
    char *m = compose_ok(&in, &n);
    assert_crlf(m, n);
    assert_lines_within(m, n, 78);
    char *cte = field(m, n, "Content-Transfer-Encoding");
    assert_string_equal(cte, " 8bit");
    free(cte);
    assert_non_null(strstr(m, "Content-Type: text/csv; charset=us-ascii;\r\n name*0*=utf-8''"));
    assert_non_null(strstr(m, "Content-Disposition: attachment;\r\n filename*0*=utf-8''%C3%A9t"));
    assert_non_null(strstr(m, ";\r\n filename*1*=%C3%A9t"));
    assert_non_null(strstr(m, "Content-Type: text/html; name=\"q\\\"uote\\\\.html\"\r\n"));
    assert_non_null(strstr(m, "Content-Type: application/x-thing; name=\"shown.dat\"\r\n"));
    /* the pieces put back together give the name */
    char got[400];
    size_t g = 0;
    const char *p = strstr(m, "filename*0*=utf-8''");
    assert_non_null(p);
    for (p += 19; *p != '\r';) {
        if (*p == '%') {
            got[g++] = (char)(hexval(p[1]) * 16 + hexval(p[2]));
            p += 3;
        } else if (*p == ';') {
            p = strstr(p, "*=") + 2; /* the next piece */
        } else {
            got[g++] = *p++;
        }
    }
    got[g] = 0;
    assert_string_equal(got, longname + 4);
    free(m);

    at[0].type = "text";
    compose_bad(&in, "not of the form type/subtype");
    at[0].type = NULL;
    at[0].path = "dir/";
    compose_bad(&in, "no file name");
}

static void test_attachment_file_and_limits(void **state)
{
    (void)state;
    static char big[5000];
    memset(big, 'z', sizeof big);
    FILE *f = fmemopen(big, sizeof big, "r");
    assert_non_null(f);
    struct compose_attachment at[] = {{.path = "big.zip", .file = f}};
    struct compose_input in = base();
    in.body = "hi\n";
    in.body_len = 3;
    in.attach = at;
    in.n_attach = 1;
    in.max_size = 5003;
    size_t n;
    char *m = compose_ok(&in, &n);
    assert_non_null(strstr(m, "Content-Type: application/zip; name=\"big.zip\""));
    free(m);

    rewind(f);
    in.max_size = 5002;
    compose_bad(&in, "attachment 'big.zip' (5000 octets or more) takes body and attachments "
                     "over the limit of 5002");
    fclose(f);
    at[0].file = NULL;
    at[0].data = big;
    at[0].len = sizeof big;
    compose_bad(&in, "attachment 'big.zip' (5000 octets) takes body and attachments over");
    in.n_attach = 0;
    in.body_len = 5003;
    in.body = big;
    compose_bad(&in, "the body is 5003 octets, over the limit of 5002 octets for");
    at[0].data = NULL;
    in.n_attach = 1;
    in.body_len = 3;
    compose_bad(&in, "neither bytes nor an open file");
}

/* compose_read, for --body FILE or -: the whole file, or the limit named when over it. */
static void test_read(void **state)
{
    (void)state;
    static char text[] = "line one\nline two\n";
    FILE *f = fmemopen(text, sizeof text - 1, "r");
    char err[COMPOSE_ERR_MAX], *data;
    size_t n;
    assert_int_equal(compose_read(f, "the body", 100, &data, &n, err, sizeof err), 0);
    assert_int_equal(n, sizeof text - 1);
    assert_memory_equal(data, text, n);
    assert_int_equal(data[n], 0);
    free(data);
    rewind(f);
    assert_int_equal(compose_read(f, "the body", 10, &data, &n, err, sizeof err), -1);
    assert_null(data);
    assert_string_equal(err, "the body is larger than the limit of 10 octets; send less, or "
                             "share large files another way");
    fclose(f);
}

static void test_guess_type(void **state)
{
    (void)state;
    assert_string_equal(compose_guess_type("a.pdf"), "application/pdf");
    assert_string_equal(compose_guess_type("A.PNG"), "image/png");
    assert_string_equal(compose_guess_type("x.tar.gz"), "application/gzip");
    assert_string_equal(compose_guess_type("dir.json/file"), "application/octet-stream");
    assert_string_equal(compose_guess_type("data.xml"), "application/xml");
    assert_string_equal(compose_guess_type("noext"), "application/octet-stream");
    assert_string_equal(compose_guess_type("trailing."), "application/octet-stream");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_ascii),
        cmocka_unit_test(test_golden_utf8),
        cmocka_unit_test(test_golden_attachment),
        cmocka_unit_test(test_long_lines_qp),
        cmocka_unit_test(test_nul_and_bare_cr_qp),
        cmocka_unit_test(test_bare_lf),
        cmocka_unit_test(test_charset),
        cmocka_unit_test(test_attachment_roundtrip),
        cmocka_unit_test(test_boundary_collision),
        cmocka_unit_test(test_attachment_headers),
        cmocka_unit_test(test_attachment_file_and_limits),
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_guess_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for the header side of src/cli/compose*.c: subjects and display names as RFC 2047
 * encoded-words (decoded back to the text given, no word over 75 characters, no line over 78),
 * folding, the extra fields --header may add and those it may not, header injection through
 * every field the user writes, Date and Message-ID, the envelope address of a --to as given,
 * and the checks of a --raw message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "compose_check.h"

static char *with_subject(const char *subject, size_t *n)
{
    struct compose_input in = base();
    in.subject = subject;
    char *m = compose_ok(&in, n);
    assert_crlf(m, *n);
    assert_lines_within(m, header_end(m, *n), 78);
    assert_subject(m, *n, subject);
    return m;
}

static void test_subject_encoding(void **state)
{
    (void)state;
    size_t n;
    /* mostly ASCII: Q, and the ASCII words around it stay as they are */
    char *m = with_subject("Re: the caf\xc3\xa9 menu, again", &n);
    assert_non_null(strstr(m, "Subject: Re: the =?utf-8?q?caf=C3=A9?= menu, again\r\n"));
    free(m);
    /* mostly not: B */
    m = with_subject("\xe4\xbc\x9a\xe8\xad\xb0\xe3\x81\xae\xe4\xba\x88\xe5\xae\x9a", &n);
    assert_non_null(strstr(m, "Subject: =?utf-8?b?5Lya6K2w44Gu5LqI5a6a?=\r\n"));
    free(m);
    /* something a reader would decode is encoded, so it shows as written */
    m = with_subject("about =?utf-8?q?x?= syntax", &n);
    assert_null(strstr(m, "Subject: about =?utf-8?q?x?="));
    free(m);
    /* plain ASCII, long: folded at white space, not encoded */
    m = with_subject("A rather long subject line that goes on and on past the seventy-eight "
                     "column mark and then some more words",
                     &n);
    assert_non_null(strstr(m, "Subject: A rather long subject line that goes on and on past the "
                              "seventy-eight\r\n column mark"));
    free(m);
    m = with_subject("", &n);
    assert_non_null(strstr(m, "Subject:\r\n"));
    free(m);
    m = with_subject("  leading and trailing  ", &n);
    free(m);
    m = with_subject("tab\there", &n);
    assert_non_null(strstr(m, "Subject: tab\there\r\n"));
    free(m);
}

/* Long non-ASCII subjects: many encoded-words over several lines, none splitting a character
 * (each decodes alone to valid UTF-8, which the round trip through the decoder shows). */
static void test_subject_long(void **state)
{
    (void)state;
    char s[2048] = "";
    for (int i = 0; i < 40; i++)
        strcat(s, "\xe2\x82\xac\xc3\xa9x "); /* euro, e-acute, x */
    strcat(s, "end");
    size_t n;
    char *m = with_subject(s, &n);
    free(m);

    /* a word too long for any line, in ASCII: encoded so that it can be folded */
    memset(s, 'w', 1500);
    s[1500] = 0;
    m = with_subject(s, &n);
    assert_null(
        strstr(m, "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww"));
    free(m);

    struct compose_input in = base();
    in.subject = "caf\xe9"; /* Latin-1 */
    compose_bad(&in, "not valid UTF-8");
}

static void test_display_names(void **state)
{
    (void)state;
    static const char *const to[] = {
        "\"M\xc3\xbcller, J\xc3\xbcrgen\" <jm@example.org>", /* quoted, comma inside */
        "Ren\303\251e (work) <renee@example.org>",           /* octal: no hex digit runs on */
        "<bare@example.org>",
        "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", /* EAI */
    };
    struct compose_input in = base();
    in.from = "J\xc3\xb6rg <joerg@example.org>";
    in.to = to;
    in.n_to = 4;
    size_t n;
    char *m = compose_ok(&in, &n);
    assert_lines_within(m, header_end(m, n), 78);
    char *from = field(m, n, "From");
    char *d = decode_2047(from);
    assert_string_equal(d, " J\xc3\xb6rg <joerg@example.org>");
    free(d);
    free(from);
    char *tov = field(m, n, "To");
    d = decode_2047(tov);
    assert_string_equal(d, " M\xc3\xbcller, J\xc3\xbcrgen <jm@example.org>, Ren\xc3\xa9"
                           "e (work) <renee@example.org>, <bare@example.org>, "
                           "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5"
                           "\x91\x8a");
    /* a phrase's Q leaves only letters, digits and !*+-/ as they are: no bare comma */
    assert_null(strstr(tov, "J=C3=BCrgen,"));
    free(d);
    free(tov);
    free(m);

    in.from = "joel@example.org (J\xc3\xb6)";
    in.n_to = 1;
    compose_bad(&in, "outside a display name");
    in.from = "Doe, John <j@example.org>";
    compose_bad(&in, "not an email address");
    in.from = "a@example.org, b@example.org";
    compose_bad(&in, "holds 2 addresses");
    in.from = NULL;
    compose_bad(&in, "give --from");
}

/* Every field the user writes is a way to start a new one with CR or LF: all refused. */
static void test_header_injection(void **state)
{
    (void)state;
    struct compose_input in = base();
    in.subject = "hi\r\nBcc: victim@example.org";
    compose_bad(&in, "line break");
    in.subject = "hi\nX: y";
    compose_bad(&in, "line break");
    in.subject = NULL;

    static const char *const to[] = {"bob@example.org\r\nBcc: victim@example.org"};
    in.to = to;
    compose_bad(&in, "line break");
    in.to = one_to;
    in.from = "Ann <ann@example.org>\nBcc: x@example.org";
    compose_bad(&in, "line break");
    in.from = "Ann\x1b[31m <ann@example.org>";
    compose_bad(&in, "control character 0x1B");
    in.from = "ann@example.org";

    static const struct {
        const char *h, *why;
    } bad[] = {
        {"X-Note: hi\r\nBcc: victim@example.org", "line break"},
        {"X-Note: hi\rthere", "line break"},
        {"X-Note: a\x01", "control character 0x01"},
        {"X-Note: gr\xc3\xbc\xc3\x9f"
         "e",
         "non-ASCII"},
        {"X Note: hi", "only printable ASCII"},
        {"X-N\xc3\xb6te: hi", "only printable ASCII"},
        {": empty name", "not of the form"},
        {"no colon", "not of the form"},
        {"Date: Mon, 1 Jan 2024 00:00:00 +0000", "writes it from the clock"},
        {"message-id: <x@y>", "unique one"},
        {"MIME-Version: 2.0", "MIME structure"},
        {"Content-Type: text/html", "Content-* fields"},
        {"content-transfer-encoding: binary", "Content-* fields"},
        {"Bcc: x@example.org", "who else got the mail"},
        {"From: boss@example.org", "use --from"},
        {"TO: x@example.org", "use --to"},
        {"Subject: again", "use --subject"},
        {"Return-Path: <x@example.org>", "envelope sender"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *hdrs[] = {bad[i].h};
        in.headers = hdrs;
        in.n_headers = 1;
        compose_bad(&in, bad[i].why);
    }
    const char *twice[] = {"Reply-To: a@example.org", "reply-to: b@example.org"};
    in.headers = twice;
    in.n_headers = 2;
    compose_bad(&in, "gives Reply-To twice");

    /* a word no fold can bring within 998 octets */
    char *lng = malloc(1200);
    strcpy(lng, "X-Long: ");
    memset(lng + 8, 'k', 1100);
    lng[1108] = 0;
    const char *one[] = {lng};
    in.headers = one;
    in.n_headers = 1;
    compose_bad(&in, "998 octets");
    free(lng);
}

static void test_extra_headers(void **state)
{
    (void)state;
    const char *hdrs[] = {
        "X-Priority: 1",
        "In-Reply-To:<a@example.org>", /* no space after the colon: one is written */
        "Keywords: k1",
        "Keywords: k2", /* may repeat */
        ("References: <1@example.org> <2@example.org> <3@example.org> <4@example.org> "
         "<5@example.org> <6@example.org>"),
        "X-Empty:",
    };
    struct compose_input in = base();
    in.headers = hdrs;
    in.n_headers = 6;
    size_t n;
    char *m = compose_ok(&in, &n);
    assert_crlf(m, n);
    assert_lines_within(m, header_end(m, n), 78);
    assert_null(field(m, n, "Cc"));
    assert_non_null(strstr(m, "To: Bob <bob@example.org>\r\n"
                              "Message-ID: <000102030405060708090a0b0c0d0e0f@mail.example.org>\r\n"
                              "X-Priority: 1\r\n"
                              "In-Reply-To: <a@example.org>\r\n"
                              "Keywords: k1\r\nKeywords: k2\r\n"
                              "References: <1@example.org> <2@example.org> <3@example.org> "
                              "<4@example.org>\r\n <5@example.org> <6@example.org>\r\n"
                              "X-Empty:\r\nMIME-Version: 1.0\r\n"));
    free(m);

    /* recipients in the envelope only: neither To nor Cc */
    in.n_to = 0;
    rng_state = 0;
    m = compose_ok(&in, &n);
    assert_null(field(m, n, "To"));
    assert_null(field(m, n, "Cc"));
    free(m);
}

static void test_date_and_message_id(void **state)
{
    (void)state;
    struct compose_input in = base();
    in.now = 0;
    in.utc_offset = 0;
    in.host = NULL; /* from the From address */
    size_t n;
    char *m = compose_ok(&in, &n);
    assert_non_null(strstr(m, "Date: Thu, 1 Jan 1970 00:00:00 +0000\r\n"));
    assert_non_null(strstr(m, "Message-ID: <000102030405060708090a0b0c0d0e0f@example.org>\r\n"));
    free(m);

    in.now = 1709208000;                      /* 2024-02-29 12:00 UTC */
    in.utc_offset = 14 * 3600 - 45 * 60 + 59; /* +13:15 and some seconds: minutes kept */
    in.host = "[192.0.2.1]";
    m = compose_ok(&in, &n);
    assert_non_null(strstr(m, "Date: Fri, 1 Mar 2024 01:15:00 +1315\r\n"));
    assert_non_null(strstr(m, "@[192.0.2.1]>\r\n"));
    free(m);

    in.utc_offset = 30 * 3600;
    compose_bad(&in, "not a time zone's");
    in.utc_offset = 0;
    in.host = "bad host";
    compose_bad(&in, "right side of a Message-ID");
    in.host = NULL;
    in.from = "x@\xe4\xbe\x8b\xe5\xad\x90.org";
    compose_bad(&in, "right side of a Message-ID");
}

/* ---- envelope addresses ---- */

static void test_envelope_addr(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want; /* want NULL: refused, the reason holding why */
        const char *why;
    } cases[] = {
        {"Bob <bob@example.org>", "bob@example.org", NULL},
        {"  bob@example.org  ", "bob@example.org", NULL},
        {"\"Doe, John\" <john.doe@example.org>", "john.doe@example.org", NULL},
        {"<\"john doe\"@example.org>", "\"john doe\"@example.org", NULL},
        {"\"a\\\"b\"@example.org", "\"a\\\"b\"@example.org", NULL},
        {"\"x..y\"@example.org", "\"x..y\"@example.org", NULL},
        {"bob@[192.0.2.1]", "bob@[192.0.2.1]", NULL},
        {"bob (comment) @ example.org", "bob@example.org", NULL},
        {"\xe7\x94\xa8\xe6\x88\xb7@example.org", "\xe7\x94\xa8\xe6\x88\xb7@example.org", NULL},
        {"", NULL, "empty"},
        {"bob", NULL, "not an email address"},
        {"Bob Smith", NULL, "not an email address"},
        {"a@b.org, c@d.org", NULL, "holds 2 addresses"},
        {"friends: a@b.org;", NULL, "not an email address"},
        {"bob@example.org\r\n", NULL, "line break"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[HDR_ADDR_MAX + 1] = "junk", err[COMPOSE_ERR_MAX] = "";
        int r = compose_envelope_addr(cases[i].in, out, err, sizeof err);
        if (cases[i].want != NULL) {
            if (r != 0 || strcmp(out, cases[i].want) != 0)
                fail_msg("'%s': r=%d '%s' (%s), want '%s'", cases[i].in, r, out, err,
                         cases[i].want);
        } else if (r != -1 || out[0] != 0 || strstr(err, cases[i].why) == NULL) {
            fail_msg("'%s': r=%d out '%s' err '%s', want '%s'", cases[i].in, r, out, err,
                     cases[i].why);
        }
    }
}

/* ---- --raw ---- */

static void raw_ok(const char *in, const char *want)
{
    char err[COMPOSE_ERR_MAX], *out;
    size_t n;
    if (compose_raw_check(in, strlen(in), 0, &out, &n, err, sizeof err) < 0)
        fail_msg("'%s' refused: %s", in, err);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    free(out);
}

static void raw_bad(const char *in, size_t len, size_t max, const char *why)
{
    char err[COMPOSE_ERR_MAX] = "", *out = (char *)1;
    size_t n = 1;
    if (compose_raw_check(in, len, max, &out, &n, err, sizeof err) == 0)
        fail_msg("'%s' accepted, wanted '%s'", in, why);
    assert_null(out);
    if (strstr(err, why) == NULL)
        fail_msg("'%s': error '%s' does not say '%s'", in, err, why);
}

static void test_raw(void **state)
{
    (void)state;
    raw_ok("From: a@example.org\nSubject: x\n\nbody\n.\n",
           "From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n.\r\n");
    raw_ok("Subject: folded\r\n  more\r\nfrom: A <a@example.org>\r\n\r\nno final break",
           "Subject: folded\r\n  more\r\nfrom: A <a@example.org>\r\n\r\nno final break\r\n");
    raw_ok("From\t: a@example.org\n", "From\t: a@example.org\r\n");     /* no body at all */
    raw_ok("From : a@example.org\n\n", "From : a@example.org\r\n\r\n"); /* not mbox's */
    raw_ok("From: A\r\n <a@example.org>\r\n\r\nx\r\n", "From: A\r\n <a@example.org>\r\n\r\nx\r\n");

    static const struct {
        const char *in;
        size_t len, max;
        const char *why;
    } bad[] = {
#define BAD(lit, max, why) {lit, sizeof(lit) - 1, max, why}
        BAD("", 0, "empty"),
        BAD("Subject: x\n\nbody\n", 0, "no From field"),
        BAD("From a@example.org Mon Jan 1 00:00:00 2024\nFrom: a@example.org\n\nx\n", 0,
            "mbox separator"),
        BAD("Hello Bob,\nhow are you\n", 0, "line 1 is not a header field"),
        BAD("From: a@example.org\nHello Bob,\n", 0, "empty line between"),
        BAD(" From: a@example.org\n\nx\n", 0, "starts with white space"),
        BAD("From: a@example.org\n\nx\0y\n", 0, "line 3 holds a NUL"),
        BAD("From: a@example.org\n\nx\ry\n", 0, "line 3 holds a carriage return"),
        BAD("From: a@example.org\r\r\n\r\nx\n", 0, "line 1 holds a carriage return"),
        BAD("From: a@example.org\nFrom: b@example.org\n\nx\n", 0, "2 From fields"),
        BAD("From: not an address\n\nx\n", 0, "not a list of addresses"),
        BAD("From: a@example.org\n\nx\n", 10, "over the limit of 10 octets;"),
#undef BAD
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        raw_bad(bad[i].in, bad[i].len, bad[i].max, bad[i].why);

    char *lng = malloc(1100);
    strcpy(lng, "From: a@example.org\n\n");
    memset(lng + 21, 'x', 999);
    lng[1020] = '\n';
    raw_bad(lng, 1021, 0, "line 3 is longer than 998");
    lng[1019] = '\n'; /* 998 is allowed */
    char err[COMPOSE_ERR_MAX], *out;
    size_t n;
    assert_int_equal(compose_raw_check(lng, 1020, 0, &out, &n, err, sizeof err), 0);
    free(out);
    free(lng);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subject_encoding), cmocka_unit_test(test_subject_long),
        cmocka_unit_test(test_display_names),    cmocka_unit_test(test_header_injection),
        cmocka_unit_test(test_extra_headers),    cmocka_unit_test(test_date_and_message_id),
        cmocka_unit_test(test_envelope_addr),    cmocka_unit_test(test_raw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for src/smtp/hdr.c: a table of From: field bodies (plain, display names, quoting,
 * comments, folding, obsolete forms, UTF-8, lists) with the exact addresses expected, a table of
 * bodies that must be refused, and checks of the limits: max below the count, NULL out, comment
 * depth, address length, and a large input. Every input is copied into a heap buffer of exactly
 * its length so ASan catches any read past len. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/hdr.h"

#define TEST_OUT 4

/* A copy with no slack after it: reading s[len] is an ASan error. */
static char *test_dup_exact(const char *s, size_t n)
{
    char *d = malloc(n > 0 ? n : 1);
    assert_non_null(d);
    if (n > 0)
        memcpy(d, s, n);
    return d;
}

static int test_parse(const char *s, size_t n, char (*out)[HDR_ADDR_MAX + 1], size_t max)
{
    char *d = test_dup_exact(s, n);
    int got = hdr_from_addresses(d, n, out, max);
    free(d);
    return got;
}

struct hdr_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    int count;
    const char *addr[TEST_OUT];
};

#define OK(in_, n, ...)                                                                            \
    {                                                                                              \
        .in = in_, .count = n, .addr = { __VA_ARGS__ }                                             \
    }
#define BAD(in_)                                                                                   \
    {                                                                                              \
        .in = in_, .count = -1                                                                     \
    }
/* for inputs with an embedded NUL */
#define BADN(in_)                                                                                  \
    {                                                                                              \
        .in = in_, .len = sizeof(in_) - 1, .count = -1                                             \
    }

static const struct hdr_case good_cases[] = {
    /* the shapes MUAs write */
    OK("alice@example.org", 1, "alice@example.org"),
    OK("Alice <alice@example.org>", 1, "alice@example.org"),
    OK("<alice@example.org>", 1, "alice@example.org"),
    OK("\"Liddell, Alice\" <alice@example.org>", 1, "alice@example.org"),
    OK("alice@example.org (Alice)", 1, "alice@example.org"),
    OK("=?UTF-8?Q?Al=C3=AFce?= <alice@example.org>", 1, "alice@example.org"),
    OK("=?utf-8?b?QWxpY2U=?= =?utf-8?b?TGlkZGVsbA==?= <alice@example.org>", 1, "alice@example.org"),
    OK("Alice <alice@example.org>, Bob <bob@example.org>", 2, "alice@example.org",
       "bob@example.org"),
    OK("Alice\r\n <alice@example.org>", 1, "alice@example.org"),
    OK("Alice\t<alice@example.org>", 1, "alice@example.org"),
    OK("\"Alice\"<alice@example.org>", 1, "alice@example.org"),
    OK("Alice Pleasance Liddell <alice@example.org>", 1, "alice@example.org"),
    OK(" alice@example.org ", 1, "alice@example.org"),
    OK("ALICE@Example.ORG", 1, "ALICE@Example.ORG"),
    OK("alice+tag@example.org", 1, "alice+tag@example.org"),
    OK("!#$%&'*+-/=?^_`{|}~@example.org", 1, "!#$%&'*+-/=?^_`{|}~@example.org"),
    OK("first.last@sub.example.co.uk", 1, "first.last@sub.example.co.uk"),

    /* quoting: local parts come back unquoted */
    OK("<\"a b\"@example.org>", 1, "a b@example.org"),
    OK("\"a b\"@example.org", 1, "a b@example.org"),
    OK("<\"a\\\"b\"@example.org>", 1, "a\"b@example.org"),
    OK("<\"a\\\\b\"@example.org>", 1, "a\\b@example.org"),
    OK("\"\"@example.org", 1, "@example.org"),
    OK("\"a\r\n b\"@example.org", 1, "a b@example.org"),
    OK("<\"alice@example.org\"@evil.example>", 1, "alice@example.org@evil.example"),
    OK("\"Alice \\\"The\\\" Liddell\" <alice@example.org>", 1, "alice@example.org"),
    OK("\"<bob@example.org>\" <alice@example.org>", 1, "alice@example.org"),

    /* comments, anywhere CFWS may be */
    OK("(c) Alice (d) <(e) alice (f) @ (g) example.org (h)> (i)", 1, "alice@example.org"),
    OK("alice@example.org (Alice \\) still (nested) comment)", 1, "alice@example.org"),
    OK("((((((((deep))))))))alice@example.org", 1, "alice@example.org"),
    OK("alice@example.org (Bob <bob@example.org>)", 1, "alice@example.org"),
    OK("alice@example.org (folded\r\n comment)", 1, "alice@example.org"),
    OK("alice@example.org ()", 1, "alice@example.org"),

    /* obsolete forms (RFC 5322 4.4) */
    OK("Dr. Who <who@example.org>", 1, "who@example.org"),
    OK("Mr.. Smith. <smith@example.org>", 1, "smith@example.org"),
    OK("alice @ example.org", 1, "alice@example.org"),
    OK("first . last @ example . org", 1, "first.last@example.org"),
    OK("\"a\".b@example.org", 1, "a.b@example.org"),
    OK("<@relay.example,@other.example:alice@example.org>", 1, "alice@example.org"),
    OK("Alice <,@relay.example,,@other.example:alice@example.org>", 1, "alice@example.org"),
    OK("a@b,,c@d", 2, "a@b", "c@d"),
    OK(",a@b", 1, "a@b"),
    OK("a@b, ", 1, "a@b"),
    OK(" , a@b , , c@d , ", 2, "a@b", "c@d"),

    /* domain literals keep their brackets, lose their FWS */
    OK("alice@[192.0.2.1]", 1, "alice@[192.0.2.1]"),
    OK("Alice <alice@[IPv6:2001:db8::1]>", 1, "alice@[IPv6:2001:db8::1]"),
    OK("alice@[ 192.0.2.1 ]", 1, "alice@[192.0.2.1]"),
    OK("<@r.example:a@[191.\"]>", 1, "a@[191.\"]"), /* '"' is dtext; found by fuzz_hdr */

    /* RFC 6532 UTF-8 */
    OK("\xC3\x85lice <alice@example.org>", 1, "alice@example.org"),
    OK("\"\xC3\x85lice \xC3\x9C\" <alice@example.org>", 1, "alice@example.org"),
    OK("j\xC3\xB6rg@b\xC3\xBC"
       "cher.example",
       1,
       "j\xC3\xB6rg@b\xC3\xBC"
       "cher.example"),
    OK("<\"j\xC3\xB6rg x\"@example.org>", 1, "j\xC3\xB6rg x@example.org"),
    OK("\xE7\x94\xB0\xE4\xB8\xAD <tanaka@example.jp>", 1, "tanaka@example.jp"),
    /* a Latin-1 display name is wrong, but harmless: only addresses must be UTF-8 */
    OK("\xE9t\xE9 <ete@example.org>", 1, "ete@example.org"),
    OK("alice@example.org (\xC3\xA9t\xC3\xA9)", 1, "alice@example.org"),

    /* lists */
    OK("Alice <alice@example.org>,\r\n\tBob <bob@example.org>,\r\n carol@example.org", 3,
       "alice@example.org", "bob@example.org", "carol@example.org"),
    OK("a@b, c@d, e@f, g@h, i@j", 5, "a@b", "c@d", "e@f", "g@h"),
    OK("\"x, y\" <a@b>, (z, w) c@d", 2, "a@b", "c@d"),
};

static const struct hdr_case bad_cases[] = {
    BAD(""),
    BAD("   "),
    BAD("(only a comment)"),
    BAD(","),
    BAD(" , , "),
    BAD("alice"),
    BAD("Alice"),
    BAD("@example.org"),
    BAD("alice@"),
    BAD("alice@example.org."),
    BAD("alice.@example.org"),
    BAD(".alice@example.org"),
    BAD("a..b@example.org"),
    BAD("a@b@c"),
    BAD("a@\"quoted.example\""),
    BAD("<alice@example.org"),
    BAD("alice@example.org>"),
    BAD("<<alice@example.org>>"),
    BAD("Alice <alice@example.org>>"),
    BAD("Alice <>"),
    BAD("<>"),
    BAD("Alice <alice>"),
    BAD(".Alice <alice@example.org>"),
    BAD("Alice <alice@example.org> Bob"),
    BAD("Liddell, Alice <alice@example.org>"),
    BAD("a@b c@d"),
    BAD("undisclosed:;"),
    BAD("undisclosed-recipients: ;"),
    BAD("friends: a@b, c@d;"),
    BAD("Alice <alice@example.org>;"),
    BAD("a\nb@example.org"),
    BAD("alice@example.org\n"),
    BAD("Alice\n <alice@example.org>"),
    BAD("alice@example.org\r\n"),
    BAD("Alice\r\n<alice@example.org>"),
    BAD("Alice\r <alice@example.org>"),
    BADN("alice\0@example.org"),
    BADN("alice@example.org\0"),
    BADN("\"a\0b\"@example.org"),
    BAD("\x01"
        "alice@example.org"),
    BAD("alice@example.org\x7F"),
    BAD("(unclosed alice@example.org"),
    BAD("alice@example.org (x"),
    BAD("alice@example.org )"),
    BAD("alice@example.org (x))"),
    BAD("(((((((((nine)))))))))alice@example.org"),
    BAD("\"unclosed <alice@example.org>"),
    BAD("\"a\\"),
    BAD("\"a\\\r\n b\"@example.org"),
    BAD("alice@[192.0.2.1"),
    BAD("alice@[a@b]"),
    BAD("alice@[a[b]"),
    BAD("alice@example.org]"),
    BAD("\\alice@example.org"),
    BAD("<@relay.example:>"),
    BAD("<@relay.example alice@example.org>"),
    BAD("<:alice@example.org>"),
    BAD("a@\xFF.example"),
    BAD("\xC3\x28@example.org"),
    BAD("<\"\xC0\xAF\"@example.org>"),
    BAD("a@b\xE2\x82"),
};

static void test_table(const struct hdr_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct hdr_case *c = &cases[i];
        size_t len = c->len != 0 ? c->len : strlen(c->in);
        char out[TEST_OUT][HDR_ADDR_MAX + 1];
        memset(out, 'x', sizeof out);

        int got = test_parse(c->in, len, out, TEST_OUT);
        if (got != c->count)
            fail_msg("case %zu \"%s\": got %d, want %d", i, c->in, got, c->count);
        for (size_t k = 0; k < TEST_OUT; k++) {
            if ((int)k < got) {
                if (strcmp(out[k], c->addr[k]) != 0)
                    fail_msg("case %zu \"%s\" address %zu: got \"%s\", want \"%s\"", i, c->in, k,
                             out[k], c->addr[k]);
            } else if (got < 0) {
                assert_int_equal(out[k][0], 0); /* cleared on failure */
            } else {
                assert_int_equal(out[k][0], 'x'); /* untouched past the count */
            }
        }
    }
}

static void test_good(void **state)
{
    test_table(good_cases, sizeof good_cases / sizeof good_cases[0]);
}

static void test_bad(void **state)
{
    test_table(bad_cases, sizeof bad_cases / sizeof bad_cases[0]);
}

/* The count does not depend on max; only the first max addresses are written. */
static void test_max(void **state)
{
    const char *in = "a@b, Carol <c@d>, e@f";
    char out[2][HDR_ADDR_MAX + 1];

    assert_int_equal(test_parse(in, strlen(in), NULL, 0), 3);
    assert_int_equal(test_parse(in, strlen(in), NULL, 5), 3); /* NULL out means max 0 */
    memset(out, 'x', sizeof out);
    assert_int_equal(test_parse(in, strlen(in), out, 1), 3);
    assert_string_equal(out[0], "a@b");
    assert_int_equal(out[1][0], 'x');
    assert_int_equal(test_parse("a@b, c", 6, NULL, 0), -1);
    assert_int_equal(hdr_from_addresses(NULL, 0, NULL, 0), -1);
}

/* An invalid address after max still fails the whole field. */
static void test_bad_after_max(void **state)
{
    const char *in = "a@b, c@d, e@\xFF";
    char out[1][HDR_ADDR_MAX + 1];

    assert_int_equal(test_parse(in, strlen(in), out, 1), -1);
    assert_int_equal(out[0][0], 0);
}

/* An address of exactly HDR_ADDR_MAX octets is kept; one more is refused, not truncated, also
 * when it is assembled from a quoted local part or sits beyond max. Display names are free. */
static void test_length(void **state)
{
    char in[2 * HDR_ADDR_MAX + 16];
    char out[1][HDR_ADDR_MAX + 1];

    memset(in, 'a', 64);
    in[64] = '@';
    memset(in + 65, 'b', HDR_ADDR_MAX - 65);
    assert_int_equal(test_parse(in, HDR_ADDR_MAX, out, 1), 1);
    assert_int_equal(strlen(out[0]), HDR_ADDR_MAX);
    assert_memory_equal(out[0], in, HDR_ADDR_MAX);

    memset(in + 65, 'b', HDR_ADDR_MAX + 1 - 65);
    assert_int_equal(test_parse(in, HDR_ADDR_MAX + 1, out, 1), -1);
    assert_int_equal(test_parse(in, HDR_ADDR_MAX + 1, NULL, 0), -1);

    /* "<quoted 318 octets>"@b: 320 after unquoting although 322 as written */
    in[0] = '"';
    memset(in + 1, 'q', HDR_ADDR_MAX - 2);
    memcpy(in + HDR_ADDR_MAX - 1, "\"@b", 3);
    assert_int_equal(test_parse(in, HDR_ADDR_MAX + 2, out, 1), 1);
    assert_int_equal(strlen(out[0]), HDR_ADDR_MAX);
    memcpy(in + HDR_ADDR_MAX - 1, "q\"@b", 4);
    assert_int_equal(test_parse(in, HDR_ADDR_MAX + 3, out, 1), -1);

    memset(in, 'N', 2 * HDR_ADDR_MAX);
    memcpy(in + 2 * HDR_ADDR_MAX, " <a@b>", 6);
    assert_int_equal(test_parse(in, 2 * HDR_ADDR_MAX + 6, out, 1), 1);
    assert_string_equal(out[0], "a@b");
}

/* Comments nest to exactly HDR_COMMENT_DEPTH (8), in sequence as often as one likes. */
static void test_comment_depth(void **state)
{
    char in[64];
    char out[1][HDR_ADDR_MAX + 1];

    for (int depth = 1; depth <= 12; depth++) {
        size_t n = 0;
        for (int i = 0; i < depth; i++)
            in[n++] = '(';
        for (int i = 0; i < depth; i++)
            in[n++] = ')';
        memcpy(in + n, "a@b()()", 7);
        n += 7;
        assert_int_equal(test_parse(in, n, out, 1), depth <= 8 ? 1 : -1);
    }
}

/* A megabyte of list is parsed in one pass; the count keeps going past max. */
static void test_large(void **state)
{
    const size_t reps = 1u << 18;
    char *in = malloc(reps * 4);
    char out[TEST_OUT][HDR_ADDR_MAX + 1];

    assert_non_null(in);
    for (size_t i = 0; i < reps; i++)
        memcpy(in + 4 * i, "a@b,", 4);
    assert_int_equal(test_parse(in, reps * 4, out, TEST_OUT), (int)reps);
    assert_string_equal(out[3], "a@b");
    memset(in, '(', reps * 4); /* deep, unclosed: refused at depth 9, not recursed into */
    assert_int_equal(test_parse(in, reps * 4, out, TEST_OUT), -1);
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),   cmocka_unit_test(test_bad),
        cmocka_unit_test(test_max),    cmocka_unit_test(test_bad_after_max),
        cmocka_unit_test(test_length), cmocka_unit_test(test_comment_depth),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

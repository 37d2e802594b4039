/* Unit tests for src/cli/mailbox_msg.c, what `tern mailbox list` reads from a message: RFC 5322
 * dates in their current and obsolete forms (comments, two-digit years, named zones) and the
 * refusal of what is not a date; and the filter that keeps hostile header bytes (controls,
 * escape sequences, bidi overrides, broken UTF-8) off the terminal while letting UTF-8 through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/mailbox.h"

static void test_dates(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        long long want; /* -1: not a date */
    } cases[] = {
        {"Mon, 01 Jan 2024 00:00:00 +0000", 1704067200},
        {"Tue, 02 Jan 2024 10:00:00 +0100 (CET)", 1704186000},
        {"2 Jan 2024 10:00 +0100", 1704186000},
        {"Mon, 1 Jan 24 09:00 GMT", 1704099600},
        {"1 Jan 1999 00:00:00 EST", 915166800},
        {"(a comment) Mon, (another (nested)) 01 Jan 2024 00:00:00 -0130", 1704072600},
        {"01 jan 2024 00:00:00 Z", 1704067200}, /* military zones: -0000, unknown */
        {"", -1},
        {"yesterday", -1},
        {"Mon, 01 Foo 2024 00:00:00 +0000", -1},
        {"Mon, 01 Jan 2024 25:00:00 +0000", -1},
        {"Mon, 01 Jan 2024 00:00:00:00 +0000", -1},
        {"Mon, 001 Jan 2024 00:00 +0000", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        time_t t = 0;
        int r = mbox_parse_date(cases[i].in, &t);
        if (cases[i].want < 0 ? r != -1 : (r != 0 || (long long)t != cases[i].want))
            fail_msg("'%s': r=%d t=%lld, want %lld", cases[i].in, r, (long long)t, cases[i].want);
    }
}

static char *safe(const char *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    mbox_put_safe(f, s);
    fclose(f);
    return buf;
}

static void test_safe(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"plain", "plain"},
        {"caf\xc3\xa9 \xe2\x82\xac", "caf\xc3\xa9 \xe2\x82\xac"}, /* UTF-8 passes */
        {"\x1b]0;title\x07", "?]0;title?"},
        {"a\rb\nc\td\x7f", "a?b?c?d?"},
        {"\xc2\x9b"
         "31m",
         "?31m"},                                 /* C1 CSI */
        {"x\xe2\x80\xaey\xe2\x81\xa6z", "x?y?z"}, /* bidi override and isolate */
        {"\xff\xfe", "??"},                       /* not UTF-8 */
        {"\xc3", "?"},                            /* cut short */
        {"\xe0\x80\xaf", "???"},                  /* overlong */
        {"\xed\xa0\x80", "???"},                  /* a surrogate */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = safe(cases[i].in);
        assert_string_equal(got, cases[i].want);
        free(got);
    }
    char *j = mbox_utf8_copy("ok \x1b \xff caf\xc3\xa9");
    assert_string_equal(j, "ok \x1b ? caf\xc3\xa9"); /* JSON escapes controls itself */
    free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of how `tern watch` prints a terminal message (cli/watch_show.c) and of the
 * column-bounded sanitiser under it (cli_put_safe_cols, cli/term.c): the write(1)-like layout,
 * the subject unfolded, the body cut at 20 lines of 200 columns, and every byte a terminal
 * would obey (C0, ESC sequences, DEL, C1 as UTF-8 and as a lone byte, bidi controls, NUL,
 * broken UTF-8) shown escaped, with escapes counted in the column limit. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/watch.h"

/* What f(out) prints, malloc'd. */
static char *capture_safe(const char *s, size_t len, size_t cols, size_t *used)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *out = open_memstream(&buf, &n);
    assert_non_null(out);
    *used = cli_put_safe_cols(out, s, len, cols);
    fclose(out);
    return buf;
}

static char *show(const char *text, size_t len, const char *from, long long t, int truncated,
                  unsigned long long size)
{
    struct tern_term_message m = {.time = t, .len = len, .truncated = truncated, .size = size};
    m.text = malloc(len + 1);
    memcpy(m.text, text, len);
    m.text[len] = '\0';
    snprintf(m.from, sizeof m.from, "%s", from);
    snprintf(m.id, sizeof m.id, "ID9");
    char *buf = NULL;
    size_t n = 0;
    FILE *out = open_memstream(&buf, &n);
    assert_non_null(out);
    watch_show(out, &m);
    fclose(out);
    free(m.text);
    return buf;
}

static void test_escapes(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"plain text", 10, "plain text"},
        {"\x1b[31mred", 8, "\\x1b[31mred"},
        {"a\0b", 3, "a\\x00b"},
        {"bel\a del\x7f", 9, "bel\\x07 del\\x7f"},
        {"c1 \xc2\x9b", 5, "c1 \\u009b"},
        {"lone \x9b byte", 11, "lone \\x9b byte"},
        {"bidi \xe2\x80\xae!", 9, "bidi \\u202e!"},
        {"iso \xe2\x81\xa6", 7, "iso \\u2066"},
        {"caf\xc3\xa9 \xe2\x82\xac", 9, "caf\xc3\xa9 \xe2\x82\xac"}, /* UTF-8 stays */
        {"over \xc0\xaf long", 12, "over \\xc0\\xaf long"},          /* overlong '/' */
        {"cut \xe2\x82", 6, "cut \\xe2\\x82"},                       /* a sequence cut short */
        {"surrogate \xed\xa0\x80", 13, "surrogate \\xed\\xa0\\x80"},
        {"back\\slash", 10, "back\\\\slash"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t used;
        char *got = capture_safe(cases[i].in, cases[i].len, 1000, &used);
        assert_string_equal(got, cases[i].out);
        assert_int_equal(used, cases[i].len);
        free(got);
    }
}

static void test_columns(void **state)
{
    (void)state;
    size_t used;
    char *got = capture_safe("abcdefghij", 10, 4, &used);
    assert_string_equal(got, "abcd");
    assert_int_equal(used, 4);
    free(got);
    /* an escape is 4 columns and is never split */
    got = capture_safe("\x1b\x1b\x1b", 3, 10, &used);
    assert_string_equal(got, "\\x1b\\x1b");
    assert_int_equal(used, 2);
    free(got);
    /* a UTF-8 character is one column and is never split either */
    got = capture_safe("\xc3\xa9\xc3\xa9\xc3\xa9", 6, 2, &used);
    assert_string_equal(got, "\xc3\xa9\xc3\xa9");
    assert_int_equal(used, 4);
    free(got);
}

static void test_layout(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    const char msg[] = "Received: from x\r\n\tby y\r\nSUBJECT: folded\r\n subject\r\n"
                       "Subject: a second one\r\n\r\nline one\r\nline two\r\n";
    char *out = show(msg, sizeof msg - 1, "a@b.test", 1700000000, 0, sizeof msg - 1);
    assert_string_equal(out, "\nMessage from a@b.test at 2023-11-14 22:13:20 UTC (id ID9):\n"
                             "Subject: folded subject\n\nline one\nline two\nEOF\n");
    free(out);
    out = show("no header, no body", 18, "", 0, 0, 18);
    assert_string_equal(out, "\nMessage from <> (a bounce) at ? (id ID9):\nSubject: (none)\n\n"
                             "EOF\n");
    free(out);
}

static void test_hostile_message_is_bounded(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    char *msg = malloc(n + 4096);
    size_t len = (size_t)sprintf(msg, "Subject: \x1b]0;title\x07\r\n\r\n");
    for (size_t i = 0; i < 30; i++)
        len += (size_t)sprintf(msg + len, "l%zu\x1b[K\r\n", i);
    memset(msg + len, '\x1b', n - len - 2); /* then a line of escapes to the megabyte */
    memcpy(msg + n - 2, "\r\n", 2);
    char *out = show(msg, n, "evil\x1b[2J@x.test", 5, 1, 5000000);
    assert_null(strchr(out, '\x1b'));
    assert_null(strchr(out, '\a'));
    assert_non_null(strstr(out, "Message from evil\\x1b[2J@x.test at "));
    assert_non_null(strstr(out, "\nSubject: \\x1b]0;title\\x07\n"));
    assert_non_null(strstr(out, "\nl0\\x1b[K\n"));
    assert_non_null(strstr(out, "\nl19\\x1b[K\n"));
    assert_null(strstr(out, "\nl20"));
    assert_non_null(strstr(out, "\n[11 more lines]\n"));
    assert_non_null(strstr(out, "\n[only the first 1048576 of 5000000 octets arrived]\nEOF\n"));
    for (char *line = out; line; line = strchr(line, '\n')) {
        line += *line == '\n';
        size_t l = strcspn(line, "\n");
        assert_true(l <= 200 + strlen(" [...]") + 300); /* the header line may be longer */
    }
    assert_true(strlen(out) < 8000);
    free(out);
    free(msg);
    /* a body line over 200 columns is cut and says so */
    char body[700] = "Subject: s\r\n\r\n";
    memset(body + strlen(body), 'w', 500);
    out = show(body, strlen(body), "a@b", 1, 0, 0);
    char want[300] = "\nw";
    memset(want + 1, 'w', 200);
    strcpy(want + 201, " [...]\nEOF\n");
    assert_non_null(strstr(out, want));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_columns),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_hostile_message_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

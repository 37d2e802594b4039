/* Unit tests of the message-data scanner (src/smtp/data.c): dot transparency, the only end of
 * data (<CRLF>.<CRLF>), bare CR/LF, the line and size limits, Received: counting, BDAT raw mode,
 * the Message-ID: capture, and that every result is the same however the input is split across
 * reads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/data.h"

struct outcome {
    char out[8192];
    size_t outlen;
    size_t consumed; /* input octets taken up to and including the end of data */
    struct smtp_data d;
};

/* Scans in, handing the scanner pieces of at most step octets and an output buffer of cap. */
static void scan(const char *in, size_t n, bool raw, uint64_t max, size_t step, size_t cap,
                 struct outcome *r)
{
    memset(r, 0, sizeof *r);
    smtp_data_init(&r->d, raw, max);
    size_t off = 0;
    while (off < n && !r->d.done) {
        size_t piece = n - off < step ? n - off : step;
        size_t room = sizeof r->out - r->outlen < cap ? sizeof r->out - r->outlen : cap;
        size_t o = 0;
        size_t used = smtp_data_feed(&r->d, in + off, piece, r->out + r->outlen, room, &o);
        assert_true(used <= piece);
        assert_true(o <= room);
        r->outlen += o;
        off += used;
        if (used == 0 && o == 0)
            assert_true(room < 2); /* the scanner may stop only when it has no room */
    }
    r->consumed = off;
}

static void expect_text(const char *in, const char *out, bool done, bool failed)
{
    for (size_t step = 1; step <= strlen(in) + 1; step++) {
        for (size_t cap = 2; cap <= 9; cap += 7) {
            struct outcome r;
            scan(in, strlen(in), false, 1 << 20, step, cap, &r);
            if (r.outlen != strlen(out) || memcmp(r.out, out, r.outlen) != 0)
                fail_msg("step %zu cap %zu: \"%s\" gave \"%.*s\"", step, cap, in, (int)r.outlen,
                         r.out);
            assert_int_equal(r.d.done, done);
            assert_int_equal(smtp_data_failed(&r.d), failed);
        }
    }
}

static void test_unstuffing(void **state)
{
    (void)state;
    expect_text(".\r\n", "", true, false);
    expect_text("a\r\n.\r\n", "a\r\n", true, false);
    expect_text("..\r\n.\r\n", ".\r\n", true, false);
    expect_text("..a\r\n...\r\n.\r\n", ".a\r\n..\r\n", true, false);
    expect_text(".a\r\n.\r\n", "a\r\n", true, false); /* RFC 5321 4.5.2: the first dot goes */
    expect_text("a.\r\n.b\r\n.\r\n", "a.\r\nb\r\n", true, false);
    expect_text("\r\n\r\n.\r\n", "\r\n\r\n", true, false);
    expect_text("a\r\n. \r\n.\r\n", "a\r\n \r\n", true, false);
}

static void test_end_only_at_crlf_dot_crlf(void **state)
{
    (void)state;
    expect_text("a\r\n.\r", "a\r\n", false, false); /* not yet ended */
    expect_text("a\r\n.", "a\r\n", false, false);
    expect_text("a\n.\n", "a", false, true); /* bare LF: never an end, and doomed */
    expect_text("a\r.\r", "a", false, true); /* bare CR: the same */
    expect_text("a\r\n.\nb\r\n.\r\n", "a\r\n", true, true);
    expect_text("a\n.\r\n.\r\n", "a", true, true);
    expect_text("a\r\n.\rb\r\n.\r\n", "a\r\n", true, true);
}

static void test_consumes_exactly_to_end(void **state)
{
    (void)state;
    const char *in = "x\r\n.\r\nMAIL FROM:<a@b>\r\n";
    struct outcome r;
    scan(in, strlen(in), false, 1000, 1000, 1000, &r);
    assert_true(r.d.done);
    assert_int_equal(r.consumed, 6); /* the next command stays for the session */
}

static void test_line_limit(void **state)
{
    (void)state;
    char in[2100];
    memset(in, 'a', 998);
    strcpy(in + 998, "\r\n.\r\n");
    struct outcome r;
    scan(in, strlen(in), false, 1 << 20, 300, 4096, &r);
    assert_true(r.d.done);
    assert_false(smtp_data_failed(&r.d));
    assert_int_equal(r.outlen, 1000);
    memset(in, 'a', 999);
    strcpy(in + 999, "\r\n.\r\n");
    scan(in, strlen(in), false, 1 << 20, 300, 4096, &r);
    assert_true(r.d.done);
    assert_true(r.d.line_too_long);
    /* a stuffed dot does not count towards the line */
    in[0] = '.';
    memset(in + 1, 'a', 998);
    strcpy(in + 999, "\r\n.\r\n");
    scan(in, strlen(in), false, 1 << 20, 300, 4096, &r);
    assert_false(r.d.line_too_long);
}

static void test_size_limit(void **state)
{
    (void)state;
    const char *in = "0123456789\r\n.\r\n"; /* 12 octets of message */
    struct outcome r;
    scan(in, strlen(in), false, 12, 5, 100, &r);
    assert_false(r.d.too_big);
    assert_int_equal(r.d.size, 12);
    scan(in, strlen(in), false, 11, 5, 100, &r);
    assert_true(r.d.too_big);
    assert_true(r.d.done); /* still read to the end */
    assert_true(r.outlen <= 11);
}

static void test_received_count(void **state)
{
    (void)state;
    char *in = malloc(20000);
    size_t n = 0;
    for (int i = 0; i < 101; i++)
        n += (size_t)sprintf(in + n, "%s: x\r\n", i % 2 ? "Received" : "RECEIVED");
    n += (size_t)sprintf(in + n, "\r\nReceived: body\r\n.\r\n");
    struct outcome r;
    scan(in, n, false, 1 << 20, 7, 8192, &r);
    assert_int_equal(r.d.received, 101);
    assert_true(smtp_data_failed(&r.d));
    /* continuation lines and look-alikes do not count */
    n = (size_t)sprintf(in, "Received: a\r\n\tReceived: b\r\nX-Received: c\r\nReceived:d\r\n"
                            "\r\nReceived: e\r\n.\r\n");
    scan(in, n, false, 1 << 20, 3, 8192, &r);
    assert_int_equal(r.d.received, 2);
    free(in);
}

static void test_raw_mode(void **state)
{
    (void)state;
    const char *in = "a\nb\rc\r\n.\r\n..\r\n";
    for (size_t step = 1; step < 20; step++) {
        struct outcome r;
        scan(in, strlen(in), true, 1000, step, 3, &r);
        assert_int_equal(r.outlen, strlen(in)); /* BDAT: every octet as sent */
        assert_memory_equal(r.out, in, strlen(in));
        assert_false(r.d.done);
        assert_false(smtp_data_failed(&r.d));
    }
}

/* The Message-ID: field body the scanner keeps for in, fed in pieces of every size from one
 * octet up (text and raw mode alike), checking after every piece that it stays bounded and
 * NUL-terminated. */
static void expect_msgid(const char *in, bool raw, const char *want)
{
    size_t n = strlen(in);
    for (size_t step = 1; step <= n; step++) {
        struct smtp_data d;
        smtp_data_init(&d, raw, 1 << 20);
        char out[4096];
        size_t off = 0, o;
        while (off < n && !d.done) {
            size_t piece = n - off < step ? n - off : step;
            off += smtp_data_feed(&d, in + off, piece, out, sizeof out, &o);
            assert_true(d.msgid_len < sizeof d.msgid);
            assert_int_equal(d.msgid[d.msgid_len], '\0');
            assert_int_equal(strlen(d.msgid), d.msgid_len);
        }
        if (strcmp(d.msgid, want) != 0)
            fail_msg("%s, step %zu: \"%s\" kept \"%s\", want \"%s\"", raw ? "raw" : "text", step,
                     in, d.msgid, want);
    }
}

static void test_message_id(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"Message-ID: <a@b>\r\n\r\nbody\r\n.\r\n", " <a@b>"},
        {"Subject: x\r\nMessage-ID:\r\n <a@b>\r\nTo: y\r\n\r\n.\r\n", " <a@b>"}, /* folded */
        {"Message-Id: <a\r\n\t@b\r\n  .c>\r\n\r\n.\r\n", " <a\t@b  .c>"},
        {"MESSAGE-ID:<x@y>\r\n\r\n.\r\n", "<x@y>"},
        {"message-id: <1@b>\r\nMessage-ID: <2@b>\r\n\r\n.\r\n", " <1@b>"}, /* the first only */
        {"Message-ID: <a@b>\r\nSubject: Message-ID\r\n\r\n.\r\n", " <a@b>"},
        {"Subject: x\r\n\r\nMessage-ID: <body@b>\r\n.\r\n", ""}, /* the body is no header */
        {"Subject: x\r\n\r\n.\r\n", ""},
        {"X-Message-ID: <x>\r\nResent-Message-ID: <y>\r\n\r\n.\r\n", ""},
        {"Message-ID : <x>\r\nMessage-IDs: <y>\r\n\r\n.\r\n", ""},
        {"Subject: a\r\n Message-ID: <x>\r\n\r\n.\r\n", ""}, /* a continuation line */
        {"Message-ID: <a@b>\r\n", " <a@b>"},                 /* not yet ended */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_msgid(cases[i].in, false, cases[i].want);
        expect_msgid(cases[i].in, true, cases[i].want); /* BDAT: CRs are not line content */
    }
    /* BDAT lines may end in a bare LF; text mode keeps scanning a doomed message */
    expect_msgid("Message-ID: <r@b>\nX: y\n\nbody", true, " <r@b>");
    expect_msgid("Message-ID: <r@b>\nX: y\r\n\r\n.\r\n", false, " <r@b>X: y");
}

static void test_message_id_bound(void **state)
{
    (void)state;
    char in[4096];
    size_t n = (size_t)sprintf(in, "Message-ID: <");
    memset(in + n, 'q', 900);
    n += 900;
    strcpy(in + n, "@b>\r\n\r\nbody\r\n.\r\n");
    char want[SMTP_DATA_MSGID_MAX];
    memcpy(want, in + strlen("Message-ID:"), sizeof want - 1);
    want[sizeof want - 1] = '\0';
    expect_msgid(in, false, want);
    expect_msgid(in, true, want);
    /* folded over many lines: the cut counts unfolded octets */
    n = (size_t)sprintf(in, "Message-ID:");
    for (int i = 0; i < 100; i++)
        n += (size_t)sprintf(in + n, "\r\n <%02d@b.example>", i);
    strcpy(in + n, "\r\n\r\n.\r\n");
    struct outcome r;
    scan(in, strlen(in), false, 1 << 20, 1, 8192, &r);
    assert_true(r.d.done);
    assert_int_equal(r.d.msgid_len, SMTP_DATA_MSGID_MAX - 1);
    assert_memory_equal(r.d.msgid, " <00@b.example> <01@b.example>", 30);
    assert_null(strchr(r.d.msgid, '\r'));
    assert_null(strchr(r.d.msgid, '\n'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unstuffing),
        cmocka_unit_test(test_end_only_at_crlf_dot_crlf),
        cmocka_unit_test(test_consumes_exactly_to_end),
        cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_received_count),
        cmocka_unit_test(test_raw_mode),
        cmocka_unit_test(test_message_id),
        cmocka_unit_test(test_message_id_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

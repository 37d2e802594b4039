/* Unit tests of the terminal-message framing (client/termframe.c): what ternd writes for a
 * message (its TERM line, dot-stuffing, CRLF line ends), that the reader gives back the very
 * message however the stream is split, replies between frames, and a hostile server: junk, an
 * endless TERM line, NULs, a message far longer than the reader keeps. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/termframe.h"

/* Feeds len bytes in pieces of step (0: all at once); returns the events in order as letters
 * (M message, R reply, B bad) and the last message in m. */
static void feed(const char *buf, size_t len, size_t step, char *events, size_t cap,
                 struct tern_term_message *m, struct tern_reply *r)
{
    struct tframe f;
    tframe_init(&f);
    size_t n = 0, off = 0;
    events[0] = '\0';
    while (off < len) {
        size_t piece = step && len - off > step ? step : len - off, used = 0;
        enum tframe_event ev = tframe_feed(&f, buf + off, piece, &used);
        off += used;
        assert_true(used <= piece);
        if (ev == TFRAME_MESSAGE)
            tframe_take_message(&f, m);
        else if (ev == TFRAME_REPLY)
            assert_int_equal(tframe_take_reply(&f, r), 0);
        if (ev != TFRAME_MORE && n + 1 < cap) {
            events[n++] = ev == TFRAME_MESSAGE ? 'M' : ev == TFRAME_REPLY ? 'R' : 'B';
            events[n] = '\0';
        }
        if (ev == TFRAME_BAD)
            break;
        if (ev == TFRAME_MORE)
            assert_int_equal(used, piece);
    }
    tframe_free(&f);
}

static void test_format(void **state)
{
    (void)state;
    size_t len = 0;
    const char msg[] = "Subject: x\r\n\r\n.dot\r\nbare\nend";
    char *frame = tframe_format(1700000000, "ID7", "a@b.test", msg, sizeof msg - 1, &len);
    assert_non_null(frame);
    const char want[] = "TERM time=1700000000 id=ID7 size=28 from=<a@b.test>\r\n"
                        "Subject: x\r\n\r\n..dot\r\nbare\r\nend\r\n.\r\n";
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(frame, want, len);
    free(frame);
    frame = tframe_format(1, "I", "", "", 0, &len); /* empty message, null sender */
    assert_non_null(frame);
    assert_int_equal(len, strlen("TERM time=1 id=I size=0 from=<>\r\n.\r\n"));
    assert_memory_equal(frame, "TERM time=1 id=I size=0 from=<>\r\n.\r\n", len);
    free(frame);
}

static void test_round_trip_any_split(void **state)
{
    (void)state;
    const char msg[] = "Subject: hi\r\n\r\n.\r\n..\r\n.x\r\nnul\0in\r\n\r\n.\rodd\r\nlast\r\n";
    size_t flen;
    char *frame = tframe_format(42, "ID1", "s@x.test", msg, sizeof msg - 1, &flen);
    assert_non_null(frame);
    for (size_t step = 0; step <= 7; step++) {
        struct tern_term_message m = {0};
        struct tern_reply r = {0};
        char ev[8];
        feed(frame, flen, step, ev, sizeof ev, &m, &r);
        assert_string_equal(ev, "M");
        assert_int_equal(m.time, 42);
        assert_string_equal(m.id, "ID1");
        assert_string_equal(m.from, "s@x.test");
        assert_int_equal(m.size, sizeof msg - 1);
        assert_int_equal(m.len, sizeof msg - 1);
        assert_memory_equal(m.text, msg, m.len);
        assert_false(m.truncated);
        tern_term_message_free(&m);
        tern_reply_free(&r);
    }
    free(frame);
}

static void test_replies_and_several_frames(void **state)
{
    (void)state;
    const char s[] = "TERM time=1 id=A size=3 from=<a@x>\r\nabc\r\n.\r\n"
                     "TERM time=2 id=B size=3 from=<b@x>\r\ndef\r\n.\n" /* lenient end */
                     "421 4.7.0 mx The watch is over: bye\r\n";
    struct tern_term_message m = {0};
    struct tern_reply r = {0};
    char ev[8];
    feed(s, sizeof s - 1, 0, ev, sizeof ev, &m, &r);
    assert_string_equal(ev, "MMR");
    assert_string_equal(m.id, "B");
    assert_string_equal(m.text, "def\r\n");
    assert_int_equal(r.code, 421);
    assert_string_equal(r.enh, "4.7.0");
    tern_term_message_free(&m);
    tern_reply_free(&r);
}

static void test_hostile_streams(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "HELLO\r\n",                             /* neither TERM nor a reply */
        "\x1b[2J\r\n",                           /* the same */
        "TERM time=1 id=x size=1\r\nx\r\n.\r\n", /* no from */
        "TERX time=1 id=x from=<a>\r\n",         /* not TERM */
        "TERM time=1 id=x from=<a\r\n",          /* from not closed */
        "999 not a reply code\r\n",              /* bad reply */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct tern_term_message m = {0};
        struct tern_reply r = {0};
        char ev[8];
        feed(bad[i], strlen(bad[i]), 0, ev, sizeof ev, &m, &r);
        assert_string_equal(ev, "B");
        tern_term_message_free(&m);
        tern_reply_free(&r);
    }
    /* a TERM line with a NUL, and one that never ends */
    const char nul[] = "TERM time=1 id=x\0 from=<a>\r\n";
    struct tern_term_message m = {0};
    struct tern_reply r = {0};
    char ev[8];
    feed(nul, sizeof nul - 1, 0, ev, sizeof ev, &m, &r);
    assert_string_equal(ev, "B");
    size_t n = 100000;
    char *endless = malloc(n);
    memset(endless, 'A', n);
    memcpy(endless, "TERM ", 5);
    feed(endless, n, 4096, ev, sizeof ev, &m, &r);
    assert_string_equal(ev, "B");
    free(endless);
    /* over-long fields are cut, not overflowed */
    char head[1300];
    snprintf(head, sizeof head,
             "TERM time=99999999999999999999999 id=%0300d size=1 from=<%0900d>"
             "\r\nx\r\n.\r\n",
             0, 0);
    feed(head, strlen(head), 0, ev, sizeof ev, &m, &r);
    assert_string_equal(ev, "M");
    assert_int_equal(strlen(m.id), sizeof m.id - 1);
    assert_int_equal(strlen(m.from), 900);
    tern_term_message_free(&m);
    tern_reply_free(&r);
}

static void test_huge_message_is_bounded(void **state)
{
    (void)state;
    size_t body = 3 * TERN_TERM_TEXT_MAX;
    char *msg = malloc(body);
    memset(msg, 'z', body); /* one line, three times what a reader keeps */
    size_t flen;
    char *frame = tframe_format(1, "BIG", "a@b", msg, body, &flen);
    assert_non_null(frame);
    struct tern_term_message m = {0};
    struct tern_reply r = {0};
    char ev[8];
    feed(frame, flen, 65536, ev, sizeof ev, &m, &r);
    assert_string_equal(ev, "M");
    assert_true(m.truncated);
    assert_int_equal(m.len, TERN_TERM_TEXT_MAX);
    assert_int_equal(m.size, body);
    assert_int_equal(m.text[m.len], '\0');
    tern_term_message_free(&m);
    free(frame);
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_round_trip_any_split),
        cmocka_unit_test(test_replies_and_several_frames),
        cmocka_unit_test(test_hostile_streams),
        cmocka_unit_test(test_huge_message_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of libtern's terminal side (src/client/watch.c) and of tern_send_message_mode,
 * against the scripted loopback server of test_client_srv.h: frames that arrive in the same
 * packet as XWATCH's 250, a wait that times out, the handle refusing other commands while it
 * watches, QUIT dropping the frames still on their way, a server that ends the watch (421),
 * one that sends garbage, a refused XWATCH, and SEND/SOML/SAML FROM on the wire. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tern/client.h"
#include "test_client_srv.h"

#define NSTEPS(a) (sizeof(a) / sizeof((a)[0]))

static struct tern_client *connect_to(struct srv *s)
{
    struct tern_client_opts o = {.helo_name = "client.test",
                                 .timeouts = {.connect = 5000, .greeting = 5000, .other = 5000}};
    struct tern_client *c = tern_client_new(&o);
    assert_non_null(c);
    struct tern_reply r = {0};
    assert_int_equal(tern_connect(c, "127.0.0.1", s->port, TERN_TLS_NONE, &r), 0);
    tern_reply_free(&r);
    return c;
}

#define FRAME1                                                                                     \
    "TERM time=1700000000 id=ID1 size=16 from=<a@x.test>\r\nSubject: x\r\n\r\n..hi\r\n.\r\n"
#define FRAME2 "TERM time=1700000001 id=ID2 size=3 from=<>\r\nyo\r\n.\r\n"

static void test_watch_frames_and_quit(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"XWATCH\r\n", "250 2.0.0 watching a@x.test\r\n" FRAME1 "TERM time=2 id=ID2 si", 0},
        {NULL, "ze=3 from=<>\r\nyo\r\n.\r\n", 0},
        {"QUIT\r\n", FRAME2 "221 2.0.0 bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = connect_to(s);
    struct tern_reply r = {0};
    struct tern_term_message m = {0};
    assert_int_equal(tern_watch(c, &r), 0);
    assert_int_equal(r.code, 250);
    assert_int_equal(tern_watch_next(c, 5000, &m, &r), 1);
    assert_int_equal(m.time, 1700000000);
    assert_string_equal(m.id, "ID1");
    assert_string_equal(m.from, "a@x.test");
    assert_int_equal(m.size, 16);
    assert_string_equal(m.text, "Subject: x\r\n\r\n.hi\r\n");
    assert_int_equal(m.len, 19);
    assert_int_equal(tern_watch_next(c, 5000, &m, &r), 1);
    assert_string_equal(m.id, "ID2");
    assert_string_equal(m.from, "");
    assert_string_equal(m.text, "yo\r\n");
    assert_int_equal(tern_watch_next(c, 100, &m, &r), 0); /* nothing in time */
    assert_string_equal(m.id, "ID2");                     /* m untouched */
    assert_int_equal(tern_noop(c, &r), -1);               /* a terminal takes no commands */
    assert_int_equal(r.code, TERN_CODE_LOCAL);
    assert_non_null(strstr(tern_reply_text(&r), "terminal"));
    assert_int_equal(tern_quit(c, &r), 0); /* FRAME2 again on its way: dropped */
    assert_int_equal(r.code, 221);
    assert_false(tern_is_connected(c));
    assert_int_equal(tern_watch_next(c, 10, &m, &r), -1);
    srv_join(s);
    srv_free(s);
    tern_term_message_free(&m);
    tern_reply_free(&r);
    tern_free(c);
}

static void test_watch_ended_by_server(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"XWATCH\r\n", "250 2.0.0 watching a@x.test\r\n421 4.7.0 mx.test The watch is over\r\n",
         SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = connect_to(s);
    struct tern_reply r = {0};
    struct tern_term_message m = {0};
    assert_int_equal(tern_watch(c, &r), 0);
    assert_int_equal(tern_watch_next(c, 5000, &m, &r), -1);
    assert_int_equal(r.code, 421);
    assert_string_equal(r.enh, "4.7.0");
    assert_false(tern_is_connected(c));
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

static void test_watch_hostile_and_refused(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"XWATCH\r\n", "250 2.0.0 watching\r\n\x1b[2J not a frame\r\n", SRV_HANG},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = connect_to(s);
    struct tern_reply r = {0};
    struct tern_term_message m = {0};
    assert_int_equal(tern_watch(c, &r), 0);
    assert_int_equal(tern_watch_next(c, 5000, &m, &r), -1);
    assert_int_equal(r.code, TERN_CODE_CONNECTION);
    assert_non_null(strstr(tern_reply_text(&r), "not a terminal message"));
    assert_false(tern_is_connected(c));
    srv_join(s);
    srv_free(s);
    tern_free(c);

    static const struct srv_step refuse[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"XWATCH\r\n", "530 5.7.0 Authentication required\r\n", 0},
        {"NOOP\r\n", "250 2.0.0 Ok\r\n", 0},
    };
    s = srv_start(refuse, NSTEPS(refuse), false, false);
    c = connect_to(s);
    assert_int_equal(tern_watch(c, &r), -1);
    assert_int_equal(r.code, 530);
    assert_int_equal(tern_watch_next(c, 10, &m, &r), -1); /* not watching */
    assert_int_equal(r.code, TERN_CODE_LOCAL);
    assert_int_equal(tern_noop(c, &r), 0); /* the handle is still an SMTP client */
    tern_quit(c, NULL);
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

static void test_send_modes(void **state)
{
    (void)state;
    static const char *const verbs[] = {"SEND", "SOML", "SAML"};
    static const enum tern_send_mode modes[] = {TERN_SEND_SEND, TERN_SEND_SOML, TERN_SEND_SAML};
    for (int i = 0; i < 3; i++) {
        char from[64];
        snprintf(from, sizeof from, "%s FROM:<a@x.test>\r\n", verbs[i]);
        const struct srv_step steps[] = {
            {NULL, "220 mx.test\r\n", 0},
            {"EHLO client.test\r\n", "250 mx.test\r\n", 0},
            {from, "250 2.1.0 ok\r\n", 0},
            {"RCPT TO:<b@y.test>\r\n", "250 2.1.5 ok\r\n", 0},
            {"DATA\r\n", "354 go\r\n", 0},
            {"hi\r\n.\r\n", "250 2.0.0 Ok: delivered to 1 terminal as ID\r\n", 0},
        };
        struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
        struct tern_client *c = connect_to(s);
        struct tern_reply r = {0};
        assert_int_equal(tern_ehlo(c, NULL, &r), 0);
        struct tern_send_result res = {0};
        const char *rcpt[] = {"b@y.test"};
        assert_int_equal(tern_send_message_mode(c, modes[i], "a@x.test", rcpt, 1, "hi", 2, &res),
                         0);
        assert_int_equal(res.mail.cmd, i == 0   ? TERN_CMD_SEND
                                       : i == 1 ? TERN_CMD_SOML
                                                : TERN_CMD_SAML);
        assert_int_equal(res.final.code, 250);
        tern_quit(c, NULL);
        srv_join(s);
        srv_free(s);
        tern_send_result_free(&res);
        tern_reply_free(&r);
        tern_free(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watch_frames_and_quit),
        cmocka_unit_test(test_watch_ended_by_server),
        cmocka_unit_test(test_watch_hostile_and_refused),
        cmocka_unit_test(test_send_modes),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    srv_remove_cert();
    return rc;
}

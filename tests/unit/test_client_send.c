/* Unit tests of libtern's whole transactions and AUTH (src/client/send.c, src/client/sasl.c)
 * against the scripted loopback server of test_client_srv.h: MAIL/RCPT/DATA pipelined in one
 * write with per-recipient replies and the message dot-stuffed and CRLF-normalised byte for
 * byte; the same one command at a time; refused MAIL, no recipient accepted, 421 in the middle;
 * BDAT chunks; messages from regular files (SIZE declared) and pipes (not); SMTPUTF8 and SIZE
 * checked before sending; the DATA calls with the message split anywhere; AUTH PLAIN, LOGIN and
 * SCRAM-SHA-256 (a real GNU SASL server, a wrong password, a server that forges its signature);
 * no password in clear; ten threads each with its own handle. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tern/client.h"
#include "test_client_srv.h"

#define NSTEPS(a) (sizeof(a) / sizeof((a)[0]))

static struct tern_client *start(struct srv *s, int use_bdat, size_t chunk, int auth_clear)
{
    struct tern_client_opts o = {
        .helo_name = "client.test",
        .use_bdat = use_bdat,
        .bdat_chunk = chunk,
        .auth_without_tls = auth_clear,
        .timeouts = {.greeting = 5000, .other = 5000, .mail = 5000, .rcpt = 5000},
    };
    struct tern_client *c = tern_client_new(&o);
    struct tern_reply r = {0};
    if (tern_connect(c, "127.0.0.1", s->port, TERN_TLS_NONE, &r) != 0 ||
        tern_ehlo(c, NULL, &r) != 0)
        fail_msg("setup: %d %s", r.code, tern_reply_text(&r));
    tern_reply_free(&r);
    return c;
}

static const char msg[] = "Subject: t\n\n.leading dot\nline\r\n..two\n\xc3\xa9t\xc3\xa9";
#define MSG_SIZE "48" /* CRLF line ends, a final CRLF, no dot-stuffing */
#define MSG_WIRE "Subject: t\r\n\r\n..leading dot\r\nline\r\n...two\r\n\xc3\xa9t\xc3\xa9\r\n.\r\n"
#define EHLO_PIPE                                                                                  \
    "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n250 CHUNKING\r\n"

static void test_pipelined_message(void **state)
{
    (void)state;
    /* one step for MAIL, three RCPTs and DATA: had the client waited for a reply before the
     * next command, the server would still be reading and the client would time out */
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", EHLO_PIPE, 0},
        {"MAIL FROM:<a@x.test> SIZE=" MSG_SIZE " BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\n"
         "RCPT TO:<c@y.test>\r\nRCPT TO:<d@y.test>\r\nDATA\r\n",
         "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n251 2.1.5 forwarded\r\n"
         "354 go ahead\r\n",
         0},
        {MSG_WIRE, "250 2.0.0 queued as 42\r\n", 0},
        {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = start(s, 0, 0, 0);
    const char *rcpts[] = {"b@y.test", "c@y.test", "d@y.test"};
    struct tern_send_result res = {0};
    assert_int_equal(tern_send_message(c, "a@x.test", rcpts, 3, msg, strlen(msg), &res), 0);
    assert_int_equal(res.mail.code, 250);
    assert_int_equal(res.nrcpt, 3);
    assert_int_equal(res.accepted, 2);
    assert_int_equal(res.rcpt[0].cls, TERN_POSITIVE);
    assert_int_equal(res.rcpt[1].code, 550);
    assert_string_equal(res.rcpt[1].enh, "5.1.1");
    assert_string_equal(res.rcpt[1].text, "no such user");
    assert_int_equal(res.rcpt[2].code, 251);
    assert_int_equal(res.rcpt[2].cls, TERN_POSITIVE);
    assert_int_equal(res.data.code, 354);
    assert_int_equal(res.final.code, 250);
    assert_string_equal(res.final.text, "queued as 42");
    assert_int_equal(tern_quit(c, NULL), 0);
    srv_join(s);
    srv_free(s);
    tern_send_result_free(&res);
    tern_send_result_free(&res); /* twice is fine */
    tern_free(c);
}

static void test_one_at_a_time(void **state)
{
    (void)state;
    /* no PIPELINING: each command waits for its reply; no recipient: no DATA, then RSET */
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", "250-mx.test\r\n250 SIZE\r\n", 0},
        {"MAIL FROM:<a@x.test> SIZE=4\r\n", "250 ok\r\n", 0},
        {"RCPT TO:<b@y.test>\r\n", "550 no\r\n", 0},
        {"RCPT TO:<c@y.test>\r\n", "450 4.2.1 busy\r\n", 0},
        {"RSET\r\n", "250 ok\r\n", 0},
        {"MAIL FROM:<a@x.test> SIZE=4\r\n", "553 5.1.8 bad sender\r\n", 0},
        {"RSET\r\n", "250 ok\r\n", 0},
        {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = start(s, 0, 0, 0);
    const char *rcpts[] = {"b@y.test", "c@y.test"};
    struct tern_send_result res = {0};
    assert_int_equal(tern_send_message(c, "a@x.test", rcpts, 2, "hi", 2, &res), -1);
    assert_int_equal(res.accepted, 0);
    assert_int_equal(res.rcpt[1].code, 450);
    assert_int_equal(res.data.code, TERN_CODE_LOCAL);
    assert_non_null(strstr(res.data.text, "no recipient was accepted"));
    assert_int_equal(res.final.code, TERN_CODE_LOCAL);
    /* MAIL refused: no RCPT is sent, each says why */
    assert_int_equal(tern_send_message(c, "a@x.test", rcpts, 2, "hi", 2, &res), -1);
    assert_int_equal(res.mail.code, 553);
    assert_int_equal(res.rcpt[0].code, TERN_CODE_LOCAL);
    assert_non_null(strstr(res.rcpt[0].text, "not sent"));
    assert_int_equal(tern_quit(c, NULL), 0);
    srv_join(s);
    srv_free(s);
    tern_send_result_free(&res);
    tern_free(c);
}

static void test_pipelined_failures(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", EHLO_PIPE, 0},
        /* every recipient refused, yet DATA got 354: an empty message ends it (RFC 2920) */
        {"MAIL FROM:<a@x.test> SIZE=4\r\nRCPT TO:<b@y.test>\r\nDATA\r\n",
         "250 ok\r\n550 no\r\n354 go\r\n", 0},
        {".\r\n", "554 5.5.1 no valid recipients\r\n", 0},
        {"RSET\r\n", "250 ok\r\n", 0},
        /* 421 to MAIL, then the server is gone: the rest are 101 saying so */
        {"MAIL FROM:<a@x.test> SIZE=4\r\nRCPT TO:<b@y.test>\r\nDATA\r\n",
         "421 4.3.2 shutting down\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = start(s, 0, 0, 0);
    const char *rcpts[] = {"b@y.test"};
    struct tern_send_result res = {0};
    assert_int_equal(tern_send_message(c, "a@x.test", rcpts, 1, "hi\n", 3, &res), -1);
    assert_int_equal(res.data.code, 354);
    assert_int_equal(res.final.code, 554);
    assert_true(tern_is_connected(c));
    assert_int_equal(tern_send_message(c, "a@x.test", rcpts, 1, "hi\n", 3, &res), -1);
    assert_int_equal(res.mail.code, 421);
    assert_int_equal(res.rcpt[0].code, TERN_CODE_CONNECTION);
    assert_non_null(strstr(res.rcpt[0].text, "421 shutting down"));
    assert_int_equal(res.final.code, TERN_CODE_LOCAL);
    assert_false(tern_is_connected(c));
    srv_join(s);
    srv_free(s);
    tern_send_result_free(&res);
    tern_free(c);
}

static void test_bdat(void **state)
{
    (void)state;
    /* chunks of 8 input octets: "abc\n.def" -> 9 octets, "\nghij" + the final CRLF -> 8 */
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", EHLO_PIPE, 0},
        {"MAIL FROM:<a@x.test> SIZE=17\r\nRCPT TO:<b@y.test>\r\n", "250 ok\r\n250 ok\r\n", 0},
        {"BDAT 9\r\nabc\r\n.def", "250 2.0.0 9 octets\r\n", 0},
        {"BDAT 8 LAST\r\n\r\nghij\r\n", "250 2.0.0 queued\r\n", 0},
        {"MAIL FROM:<a@x.test> SIZE=0\r\nRCPT TO:<b@y.test>\r\n", "250 ok\r\n250 ok\r\n", 0},
        {"BDAT 0 LAST\r\n", "552 5.3.4 empty\r\n", 0},
        {"RSET\r\n", "250 ok\r\n", 0},
        {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = start(s, 1, 8, 0);
    const char *rcpts[] = {"b@y.test"};
    struct tern_send_result res = {0};
    assert_int_equal(tern_send_message(c, "a@x.test", rcpts, 1, "abc\n.def\nghij", 13, &res), 0);
    assert_string_equal(res.data.text, "9 octets");
    assert_string_equal(res.final.text, "queued");
    assert_int_equal(tern_send_message(c, "a@x.test", rcpts, 1, "", 0, &res), -1);
    assert_int_equal(res.final.code, 552);
    assert_int_equal(tern_quit(c, NULL), 0);
    srv_join(s);
    srv_free(s);
    tern_send_result_free(&res);
    tern_free(c);
}

static void test_from_file(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", EHLO_PIPE, 0},
        {"MAIL FROM:<a@x.test> SIZE=" MSG_SIZE " BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\nDATA\r\n",
         "250 ok\r\n250 ok\r\n354 go\r\n", 0},
        {MSG_WIRE, "250 ok\r\n", 0},
        /* from a pipe: no SIZE, and BODY=8BITMIME since the octets are unknown */
        {"MAIL FROM:<a@x.test> BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\nDATA\r\n",
         "250 ok\r\n250 ok\r\n354 go\r\n", 0},
        {MSG_WIRE, "250 ok\r\n", 0},
        {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = start(s, 0, 0, 0);
    const char *rcpts[] = {"b@y.test"};
    struct tern_send_result res = {0};
    FILE *f = tmpfile();
    fputs(msg, f);
    rewind(f);
    assert_int_equal(tern_send_file(c, "a@x.test", rcpts, 1, f, &res), 0);
    fclose(f);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], msg, strlen(msg)), (ssize_t)strlen(msg));
    close(p[1]);
    f = fdopen(p[0], "r");
    assert_int_equal(tern_send_file(c, "a@x.test", rcpts, 1, f, &res), 0);
    fclose(f);
    assert_int_equal(tern_send_file(c, "a@x.test", rcpts, 1, NULL, &res), -1);
    assert_int_equal(res.mail.code, TERN_CODE_LOCAL);
    assert_int_equal(tern_quit(c, NULL), 0);
    srv_join(s);
    srv_free(s);
    tern_send_result_free(&res);
    tern_free(c);
}

static void test_checked_before_sending(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", "250-mx.test\r\n250-SIZE 10\r\n250 PIPELINING\r\n", 0},
        {"EHLO again.test\r\n", "250-mx.test\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n", 0},
        {"MAIL FROM:<\xc3\xa9@x.test> SMTPUTF8\r\nRCPT TO:<b@y.test>\r\nDATA\r\n",
         "250 ok\r\n250 ok\r\n354 go\r\n", 0},
        {"hi\r\n.\r\n", "250 ok\r\n", 0},
        {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = start(s, 0, 0, 0);
    const char *rcpts[] = {"b@y.test"};
    const char *none[] = {NULL};
    struct tern_send_result res = {0};
    /* larger than the announced SIZE: refused here, nothing sent */
    assert_int_equal(tern_send_message(c, "a@x.test", rcpts, 1, "0123456789ab", 12, &res), -1);
    assert_int_equal(res.mail.code, TERN_CODE_LOCAL);
    assert_non_null(strstr(res.mail.text, "at most 10"));
    assert_int_equal(res.rcpt[0].code, TERN_CODE_LOCAL);
    /* not ASCII, and no SMTPUTF8 offered */
    assert_int_equal(tern_send_message(c, "\xc3\xa9@x.test", rcpts, 1, "hi", 2, &res), -1);
    assert_non_null(strstr(res.mail.text, "SMTPUTF8"));
    assert_int_equal(tern_send_message(c, "a@x.test", rcpts, 0, "hi", 2, &res), -1);
    assert_non_null(strstr(res.mail.text, "no recipients"));
    assert_int_equal(tern_send_message(c, "a@x.test", none, 1, "hi", 2, &res), -1);
    assert_non_null(strstr(res.mail.text, "NULL"));
    /* a sender no command can carry: refused here, not cut short on the wire */
    char *big = malloc(13000);
    assert_non_null(big);
    memset(big, 'a', 12999);
    big[12999] = '\0';
    assert_int_equal(tern_send_message(c, big, rcpts, 1, "hi", 2, &res), -1);
    assert_int_equal(res.mail.code, TERN_CODE_LOCAL);
    assert_non_null(strstr(res.mail.text, "longer than a command"));
    free(big);
    struct tern_reply r = {0};
    assert_int_equal(tern_ehlo(c, "again.test", &r), 0);
    assert_int_equal(tern_send_message(c, "\xc3\xa9@x.test", rcpts, 1, "hi", 2, &res), 0);
    assert_int_equal(tern_quit(c, NULL), 0);
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
    tern_send_result_free(&res);
    tern_free(c);
}

static void test_data_calls(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", "250 mx.test\r\n", 0},
        {"MAIL FROM:<a@x.test>\r\n", "250 ok\r\n", 0},
        {"RCPT TO:<b@y.test>\r\n", "250 ok\r\n", 0},
        {"DATA\r\n", "354 go\r\n", 0},
        {MSG_WIRE, "250 ok\r\n", 0},
        {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = start(s, 0, 0, 0);
    struct tern_reply r = {0};
    assert_int_equal(tern_data_write(c, "x", 1, &r), -1); /* no DATA yet */
    assert_int_equal(r.code, TERN_CODE_LOCAL);
    assert_int_equal(tern_mail(c, "a@x.test", NULL, &r), 0);
    assert_int_equal(tern_rcpt(c, "b@y.test", "", &r), 0);
    assert_int_equal(tern_data_begin(c, &r), 0);
    /* split where the transform keeps state: inside CRLF, before a leading dot */
    size_t cuts[] = {11, 12, 13, 27, 28, 31, 32, 33, strlen(msg)};
    size_t at = 0;
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(tern_data_write(c, msg + at, cuts[i] - at, &r), 0);
        at = cuts[i];
    }
    assert_int_equal(tern_data_end(c, &r), 0);
    assert_int_equal(tern_quit(c, &r), 0);
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

static void test_auth(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", "250-mx.test\r\n250-AUTH=LOGIN\r\n250 AUTH SCRAM-SHA-256\r\n", 0},
        {"AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n", 0},
        {"dXNlcg==\r\n", "334 UGFzc3dvcmQ6\r\n", 0},
        {"cGFzcw==\r\n", "235 2.7.0 ok\r\n", 0},
        {"AUTH PLAIN AHVzZXIAd3Jvbmc=\r\n", "535 5.7.8 Authentication credentials invalid\r\n", 0},
        {NULL, "pencil", SRV_SCRAM}, /* right password */
        {NULL, "pencil", SRV_SCRAM}, /* wrong password */
        {NULL, "pencil", SRV_SCRAM | SRV_SCRAM_EVIL},
        {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = start(s, 0, 0, 1);
    struct tern_reply r = {0};
    assert_int_equal(tern_auth(c, "login", "user", "pass", &r), 0);
    assert_int_equal(r.code, 235);
    assert_int_equal(tern_auth(c, "PLAIN", "user", "wrong", &r), -1);
    assert_int_equal(r.code, 535);
    assert_string_equal(r.enh, "5.7.8");
    assert_int_equal(tern_auth(c, NULL, "user", "pencil", &r), 0); /* SCRAM: the best offered */
    assert_int_equal(r.code, 235);
    assert_int_equal(tern_auth(c, NULL, "user", "pen", &r), -1);
    assert_int_equal(r.code, 535);
    /* a server that does not know the password cannot sign: the client cancels with "*" */
    assert_int_equal(tern_auth(c, "SCRAM-SHA-256", "user", "pencil", &r), -1);
    assert_int_equal(r.code, TERN_CODE_LOCAL);
    assert_non_null(strstr(r.text, "cannot answer the SCRAM-SHA-256 challenge"));
    assert_int_equal(tern_auth(c, "CRAM-MD5", "user", "pencil", &r), -1);
    assert_non_null(strstr(r.text, "does not speak"));
    assert_int_equal(tern_auth(c, "PLAIN", NULL, "pencil", &r), -1);
    assert_int_equal(tern_quit(c, NULL), 0);
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

static void test_no_password_in_clear(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", "250-mx.test\r\n250 AUTH PLAIN\r\n", 0},
        {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = start(s, 0, 0, 0);
    struct tern_reply r = {0};
    assert_int_equal(tern_auth(c, NULL, "user", "pass", &r), -1);
    assert_int_equal(r.code, TERN_CODE_LOCAL);
    assert_non_null(strstr(r.text, "without TLS"));
    assert_int_equal(tern_quit(c, NULL), 0);
    assert_string_equal(srv_join(s), "EHLO client.test\r\nQUIT\r\n"); /* nothing else went */
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

/* Ten handles on ten threads at once, each with its own server: nothing shared. */
#define NTHREADS 10
static const struct srv_step thread_steps[] = {
    {NULL, "220 mx.test\r\n", 0},
    {"EHLO client.test\r\n", EHLO_PIPE "", 0},
    {"MAIL FROM:<a@x.test> SIZE=4\r\nRCPT TO:<b@y.test>\r\nDATA\r\n",
     "250 ok\r\n250 ok\r\n354 go\r\n", 0},
    {"hi\r\n.\r\n", "250 ok\r\n", 0},
    {"AUTH PLAIN AHVzZXIAcGFzcw==\r\n", "235 ok\r\n", 0},
    {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
};

static void *thread_client(void *arg)
{
    struct srv *s = arg;
    struct tern_client_opts o = {.helo_name = "client.test", .auth_without_tls = 1};
    struct tern_client *c = tern_client_new(&o);
    struct tern_reply r = {0};
    struct tern_send_result res = {0};
    const char *rcpts[] = {"b@y.test"};
    intptr_t ok = tern_connect(c, "127.0.0.1", s->port, TERN_TLS_NONE, &r) == 0 &&
                  tern_ehlo(c, NULL, &r) == 0 &&
                  tern_send_message(c, "a@x.test", rcpts, 1, "hi", 2, &res) == 0 &&
                  tern_auth(c, "PLAIN", "user", "pass", &r) == 0 && tern_quit(c, &r) == 0;
    tern_reply_free(&r);
    tern_send_result_free(&res);
    tern_free(c);
    return (void *)ok;
}

static void test_threads(void **state)
{
    (void)state;
    struct srv *s[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        s[i] = srv_start(thread_steps, NSTEPS(thread_steps), false, false);
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&th[i], NULL, thread_client, s[i]);
    for (int i = 0; i < NTHREADS; i++) {
        void *ok;
        pthread_join(th[i], &ok);
        assert_true(ok != NULL);
        srv_join(s[i]);
        srv_free(s[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined_message),
        cmocka_unit_test(test_one_at_a_time),
        cmocka_unit_test(test_pipelined_failures),
        cmocka_unit_test(test_bdat),
        cmocka_unit_test(test_from_file),
        cmocka_unit_test(test_checked_before_sending),
        cmocka_unit_test(test_data_calls),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_no_password_in_clear),
        cmocka_unit_test(test_threads),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    srv_remove_cert();
    return rc;
}

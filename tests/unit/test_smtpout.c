/* Unit tests of the event-loop SMTP client (src/relay/smtpout*.c) on a real event_base against
 * the scripted loopback server of smtpout_srv.h, comparing what went over the wire octet for
 * octet: two messages on one connection (dot-stuffing, bare LF, no final CRLF), pipelined and
 * lock-step envelopes, per-recipient results, MAIL, DATA and final-dot refusals, RSET after a
 * transaction without recipients, HELO fallback, SIZE, BODY=8BITMIME and SMTPUTF8, a 20 MB
 * message streamed with bounded buffering, STARTTLS in every mode (verified against the test
 * CA or refused without it), implicit TLS, AUTH PLAIN and LOGIN under TLS and the refusal to
 * send a password in clear, timeouts, a reset in the middle of the message, 421, malformed,
 * over-long and injected replies, TURN over a socketpair (plain and TLS), and QUIT. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "smtpout_srv.h"

#include <event2/bufferevent_ssl.h>
#include <signal.h>

static const char *const two[] = {"b@mx.test", "c@mx.test"};

static void test_two_messages(void **state)
{
    struct fx *f = *state;
    const char *b1 = "Subject: one\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n";
    const char *b2 = "Subject: two\nbare LF\n.dot"; /* bare LFs, no final line end */
    char m1[200], m2[200];
    snprintf(m1, sizeof m1,
             "MAIL FROM:<a@client.test> SIZE=%zu\r\nRCPT TO:<b@mx.test>\r\nRCPT "
             "TO:<c@mx.test>\r\nDATA\r\n",
             strlen(b1));
    snprintf(m2, sizeof m2, "MAIL FROM:<> SIZE=%zu\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n", strlen(b2));
    const struct srv_step steps[] = {
        GREET,
        EHLO("250-PIPELINING\r\n250-SIZE 100000\r\n250 8BITMIME\r\n"),
        {m1, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go\r\n", SRV_ALONE, 0, 0},
        {"Subject: one\r\n\r\n..leading dot\r\n...two\r\n..\r\nend\r\n.\r\n",
         "250 2.0.0 queued as A\r\n", 0, 0, 0},
        {m2, "250 ok\r\n250 ok\r\n354 go\r\n", SRV_ALONE, 0, 0},
        {"Subject: two\r\nbare LF\r\n..dot\r\n.\r\n", "250 queued as B\r\n", 0, 0, 0},
        {m2, "250 ok\r\n250 ok\r\n354 go\r\n", 0, 0, 0},
        {"Subject: two\r\nbare LF\r\n..dot\r\n.\r\n", "250 queued as B\r\n", 0, 0, 0},
        {"MAIL FROM:<> SIZE=3\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n", "250 ok\r\n250 ok\r\n354 go\r\n",
         0, 0, 0},
        {"3\r\n.\r\n", "250 queued as C\r\n", 0, 0, 0},
        QUIT,
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    char peer[64];
    snprintf(peer, sizeof peer, "localhost[127.0.0.1]:%s", f->srv->port);
    assert_string_equal(smtpout_peer(f->s), peer);
    assert_true(smtpout_caps(f->s)->flags & TERN_CAP_PIPELINING);
    assert_false(smtpout_tls(f->s)->on);
    deliver(f, "a@client.test", two, 2, b1, false);
    expect_reply(&f->res[0], 250, "2.0.0", "queued as A", TERN_CMD_DATA_END, false);
    expect_reply(&f->res[1], 250, "2.0.0", "queued as A", TERN_CMD_DATA_END, false);
    deliver(f, "", two, 1, b2, false);
    expect_reply(&f->res[0], 250, "", "queued as B", TERN_CMD_DATA_END, false);
    /* the next message sent from inside the done callback */
    int fd = msg_fd("3\r\n", 3);
    struct smtpout_msg m3 = {.from = "", .rcpts = two + 1, .nrcpts = 1, .fd = fd, .size = 3};
    f->chain = &m3;
    deliver(f, "", two, 1, b2, false);
    RUN_UNTIL(f, f->dones == 4);
    close(fd);
    expect_reply(&f->res[0], 250, "", "queued as C", TERN_CMD_DATA_END, false);
    struct smtpout_stats st;
    smtpout_stats(f->s, &st);
    assert_int_equal(st.messages, 4);
    finish(f);
    assert_non_null(strstr(f->tlog, "C: <message: "));
    assert_non_null(strstr(f->tlog, "S: 221 2.0.0 bye"));
}

static void test_lockstep(void **state)
{
    struct fx *f = *state;
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 SIZE\r\n"), /* SIZE without a limit: declared, nothing refused */
        {"MAIL FROM:<a@x.test> SIZE=4\r\n", "250 ok\r\n", SRV_ALONE, 0, 0},
        {"RCPT TO:<b@mx.test>\r\n", "550 5.1.1 no such user\r\n", SRV_ALONE, 0, 0},
        {"RCPT TO:<c@mx.test>\r\n", "250 ok\r\n", SRV_ALONE, 0, 0},
        {"DATA\r\n", "354 go\r\n", SRV_ALONE, 0, 0},
        {"hi\r\n.\r\n", "250 done\r\n", 0, 0, 0},
        QUIT,
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    deliver(f, "a@x.test", two, 2, "hi\r\n", false);
    expect_reply(&f->res[0], 550, "5.1.1", "no such user", TERN_CMD_RCPT, false);
    assert_int_equal(smtpout_class(&f->res[0]), 5);
    expect_reply(&f->res[1], 250, "", "done", TERN_CMD_DATA_END, false);
    finish(f);
}

static void test_per_recipient(void **state)
{
    struct fx *f = *state;
    static const char *const three[] = {"x@mx.test", "y@mx.test", "z@mx.test"};
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 PIPELINING\r\n"),
        {"MAIL FROM:<a@x.test>\r\nRCPT TO:<x@mx.test>\r\nRCPT TO:<y@mx.test>\r\nRCPT "
         "TO:<z@mx.test>\r\nDATA\r\n",
         "250 ok\r\n550 5.1.1 unknown\r\n451 4.3.0 try later\r\n250 ok\r\n354 go\r\n", 0, 0, 0},
        {"m\r\n.\r\n", "250 2.0.0 stored\r\n", 0, 0, 0},
        QUIT,
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    deliver(f, "a@x.test", three, 3, "m", false);
    expect_reply(&f->res[0], 550, "5.1.1", "unknown", TERN_CMD_RCPT, false);
    expect_reply(&f->res[1], 451, "4.3.0", "try later", TERN_CMD_RCPT, false);
    assert_int_equal(smtpout_class(&f->res[1]), 4);
    expect_reply(&f->res[2], 250, "2.0.0", "stored", TERN_CMD_DATA_END, false);
    finish(f);
}

static void test_mail_refused(void **state)
{
    struct fx *f = *state;
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 PIPELINING\r\n"),
        /* pipelined: the RCPTs and DATA were sent; their 503s decide nothing, no RSET follows */
        {"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n",
         "553 5.7.1 sender refused\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no "
         "MAIL\r\n",
         0, 0, 0},
        {"MAIL FROM:<ok@x.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
         "250 ok\r\n250 ok\r\n554 5.5.1 no valid recipients\r\n", 0, 0, 0},
        {"RSET\r\n", "250 reset\r\n", SRV_ALONE, 0, 0}, /* MAIL was accepted: cleared */
        QUIT,
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    deliver(f, "a@x.test", two, 2, "m\r\n", false);
    expect_reply(&f->res[0], 553, "5.7.1", "sender refused", TERN_CMD_MAIL, false);
    expect_reply(&f->res[1], 553, "5.7.1", "sender refused", TERN_CMD_MAIL, false);
    /* DATA refused after an accepted RCPT: that recipient gets DATA's reply */
    deliver(f, "ok@x.test", two, 1, "m\r\n", false);
    expect_reply(&f->res[0], 554, "5.5.1", "no valid recipients", TERN_CMD_DATA, false);
    assert_true(smtpout_idle(f->s));
    finish(f);
}

static void test_lockstep_refusals(void **state)
{
    struct fx *f = *state;
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 HELP\r\n"),
        {"MAIL FROM:<a@x.test>\r\n", "451 4.3.0 later\r\n", SRV_ALONE, 0, 0}, /* no RCPT follows */
        {"MAIL FROM:<a@x.test>\r\n", "250 ok\r\n", SRV_ALONE, 0, 0},
        {"RCPT TO:<b@mx.test>\r\n", "550 no\r\n", SRV_ALONE, 0, 0},
        {"RCPT TO:<c@mx.test>\r\n", "550 no\r\n", SRV_ALONE, 0, 0},
        {"RSET\r\n", "250 ok\r\n", SRV_ALONE, 0, 0}, /* no DATA without a recipient */
        QUIT,
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    deliver(f, "a@x.test", two, 2, "m\r\n", false);
    expect_reply(&f->res[1], 451, "4.3.0", "later", TERN_CMD_MAIL, false);
    deliver(f, "a@x.test", two, 2, "m\r\n", false);
    expect_reply(&f->res[0], 550, "", "no", TERN_CMD_RCPT, false);
    expect_reply(&f->res[1], 550, "", "no", TERN_CMD_RCPT, false);
    finish(f);
}

static void test_dot_refused_and_bad_354(void **state)
{
    struct fx *f = *state;
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 PIPELINING\r\n"),
        {"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
         "250 ok\r\n250 ok\r\n354 go\r\n", 0, 0, 0},
        {"m\r\n.\r\n", "451 4.3.0 disk full\r\n", 0, 0, 0},
        /* a server that answers 354 with no recipient: an empty message ends it, no RSET */
        {"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
         "250 ok\r\n550 no\r\n354 go\r\n", 0, 0, 0},
        {".\r\n", "554 no recipients\r\n", SRV_ALONE, 0, 0},
        QUIT,
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    deliver(f, "a@x.test", two, 1, "m\n", false);
    expect_reply(&f->res[0], 451, "4.3.0", "disk full", TERN_CMD_DATA_END, false);
    deliver(f, "a@x.test", two, 1, "m\n", false);
    expect_reply(&f->res[0], 550, "", "no", TERN_CMD_RCPT, false);
    struct smtpout_stats st;
    smtpout_stats(f->s, &st);
    assert_int_equal(st.messages, 0);
    finish(f);
}

static void test_helo_fallback(void **state)
{
    struct fx *f = *state;
    const struct srv_step steps[] = {
        GREET,
        {"EHLO client.test\r\n", "502 5.5.1 what?\r\n", 0, 0, 0},
        {"HELO client.test\r\n", "250 mx.test\r\n", 0, 0, 0},
        {"MAIL FROM:<a@x.test>\r\n", "250 ok\r\n", SRV_ALONE, 0, 0},
        {"RCPT TO:<b@mx.test>\r\n", "250 ok\r\n", SRV_ALONE, 0, 0},
        {"DATA\r\n", "354 go\r\n", SRV_ALONE, 0, 0},
        {"\xe9t\xe9\r\n.\r\n", "250 ok\r\n", 0, 0, 0}, /* 8-bit, sent as it is: no BODY= to say */
        QUIT,
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    assert_int_equal(smtpout_caps(f->s)->esmtp, 0);
    assert_string_equal(smtpout_caps(f->s)->domain, "mx.test");
    deliver(f, "a@x.test", two, 1, "\xe9t\xe9\r\n", false);
    expect_reply(&f->res[0], 250, "", "ok", TERN_CMD_DATA_END, false);
    finish(f);
}

static void test_size_utf8_8bit(void **state)
{
    struct fx *f = *state;
    static const char *const utf[] = {"j\xc3\xb6rg@mx.test"};
    const struct srv_step steps[] = {
        GREET,
        EHLO("250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 20\r\n"),
        {"MAIL FROM:<a@x.test> SIZE=8 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<j\xc3\xb6rg@mx.test>\r\n"
         "DATA\r\n",
         "250 ok\r\n250 ok\r\n354 go\r\n", 0, 0, 0},
        {"caf\xc3\xa9!\r\n.\r\n", "250 ok\r\n", 0, 0, 0},
        {"MAIL FROM:<a@x.test> SIZE=3 SMTPUTF8\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
         "250 ok\r\n250 ok\r\n354 go\r\n", 0, 0, 0},
        {"abc\r\n.\r\n", "250 ok\r\n", 0, 0, 0},
        QUIT, /* the 21-octet message went nowhere: the next thing said is QUIT */
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    deliver(f, "a@x.test", utf, 1, "caf\xc3\xa9!\r\n", false);
    expect_reply(&f->res[0], 250, "", "ok", TERN_CMD_DATA_END, false);
    deliver(f, "a@x.test", two, 1, "abc", true);
    deliver(f, "a@x.test", two, 2, "123456789012345678901", false);
    expect_reply(&f->res[0], 552, "5.3.4", "message size 21 exceeds the limit of 20", TERN_CMD_MAIL,
                 true);
    expect_reply(&f->res[1], 552, "5.3.4", "(SIZE)", TERN_CMD_MAIL, true);
    finish(f);
}

static void test_smtputf8_missing(void **state)
{
    struct fx *f = *state;
    static const char *const bad[] = {"b@mx.test", "line\r\nbreak@mx.test"};
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 PIPELINING\r\n"),
        /* the address that cannot go on a command line is not sent; the other is */
        {"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
         "250 ok\r\n250 ok\r\n354 go\r\n", 0, 0, 0},
        {"m\r\n.\r\n", "250 ok\r\n", 0, 0, 0},
        QUIT,
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    deliver(f, "a@x.test", two, 2, "m", true);
    expect_reply(&f->res[0], 550, "5.6.7", "SMTPUTF8 is required", TERN_CMD_MAIL, true);
    expect_reply(&f->res[1], 550, "5.6.7", "SMTPUTF8 is required", TERN_CMD_MAIL, true);
    static const char *const utf_from[] = {"b@mx.test"};
    deliver(f, "\xc3\xa9@x.test", utf_from, 1, "m", false); /* a non-ASCII sender needs it too */
    assert_int_equal(f->res[0].code, 550);
    deliver(f, "a@x.test", bad, 2, "m", false);
    expect_reply(&f->res[0], 250, "", "ok", TERN_CMD_DATA_END, false);
    expect_reply(&f->res[1], 553, "5.1.3", "line break", TERN_CMD_RCPT, true);
    finish(f);
}

/* A 20 MB message with a dot at the start of every 100th line, and its stuffed form. */
static void test_large_message(void **state)
{
    struct fx *f = *state;
    size_t len = 20u << 20, lines = len / 64;
    char *msg = malloc(len), *wire = malloc(len + lines + 8);
    size_t w = 0;
    for (size_t i = 0; i < len; i += 64) {
        memset(msg + i, 'a' + (char)(i / 64 % 26), 62);
        if (i / 64 % 100 == 0)
            msg[i] = '.';
        memcpy(msg + i + 62, "\r\n", 2);
        if (msg[i] == '.')
            wire[w++] = '.';
        memcpy(wire + w, msg + i, 64);
        w += 64;
    }
    memcpy(wire + w, ".\r\n", 4);
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 PIPELINING\r\n"),
        {"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
         "250 ok\r\n250 ok\r\n354 go\r\n", 0, 0, 0},
        /* the server waits before it reads: the client meets back-pressure at once */
        {wire, "250 ok\r\n", 0, 300, w + 3},
        QUIT,
    };
    /* in clear, then over TLS: the filter must not pile the message up below itself */
    for (int tls = 0; tls < 2; tls++) {
        f->o.tls = tls ? SMTPOUT_TLS_WRAPPER : SMTPOUT_TLS_NONE;
        assert_true(start(f, steps, NSTEPS(steps), tls));
        int fd = msg_fd(msg, len);
        struct smtpout_msg m = {.from = "a@x.test", .rcpts = two, .nrcpts = 1, .fd = fd};
        assert_int_equal(smtpout_send(f->s, &m, on_done, f), 0);
        close(fd);
        RUN_UNTIL(f, f->dones == 1);
        expect_reply(&f->res[0], 250, "", "ok", TERN_CMD_DATA_END, false);
        struct smtpout_stats st;
        smtpout_stats(f->s, &st);
        assert_int_equal(st.octets, w + 3);
        if (st.max_buffered > (1u << 20)) /* about 600 KiB: never the message */
            fail_msg("%zu octets were buffered at once", st.max_buffered);
        finish(f);
    }
    free(msg);
    free(wire);
}

static void test_starttls_may(void **state)
{
    struct fx *f = *state;
    f->o.tls = SMTPOUT_TLS_MAY;
    f->o.ssl_ctx = f->system; /* the test certificate does not verify: MAY goes on anyway */
    const struct srv_step steps[] = {
        GREET,
        EHLO("250-PIPELINING\r\n250 STARTTLS\r\n"),
        {"STARTTLS\r\n", "220 2.0.0 go ahead\r\n", SRV_TLS | SRV_ALONE, 0, 0},
        EHLO("250 PIPELINING\r\n"), /* no STARTTLS any more */
        {"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
         "250 ok\r\n250 ok\r\n354 go\r\n", 0, 0, 0},
        {"over tls\r\n.\r\n", "250 ok\r\n", 0, 0, 0},
        QUIT,
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    const struct smtpout_tls_info *t = smtpout_tls(f->s);
    assert_true(t->on);
    assert_false(t->verified);
    assert_false(t->failed);
    assert_true(t->verify_error[0]);
    assert_non_null(strstr(t->protocol, "TLSv1."));
    assert_true(t->cipher[0]);
    assert_false(smtpout_caps(f->s)->flags & TERN_CAP_STARTTLS);
    deliver(f, "a@x.test", two, 1, "over tls", false);
    expect_reply(&f->res[0], 250, "", "ok", TERN_CMD_DATA_END, false);
    finish(f);
}

static void test_starttls_verify(void **state)
{
    struct fx *f = *state;
    f->o.tls = SMTPOUT_TLS_VERIFY; /* against the test CA, as "localhost" */
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 STARTTLS\r\n"),
        {"STARTTLS\r\n", "220 go\r\n", SRV_TLS, 0, 0},
        EHLO("250 8BITMIME\r\n"),
        QUIT,
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    assert_true(smtpout_tls(f->s)->verified);
    assert_string_equal(smtpout_tls(f->s)->verify_error, "");
    finish(f);
}

static void test_verify_failures(void **state)
{
    struct fx *f = *state;
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 STARTTLS\r\n"),
        {"STARTTLS\r\n", "220 go\r\n", SRV_TLS, 0, 0},
    };
    /* an unknown CA */
    f->o.tls = SMTPOUT_TLS_VERIFY;
    f->o.ssl_ctx = f->system;
    assert_false(start(f, steps, NSTEPS(steps), false));
    expect_reply(&f->err, 0, "4.7.5", "the TLS certificate of localhost[127.0.0.1] does not verify",
                 f->err.cmd, true);
    finish(f);
    /* a known CA, another name */
    f->o.ssl_ctx = f->trusting;
    f->o.host = "mx.elsewhere.test";
    assert_false(start(f, steps, NSTEPS(steps), false));
    assert_non_null(strstr(f->err.text, "does not verify: hostname mismatch"));
    finish(f);
}

static void test_tls_required_not_offered(void **state)
{
    struct fx *f = *state;
    f->o.tls = SMTPOUT_TLS_MAY;
    const struct srv_step steps[] = {GREET, EHLO("250 8BITMIME\r\n"), QUIT};
    assert_true(start(f, steps, NSTEPS(steps), false)); /* MAY: cleartext, then */
    assert_false(smtpout_tls(f->s)->on);
    finish(f);
    f->o.tls = SMTPOUT_TLS_ENCRYPT;
    assert_false(start(f, steps, NSTEPS(steps), false));
    expect_reply(&f->err, 0, "4.7.4", "does not offer STARTTLS and TLS is required",
                 TERN_CMD_STARTTLS, true);
    assert_string_equal(finish(f), "EHLO client.test\r\nQUIT\r\n"); /* said QUIT, politely */
}

static void test_starttls_refused(void **state)
{
    struct fx *f = *state;
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 STARTTLS\r\n"),
        {"STARTTLS\r\n", "454 4.7.0 TLS not available\r\n", 0, 0, 0},
        QUIT,
    };
    f->o.tls = SMTPOUT_TLS_MAY; /* refused, the session unchanged: on in clear */
    assert_true(start(f, steps, NSTEPS(steps), false));
    assert_false(smtpout_tls(f->s)->on);
    assert_false(smtpout_tls(f->s)->failed);
    finish(f);
    f->o.tls = SMTPOUT_TLS_ENCRYPT; /* required: the refusal is the failure */
    assert_false(start(f, steps, NSTEPS(steps), false));
    expect_reply(&f->err, 454, "4.7.0", "TLS not available", TERN_CMD_STARTTLS, false);
    finish(f);
}

static void test_wrapper(void **state)
{
    struct fx *f = *state;
    f->o.tls = SMTPOUT_TLS_WRAPPER_VERIFY;
    f->o.user = "alice";
    f->o.password = "secret";
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 AUTH LOGIN\r\n"),
        {"AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n", 0, 0, 0},
        {"YWxpY2U=\r\n", "334 UGFzc3dvcmQ6\r\n", 0, 0, 0},
        {"c2VjcmV0\r\n", "235 2.7.0 ok\r\n", 0, 0, 0},
        QUIT,
    };
    assert_true(start(f, steps, NSTEPS(steps), true));
    assert_true(smtpout_tls(f->s)->verified);
    finish(f);
    assert_null(strstr(f->tlog, "c2VjcmV0"));
    assert_non_null(strstr(f->tlog, "C: <auth data hidden>"));
}

static void test_auth_plain(void **state)
{
    struct fx *f = *state;
    f->o.tls = SMTPOUT_TLS_ENCRYPT;
    f->o.user = "alice";
    f->o.password = "secret";
    const struct srv_step steps[] = {
        GREET,
        EHLO("250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n"),
        {"STARTTLS\r\n", "220 go\r\n", SRV_TLS, 0, 0},
        EHLO("250 AUTH LOGIN PLAIN\r\n"),
        {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "235 2.7.0 ok\r\n", 0, 0, 0},
        QUIT,
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    finish(f);
    assert_null(strstr(f->tlog, "AGFsaWNl"));
    assert_non_null(strstr(f->tlog, "C: AUTH PLAIN <auth data hidden>"));
}

static void test_auth_refusals(void **state)
{
    struct fx *f = *state;
    f->o.user = "alice";
    f->o.password = "secret";
    /* no TLS: the password is not sent */
    const struct srv_step clear[] = {GREET, EHLO("250 AUTH PLAIN\r\n"), QUIT};
    assert_false(start(f, clear, NSTEPS(clear), false));
    expect_reply(&f->err, 0, "4.7.11", "refusing to send the password for alice", TERN_CMD_AUTH,
                 true);
    assert_string_equal(finish(f), "EHLO client.test\r\nQUIT\r\n");
    /* a refused password: the server's reply is the failure */
    f->o.tls = SMTPOUT_TLS_WRAPPER;
    const struct srv_step refused[] = {
        GREET,
        EHLO("250 AUTH PLAIN\r\n"),
        {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "535 5.7.8 bad credentials\r\n", 0, 0, 0},
        QUIT,
    };
    assert_false(start(f, refused, NSTEPS(refused), true));
    expect_reply(&f->err, 535, "5.7.8", "bad credentials", TERN_CMD_AUTH, false);
    finish(f);
}

static void test_timeouts(void **state)
{
    struct fx *f = *state;
    f->o.greeting_timeout = 1;
    f->o.command_timeout = 1;
    const struct srv_step silent[] = {{NULL, NULL, SRV_HANG, 0, 0}};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_false(start(f, silent, NSTEPS(silent), false));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 900 && ms < 5000);
    expect_reply(&f->err, 0, "4.4.2",
                 "conversation with localhost[127.0.0.1] timed out while receiving the initial "
                 "server greeting",
                 TERN_CMD_CONNECT, true);
    finish(f);
    /* the server answers MAIL, then nothing: every recipient is deferred */
    const struct srv_step stall[] = {
        GREET,
        EHLO("250 PIPELINING\r\n"),
        {"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n",
         "250 ok\r\n", SRV_HANG, 0, 0},
    };
    assert_true(start(f, stall, NSTEPS(stall), false));
    deliver(f, "a@x.test", two, 2, "m", false);
    for (int i = 0; i < 2; i++)
        expect_reply(&f->res[i], 0, "4.4.2", "timed out while sending RCPT TO", TERN_CMD_RCPT,
                     true);
    assert_false(smtpout_idle(f->s));
    finish(f);
    /* the server stops reading in the middle of the message: the data timeout */
    f->o.data_timeout = 1;
    size_t len = 32u << 20;
    char *msg = malloc(len);
    memset(msg, 'y', len);
    const struct srv_step stop[] = {
        GREET,
        EHLO("250 PIPELINING\r\n"),
        {"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
         "250 ok\r\n250 ok\r\n354 go\r\n", 0, 0, 0},
        {NULL, NULL, SRV_HANG, 2500, 0}, /* reads again only after the client gave up */
    };
    assert_true(start(f, stop, NSTEPS(stop), false));
    int fd = msg_fd(msg, len);
    struct smtpout_msg m = {.from = "a@x.test", .rcpts = two, .nrcpts = 1, .fd = fd};
    assert_int_equal(smtpout_send(f->s, &m, on_done, f), 0);
    close(fd);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    RUN_UNTIL(f, f->dones == 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 900 && ms < 2400);
    expect_reply(&f->res[0], 0, "4.4.2", "timed out while sending message body", TERN_CMD_DATA_END,
                 true);
    finish(f);
    free(msg);
}

static void test_reset_mid_data(void **state)
{
    struct fx *f = *state;
    size_t len = 32u << 20; /* more than the socket buffers on both sides hold */
    char *msg = malloc(len);
    memset(msg, 'x', len);
    for (size_t i = 78; i < len; i += 80)
        memcpy(msg + i, "\r\n", 2);
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 PIPELINING\r\n"),
        {"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n",
         "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n", 0, 0, 0},
        {msg, NULL, SRV_RESET, 0, 65536}, /* the first 64 KiB, then a reset */
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    int fd = msg_fd(msg, len);
    struct smtpout_msg m = {.from = "a@x.test", .rcpts = two, .nrcpts = 2, .fd = fd};
    assert_int_equal(smtpout_send(f->s, &m, on_done, f), 0);
    close(fd);
    RUN_UNTIL(f, f->dones == 1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(f->res[i].code, 0);
        assert_int_equal(smtpout_class(&f->res[i]), 4);
        assert_true(f->res[i].local);
        assert_non_null(strstr(f->res[i].text, "lost connection with localhost[127.0.0.1] while "
                                               "sending message body"));
        assert_int_equal(f->res[i].cmd, TERN_CMD_DATA_END);
    }
    assert_false(smtpout_idle(f->s));
    finish(f);
    free(msg);
}

static void test_421_and_unsolicited(void **state)
{
    struct fx *f = *state;
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 PIPELINING\r\n"),
        {"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n",
         "250 ok\r\n550 no\r\n421 4.3.2 shutting down\r\n", SRV_CLOSE, 0, 0},
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    deliver(f, "a@x.test", two, 2, "m", false);
    expect_reply(&f->res[0], 550, "", "no", TERN_CMD_RCPT, false);
    expect_reply(&f->res[1], 421, "4.3.2", "shutting down", TERN_CMD_RCPT, false);
    assert_false(smtpout_idle(f->s));
    finish(f);
    /* a server that speaks while nobody asked (a 421 on an idle connection): no callback, the
     * connection is simply no longer idle */
    const struct srv_step idle[] = {
        GREET,
        EHLO("250 8BITMIME\r\n"),
        {NULL, "421 4.4.2 idle too long\r\n", SRV_CLOSE, 200, 0},
    };
    assert_true(start(f, idle, NSTEPS(idle), false));
    assert_true(smtpout_idle(f->s));
    RUN_UNTIL(f, !smtpout_idle(f->s));
    assert_int_equal(f->dones, 0);
    assert_int_equal(f->readies, 1);
    finish(f);
}

static void test_malformed(void **state)
{
    struct fx *f = *state;
    char huge[3100] = "220 ";
    memset(huge + 4, 'x', 3000);
    memcpy(huge + 3004, "\r\n", 3);
    char many[102 * 9 + 16] = "";
    for (int i = 0; i < 101; i++)
        strcat(many, "250-big\r\n");
    strcat(many, "250 end\r\n");
    struct {
        const char *greeting, *ehlo_reply, *why;
    } cases[] = {
        {"hello there\r\n", NULL, "malformed reply from localhost[127.0.0.1] while receiving"},
        {huge, NULL, "longer than 2048"},
        {"220 ok\r\n", many, "while performing the EHLO handshake"},
        {"554 5.3.2 go away\r\n", NULL, "go away"},
    };
    for (size_t i = 0; i < NSTEPS(cases); i++) {
        struct srv_step steps[] = {
            {NULL, cases[i].greeting, 0, 0, 0},
            {"EHLO client.test\r\n", cases[i].ehlo_reply, 0, 0, 0},
        };
        bool refusal = strncmp(cases[i].greeting, "554", 3) == 0;
        if (refusal) /* RFC 5321 §3.1: QUIT after a 554 greeting */
            steps[1] = (struct srv_step){"QUIT\r\n", "221 bye\r\n", 0, 0, 0};
        assert_false(start(f, steps, cases[i].ehlo_reply || refusal ? 2 : 1, false));
        if (!strstr(f->err.text, cases[i].why))
            fail_msg("case %zu: \"%s\" not in \"%s\"", i, cases[i].why, f->err.text);
        finish(f);
    }
    assert_int_equal(f->err.code, 554); /* the last: a refusing greeting, then QUIT */
}

static void test_injection_after_starttls(void **state)
{
    struct fx *f = *state;
    f->o.tls = SMTPOUT_TLS_MAY;
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 STARTTLS\r\n"),
        {"STARTTLS\r\n", "220 go\r\n250-injected\r\n", 0, 0, 0},
    };
    assert_false(start(f, steps, NSTEPS(steps), false));
    expect_reply(&f->err, 0, "4.7.0", "sent data after its 220 to STARTTLS", f->err.cmd, true);
    finish(f);
}

static void test_connect_refused_and_misuse(void **state)
{
    struct fx *f = *state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd); /* a port that was free a moment ago and has no listener now */
    f->s = smtpout_connect(f->base, (struct sockaddr *)&a, sizeof a, &f->o, on_ready, f);
    assert_non_null(f->s);
    assert_false(smtpout_idle(f->s));
    RUN_UNTIL(f, f->readies == 1);
    assert_false(f->ok);
    expect_reply(&f->err, 0, "4.4.1", "Connection refused", f->err.cmd, true);
    assert_non_null(strstr(f->err.text, "connect to localhost[127.0.0.1]:"));
    /* options that cannot work come through ready as well, never synchronously */
    struct smtpout_opts o = f->o;
    o.tls = SMTPOUT_TLS_VERIFY;
    o.ssl_ctx = NULL;
    f->readies = 0;
    f->s = smtpout_connect(f->base, (struct sockaddr *)&a, sizeof a, &o, on_ready, f);
    assert_int_equal(f->readies, 0);
    RUN_UNTIL(f, f->readies == 1);
    assert_non_null(strstr(f->err.text, "no SSL_CTX"));
    o = f->o;
    o.password = "only a password";
    f->readies = 0;
    f->s = smtpout_connect(f->base, (struct sockaddr *)&a, sizeof a, &o, on_ready, f);
    RUN_UNTIL(f, f->readies == 1);
    assert_non_null(strstr(f->err.text, "AUTH needs both"));
    assert_int_equal(smtpout_send(NULL, NULL, on_done, f), -1);
    smtpout_free(NULL);
    smtpout_quit(NULL);
}

static void test_turn_attach(void **state)
{
    struct fx *f = *state;
    for (int tls = 0; tls < 2; tls++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        const struct srv_step steps[] = {
            {NULL, "220 turned.test ready\r\n", 0, 0, 0},
            EHLO("250 PIPELINING\r\n"),
            {"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
             "250 ok\r\n250 ok\r\n354 go\r\n", 0, 0, 0},
            {"turned\r\n.\r\n", "250 ok\r\n", 0, 0, 0},
            QUIT,
        };
        f->srv = srv_start_fd(steps, NSTEPS(steps), sv[0], tls);
        evutil_make_socket_nonblocking(sv[1]);
        struct bufferevent *bev = bufferevent_socket_new(f->base, sv[1], BEV_OPT_CLOSE_ON_FREE);
        if (tls) { /* ternd's side of a TLS session: the TLS server, whatever SMTP does */
            SSL_CTX *sctx = srv_server_ctx();
            bev = bufferevent_openssl_filter_new(f->base, bev, SSL_new(sctx),
                                                 BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
            SSL_CTX_free(sctx);
        }
        f->o.tls = SMTPOUT_TLS_MAY; /* never STARTTLS on TLS, nor on a server not offering it */
        f->s = smtpout_attach(f->base, bev, &f->o, on_ready, f);
        assert_non_null(f->s);
        RUN_UNTIL(f, f->readies == 1);
        assert_true(f->ok);
        assert_string_equal(smtpout_peer(f->s), "localhost[unix]");
        assert_int_equal(smtpout_tls(f->s)->on, tls);
        assert_false(smtpout_tls(f->s)->verified);
        deliver(f, "a@x.test", two, 1, "turned", false);
        expect_reply(&f->res[0], 250, "", "ok", TERN_CMD_DATA_END, false);
        finish(f);
    }
}

static void test_quit_unanswered(void **state)
{
    struct fx *f = *state;
    f->o.quit_timeout = 1;
    const struct srv_step steps[] = {
        GREET,
        EHLO("250 8BITMIME\r\n"),
        {"QUIT\r\n", NULL, SRV_HANG, 0, 0}, /* no 221: smtpout closes after quit_timeout */
    };
    assert_true(start(f, steps, NSTEPS(steps), false));
    time_t t0 = time(NULL);
    finish(f);
    assert_true(time(NULL) - t0 <= 3);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as ternd does: a peer that went away is an error, not a signal */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lockstep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_recipient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mail_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lockstep_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dot_refused_and_bad_354, setup, teardown),
        cmocka_unit_test_setup_teardown(test_helo_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_utf8_8bit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smtputf8_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_starttls_may, setup, teardown),
        cmocka_unit_test_setup_teardown(test_starttls_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_required_not_offered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_starttls_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrapper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_mid_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_421_and_unsolicited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_injection_after_starttls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused_and_misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_turn_attach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quit_unanswered, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    srv_remove_cert();
    return rc;
}

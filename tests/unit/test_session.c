/* Unit tests of the SMTP session core: every command in every state as a table of reply codes,
 * then each reply-code path (syntax, policy, limits, data rules, store failures, pipelining). The
 * store is simulated in memory here; the real one is exercised by the integration tests. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/session.h"

#include "session_fixture.h"

/* The simulated store and the session under test. */
struct fixture {
    struct tables *t;
    struct smtp_env env;
    struct smtp_session *s;
    char out[65536]; /* all replies so far */
    size_t outlen;
    char msg[1 << 20]; /* the stored message */
    size_t msglen;
    int commits, aborts, begins, starttls, auth_steps;
    size_t nforeign;
    bool fail_begin, fail_append, fail_commit, storage_full;
    char last_mailboxes[8][TABLES_ADDR_MAX + 1];
    size_t nlast;
};

#define ALICE_PLAIN "AGFsaWNlQGV4YW1wbGUub3JnAHB3"

static bool storage_ok(void *ctx)
{
    return !((struct fixture *)ctx)->storage_full;
}

static void add_user(struct tables *t, const char *addr, const char *name, const char *moved)
{
    struct tables_user u;
    memset(&u, 0, sizeof u);
    snprintf(u.addr, sizeof u.addr, "%s", addr);
    snprintf(u.name, sizeof u.name, "%s", name);
    snprintf(u.moved, sizeof u.moved, "%s", moved);
    char err[256];
    assert_int_equal(tables_add_user(t, &u, err, sizeof err), 0);
}

static struct fixture *fx_new(bool refuse)
{
    struct fixture *f = calloc(1, sizeof *f);
    char err[1024];
    f->t = tables_new();
    assert_int_equal(tables_add_domain(f->t, "example.org", err, sizeof err), 0);
    assert_int_equal(tables_add_domain(f->t, "example.net", err, sizeof err), 0);
    add_user(f->t, "alice@example.org", "Alice Liddell", "");
    add_user(f->t, "bob@example.org", "Bob Smith", "");
    add_user(f->t, "carol@example.net", "Carol Smith", "");
    add_user(f->t, "dave@example.org", "Dave Gone", "dave@elsewhere.test");
    const char *team[] = {"alice", "bob"};
    assert_int_equal(tables_add_alias(f->t, "team@example.org", team, 2, err, sizeof err), 0);
    const char *pm[] = {"alice@example.org"};
    assert_int_equal(tables_add_alias(f->t, "postmaster", pm, 1, err, sizeof err), 0);
    assert_int_equal(tables_finish(f->t, err, sizeof err), 0);
    f->env = (struct smtp_env){
        .hostname = "mx.example.org",
        .peer_ip = "192.0.2.1",
        .refuse = refuse,
        .max_message_size = 10000,
        .max_recipients = 3,
        .max_bad_commands = 20,
        .max_junk_commands = 50,
        .vrfy = SMTP_DISCLOSE_ALL,
        .expn = SMTP_DISCLOSE_ALL,
        .tables = f->t,
        .storage_ok = storage_ok,
        .ctx = f,
    };
    f->s = smtp_session_new(&f->env);
    return f;
}

static void fx_free(struct fixture *f)
{
    smtp_session_free(f->s);
    tables_free(f->t);
    free(f);
}

/* Performs the core's requests the way ternd does, synchronously. */
static void serve(struct fixture *f)
{
    const struct smtp_request *q;
    while ((q = smtp_session_request(f->s))) {
        struct smtp_result r = {.ok = true};
        switch (q->type) {
        case SMTP_REQ_STORE_BEGIN:
            f->begins++;
            f->msglen = 0;
            r.ok = !f->fail_begin;
            snprintf(r.id, sizeof r.id, "ID%d", f->begins);
            f->nlast = q->txn->nmailboxes < 8 ? q->txn->nmailboxes : 8;
            f->nforeign = q->txn->nforeign;
            for (size_t i = 0; i < f->nlast; i++)
                memcpy(f->last_mailboxes[i], q->txn->mailboxes[i], TABLES_ADDR_MAX + 1);
            break;
        case SMTP_REQ_STORE_APPEND:
            r.ok = !f->fail_append;
            assert_true(f->msglen + q->len <= sizeof f->msg);
            memcpy(f->msg + f->msglen, q->data, q->len);
            f->msglen += q->len;
            break;
        case SMTP_REQ_STORE_COMMIT:
            r.ok = !f->fail_commit;
            if (r.ok)
                f->commits++;
            break;
        case SMTP_REQ_STORE_ABORT:
            f->aborts++;
            break;
        case SMTP_REQ_TURN:  /* test_session_queue.c's */
        case SMTP_REQ_WATCH: /* test_terminal.c's */
            break;
        case SMTP_REQ_STARTTLS:
            f->starttls++;
            snprintf(r.tls_info, sizeof r.tls_info, "TLSv1.3 with cipher TEST");
            break;
        case SMTP_REQ_AUTH:
            /* a fake SASL: PLAIN with alice's credentials, base64 of "\0alice@example.org\0pw" */
            f->auth_steps++;
            if (q->auth_cancel)
                break;
            if (q->mech && !q->auth_data) {
                r.more = true; /* empty challenge */
            } else if (q->auth_data && strcmp(q->auth_data, ALICE_PLAIN) == 0) {
                snprintf(r.user, sizeof r.user, "alice@example.org");
            } else {
                r.ok = false;
                r.code = 535;
                snprintf(r.enh, sizeof r.enh, "5.7.8");
                snprintf(r.text, sizeof r.text, "Authentication credentials invalid");
            }
            break;
        }
        smtp_session_resume(f->s, &r);
    }
    sfx_collect(f->s, f->out, sizeof f->out, &f->outlen);
}

static void serve_cb(void *f)
{
    serve(f);
}

/* Feeds bytes, performing requests whenever the core stops for one. */
static void feed(struct fixture *f, const char *data, size_t len)
{
    sfx_feed(f->s, data, len, serve_cb, f);
}

/* Sends one command line and returns the code of the reply's last line (0 if none). */
static int cmd(struct fixture *f, const char *line)
{
    size_t before = f->outlen;
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%s\r\n", line);
    feed(f, buf, (size_t)n);
    return sfx_last_code(f->out, f->outlen, before);
}

/* The text of the last reply line. */
static const char *last_line(struct fixture *f)
{
    static char line[600];
    size_t end = f->outlen - 2, start = end;
    while (start > 0 && f->out[start - 1] != '\n')
        start--;
    snprintf(line, sizeof line, "%.*s", (int)(end - start), f->out + start);
    return line;
}

static int send_text(struct fixture *f, const char *text)
{
    size_t before = f->outlen;
    feed(f, text, strlen(text));
    if (f->outlen == before)
        return 0;
    size_t end = f->outlen - 2, start = end;
    while (start > before && f->out[start - 1] != '\n')
        start--;
    return atoi(f->out + start);
}

enum st { S_INIT, S_READY, S_MAIL, S_RCPT, S_REFUSED, NSTATES };

static struct fixture *fx_in(enum st st)
{
    struct fixture *f = fx_new(st == S_REFUSED);
    if (st >= S_READY && st != S_REFUSED)
        assert_int_equal(cmd(f, "EHLO client.test"), 250);
    if (st >= S_MAIL && st != S_REFUSED)
        assert_int_equal(cmd(f, "MAIL FROM:<a@b.test>"), 250);
    if (st >= S_RCPT && st != S_REFUSED)
        assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 250);
    return f;
}

static const struct {
    const char *line;
    int code[NSTATES]; /* INIT READY MAIL RCPT REFUSED */
} matrix[] = {
    {"HELO client.test", {250, 250, 250, 250, 503}},
    {"EHLO client.test", {250, 250, 250, 250, 503}},
    {"MAIL FROM:<a@b.test>", {503, 250, 503, 503, 503}},
    {"RCPT TO:<alice@example.org>", {503, 503, 250, 250, 503}},
    {"DATA", {503, 503, 503, 354, 503}},
    {"RSET", {250, 250, 250, 250, 503}},
    {"NOOP", {250, 250, 250, 250, 503}},
    {"HELP", {214, 214, 214, 214, 503}},
    {"HELP DATA", {214, 214, 214, 214, 503}},
    {"VRFY alice@example.org", {250, 250, 250, 250, 503}},
    {"EXPN team@example.org", {250, 250, 250, 250, 503}},
    {"SEND FROM:<a@b.test>", {503, 250, 503, 503, 503}},
    {"SOML FROM:<a@b.test>", {503, 250, 503, 503, 503}},
    {"SAML FROM:<a@b.test>", {503, 250, 503, 503, 503}},
    {"TURN", {502, 502, 502, 502, 503}},             /* nobody has authenticated */
    {"ETRN example.com", {502, 502, 502, 502, 503}}, /* no queue to start here */
    {"STARTTLS", {454, 454, 503, 503, 503}}, /* no certificate; never inside a transaction */
    {"BOGUS", {500, 500, 500, 500, 503}},
    {"QUIT", {221, 221, 221, 221, 221}},
};

static void test_matrix(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof matrix / sizeof matrix[0]; i++) {
        for (int st = 0; st < NSTATES; st++) {
            struct fixture *f = fx_in((enum st)st);
            int got = cmd(f, matrix[i].line);
            if (got != matrix[i].code[st])
                fail_msg("state %d, \"%s\": expected %d, got %d (%s)", st, matrix[i].line,
                         matrix[i].code[st], got, last_line(f));
            fx_free(f);
        }
    }
}

static void test_greetings(void **state)
{
    (void)state;
    struct fixture *f = fx_new(false);
    serve(f);
    assert_string_equal(f->out, "220 mx.example.org ESMTP tern\r\n");
    fx_free(f);
    f = fx_new(true);
    serve(f);
    assert_int_equal(atoi(f->out), 554);
    fx_free(f);
    f = calloc(1, sizeof *f);
    f->env = (struct smtp_env){.hostname = "h", .peer_ip = "1.2.3.4", .over_limit = true};
    f->s = smtp_session_new(&f->env);
    serve(f);
    assert_int_equal(atoi(f->out), 421);
    assert_int_equal(smtp_session_wants_close(f->s), SMTP_CLOSE_AFTER_OUTPUT);
    smtp_session_free(f->s);
    free(f);
}

static void test_ehlo_and_enhanced_codes(void **state)
{
    (void)state;
    struct fixture *f = fx_new(false);
    assert_int_equal(cmd(f, "HELO client.test"), 250);
    assert_int_equal(cmd(f, "NOOP"), 250);
    assert_string_equal(last_line(f), "250 Ok"); /* no enhanced code after HELO */
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    const char *keys[] = {"250-PIPELINING",
                          "250-SIZE 10000",
                          "250-8BITMIME",
                          "250-SMTPUTF8",
                          "250-ENHANCEDSTATUSCODES",
                          "250-CHUNKING",
                          "250-HELP",
                          "250-SEND",
                          "250-SOML",
                          "250 SAML"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_non_null(strstr(f->out, keys[i]));
    assert_int_equal(cmd(f, "NOOP"), 250);
    assert_string_equal(last_line(f), "250 2.0.0 Ok");
    assert_int_equal(cmd(f, "EHLO"), 501);
    assert_int_equal(cmd(f, "EHLO bad..name"), 501);
    assert_int_equal(cmd(f, "EHLO [127.0.0.1]"), 250);
    assert_int_equal(cmd(f, "EHLO [IPv6:::1]"), 250);
    assert_int_equal(cmd(f, "HELO -bad-"), 501);
    fx_free(f);
}

static void test_ehlo_resets_transaction(void **state)
{
    (void)state;
    struct fixture *f = fx_in(S_RCPT);
    assert_int_equal(cmd(f, "EHLO again.test"), 250);
    assert_int_equal(cmd(f, "DATA"), 503);
    assert_int_equal(cmd(f, "MAIL FROM:<x@y.test>"), 250);
    fx_free(f);
}

static void test_mail_errors(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        int code;
        const char *enh;
    } cases[] = {
        {"MAIL FROM:<>", 250, "2.1.0"},
        {"MAIL FROM: <a@b.test>", 250, "2.1.0"},
        {"MAIL from:<a@b.test>", 250, "2.1.0"},
        {"MAIL FROM:<a@b.test> SIZE=100", 250, "2.1.0"},
        {"MAIL FROM:<a@b.test> BODY=8BITMIME", 250, "2.1.0"},
        {"MAIL FROM:<a@b.test> BODY=7BIT SMTPUTF8", 250, "2.1.0"},
        {"MAIL FROM:<a@b.test> SIZE=10001", 552, "5.3.4"},
        {"MAIL FROM:<a@b.test> SIZE=x", 501, "5.5.4"},
        {"MAIL FROM:<a@b.test> SIZE", 501, "5.5.4"},
        {"MAIL FROM:<a@b.test> BODY=BINARYMIME", 501, "5.5.4"},
        {"MAIL FROM:<a@b.test> RET=FULL", 555, "5.5.4"},
        {"MAIL FROM:<a@b.test> FOO", 555, "5.5.4"},
        {"MAIL FROM:<a@b.test> =x", 501, "5.5.4"},
        {"MAIL FROM:a@b.test", 501, "5.5.2"},
        {"MAIL TO:<a@b.test>", 501, "5.5.2"},
        {"MAIL", 501, "5.5.2"},
        {"MAIL FROM:<a@@b.test>", 553, "5.1.7"},
        {"MAIL FROM:<a b@b.test>", 553, "5.1.7"},
        {"MAIL FROM:<a@b.test", 553, "5.1.7"},
        {"MAIL FROM:<\xc3\xa9@b.test>", 553, "5.6.7"},
        {"MAIL FROM:<\xc3\xa9@b.test> SMTPUTF8", 250, "2.1.0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fixture *f = fx_in(S_READY);
        int got = cmd(f, cases[i].line);
        char want[16];
        snprintf(want, sizeof want, "%d %s", cases[i].code, cases[i].enh);
        if (got != cases[i].code || strncmp(last_line(f), want, strlen(want)) != 0)
            fail_msg("\"%s\": want %s, got %s", cases[i].line, want, last_line(f));
        fx_free(f);
    }
    struct fixture *f = fx_new(false);
    assert_int_equal(cmd(f, "HELO client.test"), 250);
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.test> SIZE=10"), 555); /* parameters need EHLO */
    f->storage_full = true;
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.test>"), 452);
    fx_free(f);
}

static void test_rcpt_errors(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        int code;
        const char *enh;
    } cases[] = {
        {"RCPT TO:<alice@example.org>", 250, "2.1.5"},
        {"RCPT TO:<ALICE@Example.ORG>", 250, "2.1.5"},
        {"RCPT TO:<team@example.org>", 250, "2.1.5"},
        {"RCPT TO:<postmaster>", 250, "2.1.5"},
        {"RCPT TO:<PostMaster>", 250, "2.1.5"},
        {"RCPT TO:<postmaster@example.net>", 250, "2.1.5"},
        {"RCPT TO:<@a.test,@b.test:alice@example.org>", 250, "2.1.5"},
        {"RCPT TO:<\"alice\"@example.org>", 250, "2.1.5"},
        {"RCPT TO:<nobody@example.org>", 550, "5.1.1"},
        {"RCPT TO:<dave@example.org>", 551, "5.1.6"},
        {"RCPT TO:<someone@other.test>", 550, "5.7.1"},
        {"RCPT TO:<user%other.test@example.org>", 550, "5.7.1"},
        {"RCPT TO:<other.test!user@example.org>", 550, "5.7.1"},
        {"RCPT TO:<\"user@other.test\"@example.org>", 550, "5.7.1"},
        {"RCPT TO:<@a.test,@b.test:user@other.test>", 550, "5.7.1"},
        {"RCPT TO:<alice@[192.0.2.1]>", 550, "5.7.1"},
        {"RCPT TO:<alice@example.org> NOTIFY=NEVER", 555, "5.5.4"},
        {"RCPT TO:alice@example.org", 501, "5.5.2"},
        {"RCPT FROM:<alice@example.org>", 501, "5.5.2"},
        {"RCPT TO:<alice@@example.org>", 553, "5.1.3"},
        {"RCPT TO:<>", 553, "5.1.3"},
        {"RCPT TO:<\xc3\xa9@example.org>", 553, "5.6.7"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fixture *f = fx_in(S_MAIL);
        int got = cmd(f, cases[i].line);
        char want[16];
        snprintf(want, sizeof want, "%d %s", cases[i].code, cases[i].enh);
        if (got != cases[i].code || strncmp(last_line(f), want, strlen(want)) != 0)
            fail_msg("\"%s\": want %s, got %s", cases[i].line, want, last_line(f));
        fx_free(f);
    }
    struct fixture *f = fx_in(S_MAIL);
    assert_int_equal(cmd(f, "RCPT TO:<dave@example.org>"), 551);
    assert_non_null(strstr(last_line(f), "<dave@elsewhere.test>"));
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<bob@example.org>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<carol@example.net>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<team@example.org>"), 452); /* limit is 3 */
    assert_non_null(strstr(last_line(f), "4.5.3"));
    fx_free(f);
}

static void test_data_delivers(void **state)
{
    (void)state;
    struct fixture *f = fx_in(S_RCPT);
    assert_int_equal(cmd(f, "RCPT TO:<team@example.org>"), 250);
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, "Subject: hi\r\n\r\n..dot\r\nline\r\n.\r\n"), 250);
    assert_non_null(strstr(last_line(f), "2.0.0 Ok: queued as ID1"));
    assert_int_equal(f->commits, 1);
    /* alice via RCPT and via team is one mailbox; bob once */
    assert_int_equal(f->nlast, 2);
    assert_string_equal(f->last_mailboxes[0], "alice@example.org");
    assert_string_equal(f->last_mailboxes[1], "bob@example.org");
    f->msg[f->msglen] = '\0';
    assert_true(strncmp(f->msg, "Return-Path: <a@b.test>\r\nReceived: from client.test", 51) == 0);
    assert_non_null(strstr(f->msg, "by mx.example.org (tern) with ESMTP id ID1"));
    const char *body = strstr(f->msg, "Subject: hi\r\n\r\n.dot\r\nline\r\n");
    assert_non_null(body);
    assert_int_equal(strlen(body), strlen("Subject: hi\r\n\r\n.dot\r\nline\r\n"));
    /* the session is ready for the next transaction */
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 503);
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.test>"), 250);
    fx_free(f);
}

static void test_data_rules(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int code;
        const char *enh;
    } cases[] = {
        {"a\nb\r\n.\r\n", 554, "5.6.0"},                         /* bare LF */
        {"a\rb\r\n.\r\n", 554, "5.6.0"},                         /* bare CR */
        {"a\r\n.\nMAIL FROM:<x@y.test>\r\n.\r\n", 554, "5.6.0"}, /* smuggling attempt */
        {"a\n.\n\r\n.\r\n", 554, "5.6.0"},
        {"a\r.\r\r\n.\r\n", 554, "5.6.0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fixture *f = fx_in(S_RCPT);
        assert_int_equal(cmd(f, "DATA"), 354);
        int got = send_text(f, cases[i].text);
        char want[16];
        snprintf(want, sizeof want, "%d %s", cases[i].code, cases[i].enh);
        if (got != cases[i].code || strncmp(last_line(f), want, strlen(want)) != 0)
            fail_msg("case %zu: want %s, got %s", i, want, last_line(f));
        assert_int_equal(f->commits, 0);
        assert_int_equal(f->aborts, 1);
        /* exactly one reply to the whole data: nothing smuggled was executed */
        assert_null(strstr(f->out, "2.1.0 Sender <x@y.test>"));
        fx_free(f);
    }
    /* a line of 998 octets is fine, 999 is not */
    char *big = malloc(3000);
    struct fixture *f = fx_in(S_RCPT);
    memset(big, 'x', 998);
    strcpy(big + 998, "\r\n.\r\n");
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, big), 250);
    fx_free(f);
    f = fx_in(S_RCPT);
    memset(big, 'x', 999);
    strcpy(big + 999, "\r\n.\r\n");
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, big), 554);
    assert_int_equal(f->commits, 0);
    fx_free(f);
    free(big);
}

static void test_data_size_and_loop(void **state)
{
    (void)state;
    struct fixture *f = fx_in(S_RCPT);
    assert_int_equal(cmd(f, "DATA"), 354);
    char line[102];
    memset(line, 'y', 100);
    line[100] = '\r';
    line[101] = '\n';
    for (int i = 0; i < 101; i++) /* 10302 octets > 10000 */
        feed(f, line, sizeof line);
    assert_int_equal(send_text(f, ".\r\n"), 552);
    assert_non_null(strstr(last_line(f), "5.3.4"));
    assert_int_equal(f->commits, 0);
    fx_free(f);

    f = fx_in(S_RCPT);
    f->env.max_message_size = 1 << 20;
    assert_int_equal(cmd(f, "DATA"), 354);
    for (int i = 0; i < 101; i++)
        send_text(f, "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n");
    assert_int_equal(send_text(f, "\r\nbody\r\n.\r\n"), 554);
    assert_non_null(strstr(last_line(f), "5.4.6"));
    fx_free(f);

    /* 100 Received: fields are allowed; ones in the body do not count */
    f = fx_in(S_RCPT);
    f->env.max_message_size = 1 << 20;
    assert_int_equal(cmd(f, "DATA"), 354);
    for (int i = 0; i < 100; i++)
        send_text(f, "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n");
    send_text(f, "\r\n");
    for (int i = 0; i < 5; i++)
        send_text(f, "Received: in the body\r\n");
    assert_int_equal(send_text(f, ".\r\n"), 250);
    fx_free(f);
}

static void test_data_sequence(void **state)
{
    (void)state;
    struct fixture *f = fx_in(S_MAIL);
    assert_int_equal(cmd(f, "DATA"), 503); /* no RCPT command yet */
    assert_int_equal(cmd(f, "RCPT TO:<nobody@example.org>"), 550);
    assert_int_equal(cmd(f, "DATA"), 554); /* RCPTs given, none accepted */
    fx_free(f);
    f = fx_in(S_RCPT);
    assert_int_equal(cmd(f, "DATA now"), 501);
    fx_free(f);
    f = fx_in(S_RCPT);
    f->storage_full = true;
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, "x\r\n.\r\n"), 452);
    assert_int_equal(f->commits, 0);
    fx_free(f);
}

static void test_store_failures(void **state)
{
    (void)state;
    struct fixture *f = fx_in(S_RCPT);
    f->fail_begin = true;
    assert_int_equal(cmd(f, "DATA"), 451);
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 503); /* transaction is gone */
    fx_free(f);
    f = fx_in(S_RCPT);
    f->fail_append = true;
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, "x\r\n.\r\n"), 451);
    assert_int_equal(f->aborts, 1);
    assert_int_equal(f->commits, 0);
    fx_free(f);
    f = fx_in(S_RCPT);
    f->fail_commit = true;
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, "x\r\n.\r\n"), 451);
    assert_non_null(strstr(last_line(f), "4.3.0"));
    fx_free(f);
}

static void test_bdat(void **state)
{
    (void)state;
    struct fixture *f = fx_in(S_RCPT);
    assert_int_equal(send_text(f, "BDAT 5\r\nhello"), 250);
    assert_int_equal(send_text(f, "BDAT 7 LAST\r\n world\n"), 250);
    assert_non_null(strstr(last_line(f), "queued as ID1"));
    f->msg[f->msglen] = '\0';
    const char *hw = strstr(f->msg, "hello world\n");
    assert_non_null(hw);
    assert_int_equal(strlen(hw), 12); /* BDAT is raw: nothing added, nothing changed */
    assert_int_equal(f->commits, 1);
    fx_free(f);
    /* BDAT 0 LAST ends the message at once */
    f = fx_in(S_RCPT);
    assert_int_equal(send_text(f, "BDAT 3\r\nabc"), 250);
    assert_int_equal(send_text(f, "BDAT 0 LAST\r\n"), 250);
    assert_int_equal(f->commits, 1);
    fx_free(f);
    /* without a transaction the octets are still read, then 503 */
    f = fx_in(S_READY);
    assert_int_equal(send_text(f, "BDAT 6\r\nNOOP\r\n"), 503);
    assert_int_equal(cmd(f, "NOOP"), 250);
    fx_free(f);
    f = fx_in(S_RCPT);
    assert_int_equal(cmd(f, "BDAT x"), 501);
    assert_int_equal(cmd(f, "BDAT 1 MORE"), 501);
    assert_int_equal(send_text(f, "BDAT 2\r\nab"), 250);
    assert_int_equal(cmd(f, "DATA"), 503); /* no DATA inside a BDAT transaction */
    assert_int_equal(cmd(f, "RSET"), 250);
    assert_int_equal(f->aborts, 1);
    fx_free(f);
    /* over the size limit inside BDAT */
    f = fx_in(S_RCPT);
    char *big = calloc(1, 20000);
    memcpy(big, "BDAT 12000 LAST\r\n", 17);
    memset(big + 17, 'z', 12000);
    feed(f, big, 17 + 12000);
    assert_non_null(strstr(last_line(f), "552 5.3.4"));
    assert_int_equal(f->commits, 0);
    free(big);
    fx_free(f);
}

static void test_pipelining(void **state)
{
    (void)state;
    struct fixture *f = fx_new(false);
    const char *batch = "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.org>\r\n"
                        "RCPT TO:<nobody@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
                        "Subject: p\r\n\r\nbody\r\n.\r\nMAIL FROM:<c@d.test>\r\n"
                        "RCPT TO:<carol@example.net>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n";
    feed(f, batch, strlen(batch));
    const char *want[] = {"220 ",      "250-",      "250 2.1.0", "250 2.1.5",
                          "550 5.1.1", "250 2.1.5", "354 ",      "250 2.0.0 Ok: queued as ID1",
                          "250 2.1.0", "250 2.1.5", "354 ",      "250 2.0.0 Ok: queued as ID2",
                          "221 2.0.0"};
    const char *p = f->out;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (strncmp(p, want[i], strlen(want[i])) != 0)
            fail_msg("reply %zu: want \"%s\", got \"%.40s\"", i, want[i], p);
        if (strcmp(want[i], "250-") == 0) /* the rest of the EHLO reply, to its last line */
            while (strncmp(p, "250 ", 4) != 0)
                p = strstr(p, "\r\n") + 2;
        p = strstr(p, "\r\n") + 2;
    }
    assert_int_equal(f->commits, 2);
    assert_int_equal(smtp_session_wants_close(f->s), SMTP_CLOSE_AFTER_OUTPUT);
    fx_free(f);
}

static void test_lines_and_limits(void **state)
{
    (void)state;
    struct fixture *f = fx_in(S_READY);
    char line[600];
    memset(line, 'A', 511);
    line[511] = '\0';
    assert_int_equal(cmd(f, line), 500); /* 513 octets with CRLF */
    line[510] = '\0';
    assert_int_equal(cmd(f, line), 500); /* 512 octets: fits, but is no command */
    assert_null(strstr(last_line(f), "too long"));
    assert_int_equal(cmd(f, ""), 500);
    assert_int_equal(send_text(f, "NOOP\n"), 250); /* a bare LF ends a command line */
    feed(f, "NO", 2);
    assert_int_equal(send_text(f, "OP\r\n"), 250); /* split across reads */
    fx_free(f);

    f = fx_in(S_READY);
    int code = 0;
    for (int i = 0; i < 20 && code != 421; i++)
        code = cmd(f, "BOGUS");
    assert_int_equal(code, 421);
    assert_int_equal(smtp_session_wants_close(f->s), SMTP_CLOSE_AFTER_OUTPUT);
    assert_int_equal(cmd(f, "NOOP"), 0); /* nothing more is read */
    fx_free(f);

    f = fx_in(S_READY);
    for (int i = 0; i < 50; i++)
        assert_int_equal(cmd(f, "NOOP"), 250);
    assert_int_equal(cmd(f, "NOOP"), 421);
    fx_free(f);
}

static void test_info(void **state)
{
    (void)state;
    struct fixture *f = fx_in(S_READY);
    assert_int_equal(cmd(f, "VRFY alice@example.org"), 250);
    assert_string_equal(last_line(f), "250 2.1.5 Alice Liddell <alice@example.org>");
    assert_int_equal(cmd(f, "VRFY <bob@example.org>"), 250);
    assert_int_equal(cmd(f, "VRFY alice"), 250);
    assert_int_equal(cmd(f, "VRFY smith"), 553);
    assert_non_null(strstr(f->out, "553-5.1.4 User ambiguous"));
    assert_non_null(strstr(f->out, "Bob Smith <bob@example.org>"));
    assert_non_null(strstr(f->out, "Carol Smith <carol@example.net>"));
    assert_int_equal(cmd(f, "VRFY nobody@example.org"), 550);
    assert_int_equal(cmd(f, "VRFY dave@example.org"), 551);
    assert_int_equal(cmd(f, "VRFY x@other.test"), 550);
    assert_int_equal(cmd(f, "VRFY"), 501);
    assert_int_equal(cmd(f, "EXPN team@example.org"), 250);
    assert_non_null(strstr(f->out, "250-2.1.5 Alice Liddell <alice@example.org>"));
    assert_non_null(strstr(f->out, "250 2.1.5 Bob Smith <bob@example.org>"));
    assert_int_equal(cmd(f, "EXPN alice@example.org"), 550);
    assert_int_equal(cmd(f, "EXPN"), 501);
    assert_int_equal(cmd(f, "HELP"), 214);
    assert_int_equal(cmd(f, "HELP rcpt"), 214);
    assert_int_equal(cmd(f, "HELP XYZZY"), 504);
    fx_free(f);

    f = fx_in(S_READY);
    f->env.vrfy = SMTP_DISCLOSE_AUTHENTICATED;
    f->env.expn = SMTP_DISCLOSE_AUTHENTICATED;
    assert_int_equal(cmd(f, "VRFY alice@example.org"), 252);
    assert_int_equal(cmd(f, "EXPN team@example.org"), 252);
    f->env.vrfy = SMTP_DISCLOSE_NONE;
    f->env.expn = SMTP_DISCLOSE_NONE;
    assert_int_equal(cmd(f, "VRFY alice@example.org"), 252);
    assert_int_equal(cmd(f, "EXPN team@example.org"), 502);
    fx_free(f);
}

static void test_legacy_transactions(void **state)
{
    (void)state;
    struct fixture *f = fx_in(S_READY);
    assert_int_equal(cmd(f, "SEND FROM:<a@b.test>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 450);
    assert_string_equal(last_line(f), "450 4.2.1 <alice@example.org> is not accepting terminal "
                                      "messages");
    assert_int_equal(cmd(f, "RCPT TO:<nobody@example.org>"), 550);
    assert_int_equal(cmd(f, "DATA"), 554);
    fx_free(f);
    const char *kinds[] = {"SOML", "SAML"};
    for (int k = 0; k < 2; k++) {
        f = fx_in(S_READY);
        char line[64];
        snprintf(line, sizeof line, "%s FROM:<a@b.test>", kinds[k]);
        assert_int_equal(cmd(f, line), 250);
        assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 250);
        assert_non_null(strstr(last_line(f), "mailbox"));
        assert_int_equal(cmd(f, "DATA"), 354);
        assert_int_equal(send_text(f, "hi\r\n.\r\n"), 250);
        assert_int_equal(f->commits, 1);
        fx_free(f);
    }
    f = fx_in(S_READY);
    assert_int_equal(cmd(f, "TURN now"), 501);
    fx_free(f);
}

static void test_refused_and_shutdown(void **state)
{
    (void)state;
    struct fixture *f = fx_in(S_REFUSED);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cmd(f, "EHLO x.test"), 503);
    assert_int_equal(cmd(f, "QUIT"), 221);
    fx_free(f);
    f = fx_in(S_READY);
    smtp_session_timeout(f->s);
    serve(f);
    assert_non_null(strstr(last_line(f), "421 4.4.2"));
    assert_int_equal(smtp_session_wants_close(f->s), SMTP_CLOSE_AFTER_OUTPUT);
    fx_free(f);
    f = fx_in(S_RCPT);
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_true(smtp_session_in_data(f->s));
    smtp_session_shutdown(f->s);
    serve(f);
    assert_non_null(strstr(last_line(f), "421 4.3.2"));
    fx_free(f);
}

static struct fixture *fx_secure(bool submission, bool tls_available)
{
    struct fixture *f = fx_new(false);
    f->env.submission = submission;
    f->env.tls_available = tls_available;
    f->env.auth_mechs = "PLAIN";
    f->env.auth_mech_ok = sfx_mech_plain;
    return f;
}

static void test_starttls(void **state)
{
    (void)state;
    struct fixture *f = fx_secure(false, false);
    assert_int_equal(cmd(f, "EHLO c.test"), 250);
    assert_null(strstr(f->out, "STARTTLS"));
    assert_int_equal(cmd(f, "STARTTLS"), 454); /* no certificate */
    fx_free(f);

    f = fx_secure(false, true);
    assert_int_equal(cmd(f, "EHLO c.test"), 250);
    assert_non_null(strstr(f->out, "STARTTLS\r\n"));
    assert_null(strstr(f->out, "AUTH")); /* no AUTH in clear */
    assert_int_equal(cmd(f, "STARTTLS now"), 501);
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.test>"), 250);
    assert_int_equal(cmd(f, "STARTTLS"), 503); /* inside a transaction */
    assert_int_equal(cmd(f, "RSET"), 250);
    /* pipelined plaintext after STARTTLS is not consumed: the caller throws it away */
    const char *in = "STARTTLS\r\nNOOP\r\n";
    serve(f);
    size_t used = smtp_session_feed(f->s, in, strlen(in));
    assert_int_equal(used, strlen("STARTTLS\r\n"));
    serve(f);
    assert_non_null(strstr(last_line(f), "220 2.0.0 Ready to start TLS"));
    assert_int_equal(f->starttls, 1);
    /* everything is forgotten: EHLO again, and no STARTTLS offered any more */
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.test>"), 503);
    size_t before = f->outlen;
    assert_int_equal(cmd(f, "EHLO c.test"), 250);
    assert_null(strstr(f->out + before, "STARTTLS"));
    assert_non_null(strstr(f->out + before, "250 AUTH PLAIN"));
    assert_int_equal(cmd(f, "STARTTLS"), 503);
    /* Received: says TLS */
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.test>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 250);
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, "x\r\n.\r\n"), 250);
    f->msg[f->msglen] = '\0';
    assert_non_null(strstr(f->msg, "with ESMTPS (TLSv1.3 with cipher TEST) id"));
    fx_free(f);
}

static void test_auth_replies(void **state)
{
    (void)state;
    struct fixture *f = fx_secure(false, true);
    assert_int_equal(cmd(f, "AUTH PLAIN " ALICE_PLAIN), 503); /* before EHLO */
    assert_int_equal(cmd(f, "EHLO c.test"), 250);
    assert_int_equal(cmd(f, "AUTH PLAIN " ALICE_PLAIN), 538); /* in clear */
    assert_string_equal(last_line(f),
                        "538 5.7.11 Encryption required for requested authentication mechanism");
    fx_free(f);

    f = fx_secure(false, true);
    f->env.tls_active = true;
    smtp_session_free(f->s);
    f->s = smtp_session_new(&f->env);
    assert_int_equal(cmd(f, "EHLO c.test"), 250);
    assert_int_equal(cmd(f, "AUTH CRAM-MD5"), 504);
    assert_int_equal(cmd(f, "AUTH"), 501);
    assert_int_equal(cmd(f, "AUTH PLAIN"), 334);
    assert_string_equal(last_line(f), "334 ");
    assert_int_equal(cmd(f, "*"), 501);
    assert_string_equal(last_line(f), "501 5.0.0 Authentication cancelled");
    assert_int_equal(cmd(f, "AUTH PLAIN d3Jvbmc="), 535);
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.test>"), 250);
    assert_int_equal(cmd(f, "AUTH PLAIN " ALICE_PLAIN), 503); /* inside a transaction */
    assert_int_equal(cmd(f, "RSET"), 250);
    assert_int_equal(cmd(f, "AUTH PLAIN " ALICE_PLAIN), 235);
    assert_string_equal(last_line(f), "235 2.7.0 Authentication successful");
    assert_string_equal(smtp_session_auth_user(f->s), "alice@example.org");
    assert_int_equal(cmd(f, "AUTH PLAIN " ALICE_PLAIN), 503); /* already */
    fx_free(f);

    /* a long initial response (up to 12288 octets) is one AUTH line, not "too long" */
    f = fx_secure(false, true);
    f->env.auth_cleartext_ok = true;
    assert_int_equal(cmd(f, "EHLO c.test"), 250);
    char *line = malloc(3000);
    strcpy(line, "AUTH PLAIN ");
    memset(line + 11, 'Q', 2000);
    line[2011] = '\0';
    assert_int_equal(cmd(f, line), 535);
    free(line);
    /* three failures close the session */
    assert_int_equal(cmd(f, "AUTH PLAIN d3Jvbmc="), 535);
    assert_int_equal(cmd(f, "AUTH PLAIN d3Jvbmc="), 421);
    assert_int_equal(smtp_session_wants_close(f->s), SMTP_CLOSE_AFTER_OUTPUT);
    fx_free(f);
}

static void test_submission_and_relay(void **state)
{
    (void)state;
    struct fixture *f = fx_secure(true, true);
    f->env.auth_cleartext_ok = true;
    assert_int_equal(cmd(f, "EHLO c.test"), 250);
    assert_int_equal(cmd(f, "MAIL FROM:<alice@example.org>"), 530);
    assert_string_equal(last_line(f), "530 5.7.0 Authentication required");
    f->env.vrfy = SMTP_DISCLOSE_AUTHENTICATED;
    f->env.expn = SMTP_DISCLOSE_AUTHENTICATED;
    assert_int_equal(cmd(f, "VRFY bob@example.org"), 252); /* not yet authenticated */
    assert_int_equal(cmd(f, "AUTH PLAIN " ALICE_PLAIN), 235);
    assert_int_equal(cmd(f, "VRFY bob@example.org"), 250);
    assert_int_equal(cmd(f, "EXPN team@example.org"), 250);
    assert_int_equal(cmd(f, "MAIL FROM:<bob@example.org>"), 553); /* not hers */
    assert_string_equal(last_line(f), "553 5.7.1 Sender address not owned by user "
                                      "alice@example.org");
    assert_int_equal(cmd(f, "MAIL FROM:<user%example.org@example.org>"), 553);
    assert_int_equal(cmd(f, "MAIL FROM:<team@example.org>"), 250); /* an alias that reaches her */
    assert_int_equal(cmd(f, "RSET"), 250);
    assert_int_equal(cmd(f, "MAIL FROM:<>"), 250);
    assert_int_equal(cmd(f, "RSET"), 250);
    assert_int_equal(cmd(f, "MAIL FROM:<Alice@Example.ORG>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<friend@other.test>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<user%other.test@example.org>"), 550); /* still no tricks */
    assert_int_equal(cmd(f, "RCPT TO:<bob@example.org>"), 250);
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, "x\r\n.\r\n"), 250);
    assert_int_equal(f->nforeign, 1);
    assert_int_equal(f->nlast, 1);
    f->msg[f->msglen] = '\0';
    assert_non_null(strstr(f->msg, "with ESMTPA id")); /* authenticated, not TLS */
    fx_free(f);

    /* the smtp listener never relays, authenticated or not */
    f = fx_secure(false, true);
    f->env.auth_cleartext_ok = true;
    assert_int_equal(cmd(f, "EHLO c.test"), 250);
    assert_int_equal(cmd(f, "MAIL FROM:<alice@example.org>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<friend@other.test>"), 550);
    assert_int_equal(cmd(f, "RSET"), 250);
    assert_int_equal(cmd(f, "AUTH PLAIN " ALICE_PLAIN), 235);
    assert_int_equal(cmd(f, "MAIL FROM:<alice@example.org>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<friend@other.test>"), 550);
    assert_int_equal(cmd(f, "RCPT TO:<bob@example.org>"), 250);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrix),
        cmocka_unit_test(test_greetings),
        cmocka_unit_test(test_ehlo_and_enhanced_codes),
        cmocka_unit_test(test_ehlo_resets_transaction),
        cmocka_unit_test(test_mail_errors),
        cmocka_unit_test(test_rcpt_errors),
        cmocka_unit_test(test_data_delivers),
        cmocka_unit_test(test_data_rules),
        cmocka_unit_test(test_data_size_and_loop),
        cmocka_unit_test(test_data_sequence),
        cmocka_unit_test(test_store_failures),
        cmocka_unit_test(test_bdat),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_lines_and_limits),
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_legacy_transactions),
        cmocka_unit_test(test_refused_and_shutdown),
        cmocka_unit_test(test_starttls),
        cmocka_unit_test(test_auth_replies),
        cmocka_unit_test(test_submission_and_relay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

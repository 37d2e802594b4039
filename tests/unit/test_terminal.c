/* Unit tests of the session core's terminals (smtp/terminal.c and the terminal half of route.c):
 * SEND, SOML and SAML under each [terminal] allow, every reply code of theirs at MAIL, RCPT and
 * the end of the message, the transaction's terminals and mailboxes as the caller sees them at
 * COMMIT, max_size, and XWATCH from each refusal to the watching state and its end. The world's
 * terminals are a list of live users here; the store and SASL are simulated in memory. */
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

#define ALICE_PLAIN "AGFsaWNlQGV4YW1wbGUub3JnAHB3" /* "\0alice@example.org\0pw" */
#define MAXBOX 8

struct fixture {
    struct tables *t;
    struct smtp_env env;
    struct smtp_session *s;
    char out[65536];
    size_t outlen;
    const char *live[4]; /* users with a live terminal */
    const char *full;    /* a mailbox over its quota */
    /* what the last COMMIT saw */
    int commits, aborts, watches;
    enum smtp_txn_kind kind;
    char boxes[MAXBOX][TABLES_ADDR_MAX + 1], terms[MAXBOX][TABLES_ADDR_MAX + 1];
    size_t nboxes, nterms;
    /* what COMMIT and WATCH answer */
    size_t shown;
    bool commit_450, watch_fail;
    char rule[32]; /* of the last event */
};

static bool live(void *ctx, const char *box)
{
    struct fixture *f = ctx;
    for (size_t i = 0; i < 4 && f->live[i]; i++)
        if (strcmp(f->live[i], box) == 0)
            return true;
    return false;
}

static bool full(void *ctx, const char *box)
{
    struct fixture *f = ctx;
    return f->full && strcmp(f->full, box) == 0;
}

static void on_event(void *ctx, const struct smtp_event *ev)
{
    struct fixture *f = ctx;
    snprintf(f->rule, sizeof f->rule, "%s", ev->rule);
}

static void add_user(struct tables *t, const char *addr, const char *forward)
{
    struct tables_user u;
    memset(&u, 0, sizeof u);
    snprintf(u.addr, sizeof u.addr, "%s", addr);
    snprintf(u.forward, sizeof u.forward, "%s", forward);
    char err[256];
    assert_int_equal(tables_add_user(t, &u, err, sizeof err), 0);
}

static struct fixture *fx_new(enum smtp_terminal_allow allow, bool submission)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    char err[1024];
    f->t = tables_new();
    assert_int_equal(tables_add_domain(f->t, "example.org", err, sizeof err), 0);
    add_user(f->t, "alice@example.org", "");
    add_user(f->t, "bob@example.org", "");
    add_user(f->t, "fwd@example.org", "fwd@remote.test");
    struct tables_user m = {.addr = "dave@example.org", .moved = "dave@elsewhere.test"};
    assert_int_equal(tables_add_user(f->t, &m, err, sizeof err), 0);
    const char *team[] = {"alice", "bob"};
    assert_int_equal(tables_add_alias(f->t, "team@example.org", team, 2, err, sizeof err), 0);
    const char *pm[] = {"alice@example.org"};
    assert_int_equal(tables_add_alias(f->t, "postmaster", pm, 1, err, sizeof err), 0);
    assert_int_equal(tables_finish(f->t, err, sizeof err), 0);
    f->env = (struct smtp_env){
        .hostname = "mx.example.org",
        .peer_ip = "192.0.2.1",
        .submission = submission,
        .max_message_size = 100000,
        .max_recipients = 5,
        .max_bad_commands = 20,
        .max_junk_commands = 50,
        .tables = f->t,
        .tls_available = true,
        .auth_mechs = "PLAIN",
        .auth_mech_ok = sfx_mech_plain,
        .auth_cleartext_ok = true,
        .mailbox_full = full,
        .terminal_allow = allow,
        .terminal_max_size = 1000,
        .terminal_live = live,
        .event = on_event,
        .ctx = f,
    };
    f->live[0] = "alice@example.org";
    f->shown = 1;
    f->s = smtp_session_new(&f->env);
    assert_non_null(f->s);
    return f;
}

static void fx_free(struct fixture *f)
{
    smtp_session_free(f->s);
    tables_free(f->t);
    free(f);
}

static void serve(struct fixture *f)
{
    const struct smtp_request *q;
    while ((q = smtp_session_request(f->s))) {
        struct smtp_result r = {.ok = true};
        switch (q->type) {
        case SMTP_REQ_STORE_BEGIN:
            snprintf(r.id, sizeof r.id, "ID1");
            break;
        case SMTP_REQ_STORE_COMMIT:
            f->commits++;
            f->kind = q->txn->kind;
            f->nboxes = q->txn->nmailboxes < MAXBOX ? q->txn->nmailboxes : MAXBOX;
            f->nterms = q->txn->nterminals < MAXBOX ? q->txn->nterminals : MAXBOX;
            memcpy(f->boxes, q->txn->mailboxes, f->nboxes * sizeof f->boxes[0]);
            memcpy(f->terms, q->txn->terminals, f->nterms * sizeof f->terms[0]);
            r.terminals = f->nterms ? f->shown : 0;
            if (f->commit_450) {
                r.ok = false;
                r.code = 450;
                snprintf(r.enh, sizeof r.enh, "4.2.1");
                snprintf(r.text, sizeof r.text, "No terminal took the message");
            }
            break;
        case SMTP_REQ_STORE_ABORT:
            f->aborts++;
            break;
        case SMTP_REQ_STARTTLS:
            snprintf(r.tls_info, sizeof r.tls_info, "TLSv1.3 TEST");
            break;
        case SMTP_REQ_AUTH:
            if (q->mech && !q->auth_data)
                r.more = true;
            else
                snprintf(r.user, sizeof r.user, "alice@example.org");
            break;
        case SMTP_REQ_WATCH:
            f->watches++;
            if (f->watch_fail) {
                r.ok = false;
                r.code = 452;
                snprintf(r.enh, sizeof r.enh, "4.3.1");
                snprintf(r.text, sizeof r.text, "too many terminals for this user");
            }
            break;
        default:
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

static int cmd(struct fixture *f, const char *line)
{
    size_t before = f->outlen;
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%s\r\n", line);
    sfx_feed(f->s, buf, (size_t)n, serve_cb, f);
    return sfx_last_code(f->out, f->outlen, before);
}

static const char *last_line(struct fixture *f)
{
    static char line[600];
    size_t end = f->outlen - 2, start = end;
    while (start > 0 && f->out[start - 1] != '\n')
        start--;
    snprintf(line, sizeof line, "%.*s", (int)(end - start), f->out + start);
    return line;
}

/* cmd, then the whole last reply line must be want. */
static void expect(struct fixture *f, const char *line, const char *want)
{
    cmd(f, line);
    assert_string_equal(last_line(f), want);
}

static int send_text(struct fixture *f, const char *text)
{
    size_t before = f->outlen;
    sfx_feed(f->s, text, strlen(text), serve_cb, f);
    return sfx_last_code(f->out, f->outlen, before);
}

static struct fixture *ready(enum smtp_terminal_allow allow)
{
    struct fixture *f = fx_new(allow, false);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    return f;
}

static void authenticate(struct fixture *f)
{
    assert_int_equal(cmd(f, "AUTH PLAIN " ALICE_PLAIN), 235);
}

static void test_mail_policy(void **state)
{
    (void)state;
    struct fixture *f = ready(SMTP_TERMINAL_NONE);
    expect(f, "SEND FROM:<a@b.test>",
           "502 5.5.1 SEND is not offered here: terminal messages are disabled");
    assert_string_equal(f->rule, "terminal_disabled");
    assert_int_equal(cmd(f, "SOML FROM:<a@b.test>"), 250); /* SOML and SAML are MAIL then */
    expect(f, "RCPT TO:<alice@example.org>",
           "250 2.1.5 Recipient <alice@example.org> OK, will deliver to the mailbox (terminal "
           "messages are disabled)");
    fx_free(f);

    f = ready(SMTP_TERMINAL_AUTHENTICATED);
    expect(f, "SEND FROM:<a@b.test>", "530 5.7.0 Authentication required to send to a terminal");
    assert_string_equal(f->rule, "auth_required");
    assert_int_equal(cmd(f, "SAML FROM:<a@b.test>"), 250);
    expect(f, "RCPT TO:<alice@example.org>",
           "250 2.1.5 Recipient <alice@example.org> OK, will deliver to the mailbox (terminals "
           "take only authenticated senders)");
    assert_int_equal(cmd(f, "RSET"), 250);
    authenticate(f);
    assert_int_equal(cmd(f, "SEND FROM:<alice@example.org>"), 250);
    expect(f, "RCPT TO:<alice@example.org>",
           "250 2.1.5 Recipient <alice@example.org> OK, will deliver to the terminal");
    fx_free(f);

    f = ready(SMTP_TERMINAL_ALL);
    expect(f, "SEND FROM:<a@b.test> SIZE=1001",
           "552 5.3.4 Terminal messages are limited to 1000 octets");
    assert_string_equal(f->rule, "terminal_size");
    assert_int_equal(cmd(f, "SOML FROM:<a@b.test> SIZE=5000"), 250); /* the mailbox takes it */
    assert_int_equal(cmd(f, "RSET"), 250);
    assert_int_equal(cmd(f, "SEND FROM:<a@b.test> SIZE=1000"), 250);
    fx_free(f);
}

static void test_send_rcpt_codes(void **state)
{
    (void)state;
    struct fixture *f = ready(SMTP_TERMINAL_ALL);
    assert_int_equal(cmd(f, "SEND FROM:<a@b.test>"), 250);
    expect(f, "RCPT TO:<bob@example.org>",
           "450 4.2.1 <bob@example.org> is not accepting terminal messages");
    assert_string_equal(f->rule, "terminal");
    expect(f, "RCPT TO:<fwd@example.org>", /* forwarded: no terminal here */
           "450 4.2.1 <fwd@example.org> is not accepting terminal messages");
    assert_int_equal(cmd(f, "RCPT TO:<dave@example.org>"), 551);
    assert_int_equal(cmd(f, "RCPT TO:<nobody@example.org>"), 550);
    expect(f, "RCPT TO:<x@elsewhere.test>",
           "550 5.7.1 <x@elsewhere.test>: only this server's own users have terminals here");
    expect(f, "RCPT TO:<team@example.org>",
           "250 2.1.5 Recipient <team@example.org> OK, will deliver to the terminals of 1 of its "
           "2 users");
    expect(f, "RCPT TO:<alice@example.org>",
           "250 2.1.5 Recipient <alice@example.org> OK, will deliver to the terminal");
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, "Subject: x\r\n\r\nhi\r\n.\r\n"), 250);
    assert_string_equal(last_line(f), "250 2.0.0 Ok: delivered to 1 terminal as ID1");
    /* what the caller saw: the terminals once each, no mailbox */
    assert_int_equal(f->kind, SMTP_TXN_SEND);
    assert_int_equal(f->nboxes, 0);
    assert_int_equal(f->nterms, 1);
    assert_string_equal(f->terms[0], "alice@example.org");
    /* the caller found every terminal gone at the end */
    f->commit_450 = true;
    assert_int_equal(cmd(f, "SEND FROM:<a@b.test>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 250);
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, "hi\r\n.\r\n"), 450);
    assert_string_equal(last_line(f), "450 4.2.1 No terminal took the message");
    assert_string_equal(f->rule, "terminal");
    fx_free(f);

    /* a world without terminals (no hook): SEND gets 450, never 250 */
    f = fx_new(SMTP_TERMINAL_ALL, false);
    f->env.terminal_live = NULL;
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    assert_int_equal(cmd(f, "SEND FROM:<a@b.test>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 450);
    fx_free(f);
}

static void test_soml_saml(void **state)
{
    (void)state;
    struct fixture *f = ready(SMTP_TERMINAL_ALL);
    assert_int_equal(cmd(f, "SOML FROM:<a@b.test>"), 250);
    expect(f, "RCPT TO:<alice@example.org>",
           "250 2.1.5 Recipient <alice@example.org> OK, will deliver to the terminal");
    expect(f, "RCPT TO:<bob@example.org>",
           "250 2.1.5 Recipient <bob@example.org> OK, will deliver to the mailbox (no terminal)");
    assert_int_equal(cmd(f, "RCPT TO:<fwd@example.org>"), 251);
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, "hi\r\n.\r\n"), 250);
    assert_string_equal(last_line(f), "250 2.0.0 Ok: accepted as ID1 and shown on 1 terminal");
    /* SOML: alice's mailbox is there as the fallback */
    assert_int_equal(f->nboxes, 2);
    assert_int_equal(f->nterms, 1);
    assert_string_equal(f->terms[0], "alice@example.org");

    assert_int_equal(cmd(f, "SOML FROM:<a@b.test>"), 250);
    expect(f, "RCPT TO:<team@example.org>",
           "250 2.1.5 Recipient <team@example.org> OK, will deliver to 1 terminal and 1 mailbox");
    assert_int_equal(cmd(f, "RSET"), 250);

    assert_int_equal(cmd(f, "SAML FROM:<a@b.test>"), 250);
    expect(f, "RCPT TO:<alice@example.org>",
           "250 2.1.5 Recipient <alice@example.org> OK, will deliver to the mailbox and the "
           "terminal");
    expect(f, "RCPT TO:<postmaster@example.org>", /* alice again: one terminal, one mailbox */
           "250 2.1.5 Recipient <postmaster@example.org> OK, will deliver to the mailbox and the "
           "terminal");
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, "hi\r\n.\r\n"), 250);
    assert_int_equal(f->kind, SMTP_TXN_SAML);
    assert_int_equal(f->nboxes, 1);
    assert_int_equal(f->nterms, 1);

    /* quotas: SOML does not count the mailbox of a user on a terminal; SAML does */
    f->full = "alice@example.org";
    assert_int_equal(cmd(f, "SOML FROM:<a@b.test>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 250);
    assert_int_equal(cmd(f, "RSET"), 250);
    assert_int_equal(cmd(f, "SAML FROM:<a@b.test>"), 250);
    expect(f, "RCPT TO:<alice@example.org>", "552 5.2.2 <alice@example.org>: mailbox full");
    assert_int_equal(cmd(f, "RCPT TO:<bob@example.org>"), 250);
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, "hi\r\n.\r\n"), 250);
    assert_int_equal(f->nterms, 0); /* the refused recipient left no terminal behind */
    fx_free(f);
}

static void test_end_of_message_size(void **state)
{
    (void)state;
    struct fixture *f = ready(SMTP_TERMINAL_ALL);
    char big[1200 + 16] = "";
    for (int i = 0; i < 12; i++) /* 12 lines of 100 octets: over 1000 */
        strcat(big,
               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
               "xxxxxxxxxxxxxx\r\n");
    strcat(big, ".\r\n");
    /* SEND: refused whole */
    assert_int_equal(cmd(f, "SEND FROM:<a@b.test>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 250);
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, big), 552);
    assert_string_equal(last_line(f), "552 5.3.4 Terminal messages are limited to 1000 octets");
    assert_string_equal(f->rule, "terminal_size");
    assert_int_equal(f->commits, 0);
    assert_int_equal(f->aborts, 1);
    /* SOML and SAML: the mailbox alone */
    const char *verbs[] = {"SOML FROM:<a@b.test>", "SAML FROM:<a@b.test>"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cmd(f, verbs[i]), 250);
        assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 250);
        assert_int_equal(cmd(f, "DATA"), 354);
        assert_int_equal(send_text(f, big), 250);
        assert_string_equal(last_line(f), "250 2.0.0 Ok: queued as ID1");
        assert_int_equal(f->nterms, 0);
        assert_int_equal(f->nboxes, 1);
    }
    /* BDAT carries SEND too */
    assert_int_equal(cmd(f, "SEND FROM:<a@b.test>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 250);
    assert_int_equal(send_text(f, "BDAT 4 LAST\r\nhi\r\n"), 250);
    assert_string_equal(last_line(f), "250 2.0.0 Ok: delivered to 1 terminal as ID1");
    fx_free(f);
}

static void test_ehlo(void **state)
{
    (void)state;
    struct fixture *f = ready(SMTP_TERMINAL_NONE);
    assert_null(strstr(f->out, "250-SEND"));
    assert_non_null(strstr(f->out, "250-SOML\r\n250-SAML"));
    fx_free(f);
    f = fx_new(SMTP_TERMINAL_ALL, true);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    assert_non_null(strstr(f->out, "250-SEND\r\n250-SOML"));
    assert_null(strstr(f->out, "XWATCH"));
    assert_int_equal(cmd(f, "STARTTLS"), 220);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    assert_null(strstr(f->out, "XWATCH")); /* not before AUTH */
    authenticate(f);
    size_t before = f->outlen;
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    assert_non_null(strstr(f->out + before, "250 XWATCH\r\n")); /* the last keyword */
    fx_free(f);
}

static void test_xwatch(void **state)
{
    (void)state;
    struct fixture *f = fx_new(SMTP_TERMINAL_ALL, false);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    expect(f, "XWATCH", "502 5.5.1 XWATCH is not offered here"); /* not submission */
    fx_free(f);
    f = fx_new(SMTP_TERMINAL_NONE, true);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    assert_int_equal(cmd(f, "XWATCH"), 502);
    fx_free(f);

    f = fx_new(SMTP_TERMINAL_ALL, true);
    expect(f, "XWATCH", "503 Send EHLO first"); /* no enhanced code before EHLO */
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    expect(f, "XWATCH now", "501 5.5.4 Syntax: XWATCH (no parameters)");
    expect(f, "XWATCH", "530 5.7.0 Must issue a STARTTLS command first");
    assert_string_equal(f->rule, "encryption_required");
    authenticate(f); /* in clear, as the configuration allows: still no XWATCH */
    expect(f, "XWATCH", "530 5.7.0 Must issue a STARTTLS command first");
    fx_free(f);

    f = fx_new(SMTP_TERMINAL_ALL, true);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    assert_int_equal(cmd(f, "STARTTLS"), 220);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    expect(f, "XWATCH", "530 5.7.0 Authentication required");
    assert_string_equal(f->rule, "auth_required");
    authenticate(f);
    assert_int_equal(cmd(f, "MAIL FROM:<alice@example.org>"), 250);
    expect(f, "XWATCH", "503 5.5.1 XWATCH inside a mail transaction: send RSET first");
    assert_int_equal(cmd(f, "RSET"), 250);
    f->watch_fail = true;
    expect(f, "XWATCH", "452 4.3.1 too many terminals for this user");
    assert_string_equal(f->rule, "watch");
    assert_false(smtp_session_watching(f->s));
    f->watch_fail = false;
    expect(f, "XWATCH",
           "250 2.0.0 watching alice@example.org: terminal messages follow; QUIT to stop");
    assert_int_equal(f->watches, 2);
    assert_true(smtp_session_watching(f->s));
    assert_int_equal(cmd(f, "NOOP"), 250);
    const char *others[] = {"MAIL FROM:<alice@example.org>", "RSET", "EHLO x.test", "XWATCH",
                            "HELP"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        expect(f, others[i], "503 5.5.1 Watching terminal messages: only NOOP and QUIT");
    assert_true(smtp_session_watching(f->s));
    assert_int_equal(cmd(f, "QUIT"), 221);
    assert_false(smtp_session_watching(f->s));
    assert_int_equal(smtp_session_wants_close(f->s), SMTP_CLOSE_AFTER_OUTPUT);
    fx_free(f);

    /* the caller ends a watch: 421, close */
    f = fx_new(SMTP_TERMINAL_ALL, true);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    smtp_session_end_watch(f->s, "not watching"); /* not watching: nothing */
    assert_int_equal(smtp_session_wants_close(f->s), SMTP_OPEN);
    assert_int_equal(cmd(f, "STARTTLS"), 220);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    authenticate(f);
    assert_int_equal(cmd(f, "XWATCH"), 250);
    size_t before = f->outlen;
    smtp_session_end_watch(f->s, "the user is locked");
    sfx_collect(f->s, f->out, sizeof f->out, &f->outlen);
    assert_string_equal(f->out + before,
                        "421 4.7.0 mx.example.org The watch is over: the user is locked\r\n");
    assert_int_equal(smtp_session_wants_close(f->s), SMTP_CLOSE_AFTER_OUTPUT);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mail_policy), cmocka_unit_test(test_send_rcpt_codes),
        cmocka_unit_test(test_soml_saml),   cmocka_unit_test(test_end_of_message_size),
        cmocka_unit_test(test_ehlo),        cmocka_unit_test(test_xwatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

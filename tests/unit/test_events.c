/* Unit tests of the session core's audit hook (env.event, struct smtp_event): which commands
 * produce an event (ETRN and TURN among them), exactly once and at their final reply, with which
 * verb, argument, code, enhanced code and rule; the limit events; that no AUTH secret ever reaches
 * an event; that a NULL hook changes nothing; and smtp_session_message_id after a message. The
 * store and SASL are simulated in memory, as in test_session.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/data.h"
#include "smtp/session.h"

#include "session_fixture.h"

/* base64 of "\0alice@example.org\0Tr0ub4dor&3" (accepted) and of
 * "\0mallory@example.org\0hunter2-guess" (refused; the caller names mallory in the result) */
#define GOOD_BLOB "AGFsaWNlQGV4YW1wbGUub3JnAFRyMHViNGRvciYz"
#define GOOD_PASS "Tr0ub4dor&3"
#define BAD_BLOB "AG1hbGxvcnlAZXhhbXBsZS5vcmcAaHVudGVyMi1ndWVzcw=="
#define BAD_PASS "hunter2-guess"

#define MAX_EVENTS 256

struct fixture {
    struct tables *t;
    struct smtp_env env;
    struct smtp_session *s;
    char out[65536];
    size_t outlen;
    int begins, commits, aborts;
    bool fail_begin, fail_commit;
    struct sfx_event ev[MAX_EVENTS];
    size_t nev;
    size_t mark; /* events before the step under test */
};

static void on_event(void *ctx, const struct smtp_event *ev)
{
    struct fixture *f = ctx;
    assert_true(f->nev < MAX_EVENTS);
    sfx_record(&f->ev[f->nev++], ev);
}

static void add_user(struct tables *t, const char *addr, const char *name)
{
    struct tables_user u;
    memset(&u, 0, sizeof u);
    snprintf(u.addr, sizeof u.addr, "%s", addr);
    snprintf(u.name, sizeof u.name, "%s", name);
    char err[256];
    assert_int_equal(tables_add_user(t, &u, err, sizeof err), 0);
}

static struct fixture *fx_env(bool listen, bool submission, bool secure)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    char err[1024];
    f->t = tables_new();
    assert_int_equal(tables_add_domain(f->t, "example.org", err, sizeof err), 0);
    add_user(f->t, "alice@example.org", "Alice Liddell");
    add_user(f->t, "bob@example.org", "Bob Smith");
    add_user(f->t, "carol@example.org", "Carol Smith");
    const char *team[] = {"alice", "bob"};
    assert_int_equal(tables_add_alias(f->t, "team@example.org", team, 2, err, sizeof err), 0);
    const char *pm[] = {"alice@example.org"};
    assert_int_equal(tables_add_alias(f->t, "postmaster", pm, 1, err, sizeof err), 0);
    assert_int_equal(tables_finish(f->t, err, sizeof err), 0);
    f->env = (struct smtp_env){
        .hostname = "mx.example.org",
        .peer_ip = "192.0.2.1",
        .max_message_size = 10000,
        .max_recipients = 3,
        .max_bad_commands = 20,
        .max_junk_commands = 50,
        .vrfy = SMTP_DISCLOSE_ALL,
        .expn = SMTP_DISCLOSE_ALL,
        .tables = f->t,
        .submission = submission,
        .auth_mechs = secure ? "PLAIN" : NULL,
        .auth_mech_ok = sfx_mech_plain,
        .auth_cleartext_ok = secure,
        .event = listen ? on_event : NULL,
        .ctx = f,
    };
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

/* Performs the core's requests synchronously: an in-memory store and a fake SASL PLAIN. */
static void serve(struct fixture *f)
{
    const struct smtp_request *q;
    while ((q = smtp_session_request(f->s))) {
        struct smtp_result r = {.ok = true};
        switch (q->type) {
        case SMTP_REQ_STORE_BEGIN:
            f->begins++;
            r.ok = !f->fail_begin;
            snprintf(r.id, sizeof r.id, "ID%d", f->begins);
            break;
        case SMTP_REQ_STORE_COMMIT:
            r.ok = !f->fail_commit;
            f->commits += r.ok;
            break;
        case SMTP_REQ_STORE_ABORT:
            f->aborts++;
            break;
        default: /* APPEND keeps nothing; there is no STARTTLS here */
            break;
        case SMTP_REQ_AUTH:
            if (q->auth_cancel)
                break;
            if (q->mech && !q->auth_data) {
                r.more = true; /* empty challenge */
            } else if (q->auth_data && strcmp(q->auth_data, GOOD_BLOB) == 0) {
                snprintf(r.user, sizeof r.user, "alice@example.org");
            } else {
                r.ok = false;
                r.code = 535;
                snprintf(r.enh, sizeof r.enh, "5.7.8");
                snprintf(r.text, sizeof r.text, "Authentication credentials invalid");
                if (q->auth_data && strcmp(q->auth_data, BAD_BLOB) == 0)
                    snprintf(r.user, sizeof r.user, "mallory@example.org");
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

static void feed(struct fixture *f, const char *data, size_t len)
{
    sfx_feed(f->s, data, len, serve_cb, f);
}

/* Sends text (marking where its events start) and returns the code of the last reply line. */
static int send_text(struct fixture *f, const char *text, size_t len)
{
    f->mark = f->nev;
    size_t before = f->outlen;
    feed(f, text, len);
    return sfx_last_code(f->out, f->outlen, before);
}

static int cmd(struct fixture *f, const char *line)
{
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%s\r\n", line);
    assert_true(n > 0 && (size_t)n < sizeof buf);
    return send_text(f, buf, (size_t)n);
}

static int text(struct fixture *f, const char *s)
{
    return send_text(f, s, strlen(s));
}

/* The events since the last send. */
static size_t nnew(const struct fixture *f)
{
    return f->nev - f->mark;
}

#define NEW_EVENTS(f, n)                                                                           \
    do {                                                                                           \
        if (nnew(f) != (n))                                                                        \
            fail_msg("line %d: want %d events, got %zu", __LINE__, (n), nnew(f));                  \
    } while (0)

/* Event number k since the last send must be this command's answer. */
static void expect_ev(const struct fixture *f, size_t k, const char *verb, const char *arg,
                      int code, const char *enh, const char *rule, int line)
{
    if (k >= nnew(f))
        fail_msg("line %d: no event %zu (%zu new)", line, k, nnew(f));
    const struct sfx_event *r = &f->ev[f->mark + k];
    if (r->limit || strcmp(r->verb, verb) != 0 || strcmp(r->arg, arg) != 0 ||
        r->arg_len != strlen(arg) || r->code != code || strcmp(r->enh, enh) != 0 ||
        strcmp(r->rule, rule) != 0)
        fail_msg("line %d: want %s \"%s\" %d \"%s\" %s, got %s%s \"%s\" %d \"%s\" %s", line, verb,
                 arg, code, enh, rule, r->limit ? "limit " : "", r->verb, r->arg, r->code, r->enh,
                 r->rule);
}
#define EV(f, k, verb, arg, code, enh, rule) expect_ev(f, k, verb, arg, code, enh, rule, __LINE__)

static void expect_limit(const struct fixture *f, size_t k, const char *what, int line)
{
    if (k >= nnew(f))
        fail_msg("line %d: no event %zu (%zu new)", line, k, nnew(f));
    const struct sfx_event *r = &f->ev[f->mark + k];
    if (!r->limit || strcmp(r->verb, what) != 0 || strcmp(r->rule, what) != 0 || r->code != 421 ||
        r->arg_len != 0 || r->text[0] == '\0' || strcmp(r->enh, "4.7.0") != 0)
        fail_msg("line %d: want limit %s, got %s%s %s %d", line, what, r->limit ? "limit " : "",
                 r->verb, r->rule, r->code);
}
#define LIMIT(f, k, what) expect_limit(f, k, what, __LINE__)

static struct fixture *fx_ehlo(void)
{
    struct fixture *f = fx_env(true, false, false);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    return f;
}

static struct fixture *fx_rcpt(void)
{
    struct fixture *f = fx_ehlo();
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.example>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 250);
    return f;
}

static void test_helo_ehlo(void **state)
{
    (void)state;
    struct fixture *f = fx_env(true, false, false);
    serve(f);
    assert_int_equal(f->nev, 0); /* the greeting is no event */
    assert_int_equal(cmd(f, "HELO -bad-"), 501);
    NEW_EVENTS(f, 1);
    EV(f, 0, "HELO", "-bad-", 501, "", "syntax");
    assert_int_equal(cmd(f, "HELO client.test"), 250);
    NEW_EVENTS(f, 1);
    EV(f, 0, "HELO", "client.test", 250, "", "ok");
    assert_string_equal(f->ev[f->mark].text, "mx.example.org Hello client.test [192.0.2.1]");
    assert_int_equal(cmd(f, "EHLO other.test"), 250); /* many lines, one event */
    NEW_EVENTS(f, 1);
    EV(f, 0, "EHLO", "other.test", 250, "", "ok");
    assert_string_equal(f->ev[f->mark].text, "mx.example.org Hello other.test [192.0.2.1]");
    assert_int_equal(cmd(f, "EHLO bad..name"), 501); /* after EHLO: enhanced codes */
    NEW_EVENTS(f, 1);
    EV(f, 0, "EHLO", "bad..name", 501, "5.5.2", "syntax");
    assert_int_equal(cmd(f, "EHLO"), 501);
    NEW_EVENTS(f, 1);
    EV(f, 0, "EHLO", "", 501, "5.5.4", "syntax");
    assert_int_equal(cmd(f, "ehlo   [127.0.0.1]   "), 250); /* spaces around are not the name */
    NEW_EVENTS(f, 1);
    EV(f, 0, "EHLO", "[127.0.0.1]", 250, "", "ok");
    fx_free(f);
}

static void test_mail(void **state)
{
    (void)state;
    struct fixture *f = fx_env(true, false, false);
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.example>"), 503); /* before HELO */
    NEW_EVENTS(f, 1);
    EV(f, 0, "MAIL", "FROM:<a@b.example>", 503, "", "sequence");
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.example> SIZE=10"), 250);
    NEW_EVENTS(f, 1);
    EV(f, 0, "MAIL", "a@b.example", 250, "2.1.0", "ok");
    assert_string_equal(f->ev[f->mark].text, "Sender <a@b.example> OK");
    assert_int_equal(cmd(f, "MAIL FROM:<c@d.example>"), 503); /* nested */
    NEW_EVENTS(f, 1);
    EV(f, 0, "MAIL", "FROM:<c@d.example>", 503, "5.5.1", "sequence");
    assert_int_equal(cmd(f, "RSET"), 250);
    NEW_EVENTS(f, 0);

    static const struct {
        const char *line, *arg;
        int code;
        const char *enh, *rule;
    } cases[] = {
        {"MAIL FROM:<a@b.example> SIZE=10001", "a@b.example", 552, "5.3.4", "message_size"},
        {"MAIL FROM:<a@@b.example>", "FROM:<a@@b.example>", 553, "5.1.7", "syntax"},
        {"MAIL FROM:a@b.example", "FROM:a@b.example", 501, "5.5.2", "syntax"},
        {"MAIL FROM:<a@b.example> RET=FULL", "a@b.example", 555, "5.5.4", "syntax"},
        {"MAIL FROM:<\xc3\xa9@b.example>", "\xc3\xa9@b.example", 553, "5.6.7", "smtputf8"},
        {"MAIL FROM:<>", "", 250, "2.1.0", "ok"},
        {"SEND FROM:<a@b.example>", "a@b.example", 250, "2.1.0", "ok"},
        {"SOML FROM:<a@b.example>", "a@b.example", 250, "2.1.0", "ok"},
        {"SAML FROM:<a@b.example>", "a@b.example", 250, "2.1.0", "ok"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(cmd(f, cases[i].line), cases[i].code);
        NEW_EVENTS(f, 1);
        char verb[5];
        snprintf(verb, sizeof verb, "%s", cases[i].line);
        EV(f, 0, verb, cases[i].arg, cases[i].code, cases[i].enh, cases[i].rule);
        assert_int_equal(cmd(f, "RSET"), 250);
    }
    fx_free(f);

    /* submission: no mail before AUTH */
    f = fx_env(true, true, true);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    assert_int_equal(cmd(f, "MAIL FROM:<alice@example.org>"), 530);
    NEW_EVENTS(f, 1);
    EV(f, 0, "MAIL", "FROM:<alice@example.org>", 530, "5.7.0", "auth_required");
    assert_int_equal(cmd(f, "AUTH PLAIN " GOOD_BLOB), 235);
    assert_int_equal(cmd(f, "MAIL FROM:<bob@example.org>"), 553); /* not hers */
    NEW_EVENTS(f, 1);
    EV(f, 0, "MAIL", "bob@example.org", 553, "5.7.1", "send_as");
    fx_free(f);
}

static void test_rcpt(void **state)
{
    (void)state;
    struct fixture *f = fx_ehlo();
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 503);
    NEW_EVENTS(f, 1);
    EV(f, 0, "RCPT", "TO:<alice@example.org>", 503, "5.5.1", "sequence");
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.example>"), 250);
    static const struct {
        const char *line, *arg;
        int code;
        const char *enh, *rule;
    } cases[] = {
        {"RCPT TO:<alice@example.org>", "alice@example.org", 250, "2.1.5", "ok"},
        {"RCPT TO:<nobody@example.org>", "nobody@example.org", 550, "5.1.1", "unknown_user"},
        {"RCPT TO:<someone@other.test>", "someone@other.test", 550, "5.7.1", "relay"},
        {"RCPT TO:<alice@[192.0.2.1]>", "alice@[192.0.2.1]", 550, "5.7.1", "relay"},
        {"RCPT TO:<user%other.test@example.org>", "user%other.test@example.org", 550, "5.7.1",
         "source_route"},
        {"RCPT TO:<other.test!user@example.org>", "other.test!user@example.org", 550, "5.7.1",
         "source_route"},
        {"RCPT TO:<alice@@example.org>", "TO:<alice@@example.org>", 553, "5.1.3", "syntax"},
        {"RCPT TO:alice@example.org", "TO:alice@example.org", 501, "5.5.2", "syntax"},
        {"RCPT TO:<bob@example.org> SIZE=1", "TO:<bob@example.org> SIZE=1", 555, "5.5.4", "syntax"},
        {"RCPT TO:<bob@example.org>", "bob@example.org", 250, "2.1.5", "ok"},
        {"RCPT TO:<carol@example.org>", "carol@example.org", 250, "2.1.5", "ok"},
        {"RCPT TO:<team@example.org>", "team@example.org", 452, "4.5.3", "recipients"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(cmd(f, cases[i].line), cases[i].code);
        NEW_EVENTS(f, 1);
        EV(f, 0, "RCPT", cases[i].arg, cases[i].code, cases[i].enh, cases[i].rule);
    }
    fx_free(f);
}

static void test_data(void **state)
{
    (void)state;
    struct fixture *f = fx_rcpt();
    assert_int_equal(cmd(f, "DATA"), 354);
    NEW_EVENTS(f, 0); /* 354 is not the final answer */
    assert_int_equal(text(f, "Subject: hi\r\n\r\nbody\r\n.\r\n"), 250);
    NEW_EVENTS(f, 1);
    EV(f, 0, "DATA", "ID1", 250, "2.0.0", "ok");
    assert_string_equal(f->ev[f->mark].text, "Ok: queued as ID1");
    assert_int_equal(f->commits, 1);
    assert_int_equal(cmd(f, "DATA"), 503); /* the transaction is over */
    NEW_EVENTS(f, 1);
    EV(f, 0, "DATA", "", 503, "5.5.1", "sequence");
    fx_free(f);

    /* messages refused at their end: the event names the rule and the id the store gave */
    char *big = malloc(12000);
    assert_non_null(big);
    memset(big, 'x', 1500);
    strcpy(big + 1500, "\r\n.\r\n");
    static const struct {
        const char *text;
        int code;
        const char *enh, *rule;
    } cases[] = {
        {"a\nb\r\n.\r\n", 554, "5.6.0", "bare_lf"},
        {"a\rb\r\n.\r\n", 554, "5.6.0", "bare_lf"},
        {NULL, 554, "5.6.0", "line_length"}, /* big: one 1500-octet line */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f = fx_rcpt();
        assert_int_equal(cmd(f, "DATA"), 354);
        assert_int_equal(text(f, cases[i].text ? cases[i].text : big), cases[i].code);
        NEW_EVENTS(f, 1);
        EV(f, 0, "DATA", "ID1", cases[i].code, cases[i].enh, cases[i].rule);
        assert_int_equal(f->commits, 0);
        assert_int_equal(f->aborts, 1);
        fx_free(f);
    }
    /* too big: 110 lines of 100 octets */
    f = fx_rcpt();
    assert_int_equal(cmd(f, "DATA"), 354);
    size_t n = 0;
    for (int i = 0; i < 110; i++) {
        memset(big + n, 'y', 98);
        memcpy(big + n + 98, "\r\n", 2);
        n += 100;
    }
    memcpy(big + n, ".\r\n", 3);
    assert_int_equal(send_text(f, big, n + 3), 552);
    NEW_EVENTS(f, 1);
    EV(f, 0, "DATA", "ID1", 552, "5.3.4", "message_size");
    fx_free(f);
    free(big);

    /* the store fails at COMMIT, or never begins */
    f = fx_rcpt();
    f->fail_commit = true;
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(text(f, "x\r\n.\r\n"), 451);
    NEW_EVENTS(f, 1);
    EV(f, 0, "DATA", "ID1", 451, "4.3.0", "store");
    fx_free(f);
    f = fx_rcpt();
    f->fail_begin = true;
    assert_int_equal(cmd(f, "DATA"), 451);
    NEW_EVENTS(f, 1);
    EV(f, 0, "DATA", "", 451, "4.3.0", "store");
    fx_free(f);

    /* every RCPT failed */
    f = fx_ehlo();
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.example>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<nobody@example.org>"), 550);
    assert_int_equal(cmd(f, "DATA"), 554);
    NEW_EVENTS(f, 1);
    EV(f, 0, "DATA", "", 554, "5.5.1", "no_recipients");
    fx_free(f);
}

static void test_bdat(void **state)
{
    (void)state;
    struct fixture *f = fx_rcpt();
    assert_int_equal(text(f, "BDAT 5\r\nhello"), 250);
    NEW_EVENTS(f, 0);
    assert_int_equal(text(f, "BDAT 6\r\n world"), 250);
    NEW_EVENTS(f, 0);
    assert_int_equal(text(f, "BDAT 0 LAST\r\n"), 250);
    NEW_EVENTS(f, 1);
    EV(f, 0, "BDAT", "ID1", 250, "2.0.0", "ok");
    assert_int_equal(f->commits, 1);
    fx_free(f);

    /* pipelined, all in one read: still exactly one event */
    f = fx_rcpt();
    assert_int_equal(text(f, "BDAT 3\r\nabcBDAT 3\r\ndefBDAT 2 LAST\r\ng\n"), 250);
    NEW_EVENTS(f, 1);
    EV(f, 0, "BDAT", "ID1", 250, "2.0.0", "ok");
    fx_free(f);

    /* without MAIL: the chunk is read, then 503 */
    f = fx_ehlo();
    assert_int_equal(text(f, "BDAT 4\r\nabcd"), 503);
    NEW_EVENTS(f, 1);
    EV(f, 0, "BDAT", "", 503, "5.5.1", "sequence");
    assert_int_equal(text(f, "BDAT x\r\n"), 501);
    NEW_EVENTS(f, 1);
    EV(f, 0, "BDAT", "", 501, "5.5.4", "syntax");
    fx_free(f);

    /* a chunk that dooms the message is its end: one refusal event, no LAST needed */
    f = fx_rcpt();
    char *big = malloc(12100);
    assert_non_null(big);
    int h = snprintf(big, 32, "BDAT 12000\r\n");
    memset(big + h, 'z', 12000);
    assert_int_equal(send_text(f, big, (size_t)h + 12000), 552);
    NEW_EVENTS(f, 1);
    EV(f, 0, "BDAT", "ID1", 552, "5.3.4", "message_size");
    free(big);
    fx_free(f);

    /* the store cannot begin: the chunk is read, then the failure */
    f = fx_rcpt();
    f->fail_begin = true;
    assert_int_equal(text(f, "BDAT 3 LAST\r\nabc"), 451);
    NEW_EVENTS(f, 1);
    EV(f, 0, "BDAT", "", 451, "4.3.0", "store");
    fx_free(f);
}

/* No field of any event recorded so far holds s. */
static void assert_nowhere(const struct fixture *f, const char *s)
{
    assert_true(f->nev > 0); /* events to look in: an empty list proves nothing */
    for (size_t i = 0; i < f->nev; i++) {
        const struct sfx_event *r = &f->ev[i];
        const char *fields[] = {r->verb, r->arg, r->mech, r->enh, r->rule, r->text};
        for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++)
            if (strstr(fields[k], s))
                fail_msg("event %zu (%s) field %zu holds \"%s\"", i, r->verb, k, s);
    }
}

static void test_auth(void **state)
{
    (void)state;
    struct fixture *f = fx_env(true, false, true);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    assert_int_equal(cmd(f, "AUTH CRAM-MD5 Zm9v"), 504);
    NEW_EVENTS(f, 1);
    EV(f, 0, "AUTH", "", 504, "5.5.4", "mechanism");
    assert_string_equal(f->ev[f->mark].mech, "CRAM-MD5"); /* what was asked for, even refused */
    assert_int_equal(cmd(f, "AUTH plain " BAD_BLOB), 535);
    NEW_EVENTS(f, 1);
    EV(f, 0, "AUTH", "mallory@example.org", 535, "5.7.8", "credentials");
    assert_string_equal(f->ev[f->mark].mech, "PLAIN");
    assert_int_equal(cmd(f, "AUTH PLAIN"), 334);
    NEW_EVENTS(f, 0); /* 334 is not the final answer */
    assert_int_equal(cmd(f, "*"), 501);
    NEW_EVENTS(f, 1);
    EV(f, 0, "AUTH", "", 501, "5.0.0", "cancelled");
    assert_int_equal(cmd(f, "AUTH PLAIN"), 334);
    assert_int_equal(send_text(f, "c2VjcmV0\0x\r\n", 12), 500); /* a broken response ends it */
    NEW_EVENTS(f, 1);
    EV(f, 0, "AUTH", "", 500, "5.5.2", "syntax");
    assert_int_equal(cmd(f, "AUTH PLAIN " GOOD_BLOB), 235);
    NEW_EVENTS(f, 1);
    EV(f, 0, "AUTH", "alice@example.org", 235, "2.7.0", "ok");
    assert_string_equal(f->ev[f->mark].mech, "PLAIN");
    assert_int_equal(cmd(f, "MAIL FROM:<alice@example.org>"), 250);
    NEW_EVENTS(f, 1);
    assert_string_equal(f->ev[f->mark].mech, ""); /* only AUTH events name a mechanism */
    assert_int_equal(cmd(f, "RSET"), 250);
    assert_int_equal(cmd(f, "AUTH PLAIN " GOOD_BLOB), 503);
    NEW_EVENTS(f, 1);
    EV(f, 0, "AUTH", "", 503, "5.5.1", "sequence");
    assert_int_equal(f->nev, 8);
    assert_nowhere(f, GOOD_BLOB);
    assert_nowhere(f, "c2VjcmV0");
    assert_nowhere(f, GOOD_PASS);
    assert_nowhere(f, BAD_BLOB);
    assert_nowhere(f, BAD_PASS);
    assert_nowhere(f, "Zm9v");
    fx_free(f);

    /* the response after 334 is no more visible than an initial one */
    f = fx_env(true, false, true);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    assert_int_equal(cmd(f, "AUTH PLAIN"), 334);
    assert_int_equal(cmd(f, GOOD_BLOB), 235);
    NEW_EVENTS(f, 1);
    EV(f, 0, "AUTH", "alice@example.org", 235, "2.7.0", "ok");
    assert_nowhere(f, GOOD_BLOB);
    assert_nowhere(f, GOOD_PASS);
    fx_free(f);

    /* three failures: three events, then the limit */
    f = fx_env(true, false, true);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    assert_int_equal(cmd(f, "AUTH PLAIN " BAD_BLOB), 535);
    assert_int_equal(cmd(f, "AUTH PLAIN d3Jvbmc="), 535);
    NEW_EVENTS(f, 1);
    EV(f, 0, "AUTH", "", 535, "5.7.8", "credentials"); /* nobody named */
    assert_int_equal(cmd(f, "AUTH PLAIN " BAD_BLOB), 421);
    NEW_EVENTS(f, 2);
    EV(f, 0, "AUTH", "mallory@example.org", 535, "5.7.8", "credentials");
    LIMIT(f, 1, "auth_failures");
    assert_int_equal(smtp_session_wants_close(f->s), SMTP_CLOSE_AFTER_OUTPUT);
    assert_nowhere(f, BAD_BLOB);
    assert_nowhere(f, BAD_PASS);
    fx_free(f);

    /* AUTH in clear where that is not allowed */
    f = fx_env(true, false, true);
    f->env.auth_cleartext_ok = false;
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    assert_int_equal(cmd(f, "AUTH PLAIN " GOOD_BLOB), 538);
    NEW_EVENTS(f, 1);
    EV(f, 0, "AUTH", "", 538, "5.7.11", "encryption_required");
    assert_nowhere(f, GOOD_BLOB);
    fx_free(f);
}

static void test_limits(void **state)
{
    (void)state;
    struct fixture *f = fx_ehlo();
    for (int i = 0; i < 19; i++)
        assert_int_equal(cmd(f, "BOGUS"), 500);
    assert_int_equal(f->nev, 1); /* the EHLO: unknown commands are no events */
    assert_int_equal(cmd(f, "BOGUS"), 421);
    NEW_EVENTS(f, 1);
    LIMIT(f, 0, "bad_commands");
    fx_free(f);

    /* a tracked command's error is its own event, then the limit */
    f = fx_ehlo();
    for (int i = 0; i < 19; i++)
        assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 503);
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 421);
    NEW_EVENTS(f, 2);
    EV(f, 0, "RCPT", "TO:<alice@example.org>", 503, "5.5.1", "sequence");
    LIMIT(f, 1, "bad_commands");
    assert_int_equal(cmd(f, "EHLO client.test"), 0); /* closed: nothing more */
    NEW_EVENTS(f, 0);
    fx_free(f);

    f = fx_ehlo();
    for (int i = 0; i < 50; i++)
        assert_int_equal(cmd(f, "NOOP"), 250);
    assert_int_equal(f->nev, 1);
    assert_int_equal(cmd(f, "NOOP"), 421);
    NEW_EVENTS(f, 1);
    LIMIT(f, 0, "junk_commands");
    fx_free(f);
}

static void test_untracked(void **state)
{
    (void)state;
    struct fixture *f = fx_rcpt();
    const char *lines[] = {"NOOP",
                           "NOOP hello",
                           "VRFY alice@example.org",
                           "VRFY nobody",
                           "EXPN team@example.org",
                           "HELP",
                           "HELP MAIL",
                           "STARTTLS",
                           "BOGUS",
                           "RSET",
                           "QUIT"};
    size_t before = f->nev;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        assert_true(cmd(f, lines[i]) > 0);
        NEW_EVENTS(f, 0);
    }
    assert_int_equal(f->nev, before);
    fx_free(f);
    /* line-level errors are no command's answer */
    f = fx_ehlo();
    char line[600];
    memset(line, 'M', 599);
    line[599] = '\0';
    assert_int_equal(cmd(f, line), 500);
    NEW_EVENTS(f, 0);
    assert_int_equal(cmd(f, ""), 500);
    NEW_EVENTS(f, 0);
    assert_int_equal(send_text(f, "MAIL\0 FROM:<a@b.example>\r\n", 26), 500);
    NEW_EVENTS(f, 0);
    fx_free(f);
}

/* ETRN and TURN are answers the audit log hears (test_session_queue.c has them entitled). */
static void test_etrn_turn(void **state)
{
    (void)state;
    struct fixture *f = fx_ehlo();
    assert_int_equal(cmd(f, "ETRN @Example.COM"), 502); /* no queue to start on this listener */
    NEW_EVENTS(f, 1);
    EV(f, 0, "ETRN", "@Example.COM", 502, "5.5.1", "not_available");
    assert_int_equal(cmd(f, "TURN"), 502);
    NEW_EVENTS(f, 1);
    EV(f, 0, "TURN", "", 502, "5.7.0", "auth_required");
    assert_int_equal(cmd(f, "TURN now"), 501);
    NEW_EVENTS(f, 1);
    EV(f, 0, "TURN", "", 501, "5.5.4", "syntax");
    fx_free(f);
}

/* A conversation touching every kind of event, byte for byte the same without a listener. */
static const char *const script[] = {
    "HELO -bad-\r\n",
    "EHLO client.test\r\n",
    "MAIL FROM:<a@b.example> SIZE=10001\r\n",
    "MAIL FROM:<a@b.example> SIZE=10\r\n",
    "RCPT TO:<nobody@example.org>\r\nRCPT TO:<user%x.test@example.org>\r\n",
    "RCPT TO:<alice@example.org>\r\nDATA\r\n",
    "Message-ID: <m1@c.test>\r\n\r\nhi\r\n.\r\n",
    "MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 2\r\nabBDAT 1 LAST\r\nc",
    "AUTH PLAIN " BAD_BLOB "\r\n",
    "AUTH PLAIN " GOOD_BLOB "\r\n",
    "NOOP\r\nVRFY bob@example.org\r\nRSET\r\n",
    "BOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\n",
    "BOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\n",
    "QUIT\r\n",
};

static void test_no_listener(void **state)
{
    (void)state;
    struct fixture *with = fx_env(true, false, true), *without = fx_env(false, false, true);
    for (size_t i = 0; i < sizeof script / sizeof script[0]; i++) {
        text(with, script[i]);
        text(without, script[i]);
        if (strcmp(with->out, without->out) != 0)
            fail_msg("after step %zu the replies differ:\n%s\n---\n%s", i, with->out, without->out);
    }
    assert_int_equal(without->nev, 0);
    assert_int_equal(with->commits, 2);
    assert_int_equal(without->commits, 2);
    /* the script ends with the bad-commands limit, before its QUIT */
    assert_non_null(strstr(with->out, "421 4.7.0"));
    assert_null(strstr(with->out, "221 "));
    assert_int_equal(with->nev, 14); /* HELO EHLO MAIL*2 RCPT*3 DATA MAIL RCPT BDAT AUTH*2 limit */
    assert_true(with->ev[with->nev - 1].limit);
    assert_string_equal(with->ev[with->nev - 1].verb, "bad_commands");
    fx_free(with);
    fx_free(without);
}

/* Sends a message by DATA and returns smtp_session_message_id afterwards. */
static const char *message_id_of(struct fixture *f, const char *msg)
{
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.example>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 250);
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(text(f, msg), 250);
    return smtp_session_message_id(f->s);
}

static void test_message_id(void **state)
{
    (void)state;
    struct fixture *f = fx_ehlo();
    assert_string_equal(smtp_session_message_id(f->s), "");
    /* folded: unfolding drops the CRLF, the field body keeps its white space */
    assert_string_equal(
        message_id_of(f, "Subject: x\r\nMessage-ID:\r\n <a@b>\r\nTo: y\r\n\r\nbody\r\n.\r\n"),
        " <a@b>");
    assert_string_equal(message_id_of(f, "Subject: x\r\n\r\nMessage-ID: <body@b>\r\n.\r\n"), "");
    assert_string_equal(
        message_id_of(f, "message-id: <first@b>\r\nMESSAGE-ID: <second@b>\r\n\r\n.\r\n"),
        " <first@b>");
    /* the id is the message's own, not the store's, and not the DATA event's argument */
    assert_string_equal(f->ev[f->nev - 1].arg, "ID3");

    char *msg = malloc(2000);
    assert_non_null(msg);
    strcpy(msg, "Message-ID: <");
    size_t n = strlen(msg);
    memset(msg + n, 'q', 600);
    n += 600;
    strcpy(msg + n, "@b>\r\n\r\nbody\r\n.\r\n");
    const char *id = message_id_of(f, msg);
    assert_int_equal(strlen(id), SMTP_DATA_MSGID_MAX - 1);
    assert_memory_equal(id, msg + strlen("Message-ID:"), SMTP_DATA_MSGID_MAX - 1);
    free(msg);

    /* BDAT: the same capture, raw */
    assert_int_equal(cmd(f, "MAIL FROM:<a@b.example>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 250);
    assert_int_equal(text(f, "BDAT 19\r\nMessage-Id: <c@d>\r\n"), 250);
    assert_int_equal(text(f, "BDAT 10 LAST\r\n\tx\r\n\r\nbody"), 250);
    assert_string_equal(smtp_session_message_id(f->s), " <c@d>\tx");
    fx_free(f);
}

/* XWATCH is tracked (a refusal here: not submission), and SEND's 450 names its rule. */
static void test_terminals(void **state)
{
    (void)state;
    struct fixture *f = fx_ehlo();
    assert_int_equal(cmd(f, "XWATCH"), 502);
    NEW_EVENTS(f, 1);
    EV(f, 0, "XWATCH", "", 502, "5.5.1", "error");
    assert_int_equal(cmd(f, "SEND FROM:<a@b.example>"), 250);
    NEW_EVENTS(f, 1);
    EV(f, 0, "SEND", "a@b.example", 250, "2.1.0", "ok");
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 450); /* no terminal: no hook */
    NEW_EVENTS(f, 1);
    EV(f, 0, "RCPT", "alice@example.org", 450, "4.2.1", "terminal");
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_helo_ehlo),   cmocka_unit_test(test_mail),
        cmocka_unit_test(test_rcpt),        cmocka_unit_test(test_data),
        cmocka_unit_test(test_bdat),        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_limits),      cmocka_unit_test(test_untracked),
        cmocka_unit_test(test_no_listener), cmocka_unit_test(test_message_id),
        cmocka_unit_test(test_etrn_turn),   cmocka_unit_test(test_terminals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

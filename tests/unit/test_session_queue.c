/* Unit tests of the session core's replies that need an outbound queue: RCPT and VRFY of a user
 * marked forward= (251, the address queued once), aliases reaching forwarded users, relay
 * domains from any client, ETRN (each syntax, each queue answer, sequence, listener, junk
 * counting) and TURN (each refusal, the entitled 250 and its request, nothing read after it),
 * with the audit events each gives. The store, SASL, relay domains and queue are simulated. */
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
#define BOB_PLAIN "AGJvYkBleGFtcGxlLm9yZwBwdw=="   /* "\0bob@example.org\0pw" */
#define MAX_EVENTS 64

struct fixture {
    struct tables *t;
    struct smtp_env env;
    struct smtp_session *s;
    char out[65536];
    size_t outlen;
    /* what the store saw at BEGIN */
    int begins, commits;
    size_t nboxes, nforeign;
    char foreign[8][SMTP_PATH_MAX + 1];
    char boxes[8][TABLES_ADDR_MAX + 1];
    /* relay domains and the queue */
    bool no_relay;
    char relay_asked[256];
    int etrn_calls, etrn_code;
    const char *etrn_text;
    char etrn_node[256];
    bool etrn_sub;
    const char *full_box; /* mailbox_full says yes for this one */
    /* TURN */
    int turns;
    bool turn_hold, turn_fail;
    size_t nturn;
    char turn[TABLES_TURN_MAX][256];
    struct sfx_event ev[MAX_EVENTS];
    size_t nev, mark;
};

static bool relay_domain(void *ctx, const char *domain)
{
    struct fixture *f = ctx;
    snprintf(f->relay_asked, sizeof f->relay_asked, "%s", domain);
    return !f->no_relay &&
           (strcmp(domain, "customer.test") == 0 || strcmp(domain, "other.test") == 0);
}

static int etrn(void *ctx, const char *node, bool subdomains, char *text, size_t textlen)
{
    struct fixture *f = ctx;
    f->etrn_calls++;
    snprintf(f->etrn_node, sizeof f->etrn_node, "%s", node);
    f->etrn_sub = subdomains;
    assert_true(textlen >= 100 && text[0] == '\0');
    if (f->etrn_text)
        snprintf(text, textlen, "%s", f->etrn_text);
    return f->etrn_code;
}

static bool mailbox_full(void *ctx, const char *box)
{
    struct fixture *f = ctx;
    return f->full_box && strcmp(box, f->full_box) == 0;
}

static void on_event(void *ctx, const struct smtp_event *ev)
{
    struct fixture *f = ctx;
    assert_true(f->nev < MAX_EVENTS);
    sfx_record(&f->ev[f->nev++], ev);
}

static void add_user(struct tables *t, const char *addr, const char *forward, const char *turn)
{
    struct tables_user u;
    memset(&u, 0, sizeof u);
    snprintf(u.addr, sizeof u.addr, "%s", addr);
    snprintf(u.forward, sizeof u.forward, "%s", forward);
    snprintf(u.turn, sizeof u.turn, "%s", turn);
    char err[256];
    if (tables_add_user(t, &u, err, sizeof err) != 0)
        fail_msg("%s", err);
}

static void add_alias(struct tables *t, const char *name, const char *m1, const char *m2)
{
    const char *m[] = {m1, m2};
    char err[256];
    assert_int_equal(tables_add_alias(t, name, m, m2 ? 2 : 1, err, sizeof err), 0);
}

static struct fixture *fx_new(bool submission)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    char err[1024];
    f->t = tables_new();
    assert_int_equal(tables_add_domain(f->t, "example.org", err, sizeof err), 0);
    add_user(f->t, "alice@example.org", "", "Customer.test,gone.test,other.test");
    add_user(f->t, "bob@example.org", "", "");
    add_user(f->t, "fwd@example.org", "fwd@remote.test", "");
    add_user(f->t, "fwd2@example.org", "fwd2@remote.test", "");
    add_user(f->t, "fwd3@example.org", "fwd@REMOTE.test", ""); /* the same address as fwd's */
    struct tables_user d = {.addr = "dave@example.org", .moved = "dave@elsewhere.test"};
    assert_int_equal(tables_add_user(f->t, &d, err, sizeof err), 0);
    add_alias(f->t, "postmaster", "alice", NULL);
    add_alias(f->t, "one@example.org", "fwd", NULL);
    add_alias(f->t, "same@example.org", "fwd", "fwd3");
    add_alias(f->t, "both@example.org", "fwd", "fwd2");
    add_alias(f->t, "mixed@example.org", "bob", "fwd");
    assert_int_equal(tables_finish(f->t, err, sizeof err), 0);
    f->etrn_code = 250;
    f->env = (struct smtp_env){
        .hostname = "mx.example.org",
        .peer_ip = "192.0.2.1",
        .submission = submission,
        .max_message_size = 10000,
        .max_recipients = 3,
        .max_bad_commands = 20,
        .max_junk_commands = 50,
        .vrfy = SMTP_DISCLOSE_ALL,
        .expn = SMTP_DISCLOSE_ALL,
        .tables = f->t,
        .auth_mechs = "PLAIN",
        .auth_cleartext_ok = true,
        .auth_mech_ok = sfx_mech_plain,
        .mailbox_full = mailbox_full,
        .relay_domain = relay_domain,
        .etrn = etrn,
        .event = on_event,
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

static void serve(struct fixture *f)
{
    const struct smtp_request *q;
    while ((q = smtp_session_request(f->s))) {
        struct smtp_result r = {.ok = true};
        assert_true(q->type == SMTP_REQ_TURN || (q->turn_domains == NULL && q->nturn == 0));
        switch (q->type) {
        case SMTP_REQ_STORE_BEGIN:
            f->begins++;
            snprintf(r.id, sizeof r.id, "ID%d", f->begins);
            f->nboxes = q->txn->nmailboxes;
            f->nforeign = q->txn->nforeign;
            for (size_t i = 0; i < f->nboxes && i < 8; i++)
                snprintf(f->boxes[i], sizeof f->boxes[i], "%s", q->txn->mailboxes[i]);
            for (size_t i = 0; i < f->nforeign && i < 8; i++)
                snprintf(f->foreign[i], sizeof f->foreign[i], "%s", q->txn->foreign[i]);
            break;
        case SMTP_REQ_STORE_COMMIT:
            f->commits++;
            break;
        case SMTP_REQ_AUTH:
            if (q->auth_data && strcmp(q->auth_data, ALICE_PLAIN) == 0) {
                snprintf(r.user, sizeof r.user, "alice@example.org");
            } else if (q->auth_data && strcmp(q->auth_data, BOB_PLAIN) == 0) {
                snprintf(r.user, sizeof r.user, "bob@example.org");
            } else {
                r.ok = false;
                r.code = 535;
            }
            break;
        case SMTP_REQ_TURN:
            f->turns++;
            f->nturn = q->nturn;
            for (size_t i = 0; i < q->nturn && i < TABLES_TURN_MAX; i++)
                snprintf(f->turn[i], sizeof f->turn[i], "%s", q->turn_domains[i]);
            if (f->turn_hold) {
                sfx_collect(f->s, f->out, sizeof f->out, &f->outlen);
                return; /* the caller owns the connection now */
            }
            r.ok = !f->turn_fail;
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

/* Sends one line; the code of the last reply line (0: none). Events from here on are "new". */
static int cmd(struct fixture *f, const char *line)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "%s\r\n", line);
    size_t before = f->outlen;
    f->mark = f->nev;
    sfx_feed(f->s, buf, (size_t)n, serve_cb, f);
    return sfx_last_code(f->out, f->outlen, before);
}

static const char *last_line(const struct fixture *f)
{
    static char line[600];
    size_t end = f->outlen - 2, start = end;
    while (start > 0 && f->out[start - 1] != '\n')
        start--;
    snprintf(line, sizeof line, "%.*s", (int)(end - start), f->out + start);
    return line;
}

/* The one event the last command gave. */
static void expect_ev(const struct fixture *f, const char *verb, const char *arg, int code,
                      const char *enh, const char *rule, int line)
{
    if (f->nev != f->mark + 1)
        fail_msg("line %d: want 1 event, got %zu", line, f->nev - f->mark);
    const struct sfx_event *r = &f->ev[f->mark];
    if (r->limit || strcmp(r->verb, verb) || strcmp(r->arg, arg) || r->code != code ||
        strcmp(r->enh, enh) || strcmp(r->rule, rule))
        fail_msg("line %d: want %s \"%s\" %d %s %s, got %s \"%s\" %d %s %s", line, verb, arg, code,
                 enh, rule, r->verb, r->arg, r->code, r->enh, r->rule);
}
#define EV(f, verb, arg, code, enh, rule) expect_ev(f, verb, arg, code, enh, rule, __LINE__)

/* Sends the lines, each expecting its code and reply start, e.g. {"RCPT ...", "251 2.1.5 U"}. */
struct step {
    const char *line;
    const char *reply; /* the start of the last reply line */
};
static void run(struct fixture *f, const struct step *steps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cmd(f, steps[i].line);
        if (strncmp(last_line(f), steps[i].reply, strlen(steps[i].reply)) != 0)
            fail_msg("\"%s\": want \"%s\", got \"%s\"", steps[i].line, steps[i].reply,
                     last_line(f));
    }
}
#define RUN(f, ...)                                                                                \
    do {                                                                                           \
        const struct step s_[] = {__VA_ARGS__};                                                    \
        run(f, s_, sizeof s_ / sizeof s_[0]);                                                      \
    } while (0)

static struct fixture *fx_mail(bool submission)
{
    struct fixture *f = fx_new(submission);
    RUN(f, {"EHLO client.test", "250 "});
    if (submission)
        RUN(f, {"AUTH PLAIN " BOB_PLAIN, "235 "});
    RUN(f, {submission ? "MAIL FROM:<bob@example.org>" : "MAIL FROM:<a@b.test>", "250 2.1.0"});
    return f;
}

static void test_forward_user(void **state)
{
    (void)state;
    struct fixture *f = fx_mail(false); /* unauthenticated, smtp listener: it is our user */
    RUN(f, {"RCPT TO:<Fwd@Example.org>", "251 2.1.5 User not local; will forward to "
                                         "<fwd@remote.test>"});
    EV(f, "RCPT", "Fwd@Example.org", 251, "2.1.5", "forward");
    RUN(f, {"RCPT TO:<fwd@example.org>", "251 2.1.5"}, /* again: queued once, counted twice */
        {"RCPT TO:<bob@example.org>", "250 2.1.5 Recipient <bob@example.org> OK"},
        {"RCPT TO:<fwd2@example.org>", "452 4.5.3 Too many recipients"}, {"DATA", "354 "},
        {"Subject: x\r\n\r\nhi\r\n.", "250 2.0.0 Ok: queued as ID1"});
    assert_int_equal(f->nforeign, 1);
    assert_string_equal(f->foreign[0], "fwd@remote.test");
    assert_int_equal(f->nboxes, 1);
    assert_string_equal(f->boxes[0], "bob@example.org");
    assert_int_equal(f->commits, 1);
    /* moved= keeps 551 */
    RUN(f, {"MAIL FROM:<a@b.test>", "250 "},
        {"RCPT TO:<dave@example.org>", "551 5.1.6 User not local; please try "
                                       "<dave@elsewhere.test>"},
        {"RCPT TO:<fwd@example.org>", "251 2.1.5"}, {"DATA", "354 "}, {".", "250 "});
    assert_int_equal(f->nboxes, 0); /* a message for the queue only */
    assert_int_equal(f->nforeign, 1);
    fx_free(f);

    /* on submission, authenticated, the same */
    f = fx_mail(true);
    RUN(f, {"RCPT TO:<fwd@example.org>", "251 2.1.5 User not local; will forward to "
                                         "<fwd@remote.test>"});
    EV(f, "RCPT", "fwd@example.org", 251, "2.1.5", "forward");
    fx_free(f);
}

static void test_forward_aliases(void **state)
{
    (void)state;
    struct fixture *f = fx_mail(false);
    RUN(f,
        {"RCPT TO:<one@example.org>", "251 2.1.5 User not local; will forward to "
                                      "<fwd@remote.test>"},
        /* two users forwarding to one address: still one destination */
        {"RCPT TO:<same@example.org>", "251 2.1.5 User not local; will forward to "
                                       "<fwd@remote.test>"},
        /* two destinations: a list, not "will forward to <one address>" */
        {"RCPT TO:<both@example.org>", "250 2.1.5 Recipient <both@example.org> OK"},
        {"DATA", "354 "}, {".", "250 "});
    EV(f, "DATA", "ID1", 250, "2.0.0", "ok");
    assert_int_equal(f->nboxes, 0);
    assert_int_equal(f->nforeign, 2);
    assert_string_equal(f->foreign[0], "fwd@remote.test");
    assert_string_equal(f->foreign[1], "fwd2@remote.test");
    /* a list with a local member and a forwarded one */
    RUN(f, {"MAIL FROM:<a@b.test>", "250 "},
        {"RCPT TO:<mixed@example.org>", "250 2.1.5 Recipient <mixed@example.org> OK"});
    EV(f, "RCPT", "mixed@example.org", 250, "2.1.5", "ok");
    RUN(f, {"DATA", "354 "}, {".", "250 "});
    assert_int_equal(f->nboxes, 1);
    assert_string_equal(f->boxes[0], "bob@example.org");
    assert_int_equal(f->nforeign, 1);
    /* a full mailbox refuses the list: its forward address is not queued either */
    f->full_box = "bob@example.org";
    RUN(f, {"MAIL FROM:<a@b.test>", "250 "}, {"RCPT TO:<mixed@example.org>", "552 5.2.2"},
        {"RCPT TO:<fwd2@example.org>", "251 "}, {"DATA", "354 "}, {".", "250 "});
    assert_int_equal(f->nforeign, 1);
    assert_string_equal(f->foreign[0], "fwd2@remote.test");
    /* SEND needs a terminal, SOML falls back to mail: here, forwarding it */
    RUN(f, {"SEND FROM:<a@b.test>", "250 "},
        {"RCPT TO:<fwd@example.org>", "450 4.2.1 <fwd@example.org> is not accepting terminal"},
        {"RSET", "250 "}, {"SOML FROM:<a@b.test>", "250 "}, {"RCPT TO:<fwd@example.org>", "251 "});
    fx_free(f);
}

static void test_vrfy_forward(void **state)
{
    (void)state;
    struct fixture *f = fx_new(false);
    RUN(f, {"EHLO client.test", "250 "},
        {"VRFY fwd@example.org", "251 2.1.5 User not local; will forward to <fwd@remote.test>"},
        {"VRFY <fwd2@example.org>", "251 2.1.5 User not local; will forward to "
                                    "<fwd2@remote.test>"},
        {"VRFY dave@example.org", "551 5.1.6"}, {"VRFY bob@example.org", "250 2.1.5 <bob@"});
    f->env.vrfy = SMTP_DISCLOSE_AUTHENTICATED; /* policy still decides what is shown */
    RUN(f, {"VRFY fwd@example.org", "252 2.5.2"}, {"AUTH PLAIN " BOB_PLAIN, "235 "},
        {"VRFY fwd@example.org", "251 2.1.5"});
    f->env.vrfy = SMTP_DISCLOSE_NONE;
    RUN(f, {"VRFY fwd@example.org", "252 2.5.2"});
    fx_free(f);
}

static void test_relay_domain(void **state)
{
    (void)state;
    struct fixture *f = fx_mail(false); /* anyone, on the smtp listener */
    RUN(f, {"RCPT TO:<Someone@Customer.TEST>", "250 2.1.5 Recipient <Someone@Customer.TEST> "
                                               "OK, queued for delivery"});
    EV(f, "RCPT", "Someone@Customer.TEST", 250, "2.1.5", "relay_domain");
    assert_string_equal(f->relay_asked, "customer.test");    /* the hook sees it lowercased */
    RUN(f, {"RCPT TO:<Someone@customer.test>", "250 2.1.5"}, /* the same address: queued once */
        {"RCPT TO:<x@stranger.test>", "550 5.7.1 <x@stranger.test>: relaying denied"});
    EV(f, "RCPT", "x@stranger.test", 550, "5.7.1", "relay");
    RUN(f, {"RCPT TO:<x%stranger.test@customer.test>", "550 5.7.1"}, /* no tricks through it */
        {"RCPT TO:<x@[192.0.2.7]>", "550 5.7.1"}, {"RCPT TO:<y@other.test>", "250 2.1.5"},
        {"RCPT TO:<z@other.test>", "452 4.5.3"}, /* it counts toward max_recipients */
        {"DATA", "354 "}, {".", "250 "});
    assert_int_equal(f->nboxes, 0);
    assert_int_equal(f->nforeign, 2);
    assert_string_equal(f->foreign[0], "Someone@Customer.TEST");
    assert_string_equal(f->foreign[1], "y@other.test");
    /* SEND cannot reach a terminal through the queue */
    RUN(f, {"SEND FROM:<a@b.test>", "250 "}, {"RCPT TO:<x@customer.test>", "550 5.7.1"});
    /* without relay domains, foreign stays foreign */
    f->no_relay = true;
    RUN(f, {"RSET", "250 "}, {"MAIL FROM:<a@b.test>", "250 "},
        {"RCPT TO:<x@customer.test>", "550 5.7.1"});
    fx_free(f);
    f = fx_mail(true); /* authenticated on submission: still the relay domain's rule */
    RUN(f, {"RCPT TO:<x@customer.test>", "250 2.1.5"});
    EV(f, "RCPT", "x@customer.test", 250, "2.1.5", "relay_domain");
    RUN(f, {"RCPT TO:<x@stranger.test>", "250 2.1.5"});
    EV(f, "RCPT", "x@stranger.test", 250, "2.1.5", "relay_authenticated");
    fx_free(f);
}

static void test_etrn_syntax(void **state)
{
    (void)state;
    static const struct {
        const char *line, *reply, *arg, *rule;
        bool called;
    } cases[] = {
        {"ETRN", "501 5.5.4 Syntax: ETRN node", "", "syntax", false},
        {"ETRN bad..dom", "501 5.5.2", "bad..dom", "syntax", false},
        {"ETRN @", "501 5.5.2", "@", "syntax", false},
        {"ETRN #", "501 5.5.2", "#", "syntax", false},
        {"ETRN #q\xc3\xa9", "501 5.5.2", "#q\xc3\xa9", "syntax", false},
        {"ETRN customer.test x", "501 5.5.2", "customer.test x", "syntax", false},
        {"ETRN [192.0.2.1]", "501 5.5.2", "[192.0.2.1]", "syntax", false},
        {"ETRN #q1", "459 4.5.4 Node #q1 not allowed: tern has no named queues", "#q1",
         "named_queue", false},
        {"ETRN stranger.test", "459 4.7.1 Node stranger.test not allowed", "stranger.test",
         "not_relay_domain", false},
        {"ETRN example.org", "459 4.7.1", "example.org", "not_relay_domain", false},
        {"ETRN Customer.Test", "250 2.0.0 OK, queuing for node customer.test started",
         "Customer.Test", "ok", true},
        {"etrn @other.test", "250 2.0.0 OK, queuing for node other.test started", "@other.test",
         "ok", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fixture *f = fx_new(false);
        RUN(f, {"EHLO client.test", "250 "}, {cases[i].line, cases[i].reply});
        int code = atoi(cases[i].reply);
        const char *enh = cases[i].reply + 4;
        char e[8];
        snprintf(e, sizeof e, "%.5s", enh);
        EV(f, "ETRN", cases[i].arg, code, e, cases[i].rule);
        assert_int_equal(f->etrn_calls, cases[i].called);
        fx_free(f);
    }
    struct fixture *f = fx_new(false);
    RUN(f, {"ETRN customer.test", "503 Send HELO or EHLO first"}, {"HELO c.test", "250 "},
        {"ETRN @Customer.test", "250 OK, queuing"});
    assert_string_equal(f->etrn_node, "customer.test");
    assert_true(f->etrn_sub);
    RUN(f, {"ETRN other.test", "250 "});
    assert_false(f->etrn_sub);
    RUN(f, {"MAIL FROM:<a@b.test>", "250 "}, {"ETRN customer.test", "503 ETRN inside a mail"});
    assert_int_equal(f->etrn_calls, 2);
    fx_free(f);
}

static void test_etrn_listeners(void **state)
{
    (void)state;
    struct fixture *f = fx_new(false);
    RUN(f, {"EHLO client.test", "250 "});
    assert_non_null(strstr(f->out, "250-ETRN\r\n"));
    fx_free(f);
    /* submission never offers it, nor takes it */
    f = fx_new(true);
    RUN(f, {"EHLO client.test", "250 "});
    assert_null(strstr(f->out, "ETRN"));
    RUN(f, {"ETRN customer.test", "502 5.5.1 ETRN is not available"});
    EV(f, "ETRN", "customer.test", 502, "5.5.1", "not_available");
    fx_free(f);
    /* nor a listener without a queue */
    f = fx_new(false);
    f->env.etrn = NULL;
    RUN(f, {"EHLO client.test", "250 "});
    assert_null(strstr(f->out, "ETRN"));
    RUN(f, {"ETRN customer.test", "502 5.5.1"});
    assert_int_equal(f->etrn_calls, 0);
    fx_free(f);
}

static void test_etrn_results(void **state)
{
    (void)state;
    static const struct {
        int code;
        const char *text, *reply, *rule;
    } cases[] = {
        {250, NULL, "250 2.0.0 OK, queuing for node customer.test started", "ok"},
        {251, NULL, "251 2.0.0 OK, no messages waiting for node customer.test", "ok"},
        {252, NULL, "252 2.0.0 OK, pending messages for node customer.test started", "ok"},
        {253, "OK, 7 pending messages for node customer.test started",
         "253 2.0.0 OK, 7 pending messages for node customer.test started", "ok"},
        {458, NULL, "458 4.3.0 Unable to queue messages for node customer.test", "queue"},
        {459, "Node customer.test not allowed: on hold",
         "459 4.7.1 Node customer.test not allowed: on hold", "queue"},
        {550, NULL, "458 4.3.0 Unable to queue messages for node customer.test", "queue"},
        {250, "started\r\n250 injected", "250 2.0.0 started??250 injected", "ok"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fixture *f = fx_new(false);
        f->etrn_code = cases[i].code;
        f->etrn_text = cases[i].text;
        RUN(f, {"EHLO client.test", "250 "}, {"ETRN customer.test", cases[i].reply});
        assert_string_equal(last_line(f), cases[i].reply);
        char e[8];
        snprintf(e, sizeof e, "%.5s", cases[i].reply + 4);
        EV(f, "ETRN", "customer.test", atoi(cases[i].reply), e, cases[i].rule);
        fx_free(f);
    }
}

static void test_etrn_junk(void **state)
{
    (void)state;
    struct fixture *f = fx_new(false);
    f->env.max_junk_commands = 3;
    RUN(f, {"EHLO client.test", "250 "}, {"ETRN customer.test", "250 "},
        {"ETRN stranger.test", "459 "}, {"NOOP", "250 "},
        {"ETRN customer.test", "421 4.7.0 mx.example.org Too many commands"});
    assert_int_equal(f->nev - f->mark, 2); /* the ETRN's own answer, then the limit */
    assert_true(f->ev[f->nev - 1].limit);
    assert_string_equal(f->ev[f->nev - 1].verb, "junk_commands");
    assert_int_equal(f->etrn_calls, 1);
    assert_int_equal(smtp_session_wants_close(f->s), SMTP_CLOSE_AFTER_OUTPUT);
    fx_free(f);
}

static void test_turn_refusals(void **state)
{
    (void)state;
    struct fixture *f = fx_new(false);
    RUN(f, {"EHLO client.test", "250 "},
        {"TURN", "502 5.7.0 TURN needs AUTH: authenticate first (RFC 2645)"});
    EV(f, "TURN", "", 502, "5.7.0", "auth_required");
    RUN(f, {"TURN please", "501 5.5.4 Syntax: TURN (no parameters)"},
        {"AUTH PLAIN " BOB_PLAIN, "235 "},
        {"TURN", "550 5.7.1 No relay domain to TURN for bob@example.org"});
    EV(f, "TURN", "", 550, "5.7.1", "not_entitled");
    fx_free(f);

    f = fx_new(false);
    RUN(f, {"EHLO client.test", "250 "}, {"AUTH PLAIN " ALICE_PLAIN, "235 "},
        {"MAIL FROM:<alice@example.org>", "250 "},
        {"TURN", "503 5.5.1 TURN inside a mail transaction"});
    EV(f, "TURN", "", 503, "5.5.1", "sequence");
    /* entitled on paper, but none of her domains is a relay domain now */
    f->no_relay = true;
    RUN(f, {"RSET", "250 "}, {"TURN", "550 5.7.1"});
    f->env.relay_domain = NULL;
    RUN(f, {"TURN", "550 5.7.1"});
    assert_int_equal(f->turns, 0);
    fx_free(f);

    f = fx_new(false);
    f->env.max_junk_commands = 2;
    RUN(f, {"EHLO client.test", "250 "}, {"TURN", "502 "}, {"TURN", "502 "}, {"TURN", "421 4.7.0"});
    fx_free(f);
}

static void test_turn(void **state)
{
    (void)state;
    struct fixture *f = fx_new(false);
    f->turn_hold = true;
    RUN(f, {"EHLO client.test", "250 "}, {"AUTH PLAIN " ALICE_PLAIN, "235 "});
    /* the peer's next bytes are its greeting as the server: the core must leave them */
    const char *in = "TURN\r\n220 customer.test ESMTP\r\n";
    f->mark = f->nev;
    size_t before = f->outlen;
    size_t used = smtp_session_feed(f->s, in, strlen(in));
    assert_int_equal(used, strlen("TURN\r\n"));
    serve(f);
    assert_string_equal(f->out + before,
                        "250 2.0.0 OK, reversing roles for customer.test, other.test\r\n");
    EV(f, "TURN", "customer.test,other.test", 250, "2.0.0", "ok");
    assert_int_equal(f->turns, 1);
    assert_int_equal(f->nturn, 2); /* gone.test is no relay domain (any more) */
    assert_string_equal(f->turn[0], "customer.test");
    assert_string_equal(f->turn[1], "other.test");
    /* nothing more is read, nothing more is said, whatever happens */
    assert_int_equal(smtp_session_feed(f->s, in + used, strlen(in) - used), 0);
    smtp_session_timeout(f->s);
    smtp_session_shutdown(f->s);
    const char *o;
    assert_int_equal(smtp_session_pending_output(f->s, &o), 0);
    assert_non_null(smtp_session_request(f->s));
    assert_int_equal(smtp_session_wants_close(f->s), SMTP_OPEN);
    /* the caller is done: the session only wants to close, silently */
    struct smtp_result r = {.ok = true};
    smtp_session_resume(f->s, &r);
    assert_null(smtp_session_request(f->s));
    assert_int_equal(smtp_session_wants_close(f->s), SMTP_CLOSE_AFTER_OUTPUT);
    assert_int_equal(smtp_session_pending_output(f->s, &o), 0);
    assert_int_equal(smtp_session_feed(f->s, "QUIT\r\n", 6), 0);
    fx_free(f);

    /* the caller could not take the connection over: the peer hears why, then it closes */
    f = fx_new(false);
    f->turn_fail = true;
    RUN(f, {"EHLO client.test", "250 "}, {"AUTH PLAIN " ALICE_PLAIN, "235 "},
        {"TURN", "421 4.3.0 Cannot reverse roles now, closing connection"});
    assert_non_null(strstr(f->out, "250 2.0.0 OK, reversing roles for customer.test, "
                                   "other.test\r\n421 "));
    assert_int_equal(smtp_session_wants_close(f->s), SMTP_CLOSE_AFTER_OUTPUT);
    fx_free(f);
}

static void test_help(void **state)
{
    (void)state;
    struct fixture *f = fx_new(false);
    RUN(f, {"EHLO client.test", "250 "}, {"HELP ETRN", "214 2.0.0 ETRN <domain>"},
        {"HELP turn", "214 2.0.0 TURN: after AUTH"}, {"HELP", "214 "});
    assert_non_null(strstr(f->out, "SAML ETRN TURN"));
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_user),  cmocka_unit_test(test_forward_aliases),
        cmocka_unit_test(test_vrfy_forward),  cmocka_unit_test(test_relay_domain),
        cmocka_unit_test(test_etrn_syntax),   cmocka_unit_test(test_etrn_listeners),
        cmocka_unit_test(test_etrn_results),  cmocka_unit_test(test_etrn_junk),
        cmocka_unit_test(test_turn_refusals), cmocka_unit_test(test_turn),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

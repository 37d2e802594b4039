/* Unit tests of the SMTP session core's shared-mailbox behaviour: who may send as a shared
 * mailbox (MAIL FROM, check_from), the Sender: field added where the header section ends (DATA
 * and BDAT, however the input is split), the quota check at RCPT, and VRFY/EXPN of a shared
 * mailbox. The store is simulated in memory as in test_session.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

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
    int commits, aborts, begins, appends;
    const char *full; /* the mailbox mailbox_full says is full, or NULL */
    char last_mailboxes[8][TABLES_ADDR_MAX + 1];
    size_t nlast;
};

/* base64 of "\0user@example.org\0pw" */
#define ALICE_PLAIN "AGFsaWNlQGV4YW1wbGUub3JnAHB3"
#define BOB_PLAIN "AGJvYkBleGFtcGxlLm9yZwBwdw=="
#define CAROL_PLAIN "AGNhcm9sQGV4YW1wbGUub3JnAHB3"
#define ALICE_SENDER "Sender: alice@example.org\r\n"

static bool mailbox_full(void *ctx, const char *mailbox)
{
    const struct fixture *f = ctx;
    return f->full && strcmp(f->full, mailbox) == 0;
}

/* Set by one test: also an alias sales@example.org -> team (a shared mailbox). */
static bool fx_sales_alias;

/* submission: the submission listener (MAIL needs AUTH); sender_header: add Sender:. */
static struct fixture *fx_new(bool submission, bool sender_header)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    char err[1024];
    f->t = tables_new();
    assert_int_equal(tables_add_domain(f->t, "example.org", err, sizeof err), 0);
    const char *users[] = {"alice@example.org", "bob@example.org", "carol@example.org"};
    for (int i = 0; i < 3; i++) {
        struct tables_user u;
        memset(&u, 0, sizeof u);
        snprintf(u.addr, sizeof u.addr, "%s", users[i]);
        assert_int_equal(tables_add_user(f->t, &u, err, sizeof err), 0);
    }
    const char *devs[] = {"bob"};
    assert_int_equal(tables_add_alias(f->t, "devs@example.org", devs, 1, err, sizeof err), 0);
    const char *sales[] = {"team"};
    if (fx_sales_alias)
        assert_int_equal(tables_add_alias(f->t, "sales@example.org", sales, 1, err, sizeof err), 0);
    const char *pm[] = {"alice@example.org"};
    assert_int_equal(tables_add_alias(f->t, "postmaster", pm, 1, err, sizeof err), 0);
    const char *team[] = {"alice", "devs"};
    assert_int_equal(
        tables_add_shared(f->t, "mailboxes:1", "team@example.org", team, 2, 0, err, sizeof err), 0);
    if (tables_finish(f->t, err, sizeof err) != 0)
        fail_msg("tables_finish: %s", err);
    f->env = (struct smtp_env){
        .hostname = "mx.example.org",
        .peer_ip = "192.0.2.1",
        .submission = submission,
        .max_message_size = 1 << 20,
        .max_recipients = 10,
        .max_bad_commands = 20,
        .max_junk_commands = 1000,
        .vrfy = SMTP_DISCLOSE_ALL,
        .expn = SMTP_DISCLOSE_ALL,
        .tables = f->t,
        .auth_mechs = "PLAIN",
        .auth_cleartext_ok = true,
        .sender_header = sender_header,
        .auth_mech_ok = sfx_mech_plain,
        .mailbox_full = mailbox_full,
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

/* A fake SASL: PLAIN "authzid\0user\0pw" for any real (not shared) user, password "pw". */
static void fake_auth(struct fixture *f, const struct smtp_request *q, struct smtp_result *r)
{
    if (q->auth_cancel)
        return;
    if (q->mech && !q->auth_data) {
        r->more = true; /* empty challenge */
        return;
    }
    unsigned char raw[512] = "";
    size_t len = strlen(q->auth_data);
    int n = len < 600 ? EVP_DecodeBlock(raw, (const unsigned char *)q->auth_data, (int)len) : 0;
    const char *buf = (const char *)raw, *end = buf + (n > 0 ? n : 0);
    const char *user = buf + strlen(buf) + 1; /* after the authzid */
    const char *pw = user < end ? user + strlen(user) + 1 : NULL;
    const struct tables_user *u = pw && pw < end ? tables_user(f->t, user) : NULL;
    if (u && !u->shared && strcmp(pw, "pw") == 0) {
        snprintf(r->user, sizeof r->user, "%s", u->addr);
        return;
    }
    r->ok = false;
    r->code = 535;
    snprintf(r->enh, sizeof r->enh, "5.7.8");
    snprintf(r->text, sizeof r->text, "Authentication credentials invalid");
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
            f->appends = 0;
            snprintf(r.id, sizeof r.id, "ID%d", f->begins);
            f->nlast = q->txn->nmailboxes < 8 ? q->txn->nmailboxes : 8;
            for (size_t i = 0; i < f->nlast; i++)
                memcpy(f->last_mailboxes[i], q->txn->mailboxes[i], TABLES_ADDR_MAX + 1);
            break;
        case SMTP_REQ_STORE_APPEND:
            f->appends++;
            assert_true(f->msglen + q->len < sizeof f->msg);
            memcpy(f->msg + f->msglen, q->data, q->len);
            f->msglen += q->len;
            f->msg[f->msglen] = '\0';
            break;
        case SMTP_REQ_STORE_COMMIT:
            f->commits++;
            break;
        case SMTP_REQ_STORE_ABORT:
            f->aborts++;
            break;
        case SMTP_REQ_STARTTLS:
        case SMTP_REQ_TURN: /* never asked for here */
        case SMTP_REQ_WATCH:
            break;
        case SMTP_REQ_AUTH:
            fake_auth(f, q, &r);
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
    assert_int_equal(sfx_feed(f->s, data, len, serve_cb, f), len); /* everything was taken */
}

static int send_bytes(struct fixture *f, const char *data, size_t len)
{
    size_t before = f->outlen;
    feed(f, data, len);
    return sfx_last_code(f->out, f->outlen, before);
}

static int send_text(struct fixture *f, const char *text)
{
    return send_bytes(f, text, strlen(text));
}

/* Feeds data one octet at a time; the code of the last reply line. */
static int trickle(struct fixture *f, const char *data, size_t len)
{
    size_t before = f->outlen;
    for (size_t i = 0; i < len; i++)
        feed(f, data + i, 1);
    return sfx_last_code(f->out, f->outlen, before);
}

/* Sends one command line and returns the code of the reply's last line (0 if none). */
static int cmd(struct fixture *f, const char *line)
{
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%s\r\n", line);
    return send_bytes(f, buf, (size_t)n);
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

/* Sends line; the last line of its reply must be want, exactly. */
static void expect(struct fixture *f, const char *line, const char *want)
{
    int code = cmd(f, line);
    if (code != atoi(want) || strcmp(last_line(f), want) != 0)
        fail_msg("\"%s\": want \"%s\", got \"%s\"", line, want, last_line(f));
}

/* A session after EHLO, authenticated as plain's user unless plain is NULL. */
static struct fixture *fx_session(bool submission, bool sender_header, const char *plain)
{
    struct fixture *f = fx_new(submission, sender_header);
    assert_int_equal(cmd(f, "EHLO client.test"), 250);
    if (plain) {
        char line[128];
        snprintf(line, sizeof line, "AUTH PLAIN %s", plain);
        assert_int_equal(cmd(f, line), 235);
    }
    return f;
}

/* The length of the Return-Path/Received block the core writes ahead of the message. */
static size_t trace_len(const struct fixture *f)
{
    assert_true(strncmp(f->msg, "Return-Path: <", 14) == 0);
    const char *end = strstr(f->msg, " +0000\r\n");
    assert_non_null(end);
    return (size_t)(end - f->msg) + 8;
}

/* The message stored after the trace block is exactly want. */
static void assert_stored(const struct fixture *f, const char *want)
{
    size_t tl = trace_len(f), len = strlen(want);
    if (f->msglen != tl + len || memcmp(f->msg + tl, want, len) != 0)
        fail_msg("stored message differs:\n--- want\n%s\n--- got\n%s", want, f->msg + tl);
}

/* msg with field inserted before the empty line that ends its header (or at its end when it
 * has none); a malloc'd string. */
static char *with_field(const char *msg, const char *field)
{
    size_t ml = strlen(msg), fl = strlen(field);
    char *r = malloc(ml + fl + 1);
    assert_non_null(r);
    const char *e = strstr(msg, "\r\n\r\n");
    size_t at = e ? (size_t)(e - msg) + 2 : ml;
    memcpy(r, msg, at);
    memcpy(r + at, field, fl);
    memcpy(r + at + fl, msg + at, ml - at + 1);
    return r;
}

/* MAIL FROM:<from>, RCPT TO:<bob@example.org>. */
static void envelope(struct fixture *f, const char *from)
{
    char line[256];
    snprintf(line, sizeof line, "MAIL FROM:<%s>", from);
    assert_int_equal(cmd(f, line), 250);
    assert_int_equal(cmd(f, "RCPT TO:<bob@example.org>"), 250);
}

/* The stored message is plain with the Sender: field of alice added (see with_field). */
static void assert_stored_sender(const struct fixture *f, const char *plain)
{
    char *want = with_field(plain, ALICE_SENDER);
    assert_stored(f, want);
    free(want);
}

/* MAIL FROM:<from>, RCPT TO:<bob@example.org>, DATA, the text (already dot-stuffed, ending in
 * CRLF) and the final dot; returns the code of the reply to the data. */
static int data_msg(struct fixture *f, const char *from, const char *text)
{
    envelope(f, from);
    assert_int_equal(cmd(f, "DATA"), 354);
    send_text(f, text);
    return send_text(f, ".\r\n");
}

/* MAIL FROM team, RCPT bob, and m[0..len) as BDAT chunks cut at cuts[0..ncuts) (ascending,
 * inside (0, len)). */
static void bdat_msg(struct fixture *f, const char *m, size_t len, const size_t *cuts, size_t ncuts)
{
    envelope(f, "team@example.org");
    char *buf = malloc(len + 64);
    assert_non_null(buf);
    size_t from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        int h = snprintf(buf, 64, "BDAT %zu%s\r\n", to - from, i < ncuts ? "" : " LAST");
        memcpy(buf + h, m + from, to - from);
        assert_int_equal(send_bytes(f, buf, (size_t)h + to - from), 250);
        if (i == ncuts)
            assert_non_null(strstr(last_line(f), "2.0.0 Ok: queued as"));
        else
            assert_non_null(strstr(last_line(f), "octets received"));
        from = to;
    }
    free(buf);
}

static const char plain_msg[] = "From: Team <team@example.org>\r\nSubject: hello\r\n\r\n"
                                "Body line\r\nSender: in the body does not count\r\n";

static void test_mail_from_shared(void **state)
{
    (void)state;
    static const struct {
        bool submission;
        const char *user; /* AUTH PLAIN blob, NULL: none */
        const char *from, *want;
    } cases[] = {
#define OK(a) "250 2.1.0 Sender <" a "> OK"
#define NOT_OWNED(u) "553 5.7.1 Sender address not owned by user " u
        {true, ALICE_PLAIN, "team@example.org", OK("team@example.org")},
        {true, ALICE_PLAIN, "TEAM@Example.ORG", OK("TEAM@Example.ORG")}, /* any case */
        {true, ALICE_PLAIN, "devs@example.org", NOT_OWNED("alice@example.org")},
        {true, BOB_PLAIN, "team@example.org", OK("team@example.org")}, /* a member via devs */
        {true, BOB_PLAIN, "Team@EXAMPLE.org", OK("Team@EXAMPLE.org")},
        {true, CAROL_PLAIN, "team@example.org", NOT_OWNED("carol@example.org")},
        {true, CAROL_PLAIN, "TEAM@EXAMPLE.ORG", NOT_OWNED("carol@example.org")},
        {true, CAROL_PLAIN, "carol@example.org", OK("carol@example.org")},
        /* the smtp listener without AUTH: no send-as check; submission wants AUTH first */
        {false, NULL, "team@example.org", OK("team@example.org")},
        {true, NULL, "team@example.org", "530 5.7.0 Authentication required"},
#undef OK
#undef NOT_OWNED
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fixture *f = fx_session(cases[i].submission, false, cases[i].user);
        char line[128];
        snprintf(line, sizeof line, "MAIL FROM:<%s>", cases[i].from);
        expect(f, line, cases[i].want);
        if (atoi(cases[i].want) == 250)
            assert_int_equal(cmd(f, "RCPT TO:<bob@example.org>"), 250);
        fx_free(f);
    }
}

static void test_check_from(void **state)
{
    (void)state;
    const char *text = "From: <team@example.org>\r\nSubject: c\r\n\r\nhi\r\n";
    const char *members[] = {ALICE_PLAIN, BOB_PLAIN}; /* bob: through devs */
    struct fixture *f;
    for (int i = 0; i < 2; i++) {
        f = fx_session(true, false, members[i]);
        f->env.check_from = true;
        assert_int_equal(data_msg(f, i ? "team@example.org" : "alice@example.org", text), 250);
        assert_string_equal(last_line(f), "250 2.0.0 Ok: queued as ID1");
        assert_stored(f, text);
        fx_free(f);
    }
    f = fx_session(true, false, CAROL_PLAIN);
    f->env.check_from = true;
    assert_int_equal(data_msg(f, "carol@example.org", text), 553);
    assert_string_equal(last_line(f), "553 5.7.1 From: header names an address this user does "
                                      "not own (check_from)");
    assert_int_equal(f->commits, 0);
    assert_int_equal(f->aborts, 1);
    /* the session goes on */
    assert_int_equal(data_msg(f, "carol@example.org", "From: <carol@example.org>\r\n\r\nx\r\n"),
                     250);
    fx_free(f);
}

static void test_sender_data(void **state)
{
    (void)state;
    struct fixture *f = fx_session(true, true, ALICE_PLAIN);
    assert_int_equal(data_msg(f, "team@example.org", plain_msg), 250);
    assert_string_equal(last_line(f), "250 2.0.0 Ok: queued as ID1");
    const char *trace = "Return-Path: <team@example.org>\r\n"
                        "Received: from client.test ([192.0.2.1])\r\n"
                        "\tby mx.example.org (tern) with ESMTPA id ID1\r\n"
                        "\tfor <bob@example.org>;\r\n"
                        "\tThu, 01 Jan 1970 00:00:00 +0000\r\n";
    assert_int_equal(trace_len(f), strlen(trace));
    assert_memory_equal(f->msg, trace, strlen(trace));
    const char *want = "From: Team <team@example.org>\r\n"
                       "Subject: hello\r\n" ALICE_SENDER "\r\n"
                       "Body line\r\n"
                       "Sender: in the body does not count\r\n";
    assert_stored(f, want);
    /* a second message in the same session gets its own, once */
    assert_int_equal(data_msg(f, "team@example.org", plain_msg), 250);
    assert_stored(f, want);
    fx_free(f);
}

static void test_sender_bdat(void **state)
{
    (void)state;
    char *want = with_field(plain_msg, ALICE_SENDER);
    size_t len = strlen(plain_msg);
    struct fixture *f = fx_session(true, true, ALICE_PLAIN);
    /* one chunk, then two cut at every offset (so "\r\n\r\n" is split every way) */
    for (size_t k = 0; k < len; k++) {
        bdat_msg(f, plain_msg, len, &k, k ? 1 : 0);
        assert_stored(f, want);
    }
    /* three chunks, both cuts in or next to the boundary */
    size_t b = (size_t)(strstr(plain_msg, "\r\n\r\n") - plain_msg);
    for (size_t k1 = b - 1; k1 <= b + 5; k1++)
        for (size_t k2 = k1 + 1; k2 <= b + 5; k2++) {
            size_t cuts[2] = {k1, k2};
            bdat_msg(f, plain_msg, len, cuts, 2);
            assert_stored(f, want);
        }
    size_t cuts[sizeof plain_msg]; /* one octet per chunk */
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;
    bdat_msg(f, plain_msg, len, cuts, len - 1);
    assert_stored(f, want);
    assert_int_equal(f->aborts, 0);
    fx_free(f);
    free(want);
}

/* 100 header lines of 900 octets (90000 > SMTP_CHUNK) with From: team among them, then a body
 * with dot-stuffed lines: the text as sent and as stored (malloc'd). */
static void long_message(char **wire, char **plain)
{
    char *h = malloc(100 * 900 + 64), *p = h;
    assert_non_null(h);
    for (int i = 0; i < 100; i++) {
        p += sprintf(p, "X-Long-%03d: ", i);
        memset(p, 'a' + i % 26, 886);
        p += sprintf(p + 886, "\r\n%s", i == 50 ? "From: team@example.org\r\n" : "") + 886;
    }
    assert_true(asprintf(wire, "%s\r\n..dot\r\nbody\r\n...\r\n", h) > 0);
    assert_true(asprintf(plain, "%s\r\n.dot\r\nbody\r\n..\r\n", h) > 0);
    free(h);
}

static void test_sender_long_header(void **state)
{
    (void)state;
    char *wire, *plain;
    long_message(&wire, &plain);
    char *want = with_field(plain, ALICE_SENDER);
    struct fixture *f = fx_session(true, true, ALICE_PLAIN);
    assert_int_equal(data_msg(f, "team@example.org", wire), 250);
    assert_true(f->appends >= 2); /* the header did not fit one chunk */
    assert_stored(f, want);
    assert_true(strstr(f->msg, ALICE_SENDER) - f->msg > 65536);
    /* the same by one BDAT chunk, and in chunks of 30000 */
    bdat_msg(f, plain, strlen(plain), NULL, 0);
    assert_true(f->appends >= 2);
    assert_stored(f, want);
    size_t cuts[3] = {30000, 60000, 90000};
    bdat_msg(f, plain, strlen(plain), cuts, 3);
    assert_stored(f, want);
    /* MAIL FROM alice, From: team (in the long header) */
    assert_int_equal(data_msg(f, "alice@example.org", wire), 250);
    assert_stored(f, want);
    fx_free(f);
    free(want), free(wire), free(plain);
}

static void test_sender_when(void **state)
{
    (void)state;
    static const struct {
        const char *user; /* AUTH PLAIN blob, NULL: none (smtp listener) */
        bool sender_header;
        const char *from, *text; /* MAIL FROM, message */
        bool added;
    } cases[] = {
#define FROM_TEAM "From: team@example.org\r\n"
        {ALICE_PLAIN, true, "alice@example.org", FROM_TEAM "\r\nx\r\n", true}, /* From: only */
        {ALICE_PLAIN, true, "alice@example.org",
         "From: <alice@example.org>,\r\n team@example.org"
         "\r\n\r\nx\r\n",
         true},
        {ALICE_PLAIN, true, "team@example.org", "From: alice@example.org\r\n\r\nx\r\n", true},
        {ALICE_PLAIN, true, "team@example.org", "Subject: s\r\n\r\nx\r\n", true}, /* no From: */
        /* its own Sender:, in any case */
        {ALICE_PLAIN, true, "team@example.org", FROM_TEAM "Sender: <alice@example.org>\r\n\r\n",
         false},
        {ALICE_PLAIN, true, "team@example.org", "sender: alice@example.org\r\n\r\nx\r\n", false},
        {ALICE_PLAIN, true, "alice@example.org", FROM_TEAM "SENDER: x@y.test\r\n\r\n", false},
        /* neither the envelope nor From: is shared */
        {ALICE_PLAIN, true, "alice@example.org", "From: alice@example.org\r\n\r\nx\r\n", false},
        {ALICE_PLAIN, true, "postmaster@example.org", "From: devs@example.org\r\n\r\nx\r\n", false},
        {ALICE_PLAIN, true, "", "Subject: bounce\r\n\r\nx\r\n", false},
        {ALICE_PLAIN, false, "team@example.org", FROM_TEAM "\r\nx\r\n", false}, /* option off */
        {NULL, true, "team@example.org", FROM_TEAM "\r\nx\r\n", false},         /* no AUTH */
        {BOB_PLAIN, true, "team@example.org", FROM_TEAM "\r\nx\r\n", true},     /* through devs */
#undef FROM_TEAM
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fixture *f =
            fx_session(cases[i].user != NULL, cases[i].sender_header, cases[i].user);
        assert_int_equal(data_msg(f, cases[i].from, cases[i].text), 250);
        bool bob = cases[i].user && strcmp(cases[i].user, BOB_PLAIN) == 0;
        const char *who = bob ? "Sender: bob@example.org\r\n" : ALICE_SENDER;
        char *want = cases[i].added ? with_field(cases[i].text, who) : strdup(cases[i].text);
        if (strcmp(f->msg + trace_len(f), want) != 0)
            fail_msg("case %zu: want\n%s\ngot\n%s", i, want, f->msg + trace_len(f));
        free(want);
        fx_free(f);
    }
}

static void test_sender_all_header(void **state)
{
    (void)state;
    const char *text = "From: team@example.org\r\nSubject: no body\r\n";
    char *want = with_field(text, ALICE_SENDER);
    struct fixture *f = fx_session(true, true, ALICE_PLAIN);
    assert_int_equal(data_msg(f, "team@example.org", text), 250);
    assert_stored(f, want);
    /* BDAT: one chunk, a cut after the last CRLF, and an empty LAST chunk */
    size_t len = strlen(text), cut = len - 2;
    bdat_msg(f, text, len, NULL, 0);
    assert_stored(f, want);
    bdat_msg(f, text, len, &cut, 1);
    assert_stored(f, want);
    envelope(f, "team@example.org");
    assert_int_equal(send_bytes(f, "BDAT 42\r\n", 9), 0);
    assert_int_equal(send_text(f, text), 250);
    assert_int_equal(send_text(f, "BDAT 0 LAST\r\n"), 250);
    assert_non_null(strstr(last_line(f), "queued as"));
    assert_stored(f, want);
    /* an empty message: the field is all there is */
    assert_int_equal(data_msg(f, "team@example.org", ""), 250);
    assert_stored(f, ALICE_SENDER);
    fx_free(f);
    free(want);
}

static void test_sender_bytewise(void **state)
{
    (void)state;
    const char *wire =
        "From: Team <team@example.org>\r\nSubject: bytes\r\n\r\n..dot\r\nend\r\n.\r\n";
    const char *plain = "From: Team <team@example.org>\r\nSubject: bytes\r\n\r\n.dot\r\nend\r\n";
    struct fixture *f = fx_session(true, true, ALICE_PLAIN);
    envelope(f, "team@example.org");
    assert_int_equal(cmd(f, "DATA"), 354);
    send_text(f, wire);
    assert_string_equal(last_line(f), "250 2.0.0 Ok: queued as ID1");
    assert_stored_sender(f, plain);
    char *at_once = strdup(f->msg + trace_len(f));
    envelope(f, "team@example.org");
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(trickle(f, wire, strlen(wire)), 250);
    assert_stored(f, at_once);
    /* the whole transaction pipelined in one write, and then byte by byte */
    char batch[512];
    int n =
        snprintf(batch, sizeof batch,
                 "MAIL FROM:<team@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n%s", wire);
    assert_int_equal(send_bytes(f, batch, (size_t)n), 250);
    assert_stored(f, at_once);
    assert_int_equal(trickle(f, batch, (size_t)n), 250);
    assert_stored(f, at_once);
    /* BDAT, command and chunk fed one octet at a time */
    envelope(f, "team@example.org");
    n = snprintf(batch, sizeof batch, "BDAT %zu LAST\r\n%s", strlen(plain), plain);
    assert_int_equal(trickle(f, batch, (size_t)n), 250);
    assert_stored(f, at_once);
    assert_int_equal(f->commits, 5);
    fx_free(f);
    free(at_once);
}

/* The end of the header lands at every offset around where the first chunk fills up (the
 * reserve kept for the field, and the chunk's very end), by DATA and by one BDAT chunk. */
static void test_sender_chunk_edges(void **state)
{
    (void)state;
    static char plain[70000];
    struct fixture *f = fx_session(true, true, ALICE_PLAIN);
    assert_int_equal(data_msg(f, "team@example.org", "x\r\n"), 250);
    size_t tl = trace_len(f); /* with id ID1: longer ids make it longer */
    for (size_t target = 65536 - 460; target <= 65536 + 40; target++)
        for (int bdat = 0; bdat < 2; bdat++) {
            f->outlen = 0; /* keep the reply log small */
            char id[16];
            size_t hl = target - tl - ((size_t)snprintf(id, sizeof id, "%d", f->begins + 1) - 1);
            /* From:, then 900-octet lines, then two shorter ones: the empty line's CR at target */
            size_t pl = (size_t)sprintf(plain, "From: team@example.org\r\n");
            while (hl - pl > 1800)
                pl += (size_t)sprintf(plain + pl, "X-Pad: %0*d\r\n", 891, 0);
            size_t rest = hl - pl;
            pl += (size_t)sprintf(plain + pl, "X-Pad: %0*d\r\n", (int)(rest / 2) - 9, 0);
            pl += (size_t)sprintf(plain + pl, "X-Pad: %0*d\r\n", (int)(rest - rest / 2) - 9, 0);
            assert_int_equal(pl, hl);
            strcpy(plain + pl, "\r\nbody\r\n");
            if (bdat)
                bdat_msg(f, plain, strlen(plain), NULL, 0);
            else
                assert_int_equal(data_msg(f, "team@example.org", plain), 250);
            assert_int_equal(trace_len(f) + hl, target);
            assert_stored_sender(f, plain);
        }
    fx_free(f);
}

/* BDAT is stored as sent and may end lines with a bare LF: LF LF ends the header section there,
 * and the Sender: field goes before it, ending in LF like its neighbours. */
static void test_sender_bdat_bare_lf(void **state)
{
    (void)state;
    const char *texts[] = {"From: team@example.org\nSubject: lf\n\nbody\n",
                           "From: team@example.org\r\nSubject: crlf then lf\r\n\nbody\r\n"};
    for (size_t i = 0; i < 2; i++) {
        struct fixture *f = fx_session(true, true, ALICE_PLAIN);
        bdat_msg(f, texts[i], strlen(texts[i]), NULL, 0);
        const char *m = f->msg + trace_len(f);
        const char *end = strstr(m, "\n\n");
        assert_non_null(end);
        const char *field = strstr(m, "Sender: alice@example.org");
        if (!field || field > end)
            fail_msg("case %zu: no Sender: in the header section:\n%s", i, m);
        assert_null(strstr(field + 1, "Sender: alice@example.org"));
        fx_free(f);
    }
}

/* Sending as an alias that reaches a shared mailbox (sales -> team) is sending as the team:
 * Sender: names the member, as for team itself. */
static void test_sender_alias_of_shared(void **state)
{
    (void)state;
    fx_sales_alias = true;
    struct fixture *f = fx_session(true, true, CAROL_PLAIN);
    assert_int_equal(cmd(f, "MAIL FROM:<sales@example.org>"), 553); /* not a member */
    fx_free(f);
    f = fx_session(true, true, ALICE_PLAIN);
    fx_sales_alias = false;
    const char *texts[] = {"Subject: s\r\n\r\nx\r\n", "From: sales@example.org\r\n\r\nx\r\n"};
    const char *froms[] = {"sales@example.org", "alice@example.org"};
    for (int i = 0; i < 2; i++) {
        f->env.check_from = i == 1;
        assert_int_equal(data_msg(f, froms[i], texts[i]), 250);
        assert_stored_sender(f, texts[i]);
    }
    fx_free(f);
}

static void test_quota(void **state)
{
    (void)state;
    struct fixture *f = fx_session(false, false, NULL);
    f->full = "bob@example.org";
    assert_int_equal(cmd(f, "MAIL FROM:<x@other.test>"), 250);
    expect(f, "RCPT TO:<bob@example.org>", "552 5.2.2 <bob@example.org>: mailbox full");
    /* an alias reaching bob: refused, without naming bob */
    expect(f, "RCPT TO:<devs@example.org>",
           "552 5.2.2 <devs@example.org>: mailbox full (one of the mailboxes it reaches)");
    assert_null(strstr(last_line(f), "bob"));
    assert_int_equal(cmd(f, "RCPT TO:<alice@example.org>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<team@example.org>"), 250); /* its own Maildir */
    assert_int_equal(cmd(f, "RCPT TO:<postmaster>"), 250);
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, "Subject: q\r\n\r\nx\r\n.\r\n"), 250);
    assert_int_equal(f->commits, 1);
    assert_int_equal(f->nlast, 2);
    assert_string_equal(f->last_mailboxes[0], "alice@example.org");
    assert_string_equal(f->last_mailboxes[1], "team@example.org");
    /* the shared mailbox itself full */
    f->full = "team@example.org";
    assert_int_equal(cmd(f, "MAIL FROM:<x@other.test>"), 250);
    expect(f, "RCPT TO:<team@example.org>", "552 5.2.2 <team@example.org>: mailbox full");
    assert_int_equal(cmd(f, "RCPT TO:<devs@example.org>"), 250);
    assert_int_equal(cmd(f, "DATA"), 354);
    assert_int_equal(send_text(f, "x\r\n.\r\n"), 250);
    assert_int_equal(f->nlast, 1);
    assert_string_equal(f->last_mailboxes[0], "bob@example.org");
    /* every recipient full: no valid recipients */
    assert_int_equal(cmd(f, "MAIL FROM:<x@other.test>"), 250);
    assert_int_equal(cmd(f, "RCPT TO:<TEAM@example.org>"), 552);
    assert_int_equal(cmd(f, "DATA"), 554);
    fx_free(f);
}

#define MEMBERS_ONLY                                                                               \
    "550 5.7.1 <team@example.org> is a shared mailbox; its members are shown to its members only"

static void test_vrfy_expn(void **state)
{
    (void)state;
    struct fixture *f = fx_session(false, false, NULL);
    expect(f, "VRFY team@example.org", "250 2.1.5 Shared mailbox <team@example.org>");
    expect(f, "VRFY team", "250 2.1.5 Shared mailbox <team@example.org>");
    expect(f, "VRFY <TEAM@example.org>", "250 2.1.5 Shared mailbox <team@example.org>");
    expect(f, "EXPN team@example.org", MEMBERS_ONLY); /* not authenticated: not a member */
    f->env.expn = SMTP_DISCLOSE_AUTHENTICATED;
    expect(f, "EXPN team@example.org",
           "252 2.5.2 Cannot EXPN: members are shown to authenticated users");
    f->env.expn = SMTP_DISCLOSE_NONE;
    expect(f, "EXPN team@example.org", "502 5.5.1 EXPN is disabled by policy");
    fx_free(f);
    /* to its members, alice and bob (through devs), in any spelling */
    const char *list = "250-2.1.5 <alice@example.org>\r\n250 2.1.5 <devs@example.org>\r\n";
    const char *queries[] = {"EXPN team@example.org", "EXPN <Team@Example.org>", "EXPN team"};
    for (int i = 0; i < 2; i++) {
        f = fx_session(false, false, i ? BOB_PLAIN : ALICE_PLAIN);
        f->env.expn = SMTP_DISCLOSE_AUTHENTICATED;
        for (int q = 0; q < 3; q++) {
            size_t before = f->outlen;
            assert_int_equal(cmd(f, queries[q]), 250);
            assert_string_equal(f->out + before, list);
        }
        fx_free(f);
    }

    f = fx_session(false, false, CAROL_PLAIN);
    f->env.expn = SMTP_DISCLOSE_AUTHENTICATED;
    expect(f, "EXPN team@example.org", MEMBERS_ONLY);
    expect(f, "EXPN devs@example.org", "250 2.1.5 <bob@example.org>"); /* an ordinary alias */
    f->env.expn = SMTP_DISCLOSE_NONE;
    expect(f, "EXPN team@example.org", "502 5.5.1 EXPN is disabled by policy");
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mail_from_shared),
        cmocka_unit_test(test_check_from),
        cmocka_unit_test(test_sender_data),
        cmocka_unit_test(test_sender_bdat),
        cmocka_unit_test(test_sender_long_header),
        cmocka_unit_test(test_sender_when),
        cmocka_unit_test(test_sender_all_header),
        cmocka_unit_test(test_sender_bytewise),
        cmocka_unit_test(test_sender_chunk_edges),
        cmocka_unit_test(test_sender_bdat_bare_lf),
        cmocka_unit_test(test_sender_alias_of_shared),
        cmocka_unit_test(test_quota),
        cmocka_unit_test(test_vrfy_expn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

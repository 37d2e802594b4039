/* Unit tests for the delivery report composer (src/relay/dsn*.c), well-formed reports: one
 * whole report compared byte for byte for a fixed clock and random source; then reports taken
 * apart the way a mail program would (dsn_check.h) to check every field of failure reports
 * and delay notices, the status codes derived from replies, whole messages returned, UTF-8
 * recipients, and the boundary and Message-ID. test_dsn_hostile.c has hostile input.
 * With DSN_DUMP=DIR in the environment it writes sample reports into DIR instead
 * (tests/integration/test_dsn_parse.py reads them with Python's email package). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dsn_check.h"

/* ---- whole reports ---- */

static void test_golden(void **state)
{
    (void)state;
    static const struct dsn_rcpt one[] = {{
        .addr = "bob@example.com",
        .code = 550,
        .reply = "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in "
                 "virtual mailbox table",
        .remote_mta = "mx.example.com",
        .last_attempt = NOW,
    }};
    struct dsn_report r = base(one, 1);
    r.original = "Subject: hi\r\n\r\nbody\r\n";
    r.original_len = strlen(r.original);
    static const char want[] =
        "From: Mail Delivery System <MAILER-DAEMON@mx.test.example>\r\n"
        "To: <alice@example.org>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: " NOW_DATE "\r\n"
        "Message-ID: <" QID ".6553f100.18191a1b1c1d1e1f@mx.test.example>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        " boundary=\"=_tern_dsn_0123456789ABCDEFGHIJKLMN\"\r\n"
        "\r\n"
        "This is a MIME-encapsulated message.\r\n"
        "\r\n--=_tern_dsn_0123456789ABCDEFGHIJKLMN\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
        "This is the mail system at host mx.test.example.\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not be delivered to\r\n"
        "one or more recipients. Its header section is attached below.\r\n"
        "\r\n"
        "For further assistance, please send mail to postmaster@mx.test.example. If you\r\n"
        "do so, please include this problem report.\r\n"
        "\r\n"
        "                   The mail system\r\n"
        "\r\n"
        "<bob@example.com>: host mx.example.com said: 550 5.1.1 <bob@example.com>:\r\n"
        "    Recipient address rejected: User unknown in virtual mailbox table\r\n"
        "\r\n--=_tern_dsn_0123456789ABCDEFGHIJKLMN\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.test.example\r\n"
        "Arrival-Date: " ARRIVAL_DATE "\r\n"
        "X-Tern-Queue-ID: " QID "\r\n"
        "\r\n"
        "Final-Recipient: rfc822; bob@example.com\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "Remote-MTA: dns; mx.example.com\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: Recipient address\r\n"
        " rejected: User unknown in virtual mailbox table\r\n"
        "Last-Attempt-Date: " NOW_DATE "\r\n"
        "\r\n--=_tern_dsn_0123456789ABCDEFGHIJKLMN\r\n"
        "Content-Description: Undelivered Message Headers\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        "Subject: hi\r\n"
        "\r\n--=_tern_dsn_0123456789ABCDEFGHIJKLMN--\r\n";
    char err[DSN_ERR_MAX];
    size_t len;
    char *m = dsn_compose(&r, &len, err, sizeof err);
    assert_non_null(m);
    if (strcmp(m, want) != 0) {
        fprintf(stderr, "got:\n%s\n", m); /* cmocka shows only the start of a long string */
        fail_msg("the report differs from the golden one");
    }
    assert_int_equal(len, sizeof want - 1);
    free(m);
}

static void test_failed_fields(void **state)
{
    (void)state;
    const struct dsn_rcpt two[] = {bob, carol};
    struct dsn_report r = base(two, 2);
    r.envid = "QQ314159";
    struct report rp = compose_ok(&r);
    assert_field(rp.m, "From", "Mail Delivery System <MAILER-DAEMON@mx.test.example>");
    assert_field(rp.m, "To", "<alice@example.org>");
    assert_field(rp.m, "Subject", "Undelivered Mail Returned to Sender");
    assert_field(rp.m, "Date", NOW_DATE);
    assert_field(rp.m, "Auto-Submitted", "auto-replied");
    assert_field(rp.m, "MIME-Version", "1.0");
    char *mid = field(rp.m, "Message-ID");
    assert_true(strncmp(mid, "<" QID ".", strlen(QID) + 2) == 0);
    assert_non_null(strstr(mid, "@mx.test.example>"));
    free(mid);
    assert_null(field(rp.m, "Content-Transfer-Encoding")); /* all ASCII: 7bit */

    assert_int_equal(rp.nparts, 3);
    assert_field(rp.part[0], "Content-Type", "text/plain; charset=utf-8");
    assert_field(rp.part[1], "Content-Type", "message/delivery-status");
    assert_field(rp.part[2], "Content-Type", "text/rfc822-headers");

    char *b = block(&rp, 0);
    assert_field(b, "Original-Envelope-Id", "QQ314159");
    assert_field(b, "Reporting-MTA", "dns; mx.test.example");
    assert_field(b, "Arrival-Date", ARRIVAL_DATE);
    assert_field(b, "X-Tern-Queue-ID", QID);
    free(b);

    b = block(&rp, 1);
    assert_true(strncmp(b, "Original-Recipient: ", 20) == 0); /* RFC 3464's order */
    assert_field(b, "Original-Recipient", "rfc822; bob@alias.example.com");
    assert_field(b, "Final-Recipient", "rfc822; bob@example.com");
    assert_field(b, "Action", "failed");
    assert_field(b, "Status", "5.1.1");
    assert_field(b, "Remote-MTA", "dns; mx.example.com");
    assert_field(b, "Diagnostic-Code",
                 "smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown");
    assert_field(b, "Last-Attempt-Date", "Tue, 14 Nov 2023 22:12:20 +0000");
    assert_null(field(b, "Will-Retry-Until"));
    free(b);

    /* a local failure: no remote reply, so no Remote-MTA and a private diagnostic type */
    b = block(&rp, 2);
    assert_field(b, "Final-Recipient", "rfc822; carol@nowhere.example");
    assert_null(field(b, "Original-Recipient"));
    assert_field(b, "Action", "failed");
    assert_field(b, "Status", "5.0.0");
    assert_null(field(b, "Remote-MTA"));
    assert_null(field(b, "Last-Attempt-Date"));
    assert_field(b, "Diagnostic-Code",
                 "X-tern; Host or domain name not found. Name service error for "
                 "name=nowhere.example");
    free(b);
    assert_null(block(&rp, 3));

    char *t = unwrapped(content(rp.part[0]));
    assert_non_null(strstr(t, "This is the mail system at host mx.test.example."));
    assert_non_null(strstr(t, "could not be delivered to one or more recipients."));
    assert_non_null(strstr(t, "<bob@example.com> (originally bob@alias.example.com): "
                              "host mx.example.com said: 550 5.1.1 <bob@example.com>: "
                              "Recipient address rejected: User unknown"));
    assert_non_null(strstr(t, "<carol@nowhere.example>: Host or domain name not found."));
    free(t);
    /* the original's header section and nothing of its body */
    const char *h = content(rp.part[2]);
    assert_true(strncmp(h, "Received: from client.example.org", 33) == 0);
    assert_non_null(
        strstr(h, "\r\nSubject: Lunch on Friday?\r\nMessage-ID: <lunch@example.org>\r\n"));
    assert_null(strstr(h, "BODY-MARKER"));
    report_free(&rp);
}

static void test_delayed_fields(void **state)
{
    (void)state;
    struct dsn_report r = base(&dave_delayed, 1);
    r.delay = true;
    r.retry_until = UNTIL;
    struct report rp = compose_ok(&r);
    assert_field(rp.m, "Subject", "Delayed Mail (still being retried)");
    assert_field(rp.m, "Auto-Submitted", "auto-replied");
    char *b = block(&rp, 1);
    assert_field(b, "Final-Recipient", "rfc822; dave@example.net");
    assert_field(b, "Action", "delayed");
    assert_field(b, "Status", "4.7.1");
    assert_field(b, "Remote-MTA", "dns; mx.example.net");
    assert_field(b, "Diagnostic-Code", "smtp; 451 4.7.1 Greylisted, please try again later");
    assert_field(b, "Last-Attempt-Date", "Tue, 14 Nov 2023 22:03:20 +0000");
    assert_field(b, "Will-Retry-Until", UNTIL_DATE);
    free(b);
    char *t = unwrapped(content(rp.part[0]));
    assert_non_null(strstr(t, "you do not need to send your message again"));
    assert_non_null(strstr(t, "queued on " ARRIVAL_DATE));
    assert_non_null(strstr(t, "keep trying until " UNTIL_DATE));
    assert_null(strstr(t, "sorry"));
    free(t);
    assert_field(rp.part[2], "Content-Description", "Delayed Message Headers");
    report_free(&rp);
    /* no arrival time: no Arrival-Date, and the text does without it */
    r.arrival = 0;
    rp = compose_ok(&r);
    b = block(&rp, 0);
    assert_null(field(b, "Arrival-Date"));
    free(b);
    t = unwrapped(content(rp.part[0]));
    assert_non_null(strstr(t, "Your message has not yet been delivered"));
    free(t);
    report_free(&rp);

    /* a delay notice names no failed recipient, a failure report no delayed one */
    const struct dsn_rcpt mixed[] = {dave_delayed, bob};
    r = base(mixed, 2);
    r.delay = true;
    r.retry_until = UNTIL;
    compose_bad(&r, "recipient 2 <bob@example.com> is failed but this is a delay notice");
    r.delay = false;
    compose_bad(&r, "recipient 1 <dave@example.net> is delayed but this is a failure report");
    r = base(&dave_delayed, 1);
    r.delay = true;
    compose_bad(&r, "retry_until");
}

static void test_status_derived(void **state)
{
    (void)state;
    static const struct {
        bool delayed;
        const char *status;
        int code;
        const char *reply;
        const char *want;
    } cases[] = {
        {false, NULL, 550, "550 5.1.1 user unknown", "5.1.1"},
        {false, NULL, 550, "550-5.2.2 mailbox full", "5.2.2"},
        {false, NULL, 552, "  552 5.3.4 too big", "5.3.4"},
        {false, NULL, 550, "5.1.2 the code left out of the text", "5.1.2"},
        {false, NULL, 550, "mailbox unavailable", "5.0.0"},
        {false, NULL, 554, "554 transaction failed", "5.0.0"},
        {false, NULL, 550, NULL, "5.0.0"},
        {false, NULL, 450, "450 4.2.1 try later", "4.2.1"}, /* expired after 4xx */
        {false, NULL, 451, "local problem", "4.0.0"},
        {false, NULL, 0, "Host not found", "5.0.0"},
        {false, NULL, 0, NULL, "5.0.0"},
        {false, NULL, 550, "550 4.1.1 class mismatch", "5.0.0"},
        {false, NULL, 550, "451 5.1.1 code mismatch", "5.0.0"},
        {false, NULL, 550, "550 5.1.1234 too many digits", "5.0.0"},
        {false, NULL, 550, "550 5.1.1x glued", "5.0.0"},
        {false, NULL, 250, "250 2.0.0 ok but failed later", "5.0.0"},
        {false, "5.7.1", 550, "550 5.1.1 x", "5.7.1"},
        {false, "4.4.7", 0, "expired", "4.4.7"},
        {false, "9.9.9", 550, "550 5.1.1 x", "5.1.1"},
        {false, "5.1.1\r\nX-Injected: 1", 550, "550 x", "5.0.0"},
        {true, NULL, 0, NULL, "4.0.0"},
        {true, NULL, 451, "451 4.7.1 greylisted", "4.7.1"},
        {true, NULL, 421, "421 closing", "4.0.0"},
        {true, NULL, 0, "4.4.1 connection timed out", "4.4.1"},
        {true, "5.1.1", 450, "450 x", "4.0.0"},
        {true, NULL, 550, "550 5.1.1 a 5xx cannot delay", "4.0.0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dsn_rcpt rc = {.addr = "x@example.com",
                              .delayed = cases[i].delayed,
                              .status = cases[i].status,
                              .code = cases[i].code,
                              .reply = cases[i].reply};
        struct dsn_report r = base(&rc, 1);
        r.delay = rc.delayed;
        r.retry_until = UNTIL;
        struct report rp = compose_ok(&r);
        char *b = block(&rp, 1);
        char *st = field(b, "Status");
        if (!st || strcmp(st, cases[i].want) != 0)
            fail_msg("case %zu (%s): Status %s, wanted %s", i, cases[i].reply ? cases[i].reply : "",
                     st ? st : "(none)", cases[i].want);
        free(st);
        free(b);
        report_free(&rp);
    }
}

/* The reply code goes in front of a text that lacks it; a code alone is a diagnostic too. */
static void test_diagnostic_code(void **state)
{
    (void)state;
    struct dsn_rcpt rc = {.addr = "x@example.com", .code = 554, .reply = "no thanks"};
    struct dsn_report r = base(&rc, 1);
    struct report rp = compose_ok(&r);
    char *b = block(&rp, 1);
    assert_field(b, "Diagnostic-Code", "smtp; 554 no thanks");
    free(b);
    report_free(&rp);
    rc.reply = NULL;
    rp = compose_ok(&r);
    b = block(&rp, 1);
    assert_field(b, "Diagnostic-Code", "smtp; 554");
    free(b);
    report_free(&rp);
}

static void test_full_message(void **state)
{
    (void)state;
    static const char orig[] = "Subject: whole\nFrom: a@example.org\n\nBODY-MARKER caf\xc3\xa9\n"
                               "nul\0x bare\rcr \xff\r\n"
                               "\n--=_tern_dsn_ looks like ours\nlast line without break";
    struct dsn_report r = base(&bob, 1);
    r.original = orig;
    r.original_len = sizeof orig - 1;
    r.full_message = true;
    struct report rp = compose_ok(&r);
    assert_field(rp.part[2], "Content-Type", "message/rfc822");
    assert_field(rp.part[2], "Content-Description", "Undelivered Message");
    assert_field(rp.part[2], "Content-Transfer-Encoding", "8bit");
    assert_field(rp.m, "Content-Transfer-Encoding", "8bit");
    assert_string_equal(content(rp.part[2]),
                        "Subject: whole\r\nFrom: a@example.org\r\n\r\nBODY-MARKER caf\xc3\xa9\r\n"
                        "nul?x bare?cr \xff\r\n" /* 8-bit body text is kept, NUL and CR not */
                        "\r\n--=_tern_dsn_ looks like ours\r\nlast line without break\r\n");
    char *t = unwrapped(content(rp.part[0]));
    assert_non_null(strstr(t, "It is attached below."));
    free(t);
    report_free(&rp);

    /* a body line over 998 octets is broken without the fold's SP */
    char *lng = malloc(2100);
    int ln = sprintf(lng, "Subject: long\r\n\r\n");
    memset(lng + ln, 'x', 2000);
    ln += 2000;
    r.original = lng;
    r.original_len = (size_t)ln;
    struct report rl = compose_ok(&r);
    const char *c = content(rl.part[2]);
    assert_int_equal(strlen(c), 17 + 2000 + 3 * 2);
    assert_int_equal(strspn(c + 17, "x"), 998);
    assert_int_equal(strncmp(c + 17 + 998, "\r\nx", 3), 0);
    report_free(&rl);
    free(lng);
    r.original = orig;
    r.original_len = sizeof orig - 1;

    /* over the caller's cap: headers only, and the text says why */
    r.max_original = 40;
    rp = compose_ok(&r);
    assert_field(rp.part[2], "Content-Type", "text/rfc822-headers");
    assert_string_equal(content(rp.part[2]), "Subject: whole\r\nFrom: a@example.org\r\n");
    t = unwrapped(content(rp.part[0]));
    assert_non_null(strstr(t, "Its header section is attached below."));
    assert_non_null(strstr(t, "more than the 40 returned in full"));
    free(t);
    report_free(&rp);

    /* no original at all: two parts */
    r.original = NULL;
    r.original_len = 0;
    rp = compose_ok(&r);
    assert_int_equal(rp.nparts, 2);
    report_free(&rp);
}

/* ---- addresses ---- */

static void test_utf8_recipient(void **state)
{
    (void)state;
    struct dsn_rcpt rc = bob;
    rc.addr = "j\xc3\xb6s\xc3\xa9+tag@ex\xc3\xa4mple.org";
    rc.orcpt = "utf-8;j\\x{F6}s\\x{E9}@ex\\x{E4}mple.org";
    rc.reply = "550 5.1.1 unknown user j\xc3\xb6s\xc3\xa9";
    struct dsn_report r = base(&rc, 1);
    r.sender = "\xc3\xa5sa@example.org";
    struct report rp = compose_ok(&r);
    assert_field(rp.m, "To", "<\xc3\xa5sa@example.org>");
    char *b = block(&rp, 1);
    assert_field(b, "Final-Recipient", "utf-8; j\\x{F6}s\\x{E9}\\x{2B}tag@ex\\x{E4}mple.org");
    assert_field(b, "Original-Recipient", "utf-8; j\\x{F6}s\\x{E9}@ex\\x{E4}mple.org");
    assert_field(b, "Diagnostic-Code", "smtp; 550 5.1.1 unknown user j?s?");
    free(b);
    /* message/delivery-status stays ASCII (RFC 3464; RFC 6533 section 3) */
    for (const char *p = rp.part[1]; *p; p++)
        assert_true((unsigned char)*p < 0x80);
    assert_field(rp.part[0], "Content-Transfer-Encoding", "8bit");
    assert_field(rp.m, "Content-Transfer-Encoding", "8bit");
    char *t = unwrapped(content(rp.part[0]));
    assert_non_null(strstr(t, "<j\xc3\xb6s\xc3\xa9+tag@ex\xc3\xa4mple.org>"));
    assert_non_null(strstr(t, "unknown user j\xc3\xb6s\xc3\xa9"));
    free(t);
    report_free(&rp);

    /* a four-octet character and the xtext specials */
    rc.addr = "\"a b=c\\\\d\"\xf0\x9f\x98\x80@example.org";
    rc.orcpt = NULL;
    rp = compose_ok(&r);
    b = block(&rp, 1);
    assert_field(b, "Final-Recipient",
                 "utf-8; \"a\\x{20}b\\x{3D}c\\x{5C}\\x{5C}d\"\\x{1F600}@example.org");
    free(b);
    report_free(&rp);
}

/* ---- boundary and Message-ID ---- */

static void test_boundary_and_id(void **state)
{
    (void)state;
    /* the real random source: two reports of one entry in one second still differ */
    struct dsn_report r = base(&bob, 1);
    r.random = NULL;
    struct report a = compose_ok(&r), b = compose_ok(&r);
    char *ma = field(a.m, "Message-ID"), *mb = field(b.m, "Message-ID");
    assert_string_not_equal(ma, mb);
    assert_string_not_equal(a.bnd, b.bnd);
    free(ma);
    free(mb);
    report_free(&a);
    report_free(&b);

    /* a stuck source draws the same candidate each time: the try number makes the next
     * differ, and the one the original holds is passed over */
    char orig[256];
    snprintf(orig, sizeof orig, "Subject: trap\r\nX-Trap: =_tern_dsn_%s\r\n\r\n",
             "777777777777777777777777");
    r.original = orig;
    r.original_len = strlen(orig);
    r.random = rng_stuck;
    a = compose_ok(&r);
    assert_string_equal(a.bnd, "=_tern_dsn_777777777777777777777777_1");
    report_free(&a);

    /* a failing source: the fallback still gives a boundary that is checked */
    r.random = rng_fail;
    a = compose_ok(&r);
    assert_int_equal(strncmp(a.bnd, "=_tern_dsn_", 11), 0);
    report_free(&a);
}

/* ---- DSN_DUMP: sample reports for the Python reader ---- */

static int dump(const char *dir, const char *name, const struct dsn_report *r)
{
    char err[DSN_ERR_MAX], path[4096];
    size_t len;
    char *m = dsn_compose(r, &len, err, sizeof err);
    if (!m) {
        fprintf(stderr, "test_dsn: %s: %s\n", name, err);
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int rc = f && fwrite(m, 1, len, f) == len ? 0 : -1;
    if (f && fclose(f) != 0)
        rc = -1;
    if (rc < 0)
        fprintf(stderr, "test_dsn: cannot write %s\n", path);
    free(m);
    return rc;
}

static int dump_samples(const char *dir)
{
    const struct dsn_rcpt two[] = {bob, carol};
    struct dsn_report r = base(two, 2);
    r.envid = "QQ314159";
    int rc = dump(dir, "failed.eml", &r);
    r = base(&dave_delayed, 1);
    r.delay = true;
    r.retry_until = UNTIL;
    rc |= dump(dir, "delayed.eml", &r);
    r = base(&bob, 1);
    r.full_message = true;
    rc |= dump(dir, "full.eml", &r);
    struct dsn_rcpt u = bob;
    u.addr = "j\xc3\xb6s\xc3\xa9+tag@ex\xc3\xa4mple.org";
    u.orcpt = NULL;
    r = base(&u, 1);
    rc |= dump(dir, "utf8.eml", &r);
    return rc == 0 ? 0 : 1;
}

int main(void)
{
    const char *dir = getenv("DSN_DUMP");
    if (dir && dir[0])
        return dump_samples(dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),          cmocka_unit_test(test_failed_fields),
        cmocka_unit_test(test_delayed_fields),  cmocka_unit_test(test_status_derived),
        cmocka_unit_test(test_diagnostic_code), cmocka_unit_test(test_full_message),
        cmocka_unit_test(test_utf8_recipient),  cmocka_unit_test(test_boundary_and_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

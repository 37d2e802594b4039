/* Unit tests for the delivery report composer against what it must not trust or accept: replies
 * with line breaks, escape sequences, C1 controls, broken UTF-8 and 100 KB of text (a reply is
 * a C string: NUL ends it); originals with NUL, controls, broken UTF-8, bare LF and overlong
 * lines; header sections longer than the cap, cut at a line end; the descriptions it refuses
 * (sender <> first); and the most recipients a report may name. test_dsn.c has the
 * well-formed reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dsn_check.h"

/* ---- hostile text ---- */

static void test_hostile_reply(void **state)
{
    (void)state;
    size_t big = 100 * 1024;
    char *reply = malloc(big + 200);
    int n = snprintf(reply, 200,
                     "550 5.1.1 bad\r\nX-Injected: yes\r\n\r\n--boundary\x1b[31mred\x1b[0m "
                     "\x7f \xc2\x9b"
                     "2J \xff\xfe\r\n.\r\n");
    memset(reply + n, 'A', big);
    reply[n + big] = 0;
    struct dsn_rcpt rc = {
        .addr = "bob@example.com",
        .orcpt = "rfc822;bob@example.com\r\nX-Injected-Orcpt: 1",
        .code = 550,
        .reply = reply,
        .remote_mta = "mx.example.com\r\nX-Injected-Mta: 1",
    };
    struct dsn_report r = base(&rc, 1);
    r.envid = "id\r\nX-Injected-Envid: 1";
    struct report rp = compose_ok(&r);
    assert_null(strstr(rp.m, "\r\nX-Injected"));
    assert_null(strstr(rp.m, "\r\n.\r\n"));
    assert_null(memchr(rp.m, 0x1b, rp.len));
    assert_null(memchr(rp.m, 0x7f, rp.len));
    assert_null(strstr(rp.m, "\xc2\x9b"));
    assert_null(strstr(rp.m, "\xff"));
    /* bounded: the reply is cut (twice: text and status part), not copied */
    assert_true(rp.len < 3 * DSN_REPLY_MAX + 4096);
    char *b = block(&rp, 1);
    char *d = field(b, "Diagnostic-Code");
    assert_true(
        strncmp(
            d, "smtp; 550 5.1.1 bad X-Injected: yes --boundary?[31mred?[0m ? ?2J ?? . AAA",
            strlen("smtp; 550 5.1.1 bad X-Injected: yes --boundary?[31mred?[0m ? ?2J ?? . AAA")) ==
        0);
    assert_true(strlen(d) > 3 && strcmp(d + strlen(d) - 4, " ...") == 0);
    free(d);
    assert_field(b, "Status", "5.1.1");
    assert_field(b, "Remote-MTA", "dns; mx.example.com X-Injected-Mta: 1");
    assert_field(b, "Original-Recipient", "rfc822; bob@example.com??X-Injected-Orcpt: 1");
    free(b);
    report_free(&rp);

    /* an ORCPT too long to be one is left out, the report is not */
    char *longorcpt = malloc(DSN_ADDR_MAX + 2);
    memset(longorcpt, 'o', DSN_ADDR_MAX + 1);
    longorcpt[DSN_ADDR_MAX + 1] = 0;
    rc.orcpt = longorcpt;
    rp = compose_ok(&r);
    b = block(&rp, 1);
    assert_null(field(b, "Original-Recipient"));
    assert_field(b, "Final-Recipient", "rfc822; bob@example.com");
    free(b);
    report_free(&rp);
    rc.orcpt = NULL;
    free(longorcpt);

    /* 100 KB without a space: lines are broken inside the word, still within 998 octets */
    memset(reply, 'B', big);
    reply[big] = 0;
    rp = compose_ok(&r);
    b = block(&rp, 1);
    d = field(b, "Diagnostic-Code");
    assert_true(strncmp(d, "smtp; 550 BBBB", 14) == 0);
    assert_true(strlen(d) < DSN_REPLY_MAX + 32 && strcmp(d + strlen(d) - 4, " ...") == 0);
    free(d);
    free(b);
    report_free(&rp);
    free(reply);
}

static void test_hostile_original(void **state)
{
    (void)state;
    char orig[8192];
    size_t n = 0;
    n += (size_t)sprintf(orig + n, "Subject: hello\n");                    /* bare LF */
    n += (size_t)sprintf(orig + n, "X-Ctl: a\x1b[2Jb\rc\xff\xc3\xa9\r\n"); /* ESC, CR, bad UTF-8 */
    memcpy(orig + n, "X-Nul: a\0b\r\n", 12);
    n += 12;
    n += (size_t)sprintf(orig + n, "X-Long: ");
    memset(orig + n, 'L', 3000);
    n += 3000;
    n += (size_t)sprintf(orig + n, "\r\n\r\nBODY-MARKER\r\n");
    struct dsn_rcpt rc = bob;
    struct dsn_report r = base(&rc, 1);
    r.original = orig;
    r.original_len = n;
    struct report rp = compose_ok(&r);
    const char *h = content(rp.part[2]);
    assert_true(strncmp(h,
                        "Subject: hello\r\nX-Ctl: a?[2Jb?c?\xc3\xa9\r\nX-Nul: a?b\r\nX-Long: LLL",
                        47) == 0);
    /* the long line goes on as folded lines */
    assert_non_null(strstr(h, "LL\r\n LL"));
    assert_int_equal(count(h, "L"), 3000 + 1);
    assert_null(strstr(h, "BODY-MARKER"));
    /* 8-bit text kept: said in the part and at the top */
    assert_field(rp.part[2], "Content-Transfer-Encoding", "8bit");
    assert_field(rp.m, "Content-Transfer-Encoding", "8bit");
    report_free(&rp);
}

/* A header section longer than the cap is cut after the last whole line that fits. */
static void test_headers_truncated(void **state)
{
    (void)state;
    size_t cap = 3000 * 48 + 64;
    char *orig = malloc(cap);
    size_t n = (size_t)sprintf(orig, "Subject: first line\r\n");
    for (int i = 0; i < 3000; i++)
        n += (size_t)sprintf(orig + n, "X-Filler-%04d: 0123456789012345678901234567\r\n", i);
    n += (size_t)sprintf(orig + n, "\r\nbody\r\n");
    struct dsn_report r = base(&bob, 1);
    r.original = orig;
    r.original_len = n;
    struct report rp = compose_ok(&r);
    const char *h = content(rp.part[2]);
    size_t hn = strlen(h);
    assert_true(hn <= DSN_HEADERS_MAX && hn > DSN_HEADERS_MAX - 50);
    assert_true(strncmp(h, "Subject: first line\r\n", 21) == 0);
    /* whole lines: filler lines of FL octets after the first */
    enum { FL = sizeof "X-Filler-0000: 0123456789012345678901234567\r\n" - 1 };
    assert_int_equal((hn - 21) % FL, 0);
    char last[64];
    snprintf(last, sizeof last, "X-Filler-%04zu: 0123456789012345678901234567\r\n",
             (hn - 21) / FL - 1);
    assert_string_equal(h + hn - FL, last);
    char *t = unwrapped(content(rp.part[0]));
    assert_non_null(strstr(t, "The header section was longer than 65536 octets"));
    free(t);
    report_free(&rp);

    /* the caller's smaller cap */
    r.max_original = 1000;
    rp = compose_ok(&r);
    h = content(rp.part[2]);
    hn = strlen(h);
    assert_true(hn <= 1000 && hn > 1000 - FL);
    assert_string_equal(h + hn - 2, "\r\n");
    report_free(&rp);
    free(orig);

    /* an original that is just a head with no line break at its end gets one */
    r = base(&bob, 1);
    r.original = "Subject: only";
    r.original_len = 13;
    rp = compose_ok(&r);
    assert_string_equal(content(rp.part[2]), "Subject: only\r\n");
    report_free(&rp);
}

static void test_refused(void **state)
{
    (void)state;
    struct dsn_report r = base(&bob, 1);
    r.sender = "";
    compose_bad(&r, "the sender is <>");
    r.sender = "<>";
    compose_bad(&r, "the sender is <>");
    r.sender = NULL;
    compose_bad(&r, "the sender is <>");
    r.sender = "alice@example.org\r\nBcc: x@example.com";
    compose_bad(&r, "the sender holds");
    r.sender = "\xc3(@example.org";
    compose_bad(&r, "malformed UTF-8");

    r = base(&bob, 1);
    r.nrcpts = 0;
    compose_bad(&r, "1 to 1000 recipients, not 0");
    r = base(NULL, 1);
    compose_bad(&r, "1 to 1000 recipients");
    r = base(&bob, 1);
    r.host = "mx test";
    compose_bad(&r, "host 'mx test' is not a host name");
    r = base(&bob, 1);
    r.host = "mx..test";
    compose_bad(&r, "is not a host name");
    r = base(&bob, 1);
    r.queue_id = "a<b>";
    compose_bad(&r, "queue id 'a<b>'");
    r = base(&bob, 1);
    r.original = NULL;
    compose_bad(&r, "original is NULL");

    struct dsn_rcpt rc = bob;
    r = base(&rc, 1);
    rc.code = 99;
    compose_bad(&r, "reply code 99");
    rc = bob;
    rc.addr = NULL;
    compose_bad(&r, "recipient 1 has no address");
    rc.addr = "bob@example.com\n";
    compose_bad(&r, "recipient 1 holds");

    char *longaddr = malloc(DSN_ADDR_MAX + 2);
    memset(longaddr, 'a', DSN_ADDR_MAX + 1);
    longaddr[DSN_ADDR_MAX + 1] = 0;
    rc.addr = longaddr;
    compose_bad(&r, "longer than 512");
    free(longaddr);

    char err[DSN_ERR_MAX];
    size_t len;
    assert_null(dsn_compose(NULL, &len, err, sizeof err));
    assert_null(dsn_compose(&r, NULL, err, sizeof err));
}

/* 1000 recipients is the most; each a line in the text and a block in the status part. */
static void test_many_recipients(void **state)
{
    (void)state;
    struct dsn_rcpt *rc = calloc(DSN_RCPTS_MAX + 1, sizeof *rc);
    char(*addrs)[32] = calloc(DSN_RCPTS_MAX + 1, sizeof *addrs);
    for (size_t i = 0; i <= DSN_RCPTS_MAX; i++) {
        snprintf(addrs[i], sizeof addrs[i], "user%04zu@example.com", i);
        rc[i] = bob;
        rc[i].addr = addrs[i];
    }
    struct dsn_report r = base(rc, DSN_RCPTS_MAX);
    struct report rp = compose_ok(&r);
    assert_int_equal(count(rp.part[1], "Final-Recipient: rfc822; user"), DSN_RCPTS_MAX);
    char *b = block(&rp, DSN_RCPTS_MAX);
    assert_field(b, "Final-Recipient", "rfc822; user0999@example.com");
    free(b);
    report_free(&rp);
    r.nrcpts = DSN_RCPTS_MAX + 1;
    compose_bad(&r, "1 to 1000 recipients, not 1001");
    free(addrs);
    free(rc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_reply),     cmocka_unit_test(test_hostile_original),
        cmocka_unit_test(test_headers_truncated), cmocka_unit_test(test_refused),
        cmocka_unit_test(test_many_recipients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

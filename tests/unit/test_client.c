/* Unit tests of libtern's protocol core without I/O (src/client/reply.c, src/client/client.c):
 * the reply parser on good and hostile input (over-long lines, too many lines, bad and mixed
 * codes, no space or hyphen, NUL and bare CR, every split point), enhanced status codes, the
 * seeds' positive / intermediate / negative table for every command, pipelined replies matched
 * in order, the stop after STARTTLS's 220, the message-data transform (dot-stuffing, bare LF and
 * CR to CRLF, across chunks), the EHLO capability parser and the masked transcript. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "client/reply.h"

/* Parses in (all of it must be one reply, fed in pieces of step octets): 0 and *r, or -1 and
 * err copied out. */
static int parse(const char *in, size_t n, size_t step, struct tern_reply *r, char *err,
                 size_t errlen)
{
    struct rparse p;
    rparse_init(&p);
    size_t off = 0;
    int rc = 0;
    while (off < n) {
        size_t len = n - off < step ? n - off : step, used = 0;
        rc = rparse_feed(&p, in + off, len, &used);
        off += used;
        if (rc != 0)
            break;
    }
    if (rc == 1) {
        assert_int_equal(off, n); /* exactly the reply, no more */
        assert_int_equal(rparse_take(&p, r), 0);
    } else if (rc < 0 && err) {
        snprintf(err, errlen, "%s", p.err);
    }
    rparse_reset(&p);
    return rc == 1 ? 0 : -1;
}

static int parse_s(const char *in, struct tern_reply *r, char *err)
{
    return parse(in, strlen(in), strlen(in) + 1, r, err, 256);
}

static void test_single_line(void **state)
{
    (void)state;
    struct tern_reply r = {0};
    assert_int_equal(parse_s("250 OK\r\n", &r, NULL), 0);
    assert_int_equal(r.code, 250);
    assert_string_equal(r.enh, "");
    assert_int_equal(r.nlines, 1);
    assert_string_equal(r.lines[0], "OK");
    assert_string_equal(tern_reply_text(&r), "OK");
    /* no text at all, and bare LF as the line end, are both accepted */
    assert_int_equal(parse_s("221\r\n", &r, NULL), 0);
    assert_int_equal(r.code, 221);
    assert_string_equal(tern_reply_text(&r), "");
    assert_int_equal(parse_s("354 go ahead\n", &r, NULL), 0);
    assert_int_equal(r.code, 354);
    assert_string_equal(r.lines[0], "go ahead");
    tern_reply_free(&r);
    assert_null(r.lines);
    assert_string_equal(tern_reply_text(&r), "");
}

static void test_multi_line_enhanced(void **state)
{
    (void)state;
    struct tern_reply r = {0};
    assert_int_equal(parse_s("250-2.1.0 first\r\n250-2.1.0 second\r\n250 2.1.0 last\r\n", &r, NULL),
                     0);
    assert_int_equal(r.code, 250);
    assert_string_equal(r.enh, "2.1.0");
    assert_int_equal(r.nlines, 3);
    assert_string_equal(r.lines[0], "first");
    assert_string_equal(r.lines[2], "last");
    assert_string_equal(r.text, "first\nsecond\nlast");
    /* a code of another class is text, not an enhanced code; 334 never has one */
    assert_int_equal(parse_s("250 5.1.1 odd\r\n", &r, NULL), 0);
    assert_string_equal(r.enh, "");
    assert_string_equal(r.lines[0], "5.1.1 odd");
    assert_int_equal(parse_s("550 5.7.1\r\n", &r, NULL), 0);
    assert_string_equal(r.enh, "5.7.1");
    assert_string_equal(r.lines[0], "");
    assert_int_equal(parse_s("334 3.0.0\r\n", &r, NULL), 0);
    assert_string_equal(r.enh, "");
    assert_int_equal(parse_s("451 4.3.1234 four-digit detail is no code\r\n", &r, NULL), 0);
    assert_string_equal(r.enh, "");
    assert_int_equal(parse_s("452 4.3.1x nope\r\n", &r, NULL), 0);
    assert_string_equal(r.enh, "");
    tern_reply_free(&r);
}

static void test_line_length_bound(void **state)
{
    (void)state;
    char *buf = malloc(TERN_REPLY_MAX_LINE + 16);
    if (!buf)
        abort(); /* out of memory: nothing to test */
    struct tern_reply r = {0};
    char err[256];
    /* exactly TERN_REPLY_MAX_LINE octets before CRLF: accepted */
    memcpy(buf, "250 ", 4);
    memset(buf + 4, 'a', TERN_REPLY_MAX_LINE - 4);
    memcpy(buf + TERN_REPLY_MAX_LINE, "\r\n", 3);
    assert_int_equal(parse_s(buf, &r, err), 0);
    assert_int_equal(strlen(r.lines[0]), TERN_REPLY_MAX_LINE - 4);
    /* one more: refused, with a clear reason, by both line ends */
    memset(buf + 4, 'a', TERN_REPLY_MAX_LINE - 3);
    memcpy(buf + TERN_REPLY_MAX_LINE + 1, "\r\n", 3);
    assert_int_equal(parse_s(buf, &r, err), -1);
    assert_non_null(strstr(err, "longer than 2048 octets"));
    memcpy(buf + TERN_REPLY_MAX_LINE + 1, "\n", 2);
    assert_int_equal(parse_s(buf, &r, err), -1);
    assert_non_null(strstr(err, "longer than 2048"));
    free(buf);
    /* a line that never ends is refused as soon as it is too long, not buffered forever */
    struct rparse p;
    rparse_init(&p);
    char chunk[1000];
    memset(chunk, 'x', sizeof chunk);
    memcpy(chunk, "250 ", 4);
    size_t used, total = 0;
    int rc = 0;
    for (int i = 0; i < 10 && rc == 0; i++) {
        rc = rparse_feed(&p, chunk + (i ? 4 : 0), sizeof chunk - (i ? 4 : 0), &used);
        total += used;
    }
    assert_int_equal(rc, -1);
    assert_true(total <= TERN_REPLY_MAX_LINE + 3);
    assert_int_equal(rparse_feed(&p, "\r\n", 2, &used), -1); /* stays failed */
    rparse_reset(&p);
    tern_reply_free(&r);
}

static void test_line_count_bound(void **state)
{
    (void)state;
    char buf[16 * (TERN_REPLY_MAX_LINES + 2)];
    struct tern_reply r = {0};
    char err[256];
    size_t o = 0;
    for (int i = 0; i < TERN_REPLY_MAX_LINES - 1; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "250-l%d\r\n", i);
    snprintf(buf + o, sizeof buf - o, "250 end\r\n");
    assert_int_equal(parse_s(buf, &r, err), 0);
    assert_int_equal(r.nlines, TERN_REPLY_MAX_LINES);
    o += (size_t)snprintf(buf + o, sizeof buf - o, "250-one too many\r\n");
    snprintf(buf + o, sizeof buf - o, "250 end\r\n");
    assert_int_equal(parse_s(buf, &r, err), -1);
    assert_non_null(strstr(err, "more than 100 lines"));
    tern_reply_free(&r);
}

static void test_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *why;
    } cases[] = {
        {"abc\r\n", 5, "does not begin with a reply code"},
        {"25\r\n", 4, "does not begin with a reply code"},
        {"\r\n", 2, "does not begin with a reply code"},
        {"199 low\r\n", 9, "reply code"},
        {"600 high\r\n", 10, "reply code"},
        {"260 second digit\r\n", 18, "reply code"},
        {"2a0 x\r\n", 7, "reply code"},
        {"250xOK\r\n", 8, "no space or hyphen"},
        {"250_OK\r\n", 8, "no space or hyphen"},
        {"250-a\r\n251 b\r\n", 14, "mixed reply codes"},
        {"250-a\r\n550 b\r\n", 14, "mixed reply codes in one reply (250, then 550)"},
        {"250 O\0K\r\n", 9, "NUL byte"},
        {"\0", 1, "NUL byte"},
        {"250 a\rb\r\n", 9, "bare CR"},
        {"250-a\r\n25", 9, NULL}, /* incomplete: needs more, no error */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct tern_reply r = {0};
        char err[256] = "";
        assert_int_equal(parse(cases[i].in, cases[i].len, 64, &r, err, sizeof err), -1);
        if (cases[i].why) {
            if (!strstr(err, cases[i].why))
                fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].why);
        } else {
            assert_string_equal(err, "");
        }
        tern_reply_free(&r);
    }
}

/* Every way of splitting a reply in two, and byte by byte, gives the same reply. */
static void test_every_split(void **state)
{
    (void)state;
    const char *in = "250-mail.example.org greets you\r\n250-2.0.0 PIPELINING\r\n"
                     "250-SIZE 1000\n250 2.0.0 HELP\r\n";
    size_t n = strlen(in);
    struct tern_reply whole = {0}, r = {0};
    assert_int_equal(parse(in, n, n, &whole, NULL, 0), 0);
    for (size_t cut = 1; cut < n; cut++) {
        struct rparse p;
        rparse_init(&p);
        size_t used1, used2;
        assert_int_equal(rparse_feed(&p, in, cut, &used1), 0);
        assert_int_equal(used1, cut);
        assert_int_equal(rparse_feed(&p, in + cut, n - cut, &used2), 1);
        assert_int_equal(used1 + used2, n);
        assert_int_equal(rparse_take(&p, &r), 0);
        assert_int_equal(r.code, whole.code);
        assert_int_equal(r.nlines, whole.nlines);
        assert_string_equal(r.text, whole.text);
        rparse_reset(&p);
    }
    assert_int_equal(parse(in, n, 1, &r, NULL, 0), 0);
    assert_string_equal(r.text, whole.text);
    assert_int_equal(whole.nlines, 4);
    tern_reply_free(&whole);
    tern_reply_free(&r);
}

/* The seeds' client table: each command's positive and intermediate codes, its listed refusals,
 * and codes it should never see, which count as negative too. */
static void test_classification(void **state)
{
    (void)state;
    static const struct {
        enum tern_cmd cmd;
        int pos[4];
        int inter;
        int neg[10];
    } table[] = {
        {TERN_CMD_CONNECT, {220}, 0, {554, 421, 250, 221}},
        {TERN_CMD_STARTTLS, {220}, 0, {454, 501, 502, 250}},
        {TERN_CMD_EHLO, {250}, 0, {502, 504, 550, 500, 501, 421}},
        {TERN_CMD_HELO, {250}, 0, {502, 504, 550, 500, 501, 421}},
        {TERN_CMD_AUTH, {235}, 334, {530, 535, 538, 454, 250}},
        {TERN_CMD_MAIL, {250}, 0, {451, 452, 455, 503, 550, 552, 553, 555, 251}},
        {TERN_CMD_RCPT, {250, 251}, 0, {450, 451, 452, 455, 503, 550, 551, 552, 553, 555}},
        {TERN_CMD_DATA, {0}, 354, {450, 451, 452, 503, 550, 552, 554, 250}},
        {TERN_CMD_DATA_END, {250}, 0, {451, 452, 552, 554, 354}},
        {TERN_CMD_BDAT, {250}, 0, {451, 452, 552, 554, 354}},
        {TERN_CMD_RSET, {250, 200}, 0, {500, 501, 504, 421, 221}},
        {TERN_CMD_VRFY, {250, 251, 252}, 0, {502, 504, 550, 551, 553}},
        {TERN_CMD_EXPN, {250, 252}, 0, {502, 504, 550, 251}},
        {TERN_CMD_HELP, {211, 214}, 0, {502, 504, 250}},
        {TERN_CMD_NOOP, {250, 200}, 0, {500, 421, 221}},
        {TERN_CMD_QUIT, {221}, 0, {500, 250}},
        {TERN_CMD_SEND, {250}, 0, {552, 451, 452, 500, 501, 502, 421}},
        {TERN_CMD_SOML, {250}, 0, {552, 451, 452, 500, 501, 502, 421}},
        {TERN_CMD_SAML, {250}, 0, {552, 451, 452, 500, 501, 502, 421}},
        {TERN_CMD_TURN, {250}, 0, {502, 500, 503}},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        for (size_t k = 0; k < 4 && table[i].pos[k]; k++)
            assert_int_equal(smtpc_classify(table[i].cmd, table[i].pos[k]), TERN_POSITIVE);
        if (table[i].inter)
            assert_int_equal(smtpc_classify(table[i].cmd, table[i].inter), TERN_INTERMEDIATE);
        for (size_t k = 0; k < 10 && table[i].neg[k]; k++)
            if (smtpc_classify(table[i].cmd, table[i].neg[k]) != TERN_NEGATIVE)
                fail_msg("%s %d should be negative", tern_cmd_name(table[i].cmd), table[i].neg[k]);
        /* libtern's own codes are never success */
        assert_int_equal(smtpc_classify(table[i].cmd, TERN_CODE_CONNECTION), TERN_NEGATIVE);
        assert_int_equal(smtpc_classify(table[i].cmd, TERN_CODE_LOCAL), TERN_NEGATIVE);
    }
    /* a verb the table does not know (ETRN): the reply's own class */
    assert_int_equal(smtpc_classify(TERN_CMD_OTHER, 250), TERN_POSITIVE);
    assert_int_equal(smtpc_classify(TERN_CMD_OTHER, 354), TERN_INTERMEDIATE);
    assert_int_equal(smtpc_classify(TERN_CMD_OTHER, 458), TERN_NEGATIVE);
    /* every seeds verb is known by name, any case */
    static const char *const verbs[] = {"HELO", "EHLO", "MAIL", "RCPT",     "DATA", "RSET",
                                        "VRFY", "EXPN", "HELP", "NOOP",     "QUIT", "SEND",
                                        "SOML", "SAML", "TURN", "STARTTLS", "AUTH", "BDAT"};
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        enum tern_cmd c = smtpc_cmd_of(verbs[i]);
        assert_int_not_equal(c, TERN_CMD_OTHER);
        assert_string_equal(tern_cmd_name(c), verbs[i]);
    }
    assert_int_equal(smtpc_cmd_of("rcpt"), TERN_CMD_RCPT);
    assert_int_equal(smtpc_cmd_of("ETRN"), TERN_CMD_OTHER);
    assert_int_equal(smtpc_cmd_of("end of data"), TERN_CMD_OTHER);
    assert_string_equal(tern_class_name(TERN_INTERMEDIATE), "intermediate");
}

struct tlog {
    char text[4096];
    size_t len;
};

static void log_line(void *arg, char dir, const char *line, size_t len)
{
    struct tlog *t = arg;
    t->len += (size_t)snprintf(t->text + t->len, sizeof t->text - t->len, "%c: %.*s\n", dir,
                               (int)len, line);
}

/* Feeds s until the core stops taking it; returns what it left. */
static const char *feed_all(struct smtpc *c, const char *s)
{
    size_t n = strlen(s), off = 0, used;
    while (off < n && (used = smtpc_feed(c, s + off, n - off)) > 0)
        off += used;
    return s + off;
}

static void test_pipelined_core(void **state)
{
    (void)state;
    struct tlog t = {0};
    struct smtpc *c = smtpc_new(log_line, &t);
    char why[256];
    assert_int_equal(smtpc_expect(c, TERN_CMD_CONNECT), 0);
    assert_int_equal(smtpc_command(c, TERN_CMD_MAIL, "MAIL FROM:<a@x>", false, why, 256), 0);
    assert_int_equal(smtpc_command(c, TERN_CMD_RCPT, "RCPT TO:<b@y>", false, why, 256), 0);
    assert_int_equal(smtpc_command(c, TERN_CMD_RCPT, "RCPT TO:<c@y>", false, why, 256), 0);
    assert_int_equal(smtpc_command(c, TERN_CMD_DATA, "DATA", false, why, 256), 0);
    const char *out;
    size_t n = smtpc_output(c, &out);
    const char *want = "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    smtpc_sent(c, 5);
    assert_int_equal(smtpc_output(c, &out), strlen(want) - 5);
    smtpc_sent(c, 1000);
    assert_int_equal(smtpc_output(c, &out), 0);
    assert_int_equal(smtpc_waiting(c), 5);
    assert_int_equal(smtpc_head(c), TERN_CMD_CONNECT);
    assert_string_equal(
        feed_all(c, "220 hi\r\n250 ok\r\n550 5.1.1 no\r\n251 fwd\r\n354 go\r\nEXTRA"),
        "EXTRA"); /* nothing awaits it: left with the caller */
    struct tern_reply r = {0};
    static const struct {
        enum tern_cmd cmd;
        int code;
        enum tern_class cls;
    } exp[] = {{TERN_CMD_CONNECT, 220, TERN_POSITIVE},
               {TERN_CMD_MAIL, 250, TERN_POSITIVE},
               {TERN_CMD_RCPT, 550, TERN_NEGATIVE},
               {TERN_CMD_RCPT, 251, TERN_POSITIVE},
               {TERN_CMD_DATA, 354, TERN_INTERMEDIATE}};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(smtpc_reply(c, &r), 1);
        assert_int_equal(r.cmd, exp[i].cmd);
        assert_int_equal(r.code, exp[i].code);
        assert_int_equal(r.cls, exp[i].cls);
    }
    assert_int_equal(smtpc_reply(c, &r), 0);
    assert_int_equal(smtpc_waiting(c), 0);
    /* nothing awaited: nothing read */
    assert_int_equal(smtpc_feed(c, "250 late\r\n", 10), 0);
    assert_null(smtpc_broken(c));
    assert_non_null(strstr(t.text, "C: RCPT TO:<c@y>\nC: DATA\nS: 220 hi\n"));
    assert_non_null(strstr(t.text, "S: 550 5.1.1 no\n"));
    tern_reply_free(&r);
    smtpc_free(c);
}

static void test_command_checks(void **state)
{
    (void)state;
    struct smtpc *c = smtpc_new(NULL, NULL);
    char why[256];
    assert_int_equal(
        smtpc_command(c, TERN_CMD_MAIL, "MAIL FROM:<a>\r\nRCPT TO:<b>", false, why, sizeof why),
        -1);
    assert_non_null(strstr(why, "CR or LF"));
    assert_int_equal(smtpc_command(c, TERN_CMD_NOOP, "NOOP\n", false, why, sizeof why), -1);
    char *big = malloc(SMTPC_MAX_COMMAND + 2);
    if (!big)
        abort(); /* out of memory: nothing to test */
    memset(big, 'a', SMTPC_MAX_COMMAND + 1);
    big[SMTPC_MAX_COMMAND + 1] = '\0';
    assert_int_equal(smtpc_command(c, TERN_CMD_NOOP, big, false, why, sizeof why), -1);
    assert_non_null(strstr(why, "octets long"));
    free(big);
    const char *out;
    assert_int_equal(smtpc_output(c, &out), 0); /* nothing half-queued */
    for (int i = 0; i < SMTPC_MAX_PENDING; i++)
        assert_int_equal(smtpc_command(c, TERN_CMD_NOOP, "NOOP", false, why, sizeof why), 0);
    assert_int_equal(smtpc_command(c, TERN_CMD_NOOP, "NOOP", false, why, sizeof why), -1);
    assert_non_null(strstr(why, "waiting for replies"));
    smtpc_reset(c);
    assert_int_equal(smtpc_waiting(c), 0);
    assert_int_equal(smtpc_output(c, &out), 0);
    smtpc_free(c);
}

static void test_starttls_stop_and_broken(void **state)
{
    (void)state;
    struct smtpc *c = smtpc_new(NULL, NULL);
    char why[256];
    smtpc_command(c, TERN_CMD_STARTTLS, "STARTTLS", false, why, sizeof why);
    smtpc_command(c, TERN_CMD_EHLO, "EHLO x", false, why, sizeof why); /* (misuse) */
    const char *in = "220 go ahead\r\n250 injected\r\n";
    size_t used = smtpc_feed(c, in, strlen(in));
    assert_int_equal(used, strlen("220 go ahead\r\n")); /* the rest is not read in clear */
    struct tern_reply r = {0};
    assert_int_equal(smtpc_reply(c, &r), 1);
    assert_int_equal(r.cls, TERN_POSITIVE);
    /* a malformed reply breaks the core for good */
    assert_int_equal(smtpc_feed(c, "25O x\r\n", 7), 7);
    assert_non_null(smtpc_broken(c));
    assert_int_equal(smtpc_feed(c, "250 fine\r\n", 10), 0);
    assert_int_equal(smtpc_reply(c, &r), 0);
    smtpc_reset(c);
    assert_null(smtpc_broken(c));
    tern_reply_free(&r);
    smtpc_free(c);
}

/* Transforms in, whole and one octet at a time, and checks both give want. */
static void check_transform(const char *in, size_t n, bool dots, const char *want)
{
    struct smtpc_stuff st = {.bol = true, .dots = dots};
    char *out = malloc(SMTPC_TRANSFORM_MAX(n) + 8);
    if (!out)
        abort(); /* out of memory: nothing to test */
    size_t len = smtpc_transform(&st, in, n, true, out);
    if (len != strlen(want) || memcmp(out, want, len) != 0)
        fail_msg("transform of \"%.*s\" gave \"%.*s\"", (int)n, in, (int)len, out);
    struct smtpc_stuff st2 = {.bol = true, .dots = dots};
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += smtpc_transform(&st2, in + i, 1, false, out + o);
    o += smtpc_transform(&st2, "", 0, true, out + o);
    assert_int_equal(o, len);
    assert_memory_equal(out, want, o);
    struct smtpc_stuff st3 = {.bol = true, .dots = dots};
    assert_int_equal(smtpc_measure(&st3, in, n, true), len);
    free(out);
}

static void test_data_transform(void **state)
{
    (void)state;
    check_transform("", 0, true, "");
    check_transform("a", 1, true, "a\r\n");
    check_transform("a\r\nb\r\n", 6, true, "a\r\nb\r\n");
    check_transform("a\nb", 3, true, "a\r\nb\r\n");
    check_transform(".\n..x\n.", 7, true, "..\r\n...x\r\n..\r\n");
    check_transform("x\r\n.\r\ny", 7, true, "x\r\n..\r\ny\r\n");
    check_transform("a\rb\r", 4, true, "a\r\nb\r\n");       /* bare CR never goes out */
    check_transform("a\r\r\nb", 5, true, "a\r\n\r\nb\r\n"); /* CR CR LF: two line ends */
    check_transform("\n\n", 2, true, "\r\n\r\n");
    check_transform(". x.y\n", 6, true, ".. x.y\r\n"); /* only a leading dot is doubled */
    check_transform(".\n", 2, false, ".\r\n");         /* BDAT: no stuffing */
    check_transform("caf\xc3\xa9\n", 6, true, "caf\xc3\xa9\r\n");
    struct smtpc_stuff st = {.bol = true};
    smtpc_measure(&st, "plain", 5, true);
    assert_false(st.eight);
    smtpc_measure(&st, "\xe9", 1, true);
    assert_true(st.eight);
    /* the core queues the same bytes, then ".CRLF", and expects the reply */
    struct smtpc *c = smtpc_new(NULL, NULL);
    struct smtpc_stuff ds = {.bol = true, .dots = true};
    assert_int_equal(smtpc_data(c, &ds, ".hi\nthere\r", 10), 0);
    assert_int_equal(smtpc_data(c, &ds, "\n.", 2), 0);
    assert_int_equal(smtpc_data_end(c, &ds), 0);
    const char *out;
    size_t n = smtpc_output(c, &out);
    const char *want = "..hi\r\nthere\r\n..\r\n.\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    assert_int_equal(smtpc_head(c), TERN_CMD_DATA_END);
    smtpc_free(c);
}

static void test_caps(void **state)
{
    (void)state;
    struct tern_reply r = {0};
    assert_int_equal(parse_s("250-mx.example.org Hello there\r\n250-PIPELINING\r\n"
                             "250-SIZE 10240000\r\n250-8BITMIME\r\n250-smtputf8\r\n"
                             "250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-STARTTLS\r\n"
                             "250-AUTH plain LOGIN SCRAM-SHA-256 X<bad> PLAIN\r\n"
                             "250-AUTH=CRAM-MD5 OVERLONG-MECHANISM-NAME-HERE\r\n250 DSN\r\n",
                             &r, NULL),
                     0);
    struct tern_caps caps;
    smtpc_parse_caps(&r, true, &caps);
    assert_int_equal(caps.esmtp, 1);
    assert_string_equal(caps.domain, "mx.example.org");
    unsigned all = TERN_CAP_PIPELINING | TERN_CAP_SIZE | TERN_CAP_8BITMIME | TERN_CAP_SMTPUTF8 |
                   TERN_CAP_ENHANCEDSTATUSCODES | TERN_CAP_CHUNKING | TERN_CAP_STARTTLS |
                   TERN_CAP_AUTH | TERN_CAP_DSN;
    assert_int_equal(caps.flags, all);
    assert_int_equal(caps.size, 10240000ULL);
    assert_string_equal(caps.auth, "PLAIN LOGIN SCRAM-SHA-256 CRAM-MD5");
    /* SIZE without a number, or with junk or an absurd one: offered, limit unknown */
    assert_int_equal(parse_s("250-x\r\n250-SIZE 12ab\r\n250 PIPELININGX\r\n", &r, NULL), 0);
    smtpc_parse_caps(&r, true, &caps);
    assert_int_equal(caps.flags, TERN_CAP_SIZE);
    assert_int_equal(caps.size, 0);
    assert_int_equal(parse_s("250-x\r\n250 SIZE 99999999999999999999999\r\n", &r, NULL), 0);
    smtpc_parse_caps(&r, true, &caps);
    assert_int_equal(caps.size, 0);
    /* HELO (no ESMTP), a refusal, and a hostile domain */
    assert_int_equal(parse_s("250 old.example Hello\r\n", &r, NULL), 0);
    smtpc_parse_caps(&r, false, &caps);
    assert_int_equal(caps.esmtp, 0);
    assert_string_equal(caps.domain, "old.example");
    assert_int_equal(parse_s("502 no EHLO\r\n", &r, NULL), 0);
    smtpc_parse_caps(&r, true, &caps);
    assert_int_equal(caps.esmtp, 0);
    assert_int_equal(caps.flags, 0);
    assert_int_equal(parse_s("250 ev\x1b[2Jil\r\n", &r, NULL), 0);
    smtpc_parse_caps(&r, true, &caps);
    assert_string_equal(caps.domain, "ev");
    tern_reply_free(&r);
}

static void test_transcript_masks_auth(void **state)
{
    (void)state;
    struct tlog t = {0};
    struct smtpc *c = smtpc_new(log_line, &t);
    char why[256];
    smtpc_command(c, TERN_CMD_AUTH, "AUTH PLAIN AHVzZXIAc2VjcmV0", true, why, sizeof why);
    smtpc_command(c, TERN_CMD_AUTH, "AUTH LOGIN", false, why, sizeof why);
    smtpc_command(c, TERN_CMD_AUTH, "c2VjcmV0", true, why, sizeof why);
    assert_string_equal(t.text, "C: AUTH PLAIN <auth data hidden>\nC: AUTH LOGIN\n"
                                "C: <auth data hidden>\n");
    assert_null(strstr(t.text, "AHVzZXIAc2VjcmV0"));
    const char *out;
    smtpc_sent(c, smtpc_output(c, &out));
    assert_string_equal(feed_all(c, "535-5.7.8 bad\r\n535 5.7.8 credentials\r\n"), "");
    assert_non_null(strstr(t.text, "S: 535-5.7.8 bad\nS: 535 5.7.8 credentials\n"));
    smtpc_free(c);
}

static void test_local_replies(void **state)
{
    (void)state;
    struct tern_reply r = {0}, copy = {0};
    creply_local(&r, TERN_CODE_CONNECTION, TERN_CMD_CONNECT, "connect: %s", "Connection refused");
    assert_int_equal(r.code, 101);
    assert_int_equal(r.cls, TERN_NEGATIVE);
    assert_int_equal(r.nlines, 1);
    assert_string_equal(tern_reply_text(&r), "connect: Connection refused");
    assert_int_equal(creply_copy(&copy, &r), 0);
    tern_reply_free(&r);
    assert_string_equal(copy.lines[0], "connect: Connection refused");
    assert_int_equal(copy.cmd, TERN_CMD_CONNECT);
    tern_reply_free(&copy);
    tern_reply_free(NULL);
    assert_string_equal(tern_reply_text(NULL), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_line),
        cmocka_unit_test(test_multi_line_enhanced),
        cmocka_unit_test(test_line_length_bound),
        cmocka_unit_test(test_line_count_bound),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_classification),
        cmocka_unit_test(test_pipelined_core),
        cmocka_unit_test(test_command_checks),
        cmocka_unit_test(test_starttls_stop_and_broken),
        cmocka_unit_test(test_data_transform),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_transcript_masks_auth),
        cmocka_unit_test(test_local_replies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

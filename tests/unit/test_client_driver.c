/* Unit tests of libtern's blocking driver (src/client/driver.c, transport.c) against the scripted
 * loopback server of test_client_srv.h: connection refused and unresolvable ports as 101, a
 * greeting that never comes (timeout), 554 greetings, every command of the seeds with its reply
 * classified, the EHLO-to-HELO fallback, malformed and over-long replies over TCP, a server that
 * hangs up, and TLS: STARTTLS with the certificate verified against a CA file, refused without
 * it or under another name, accepted when insecure, implicit TLS, STARTTLS not offered, and
 * bytes injected after the 220 to STARTTLS. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tern/client.h"
#include "test_client_srv.h"

#include <time.h>

struct tlog {
    char text[8192];
    size_t len;
};

static void log_line(void *arg, char dir, const char *line, size_t len)
{
    struct tlog *t = arg;
    if (t->len < sizeof t->text)
        t->len += (size_t)snprintf(t->text + t->len, sizeof t->text - t->len, "%c: %.*s\n", dir,
                                   (int)len, line);
}

static struct tern_client *client(struct tlog *t, const char *ca, int insecure)
{
    struct tern_client_opts o = {
        .helo_name = "client.test",
        .ca_file = ca,
        .insecure = insecure,
        .transcript = t ? log_line : NULL,
        .transcript_arg = t,
        .timeouts = {.connect = 5000, .greeting = 5000, .other = 5000},
    };
    struct tern_client *c = tern_client_new(&o);
    assert_non_null(c);
    return c;
}

#define NSTEPS(a) (sizeof(a) / sizeof((a)[0]))

static void test_connect_refused(void **state)
{
    (void)state;
    /* a port that was free a moment ago and has no listener now */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(a.sin_port));
    close(fd);
    struct tern_client *c = client(NULL, NULL, 0);
    struct tern_reply r = {0};
    assert_int_equal(tern_connect(c, "127.0.0.1", port, TERN_TLS_NONE, &r), -1);
    assert_int_equal(r.code, TERN_CODE_CONNECTION);
    assert_int_equal(r.cls, TERN_NEGATIVE);
    assert_int_equal(r.cmd, TERN_CMD_CONNECT);
    assert_non_null(strstr(tern_reply_text(&r), "Connection refused"));
    assert_non_null(strstr(tern_reply_text(&r), port));
    assert_false(tern_is_connected(c));
    /* later calls say why there is no connection */
    assert_int_equal(tern_noop(c, &r), -1);
    assert_int_equal(r.code, TERN_CODE_CONNECTION);
    assert_non_null(strstr(tern_reply_text(&r), "Connection refused"));
    /* a service name getaddrinfo does not know: 101 with its reason */
    assert_int_equal(tern_connect(c, "127.0.0.1", "no-such-service", TERN_TLS_NONE, &r), -1);
    assert_int_equal(r.code, TERN_CODE_CONNECTION);
    assert_non_null(strstr(tern_reply_text(&r), "cannot resolve 127.0.0.1 port no-such-service"));
    tern_reply_free(&r);
    tern_free(c);
}

static void test_not_connected(void **state)
{
    (void)state;
    struct tern_client *c = client(NULL, NULL, 0);
    struct tern_reply r = {0};
    assert_int_equal(tern_noop(c, &r), -1);
    assert_int_equal(r.code, TERN_CODE_LOCAL);
    assert_non_null(strstr(tern_reply_text(&r), "not connected"));
    assert_int_equal(tern_connect(c, "", NULL, TERN_TLS_NONE, &r), -1);
    assert_int_equal(r.code, TERN_CODE_LOCAL);
    assert_int_equal(tern_command(c, "NO OP", NULL, &r), -1);
    assert_non_null(strstr(tern_reply_text(&r), "not an SMTP verb"));
    assert_int_equal(tern_quit(c, NULL), -1);
    assert_int_equal(tern_tls_info(c, &(struct tern_tls_info){0}), -1);
    tern_reply_free(&r);
    tern_free(c);
    tern_free(NULL);
}

static void test_greeting_timeout(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {{NULL, NULL, SRV_HANG}};
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client_opts o = {.timeouts = {.greeting = 300}};
    struct tern_client *c = tern_client_new(&o);
    struct tern_reply r = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(tern_connect(c, "127.0.0.1", s->port, TERN_TLS_NONE, &r), -1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 250 && ms < 3000);
    assert_int_equal(r.code, TERN_CODE_CONNECTION);
    assert_non_null(strstr(tern_reply_text(&r), "timed out after 300 ms"));
    assert_non_null(strstr(tern_reply_text(&r), "connect")); /* the greeting was awaited */
    tern_free(c);                                            /* closes: the server's read ends */
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
}

static void test_greeting_554(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "554 5.3.2 No SMTP service here\r\n", 0},
        {"QUIT\r\n", "221 2.0.0 Bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = client(NULL, NULL, 0);
    struct tern_reply r = {0};
    assert_int_equal(tern_connect(c, "127.0.0.1", s->port, TERN_TLS_NONE, &r), -1);
    assert_int_equal(r.code, 554);
    assert_string_equal(r.enh, "5.3.2");
    assert_int_equal(r.cls, TERN_NEGATIVE);
    assert_false(tern_is_connected(c));
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

static void test_every_command(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test ESMTP\r\n", 0},
        {"EHLO client.test\r\n",
         "250-mx.test hi\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
         "250 ENHANCEDSTATUSCODES\r\n",
         0},
        {"HELO other.test\r\n", "250 mx.test\r\n", 0},
        {"VRFY bob\r\n", "252 2.5.0 Cannot VRFY user\r\n", 0},
        {"EXPN staff\r\n", "250-2.1.5 Ann <ann@mx.test>\r\n250 2.1.5 Bob <bob@mx.test>\r\n", 0},
        {"HELP\r\n", "214-2.0.0 Commands:\r\n214 2.0.0 HELO EHLO MAIL\r\n", 0},
        {"HELP FOO\r\n", "504 5.5.1 No help for FOO\r\n", 0},
        {"NOOP\r\n", "250 2.0.0 OK\r\n", 0},
        {"RSET\r\n", "250 2.0.0 OK\r\n", 0},
        {"SEND FROM:<a@mx.test>\r\n", "250 2.1.0 OK\r\n", 0},
        {"SOML FROM:<a@mx.test>\r\n", "250 2.1.0 OK\r\n", 0},
        {"SAML FROM:<a@mx.test>\r\n", "502 5.5.1 Not implemented\r\n", 0},
        {"MAIL FROM:<> SIZE=10\r\n", "250 2.1.0 OK\r\n", 0},
        {"RCPT TO:<x@mx.test>\r\n", "251 2.1.5 will forward\r\n", 0},
        {"DATA\r\n", "354 go ahead\r\n", 0},
        {"..x\r\n.\r\n", "250 2.0.0 queued\r\n", 0},
        {"ETRN mx.test\r\n", "250 2.0.0 queue run\r\n", 0},
        {"noop\r\n", "200 nonstandard ok\r\n", 0},
        {"VRFY\r\n", "501 5.5.4 Syntax: VRFY address\r\n", 0},
        {"TURN\r\n", "502 5.5.1 no\r\n", 0},
        {"AUTH PLAIN AGEAYg==\r\n", "503 5.5.1 no AUTH here\r\n", 0},
        {"QUIT\r\n", "221 2.0.0 Bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tlog t = {0};
    struct tern_client *c = client(&t, NULL, 0);
    struct tern_reply r = {0};
    assert_int_equal(tern_connect(c, "127.0.0.1", s->port, TERN_TLS_NONE, &r), 0);
    assert_int_equal(r.code, 220);
    assert_int_equal(r.cmd, TERN_CMD_CONNECT);
    assert_int_equal(tern_ehlo(c, NULL, &r), 0);
    const struct tern_caps *caps = tern_caps(c);
    assert_int_equal(caps->flags,
                     TERN_CAP_PIPELINING | TERN_CAP_SIZE | TERN_CAP_ENHANCEDSTATUSCODES);
    assert_int_equal(caps->size, 1000);
    assert_int_equal(tern_helo(c, "other.test", &r), 0);
    assert_int_equal(tern_caps(c)->esmtp, 0); /* HELO: no extensions any more */
    assert_int_equal(tern_vrfy(c, "bob", &r), 0);
    assert_int_equal(r.code, 252);
    assert_int_equal(tern_expn(c, "staff", &r), 0);
    assert_int_equal(r.nlines, 2);
    assert_string_equal(r.lines[1], "Bob <bob@mx.test>");
    assert_int_equal(tern_help(c, NULL, &r), 0);
    assert_int_equal(r.code, 214);
    assert_int_equal(tern_help(c, "FOO", &r), -1);
    assert_int_equal(r.code, 504);
    assert_int_equal(r.cls, TERN_NEGATIVE);
    assert_int_equal(tern_noop(c, &r), 0);
    assert_int_equal(tern_rset(c, &r), 0);
    assert_int_equal(tern_send_from(c, "a@mx.test", &r), 0);
    assert_int_equal(r.cmd, TERN_CMD_SEND);
    assert_int_equal(tern_soml_from(c, "a@mx.test", &r), 0);
    assert_int_equal(tern_saml_from(c, "a@mx.test", &r), -1);
    assert_int_equal(r.code, 502);
    assert_int_equal(tern_mail(c, "", "SIZE=10", &r), 0);
    assert_int_equal(tern_rcpt(c, "x@mx.test", NULL, &r), 0); /* 251 is positive for RCPT */
    assert_int_equal(r.code, 251);
    assert_int_equal(tern_data_begin(c, &r), 0);
    assert_int_equal(r.cls, TERN_INTERMEDIATE);
    assert_int_equal(tern_noop(c, &r), -1);
    assert_int_equal(r.code, TERN_CODE_LOCAL);
    assert_non_null(strstr(tern_reply_text(&r), "tern_data_end"));
    assert_int_equal(tern_data_write(c, ".x", 2, &r), 0);
    assert_int_equal(tern_data_end(c, &r), 0);
    assert_int_equal(r.cmd, TERN_CMD_DATA_END);
    assert_int_equal(tern_command(c, "ETRN", "mx.test", &r), 0); /* unknown verb: 2yz positive */
    assert_int_equal(r.cmd, TERN_CMD_OTHER);
    assert_int_equal(tern_command(c, "noop", NULL, &r), 0); /* RFC 876's 200 */
    assert_int_equal(r.code, 200);
    assert_int_equal(r.cmd, TERN_CMD_NOOP);
    assert_int_equal(tern_command(c, "VRFY", NULL, &r), -1);
    assert_int_equal(r.code, 501);
    assert_int_equal(tern_turn(c, &r), -1);
    assert_int_equal(r.code, 502);
    assert_true(tern_is_connected(c)); /* a refused TURN changes nothing */
    assert_int_equal(tern_command(c, "AUTH", "PLAIN AGEAYg==", &r), -1);
    assert_int_equal(r.code, 503);
    assert_int_equal(tern_command(c, "QUIT", NULL, &r), 0);
    assert_int_equal(r.code, 221);
    assert_false(tern_is_connected(c));
    srv_join(s);
    /* the transcript: both directions, multi-line replies, AUTH data hidden, the message not */
    assert_non_null(strstr(t.text, "C: EHLO client.test\nS: 250-mx.test hi\nS: 250-PIPELINING\n"));
    assert_non_null(strstr(t.text, "C: <message: 5 octets>\nC: .\nS: 250 2.0.0 queued\n"));
    assert_non_null(strstr(t.text, "C: AUTH PLAIN <auth data hidden>\n"));
    assert_null(strstr(t.text, "AGEAYg"));
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

static void test_ehlo_falls_back_to_helo(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "220 old.test SMTP\r\n", 0},
        {"EHLO client.test\r\n", "502 Command not implemented\r\n", 0},
        {"HELO client.test\r\n", "250 old.test\r\n", 0},
        {"EHLO x\r\n", "500 Syntax error, command unrecognised\r\n", 0},
        {"HELO x\r\n", "250 old.test\r\n", 0},
        {"EHLO y\r\n", "550 5.7.1 go away\r\n", 0}, /* not 500/502: no fallback */
        {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = client(NULL, NULL, 0);
    struct tern_reply r = {0};
    assert_int_equal(tern_connect(c, "127.0.0.1", s->port, TERN_TLS_NONE, &r), 0);
    assert_int_equal(tern_ehlo(c, NULL, &r), 0);
    assert_int_equal(r.cmd, TERN_CMD_HELO);
    assert_int_equal(r.code, 250);
    assert_int_equal(tern_caps(c)->esmtp, 0);
    assert_string_equal(tern_caps(c)->domain, "old.test");
    assert_int_equal(tern_ehlo(c, "x", &r), 0);
    assert_int_equal(r.cmd, TERN_CMD_HELO);
    assert_int_equal(tern_ehlo(c, "y", &r), -1);
    assert_int_equal(r.code, 550);
    assert_int_equal(r.cmd, TERN_CMD_EHLO);
    assert_int_equal(tern_quit(c, &r), 0);
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

static void test_turn_accepted(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"TURN\r\n", "250 OK, now you are the server\r\n", SRV_HANG},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = client(NULL, NULL, 0);
    struct tern_reply r = {0};
    assert_int_equal(tern_connect(c, "127.0.0.1", s->port, TERN_TLS_NONE, &r), 0);
    assert_int_equal(tern_command(c, "TURN", NULL, &r), 0);
    assert_int_equal(r.code, 250);
    assert_int_equal(r.cmd, TERN_CMD_TURN);
    /* libtern cannot be the server: closed, and later calls say why */
    assert_false(tern_is_connected(c));
    assert_int_equal(tern_noop(c, &r), -1);
    assert_non_null(strstr(tern_reply_text(&r), "TURN reversed the roles"));
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

/* A server that breaks the grammar, floods a line, or hangs up: 101, the connection closed. */
static void hostile(const char *ehlo_reply, unsigned flags, const char *why)
{
    const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", ehlo_reply, flags | SRV_HANG},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = client(NULL, NULL, 0);
    struct tern_reply r = {0};
    assert_int_equal(tern_connect(c, "127.0.0.1", s->port, TERN_TLS_NONE, &r), 0);
    assert_int_equal(tern_ehlo(c, NULL, &r), -1);
    assert_int_equal(r.code, TERN_CODE_CONNECTION);
    assert_int_equal(r.cmd, TERN_CMD_EHLO);
    if (!strstr(tern_reply_text(&r), why))
        fail_msg("\"%s\" lacks \"%s\"", tern_reply_text(&r), why);
    assert_false(tern_is_connected(c));
    assert_int_equal(tern_noop(c, &r), -1); /* the reason stays */
    assert_non_null(strstr(tern_reply_text(&r), why));
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

static void test_hostile_server(void **state)
{
    (void)state;
    hostile("250-mx.test\r\n2500 PIPELINING\r\n", 0, "makes no sense");
    hostile("250-mx.test\r\n550 mixed\r\n", 0, "mixed reply codes");
    hostile("250-mx.test\r\n250 PIPE\rLINING\r\n", 0, "bare CR");
    hostile("250-mx.test\r\n", SRV_CLOSE, "the server closed the connection");
    char *flood = malloc(4000);
    if (!flood)
        abort(); /* out of memory: nothing to test */
    memset(flood, 'A', 3990);
    memcpy(flood, "250 ", 4);
    memcpy(flood + 3990, "\r\n", 3);
    hostile(flood, 0, "longer than 2048 octets");
    size_t o = 0;
    char many[150 * 12];
    for (int i = 0; i < 150; i++)
        o += (size_t)snprintf(many + o, sizeof many - o, "250-L%03d\r\n", i);
    hostile(many, 0, "more than 100 lines");
    free(flood);
    /* 421 closes the connection after its reply: what follows is a 101 saying so */
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"NOOP\r\n", "421 4.3.2 shutting down\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tern_client *c = client(NULL, NULL, 0);
    struct tern_reply r = {0};
    assert_int_equal(tern_connect(c, "127.0.0.1", s->port, TERN_TLS_NONE, &r), 0);
    assert_int_equal(tern_noop(c, &r), -1);
    assert_int_equal(r.code, 421);
    assert_false(tern_is_connected(c));
    assert_int_equal(tern_noop(c, &r), -1);
    assert_int_equal(r.code, TERN_CODE_CONNECTION);
    assert_non_null(strstr(tern_reply_text(&r), "421 shutting down"));
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

/* STARTTLS, then the certificate checked as the options say: ok is whether it should pass. */
static void starttls_case(const char *ca, int insecure, const char *tls_name, bool ok)
{
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", "250-mx.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n", 0},
        {"STARTTLS\r\n", "220 2.0.0 Ready to start TLS\r\n", SRV_TLS},
        {"EHLO client.test\r\n", "250-mx.test\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 100\r\n", 0},
        {"AUTH PLAIN AHVzZXIAcGFzcw==\r\n", "235 2.7.0 Authenticated\r\n", 0},
        {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(steps, NSTEPS(steps), false, false);
    struct tlog t = {0};
    struct tern_client_opts o = {.helo_name = "client.test",
                                 .ca_file = ca,
                                 .insecure = insecure,
                                 .tls_name = tls_name,
                                 .transcript = log_line,
                                 .transcript_arg = &t};
    struct tern_client *c = tern_client_new(&o);
    struct tern_reply r = {0};
    /* "localhost" may give ::1 first, where nobody listens: the next address is tried */
    int rc = tern_connect(c, "localhost", s->port, TERN_TLS_STARTTLS, &r);
    if (!ok) {
        assert_int_equal(rc, -1);
        assert_int_equal(r.code, TERN_CODE_CONNECTION);
        assert_int_equal(r.cmd, TERN_CMD_STARTTLS);
        assert_non_null(strstr(tern_reply_text(&r), "does not verify"));
        assert_false(tern_is_connected(c));
        pthread_join(s->th, NULL); /* its handshake failed: the script stops there */
        srv_free(s);
        tern_reply_free(&r);
        tern_free(c);
        return;
    }
    if (rc != 0)
        fail_msg("STARTTLS failed: %d %s", r.code, tern_reply_text(&r));
    assert_int_equal(r.cmd, TERN_CMD_EHLO);
    assert_true(tern_is_tls(c));
    /* the capabilities are the ones said over TLS only */
    assert_int_equal(tern_caps(c)->flags, TERN_CAP_AUTH | TERN_CAP_SIZE);
    assert_string_equal(tern_caps(c)->auth, "PLAIN LOGIN");
    struct tern_tls_info info;
    assert_int_equal(tern_tls_info(c, &info), 0);
    assert_string_equal(info.protocol, "TLSv1.3");
    assert_string_equal(info.subject, "CN=localhost");
    assert_string_equal(info.issuer, "CN=localhost");
    assert_non_null(strstr(info.not_after, " UTC"));
    assert_true(info.cipher[0] != '\0');
    assert_int_equal(info.verified, !insecure || ca);
    if (!info.verified)
        assert_true(info.verify_error[0] != '\0');
    /* PLAIN is preferred to LOGIN when SCRAM is not offered; the password stays hidden */
    assert_int_equal(tern_auth(c, NULL, "user", "pass", &r), 0);
    assert_int_equal(r.code, 235);
    assert_null(strstr(t.text, "AHVzZXIAcGFzcw"));
    assert_non_null(strstr(t.text, "C: AUTH PLAIN <auth data hidden>\nS: 235 2.7.0"));
    assert_int_equal(tern_quit(c, &r), 0);
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

static void test_starttls(void **state)
{
    (void)state;
    srv_make_cert();
    starttls_case(srv_cert_path, 0, NULL, true);            /* verified against the CA file */
    starttls_case(NULL, 0, NULL, false);                    /* self-signed: not in the store */
    starttls_case(srv_cert_path, 0, "mail.example", false); /* another name */
    starttls_case(NULL, 1, NULL, true);                     /* insecure: accepted, not verified */
}

static void test_implicit_tls(void **state)
{
    (void)state;
    static const struct srv_step steps[] = {
        {NULL, "220 mx.test ESMTP over TLS\r\n", 0},
        {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
    };
    srv_make_cert();
    struct srv *s = srv_start(steps, NSTEPS(steps), true, false);
    struct tern_client *c = client(NULL, srv_cert_path, 0);
    struct tern_reply r = {0};
    if (tern_connect(c, "127.0.0.1", s->port, TERN_TLS_IMPLICIT, &r) != 0)
        fail_msg("implicit TLS: %s", tern_reply_text(&r)); /* IP SAN 127.0.0.1 verified */
    assert_true(tern_is_tls(c));
    assert_string_equal(r.text, "mx.test ESMTP over TLS");
    assert_int_equal(tern_starttls(c, &r), -1); /* already TLS */
    assert_int_equal(r.code, TERN_CODE_LOCAL);
    assert_int_equal(tern_quit(c, &r), 0);
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

static void test_starttls_refusals(void **state)
{
    (void)state;
    /* not offered: TLS was required, so QUIT and a 101 that says so */
    static const struct srv_step plain[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", "250-mx.test\r\n250 PIPELINING\r\n", 0},
        {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
    };
    struct srv *s = srv_start(plain, NSTEPS(plain), false, false);
    struct tern_client *c = client(NULL, NULL, 0);
    struct tern_reply r = {0};
    assert_int_equal(tern_connect(c, "127.0.0.1", s->port, TERN_TLS_STARTTLS, &r), -1);
    assert_int_equal(r.code, TERN_CODE_CONNECTION);
    assert_non_null(strstr(tern_reply_text(&r), "does not offer STARTTLS"));
    srv_join(s);
    srv_free(s);
    /* refused with 454: the server's reply, and QUIT */
    static const struct srv_step refused[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", "250-mx.test\r\n250 STARTTLS\r\n", 0},
        {"STARTTLS\r\n", "454 4.7.0 TLS not available\r\n", 0},
        {"QUIT\r\n", "221 Bye\r\n", SRV_CLOSE},
    };
    s = srv_start(refused, NSTEPS(refused), false, false);
    assert_int_equal(tern_connect(c, "127.0.0.1", s->port, TERN_TLS_STARTTLS, &r), -1);
    assert_int_equal(r.code, 454);
    assert_int_equal(r.cmd, TERN_CMD_STARTTLS);
    srv_join(s);
    srv_free(s);
    /* bytes after the 220, before TLS: an injection, never read as if encrypted */
    static const struct srv_step inject[] = {
        {NULL, "220 mx.test\r\n", 0},
        {"EHLO client.test\r\n", "250-mx.test\r\n250 STARTTLS\r\n", 0},
        {"STARTTLS\r\n", "220 go ahead\r\n250-mx.test\r\n250 AUTH PLAIN\r\n", SRV_HANG},
    };
    s = srv_start(inject, NSTEPS(inject), false, false);
    assert_int_equal(tern_connect(c, "127.0.0.1", s->port, TERN_TLS_NONE, &r), 0);
    assert_int_equal(tern_ehlo(c, NULL, &r), 0);
    /* the injected bytes may arrive with the 220 or just after it: both must be refused */
    usleep(100000);
    assert_int_equal(tern_starttls(c, &r), -1);
    assert_int_equal(r.code, TERN_CODE_CONNECTION);
    if (!strstr(tern_reply_text(&r), "after its 220 to STARTTLS") &&
        !strstr(tern_reply_text(&r), "TLS handshake"))
        fail_msg("%s", tern_reply_text(&r));
    assert_false(tern_is_connected(c));
    srv_join(s);
    srv_free(s);
    tern_reply_free(&r);
    tern_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_refused),  cmocka_unit_test(test_not_connected),
        cmocka_unit_test(test_greeting_timeout), cmocka_unit_test(test_greeting_554),
        cmocka_unit_test(test_every_command),    cmocka_unit_test(test_ehlo_falls_back_to_helo),
        cmocka_unit_test(test_hostile_server),   cmocka_unit_test(test_starttls),
        cmocka_unit_test(test_implicit_tls),     cmocka_unit_test(test_starttls_refusals),
        cmocka_unit_test(test_turn_accepted),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    srv_remove_cert();
    return rc;
}

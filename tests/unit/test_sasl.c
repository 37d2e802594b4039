/* Unit tests for src/auth/sasl.c: real exchanges driven by GNU SASL's client side against
 * sasl_conn_step, for PLAIN, LOGIN and SCRAM-SHA-256: right and wrong passwords, unknown and
 * locked users, {CRYPT}-only users under SCRAM, authorization identities (admin or not),
 * initial responses (absent, empty, present), malformed base64, and the size and step bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gsasl.h>
#include <pthread.h>

#include "auth/passwd.h"
#include "auth/sasl.h"
#include "policy/tables.h"

struct fixture {
    struct tables *t;
    struct sasl *s;
    Gsasl *client;
};

static struct fixture fx;

static void add_user(struct tables *t, const char *addr, const char *pw, bool scram, bool locked,
                     bool admin)
{
    struct tables_user u;
    memset(&u, 0, sizeof(u));
    snprintf(u.addr, sizeof(u.addr), "%s", addr);
    char err[256] = "";
    int r =
        scram ? passwd_hash_scram(pw, strlen(pw), 4096, u.password, sizeof(u.password), err,
                                  sizeof(err))
              : passwd_hash_crypt(pw, strlen(pw), u.password, sizeof(u.password), err, sizeof(err));
    if (r != 0)
        fprintf(stderr, "hash for %s: %s\n", addr, err);
    assert_int_equal(r, 0);
    u.locked = locked;
    u.admin = admin;
    assert_int_equal(tables_add_user(t, &u, err, sizeof(err)), 0);
}

static int setup(void **state)
{
    char err[256] = "";
    fx.t = tables_new();
    assert_non_null(fx.t);
    assert_int_equal(tables_add_domain(fx.t, "example.org", err, sizeof(err)), 0);
    add_user(fx.t, "alice@example.org", "alice-pw", false, false, false);
    add_user(fx.t, "sam@example.org", "sam-pw", true, false, false);
    add_user(fx.t, "lock@example.org", "lock-pw", false, true, false);
    add_user(fx.t, "lockscram@example.org", "lock-pw", true, true, false);
    add_user(fx.t, "root@example.org", "root-pw", true, false, true);
    add_user(fx.t, "boss@example.org", "boss-pw", false, false, true);
    const char *pm[] = {"root"};
    assert_int_equal(tables_add_alias(fx.t, "postmaster", pm, 1, err, sizeof(err)), 0);
    assert_int_equal(tables_finish(fx.t, err, sizeof(err)), 0);
    fx.s = sasl_new(err, sizeof(err));
    if (!fx.s)
        fprintf(stderr, "sasl_new: %s\n", err);
    assert_non_null(fx.s);
    assert_int_equal(gsasl_init(&fx.client), GSASL_OK);
    return 0;
}

static int teardown(void **state)
{
    gsasl_done(fx.client);
    sasl_free(fx.s);
    tables_free(fx.t);
    return 0;
}

/* What one exchange came to. */
struct result {
    enum sasl_status st;
    char user[TABLES_ADDR_MAX + 1];
    char why[256];
    char authid[TABLES_ADDR_MAX + 1];
    int steps;
    int client_rc; /* GNU SASL's client verdict on the server's last message */
};

/* Runs mech between GNU SASL's client (authid, password, authzid may be NULL) and our server.
 * initial: the client sends its first message with AUTH (an initial response). */
static struct result run(const char *mech, const char *authid, const char *password,
                         const char *authzid, bool initial)
{
    struct result r;
    memset(&r, 0, sizeof(r));
    Gsasl_session *cs = NULL;
    assert_int_equal(gsasl_client_start(fx.client, mech, &cs), GSASL_OK);
    if (authid)
        gsasl_property_set(cs, GSASL_AUTHID, authid);
    if (password)
        gsasl_property_set(cs, GSASL_PASSWORD, password);
    if (authzid)
        gsasl_property_set(cs, GSASL_AUTHZID, authzid);
    char err[256] = "";
    struct sasl_conn *c = sasl_conn_new(fx.s, mech, fx.t, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(sasl_conn_authid(c), "");

    char *resp = NULL; /* base64 from the client; NULL: no initial response */
    if (initial) {
        r.client_rc = gsasl_step64(cs, NULL, &resp);
        assert_true(r.client_rc == GSASL_OK || r.client_rc == GSASL_NEEDS_MORE);
    }
    for (;;) {
        char *chal = NULL;
        r.st = sasl_conn_step(c, resp, &chal, r.user, sizeof(r.user), r.why, sizeof(r.why));
        r.steps++;
        free(resp);
        resp = NULL;
        if (r.st != SASL_CONTINUE) {
            assert_null(chal);
            break;
        }
        assert_non_null(chal);
        r.client_rc = gsasl_step64(cs, chal, &resp);
        free(chal);
        if (r.client_rc != GSASL_OK && r.client_rc != GSASL_NEEDS_MORE) {
            gsasl_free(resp);
            resp = NULL;
            break;
        }
        assert_true(r.steps < 10);
    }
    snprintf(r.authid, sizeof(r.authid), "%s", sasl_conn_authid(c));
    if (password && *password)
        assert_null(strstr(r.why, password)); /* never the secret in a reason */
    free(resp);
    sasl_conn_free(c);
    gsasl_finish(cs);
    return r;
}

/* One raw step on a fresh exchange, for malformed input the real client never sends. */
static enum sasl_status raw_steps(const char *mech, const char *const *responses, size_t n,
                                  char **last_out)
{
    char err[256] = "", user[TABLES_ADDR_MAX + 1], why[256];
    struct sasl_conn *c = sasl_conn_new(fx.s, mech, fx.t, err, sizeof(err));
    assert_non_null(c);
    enum sasl_status st = SASL_TEMP;
    for (size_t i = 0; i < n; i++) {
        char *out = NULL;
        st = sasl_conn_step(c, responses[i], &out, user, sizeof(user), why, sizeof(why));
        if (last_out && i + 1 == n)
            *last_out = out;
        else
            free(out);
        if (st != SASL_CONTINUE && i + 1 < n) {
            /* An exchange that has ended stays ended. */
            char *o2 = NULL;
            assert_int_equal(
                sasl_conn_step(c, responses[i + 1], &o2, user, sizeof(user), why, sizeof(why)),
                SASL_FAIL);
            assert_null(o2);
            break;
        }
    }
    sasl_conn_free(c);
    return st;
}

/* ---- mechanisms offered ---- */

static void offers_three_mechanisms(void **state)
{
    assert_string_equal(sasl_mechanisms(fx.s), "PLAIN LOGIN SCRAM-SHA-256");
    assert_true(sasl_supported(fx.s, "plain", 5));
    assert_true(sasl_supported(fx.s, "Scram-Sha-256", 13));
    assert_true(sasl_supported(fx.s, "LOGIN xyz", 5));
    assert_false(sasl_supported(fx.s, "SCRAM-SHA-256-PLUS", 18));
    assert_false(sasl_supported(fx.s, "CRAM-MD5", 8));
    assert_false(sasl_supported(fx.s, "PLAI", 4));
    assert_false(sasl_supported(fx.s, "", 0));
    char err[128] = "";
    assert_null(sasl_conn_new(fx.s, "DIGEST-MD5", fx.t, err, sizeof(err)));
    assert_true(err[0] != '\0');
    assert_null(sasl_conn_new(fx.s, "SCRAM-SHA-256-PLUS", fx.t, err, sizeof(err)));
    struct sasl_conn *c = sasl_conn_new(fx.s, "plain", fx.t, err, sizeof(err));
    assert_non_null(c);
    sasl_conn_free(c);
    sasl_conn_free(NULL);
}

/* ---- PLAIN ---- */

static void plain_ok(void **state)
{
    struct result r = run("PLAIN", "alice@example.org", "alice-pw", NULL, false);
    assert_int_equal(r.st, SASL_OK);
    assert_string_equal(r.user, "alice@example.org");
    assert_string_equal(r.authid, "alice@example.org");
    assert_int_equal(r.steps, 2); /* AUTH PLAIN -> 334, credentials -> 235 */
}

static void plain_initial_response(void **state)
{
    struct result r = run("PLAIN", "alice@example.org", "alice-pw", NULL, true);
    assert_int_equal(r.st, SASL_OK);
    assert_string_equal(r.user, "alice@example.org");
    assert_int_equal(r.steps, 1);
}

static void plain_authid_any_case(void **state)
{
    struct result r = run("PLAIN", "Alice@EXAMPLE.org", "alice-pw", NULL, true);
    assert_int_equal(r.st, SASL_OK);
    assert_string_equal(r.user, "alice@example.org");
    assert_string_equal(r.authid, "alice@example.org");
}

static void plain_wrong_password(void **state)
{
    struct result r = run("PLAIN", "alice@example.org", "alice-pW", NULL, true);
    assert_int_equal(r.st, SASL_FAIL);
    assert_string_equal(r.user, "");
    assert_string_equal(r.authid, "alice@example.org");
    assert_non_null(strstr(r.why, "wrong password"));
}

static void plain_unknown_user(void **state)
{
    struct result r = run("PLAIN", "nobody@example.org", "x", NULL, true);
    assert_int_equal(r.st, SASL_FAIL);
    assert_string_equal(r.authid, "nobody@example.org");
    r = run("PLAIN", "alice@elsewhere.example", "alice-pw", NULL, true);
    assert_int_equal(r.st, SASL_FAIL);
}

static void plain_locked_user(void **state)
{
    struct result r = run("PLAIN", "lock@example.org", "lock-pw", NULL, true);
    assert_int_equal(r.st, SASL_FAIL);
    assert_string_equal(r.user, "");
    assert_non_null(strstr(r.why, "locked"));
}

static void plain_against_scram_entry(void **state)
{
    /* A {SCRAM-SHA-256} entry verifies a plaintext password too. */
    struct result r = run("PLAIN", "sam@example.org", "sam-pw", NULL, true);
    assert_int_equal(r.st, SASL_OK);
    assert_string_equal(r.user, "sam@example.org");
    r = run("PLAIN", "sam@example.org", "sam-px", NULL, true);
    assert_int_equal(r.st, SASL_FAIL);
}

static void plain_empty_initial_response(void **state)
{
    /* "AUTH PLAIN =": GNU SASL answers an empty message with an empty challenge. */
    const char *rs[] = {"", "AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3"}; /* \0alice@..\0alice-pw */
    char *out = NULL;
    assert_int_equal(raw_steps("PLAIN", rs, 1, &out), SASL_CONTINUE);
    assert_non_null(out);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(raw_steps("PLAIN", rs, 2, NULL), SASL_OK);
}

static void plain_malformed(void **state)
{
    const char *no_nul[] = {"YWxpY2U="};        /* "alice" */
    const char *one_nul[] = {"AGFsaWNl"};       /* "\0alice" */
    const char *nul_in_pw[] = {"AGFAYgBwAHc="}; /* "\0a@b\0p\0w" */
    assert_int_equal(raw_steps("PLAIN", no_nul, 1, NULL), SASL_FAIL);
    assert_int_equal(raw_steps("PLAIN", one_nul, 1, NULL), SASL_FAIL);
    assert_int_equal(raw_steps("PLAIN", nul_in_pw, 1, NULL), SASL_FAIL);
}

/* ---- LOGIN ---- */

static void login_ok(void **state)
{
    struct result r = run("LOGIN", "alice@example.org", "alice-pw", NULL, false);
    assert_int_equal(r.st, SASL_OK);
    assert_string_equal(r.user, "alice@example.org");
    assert_int_equal(r.steps, 3);
}

static void login_initial_response(void **state)
{
    /* AUTH LOGIN <user>: the server must skip its "User Name" prompt. */
    struct result r = run("LOGIN", "alice@example.org", "alice-pw", NULL, true);
    assert_int_equal(r.st, SASL_OK);
    assert_string_equal(r.user, "alice@example.org");
    assert_int_equal(r.steps, 2);
}

static void login_wrong(void **state)
{
    struct result r = run("LOGIN", "alice@example.org", "alice-px", NULL, false);
    assert_int_equal(r.st, SASL_FAIL);
    assert_string_equal(r.authid, "alice@example.org");
    r = run("LOGIN", "ghost@example.org", "alice-pw", NULL, false);
    assert_int_equal(r.st, SASL_FAIL);
    r = run("LOGIN", "lock@example.org", "lock-pw", NULL, true);
    assert_int_equal(r.st, SASL_FAIL);
}

static void login_prompts_and_authid(void **state)
{
    char err[128] = "", user[TABLES_ADDR_MAX + 1], why[256];
    struct sasl_conn *c = sasl_conn_new(fx.s, "LOGIN", fx.t, err, sizeof(err));
    assert_non_null(c);
    char *out = NULL;
    assert_int_equal(sasl_conn_step(c, NULL, &out, user, sizeof(user), why, sizeof(why)),
                     SASL_CONTINUE);
    assert_string_equal(out, "VXNlciBOYW1l"); /* "User Name" */
    free(out);
    assert_string_equal(sasl_conn_authid(c), "");
    /* "Bob@Example.org": named now, known before the password arrives. */
    assert_int_equal(
        sasl_conn_step(c, "Qm9iQEV4YW1wbGUub3Jn", &out, user, sizeof(user), why, sizeof(why)),
        SASL_CONTINUE);
    assert_string_equal(out, "UGFzc3dvcmQ="); /* "Password" */
    free(out);
    assert_string_equal(sasl_conn_authid(c), "bob@example.org");
    sasl_conn_free(c);
}

static void login_empty_username(void **state)
{
    const char *rs[] = {NULL, ""};
    assert_int_equal(raw_steps("LOGIN", rs, 2, NULL), SASL_FAIL);
}

/* ---- SCRAM-SHA-256 ---- */

static void scram_ok(void **state)
{
    struct result r = run("SCRAM-SHA-256", "sam@example.org", "sam-pw", NULL, true);
    assert_int_equal(r.st, SASL_OK);
    assert_string_equal(r.user, "sam@example.org");
    assert_string_equal(r.authid, "sam@example.org");
    /* client-first, client-final (-> 334 v=...), the empty answer -> 235 */
    assert_int_equal(r.steps, 3);
    assert_int_equal(r.client_rc, GSASL_OK); /* the client checked the server's signature */
}

static void scram_ok_without_initial_response(void **state)
{
    struct result r = run("SCRAM-SHA-256", "SAM@example.org", "sam-pw", NULL, false);
    assert_int_equal(r.st, SASL_OK);
    assert_string_equal(r.user, "sam@example.org");
    assert_int_equal(r.steps, 4);
}

static void scram_wrong_password(void **state)
{
    struct result r = run("SCRAM-SHA-256", "sam@example.org", "sam-px", NULL, true);
    assert_int_equal(r.st, SASL_FAIL);
    assert_string_equal(r.user, "");
    assert_string_equal(r.authid, "sam@example.org");
}

static void scram_crypt_only_user(void **state)
{
    struct result r = run("SCRAM-SHA-256", "alice@example.org", "alice-pw", NULL, true);
    assert_int_equal(r.st, SASL_FAIL);
    /* It failed at the proof, like a wrong password: the exchange got that far. */
    assert_int_equal(r.steps, 2);
    assert_non_null(strstr(r.why, "no SCRAM"));
}

static void scram_unknown_and_locked(void **state)
{
    struct result r = run("SCRAM-SHA-256", "ghost@example.org", "x", NULL, true);
    assert_int_equal(r.st, SASL_FAIL);
    assert_int_equal(r.steps, 2);
    r = run("SCRAM-SHA-256", "lockscram@example.org", "lock-pw", NULL, true);
    assert_int_equal(r.st, SASL_FAIL);
    assert_int_equal(r.steps, 2);
}

/* The server-first message (decoded) for name, from a fresh exchange. */
static void server_first(const char *name, char *out, size_t outlen)
{
    char err[128] = "", user[TABLES_ADDR_MAX + 1], why[256], cf[256], *b64 = NULL;
    snprintf(cf, sizeof(cf), "n,,n=%s,r=abcdefghijklmnop", name);
    char *in = NULL;
    size_t inlen = 0;
    assert_int_equal(gsasl_base64_to(cf, strlen(cf), &in, &inlen), GSASL_OK);
    struct sasl_conn *c = sasl_conn_new(fx.s, "SCRAM-SHA-256", fx.t, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(sasl_conn_step(c, in, &b64, user, sizeof(user), why, sizeof(why)),
                     SASL_CONTINUE);
    char *dec = NULL;
    size_t declen = 0;
    assert_int_equal(gsasl_base64_from(b64, strlen(b64), &dec, &declen), GSASL_OK);
    snprintf(out, outlen, "%.*s", (int)declen, dec);
    gsasl_free(dec);
    gsasl_free(in);
    free(b64);
    sasl_conn_free(c);
}

/* The ",s=...,i=..." tail of a server-first message. */
static const char *salt_part(const char *sf)
{
    const char *p = strstr(sf, ",s=");
    assert_non_null(p);
    return p;
}

static void scram_fake_salt_is_stable(void **state)
{
    char a[256], b[256], c[256], d[256];
    server_first("ghost@example.org", a, sizeof(a));
    server_first("GHOST@example.org", b, sizeof(b));
    server_first("other@example.org", c, sizeof(c));
    server_first("sam@example.org", d, sizeof(d));
    /* Asking twice gives the same salt, as it would for a real user ... */
    assert_string_equal(salt_part(a), salt_part(b));
    /* ... and each name its own; all shaped alike (16-byte salt). */
    assert_string_not_equal(salt_part(a), salt_part(c));
    assert_int_equal(strlen(salt_part(a)), strlen(salt_part(c)));
    assert_non_null(strstr(a, ",i=50000")); /* PASSWD_SCRAM_ITER */
    assert_non_null(strstr(d, ",i=4096"));
    assert_int_equal(strchr(salt_part(a) + 1, ',') - salt_part(a),
                     strchr(salt_part(d) + 1, ',') - salt_part(d));
}

static void scram_data_after_final(void **state)
{
    /* Run a good exchange up to the server-final, then answer it with data. */
    Gsasl_session *cs = NULL;
    assert_int_equal(gsasl_client_start(fx.client, "SCRAM-SHA-256", &cs), GSASL_OK);
    gsasl_property_set(cs, GSASL_AUTHID, "sam@example.org");
    gsasl_property_set(cs, GSASL_PASSWORD, "sam-pw");
    char err[128] = "", user[TABLES_ADDR_MAX + 1], why[256];
    struct sasl_conn *c = sasl_conn_new(fx.s, "SCRAM-SHA-256", fx.t, err, sizeof(err));
    char *resp = NULL, *chal = NULL;
    assert_int_equal(gsasl_step64(cs, NULL, &resp), GSASL_NEEDS_MORE);
    assert_int_equal(sasl_conn_step(c, resp, &chal, user, sizeof(user), why, sizeof(why)),
                     SASL_CONTINUE);
    gsasl_free(resp);
    assert_int_equal(gsasl_step64(cs, chal, &resp), GSASL_NEEDS_MORE);
    free(chal);
    assert_int_equal(sasl_conn_step(c, resp, &chal, user, sizeof(user), why, sizeof(why)),
                     SASL_CONTINUE);
    gsasl_free(resp);
    assert_true(strlen(chal) > 0); /* base64 of "v=..." */
    assert_string_equal(user, ""); /* not yet */
    free(chal);
    assert_int_equal(sasl_conn_step(c, "eA==", &chal, user, sizeof(user), why, sizeof(why)),
                     SASL_FAIL);
    assert_string_equal(user, "");
    sasl_conn_free(c);
    gsasl_finish(cs);
}

static void scram_garbage(void **state)
{
    const char *not_scram[] = {"aGVsbG8="};                 /* "hello" */
    const char *cbind[] = {"cD10bHMtdW5pcXVlLCxuPWEscj1i"}; /* p=tls-unique,,n=a,r=b */
    assert_int_equal(raw_steps("SCRAM-SHA-256", not_scram, 1, NULL), SASL_FAIL);
    assert_int_equal(raw_steps("SCRAM-SHA-256", cbind, 1, NULL), SASL_FAIL);
}

/* ---- authorization identities ---- */

static void authzid_non_admin(void **state)
{
    struct result r = run("PLAIN", "alice@example.org", "alice-pw", "sam@example.org", true);
    assert_int_equal(r.st, SASL_NOT_ADMIN);
    assert_string_equal(r.user, "");
    /* Wrong password first: a plain failure, saying nothing about authorization. */
    r = run("PLAIN", "alice@example.org", "nope", "sam@example.org", true);
    assert_int_equal(r.st, SASL_FAIL);
    r = run("SCRAM-SHA-256", "sam@example.org", "sam-pw", "alice@example.org", true);
    assert_int_equal(r.st, SASL_NOT_ADMIN);
}

static void authzid_same_user(void **state)
{
    struct result r = run("PLAIN", "alice@example.org", "alice-pw", "ALICE@example.org", true);
    assert_int_equal(r.st, SASL_OK);
    assert_string_equal(r.user, "alice@example.org");
}

static void authzid_admin(void **state)
{
    struct result r = run("PLAIN", "boss@example.org", "boss-pw", "Alice@example.org", true);
    assert_int_equal(r.st, SASL_OK);
    assert_string_equal(r.user, "alice@example.org");
    assert_string_equal(r.authid, "boss@example.org");
    r = run("SCRAM-SHA-256", "root@example.org", "root-pw", "sam@example.org", true);
    assert_int_equal(r.st, SASL_OK);
    assert_string_equal(r.user, "sam@example.org");
    /* Only as an existing, unlocked local user. */
    r = run("PLAIN", "boss@example.org", "boss-pw", "ghost@example.org", true);
    assert_int_equal(r.st, SASL_FAIL);
    r = run("PLAIN", "boss@example.org", "boss-pw", "lock@example.org", true);
    assert_int_equal(r.st, SASL_FAIL);
    /* The admin's own password still counts. */
    r = run("PLAIN", "boss@example.org", "boss-px", "alice@example.org", true);
    assert_int_equal(r.st, SASL_FAIL);
}

/* ---- base64, sizes, steps ---- */

static void bad_base64(void **state)
{
    const char *bad[] = {"!!!!", "abc", "ab=c", "a===", "YW Jj", "YWJj\r\n", "=", "YQ==YQ=="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *rs[] = {bad[i], "AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3"};
        assert_int_equal(raw_steps("PLAIN", rs, 1, NULL), SASL_BAD_BASE64);
        assert_int_equal(raw_steps("PLAIN", rs, 2, NULL), SASL_BAD_BASE64);
        const char *ls[] = {NULL, bad[i]};
        assert_int_equal(raw_steps("LOGIN", ls, 2, NULL), SASL_BAD_BASE64);
        assert_int_equal(raw_steps("SCRAM-SHA-256", rs, 1, NULL), SASL_BAD_BASE64);
    }
}

static void oversized_response(void **state)
{
    size_t n = 12 * 1024 + 4;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'A', n);
    big[n] = '\0';
    const char *rs[] = {big};
    assert_int_equal(raw_steps("PLAIN", rs, 1, NULL), SASL_FAIL);
    assert_int_equal(raw_steps("SCRAM-SHA-256", rs, 1, NULL), SASL_FAIL);
    /* Just at the bound it is only a malformed message. */
    big[12 * 1024] = '\0';
    assert_int_equal(raw_steps("PLAIN", rs, 1, NULL), SASL_FAIL);
    free(big);
}

static void bounded_steps(void **state)
{
    /* PLAIN answers every empty message with another empty challenge: the bound ends it. */
    const char *rs[] = {NULL, "", "", "", ""};
    char *out = NULL;
    assert_int_equal(raw_steps("PLAIN", rs, 4, &out), SASL_CONTINUE);
    free(out);
    assert_int_equal(raw_steps("PLAIN", rs, 5, NULL), SASL_FAIL);
    assert_int_equal(raw_steps("SCRAM-SHA-256", rs, 5, NULL), SASL_FAIL);
}

static void small_user_buffer(void **state)
{
    char err[128] = "", user[4], why[256];
    struct sasl_conn *c = sasl_conn_new(fx.s, "PLAIN", fx.t, err, sizeof(err));
    char *out = NULL;
    assert_int_equal(sasl_conn_step(c, "AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3", &out, user,
                                    sizeof(user), why, sizeof(why)),
                     SASL_TEMP);
    assert_null(out);
    sasl_conn_free(c);
}

/* ---- threads ---- */

static void *worker(void *arg)
{
    int *bad = arg;
    for (int i = 0; i < 3; i++) {
        struct result r = run("SCRAM-SHA-256", "sam@example.org", "sam-pw", NULL, true);
        *bad += r.st != SASL_OK;
        r = run("SCRAM-SHA-256", "ghost@example.org", "sam-pw", NULL, true);
        *bad += r.st != SASL_FAIL;
        r = run("PLAIN", "alice@example.org", i % 2 ? "alice-pw" : "no", NULL, true);
        *bad += r.st != (i % 2 ? SASL_OK : SASL_FAIL);
    }
    return NULL;
}

static void concurrent_exchanges(void **state)
{
    pthread_t th[4];
    int bad[4] = {0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, &bad[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(bad[i], 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(offers_three_mechanisms),
        cmocka_unit_test(plain_ok),
        cmocka_unit_test(plain_initial_response),
        cmocka_unit_test(plain_authid_any_case),
        cmocka_unit_test(plain_wrong_password),
        cmocka_unit_test(plain_unknown_user),
        cmocka_unit_test(plain_locked_user),
        cmocka_unit_test(plain_against_scram_entry),
        cmocka_unit_test(plain_empty_initial_response),
        cmocka_unit_test(plain_malformed),
        cmocka_unit_test(login_ok),
        cmocka_unit_test(login_initial_response),
        cmocka_unit_test(login_wrong),
        cmocka_unit_test(login_prompts_and_authid),
        cmocka_unit_test(login_empty_username),
        cmocka_unit_test(scram_ok),
        cmocka_unit_test(scram_ok_without_initial_response),
        cmocka_unit_test(scram_wrong_password),
        cmocka_unit_test(scram_crypt_only_user),
        cmocka_unit_test(scram_unknown_and_locked),
        cmocka_unit_test(scram_fake_salt_is_stable),
        cmocka_unit_test(scram_data_after_final),
        cmocka_unit_test(scram_garbage),
        cmocka_unit_test(authzid_non_admin),
        cmocka_unit_test(authzid_same_user),
        cmocka_unit_test(authzid_admin),
        cmocka_unit_test(bad_base64),
        cmocka_unit_test(oversized_response),
        cmocka_unit_test(bounded_steps),
        cmocka_unit_test(small_user_buffer),
        cmocka_unit_test(concurrent_exchanges),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* Unit tests for src/auth/passwd.c: {CRYPT} and {SCRAM-SHA-256} round trips, hashes made by
 * other tools, RFC 7677's SCRAM-SHA-256 example checked against the keys we store, malformed
 * stored values (-1, never a crash), password bounds, and the dummy verify. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <pthread.h>

#include "auth/passwd.h"

#define PW(s) (s), strlen(s)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void hex_to_bytes(const char *hex, unsigned char *out, size_t n)
{
    assert_int_equal(strlen(hex), 2 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (unsigned char)v;
    }
}

static size_t b64_to_bytes(const char *b64, unsigned char *out)
{
    size_t len = strlen(b64);
    int n = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)len);
    assert_true(n >= 0);
    size_t pad = len >= 2 && b64[len - 1] == '=' ? (b64[len - 2] == '=' ? 2 : 1) : 0;
    return (size_t)n - pad;
}

static void test_crypt_round_trip(void **state)
{
    char h1[256], h2[256], err[256];
    assert_int_equal(passwd_hash_crypt(PW("correct horse"), h1, sizeof(h1), err, sizeof(err)), 0);
    assert_int_equal(strncmp(h1, "{CRYPT}$y$", 10), 0);
    assert_int_equal(passwd_verify(h1, PW("correct horse")), 1);
    assert_int_equal(passwd_verify(h1, PW("correct hors")), 0);
    assert_int_equal(passwd_verify(h1, PW("correct horse ")), 0);
    assert_int_equal(passwd_verify(h1, PW("")), 0);
    /* a fresh salt each time */
    assert_int_equal(passwd_hash_crypt(PW("correct horse"), h2, sizeof(h2), err, sizeof(err)), 0);
    assert_string_not_equal(h1, h2);
    assert_int_equal(passwd_verify(h2, PW("correct horse")), 1);
    /* Dovecot's scheme names are case-insensitive */
    h1[1] = 'c';
    assert_int_equal(passwd_verify(h1, PW("correct horse")), 1);
}

/* Hashes made elsewhere (Python's crypt module, as mkpasswd would) in the schemes admins paste. */
static void test_crypt_other_schemes(void **state)
{
    static const char *const hashes[] = {
        ("{CRYPT}$6$rounds=5000$saltsaltsalt$PMWE8DTlam1JU37Piyk43bHcMxTJq6sgu5DKB0/"
         "tGPjanN35jcY68QkpDfPFUGPWX5uCxIQkSPzMmqEiVNgts."),
        "{CRYPT}$5$rounds=1000$saltsalt$eKLZU9t9OoPWrqOQsoTIKG0aYkZ5rGOoOQhiIvoSWX2",
        "{CRYPT}$2b$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW",
        "{CRYPT}$1$saltsalt$9xy1btjgzLYfb7hivXtC//",
    };
    for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++) {
        assert_int_equal(passwd_verify(hashes[i], PW("secret")), 1);
        assert_int_equal(passwd_verify(hashes[i], PW("Secret")), 0);
    }
    /* the right salt but a hash cut short never matches */
    assert_int_equal(passwd_verify("{CRYPT}$1$saltsalt$9xy1btjgzLYfb7hivXtC/", PW("secret")), 0);
}

static void test_scram_round_trip(void **state)
{
    char h[256], err[256];
    assert_int_equal(passwd_hash_scram(PW("pencil"), 4096, h, sizeof(h), err, sizeof(err)), 0);
    assert_int_equal(strncmp(h, "{SCRAM-SHA-256}4096,", 20), 0);
    assert_int_equal(passwd_verify(h, PW("pencil")), 1);
    assert_int_equal(passwd_verify(h, PW("pencils")), 0);
    assert_int_equal(passwd_verify(h, PW("")), 0);

    struct passwd_scram p;
    assert_int_equal(passwd_scram_parts(h, &p), 0);
    assert_string_equal(p.iter, "4096");
    assert_int_equal(strlen(p.salt_b64), 24); /* 16 bytes */
    assert_int_equal(strlen(p.stored_hex), 64);
    for (const char *c = p.stored_hex; *c; c++)
        assert_true((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'));
    /* ServerKey, worked out here step by step from RFC 5802 section 3, matches what is stored */
    unsigned char salt[64], salted[32], server_key[32], want[32];
    unsigned len = 0;
    size_t saltlen = b64_to_bytes(p.salt_b64, salt);
    assert_int_equal(saltlen, 16);
    assert_int_equal(
        PKCS5_PBKDF2_HMAC("pencil", 6, salt, (int)saltlen, 4096, EVP_sha256(), 32, salted), 1);
    assert_non_null(
        HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Server Key", 10, server_key, &len));
    hex_to_bytes(p.server_hex, want, 32);
    assert_memory_equal(server_key, want, 32);

    /* the default count when 0 is given */
    assert_int_equal(passwd_hash_scram(PW("pencil"), 0, h, sizeof(h), err, sizeof(err)), 0);
    assert_int_equal(passwd_scram_parts(h, &p), 0);
    assert_int_equal(atoi(p.iter), PASSWD_SCRAM_ITER);
    assert_int_equal(passwd_verify(h, PW("pencil")), 1);
}

/* RFC 7677 section 3: user "user", password "pencil". */
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_STORED_HEX "586e5df283e6dceb5c3e791d8b8528ec191e664045ce971792e2e6b5bb13e2a6"
#define RFC_SERVER_HEX "c1f3cbc1c13a9d35a14c0990eed97629ea225863e566a4314ab99f3f00e5d9d5"
#define RFC_ENTRY                                                                                  \
    "{SCRAM-SHA-256}4096," RFC_SALT ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"               \
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
#define RFC_AUTH_MESSAGE                                                                           \
    "n=user,r=rOprNGfwEbeRWgbNEkqO,"                                                               \
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=" RFC_SALT ",i=4096,"                  \
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_PROOF "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_SIG "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static void test_scram_rfc7677(void **state)
{
    /* Our derivation from "pencil" and the RFC's salt gives the StoredKey of the entry. */
    assert_int_equal(passwd_verify(RFC_ENTRY, PW("pencil")), 1);
    assert_int_equal(passwd_verify(RFC_ENTRY, PW("pencil ")), 0);

    struct passwd_scram p;
    assert_int_equal(passwd_scram_parts(RFC_ENTRY, &p), 0);
    assert_string_equal(p.iter, "4096");
    assert_string_equal(p.salt_b64, RFC_SALT);
    assert_string_equal(p.stored_hex, RFC_STORED_HEX);
    assert_string_equal(p.server_hex, RFC_SERVER_HEX);

    /* Do what a SCRAM server does with those parts, on the RFC's exchange: recover ClientKey
     * from the client's proof, its hash must be StoredKey; and the server's signature must be
     * the one the RFC shows. */
    unsigned char stored[32], server[32], proof[64], sig[32], client_key[32], h[32], v[64];
    unsigned len = 0;
    hex_to_bytes(p.stored_hex, stored, 32);
    hex_to_bytes(p.server_hex, server, 32);
    assert_int_equal(b64_to_bytes(RFC_PROOF, proof), 32);
    assert_non_null(HMAC(EVP_sha256(), stored, 32, (const unsigned char *)RFC_AUTH_MESSAGE,
                         strlen(RFC_AUTH_MESSAGE), sig, &len));
    for (int i = 0; i < 32; i++)
        client_key[i] = proof[i] ^ sig[i];
    SHA256(client_key, 32, h);
    assert_memory_equal(h, stored, 32);
    assert_non_null(HMAC(EVP_sha256(), server, 32, (const unsigned char *)RFC_AUTH_MESSAGE,
                         strlen(RFC_AUTH_MESSAGE), sig, &len));
    assert_int_equal(b64_to_bytes(RFC_SERVER_SIG, v), 32);
    assert_memory_equal(sig, v, 32);

    /* Dovecot's scheme names are case-insensitive */
    char lower[sizeof(RFC_ENTRY)];
    strcpy(lower, RFC_ENTRY);
    memcpy(lower, "{scram-sha-256}", 15);
    assert_int_equal(passwd_verify(lower, PW("pencil")), 1);
}

static void test_malformed(void **state)
{
#define KEY "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
    static const char *const bad[] = {
        "",
        "pencil",
        "{PLAIN}pencil",
        "{CRYPT}",
        "{CRYPT}*",
        "{CRYPT}!",
        "{CRYPT}!$y$j9T$abc$def",
        "{CRYPT}$y$",
        "{CRYPT}$9$nope$nope",
        "{SCRAM-SHA-256}",
        "{SCRAM-SHA-256}4096",
        "{SCRAM-SHA-256}4096,",
        "{SCRAM-SHA-256}4096," RFC_SALT,
        "{SCRAM-SHA-256}4096," RFC_SALT "," KEY,
        "{SCRAM-SHA-256}4096," RFC_SALT "," KEY ",",
        "{SCRAM-SHA-256}4096," RFC_SALT "," KEY "," KEY ",",
        "{SCRAM-SHA-256}4096," RFC_SALT "," KEY "," KEY "," KEY,
        "{SCRAM-SHA-256}0," RFC_SALT "," KEY "," KEY,
        "{SCRAM-SHA-256}-1," RFC_SALT "," KEY "," KEY,
        "{SCRAM-SHA-256}+4096," RFC_SALT "," KEY "," KEY,
        "{SCRAM-SHA-256} 4096," RFC_SALT "," KEY "," KEY,
        "{SCRAM-SHA-256}99999999999," RFC_SALT "," KEY "," KEY,
        "{SCRAM-SHA-256}4294967297," RFC_SALT "," KEY "," KEY,
        "{SCRAM-SHA-256}4096,," KEY "," KEY,
        "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ," KEY "," KEY,   /* padding missing */
        "{SCRAM-SHA-256}4096,W22ZaJ0SNY7s=EsUEjb6gQ==," KEY "," KEY, /* = inside */
        "{SCRAM-SHA-256}4096,W22ZaJ0SNY7so!sUEjb6gQ==," KEY "," KEY, /* not base64 */
        "{SCRAM-SHA-256}4096,W22ZaJ0SNY7so sUEjb6gQ==," KEY "," KEY, /* a blank */
        "{SCRAM-SHA-256}4096,====," KEY "," KEY,                     /* only padding */
        "{SCRAM-SHA-256}4096," RFC_SALT ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4g==," KEY,
        "{SCRAM-SHA-256}4096," RFC_SALT "," KEY ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qYA",
        "{SCRAM-SHA-256}4096,"
        "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB," KEY "," KEY,
        "{SCRAM-SHA-1}4096," RFC_SALT "," KEY "," KEY,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct passwd_scram p;
        if (passwd_verify(bad[i], PW("pencil")) != -1)
            fail_msg("passwd_verify(\"%s\") is not -1", bad[i]);
        if (passwd_scram_parts(bad[i], &p) != -1)
            fail_msg("passwd_scram_parts(\"%s\") is not -1", bad[i]);
        assert_int_equal(passwd_verify(bad[i], NULL, 0), -1);
    }
    assert_int_equal(passwd_verify(NULL, PW("pencil")), -1);
    assert_int_equal(passwd_verify(RFC_ENTRY, NULL, 5), -1);
    struct passwd_scram p;
    assert_int_equal(passwd_scram_parts(NULL, &p), -1);
    assert_int_equal(passwd_scram_parts("{CRYPT}$1$saltsalt$9xy1btjgzLYfb7hivXtC//", &p), -1);
    /* a small count and a salt at the most the parts can carry are fine */
    assert_int_equal(
        passwd_scram_parts("{SCRAM-SHA-256}1,"
                           "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB," KEY
                           "," KEY,
                           &p),
        0);
    assert_int_equal(strlen(p.salt_b64), 60);
#undef KEY
}

static void test_password_bounds(void **state)
{
    char h[256], err[256];
    char *big = malloc(PASSWD_MAX + 2);
    assert_non_null(big);
    memset(big, 'x', PASSWD_MAX + 1);
    big[PASSWD_MAX + 1] = '\0';
    /* crypt(3) takes at most 511 bytes: say so rather than store something unusable */
    assert_int_equal(passwd_hash_crypt(big, 511, h, sizeof(h), err, sizeof(err)), 0);
    assert_int_equal(passwd_verify(h, big, 511), 1);
    assert_int_equal(passwd_verify(h, big, 512), 0);
    assert_int_equal(passwd_hash_crypt(big, 512, h, sizeof(h), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "longer"));
    /* SCRAM takes up to PASSWD_MAX */
    assert_int_equal(passwd_hash_scram(big, PASSWD_MAX, 4096, h, sizeof(h), err, sizeof(err)), 0);
    assert_int_equal(passwd_verify(h, big, PASSWD_MAX), 1);
    assert_int_equal(passwd_verify(h, big, PASSWD_MAX + 1), 0);
    assert_int_equal(passwd_hash_scram(big, PASSWD_MAX + 1, 4096, h, sizeof(h), err, sizeof(err)),
                     -1);
    free(big);

    /* empty, NUL inside, out of room, a count below RFC 7677's floor */
    assert_int_equal(passwd_hash_crypt("", 0, h, sizeof(h), err, sizeof(err)), -1);
    assert_int_equal(passwd_hash_scram("", 0, 4096, h, sizeof(h), err, sizeof(err)), -1);
    assert_int_equal(passwd_hash_crypt("ab\0cd", 5, h, sizeof(h), err, sizeof(err)), -1);
    assert_int_equal(passwd_hash_crypt(PW("pencil"), h, 20, err, sizeof(err)), -1);
    assert_int_equal(passwd_hash_scram(PW("pencil"), 4096, h, 40, err, sizeof(err)), -1);
    assert_int_equal(passwd_hash_scram(PW("pencil"), 100, h, sizeof(h), err, sizeof(err)), -1);

    /* a NUL would cut what crypt(3) sees: "ab" + NUL + anything is not "ab" */
    assert_int_equal(passwd_hash_crypt(PW("ab"), h, sizeof(h), err, sizeof(err)), 0);
    assert_int_equal(passwd_verify(h, "ab\0cd", 5), 0);
    assert_int_equal(passwd_verify(h, "ab", 2), 1);
    assert_int_equal(passwd_verify(RFC_ENTRY, "pencil\0", 7), 0);
}

static void *dummy_thread(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)passwd_verify_dummy(PW("guess"));
}

static void test_dummy(void **state)
{
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, dummy_thread, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        assert_int_equal(pthread_join(th[i], &r), 0);
        assert_int_equal((intptr_t)r, 0);
    }
    assert_int_equal(passwd_verify_dummy(PW("tern: no such user, or locked")), 0);
    assert_int_equal(passwd_verify_dummy(NULL, 0), 0);

    /* It costs what a real user's check costs (loosely: timers are noisy). */
    char h[256], err[256];
    assert_int_equal(passwd_hash_crypt(PW("real"), h, sizeof(h), err, sizeof(err)), 0);
    double t0 = now_s();
    for (int i = 0; i < 3; i++)
        passwd_verify(h, PW("wrong"));
    double real = now_s() - t0;
    t0 = now_s();
    for (int i = 0; i < 3; i++)
        passwd_verify_dummy(PW("wrong"));
    double dummy = now_s() - t0;
    if (dummy < real / 3 || dummy > real * 3)
        fail_msg("dummy verify %.1f ms, real %.1f ms", dummy * 1e3 / 3, real * 1e3 / 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crypt_round_trip),
        cmocka_unit_test(test_crypt_other_schemes),
        cmocka_unit_test(test_scram_round_trip),
        cmocka_unit_test(test_scram_rfc7677),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_password_bounds),
        cmocka_unit_test(test_dummy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

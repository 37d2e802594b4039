/* libFuzzer harness for src/auth/sasl.c: the input, split on '\n', is the client's side of one
 * PLAIN, LOGIN or SCRAM-SHA-256 exchange, run step by step against a small users table with cheap
 * hashes. The first byte picks the mechanism (bits 0-1), whether the first line is an initial
 * response (bit 2), and whether lines go in as they are (bit 3: exercises the base64 check) or
 * base64-encoded by the harness (so the mechanisms themselves see the bytes). Traps on a broken
 * invariant: a challenge only with SASL_CONTINUE and always base64, a fifth step always fails,
 * an exchange that has ended stays ended, success only for a real user, bounded authid. */
#include <crypt.h>
#include <gsasl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passwd.h"
#include "auth/sasl.h"
#include "policy/tables.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define FUZZ_MAX_STEPS 4 /* sasl.c's bound */

static struct tables *tables;
static struct sasl *sasl;
static const char *const mechs[] = {"PLAIN", "LOGIN", "SCRAM-SHA-256", "PLAIN"};

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *encode(const uint8_t *p, size_t n)
{
    char *o = malloc((n + 2) / 3 * 4 + 1);
    FUZZ_CHECK(o != NULL);
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        o[k++] = b64[w >> 18 & 63];
        o[k++] = b64[w >> 12 & 63];
        o[k++] = i + 1 < n ? b64[w >> 6 & 63] : '=';
        o[k++] = i + 2 < n ? b64[w & 63] : '=';
    }
    o[k] = '\0';
    return o;
}

static void add(struct tables *t, const char *addr, const char *stored, bool locked, bool admin)
{
    struct tables_user u;
    memset(&u, 0, sizeof(u));
    char err[256];
    snprintf(u.addr, sizeof(u.addr), "%s", addr);
    snprintf(u.password, sizeof(u.password), "%s", stored);
    u.locked = locked;
    u.admin = admin;
    FUZZ_CHECK(tables_add_user(t, &u, err, sizeof(err)) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256], scram[256], crypt_entry[256];
    /* Cheap on purpose: ITER 16 and sha256-crypt at 1000 rounds keep the fuzzer fast. The SCRAM
     * entry is made here with GNU SASL, since passwd_hash_scram refuses fewer than 4096. */
    char salted[GSASL_HASH_MAX_SIZE], client_key[GSASL_HASH_MAX_SIZE];
    char server_key[GSASL_HASH_MAX_SIZE], stored_key[GSASL_HASH_MAX_SIZE];
    static const char salt[] = "fuzz-salt-16byte";
    FUZZ_CHECK(gsasl_scram_secrets_from_password(GSASL_HASH_SHA256, "pw", 16, salt,
                                                 sizeof(salt) - 1, salted, client_key, server_key,
                                                 stored_key) == GSASL_OK);
    char *salt64 = encode((const uint8_t *)salt, sizeof(salt) - 1);
    char *stored64 = encode((const uint8_t *)stored_key, GSASL_HASH_SHA256_SIZE);
    char *server64 = encode((const uint8_t *)server_key, GSASL_HASH_SHA256_SIZE);
    snprintf(scram, sizeof(scram), "{SCRAM-SHA-256}16,%s,%s,%s", salt64, stored64, server64);
    free(salt64);
    free(stored64);
    free(server64);
    FUZZ_CHECK(passwd_verify(scram, "pw", 2) == 1);
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    const char *h = crypt_r("pw", "$5$rounds=1000$fuzzsaltfuzzsalt$", &cd);
    FUZZ_CHECK(h && h[0] == '$');
    snprintf(crypt_entry, sizeof(crypt_entry), "{CRYPT}%s", h);

    tables = tables_new();
    FUZZ_CHECK(tables && tables_add_domain(tables, "example.org", err, sizeof(err)) == 0);
    add(tables, "scram@example.org", scram, false, false);
    add(tables, "crypt@example.org", crypt_entry, false, false);
    add(tables, "admin@example.org", scram, false, true);
    add(tables, "locked@example.org", crypt_entry, true, false);
    const char *pm[] = {"admin"};
    FUZZ_CHECK(tables_add_alias(tables, "postmaster", pm, 1, err, sizeof(err)) == 0);
    FUZZ_CHECK(tables_finish(tables, err, sizeof(err)) == 0);
    sasl = sasl_new(err, sizeof(err));
    FUZZ_CHECK(sasl != NULL);
    return 0;
}

static char *copy_raw(const uint8_t *p, size_t n)
{
    char *o = malloc(n + 1);
    FUZZ_CHECK(o != NULL);
    memcpy(o, p, n);
    o[n] = '\0'; /* a NUL inside the line just ends it early, as a C string would */
    return o;
}

static bool is_base64(const char *s)
{
    size_t n = strlen(s);
    if (n % 4 != 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!strchr(b64, s[i]) && !(s[i] == '=' && i + 2 >= n))
            return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    const char *mech = mechs[flags & 3];
    bool initial = flags & 4, raw = flags & 8;
    size_t pos = 1; /* next line starts here; past size once the last line is taken */

    char err[256];
    struct sasl_conn *c = sasl_conn_new(sasl, mech, tables, err, sizeof(err));
    FUZZ_CHECK(c != NULL);
    FUZZ_CHECK(strcmp(sasl_conn_authid(c), "") == 0);

    enum sasl_status st = SASL_CONTINUE;
    int steps = 0;
    bool first = true;
    char user[TABLES_ADDR_MAX + 1], why[256];
    while (st == SASL_CONTINUE) {
        char *in = NULL;
        if (!(first && !initial)) {
            if (pos > size || (pos == size && !first))
                break; /* the client went quiet */
            const uint8_t *nl = memchr(data + pos, '\n', size - pos);
            size_t n = nl ? (size_t)(nl - (data + pos)) : size - pos;
            in = raw ? copy_raw(data + pos, n) : encode(data + pos, n);
            pos += n + 1;
        }
        first = false;
        char *out = NULL;
        memset(user, 'x', sizeof(user));
        st = sasl_conn_step(c, in, &out, user, sizeof(user), why, sizeof(why));
        free(in);
        steps++;
        FUZZ_CHECK(st >= SASL_CONTINUE && st <= SASL_TEMP);
        FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL);
        if (st == SASL_CONTINUE) {
            FUZZ_CHECK(out != NULL && is_base64(out) && strlen(out) < 4096);
            FUZZ_CHECK(user[0] == '\0');
            FUZZ_CHECK(steps <= FUZZ_MAX_STEPS);
        } else {
            FUZZ_CHECK(out == NULL);
        }
        if (st == SASL_OK) {
            const struct tables_user *u = tables_user(tables, user);
            FUZZ_CHECK(u != NULL && !u->locked && strcmp(u->addr, user) == 0);
        } else {
            FUZZ_CHECK(user[0] == '\0');
        }
        free(out);
        FUZZ_CHECK(strlen(sasl_conn_authid(c)) <= TABLES_ADDR_MAX);
    }
    /* The step past the bound fails whatever it carries. */
    FUZZ_CHECK(steps <= FUZZ_MAX_STEPS || (steps == FUZZ_MAX_STEPS + 1 && st == SASL_FAIL));
    if (st != SASL_CONTINUE) {
        /* Ended means ended. */
        char *out = NULL;
        FUZZ_CHECK(sasl_conn_step(c, "", &out, user, sizeof(user), why, sizeof(why)) == SASL_FAIL);
        FUZZ_CHECK(out == NULL);
    }
    sasl_conn_free(c);
    return 0;
}

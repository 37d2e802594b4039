/* libFuzzer harness for the credentials: the input, written as a users file, goes through the
 * loader (conf_load_users, as ternd reads it); split at its first NUL into a stored value and a
 * password, it goes through passwd_verify and passwd_scram_parts. Only cheap stored values are
 * verified (SCRAM with at most 64 iterations, md5-crypt, DES, sha-crypt and bcrypt at their
 * lowest cost), so one run stays well under a millisecond; everything else is only parsed.
 * Traps on a broken invariant: verify answers -1, 0 or 1; parts are terminated, decimal,
 * base64 and lowercase hex. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth/passwd.h"
#include "conf/config.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static char users_path[] = "/tmp/fuzz_passwd_users.XXXXXX";
static int users_fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    users_fd = mkstemp(users_path);
    if (users_fd < 0)
        abort();
    unlink(users_path); /* read back through /proc/self/fd: nothing left behind */
    snprintf(users_path, sizeof(users_path), "/proc/self/fd/%d", users_fd);
    return 0;
}

static void fuzz_users_file(const uint8_t *data, size_t size)
{
    if (ftruncate(users_fd, 0) < 0 || pwrite(users_fd, data, size, 0) != (ssize_t)size)
        abort();
    struct tables *t = tables_new();
    char why[256], errs[4096] = "";
    if (!t || tables_add_domain(t, "example.org", why, sizeof(why)) < 0 ||
        tables_add_domain(t, "example.net", why, sizeof(why)) < 0)
        abort();
    struct conf_errors e = {errs, sizeof(errs), 0, 0, false};
    int n = conf_load_users(t, users_path, &e);
    FUZZ_CHECK(n == e.n && n >= 0);
    FUZZ_CHECK(e.len < sizeof(errs) && strlen(errs) == e.len);
    for (size_t i = 0; i < tables_nusers(t); i++) {
        const struct tables_user *u = tables_user_at(t, i);
        FUZZ_CHECK(memchr(u->addr, 0, sizeof(u->addr)) && memchr(u->name, 0, sizeof(u->name)));
        FUZZ_CHECK(strchr(u->addr, '@') && !strchr(u->addr, ':'));
        FUZZ_CHECK(!strchr(u->password, ':') && !strchr(u->name, ':'));
    }
    tables_free(t);
}

static bool digits_at_most(const char *s, unsigned long max)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    unsigned long v = strtoul(s, &end, 10);
    return end - s <= 10 && v <= max;
}

/* Would verifying stored take longer than a moment? */
static bool cheap(const char *stored)
{
    if (strncasecmp(stored, "{SCRAM-SHA-256}", 15) == 0)
        return digits_at_most(stored + 15, 64);
    if (strncasecmp(stored, "{CRYPT}", 7) != 0)
        return true; /* refused before any hashing */
    const char *h = stored + 7;
    if (strncmp(h, "$1$", 3) == 0)
        return true;
    if (strncmp(h, "$5$rounds=", 10) == 0 || strncmp(h, "$6$rounds=", 10) == 0)
        return digits_at_most(h + 10, 1000);
    if (strncmp(h, "$2b$04$", 7) == 0 || strncmp(h, "$2a$04$", 7) == 0 ||
        strncmp(h, "$2y$04$", 7) == 0)
        return true;
    return h[0] != '$' && h[0] != '_'; /* DES, or nothing crypt(3) knows */
}

static void fuzz_verify(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t slen = nul ? (size_t)(nul - data) : size;
    char *stored = malloc(slen + 1);
    if (!stored)
        abort();
    memcpy(stored, data, slen);
    stored[slen] = '\0';
    const char *pw = nul ? (const char *)nul + 1 : "";
    size_t pwlen = nul ? size - slen - 1 : 0;

    struct passwd_scram p;
    if (passwd_scram_parts(stored, &p) == 0) {
        FUZZ_CHECK(memchr(p.iter, 0, sizeof(p.iter)) && p.iter[0] >= '1' && p.iter[0] <= '9');
        for (const char *c = p.iter; *c; c++)
            FUZZ_CHECK(*c >= '0' && *c <= '9');
        size_t sl = strnlen(p.salt_b64, sizeof(p.salt_b64));
        FUZZ_CHECK(sl < sizeof(p.salt_b64) && sl % 4 == 0 && sl > 0);
        FUZZ_CHECK(strlen(p.stored_hex) == 64 && strlen(p.server_hex) == 64);
        for (int i = 0; i < 64; i++)
            FUZZ_CHECK(strchr("0123456789abcdef", p.stored_hex[i]) &&
                       strchr("0123456789abcdef", p.server_hex[i]));
        FUZZ_CHECK(strncasecmp(stored, "{SCRAM-SHA-256}", 15) == 0);
    }
    if (cheap(stored)) {
        int r = passwd_verify(stored, pw, pwlen);
        FUZZ_CHECK(r == -1 || r == 0 || r == 1);
        /* a NUL inside the password never matches */
        if (memchr(pw, 0, pwlen))
            FUZZ_CHECK(r != 1);
    }
    free(stored);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    fuzz_users_file(data, size);
    fuzz_verify(data, size);
    return 0;
}

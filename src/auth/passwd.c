/* The credentials of the users file: checking a password against a stored {CRYPT} hash (any
 * scheme libxcrypt knows; yescrypt for new ones) or {SCRAM-SHA-256} entry (Dovecot's layout,
 * RFC 5802/7677 keys), making new entries, and handing GNU SASL the parts of a SCRAM entry.
 * Every secret buffer is wiped before it is let go; every comparison is constant-time. */
#include "auth/passwd.h"

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "util/err.h"

#define CRYPT_PREFIX "{CRYPT}"
#define SCRAM_PREFIX "{SCRAM-SHA-256}"
#define SCRAM_KEY_LEN SHA256_DIGEST_LENGTH
#define SCRAM_SALT_LEN 16 /* what Dovecot makes */
/* The most a stored salt may be: what fits, base64-encoded, in passwd_scram's salt_b64. */
#define SCRAM_SALT_MAX ((sizeof(((struct passwd_scram *)0)->salt_b64) - 1) / 4 * 3)
/* More would let one bad line in the users file stall a worker for minutes per attempt. */
#define SCRAM_ITER_MAX 10000000u
#define SCRAM_ITER_MIN_NEW 4096u /* RFC 7677 section 4: at least 4096 */

/* A stored {SCRAM-SHA-256} entry, decoded. */
struct scram_entry {
    unsigned iter;
    unsigned char salt[SCRAM_SALT_MAX];
    size_t saltlen;
    unsigned char stored_key[SCRAM_KEY_LEN];
    unsigned char server_key[SCRAM_KEY_LEN];
};

static bool b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* Decodes exactly len characters of padded base64 into at most max bytes. EVP_DecodeBlock alone
 * skips blanks and counts padding as zero bytes, so the shape is checked here first. Returns
 * the byte count, or -1. */
static long b64_decode(const char *s, size_t len, unsigned char *out, size_t max)
{
    if (len == 0 || len % 4 != 0)
        return -1;
    size_t pad = 0;
    if (s[len - 1] == '=')
        pad = s[len - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < len - pad; i++)
        if (!b64_char(s[i]))
            return -1;
    size_t n = len / 4 * 3 - pad;
    if (n > max)
        return -1;
    unsigned char buf[(sizeof(((struct passwd_scram *)0)->salt_b64) / 4 + 1) * 3];
    if (len / 4 * 3 > sizeof(buf))
        return -1;
    if (EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len) != (int)(len / 4 * 3))
        return -1;
    memcpy(out, buf, n);
    return (long)n;
}

/* Base64 of n bytes into out (room for 4 * ceil(n / 3) + 1). */
static void b64_encode(const unsigned char *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The next comma-separated field of s (from *pos), as start and length. */
static bool next_field(const char *s, size_t *pos, bool last, const char **start, size_t *len)
{
    const char *p = s + *pos;
    const char *end = strchr(p, ',');
    if (last) {
        if (end)
            return false;
        end = p + strlen(p);
    } else if (!end) {
        return false;
    }
    *start = p;
    *len = (size_t)(end - p);
    *pos += *len + (last ? 0 : 1);
    return true;
}

/* Parses "ITER,SALT,STOREDKEY,SERVERKEY" (what follows {SCRAM-SHA-256}). */
static int scram_parse(const char *s, struct scram_entry *e)
{
    const char *f;
    size_t len, pos = 0;
    if (!next_field(s, &pos, false, &f, &len) || len == 0 || len > 10)
        return -1;
    unsigned long iter = 0;
    for (size_t i = 0; i < len; i++) {
        if (f[i] < '0' || f[i] > '9')
            return -1;
        iter = iter * 10 + (unsigned long)(f[i] - '0');
    }
    if (iter == 0 || iter > SCRAM_ITER_MAX)
        return -1;
    e->iter = (unsigned)iter;
    if (!next_field(s, &pos, false, &f, &len))
        return -1;
    long n = b64_decode(f, len, e->salt, sizeof(e->salt));
    if (n <= 0)
        return -1;
    e->saltlen = (size_t)n;
    if (!next_field(s, &pos, false, &f, &len) ||
        b64_decode(f, len, e->stored_key, SCRAM_KEY_LEN) != SCRAM_KEY_LEN)
        return -1;
    if (!next_field(s, &pos, true, &f, &len) ||
        b64_decode(f, len, e->server_key, SCRAM_KEY_LEN) != SCRAM_KEY_LEN)
        return -1;
    return 0;
}

/* RFC 5802 section 3: SaltedPassword, then StoredKey = H(HMAC(SaltedPassword, "Client Key")) and
 * ServerKey = HMAC(SaltedPassword, "Server Key"). Either output may be NULL. */
static int scram_keys(const char *password, size_t pwlen, const unsigned char *salt, size_t saltlen,
                      unsigned iter, unsigned char *stored_key, unsigned char *server_key)
{
    unsigned char salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
    unsigned int mdlen = 0;
    int r = -1;
    if (!PKCS5_PBKDF2_HMAC(password, (int)pwlen, salt, (int)saltlen, (int)iter, EVP_sha256(),
                           SCRAM_KEY_LEN, salted))
        goto out;
    if (stored_key) {
        if (!HMAC(EVP_sha256(), salted, SCRAM_KEY_LEN, (const unsigned char *)"Client Key", 10,
                  client_key, &mdlen) ||
            mdlen != SCRAM_KEY_LEN)
            goto out;
        SHA256(client_key, SCRAM_KEY_LEN, stored_key);
    }
    if (server_key && (!HMAC(EVP_sha256(), salted, SCRAM_KEY_LEN,
                             (const unsigned char *)"Server Key", 10, server_key, &mdlen) ||
                       mdlen != SCRAM_KEY_LEN))
        goto out;
    r = 0;
out:
    OPENSSL_cleanse(salted, sizeof(salted));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    return r;
}

static int verify_scram(const char *s, const char *password, size_t pwlen)
{
    struct scram_entry e;
    if (scram_parse(s, &e) < 0)
        return -1;
    unsigned char stored_key[SCRAM_KEY_LEN];
    int r = -1;
    if (scram_keys(password, pwlen, e.salt, e.saltlen, e.iter, stored_key, NULL) == 0)
        r = CRYPTO_memcmp(stored_key, e.stored_key, SCRAM_KEY_LEN) == 0;
    OPENSSL_cleanse(stored_key, sizeof(stored_key));
    OPENSSL_cleanse(&e, sizeof(e));
    return r;
}

/* crypt_r's working memory (~32 KiB: too big for a worker stack) and the NUL-terminated copy
 * of the phrase it needs; false when out of memory, with nothing left to free. */
static bool crypt_scratch_new(struct crypt_data **data, char **pw, const char *password,
                              size_t pwlen)
{
    *data = calloc(1, sizeof(**data));
    *pw = malloc(PASSWD_MAX + 1);
    if (!*data || !*pw) {
        free(*data);
        free(*pw);
        return false;
    }
    memcpy(*pw, password, pwlen);
    (*pw)[pwlen] = '\0';
    return true;
}

/* Wipes and frees what crypt_scratch_new made: both hold the password or its derivatives. */
static void crypt_scratch_free(struct crypt_data *data, char *pw)
{
    if (data)
        OPENSSL_cleanse(data, sizeof(*data));
    if (pw)
        OPENSSL_cleanse(pw, PASSWD_MAX + 1);
    free(data);
    free(pw);
}

static int verify_crypt(const char *hash, const char *password, size_t pwlen)
{
    if (!*hash)
        return -1;
    /* libxcrypt refuses longer phrases outright; such a password was never stored. */
    if (pwlen >= CRYPT_MAX_PASSPHRASE_SIZE)
        return 0;
    struct crypt_data *data;
    char *pw;
    if (!crypt_scratch_new(&data, &pw, password, pwlen))
        return -1;
    int r = -1;
    const char *h = crypt_r(pw, hash, data);
    /* '*' is libxcrypt's failure token: the setting is not a hash it knows */
    if (h && h[0] != '*') {
        size_t n = strlen(hash);
        r = strlen(h) == n && CRYPTO_memcmp(h, hash, n) == 0;
    }
    crypt_scratch_free(data, pw);
    return r;
}

int passwd_verify(const char *stored, const char *password, size_t pwlen)
{
    if (!stored || (!password && pwlen))
        return -1;
    if (!password)
        password = "";
    bool crypt = strncasecmp(stored, CRYPT_PREFIX, strlen(CRYPT_PREFIX)) == 0;
    bool scram = !crypt && strncasecmp(stored, SCRAM_PREFIX, strlen(SCRAM_PREFIX)) == 0;
    if (!crypt && !scram)
        return -1;
    /* Nothing longer is ever stored, and a NUL would cut the phrase crypt(3) sees: such a
     * password can only be wrong. */
    if (pwlen > PASSWD_MAX || memchr(password, '\0', pwlen))
        return 0;
    if (crypt)
        return verify_crypt(stored + strlen(CRYPT_PREFIX), password, pwlen);
    return verify_scram(stored + strlen(SCRAM_PREFIX), password, pwlen);
}

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[CRYPT_OUTPUT_SIZE + sizeof(CRYPT_PREFIX)];

/* The dummy is a real yescrypt hash at the default cost, as every `tern user add` makes, so
 * that checking it costs what checking a real user's does. */
static void dummy_init(void)
{
    char err[128];
    static const char phrase[] = "tern: no such user, or locked";
    if (passwd_hash_crypt(phrase, sizeof(phrase) - 1, dummy_hash, sizeof(dummy_hash), err,
                          sizeof(err)) < 0)
        dummy_hash[0] = '\0';
}

int passwd_verify_dummy(const char *password, size_t pwlen)
{
    pthread_once(&dummy_once, dummy_init);
    if (dummy_hash[0])
        (void)passwd_verify(dummy_hash, password, pwlen);
    return 0;
}

/* Shared checks of a password about to be stored. */
static int check_new(const char *password, size_t pwlen, size_t max, char *err, size_t errlen)
{
    if (!password || pwlen == 0) {
        err_set(err, errlen, "the password is empty; give one");
        return -1;
    }
    if (pwlen > max) {
        err_set(err, errlen, "the password is longer than %zu bytes; choose a shorter one", max);
        return -1;
    }
    if (memchr(password, '\0', pwlen)) {
        err_set(err, errlen, "the password holds a NUL byte; choose one without");
        return -1;
    }
    return 0;
}

int passwd_hash_crypt(const char *password, size_t pwlen, char *out, size_t outlen, char *err,
                      size_t errlen)
{
    if (check_new(password, pwlen, CRYPT_MAX_PASSPHRASE_SIZE - 1, err, errlen) < 0)
        return -1;
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt))) {
        err_set(err, errlen, "cannot make a yescrypt salt: %s; check that libxcrypt has yescrypt",
                strerror(errno));
        return -1;
    }
    struct crypt_data *data;
    char *pw;
    if (!crypt_scratch_new(&data, &pw, password, pwlen)) {
        err_set(err, errlen, "out of memory; free some memory and try again");
        return -1;
    }
    int r = -1;
    const char *h = crypt_r(pw, salt, data);
    if (!h || strncmp(h, "$y$", 3) != 0) {
        err_set(err, errlen, "yescrypt failed: %s; check that libxcrypt has yescrypt",
                strerror(errno));
        goto out;
    }
    if (strlen(CRYPT_PREFIX) + strlen(h) >= outlen) {
        err_set(err, errlen, "the hash does not fit in %zu bytes", outlen);
        goto out;
    }
    strcpy(out, CRYPT_PREFIX);
    strcat(out, h);
    r = 0;
out:
    crypt_scratch_free(data, pw);
    return r;
}

int passwd_hash_scram(const char *password, size_t pwlen, unsigned iterations, char *out,
                      size_t outlen, char *err, size_t errlen)
{
    if (check_new(password, pwlen, PASSWD_MAX, err, errlen) < 0)
        return -1;
    if (iterations == 0)
        iterations = PASSWD_SCRAM_ITER;
    if (iterations < SCRAM_ITER_MIN_NEW || iterations > SCRAM_ITER_MAX) {
        err_set(err, errlen, "%u SCRAM iterations: give from %u to %u", iterations,
                SCRAM_ITER_MIN_NEW, SCRAM_ITER_MAX);
        return -1;
    }
    unsigned char salt[SCRAM_SALT_LEN];
    for (size_t got = 0; got < sizeof(salt);) {
        ssize_t n = getrandom(salt + got, sizeof(salt) - got, 0);
        if (n < 0 && errno != EINTR) {
            err_set(err, errlen, "cannot get random bytes for the salt: %s", strerror(errno));
            return -1;
        }
        if (n > 0)
            got += (size_t)n;
    }
    unsigned char stored_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
    if (scram_keys(password, pwlen, salt, sizeof(salt), iterations, stored_key, server_key) < 0) {
        err_set(err, errlen, "PBKDF2-HMAC-SHA-256 failed; check the OpenSSL installation");
        return -1;
    }
    char salt_b64[4 * ((SCRAM_SALT_LEN + 2) / 3) + 1];
    char stored_b64[4 * ((SCRAM_KEY_LEN + 2) / 3) + 1], server_b64[sizeof(stored_b64)];
    b64_encode(salt, sizeof(salt), salt_b64);
    b64_encode(stored_key, SCRAM_KEY_LEN, stored_b64);
    b64_encode(server_key, SCRAM_KEY_LEN, server_b64);
    OPENSSL_cleanse(stored_key, sizeof(stored_key));
    OPENSSL_cleanse(server_key, sizeof(server_key));
    int n = snprintf(out, outlen, "%s%u,%s,%s,%s", SCRAM_PREFIX, iterations, salt_b64, stored_b64,
                     server_b64);
    OPENSSL_cleanse(stored_b64, sizeof(stored_b64));
    OPENSSL_cleanse(server_b64, sizeof(server_b64));
    if (n < 0 || (size_t)n >= outlen) {
        if (outlen)
            OPENSSL_cleanse(out, outlen);
        err_set(err, errlen, "the SCRAM entry does not fit in %zu bytes", outlen);
        return -1;
    }
    return 0;
}

int passwd_scram_parts(const char *stored, struct passwd_scram *out)
{
    struct scram_entry e;
    if (!stored || strncasecmp(stored, SCRAM_PREFIX, strlen(SCRAM_PREFIX)) != 0 ||
        scram_parse(stored + strlen(SCRAM_PREFIX), &e) < 0)
        return -1;
    snprintf(out->iter, sizeof(out->iter), "%u", e.iter);
    b64_encode(e.salt, e.saltlen, out->salt_b64);
    hex_encode(e.stored_key, SCRAM_KEY_LEN, out->stored_hex);
    hex_encode(e.server_key, SCRAM_KEY_LEN, out->server_hex);
    OPENSSL_cleanse(&e, sizeof(e));
    return 0;
}

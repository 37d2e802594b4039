/* The key of key.h: its evolution and id (OpenSSL's SHA-256 and HMAC), its file, and the
 * temp-fsync-rename writer that the key and the head file share. Buffers that held a key are
 * wiped before they are released, so an evolved-away key does not linger in freed memory. */
#include "audit/key.h"

#include "util/err.h"
#include "util/fsutil.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY_FILE_MAX 256 /* "EPOCH HEXKEY\n" is under 90 bytes; more is not a key file */

void audit_key_evolve(unsigned char key[AUDIT_KEY_LEN])
{
    unsigned char next[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    /* SHA-256 of 32 bytes cannot fail short of a broken OpenSSL; abort rather than keep a key
     * that did not evolve and so lose forward security silently. */
    if (!EVP_Digest(key, AUDIT_KEY_LEN, next, &n, EVP_sha256(), NULL) || n != AUDIT_KEY_LEN)
        abort();
    memcpy(key, next, AUDIT_KEY_LEN);
    OPENSSL_cleanse(next, sizeof(next));
}

void audit_key_id(const unsigned char key[AUDIT_KEY_LEN], char out[AUDIT_KEY_ID_HEX_LEN + 1])
{
    static const char label[] = "tern-audit key id";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), key, AUDIT_KEY_LEN, (const unsigned char *)label, sizeof(label) - 1,
              mac, &n))
        abort();
    audit_hex(mac, AUDIT_KEY_ID_HEX_LEN / 2, out);
}

void audit_hex(const unsigned char *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The value of one hex digit, or -1. */
static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int audit_unhex(const char *hex, size_t hexlen, unsigned char *bytes, size_t n)
{
    if (hexlen != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        bytes[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

/* Parses "EPOCH HEXKEY" with an optional final newline and nothing else. */
static int parse_key_line(const char *s, size_t len, uint64_t *epoch,
                          unsigned char key[AUDIT_KEY_LEN])
{
    if (len > 0 && s[len - 1] == '\n')
        len--;
    size_t i = 0;
    uint64_t e = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9' && i < 12; i++) /* no overflow */
        e = e * 10 + (uint64_t)(s[i] - '0');
    if (i == 0 || i >= len || s[i] != ' ' || e > AUDIT_EPOCH_MAX)
        return -1;
    if (audit_unhex(s + i + 1, len - i - 1, key, AUDIT_KEY_LEN) != 0)
        return -1;
    *epoch = e;
    return 0;
}

int audit_key_load(const char *path, uint64_t *epoch, unsigned char key[AUDIT_KEY_LEN], char *err,
                   size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fsutil_err(err, errlen, "audit", "cannot open the key file", path, errno);
        return -1;
    }
    char buf[KEY_FILE_MAX];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            fsutil_err(err, errlen, "audit", "cannot read the key file", path, e);
            return -1;
        }
        if (r == 0 || (got += (size_t)r) == sizeof(buf))
            break;
    }
    close(fd);
    int rc = 0;
    if (got == sizeof(buf) || parse_key_line(buf, got, epoch, key) != 0) {
        err_set(err, errlen,
                "audit: %s is not an audit key file (one line: EPOCH and 64 hex digits)", path);
        rc = -1;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

int audit_key_store(const char *path, uint64_t epoch, const unsigned char key[AUDIT_KEY_LEN],
                    mode_t mode, char *err, size_t errlen)
{
    char hex[AUDIT_KEY_HEX_LEN + 1], line[96];
    audit_hex(key, AUDIT_KEY_LEN, hex);
    int n = snprintf(line, sizeof(line), "%llu %s\n", (unsigned long long)epoch, hex);
    int rc = audit_file_replace(path, line, (size_t)n, mode, true, err, errlen);
    OPENSSL_cleanse(hex, sizeof(hex));
    OPENSSL_cleanse(line, sizeof(line));
    return rc;
}

/* fsyncs the directory holding path. */
static int sync_parent(const char *path, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        return fsutil_fsync_dir(".", "audit", err, errlen);
    size_t n = (size_t)(slash - path);
    if (n == 0)
        return fsutil_fsync_dir("/", "audit", err, errlen);
    if (n >= sizeof(dir)) {
        err_set(err, errlen, "audit: path too long: %.64s...", path);
        return -1;
    }
    memcpy(dir, path, n);
    dir[n] = '\0';
    return fsutil_fsync_dir(dir, "audit", err, errlen);
}

int audit_file_replace(const char *path, const char *text, size_t len, mode_t mode, bool sync_dir,
                       char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        err_set(err, errlen, "audit: path too long: %.64s...", path);
        return -1;
    }
    /* A .tmp left by a crash is ours: remove it rather than write through its old mode. */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        fsutil_err(err, errlen, "audit", "cannot create", tmp, errno);
        return -1;
    }
    const char *what;
    if (fsutil_write_all(fd, text, len) != 0)
        what = "cannot write";
    else if (fsync(fd) != 0)
        what = "cannot fsync";
    else
        what = NULL;
    if (what) {
        int e = errno;
        close(fd);
        unlink(tmp);
        fsutil_err(err, errlen, "audit", what, tmp, e);
        return -1;
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        fsutil_err(err, errlen, "audit", "cannot close", tmp, e);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        fsutil_err(err, errlen, "audit", "cannot rename over", path, e);
        return -1;
    }
    return sync_dir ? sync_parent(path, err, errlen) : 0;
}

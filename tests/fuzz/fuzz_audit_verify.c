/* libFuzzer harness for `tern audit verify`: arbitrary bytes as a series of log files, with a
 * first key, a key file and a head file when the input asks for them, fed to the streaming
 * verifier in chunks the input chooses and, for a single file, through audit_verify reading
 * it from disk. Input: a flags byte (1: 32 bytes of first key follow; 2: an epoch byte and 32
 * bytes of key for the key file follow; 4: a head line follows, up to its newline; high
 * nibble: feed chunk size), then the log, split into files at each 0x1e byte (never in a real
 * log). The seeds are real logs made with their keys, so mutations reach the mac checks.
 * Traps on a broken invariant: a verdict in range; a fault has a reason; every reason and
 * scope is printable ASCII (they reach a terminal); counts agree; both readers agree. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "audit/key.h"
#include "audit/verify.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define MAX_FILES 4

static int key_fd = -1, head_fd = -1, log_fd = -1;
static char key_path[64], head_path[64], log_path[64];

/* A memory-backed file the verifier can open by path: nothing left behind on disk. */
static int mem_file(const char *name, char *path, size_t pathlen)
{
    int fd = memfd_create(name, 0);
    if (fd < 0)
        abort();
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    return fd;
}

static void set_file(int fd, const void *data, size_t size)
{
    if (ftruncate(fd, 0) < 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    key_fd = mem_file("key", key_path, sizeof(key_path));
    head_fd = mem_file("head", head_path, sizeof(head_path));
    log_fd = mem_file("log", log_path, sizeof(log_path));
    return 0;
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e)
            return false;
    return true;
}

static void check_result(const struct audit_verify_result *r, enum audit_verdict v, size_t newlines)
{
    FUZZ_CHECK(v >= AUDIT_INTACT && v <= AUDIT_UNREADABLE && v == r->verdict);
    FUZZ_CHECK(memchr(r->why, 0, sizeof(r->why)) && memchr(r->scope, 0, sizeof(r->scope)));
    FUZZ_CHECK(printable(r->why) && printable(r->scope));
    FUZZ_CHECK(v == AUDIT_INTACT ? r->why[0] == '\0' : r->why[0] != '\0');
    FUZZ_CHECK(r->records <= newlines && r->macs_checked <= r->records);
    FUZZ_CHECK(!r->macs_all || r->macs_checked == r->records);
    if (r->records)
        FUZZ_CHECK(r->last_seq - r->first_seq + 1 == r->records &&
                   strcmp(r->first_ts, r->last_ts) <= 0 && r->first_epoch <= r->last_epoch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 18))
        return 0;
    uint8_t flags = data[0];
    size_t pos = 1;
    struct audit_verify_opts o = {.max_epoch = 64};
    if (flags & 1) {
        if (size - pos < AUDIT_KEY_LEN)
            return 0;
        o.first_key = data + pos;
        pos += AUDIT_KEY_LEN;
    }
    if (flags & 2) {
        if (size - pos < 1 + AUDIT_KEY_LEN)
            return 0;
        char hex[AUDIT_KEY_HEX_LEN + 1], text[96];
        audit_hex(data + pos + 1, AUDIT_KEY_LEN, hex);
        int n = snprintf(text, sizeof(text), "%u %s\n", data[pos] & 0x3fu, hex);
        set_file(key_fd, text, (size_t)n);
        o.key_file = key_path;
        pos += 1 + AUDIT_KEY_LEN;
    }
    if (flags & 4) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t n = nl ? (size_t)(nl - (data + pos)) + 1 : size - pos;
        set_file(head_fd, data + pos, n);
        o.head_file = head_path;
        pos += n;
    }
    size_t chunk = 1 + (size_t)(flags >> 4) * 97;
    const uint8_t *log = data + pos;
    size_t loglen = size - pos, newlines = 0;
    for (size_t i = 0; i < loglen; i++)
        newlines += log[i] == '\n';

    static const char *const names[MAX_FILES] = {"f0", "f1", "f2", "f3"};
    struct audit_verify_result r;
    struct audit_verifier *v = audit_verifier_new(&o, &r);
    if (!v)
        abort();
    size_t start = 0, files = 0;
    for (size_t i = 0; i <= loglen && files < MAX_FILES; i++) {
        if (i < loglen && (log[i] != 0x1e || files == MAX_FILES - 1))
            continue;
        audit_verifier_begin_file(v, names[files++]);
        for (size_t at = start; at < i; at += chunk)
            audit_verifier_feed(v, log + at, i - at < chunk ? i - at : chunk);
        audit_verifier_end_file(v);
        start = i + 1;
    }
    enum audit_verdict verdict = audit_verifier_finish(v);
    check_result(&r, verdict, newlines);
    if (files == 1) {
        /* The same bytes read from a file give the same verdict at the same line. */
        struct audit_verify_result fr;
        set_file(log_fd, log, loglen);
        const char *one[] = {log_path};
        int rc = audit_verify(one, 1, &o, &fr);
        check_result(&fr, fr.verdict, newlines);
        FUZZ_CHECK(fr.verdict == verdict && fr.line == r.line && fr.records == r.records);
        FUZZ_CHECK(rc == (verdict == AUDIT_INTACT ? 0 : verdict == AUDIT_UNREADABLE ? -1 : 1));
    }
    return 0;
}

/* libFuzzer harness for `tern audit show` and `tern audit trace`: arbitrary bytes as a log
 * file, read through cli_audit exactly as the command line does, with the table's output
 * caught in memory. The seeds are real logs (with hostile strings in them), so mutations
 * reach the table code for every kind of record and every kind of JSON value. Traps on a
 * broken invariant: the table never carries a byte a terminal would obey (C0 controls but the
 * newline, DEL, C1 controls, bidi overrides), and --json never prints a line that is not one
 * of the input's. The first input byte picks filters, so that the session logic runs too. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli/cli.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static int log_fd = -1, out_fd = -1, null_fd = -1;
static char log_path[64];
static unsigned char *out;
static size_t out_cap;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_fd = memfd_create("log", 0);
    out_fd = memfd_create("out", 0);
    null_fd = open("/dev/null", O_WRONLY);
    if (log_fd < 0 || out_fd < 0 || null_fd < 0)
        abort();
    snprintf(log_path, sizeof(log_path), "/proc/self/fd/%d", log_fd);
    return 0;
}

/* Runs `tern audit ARGS` with standard output in out_fd and standard error dropped; returns
 * the length of what it printed, which is left in out. */
static size_t run(int argc, char **argv)
{
    fflush(stdout);
    int so = dup(1), se = dup(2);
    if (ftruncate(out_fd, 0) != 0 || lseek(out_fd, 0, SEEK_SET) != 0 || so < 0 || se < 0)
        abort();
    dup2(out_fd, 1);
    dup2(null_fd, 2);
    cli_audit(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    off_t n = lseek(out_fd, 0, SEEK_END);
    if (n < 0)
        abort();
    if ((size_t)n > out_cap) {
        out_cap = (size_t)n;
        if (!(out = realloc(out, out_cap)))
            abort();
    }
    if (n && pread(out_fd, out, (size_t)n, 0) != n)
        abort();
    return (size_t)n;
}

/* Is the table free of anything a terminal would obey? */
static bool terminal_safe(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((p[i] < 0x20 && p[i] != '\n') || p[i] == 0x7f)
            return false;
        if (p[i] == 0xc2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
            return false;
        if (p[i] == 0xe2 && i + 2 < n &&
            ((p[i + 1] == 0x80 && p[i + 2] >= 0xaa && p[i + 2] <= 0xae) ||
             (p[i + 1] == 0x81 && p[i + 2] >= 0xa6 && p[i + 2] <= 0xa9)))
            return false;
    }
    return true;
}

/* Is every line of p a whole line of log? */
static bool lines_of(const unsigned char *p, size_t n, const uint8_t *log, size_t loglen)
{
    for (size_t at = 0; at < n;) {
        const unsigned char *nl = memchr(p + at, '\n', n - at);
        if (!nl)
            return false;
        size_t len = (size_t)(nl - (p + at)) + 1;
        bool found = false;
        for (size_t i = 0; !found && i + len <= loglen; i++)
            found = (i == 0 || log[i - 1] == '\n') && memcmp(log + i, p + at, len) == 0;
        if (!found)
            return false;
        at += len;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 16))
        return 0;
    uint8_t flags = data[0];
    const uint8_t *log = data + 1;
    size_t loglen = size - 1;
    if (ftruncate(log_fd, 0) != 0 || (loglen && pwrite(log_fd, log, loglen, 0) != (ssize_t)loglen))
        abort();

    char *argv[16] = {"audit", "show"};
    int argc = 2;
    if (flags & 1) {
        argv[argc++] = "--user";
        argv[argc++] = "alice@example.org";
    }
    if (flags & 2) {
        argv[argc++] = "--ip";
        argv[argc++] = "192.0.2.7";
    }
    if (flags & 4) {
        argv[argc++] = "--event";
        argv[argc++] = "connect,message,helo";
    }
    if (flags & 8) {
        argv[argc++] = "--since";
        argv[argc++] = "2020-01-01";
    }
    argv[argc++] = log_path;
    size_t n = run(argc, argv);
    FUZZ_CHECK(terminal_safe(out, n));

    char *json[] = {"audit", "show", "--json", log_path};
    n = run(4, json);
    FUZZ_CHECK(lines_of(out, n, log, loglen));

    char *trace[] = {"audit", "trace", flags & 16 ? "<m1@client.example>" : "Q1", log_path};
    n = run(4, trace);
    FUZZ_CHECK(terminal_safe(out, n));
    return 0;
}

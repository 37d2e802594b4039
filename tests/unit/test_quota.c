/* Unit tests for Maildir++ quotas, each in a fresh mkdtemp Maildir: the first line's S and C
 * limits; deltas summed, negative ones too; stale when missing, 5120 octets or larger, 15 minutes
 * old, over its own limit with several deltas, or garbage (which never crashes and is clamped);
 * quota_add creating the file through a recomputation that counts the new message once, and
 * appending after that, a torn append dropping the file; recomputation over new/, cur/ and folders
 * with and without ",S=" names; the quota_full/quota_exceeded edges; 8 threads appending at once
 * losing nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include "store/quota.h"

struct fx {
    char dir[64]; /* the Maildir root */
    char path[128];
    char err[512];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/tern-quota-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    static const char *const subs[] = {"new", "cur", "tmp"};
    for (size_t i = 0; i < 3; i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", f->dir, subs[i]);
        if (mkdir(p, 0700) != 0)
            return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, QUOTA_FILE);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    testfs_rm_tree(f->dir);
    free(f);
    return 0;
}

static void put_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static void put_quota(const struct fx *f, const char *text)
{
    put_file(f->path, text, strlen(text));
}

/* A message of len bytes at DIR/SUB/NAME; SUB may be "new", ".Sent/cur", ... */
static void put_msg(const struct fx *f, const char *sub, const char *name, size_t len)
{
    char p[512];
    int n = snprintf(p, sizeof(p), "%s/%s", f->dir, sub);
    for (int i = (int)strlen(f->dir) + 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == '\0') {
            char c = p[i];
            p[i] = '\0';
            mkdir(p, 0700); /* each level, as mkdir -p */
            p[i] = c;
        }
    }
    snprintf(p, sizeof(p), "%s/%s/%s", f->dir, sub, name);
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    memset(buf, 'm', len);
    put_file(p, buf, len);
    free(buf);
}

/* Reads a whole file into a fresh NUL-terminated buffer. */
static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, fp)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
    }
    fclose(fp);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static void assert_file(const struct fx *f, const char *want)
{
    char *got = slurp(f->path, NULL);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

/* Reads the quota, asserting the call itself succeeds; returns stale. */
static bool read_q(struct fx *f, struct quota_usage *u)
{
    bool stale = false;
    assert_int_equal(quota_read(f->dir, u, &stale, f->err, sizeof(f->err)), 0);
    return stale;
}

/* Entries in DIR whose name starts with prefix. */
static int count_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static void test_definitions(void **state)
{
    struct fx *f = *state;
    struct quota_usage u;

    put_quota(f, "1000000S\n10 1\n");
    assert_false(read_q(f, &u));
    assert_int_equal(u.limit_bytes, 1000000);
    assert_int_equal(u.limit_count, 0);
    assert_int_equal(u.bytes, 10);
    assert_int_equal(u.count, 1);

    put_quota(f, "1000000S,1000C\n10 1\n");
    assert_false(read_q(f, &u));
    assert_int_equal(u.limit_bytes, 1000000);
    assert_int_equal(u.limit_count, 1000);

    put_quota(f, "50C\n10 1\n");
    assert_false(read_q(f, &u));
    assert_int_equal(u.limit_bytes, 0);
    assert_int_equal(u.limit_count, 50);

    /* "0S" (what Dovecot writes for no limit) and an empty line both mean none. */
    put_quota(f, "0S\n10 1\n");
    assert_false(read_q(f, &u));
    assert_int_equal(u.limit_bytes, 0);
    put_quota(f, "\n10 1\n");
    assert_false(read_q(f, &u));
    assert_int_equal(u.limit_bytes, 0);
    assert_int_equal(u.bytes, 10);

    static const char *const bad[] = {
        "abc\n10 1\n",
        "100X\n10 1\n",
        "100S,\n10 1\n",
        "S\n10 1\n",
        "100 S\n10 1\n",
        "-5S\n10 1\n",
        "100S;5C\n10 1\n",
        "100SS\n10 1\n",
        "100S\r\n10 1\n",
        ",100S\n10 1\n",
        "1e6S\n10 1\n",
        "100s\n10 1\n",
        "99999999999999999999999S\n10 1\n",
        "100S,2C,junk\n10 1\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_quota(f, bad[i]);
        assert_true(read_q(f, &u));
        /* The deltas are still summed: u holds what could be read. */
        assert_int_equal(u.bytes, 10);
        assert_int_equal(u.count, 1);
    }
    /* Terms that did parse are kept. */
    put_quota(f, "100S,2C,junk\n10 1\n");
    assert_true(read_q(f, &u));
    assert_int_equal(u.limit_bytes, 100);
    assert_int_equal(u.limit_count, 2);
}

static void test_sum_deltas(void **state)
{
    struct fx *f = *state;
    struct quota_usage u;

    put_quota(f, "0S\n100 2\n-30 -1\n+7 1\n");
    assert_false(read_q(f, &u));
    assert_int_equal(u.bytes, 77);
    assert_int_equal(u.count, 2);

    /* Courier pads lines with blanks (14 octets each). */
    put_quota(f, "5000S\n      1234     3\n\t -34\t -1 \n");
    assert_false(read_q(f, &u));
    assert_int_equal(u.bytes, 1200);
    assert_int_equal(u.count, 2);
    assert_int_equal(u.limit_bytes, 5000);

    /* Down to exactly zero is fine. */
    put_quota(f, "0S\n100 1\n-100 -1\n");
    assert_false(read_q(f, &u));
    assert_int_equal(u.bytes, 0);
    assert_int_equal(u.count, 0);

    /* Large but honest values. */
    put_quota(f, "0S\n9223372036854775807 1\n-9223372036854775807 -1\n5 1\n");
    assert_false(read_q(f, &u));
    assert_int_equal(u.bytes, 5);
}

static void test_stale_missing(void **state)
{
    struct fx *f = *state;
    struct quota_usage u;
    memset(&u, 0xff, sizeof(u));
    assert_true(read_q(f, &u));
    assert_int_equal(u.bytes, 0);
    assert_int_equal(u.count, 0);
    assert_int_equal(u.limit_bytes, 0);
    assert_int_equal(u.limit_count, 0);

    /* A Maildir that does not exist yet is no error either. */
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/nope", f->dir);
    bool stale = false;
    assert_int_equal(quota_read(missing, &u, &stale, f->err, sizeof(f->err)), 0);
    assert_true(stale);
}

static void test_stale_oversized(void **state)
{
    struct fx *f = *state;
    struct quota_usage u;
    char *buf = malloc(200000);
    assert_non_null(buf);

    /* 3 + 1279 * 4 = 5119 octets: still fine. */
    size_t n = (size_t)sprintf(buf, "0S\n");
    for (int i = 0; i < 1279; i++)
        n += (size_t)sprintf(buf + n, "1 0\n");
    assert_int_equal(n, QUOTA_FILE_MAX - 1);
    put_file(f->path, buf, n);
    assert_false(read_q(f, &u));
    assert_int_equal(u.bytes, 1279);

    /* Exactly 5120 octets: Maildir++ recomputes at this size. */
    n = (size_t)sprintf(buf, "0S\n");
    for (int i = 0; i < 1278; i++)
        n += (size_t)sprintf(buf + n, "1 0\n");
    n += (size_t)sprintf(buf + n, "10 0\n");
    assert_int_equal(n, QUOTA_FILE_MAX);
    put_file(f->path, buf, n);
    assert_true(read_q(f, &u));
    assert_int_equal(u.bytes, 1288);

    /* Far larger: stale, and only the first QUOTA_FILE_MAX octets were looked at. */
    n = (size_t)sprintf(buf, "0S\n");
    while (n < 190000)
        n += (size_t)sprintf(buf + n, "1 0\n");
    put_file(f->path, buf, n);
    assert_true(read_q(f, &u));
    assert_true(u.bytes <= QUOTA_FILE_MAX / 4);
    assert_true(u.bytes >= QUOTA_FILE_MAX / 4 - 2);
    free(buf);
}

static void age(const struct fx *f, time_t delta)
{
    time_t now = time(NULL);
    struct utimbuf t = {.actime = now + delta, .modtime = now + delta};
    assert_int_equal(utime(f->path, &t), 0);
}

static void test_stale_old(void **state)
{
    struct fx *f = *state;
    struct quota_usage u;
    put_quota(f, "0S\n10 1\n");
    age(f, -(QUOTA_MAX_AGE - 60));
    assert_false(read_q(f, &u));
    age(f, -(QUOTA_MAX_AGE + 60));
    assert_true(read_q(f, &u));
    assert_int_equal(u.bytes, 10); /* still what the file says */
    /* A timestamp far in the future would never age: stale as well. */
    age(f, 24 * 3600);
    assert_true(read_q(f, &u));
}

/* Maildir++: totals at or over the file's own limit are only trusted from one summary line. */
static void test_stale_over_quota(void **state)
{
    struct fx *f = *state;
    struct quota_usage u;
    put_quota(f, "1000S\n1100 10\n");
    assert_false(read_q(f, &u));
    assert_int_equal(u.bytes, 1100);
    put_quota(f, "1000S\n900 9\n100 1\n");
    assert_true(read_q(f, &u));
    assert_int_equal(u.bytes, 1000);
    put_quota(f, "1000S\n900 9\n99 1\n");
    assert_false(read_q(f, &u));
    put_quota(f, "0S,10C\n5 9\n0 1\n");
    assert_true(read_q(f, &u));
    put_quota(f, "0S,10C\n5 10\n");
    assert_false(read_q(f, &u));
}

/* One hostile file: quota_read succeeds, calls it stale, and u is bytes/count. */
static void expect_garbage(struct fx *f, const char *text, size_t len, uint64_t bytes,
                           uint64_t count)
{
    put_file(f->path, text, len);
    struct quota_usage u;
    assert_true(read_q(f, &u));
    assert_int_equal(u.bytes, bytes);
    assert_int_equal(u.count, count);
}

#define GARBAGE(f, lit, b, c) expect_garbage(f, lit, sizeof(lit) - 1, b, c)

static void test_garbage(void **state)
{
    struct fx *f = *state;
    GARBAGE(f, "", 0, 0);
    GARBAGE(f, "0S", 0, 0);
    GARBAGE(f, "0S\n", 0, 0); /* a definition but no delta line */
    /* The torn last line is ignored. */
    GARBAGE(f, "0S\n10 1\n5 1", 10, 1);
    GARBAGE(f, "0S\n10 1\n\0\0\n", 10, 1);
    GARBAGE(f, "0S\n1\0 1\n7 1\n", 7, 1);
    GARBAGE(f, "0\0S\n7 1\n", 7, 1);
    GARBAGE(f, "0S\n\n5 1\n", 5, 1);
    GARBAGE(f, "0S\n10\n5 1\n", 5, 1);
    GARBAGE(f, "0S\n1 2 3\n5 1\n", 5, 1);
    GARBAGE(f, "0S\n1-2 1\n5 1\n", 5, 1);
    GARBAGE(f, "0S\n--1 1\n5 1\n", 5, 1);
    GARBAGE(f, "0S\n- 1\n5 1\n", 5, 1);
    GARBAGE(f, "0S\n0x10 1\n5 1\n", 5, 1);
    GARBAGE(f, "0S\n5,1\n5 1\n", 5, 1);
    GARBAGE(f, "0S\n5 1\r\n5 1\n", 5, 1);
    GARBAGE(f, "0S\n\xff\xfe 1\n5 1\n", 5, 1);
    /* Numbers past what a signed 64-bit reader holds. */
    GARBAGE(f, "0S\n99999999999999999999999 1\n5 1\n", 5, 1);
    GARBAGE(f, "0S\n9223372036854775808 1\n5 1\n", 5, 1);
    GARBAGE(f, "0S\n-9223372036854775809 0\n5 1\n", 5, 1);
    GARBAGE(f, "0S\n5 1\n1 99999999999999999999\n", 5, 1);
    /* Negative totals clamp at 0. */
    GARBAGE(f, "0S\n10 1\n-20 -2\n", 0, 0);
    GARBAGE(f, "0S\n100 1\n-9223372036854775808 0\n", 0, 1);
    /* Sums that overflow 64 bits clamp at UINT64_MAX. */
    GARBAGE(f,
            "0S\n9223372036854775807 1\n9223372036854775807 1\n9223372036854775807 1\n"
            "-5 1\n",
            UINT64_MAX, 4);
    /* Both sides saturated: no meaningful total. */
    char big[QUOTA_FILE_MAX];
    size_t n = (size_t)sprintf(big, "0S\n");
    for (int i = 0; i < 20; i++)
        n += (size_t)sprintf(big + n, "9223372036854775807 1\n-9223372036854775807 -1\n");
    expect_garbage(f, big, n, 0, 0);

    /* Random bytes, and random mixes of valid and hostile lines: never a crash or an error. */
    static const char *const bits[] = {
        "0S\n", "5 1\n", "-5 -1\n", "\n", "\0", " ",          "9999999999999999999999",
        "S",    "C",     ",",       "-",  "\t", "100S,10C\n", "1 1"};
    uint64_t x = 88172645463325252u;
    char *buf = malloc(3 * QUOTA_FILE_MAX);
    assert_non_null(buf);
    for (int round = 0; round < 3000; round++) {
        size_t len = 0, want;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        want = (size_t)(x % (2 * QUOTA_FILE_MAX));
        while (len < want) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            if (round % 2) {
                buf[len++] = (char)(x & 0xff);
            } else {
                const char *b = bits[x % (sizeof(bits) / sizeof(bits[0]))];
                size_t bl = *b ? strlen(b) : 1;
                memcpy(buf + len, b, bl);
                len += bl;
            }
        }
        put_file(f->path, buf, len);
        struct quota_usage u;
        bool stale;
        assert_int_equal(quota_read(f->dir, &u, &stale, f->err, sizeof(f->err)), 0);
    }
    free(buf);
}

/* What is not a plain file is never read through or appended to: the recomputation replaces it. */
static void test_not_a_file(void **state)
{
    struct fx *f = *state;
    struct quota_usage u;
    char target[128];
    snprintf(target, sizeof(target), "%s/target", f->dir);
    put_file(target, "0S\n5 1\n", 7); /* well-formed, so only not following it makes it stale */
    assert_int_equal(symlink(target, f->path), 0);
    assert_true(read_q(f, &u));
    assert_int_equal(u.bytes, 0);
    put_msg(f, "new", "1,S=40", 1);
    assert_int_equal(quota_add(f->dir, 0, 40, 1, f->err, sizeof(f->err)), 0);
    char *t = slurp(target, NULL);
    assert_string_equal(t, "0S\n5 1\n");
    free(t);
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_file(f, "0S\n40 1\n");

    /* A FIFO neither blocks the reader nor the writer. */
    assert_int_equal(unlink(f->path), 0);
    assert_int_equal(mkfifo(f->path, 0600), 0);
    assert_true(read_q(f, &u));
    assert_int_equal(quota_add(f->dir, 0, 40, 1, f->err, sizeof(f->err)), 0);
    assert_file(f, "0S\n40 1\n");

    /* A directory cannot be replaced: the reason says where and what to do. */
    assert_int_equal(unlink(f->path), 0);
    assert_int_equal(mkdir(f->path, 0700), 0);
    assert_true(read_q(f, &u));
    f->err[0] = '\0';
    assert_int_equal(quota_add(f->dir, 0, 40, 1, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, f->path));
    assert_non_null(strstr(f->err, "move it aside"));
    f->err[0] = '\0';
    assert_int_equal(quota_recalc(f->dir, 0, &u, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, f->path));
    assert_non_null(strstr(f->err, "move it aside"));
}

static void test_add_creates_through_recalc(void **state)
{
    struct fx *f = *state;
    /* As tern does: the message is in new/ first, then quota_add. Its name gives the size (the
     * content is shorter on purpose), and it is counted once, not again as a delta. */
    put_msg(f, "new", "1700000000.M1P2Q3.mx,S=100", 3);
    put_msg(f, "cur", "1700000000.M4P5Q6.mx,S=250:2,S", 3);
    assert_int_equal(quota_add(f->dir, 5000, 100, 1, f->err, sizeof(f->err)), 0);
    assert_file(f, "5000S\n350 2\n");
    struct quota_usage u;
    assert_false(read_q(f, &u));
    assert_int_equal(u.bytes, 350);
    assert_int_equal(u.count, 2);
    assert_int_equal(u.limit_bytes, 5000);
    assert_int_equal(count_prefixed(f->dir, QUOTA_FILE "."), 0);
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%s/tmp", f->dir);
    assert_int_equal(count_prefixed(tmp, ""), 2); /* "." and ".." only */

    /* An expunge with the file gone: the message is removed first, so the recomputation already
     * leaves it out. No limit is written "0S", which Dovecot reads as none. */
    char cur[256];
    snprintf(cur, sizeof(cur), "%s/cur/1700000000.M4P5Q6.mx,S=250:2,S", f->dir);
    assert_int_equal(unlink(cur), 0);
    assert_int_equal(unlink(f->path), 0);
    assert_int_equal(quota_add(f->dir, 0, -250, -1, f->err, sizeof(f->err)), 0);
    assert_file(f, "0S\n100 1\n");
}

static void test_add_appends(void **state)
{
    struct fx *f = *state;
    struct quota_usage u;
    assert_int_equal(quota_recalc(f->dir, 1000, &u, f->err, sizeof(f->err)), 0);
    assert_int_equal(u.bytes, 0);
    assert_int_equal(u.limit_bytes, 1000);
    assert_file(f, "1000S\n0 0\n");
    assert_int_equal(quota_add(f->dir, 1000, 300, 1, f->err, sizeof(f->err)), 0);
    assert_int_equal(quota_add(f->dir, 1000, 200, 1, f->err, sizeof(f->err)), 0);
    assert_int_equal(quota_add(f->dir, 1000, -300, -1, f->err, sizeof(f->err)), 0);
    assert_int_equal(quota_add(f->dir, 1000, 0, 0, f->err, sizeof(f->err)), 0); /* nothing */
    assert_file(f, "1000S\n0 0\n300 1\n200 1\n-300 -1\n");
    assert_false(read_q(f, &u));
    assert_int_equal(u.bytes, 200);
    assert_int_equal(u.count, 1);
    /* The existing first line is left alone: a changed limit is the recomputation's job. */
    assert_int_equal(quota_add(f->dir, 7777, 1, 0, f->err, sizeof(f->err)), 0);
    assert_file(f, "1000S\n0 0\n300 1\n200 1\n-300 -1\n1 0\n");
    /* At the file's own limit with several delta lines: Maildir++ wants a fresh count. */
    assert_int_equal(quota_add(f->dir, 1000, 799, 1, f->err, sizeof(f->err)), 0);
    assert_true(read_q(f, &u));
    assert_int_equal(u.bytes, 1000);
    assert_int_equal(u.count, 2);
}

/* A line cut short (a full disk) would merge with the next one into a plausible wrong number: the
 * file is removed instead, so the next change recomputes it. */
static void test_short_write(void **state)
{
    struct fx *f = *state;
    struct quota_usage u;
    assert_int_equal(quota_recalc(f->dir, 0, &u, f->err, sizeof(f->err)), 0); /* "0S\n0 0\n" */
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 7 + 3; /* room for 3 octets of "12345 1\n" */
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    f->err[0] = '\0';
    int rc = quota_add(f->dir, 0, 12345, 1, f->err, sizeof(f->err));
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(f->err, "short write"));
    assert_non_null(strstr(f->err, f->path));
    assert_int_equal(access(f->path, F_OK), -1);
    assert_true(read_q(f, &u));
}

static void test_recalc(void **state)
{
    struct fx *f = *state;
    put_msg(f, "new", "1.M1.mx,S=100", 10);        /* 100, from the name */
    put_msg(f, "new", "2.M2.mx", 37);              /* 37, stat'ed */
    put_msg(f, "cur", "3.M3.mx,S=250:2,S", 1);     /* 250 */
    put_msg(f, "cur", "4.M4.mx:2,RS", 64);         /* 64 */
    put_msg(f, "cur", "5.M5.mx,S=12x:2,", 7);      /* malformed size: 7, stat'ed */
    put_msg(f, "cur", "6.M6.mx,S=30,W=31:2,", 1);  /* 30 */
    put_msg(f, "cur", ".hidden,S=999", 1);         /* skipped */
    put_msg(f, "tmp", "7.M7.mx,S=5000", 1);        /* tmp/ never counts */
    put_msg(f, ".Sent/new", "8.M8.mx,S=1000", 1);  /* 1000 */
    put_msg(f, ".Sent/cur", "9.M9.mx:2,S", 500);   /* 500 */
    put_msg(f, ".Sent", "maildirfolder", 0);       /* folder root: not a message */
    put_msg(f, ".Trash/cur", "10.M10.mx,S=40", 1); /* Trash counts too */
    put_msg(f, "..odd/new", "11.M11.mx,S=7777", 1);
    put_msg(f, ".", "dovecot-uidlist", 50);
    put_msg(f, ".", "subscriptions", 50);
    put_msg(f, ".", ".notafolder", 50);
    char sent[128], link[128];
    snprintf(sent, sizeof(sent), "%s/.Sent", f->dir);
    snprintf(link, sizeof(link), "%s/.Link", f->dir);
    assert_int_equal(symlink(sent, link), 0); /* not followed: no double count */

    struct quota_usage u;
    memset(&u, 0xff, sizeof(u));
    assert_int_equal(quota_recalc(f->dir, 1000000, &u, f->err, sizeof(f->err)), 0);
    uint64_t want = 100 + 37 + 250 + 64 + 7 + 30 + 1000 + 500 + 40;
    assert_int_equal(u.bytes, want);
    assert_int_equal(u.count, 9);
    assert_int_equal(u.limit_bytes, 1000000);
    assert_int_equal(u.limit_count, 0);
    char line[64];
    snprintf(line, sizeof(line), "1000000S\n%" PRIu64 " 9\n", want);
    assert_file(f, line);
    assert_false(read_q(f, &u));
    assert_int_equal(u.bytes, want);

    /* No tmp/: the temporary file goes beside maildirsize, and nothing is left behind. */
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%s/tmp", f->dir);
    testfs_rm_tree(tmp);
    assert_int_equal(quota_recalc(f->dir, 0, &u, f->err, sizeof(f->err)), 0);
    assert_int_equal(u.bytes, want);
    assert_int_equal(count_prefixed(f->dir, QUOTA_FILE), 1);
    snprintf(line, sizeof(line), "0S\n%" PRIu64 " 9\n", want);
    assert_file(f, line);
}

static void test_recalc_errors(void **state)
{
    struct fx *f = *state;
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/gone", f->dir);
    struct quota_usage u;
    f->err[0] = '\0';
    assert_int_equal(quota_recalc(missing, 0, &u, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, "quota: open"));
    assert_non_null(strstr(f->err, missing));
    assert_non_null(strstr(f->err, "check data_dir"));
    /* quota_add on a missing Maildir fails the same way through the recomputation. */
    f->err[0] = '\0';
    assert_int_equal(quota_add(missing, 0, 1, 1, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, missing));

    char longdir[PATH_MAX + 16];
    memset(longdir, 'a', sizeof(longdir) - 1);
    longdir[0] = '/';
    longdir[sizeof(longdir) - 1] = '\0';
    bool stale;
    f->err[0] = '\0';
    assert_int_equal(quota_read(longdir, &u, &stale, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, "path too long"));
    assert_int_equal(quota_add(longdir, 0, 1, 1, f->err, sizeof(f->err)), -1);
    assert_int_equal(quota_recalc(longdir, 0, &u, f->err, sizeof(f->err)), -1);
}

static void test_full_exceeded(void **state)
{
    struct quota_usage u = {.bytes = 1000};
    /* limit 0: never. */
    assert_false(quota_full(&u, 0));
    assert_false(quota_exceeded(&u, 0, UINT64_MAX));
    u.bytes = UINT64_MAX;
    assert_false(quota_full(&u, 0));
    assert_false(quota_exceeded(&u, 0, UINT64_MAX));

    u.bytes = 999;
    assert_false(quota_full(&u, 1000));
    u.bytes = 1000; /* exactly at the limit: full */
    assert_true(quota_full(&u, 1000));
    u.bytes = 1001;
    assert_true(quota_full(&u, 1000));

    u.bytes = 900;
    assert_false(quota_exceeded(&u, 1000, 0));
    assert_false(quota_exceeded(&u, 1000, 100)); /* lands exactly on the limit: allowed */
    assert_true(quota_exceeded(&u, 1000, 101));
    u.bytes = 0;
    assert_false(quota_exceeded(&u, 1000, 1000));
    assert_true(quota_exceeded(&u, 1000, 1001));
    assert_true(quota_exceeded(&u, 1000, UINT64_MAX)); /* no wrap-around */
    u.bytes = 1500;                                    /* already past it */
    assert_true(quota_exceeded(&u, 1000, 0));
    u.bytes = UINT64_MAX - 1;
    assert_false(quota_exceeded(&u, UINT64_MAX, 1));
    assert_true(quota_exceeded(&u, UINT64_MAX, 2));
}

enum { THREADS = 8, ADDS = 200 };

struct worker {
    const char *dir;
    int id;
    int failures;
};

static void *adder(void *arg)
{
    struct worker *w = arg;
    char err[256];
    for (int i = 0; i < ADDS; i++) {
        int64_t bytes = (int64_t)w->id * 100000 + i;
        if (quota_add(w->dir, 0, bytes, 1, err, sizeof(err)) != 0)
            w->failures++;
    }
    return NULL;
}

static void test_concurrent_adds(void **state)
{
    struct fx *f = *state;
    struct quota_usage u;
    assert_int_equal(quota_recalc(f->dir, 0, &u, f->err, sizeof(f->err)), 0);
    pthread_t t[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.dir = f->dir, .id = i + 1};
        assert_int_equal(pthread_create(&t[i], NULL, adder, &w[i]), 0);
    }
    uint64_t want = 0;
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
        for (int j = 0; j < ADDS; j++)
            want += (uint64_t)(i + 1) * 100000 + (uint64_t)j;
    }

    /* Every line whole and once: the file is well past QUOTA_FILE_MAX, so sum it here. */
    size_t len;
    char *text = slurp(f->path, &len);
    assert_non_null(text);
    assert_true(len > QUOTA_FILE_MAX);
    assert_int_equal(strncmp(text, "0S\n0 0\n", 7), 0);
    uint64_t bytes = 0, count = 0, lines = 0;
    for (char *p = text + 7; *p; lines++) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        long long b, c;
        int used = 0;
        assert_int_equal(sscanf(p, "%lld %lld%n", &b, &c, &used), 2);
        assert_ptr_equal(p + used, nl);
        assert_int_equal(c, 1);
        bytes += (uint64_t)b;
        count += (uint64_t)c;
        p = nl + 1;
    }
    free(text);
    assert_int_equal(lines, THREADS * ADDS);
    assert_int_equal(count, THREADS * ADDS);
    assert_int_equal(bytes, want);
    assert_true(read_q(f, &u)); /* too big now: due for a recomputation */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_definitions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sum_deltas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_oversized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_over_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_creates_through_recalc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recalc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recalc_errors, setup, teardown),
        cmocka_unit_test(test_full_exceeded),
        cmocka_unit_test_setup_teardown(test_concurrent_adds, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

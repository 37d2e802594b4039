/* Unit tests for `tern audit` (src/cli/audit_*.c), run in-process through cli_audit with
 * standard output and error caught in files. Each test gets a fresh data folder with a
 * tern.conf and a log written with the audit library as ternd will write it: two rotated
 * files, three SMTP sessions (one with a hostile HELO name), an admin record, a restart, and
 * a session id used again after the restart. Checked: verify intact with the current key,
 * with the first key moved off, with FILEs named; each of the five tamperings found at the
 * right FILE:LINE with the right kind; a wrong, missing or not-first key is a clear error;
 * show's filters (user and ip pick whole sessions, not the reused id), times, --json byte
 * for byte; trace from connect to disconnect by Message-ID or queue id; control bytes never
 * reach the terminal; rotate with the lock free and held; junk files never crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testfs.h"

#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/log.h"
#include "audit/record.h"
#include "cli/cli.h"

#define MAX_LINES 64

struct fx {
    char dir[128];
    char conf[160];
    char adir[160];
    char log[192]; /* audit/audit.log */
    char old[192]; /* audit/audit.log.000001 */
    char first[192];
    char offline[192]; /* where the admin moved the first key */
    char outf[160], errf[160];
    char *out, *err; /* what the last run printed */
    char e[1024];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char tmpl[] = "/tmp/tern-audit-cmd.XXXXXX", real[PATH_MAX];
    if (!f || !mkdtemp(tmpl) || !realpath(tmpl, real) || strlen(real) >= sizeof(f->dir))
        return -1;
    strcpy(f->dir, real);
    snprintf(f->conf, sizeof(f->conf), "%s/tern.conf", f->dir);
    snprintf(f->adir, sizeof(f->adir), "%s/audit", f->dir);
    snprintf(f->log, sizeof(f->log), "%s/audit.log", f->adir);
    snprintf(f->old, sizeof(f->old), "%s/audit.log.000001", f->adir);
    snprintf(f->first, sizeof(f->first), "%s/first-key", f->adir);
    snprintf(f->offline, sizeof(f->offline), "%s/offline-first-key", f->dir);
    snprintf(f->outf, sizeof(f->outf), "%s/out", f->dir);
    snprintf(f->errf, sizeof(f->errf), "%s/err", f->dir);
    testfs_put(f->conf, "[server]\ndomains = example.org\n[listen]\nsmtp = 127.0.0.1:2525\n");
    char path[192];
    snprintf(path, sizeof(path), "%s/users", f->dir);
    testfs_put(path,
               "alice@example.org:{CRYPT}$y$j9T$abc$def::\nbob@example.org:{CRYPT}$y$j9T$a$d::\n");
    snprintf(path, sizeof(path), "%s/aliases", f->dir);
    testfs_put(path, "postmaster: alice\n");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    testfs_rm_tree(f->dir);
    free(f->out);
    free(f->err);
    free(f);
    return 0;
}

/* Runs `tern audit ARGS...` (NULL-terminated) and keeps what it printed. */
static int run(struct fx *f, ...)
{
    char *argv[32] = {"audit"};
    int argc = 1;
    va_list ap;
    va_start(ap, f);
    for (const char *a; (a = va_arg(ap, const char *)) && argc < 31;)
        argv[argc++] = (char *)a;
    va_end(ap);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    int fo = open(f->outf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(f->errf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(so >= 0 && se >= 0 && fo >= 0 && fe >= 0);
    dup2(fo, 1);
    dup2(fe, 2);
    int rc = cli_audit(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    close(fo);
    close(fe);
    free(f->out);
    free(f->err);
    f->out = testfs_get(f->outf, NULL);
    f->err = testfs_get(f->errf, NULL);
    return rc;
}

#define HAS(s, sub)                                                                                \
    do {                                                                                           \
        if (!strstr((s), (sub)))                                                                   \
            fail_msg("expected \"%s\" in:\n%s", (sub), (s));                                       \
    } while (0)
#define HASNT(s, sub)                                                                              \
    do {                                                                                           \
        if (strstr((s), (sub)))                                                                    \
            fail_msg("did not expect \"%s\" in:\n%s", (sub), (s));                                 \
    } while (0)

static void add(struct fx *f, struct audit *a, const char *event, json_t *fields)
{
    assert_non_null(fields);
    if (audit_append(a, event, fields, NULL, f->e, sizeof(f->e)) != 0)
        fail_msg("audit_append %s: %s", event, f->e);
}

static const char hostile[] = "evil\x1b]0;pwned\x07\r\nfake\0x\x7f\xe2\x80\xae"
                              "cba";

/* The log every test starts from (seq: line):
 *   audit.log.000001  1 create, 2 start, s1 from 192.0.2.7 (3 connect .. 10 message), s2 from
 *                     198.51.100.9 (11 connect, 12 helo with hostile bytes), 13 s1 disconnect,
 *                     14 epoch, 15 mail, 16 rcpt 550, 17 s2 disconnect
 *   audit.log         18 rotate, s3 bob from 192.0.2.7 (19 connect, 20 auth, 21 message Q2,
 *                     22 disconnect), 23 admin; restart: 24 epoch; s1 again from 203.0.113.5
 *                     (25 connect, 26 message Q3 <m3@...>, 27 disconnect)
 * with a pause before 18, so that the files' times do not overlap. */
static void write_log(struct fx *f)
{
    struct audit_opts o = {.dir = f->adir};
    struct audit_open_info info;
    struct audit *a = audit_open(&o, &info, f->e, sizeof(f->e));
    if (!a)
        fail_msg("audit_open: %s", f->e);
    assert_true(info.created);
    add(f, a, "start",
        json_pack("{s:s, s:s, s:s, s:i}", "version", "0.1", "config", f->conf, "config_sha256",
                  "ab12", "pid", 4242));
    add(f, a, "connect",
        json_pack("{s:s, s:s, s:i, s:s}", "session", "s1", "ip", "192.0.2.7", "port", 40001,
                  "listener", "submission"));
    add(f, a, "helo",
        json_pack("{s:s, s:s, s:s}", "session", "s1", "verb", "EHLO", "name", "client.example"));
    add(f, a, "starttls",
        json_pack("{s:s, s:s, s:s, s:s}", "session", "s1", "protocol", "TLSv1.3", "cipher",
                  "TLS_AES_256_GCM_SHA384", "sni", "mail.example.org"));
    add(f, a, "auth",
        json_pack("{s:s, s:s, s:s, s:s, s:i}", "session", "s1", "user", "alice@example.org", "mech",
                  "PLAIN", "result", "ok", "code", 235));
    add(f, a, "mail",
        json_pack("{s:s, s:s, s:i, s:s, s:s}", "session", "s1", "from", "alice@example.org", "code",
                  250, "enh", "2.1.0", "rule", "authenticated"));
    add(f, a, "rcpt",
        json_pack("{s:s, s:s, s:i, s:s, s:s}", "session", "s1", "to", "bob@example.org", "code",
                  250, "enh", "2.1.5", "rule", "local"));
    add(f, a, "data",
        json_pack("{s:s, s:s, s:i, s:s}", "session", "s1", "verb", "DATA", "code", 250, "enh",
                  "2.0.0"));
    add(f, a, "message",
        json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:[s], s:[s], s:[s], s:b}", "session", "s1",
                  "id", "Q1", "message_id", "<m1@client.example>", "size", 1234, "sha256",
                  "5d41402abc4b2a76b9719d911017c592", "from", "alice@example.org", "auth_user",
                  "alice@example.org", "rcpts", "bob@example.org", "mailboxes", "bob@example.org",
                  "files", "mail/example.org/bob/new/1.M1P1.mx", "queued", 0));
    add(f, a, "connect",
        json_pack("{s:s, s:s, s:i, s:s}", "session", "s2", "ip", "198.51.100.9", "port", 50002,
                  "listener", "smtp"));
    add(f, a, "helo",
        json_pack("{s:s, s:s, s:o}", "session", "s2", "verb", "HELO", "name",
                  audit_strn(hostile, sizeof(hostile) - 1)));
    add(f, a, "disconnect",
        json_pack("{s:s, s:s, s:i, s:i, s:i, s:i}", "session", "s1", "ip", "192.0.2.7",
                  "duration_ms", 812, "bytes_in", 2048, "bytes_out", 900, "messages", 1));
    assert_int_equal(audit_evolve(a, "timer", f->e, sizeof(f->e)), 0);
    add(f, a, "mail",
        json_pack("{s:s, s:s, s:i, s:s}", "session", "s2", "from", "spam@evil.test", "code", 250,
                  "enh", "2.1.0"));
    add(f, a, "rcpt",
        json_pack("{s:s, s:s, s:i, s:s, s:s}", "session", "s2", "to", "bob@example.org", "code",
                  550, "enh", "5.7.1", "rule", "relay"));
    add(f, a, "disconnect",
        json_pack("{s:s, s:s, s:i}", "session", "s2", "ip", "198.51.100.9", "messages", 0));
    nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    assert_int_equal(audit_rotate(a, f->e, sizeof(f->e)), 0);
    add(f, a, "connect",
        json_pack("{s:s, s:s, s:i, s:s}", "session", "s3", "ip", "192.0.2.7", "port", 40003,
                  "listener", "submission"));
    add(f, a, "auth",
        json_pack("{s:s, s:s, s:s, s:s, s:i}", "session", "s3", "user", "bob@example.org", "mech",
                  "SCRAM-SHA-256", "result", "ok", "code", 235));
    add(f, a, "message",
        json_pack("{s:s, s:s, s:s, s:i, s:s, s:[s], s:[], s:b}", "session", "s3", "id", "Q2",
                  "message_id", "<m2@client.example>", "size", 99, "auth_user", "bob@example.org",
                  "rcpts", "carol@example.net", "mailboxes", "queued", 1));
    add(f, a, "disconnect", json_pack("{s:s, s:s}", "session", "s3", "ip", "192.0.2.7"));
    add(f, a, "admin",
        json_pack("{s:s, s:i, s:s, s:[s,s], s:s}", "unix_user", "root", "uid", 0, "command", "user",
                  "args", "lock", "bob@example.org", "result", "ok"));
    assert_int_equal(audit_close(a, f->e, sizeof(f->e)), 0);

    a = audit_open(&o, &info, f->e, sizeof(f->e)); /* a restart: s1 is handed out again */
    if (!a)
        fail_msg("audit_open: %s", f->e);
    add(f, a, "connect",
        json_pack("{s:s, s:s, s:i, s:s}", "session", "s1", "ip", "203.0.113.5", "port", 60000,
                  "listener", "smtp"));
    add(f, a, "message",
        json_pack("{s:s, s:s, s:s, s:i}", "session", "s1", "id", "Q3", "message_id",
                  "<m3@elsewhere.test>", "size", 10));
    add(f, a, "disconnect", json_pack("{s:s, s:s}", "session", "s1", "ip", "203.0.113.5"));
    struct audit_stats st;
    audit_get_stats(a, &st);
    assert_int_equal(st.seq, 27);
    assert_int_equal(audit_close(a, f->e, sizeof(f->e)), 0);
}

/* ---- lines of a file ------------------------------------------------------------------------ */

struct lines {
    char *l[MAX_LINES];
    size_t n;
};

static void read_lines(const char *path, struct lines *ls)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    ls->n = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, fp) > 0) {
        assert_true(ls->n < MAX_LINES);
        ls->l[ls->n++] = strdup(line);
    }
    free(line);
    fclose(fp);
}

static void write_lines(const char *path, struct lines *ls)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (size_t i = 0; i < ls->n; i++) {
        fputs(ls->l[i], fp);
        free(ls->l[i]);
    }
    fclose(fp);
}

/* The ts of record seq in text, as stored. */
static void ts_of(const char *text, int seq, char ts[AUDIT_TS_LEN + 1])
{
    char mark[48];
    int n = snprintf(mark, sizeof(mark), "{\"seq\":%d,\"ts\":\"", seq);
    const char *p = strstr(text, mark);
    assert_non_null(p);
    memcpy(ts, p + n, AUDIT_TS_LEN);
    ts[AUDIT_TS_LEN] = '\0';
}

/* The first key moved off the machine, as the admin is told to. */
static void move_first_key(struct fx *f)
{
    assert_int_equal(rename(f->first, f->offline), 0);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- verify --------------------------------------------------------------------------------- */

static void test_verify_intact(void **state)
{
    struct fx *f = *state;
    write_log(f);
    assert_int_equal(run(f, "verify", "-c", f->conf, NULL), 0);
    HAS(f->out, "intact: 27 records in 2 files\n  seq 1 to 27, ");
    HAS(f->out, "epochs 0 to 2\n");
    HAS(f->out, "key: the current key ");
    HAS(f->out, "proven: macs checked for 4 of 27 records (those of epoch 2 on)");
    HAS(f->out, "end: the log reaches the record ");
    HAS(f->err, "first-key is still on this machine");

    move_first_key(f);
    assert_int_equal(run(f, "verify", "--key", f->offline, "-c", f->conf, NULL), 0);
    HAS(f->out, "proven: every record's mac checked\n");
    HAS(f->out, "key: the first key ");
    assert_string_equal(f->err, "");

    /* FILEs named, the last being audit.log: key and head from beside it. */
    assert_int_equal(run(f, "verify", f->old, f->log, NULL), 0);
    HAS(f->out, "intact: 27 records in 2 files");
    HAS(f->out, "key: the current key");
    HAS(f->out, "end: ");
    assert_int_equal(run(f, "verify", "--no-head", "--key", f->offline, f->old, f->log, NULL), 0);
    HASNT(f->out, "end: ");
    HAS(f->out, "no head file");
    /* The old file alone: no key, no head, and it says so. */
    assert_int_equal(run(f, "verify", f->old, NULL), 0);
    HAS(f->out, "intact: 17 records in 1 file\n");
    HAS(f->out, "no key given");
}

/* Runs verify with the first key and expects a fault of kind at audit.log:line. */
static void expect_fault(struct fx *f, const char *kind, size_t line)
{
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "%s:%zu: %s: ", f->log, line, kind);
    assert_int_equal(run(f, "verify", "--key", f->offline, "-c", f->conf, NULL), 1);
    if (strncmp(f->out, want, strlen(want)) != 0)
        fail_msg("expected a line starting \"%s\", got:\n%s%s", want, f->out, f->err);
    HAS(f->out, "what to do: ");
    /* The current key and no key find it at the same place (none of these is a mac fault). */
    if (strcmp(kind, "edited") != 0) {
        assert_int_equal(run(f, "verify", "-c", f->conf, NULL), 1);
        assert_int_equal(strncmp(f->out, want, strlen(want)), 0);
    }
}

static void test_tamper_edited(void **state)
{
    struct fx *f = *state;
    write_log(f);
    move_first_key(f);
    struct lines ls;
    read_lines(f->log, &ls);
    char *p = strstr(ls.l[3], "carol@"); /* line 4: the Q2 message */
    assert_non_null(p);
    p[0] = 'k';
    write_lines(f->log, &ls);
    expect_fault(f, "edited", 4);
    HAS(f->out, "mac does not match");
    HAS(f->out, "before it: 20 records passed\n  seq 1 to 20,");
}

static void test_tamper_deleted(void **state)
{
    struct fx *f = *state;
    write_log(f);
    move_first_key(f);
    struct lines ls;
    read_lines(f->log, &ls);
    free(ls.l[4]); /* line 5: s3's disconnect */
    memmove(&ls.l[4], &ls.l[5], (ls.n - 5) * sizeof(ls.l[0]));
    ls.n--;
    write_lines(f->log, &ls);
    expect_fault(f, "deleted", 5);
    HAS(f->out, "record 22 is missing");
}

static void test_tamper_inserted(void **state)
{
    struct fx *f = *state;
    write_log(f);
    move_first_key(f);
    struct lines ls;
    read_lines(f->log, &ls);
    memmove(&ls.l[6], &ls.l[5], (ls.n - 5) * sizeof(ls.l[0]));
    ls.l[5] = strdup(ls.l[3]); /* the Q2 message again, as line 6 */
    ls.n++;
    write_lines(f->log, &ls);
    expect_fault(f, "inserted", 6);
}

static void test_tamper_reordered(void **state)
{
    struct fx *f = *state;
    write_log(f);
    move_first_key(f);
    struct lines ls;
    read_lines(f->log, &ls);
    char *t = ls.l[1];
    ls.l[1] = ls.l[2];
    ls.l[2] = t;
    write_lines(f->log, &ls);
    expect_fault(f, "reordered", 2);
}

static void test_tamper_truncated(void **state)
{
    struct fx *f = *state;
    write_log(f);
    move_first_key(f);
    struct lines ls;
    read_lines(f->log, &ls);
    assert_int_equal(ls.n, 10);
    free(ls.l[9]);
    free(ls.l[8]);
    ls.n -= 2;
    write_lines(f->log, &ls);
    expect_fault(f, "truncated", 9);
    HAS(f->out, "ends at record 25 but head says record 27");

    /* A last line cut in the middle: with or without head. */
    read_lines(f->log, &ls);
    ls.l[7][30] = '\0';
    write_lines(f->log, &ls);
    expect_fault(f, "truncated", 8);
    assert_int_equal(run(f, "verify", "--no-head", "-c", f->conf, NULL), 1);
    HAS(f->out, "audit.log:8: truncated: the file ends inside a line");
}

/* A wrong, missing, malformed or not-first key is a clear error, never a crash. */
static void test_keys(void **state)
{
    struct fx *f = *state;
    write_log(f);
    move_first_key(f);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/nope", f->dir);
    assert_int_equal(run(f, "verify", "--key", path, "-c", f->conf, NULL), 66);
    HAS(f->err, "cannot read the key file");
    HAS(f->err, "No such file");

    unsigned char wrong[AUDIT_KEY_LEN] = {1, 2, 3};
    snprintf(path, sizeof(path), "%s/wrong-key", f->dir);
    assert_int_equal(audit_key_store(path, 0, wrong, 0600, f->e, sizeof(f->e)), 0);
    assert_int_equal(run(f, "verify", "--key", path, "-c", f->conf, NULL), 1);
    HAS(f->out, "audit.log.000001:1: wrong key: the key given is not this log's");
    HAS(f->out, "what to do: make sure ");

    char cur[PATH_MAX + 32];
    snprintf(cur, sizeof(cur), "%s/key", f->adir);
    assert_int_equal(run(f, "verify", "--key", cur, "-c", f->conf, NULL), 65);
    HAS(f->err, "is a key of epoch 2, not the first key (epoch 0)");

    assert_int_equal(run(f, "verify", "--key", f->conf, "-c", f->conf, NULL), 65);
    HAS(f->err, "is not an audit key file");

    /* The current key swapped for another log's: wrong key, at the epoch 2 record. */
    char saved[PATH_MAX + 32];
    snprintf(saved, sizeof(saved), "%s/saved-key", f->dir);
    assert_int_equal(rename(cur, saved), 0);
    assert_int_equal(audit_key_store(cur, 2, wrong, 0600, f->e, sizeof(f->e)), 0);
    assert_int_equal(run(f, "verify", "-c", f->conf, NULL), 1);
    HAS(f->out, "audit.log:7: wrong key: ");
    /* ... and missing. */
    unlink(cur);
    assert_int_equal(run(f, "verify", "-c", f->conf, NULL), 66);
    HAS(f->err, "the current key ");
    HAS(f->err, "is missing");
    HAS(f->err, "give the first key with --key FILE");
    assert_int_equal(run(f, "verify", "--key", f->offline, "-c", f->conf, NULL), 0);

    /* A head that is not one, and one given that is missing. */
    assert_int_equal(run(f, "verify", "--head", f->conf, "--key", f->offline, f->log, NULL), 66);
    HAS(f->err, "is not a head file");
    snprintf(path, sizeof(path), "%s/no-head", f->dir);
    assert_int_equal(run(f, "verify", "--head", path, f->log, NULL), 66);
    HAS(f->err, "cannot read the head file ");
}

/* ---- show ----------------------------------------------------------------------------------- */

static void test_show_filters(void **state)
{
    struct fx *f = *state;
    write_log(f);
    assert_int_equal(run(f, "show", "-c", f->conf, NULL), 0);
    assert_int_equal(strncmp(f->out, "TIME ", 5), 0);
    assert_int_equal(count_lines(f->out), 1 + 27);
    HAS(f->out, "  auth           s1            user=alice@example.org mech=PLAIN result=ok "
                "code=235\n");
    HAS(f->out, "  message        s1            id=Q1 message_id=<m1@client.example> size=1234 "
                "from=alice@example.org auth_user=alice@example.org rcpts=bob@example.org "
                "mailboxes=bob@example.org queued=no\n");
    HAS(f->out, "  admin          -             unix_user=root uid=0 command=user "
                "args=lock,bob@example.org result=ok\n");
    HASNT(f->out, "sha256="); /* details stay for trace */

    /* --user picks alice's whole session: not s2, not s3, not the later s1. */
    assert_int_equal(run(f, "show", "--user", "Alice@Example.ORG", "-c", f->conf, NULL), 0);
    assert_int_equal(count_lines(f->out), 1 + 9);
    HAS(f->out, "connect        s1            ip=192.0.2.7 port=40001 listener=submission");
    HAS(f->out, "  disconnect     s1            ip=192.0.2.7 duration_ms=812");
    HASNT(f->out, "s2 ");
    HASNT(f->out, "203.0.113.5");
    HASNT(f->out, "Q3");

    /* --ip: both sessions from 192.0.2.7; with --user as well, only alice's. */
    assert_int_equal(run(f, "show", "--ip", "192.0.2.7", "-c", f->conf, NULL), 0);
    assert_int_equal(count_lines(f->out), 1 + 9 + 4);
    assert_int_equal(
        run(f, "show", "--ip", "192.0.2.7", "--user", "bob@example.org", "-c", f->conf, NULL), 0);
    assert_int_equal(count_lines(f->out), 1 + 4);
    HAS(f->out, "id=Q2");
    assert_int_equal(run(f, "show", "--ip", "198.51.100.9", "--event", "rcpt", "-c", f->conf, NULL),
                     0);
    assert_int_equal(count_lines(f->out), 2);
    HAS(f->out, "rcpt           s2            to=bob@example.org code=550 enh=5.7.1 rule=relay\n");

    assert_int_equal(run(f, "show", "--session", "s2", "-c", f->conf, NULL), 0);
    assert_int_equal(count_lines(f->out), 1 + 5);
    assert_int_equal(run(f, "show", "--session", "s1", "-c", f->conf, NULL), 0);
    assert_int_equal(count_lines(f->out), 1 + 9 + 3); /* both s1s: --session is the id */
    assert_int_equal(run(f, "show", "--event", "auth,message", "-c", f->conf, NULL), 0);
    assert_int_equal(count_lines(f->out), 1 + 5);
    assert_int_equal(run(f, "show", "--message-id", "m2@client.example", "-c", f->conf, NULL), 0);
    assert_int_equal(count_lines(f->out), 1 + 4);

    /* Nothing matches: exit 0, a note on stderr, nothing on stdout. */
    assert_int_equal(run(f, "show", "--user", "nobody@example.org", "-c", f->conf, NULL), 0);
    assert_string_equal(f->out, "");
    HAS(f->err, "no record matches (27 read from 2 files)");

    assert_int_equal(run(f, "show", "--event", "Auth", "-c", f->conf, NULL), 64);
    assert_int_equal(run(f, "show", "--since", "yesterday", "-c", f->conf, NULL), 65);
    HAS(f->err, "'yesterday' is not a time");
    assert_int_equal(run(f, "show", "--since", "2026-02-30", "-c", f->conf, NULL), 65);
    assert_int_equal(run(f, "show", "--since", "-1h", "--until", "-2h", "-c", f->conf, NULL), 64);
}

/* --json prints the stored lines byte for byte; times cut at the right record. */
static void test_show_json_and_times(void **state)
{
    struct fx *f = *state;
    write_log(f);
    size_t n1, n2;
    char *old = testfs_get(f->old, &n1), *cur = testfs_get(f->log, &n2);
    char *all = malloc(n1 + n2 + 1);
    assert_non_null(all);
    memcpy(all, old, n1);
    memcpy(all + n1, cur, n2 + 1);
    assert_int_equal(run(f, "show", "--json", "-c", f->conf, NULL), 0);
    assert_string_equal(f->out, all);
    assert_int_equal(run(f, "show", "--json", f->old, f->log, NULL), 0);
    assert_string_equal(f->out, all);

    /* The pause before the rotation separates the files in time. */
    char rot[AUDIT_TS_LEN + 1], last_old[AUDIT_TS_LEN + 1];
    ts_of(cur, 18, rot);
    ts_of(old, 17, last_old);
    assert_int_equal(run(f, "show", "--json", "--since", rot, "-c", f->conf, NULL), 0);
    assert_string_equal(f->out, cur);
    assert_int_equal(run(f, "show", "--json", "--until", last_old, "-c", f->conf, NULL), 0);
    assert_string_equal(f->out, old);
    assert_int_equal(run(f, "show", "--since", "-1h", "--until", "-0s", "-c", f->conf, NULL), 0);
    assert_int_equal(count_lines(f->out), 1 + 27);
    assert_int_equal(run(f, "show", "--until", "-1h", "-c", f->conf, NULL), 0);
    assert_string_equal(f->out, "");
    /* A date is the whole day: today's holds every record, yesterday's none. */
    char day[11];
    memcpy(day, rot, 10);
    day[10] = '\0';
    assert_int_equal(run(f, "show", "--since", day, "--until", day, "-c", f->conf, NULL), 0);
    assert_int_equal(count_lines(f->out), 1 + 27);
    assert_int_equal(run(f, "show", "--until", "2000-01-01T00:00:00+02:00", "-c", f->conf, NULL),
                     0);
    assert_string_equal(f->out, "");

    /* One session's lines, as stored. */
    assert_int_equal(run(f, "show", "--json", "--session", "s3", "-c", f->conf, NULL), 0);
    const char *start = strstr(cur, "{\"seq\":19,");
    const char *end = strstr(cur, "{\"seq\":23,");
    assert_non_null(start);
    assert_non_null(end);
    assert_int_equal(strlen(f->out), (size_t)(end - start));
    assert_memory_equal(f->out, start, (size_t)(end - start));
    free(old);
    free(cur);
    free(all);
}

/* A HELO name with ESC, BEL, CR, LF, NUL and a bidi override is shown escaped. */
static void test_hostile_strings(void **state)
{
    struct fx *f = *state;
    write_log(f);
    assert_int_equal(run(f, "show", "--session", "s2", "--event", "helo", "-c", f->conf, NULL), 0);
    HAS(f->out, "name=evil\\x1b]0;pwned\\x07\\x0d\\x0afake\\x00x\\x7f\\u202ecba\n");
    for (const char *p = f->out; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p == 0x7f)
            fail_msg("a raw control byte 0x%02x reached the output:\n%s", *p, f->out);
    assert_int_equal(
        run(f, "show", "--json", "--session", "s2", "--event", "helo", "-c", f->conf, NULL), 0);
    HAS(f->out, "\"name\":\"evil\\u001B]0;pwned\\u0007\\r\\nfake\\u0000x\x7f\\u202Ecba\"");
}

/* ---- trace ---------------------------------------------------------------------------------- */

static void test_trace(void **state)
{
    struct fx *f = *state;
    write_log(f);
    assert_int_equal(run(f, "trace", "m1@client.example", "-c", f->conf, NULL), 0);
    HAS(f->out, "message id=Q1 message_id=<m1@client.example> from=alice@example.org "
                "auth_user=alice@example.org, session s1\n");
    /* From the connect to the disconnect, nothing of s2 that came between. */
    const char *conn = strstr(f->out, "  connect ");
    const char *disc = strstr(f->out, "  disconnect ");
    assert_non_null(conn);
    assert_non_null(disc);
    assert_true(conn < disc);
    HAS(f->out, "  helo           s1            verb=EHLO name=client.example\n");
    HAS(f->out, "                      sha256=5d41402abc4b2a76b9719d911017c592\n");
    HAS(f->out, "                      files=mail/example.org/bob/new/1.M1P1.mx\n");
    HASNT(f->out, "s2 ");
    HASNT(f->out, "203.0.113.5");
    assert_int_equal(count_lines(f->out), 1 + 9 + 2);

    /* By queue id; and the later s1, with the Message-ID in brackets. */
    assert_int_equal(run(f, "trace", "Q2", "-c", f->conf, NULL), 0);
    HAS(f->out, "session s3\n");
    assert_int_equal(count_lines(f->out), 1 + 4 + 0);
    assert_int_equal(run(f, "trace", "<m3@elsewhere.test>", "-c", f->conf, NULL), 0);
    HAS(f->out, "ip=203.0.113.5");
    HASNT(f->out, "192.0.2.7");
    assert_int_equal(count_lines(f->out), 1 + 3);
    assert_int_equal(run(f, "trace", "--json", "Q2", "-c", f->conf, NULL), 0);
    assert_int_equal(count_lines(f->out), 4);
    assert_int_equal(strncmp(f->out, "{\"seq\":19,", 10), 0);

    /* Only the newer file: s1's connect is out of reach, and trace says so. */
    assert_int_equal(run(f, "trace", "Q2", f->old, NULL), 1);
    HAS(f->err, "no message record has the Message-ID or queue id Q2 (17 records read");
    assert_int_equal(run(f, "trace", "nosuch@x", "-c", f->conf, NULL), 1);
    assert_string_equal(f->out, "");
}

/* A message whose session began in an earlier file than those read. */
static void test_trace_partial(void **state)
{
    struct fx *f = *state;
    write_log(f);
    struct lines ls;
    read_lines(f->old, &ls);
    char part[PATH_MAX + 32];
    snprintf(part, sizeof(part), "%s/part.log", f->dir);
    FILE *fp = fopen(part, "w");
    for (size_t i = 0; i < ls.n; i++) {
        if (i >= 5) /* from the auth on */
            fputs(ls.l[i], fp);
        free(ls.l[i]);
    }
    fclose(fp);
    assert_int_equal(run(f, "trace", "Q1", part, NULL), 0);
    HAS(f->out, "(its connect is not in the files read");
    HAS(f->out, "  disconnect ");
}

/* ---- rotate --------------------------------------------------------------------------------- */

static void test_rotate(void **state)
{
    struct fx *f = *state;
    write_log(f);
    assert_int_equal(run(f, "rotate", "-c", f->conf, NULL), 0);
    HAS(f->out, "rotated: ");
    HAS(f->out, "is now audit.log.000002; the new ");
    HAS(f->out, "starts with record 29");
    assert_int_equal(run(f, "verify", "-c", f->conf, NULL), 0);
    HAS(f->out, "intact: 29 records in 3 files");

    /* With the log held (as ternd holds it), rotate does not touch it. */
    struct audit_opts o = {.dir = f->adir};
    struct audit *a = audit_open(&o, NULL, f->e, sizeof(f->e));
    assert_non_null(a);
    assert_int_equal(run(f, "rotate", "-c", f->conf, NULL), 75);
    HAS(f->err, "has the audit log in ");
    HAS(f->err, "kill -USR1");
    assert_int_equal(audit_close(a, f->e, sizeof(f->e)), 0);

    assert_int_equal(run(f, "rotate", "extra", "-c", f->conf, NULL), 64);
    testfs_rm_tree(f->adir);
    assert_int_equal(run(f, "rotate", "-c", f->conf, NULL), 66);
    HAS(f->err, "there is no audit log in ");
    assert_int_equal(run(f, "verify", "-c", f->conf, NULL), 66);
    HAS(f->err, "does not exist");
}

/* ---- junk and the command line -------------------------------------------------------------- */

static void test_junk(void **state)
{
    struct fx *f = *state;
    char junk[PATH_MAX + 32], empty[PATH_MAX + 32], missing[PATH_MAX + 32];
    snprintf(junk, sizeof(junk), "%s/junk.log", f->dir);
    snprintf(empty, sizeof(empty), "%s/empty.log", f->dir);
    snprintf(missing, sizeof(missing), "%s/missing.log", f->dir);
    FILE *fp = fopen(junk, "w");
    assert_non_null(fp);
    fputs("not json\n{\"seq\":1}\n\x1b[2J\xff\xfe\n", fp);
    for (int i = 0; i < 20000; i++)
        fputc('{', fp);
    fputs("\n{\"seq\":1,\"ts\":\"x\"", fp); /* no newline at the end */
    fclose(fp);
    testfs_put(empty, "");
    assert_int_equal(run(f, "verify", junk, NULL), 1);
    HAS(f->out, "junk.log:1: edited: not a record");
    assert_int_equal(run(f, "show", junk, NULL), 0);
    assert_string_equal(f->out, "");
    HAS(f->err, "skipped 5 lines that are no record (the first at ");
    assert_int_equal(run(f, "trace", "x", junk, NULL), 1);
    assert_int_equal(run(f, "verify", empty, NULL), 0);
    HAS(f->out, "intact: 0 records in 1 file\n");
    assert_int_equal(run(f, "verify", missing, NULL), 66);
    HAS(f->err, "cannot read ");
    assert_int_equal(run(f, "show", empty, missing, NULL), 66);
    HAS(f->err, "cannot open ");
}

static void test_usage(void **state)
{
    struct fx *f = *state;
    assert_int_equal(run(f, NULL), 64);
    HAS(f->err, "usage: tern audit verify");
    assert_int_equal(run(f, "--help", NULL), 0);
    HAS(f->out, "usage: tern audit verify");
    assert_int_equal(run(f, "show", "--help", NULL), 0);
    assert_int_equal(run(f, "frobnicate", NULL), 64);
    HAS(f->err, "unknown subcommand 'frobnicate'");
    assert_int_equal(run(f, "verify", "--user", "x", NULL), 64);
    HAS(f->err, "takes only");
    assert_int_equal(run(f, "show", "--key", "x", NULL), 64);
    assert_int_equal(run(f, "verify", "--head", "x", "--no-head", NULL), 64);
    assert_int_equal(run(f, "trace", NULL), 64);
    HAS(f->err, "which message?");
    assert_int_equal(run(f, "show", "--bogus", NULL), 64);
    HAS(f->err, "unknown option --bogus");
    assert_int_equal(run(f, "show", "--user", NULL), 64);
    HAS(f->err, "--user needs a value");
    /* No log yet in a data folder that loads. */
    assert_int_equal(run(f, "show", "-c", f->conf, NULL), 66);
    HAS(f->err, "there is no audit log");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verify_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_edited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_inserted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_reordered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_show_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_show_json_and_times, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trace_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_junk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for the audit log writer and verifier, each in a fresh mkdtemp data_dir: a log
 * written over several epochs, a rotation and a restart verifies intact with the first key
 * (every mac), with the current key (its epoch's macs, and says so) and with none; each of
 * the five tamperings (an edited byte, a deleted, an inserted copy, a swapped pair, a cut or
 * torn end) is found at the right line with the right kind, and so are edits of seq, time
 * and epoch; a wrong or missing key is a
 * clear verdict; 8 threads x 200 appends and syncs give 1600 intact records with far fewer
 * fsyncs (group commit); open refuses a truncated log, a second writer and an old key, cuts
 * a torn tail and finishes a rotation cut short. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testfs.h"

#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/key.h"
#include "audit/log.h"
#include "audit/verify.h"

#define MAX_LINES 64

struct fx {
    char dir[64];   /* the data_dir */
    char adir[96];  /* its audit/ */
    char log[128];  /* audit/audit.log */
    char old[128];  /* audit/audit.log.000001 */
    char key[128];  /* audit/key */
    char head[128]; /* audit/head */
    unsigned char first[AUDIT_KEY_LEN];
    char err[1024];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/tern-audit-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->adir, sizeof(f->adir), "%s/audit", f->dir);
    snprintf(f->log, sizeof(f->log), "%s/audit.log", f->adir);
    snprintf(f->old, sizeof(f->old), "%s/audit.log.000001", f->adir);
    snprintf(f->key, sizeof(f->key), "%s/key", f->adir);
    snprintf(f->head, sizeof(f->head), "%s/head", f->adir);
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

static struct audit *open_log(struct fx *f, struct audit_open_info *info)
{
    struct audit_opts o = {.dir = f->adir};
    struct audit *a = audit_open(&o, info, f->err, sizeof(f->err));
    if (!a)
        fail_msg("audit_open: %s", f->err);
    return a;
}

/* Appends n connection records as a session would. */
static void add_conns(struct fx *f, struct audit *a, int n)
{
    for (int i = 0; i < n; i++) {
        json_t *fl =
            json_pack("{s:s, s:i, s:s}", "ip", "192.0.2.7", "port", 40000 + i, "listener", "smtp");
        uint64_t seq = 0;
        assert_int_equal(audit_append(a, "conn.open", fl, &seq, f->err, sizeof(f->err)), 0);
        assert_true(seq > 0);
    }
}

/* The log every tampering test starts from: audit.log.000001 holds records 1-28 (create, 25
 * events, the records of epochs 1 and 2); audit.log holds (line 1) the rotate record, 29, 10
 * events of epoch 2, (line 12) the epoch 3 record of the restart, 40, and 10 events of epoch
 * 3: 22 lines, line k is record 28 + k; 50 records in all. */
static void write_log(struct fx *f)
{
    struct audit_open_info info;
    struct audit *a = open_log(f, &info);
    assert_true(info.created);
    assert_true(info.first_key_present);
    assert_int_equal(strlen(info.first_key_hex), 64);
    assert_int_equal(audit_unhex(info.first_key_hex, 64, f->first, sizeof(f->first)), 0);
    add_conns(f, a, 10);
    assert_int_equal(audit_evolve(a, "timer", f->err, sizeof(f->err)), 0);
    add_conns(f, a, 10);
    assert_int_equal(audit_evolve(a, "timer", f->err, sizeof(f->err)), 0);
    add_conns(f, a, 5);
    assert_int_equal(audit_rotate(a, f->err, sizeof(f->err)), 0);
    add_conns(f, a, 10);
    assert_int_equal(audit_close(a, f->err, sizeof(f->err)), 0);

    a = open_log(f, &info);
    assert_false(info.created);
    assert_int_equal(info.epoch, 3);
    add_conns(f, a, 10);
    struct audit_stats st;
    audit_get_stats(a, &st);
    assert_int_equal(st.seq, 50);
    assert_int_equal(audit_close(a, f->err, sizeof(f->err)), 0);
}

static enum audit_verdict verify(struct fx *f, const unsigned char *first, const char *key,
                                 struct audit_verify_result *r)
{
    const char *files[] = {f->old, f->log};
    struct audit_verify_opts o = {.first_key = first, .key_file = key, .head_file = f->head};
    audit_verify(files, 2, &o, r);
    return r->verdict;
}

/* The lines of a file; each keeps its newline. */
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

static void test_verify_intact(void **state)
{
    struct fx *f = *state;
    write_log(f);
    struct audit_verify_result r;

    assert_int_equal(verify(f, f->first, NULL, &r), AUDIT_INTACT);
    assert_int_equal(r.records, 50);
    assert_int_equal(r.first_seq, 1);
    assert_int_equal(r.last_seq, 50);
    assert_int_equal(r.first_epoch, 0);
    assert_int_equal(r.last_epoch, 3);
    assert_int_equal(r.macs_checked, 50);
    assert_true(r.macs_all);
    assert_true(r.head_checked);
    assert_true(strcmp(r.first_ts, r.last_ts) <= 0);
    assert_string_equal(r.scope, "every record's mac checked");

    /* The current key alone checks its own epoch: the epoch 3 record and 10 events. */
    assert_int_equal(verify(f, NULL, f->key, &r), AUDIT_INTACT);
    assert_int_equal(r.records, 50);
    assert_int_equal(r.macs_checked, 11);
    assert_false(r.macs_all);
    assert_non_null(strstr(r.scope, "macs checked for 11 of 50 records (those of epoch 3 on)"));

    /* Both keys: the key file must be the first key evolved. */
    assert_int_equal(verify(f, f->first, f->key, &r), AUDIT_INTACT);
    assert_true(r.macs_all);

    assert_int_equal(verify(f, NULL, NULL, &r), AUDIT_INTACT);
    assert_int_equal(r.macs_checked, 0);
    assert_non_null(strstr(r.scope, "no key given"));

    /* audit_series lists the same two files, oldest first. */
    char **files;
    size_t n;
    assert_int_equal(audit_series(f->adir, &files, &n, f->err, sizeof(f->err)), 0);
    assert_int_equal(n, 2);
    assert_string_equal(files[0], f->old);
    assert_string_equal(files[1], f->log);
    audit_series_free(files, n);

    /* Only the newest file: its rotate record carries the link, so every mac still holds. */
    const char *one[] = {f->log};
    struct audit_verify_opts o = {.first_key = f->first, .head_file = f->head};
    assert_int_equal(audit_verify(one, 1, &o, &r), 0);
    assert_int_equal(r.first_seq, 29);
    assert_true(r.macs_all);
    assert_non_null(strstr(r.scope, "starts at record 29"));
}

/* Every line is one compact JSON object, pure printable ASCII, keys in the documented order. */
static void test_line_shape(void **state)
{
    struct fx *f = *state;
    write_log(f);
    struct lines ls;
    read_lines(f->log, &ls);
    assert_int_equal(ls.n, 22);
    for (size_t i = 0; i < ls.n; i++) {
        const char *s = ls.l[i];
        assert_int_equal(strncmp(s, "{\"seq\":", 7), 0);
        assert_non_null(strstr(s, ",\"ts\":\""));
        for (const char *p = s; *p != '\n'; p++)
            assert_true(*p >= 0x20 && *p < 0x7f);
        const char *mac = strstr(s, ",\"mac\":\"");
        assert_non_null(mac);
        assert_int_equal(strlen(mac), 8 + 64 + 2 + 1);
    }
    assert_non_null(strstr(ls.l[0], "\"event\":\"rotate\",\"prev_file\":\"audit.log.000001\""));
    assert_non_null(strstr(ls.l[11], "\"epoch\":3,\"event\":\"epoch\",\"key_id\":\""));
    assert_non_null(strstr(ls.l[11], "\"reason\":\"start\""));
    write_lines(f->log, &ls);

    struct stat st;
    assert_int_equal(stat(f->key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(f->log, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    uint64_t epoch;
    unsigned char k[AUDIT_KEY_LEN], evolved[AUDIT_KEY_LEN];
    assert_int_equal(audit_key_load(f->key, &epoch, k, f->err, sizeof(f->err)), 0);
    assert_int_equal(epoch, 3);
    memcpy(evolved, f->first, sizeof(evolved));
    for (int i = 0; i < 3; i++)
        audit_key_evolve(evolved);
    assert_memory_equal(k, evolved, sizeof(k));
}

static void expect(const struct audit_verify_result *r, enum audit_verdict v, const char *file,
                   uint64_t line)
{
    if (r->verdict != v || r->line != line)
        fail_msg("expected %s at line %llu, got %s at %s:%llu: %s", audit_verdict_name(v),
                 (unsigned long long)line, audit_verdict_name(r->verdict), r->file ? r->file : "-",
                 (unsigned long long)r->line, r->why);
    assert_string_equal(r->file, file);
}

/* A byte of a field changes: the mac says so wherever a key reaches. */
static void test_edited(void **state)
{
    struct fx *f = *state;
    write_log(f);
    struct lines ls;
    read_lines(f->log, &ls);
    char *ip = strstr(ls.l[14], "192.0.2.7");
    assert_non_null(ip);
    ip[8] = '8';
    ip = strstr(ls.l[4], "192.0.2.7"); /* epoch 2: beyond the current key's reach */
    ip[8] = '9';
    write_lines(f->log, &ls);
    struct audit_verify_result r;
    verify(f, f->first, NULL, &r);
    expect(&r, AUDIT_EDITED, f->log, 5);
    assert_non_null(strstr(r.why, "mac does not match"));
    verify(f, NULL, f->key, &r);
    expect(&r, AUDIT_EDITED, f->log, 15);
    /* Without a key an edit that keeps the shape is not visible; the scope says so. */
    assert_int_equal(verify(f, NULL, NULL, &r), AUDIT_INTACT);
    assert_non_null(strstr(r.scope, "no mac"));
}

static void test_edited_seq(void **state)
{
    struct fx *f = *state;
    write_log(f);
    struct lines ls;
    read_lines(f->log, &ls);
    char *seq = strstr(ls.l[6], "\"seq\":35,");
    assert_non_null(seq);
    seq[6] = '7'; /* 35 -> 75 */
    write_lines(f->log, &ls);
    struct audit_verify_result r;
    verify(f, NULL, NULL, &r);
    expect(&r, AUDIT_EDITED, f->log, 7);
    assert_non_null(strstr(r.why, "seq 75 was changed from 35"));
}

/* Edits that keep seq and the line's shape but break a chain rule show without any key. */
static void test_edited_rules(void **state)
{
    struct fx *f = *state;
    write_log(f);
    struct lines ls;
    read_lines(f->log, &ls);
    char *ts = strstr(ls.l[9], "\"ts\":\"2");
    assert_non_null(ts);
    ts[6] = '1'; /* a thousand years back */
    char *epoch = strstr(ls.l[16], "\"epoch\":3,");
    assert_non_null(epoch);
    epoch[8] = '4';
    write_lines(f->log, &ls);
    struct audit_verify_result r;
    verify(f, NULL, NULL, &r);
    expect(&r, AUDIT_EDITED, f->log, 10);
    assert_non_null(strstr(r.why, "is before the previous record's"));
    read_lines(f->log, &ls);
    ts = strstr(ls.l[9], "\"ts\":\"1");
    ts[6] = '2';
    write_lines(f->log, &ls);
    verify(f, NULL, NULL, &r);
    expect(&r, AUDIT_EDITED, f->log, 17);
    assert_non_null(strstr(r.why, "the epoch changes on a conn.open record"));
}

static void test_deleted(void **state)
{
    struct fx *f = *state;
    write_log(f);
    struct lines ls;
    read_lines(f->log, &ls);
    free(ls.l[4]);
    memmove(&ls.l[4], &ls.l[5], (ls.n - 5) * sizeof(ls.l[0]));
    ls.n--;
    write_lines(f->log, &ls);
    struct audit_verify_result r;
    verify(f, f->first, NULL, &r);
    expect(&r, AUDIT_DELETED, f->log, 5);
    assert_non_null(strstr(r.why, "record 33 is missing"));
    verify(f, NULL, NULL, &r); /* seq alone shows it */
    expect(&r, AUDIT_DELETED, f->log, 5);
}

static void test_inserted(void **state)
{
    struct fx *f = *state;
    write_log(f);
    struct lines ls;
    read_lines(f->log, &ls);
    memmove(&ls.l[8], &ls.l[7], (ls.n - 7) * sizeof(ls.l[0]));
    ls.l[7] = strdup(ls.l[2]); /* a copy of line 3 as line 8 */
    ls.n++;
    write_lines(f->log, &ls);
    struct audit_verify_result r;
    verify(f, f->first, NULL, &r);
    expect(&r, AUDIT_INSERTED, f->log, 8);
    verify(f, NULL, NULL, &r);
    expect(&r, AUDIT_INSERTED, f->log, 8);
}

static void test_reordered(void **state)
{
    struct fx *f = *state;
    write_log(f);
    struct lines ls;
    read_lines(f->log, &ls);
    char *t = ls.l[4];
    ls.l[4] = ls.l[5];
    ls.l[5] = t;
    write_lines(f->log, &ls);
    struct audit_verify_result r;
    verify(f, f->first, NULL, &r);
    expect(&r, AUDIT_REORDERED, f->log, 5);
    verify(f, NULL, NULL, &r);
    expect(&r, AUDIT_REORDERED, f->log, 5);
}

static void test_truncated(void **state)
{
    struct fx *f = *state;
    write_log(f);
    struct lines ls;
    read_lines(f->log, &ls);
    free(ls.l[21]);
    free(ls.l[20]);
    ls.n -= 2;
    write_lines(f->log, &ls);
    struct audit_verify_result r;
    verify(f, f->first, NULL, &r);
    expect(&r, AUDIT_TRUNCATED, f->log, 21);
    assert_non_null(strstr(r.why, "ends at record 48 but head says record 50"));

    /* A torn last line, head or no head. */
    read_lines(f->log, &ls);
    ls.l[19][40] = '\0';
    write_lines(f->log, &ls);
    verify(f, f->first, NULL, &r);
    expect(&r, AUDIT_TRUNCATED, f->log, 20);
    const char *files[] = {f->old, f->log};
    struct audit_verify_opts o = {0};
    assert_int_equal(audit_verify(files, 2, &o, &r), 1);
    expect(&r, AUDIT_TRUNCATED, f->log, 20);
    assert_non_null(strstr(r.why, "ends inside a line"));
}

static void test_keys(void **state)
{
    struct fx *f = *state;
    write_log(f);
    struct audit_verify_result r;
    unsigned char wrong[AUDIT_KEY_LEN];
    memcpy(wrong, f->first, sizeof(wrong));
    wrong[0] ^= 1;
    assert_int_equal(verify(f, wrong, NULL, &r), AUDIT_WRONG_KEY);
    expect(&r, AUDIT_WRONG_KEY, f->old, 1);
    assert_non_null(strstr(r.why, "the key given is not this log's"));

    /* A wrong key file, and one that does not match the first key. */
    char other[160];
    snprintf(other, sizeof(other), "%s/other-key", f->dir);
    assert_int_equal(audit_key_store(other, 3, wrong, 0600, f->err, sizeof(f->err)), 0);
    assert_int_equal(verify(f, NULL, other, &r), AUDIT_WRONG_KEY);
    expect(&r, AUDIT_WRONG_KEY, f->log, 12);
    assert_int_equal(verify(f, f->first, other, &r), AUDIT_WRONG_KEY);
    assert_non_null(strstr(r.why, "is not the first key given, evolved"));

    /* A missing key file, a key file that is not one, a missing head. */
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/no-such-key", f->dir);
    assert_int_equal(verify(f, NULL, missing, &r), AUDIT_UNREADABLE);
    assert_non_null(strstr(r.why, "cannot open the key file"));
    assert_non_null(strstr(r.why, "no-such-key"));
    assert_int_equal(verify(f, NULL, f->log, &r), AUDIT_UNREADABLE);
    assert_non_null(strstr(r.why, "is not an audit key file"));
    const char *files[] = {f->log};
    struct audit_verify_opts o = {.head_file = missing};
    assert_int_equal(audit_verify(files, 1, &o, &r), -1);
    assert_non_null(strstr(r.why, "cannot open the head file"));
}

struct committer {
    struct audit *a;
    uint64_t seqs[200];
    int failures;
};

static void *commit_many(void *arg)
{
    struct committer *c = arg;
    for (int i = 0; i < 200; i++) {
        char err[256];
        json_t *fl = json_pack("{s:i}", "n", i);
        if (audit_append(c->a, "msg.accepted", fl, &c->seqs[i], err, sizeof(err)) != 0 ||
            audit_sync(c->a, c->seqs[i], err, sizeof(err)) != 0)
            c->failures++;
    }
    return NULL;
}

/* A slow disk, so that concurrent callers find a sync in flight, as they do in ternd. */
static void slow_fsync(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static void test_group_commit(void **state)
{
    struct fx *f = *state;
    struct audit_open_info info;
    struct audit_opts o = {.dir = f->adir, .on_fsync = slow_fsync};
    struct audit *a = audit_open(&o, &info, f->err, sizeof(f->err));
    assert_non_null(a);
    assert_int_equal(audit_unhex(info.first_key_hex, 64, f->first, sizeof(f->first)), 0);
    struct audit_stats before;
    audit_get_stats(a, &before);

    enum { N = 8 };
    struct committer c[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        c[i] = (struct committer){.a = a};
        assert_int_equal(pthread_create(&t[i], NULL, commit_many, &c[i]), 0);
    }
    static uint64_t all[N * 200];
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].failures, 0);
        memcpy(all + i * 200, c[i].seqs, sizeof(c[i].seqs));
    }
    qsort(all, N * 200, sizeof(all[0]), cmp_u64);
    for (int i = 0; i < N * 200; i++)
        assert_int_equal(all[i], (uint64_t)i + 2); /* after the create record */

    struct audit_stats st;
    audit_get_stats(a, &st);
    uint64_t fsyncs = st.log_fsyncs - before.log_fsyncs;
    print_message("group commit: 1600 appends+syncs, %llu fsyncs of audit.log\n",
                  (unsigned long long)fsyncs);
    assert_true(fsyncs < 1600 / 3); /* about N/2 callers share each one in steady state */
    assert_int_equal(st.durable_seq, 1601);
    assert_int_equal(audit_close(a, f->err, sizeof(f->err)), 0);

    const char *files[] = {f->log};
    struct audit_verify_opts vo = {.first_key = f->first, .head_file = f->head};
    struct audit_verify_result r;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(audit_verify(files, 1, &vo, &r), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(r.records, 1601);
    assert_true(r.macs_all);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("verify: %.0f records/s with the first key\n", (double)r.records / s);
}

/* Everything that points at tampering stops the writer; a second writer is refused. */
static void test_open_refuses(void **state)
{
    struct fx *f = *state;
    write_log(f);
    struct audit_opts o = {.dir = f->adir};
    struct audit *a = open_log(f, NULL);
    assert_null(audit_open(&o, NULL, f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, "another process"));
    assert_int_equal(audit_close(a, f->err, sizeof(f->err)), 0);

    /* An old key put back. */
    char saved[256];
    FILE *fp = fopen(f->key, "r");
    assert_non_null(fgets(saved, sizeof(saved), fp));
    fclose(fp);
    a = open_log(f, NULL); /* evolves */
    assert_int_equal(audit_close(a, f->err, sizeof(f->err)), 0);
    fp = fopen(f->key, "w");
    fputs(saved, fp);
    fclose(fp);
    assert_null(audit_open(&o, NULL, f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, "an old key file was put back"));
}

static void test_open_refuses_truncated(void **state)
{
    struct fx *f = *state;
    write_log(f);
    struct lines ls;
    read_lines(f->log, &ls);
    free(ls.l[--ls.n]);
    write_lines(f->log, &ls);
    struct audit_opts o = {.dir = f->adir};
    assert_null(audit_open(&o, NULL, f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, "was truncated"));
    unlink(f->key);
    assert_null(audit_open(&o, NULL, f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, "is missing but the log exists"));
}

/* A torn line after the last sync is cut at open, and a recover record says how much. */
static void test_open_cuts_torn_tail(void **state)
{
    struct fx *f = *state;
    write_log(f);
    int fd = open(f->log, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"seq\":50,\"ts\":\"20", 18), 18);
    close(fd);
    struct audit_open_info info;
    struct audit *a = open_log(f, &info);
    assert_int_equal(info.dropped_bytes, 18);
    assert_int_equal(audit_close(a, f->err, sizeof(f->err)), 0);
    struct lines ls;
    read_lines(f->log, &ls);
    assert_non_null(strstr(ls.l[ls.n - 1], "\"event\":\"recover\",\"dropped_bytes\":18"));
    write_lines(f->log, &ls);
    struct audit_verify_result r;
    assert_int_equal(verify(f, f->first, NULL, &r), AUDIT_INTACT);
    assert_int_equal(r.records, 52); /* + epoch 4, recover */
}

/* A crash between renaming audit.log away and starting the next: open finishes the job. */
static void test_open_finishes_rotation(void **state)
{
    struct fx *f = *state;
    write_log(f);
    char second[160];
    snprintf(second, sizeof(second), "%s/audit.log.000002", f->adir);
    assert_int_equal(rename(f->log, second), 0);
    struct audit_open_info info;
    struct audit *a = open_log(f, &info);
    assert_true(info.finished_rotation);
    add_conns(f, a, 3);
    assert_int_equal(audit_close(a, f->err, sizeof(f->err)), 0);
    const char *files[] = {f->old, second, f->log};
    struct audit_verify_opts o = {.first_key = f->first, .head_file = f->head};
    struct audit_verify_result r;
    assert_int_equal(audit_verify(files, 3, &o, &r), 0);
    assert_int_equal(r.records, 55); /* + rotate, epoch 4, 3 events */
    assert_true(r.macs_all);
    /* Leaving out the middle file: its records are missing. */
    const char *gap[] = {f->old, f->log};
    assert_int_equal(audit_verify(gap, 2, &o, &r), 1);
    expect(&r, AUDIT_DELETED, f->log, 1);
}

/* The timer's work: a due epoch evolves the key, a full file rotates. */
static void test_maintain(void **state)
{
    struct fx *f = *state;
    struct audit_opts o = {.dir = f->adir, .epoch_seconds = 60, .max_bytes = 2000};
    struct audit_open_info info;
    struct audit *a = audit_open(&o, &info, f->err, sizeof(f->err));
    assert_non_null(a);
    assert_int_equal(audit_unhex(info.first_key_hex, 64, f->first, sizeof(f->first)), 0);
    time_t now = time(NULL);
    assert_int_equal(audit_maintain(a, now, f->err, sizeof(f->err)), 0);
    struct audit_stats st;
    audit_get_stats(a, &st);
    assert_int_equal(st.epoch, 0);
    assert_int_equal(audit_maintain(a, now + 61, f->err, sizeof(f->err)), 0);
    audit_get_stats(a, &st);
    assert_int_equal(st.epoch, 1);
    add_conns(f, a, 20);
    assert_int_equal(audit_maintain(a, now + 62, f->err, sizeof(f->err)), 0);
    audit_get_stats(a, &st);
    assert_int_equal(st.rotations, 1);
    assert_true(st.bytes < 2000);
    assert_int_equal(audit_close(a, f->err, sizeof(f->err)), 0);
    struct audit_verify_result r;
    assert_int_equal(verify(f, f->first, NULL, &r), AUDIT_INTACT);
    assert_int_equal(r.records, 23);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verify_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inserted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reordered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_cuts_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_finishes_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_maintain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

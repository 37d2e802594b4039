/* Unit tests for the spool's delivery state and the admin's actions, each in a fresh mkdtemp
 * data_dir with entries committed by spool.c: a state round-trips (hostile replies made one line
 * of UTF-8), a missing one is the initial state, one whose recipients are not the envelope's or
 * that is malformed is refused, a save after the entry left fails and leaves nothing; hold,
 * release, remove, flush and msg_open on real folders; bad ids refused by everything; and the
 * crash order: the .env is the first file out and the last in, so every state a crash can leave
 * between two steps lists the entry once or not at all, and the next action or the sweep
 * recovers from it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/spool.h"
#include "store/spool_state.h"

struct fx {
    char dir[64];
    char err[2048];
    char id[96];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/tern-spool-state-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
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

/* DIR/spool/SUB, or DIR/spool/SUB/ID.EXT. */
static void path_of(const struct fx *f, const char *sub, const char *id, const char *ext, char *out,
                    size_t outlen)
{
    if (id)
        snprintf(out, outlen, "%s/spool/%s/%s.%s", f->dir, sub, id, ext);
    else
        snprintf(out, outlen, "%s/spool/%s", f->dir, sub);
}

static bool exists(const struct fx *f, const char *sub, const char *id, const char *ext)
{
    char path[PATH_MAX];
    path_of(f, sub, id, ext, path, sizeof(path));
    return access(path, F_OK) == 0;
}

/* Entries in DIR/spool/SUB (not . or ..), 0 when it does not exist. */
static int count_in(const struct fx *f, const char *sub)
{
    char dir[PATH_MAX];
    path_of(f, sub, NULL, NULL, dir, sizeof(dir));
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Commits one message to two recipients; its id goes to out (f->id when NULL). */
static void queue_one(struct fx *f, const char *body, char *out)
{
    const char *rcpts[] = {"bob@far.example", "carol@other.example"};
    char *id = out ? out : f->id;
    struct spool_msg *m = spool_begin(f->dir, "alice@example.org", rcpts, 2, "alice@example.org",
                                      id, 96, f->err, sizeof(f->err));
    assert_non_null(m);
    assert_int_equal(spool_append(m, body, strlen(body), f->err, sizeof(f->err)), 0);
    assert_int_equal(spool_commit(m, f->err, sizeof(f->err)), 0);
    spool_free(m);
}

static int count_cb(void *ctx, const struct spool_entry *e)
{
    int *n = ctx;
    (*n)++;
    assert_non_null(e->rcpts);
    return 0;
}

/* (queued entries, held entries) as the listers see them. */
static void assert_listed(struct fx *f, int queued, int held)
{
    int q = 0, h = 0;
    assert_int_equal(spool_list(f->dir, count_cb, &q, f->err, sizeof(f->err)), queued);
    assert_int_equal(spool_list_held(f->dir, count_cb, &h, f->err, sizeof(f->err)), held);
    assert_int_equal(q, queued);
    assert_int_equal(h, held);
}

static void load(struct fx *f, const char *id, bool held, struct spool_entry *e)
{
    assert_int_equal(spool_entry_load(f->dir, id, held, e, f->err, sizeof(f->err)), 0);
    assert_int_equal(e->held, held);
}

/* Saves a state with one attempt behind it and the next one at next. */
static void save_tried(struct fx *f, const char *id, time_t next)
{
    struct spool_entry e;
    struct spool_state st;
    load(f, id, false, &e);
    assert_int_equal(spool_state_load(f->dir, &e, &st, f->err, sizeof(f->err)), 0);
    st.attempts = 1;
    st.last_try = 1700000000;
    st.next_try = next;
    snprintf(st.rcpts[0].reply, sizeof(st.rcpts[0].reply), "451 4.7.1 try later");
    assert_int_equal(spool_state_save(f->dir, id, &st, f->err, sizeof(f->err)), 0);
    spool_state_free(&st);
    free(e.rcpts);
}

static time_t next_try_of(struct fx *f, const char *id)
{
    struct spool_entry e;
    struct spool_state st;
    load(f, id, false, &e);
    assert_int_equal(spool_state_load(f->dir, &e, &st, f->err, sizeof(f->err)), 0);
    time_t t = st.next_try;
    spool_state_free(&st);
    free(e.rcpts);
    return t;
}

/* ---- the state file --------------------------------------------------------------------- */

static void test_missing_state_is_initial(void **state)
{
    struct fx *f = *state;
    queue_one(f, "hello\r\n", NULL);
    struct spool_entry e;
    struct spool_state st;
    load(f, f->id, false, &e);
    assert_int_equal(spool_state_load(f->dir, &e, &st, f->err, sizeof(f->err)), 0);
    assert_int_equal(st.attempts, 0);
    assert_int_equal(st.last_try, 0);
    assert_int_equal(st.next_try, 0);
    assert_false(st.delay_notified);
    assert_int_equal(st.nrcpts, 2);
    assert_string_equal(st.rcpts[0].addr, "bob@far.example");
    assert_string_equal(st.rcpts[1].addr, "carol@other.example");
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(st.rcpts[i].status, SPOOL_RCPT_PENDING);
        assert_int_equal(st.rcpts[i].code, 0);
        assert_string_equal(st.rcpts[i].reply, "");
        assert_string_equal(st.rcpts[i].remote, "");
        assert_int_equal(st.rcpts[i].done, 0);
    }
    assert_false(exists(f, "queue", f->id, "state")); /* reading makes nothing */
    spool_state_free(&st);
    spool_state_free(&st); /* twice is fine */
    free(e.rcpts);
}

static void test_round_trip(void **state)
{
    struct fx *f = *state;
    queue_one(f, "hello\r\n", NULL);
    struct spool_entry e;
    struct spool_state st, back;
    load(f, f->id, false, &e);
    assert_int_equal(spool_state_load(f->dir, &e, &st, f->err, sizeof(f->err)), 0);
    st.attempts = 3;
    st.last_try = 1700000100;
    st.next_try = 1700003700;
    st.delay_notified = true;
    st.rcpts[0].status = SPOOL_RCPT_SENT;
    st.rcpts[0].code = 250;
    strcpy(st.rcpts[0].reply, "250 2.0.0 Ok: queued as 4XyZ caf\xc3\xa9");
    strcpy(st.rcpts[0].remote, "mx.far.example[192.0.2.1]");
    st.rcpts[0].done = 1700000101;
    st.rcpts[1].status = SPOOL_RCPT_FAILED;
    st.rcpts[1].code = 451;
    /* escape sequences, a line break, bytes that are not UTF-8: one line of UTF-8 on disk */
    strcpy(st.rcpts[1].reply, "451 \x1b[2Jbad\r\nline\xff\xc3(\x7f");
    memset(st.rcpts[1].remote, 'r', sizeof(st.rcpts[1].remote)); /* no NUL: cut to fit */
    assert_int_equal(spool_state_save(f->dir, f->id, &st, f->err, sizeof(f->err)), 0);
    assert_int_equal(count_in(f, "tmp"), 0);
    assert_true(exists(f, "queue", f->id, "state"));

    char path[PATH_MAX];
    path_of(f, "queue", f->id, "state", path, sizeof(path));
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    json_error_t jerr;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "id")), f->id);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(j, "rcpts"), 1), "status")),
                        "failed");
    json_decref(j);

    assert_int_equal(spool_state_load(f->dir, &e, &back, f->err, sizeof(f->err)), 0);
    assert_int_equal(back.attempts, 3);
    assert_int_equal(back.last_try, 1700000100);
    assert_int_equal(back.next_try, 1700003700);
    assert_true(back.delay_notified);
    assert_int_equal(back.rcpts[0].status, SPOOL_RCPT_SENT);
    assert_int_equal(back.rcpts[0].code, 250);
    assert_string_equal(back.rcpts[0].reply, st.rcpts[0].reply); /* UTF-8 kept as it is */
    assert_string_equal(back.rcpts[0].remote, "mx.far.example[192.0.2.1]");
    assert_int_equal(back.rcpts[0].done, 1700000101);
    assert_int_equal(back.rcpts[1].status, SPOOL_RCPT_FAILED);
    assert_string_equal(back.rcpts[1].reply, "451  [2Jbad  line?\?( ");
    assert_int_equal(strlen(back.rcpts[1].remote), sizeof(back.rcpts[1].remote) - 1);
    assert_int_equal(strspn(back.rcpts[1].remote, "r"), sizeof(back.rcpts[1].remote) - 1);
    spool_state_free(&back);

    /* saved again: replaced in one step, still nothing left in tmp/ */
    st.attempts = 4;
    assert_int_equal(spool_state_save(f->dir, f->id, &st, f->err, sizeof(f->err)), 0);
    assert_int_equal(spool_state_load(f->dir, &e, &back, f->err, sizeof(f->err)), 0);
    assert_int_equal(back.attempts, 4);
    assert_int_equal(count_in(f, "tmp"), 0);
    assert_int_equal(count_in(f, "queue"), 3);
    spool_state_free(&back);
    spool_state_free(&st);
    free(e.rcpts);
}

/* Writes text as queue/ID.state and asserts the load refuses it with EBADMSG. */
static void assert_refused(struct fx *f, const struct spool_entry *e, const char *text,
                           const char *reason)
{
    char path[PATH_MAX];
    path_of(f, "queue", e->id, "state", path, sizeof(path));
    testfs_put(path, text);
    struct spool_state st;
    f->err[0] = '\0';
    errno = 0;
    assert_int_equal(spool_state_load(f->dir, e, &st, f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, EBADMSG);
    assert_null(st.rcpts);
    if (!strstr(f->err, reason))
        fail_msg("expected '%s' in: %s", reason, f->err);
    assert_non_null(strstr(f->err, "remove it"));
}

/* good with its first `from` replaced by `to`, into out. */
static const char *subst(char *out, size_t cap, const char *good, const char *from, const char *to)
{
    const char *at = strstr(good, from);
    assert_non_null(at);
    int n = snprintf(out, cap, "%.*s%s%s", (int)(at - good), good, to, at + strlen(from));
    assert_true(n > 0 && (size_t)n < cap);
    return out;
}

static void test_mismatch_and_malformed_refused(void **state)
{
    struct fx *f = *state;
    queue_one(f, "hello\r\n", NULL);
    struct spool_entry e;
    load(f, f->id, false, &e);
    char good[2048], text[2100];
    snprintf(good, sizeof(good),
             "{\"version\":1,\"id\":\"%s\",\"attempts\":1,\"last_try\":5,\"next_try\":6,"
             "\"delay_notified\":false,\"rcpts\":[{\"addr\":\"bob@far.example\",\"status\":"
             "\"pending\",\"code\":0,\"reply\":\"\",\"remote\":\"\",\"done\":0},{\"addr\":"
             "\"carol@other.example\",\"status\":\"sent\",\"code\":250,\"reply\":\"250 ok\","
             "\"remote\":\"mx\",\"done\":7}]}",
             f->id);
    char path[PATH_MAX];
    path_of(f, "queue", f->id, "state", path, sizeof(path));
    testfs_put(path, good);
    struct spool_state st;
    assert_int_equal(spool_state_load(f->dir, &e, &st, f->err, sizeof(f->err)), 0);
    assert_int_equal(st.rcpts[1].status, SPOOL_RCPT_SENT);
    spool_state_free(&st);

    /* the recipients swapped, one too few: not this envelope's */
    struct spool_entry swapped = e;
    char(*two)[320] = malloc(2 * sizeof(*two));
    assert_non_null(two);
    strcpy(two[0], e.rcpts[1]);
    strcpy(two[1], e.rcpts[0]);
    swapped.rcpts = two;
    assert_int_equal(spool_state_load(f->dir, &swapped, &st, f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, EBADMSG);
    assert_non_null(strstr(f->err, "recipient 1 is not the envelope's"));
    swapped.nrcpts = 1;
    assert_int_equal(spool_state_load(f->dir, &swapped, &st, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, "not as many"));
    free(two);

    assert_refused(f, &e, "{\"version\":1", "not JSON");
    assert_refused(f, &e, "[]", "not a version 1 state");
    assert_refused(f, &e, subst(text, sizeof(text), good, "\"version\":1", "\"version\":2"),
                   "not a version 1 state");
    char other[96];
    snprintf(other, sizeof(other), "f%s", f->id + 1); /* another entry's state */
    assert_refused(f, &e, subst(text, sizeof(text), good, f->id, other), "id is not the entry's");
    assert_refused(f, &e, subst(text, sizeof(text), good, "\"sent\"", "\"lost\""),
                   "recipient 2 lacks");
    assert_refused(f, &e, subst(text, sizeof(text), good, "250,", "1000,"), "recipient 2 lacks");
    assert_refused(f, &e, subst(text, sizeof(text), good, "\"reply\":\"250 ok\",", ""),
                   "recipient 2 lacks");
    assert_refused(f, &e, subst(text, sizeof(text), good, "\"addr\":\"bob@far.example\",", ""),
                   "recipient 1 has no address");
    assert_refused(f, &e, subst(text, sizeof(text), good, "\"attempts\":1", "\"attempts\":-1"),
                   "attempts, last_try");
    assert_refused(f, &e, subst(text, sizeof(text), good, "\"next_try\":6", "\"next_try\":\"6\""),
                   "attempts, last_try");
    assert_refused(f, &e, subst(text, sizeof(text), good, "false", "0"), "delay_notified");
    assert_refused(f, &e,
                   subst(text, sizeof(text), good, "\"remote\":\"mx\"", "\"remote\":\"m\\u0000x\""),
                   "not JSON");                                         /* a NUL inside */
    assert_refused(f, &e, "{\"version\":1,\"version\":1}", "not JSON"); /* duplicate keys */

    /* bigger than any state: not read */
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 9 << 20), 0);
    close(fd);
    assert_int_equal(spool_state_load(f->dir, &e, &st, f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, EBADMSG);
    assert_non_null(strstr(f->err, "more than tern ever writes"));
    free(e.rcpts);
}

static void test_save_refuses_what_no_state_holds(void **state)
{
    struct fx *f = *state;
    queue_one(f, "hello\r\n", NULL);
    struct spool_entry e;
    struct spool_state st;
    load(f, f->id, false, &e);
    assert_int_equal(spool_state_load(f->dir, &e, &st, f->err, sizeof(f->err)), 0);
    struct spool_state bad = st;
    struct spool_rcpt_state r[2];
    memcpy(r, st.rcpts, sizeof(r));
    bad.rcpts = r;
    r[1].status = (enum spool_rcpt_status)7;
    assert_int_equal(spool_state_save(f->dir, f->id, &bad, f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, EINVAL);
    r[1].status = SPOOL_RCPT_PENDING;
    r[1].code = 1000;
    assert_int_equal(spool_state_save(f->dir, f->id, &bad, f->err, sizeof(f->err)), -1);
    r[1].code = 0;
    memset(r[1].addr, 'a', sizeof(r[1].addr));
    assert_int_equal(spool_state_save(f->dir, f->id, &bad, f->err, sizeof(f->err)), -1);
    memcpy(r, st.rcpts, sizeof(r));
    bad.next_try = -1;
    assert_int_equal(spool_state_save(f->dir, f->id, &bad, f->err, sizeof(f->err)), -1);
    bad.next_try = 0;
    bad.nrcpts = 0;
    assert_int_equal(spool_state_save(f->dir, f->id, &bad, f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, EINVAL);
    assert_false(exists(f, "queue", f->id, "state"));
    assert_int_equal(count_in(f, "tmp"), 0);
    spool_state_free(&st);
    free(e.rcpts);
}

static void test_save_after_remove_fails_and_leaves_nothing(void **state)
{
    struct fx *f = *state;
    queue_one(f, "hello\r\n", NULL);
    struct spool_entry e;
    struct spool_state st;
    load(f, f->id, false, &e);
    assert_int_equal(spool_state_load(f->dir, &e, &st, f->err, sizeof(f->err)), 0);
    assert_int_equal(spool_remove(f->dir, f->id, f->err, sizeof(f->err)), 0);
    st.attempts = 1;
    errno = 0;
    assert_int_equal(spool_state_save(f->dir, f->id, &st, f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, ENOENT);
    assert_non_null(strstr(f->err, "not in the queue any more"));
    assert_int_equal(count_in(f, "queue"), 0);
    assert_int_equal(count_in(f, "tmp"), 0);

    /* a held entry's state is not saved either: delivery does not touch what is held */
    char held[96];
    queue_one(f, "second\r\n", held);
    assert_int_equal(spool_hold(f->dir, held, f->err, sizeof(f->err)), 0);
    assert_int_equal(spool_state_save(f->dir, held, &st, f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, ENOENT);
    assert_false(exists(f, "queue", held, "state"));
    assert_false(exists(f, "hold", held, "state"));
    assert_int_equal(count_in(f, "tmp"), 0);
    spool_state_free(&st);
    free(e.rcpts);
}

/* ---- hold, release, remove, flush, msg_open ------------------------------------------------ */

/* The message of id as spool_msg_open gives it. */
static void assert_msg(struct fx *f, const char *id, const char *want)
{
    int fd = spool_msg_open(f->dir, id, f->err, sizeof(f->err));
    assert_true(fd >= 0);
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    assert_int_equal(n, (ssize_t)strlen(want));
    assert_memory_equal(buf, want, strlen(want));
}

static void test_hold_and_release(void **state)
{
    struct fx *f = *state;
    queue_one(f, "held message\r\n", NULL);
    save_tried(f, f->id, 1800000000);
    assert_listed(f, 1, 0);

    assert_int_equal(spool_hold(f->dir, f->id, f->err, sizeof(f->err)), 0);
    assert_int_equal(count_in(f, "queue"), 0); /* nothing left behind */
    assert_true(exists(f, "hold", f->id, "env"));
    assert_true(exists(f, "hold", f->id, "msg"));
    assert_true(exists(f, "hold", f->id, "state"));
    assert_listed(f, 0, 1);
    char path[PATH_MAX];
    path_of(f, "hold", NULL, NULL, path, sizeof(path));
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);

    struct spool_entry e;
    struct spool_state st;
    errno = 0;
    assert_int_equal(spool_entry_load(f->dir, f->id, false, &e, f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, ENOENT);
    load(f, f->id, true, &e);
    assert_string_equal(e.rcpts[1], "carol@other.example");
    assert_int_equal(spool_state_load(f->dir, &e, &st, f->err, sizeof(f->err)), 0);
    assert_int_equal(st.attempts, 1); /* the state went along */
    assert_int_equal(st.next_try, 1800000000);
    spool_state_free(&st);
    free(e.rcpts);
    assert_msg(f, f->id, "held message\r\n");

    assert_int_equal(spool_hold(f->dir, f->id, f->err, sizeof(f->err)), 1); /* already */
    assert_int_equal(spool_release(f->dir, f->id, f->err, sizeof(f->err)), 0);
    assert_int_equal(count_in(f, "hold"), 0);
    assert_int_equal(count_in(f, "queue"), 3);
    assert_listed(f, 1, 0);
    assert_int_equal(next_try_of(f, f->id), 1800000000); /* the schedule is kept */
    assert_msg(f, f->id, "held message\r\n");
    assert_int_equal(spool_release(f->dir, f->id, f->err, sizeof(f->err)), 1); /* already */

    errno = 0;
    assert_int_equal(spool_hold(f->dir, "1-2-3", f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(spool_release(f->dir, "1-2-3", f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_remove(void **state)
{
    struct fx *f = *state;
    char held[96];
    queue_one(f, "one\r\n", NULL);
    queue_one(f, "two\r\n", held);
    save_tried(f, f->id, 1800000000);
    assert_int_equal(spool_hold(f->dir, held, f->err, sizeof(f->err)), 0);

    assert_int_equal(spool_remove(f->dir, f->id, f->err, sizeof(f->err)), 0);
    assert_int_equal(count_in(f, "queue"), 0);
    errno = 0;
    assert_int_equal(spool_remove(f->dir, f->id, f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, ENOENT);
    assert_non_null(strstr(f->err, "no entry"));
    assert_int_equal(spool_msg_open(f->dir, f->id, f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, ENOENT);

    assert_int_equal(spool_remove(f->dir, held, f->err, sizeof(f->err)), 0); /* from hold/ */
    assert_int_equal(count_in(f, "hold"), 0);
    assert_listed(f, 0, 0);
}

static void test_flush(void **state)
{
    struct fx *f = *state;
    char later[96], fresh[96], held[96];
    queue_one(f, "later\r\n", later);
    queue_one(f, "fresh\r\n", fresh);
    queue_one(f, "held\r\n", held);
    save_tried(f, later, 1800000000);
    save_tried(f, held, 1800000000);
    assert_int_equal(spool_hold(f->dir, held, f->err, sizeof(f->err)), 0);

    assert_int_equal(spool_flush(f->dir, later, f->err, sizeof(f->err)), 1);
    assert_int_equal(next_try_of(f, later), 0);
    assert_int_equal(spool_flush(f->dir, fresh, f->err, sizeof(f->err)), 1);
    assert_false(exists(f, "queue", fresh, "state")); /* due already: no state made */
    errno = 0;
    assert_int_equal(spool_flush(f->dir, held, f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, EBUSY);
    assert_non_null(strstr(f->err, "on hold"));
    assert_int_equal(spool_flush(f->dir, "1-2-3", f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, ENOENT);

    save_tried(f, later, 1800000000);
    assert_int_equal(spool_flush(f->dir, NULL, f->err, sizeof(f->err)), 2);
    assert_int_equal(next_try_of(f, later), 0);
    assert_int_equal(count_in(f, "tmp"), 0);

    /* one broken state does not stop the others; its reason comes back */
    save_tried(f, later, 1800000000);
    char path[PATH_MAX];
    path_of(f, "queue", fresh, "state", path, sizeof(path));
    testfs_put(path, "garbage");
    errno = 0;
    assert_int_equal(spool_flush(f->dir, NULL, f->err, sizeof(f->err)), -1);
    assert_int_equal(errno, EBADMSG);
    assert_non_null(strstr(f->err, fresh));
    assert_int_equal(next_try_of(f, later), 0);
}

static void test_bad_ids_refused(void **state)
{
    struct fx *f = *state;
    queue_one(f, "x\r\n", NULL);
    char long_ok[96], too_long[97];
    memset(long_ok, '1', 95);
    long_ok[95] = '\0';
    memset(too_long, '1', 96);
    too_long[96] = '\0';
    assert_true(spool_id_valid(f->id));
    assert_true(spool_id_valid(long_ok));
    static const char *const bad[] = {"",  "..",  "../queue/x", "a/b",         "ABC",   "1.2",
                                      "x", "1 2", "1\n2",       "/etc/passwd", "1\x1b", NULL};
    struct spool_entry e;
    struct spool_state st;
    load(f, f->id, false, &e);
    assert_int_equal(spool_state_init(&e, &st, f->err, sizeof(f->err)), 0);
    free(e.rcpts);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *id = i + 1 < sizeof(bad) / sizeof(bad[0]) ? bad[i] : too_long;
        assert_false(spool_id_valid(id));
        errno = 0;
        assert_int_equal(spool_entry_load(f->dir, id, false, &e, f->err, sizeof(f->err)), -1);
        assert_int_equal(errno, EINVAL);
        assert_int_equal(spool_msg_open(f->dir, id, f->err, sizeof(f->err)), -1);
        assert_int_equal(errno, EINVAL);
        assert_int_equal(spool_remove(f->dir, id, f->err, sizeof(f->err)), -1);
        assert_int_equal(errno, EINVAL);
        assert_int_equal(spool_hold(f->dir, id, f->err, sizeof(f->err)), -1);
        assert_int_equal(errno, EINVAL);
        assert_int_equal(spool_release(f->dir, id, f->err, sizeof(f->err)), -1);
        assert_int_equal(errno, EINVAL);
        assert_int_equal(spool_flush(f->dir, id, f->err, sizeof(f->err)), -1);
        assert_int_equal(errno, EINVAL);
        assert_int_equal(spool_state_save(f->dir, id, &st, f->err, sizeof(f->err)), -1);
        assert_int_equal(errno, EINVAL);
        assert_null(strstr(f->err, "passwd")); /* the id is never echoed */
    }
    assert_false(spool_id_valid(NULL));
    spool_state_free(&st);
    assert_listed(f, 1, 0);
    assert_int_equal(count_in(f, "tmp"), 0);
}

/* ---- crash order ---------------------------------------------------------------------------- */

/* Links DIR/spool/A/ID.EXT to DIR/spool/B/ID.EXT, as a step of a move would. */
static void link_part(struct fx *f, const char *a, const char *b, const char *ext)
{
    char from[PATH_MAX], to[PATH_MAX];
    path_of(f, a, f->id, ext, from, sizeof(from));
    path_of(f, b, f->id, ext, to, sizeof(to));
    assert_int_equal(link(from, to), 0);
}

static void test_remove_takes_the_envelope_first(void **state)
{
    struct fx *f = *state;
    queue_one(f, "x\r\n", NULL);
    /* ID.state a folder with something in it: the second unlink fails */
    char path[PATH_MAX];
    path_of(f, "queue", f->id, "state", path, sizeof(path));
    assert_int_equal(mkdir(path, 0700), 0);
    strcat(path, "/x");
    testfs_put(path, "x");
    assert_int_equal(spool_remove(f->dir, f->id, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, "is removed, but"));
    assert_false(exists(f, "queue", f->id, "env")); /* gone first: the entry is no more */
    assert_listed(f, 0, 0);
    assert_int_equal(
        spool_entry_load(f->dir, f->id, false, &(struct spool_entry){0}, f->err, sizeof(f->err)),
        -1);
    assert_int_equal(errno, ENOENT);
}

static void test_hold_failing_moves_nothing(void **state)
{
    struct fx *f = *state;
    queue_one(f, "x\r\n", NULL);
    save_tried(f, f->id, 1800000000);
    /* hold/ID.state a non-empty folder: the state cannot be linked there */
    char path[PATH_MAX];
    path_of(f, "hold", NULL, NULL, path, sizeof(path));
    assert_int_equal(mkdir(path, 0700), 0);
    path_of(f, "hold", f->id, "state", path, sizeof(path));
    assert_int_equal(mkdir(path, 0700), 0);
    strcat(path, "/x");
    testfs_put(path, "x");
    assert_int_equal(spool_hold(f->dir, f->id, f->err, sizeof(f->err)), -1);
    assert_listed(f, 1, 0);
    assert_false(exists(f, "hold", f->id, "msg")); /* its link taken back */
    assert_int_equal(count_in(f, "queue"), 3);
    assert_int_equal(next_try_of(f, f->id), 1800000000);
}

static void test_crash_states_recover(void **state)
{
    struct fx *f = *state;
    queue_one(f, "survivor\r\n", NULL);
    save_tried(f, f->id, 1800000000);
    char hold[PATH_MAX];
    path_of(f, "hold", NULL, NULL, hold, sizeof(hold));
    assert_int_equal(mkdir(hold, 0700), 0);

    /* a hold that stopped after its links: still queued only, and a hold goes through */
    link_part(f, "queue", "hold", "msg");
    link_part(f, "queue", "hold", "state");
    assert_listed(f, 1, 0);
    assert_int_equal(spool_hold(f->dir, f->id, f->err, sizeof(f->err)), 0);
    assert_listed(f, 0, 1);

    /* a release that stopped after its rename: queued only, hold/ has litter */
    link_part(f, "hold", "queue", "msg");
    link_part(f, "hold", "queue", "state");
    char from[PATH_MAX], to[PATH_MAX];
    path_of(f, "hold", f->id, "env", from, sizeof(from));
    path_of(f, "queue", f->id, "env", to, sizeof(to));
    assert_int_equal(rename(from, to), 0);
    assert_listed(f, 1, 0);
    assert_int_equal(spool_hold(f->dir, f->id, f->err, sizeof(f->err)), 0); /* over the litter */
    assert_listed(f, 0, 1);
    assert_int_equal(count_in(f, "queue"), 0);
    assert_msg(f, f->id, "survivor\r\n");

    /* a hold that stopped after its rename: held only; release goes over queue/'s litter */
    assert_int_equal(spool_release(f->dir, f->id, f->err, sizeof(f->err)), 0);
    link_part(f, "queue", "hold", "msg");
    link_part(f, "queue", "hold", "state");
    path_of(f, "queue", f->id, "env", from, sizeof(from));
    path_of(f, "hold", f->id, "env", to, sizeof(to));
    assert_int_equal(rename(from, to), 0);
    assert_listed(f, 0, 1);
    assert_int_equal(spool_release(f->dir, f->id, f->err, sizeof(f->err)), 0);
    assert_listed(f, 1, 0);
    assert_int_equal(count_in(f, "hold"), 0);
    assert_int_equal(next_try_of(f, f->id), 1800000000); /* its state came back too */
    assert_msg(f, f->id, "survivor\r\n");

    /* litter of every kind beside a complete entry: the sweep takes the litter only, and
     * only once it is old */
    char other[96];
    queue_one(f, "doomed\r\n", other);
    path_of(f, "queue", other, "env", from, sizeof(from));
    assert_int_equal(unlink(from), 0);    /* a remove that stopped after its first step */
    link_part(f, "queue", "hold", "msg"); /* a hold that stopped after its first link */
    path_of(f, "tmp", "1-2-3", "state.abcdef", from, sizeof(from));
    testfs_put(from, "{}");
    assert_listed(f, 1, 0);
    assert_int_equal(spool_sweep(f->dir, time(NULL), f->err, sizeof(f->err)), 0);
    assert_int_equal(
        spool_sweep(f->dir, time(NULL) + 2 * SPOOL_STALE_SECONDS, f->err, sizeof(f->err)), 3);
    assert_false(exists(f, "queue", other, "msg"));
    assert_int_equal(count_in(f, "hold"), 0);
    assert_int_equal(count_in(f, "tmp"), 0);
    assert_int_equal(count_in(f, "queue"), 3); /* the complete entry, untouched */
    assert_listed(f, 1, 0);
    assert_msg(f, f->id, "survivor\r\n");
}

static void test_sweep_tmp_by_age(void **state)
{
    struct fx *f = *state;
    assert_int_equal(spool_sweep(f->dir, time(NULL), f->err, sizeof(f->err)), 0); /* no spool */
    queue_one(f, "x\r\n", NULL);
    char old[PATH_MAX], young[PATH_MAX], dir[PATH_MAX];
    path_of(f, "tmp", "1-1", "msg", old, sizeof(old));
    path_of(f, "tmp", "2-2", "msg", young, sizeof(young));
    path_of(f, "tmp", "3-3", "d", dir, sizeof(dir));
    testfs_put(old, "old");
    testfs_put(young, "young");
    assert_int_equal(mkdir(dir, 0700), 0);
    struct timespec ts[2] = {{time(NULL) - SPOOL_STALE_SECONDS - 60, 0},
                             {time(NULL) - SPOOL_STALE_SECONDS - 60, 0}};
    assert_int_equal(utimensat(AT_FDCWD, old, ts, 0), 0);
    assert_int_equal(spool_sweep(f->dir, time(NULL), f->err, sizeof(f->err)), 1);
    assert_int_equal(access(old, F_OK), -1);
    assert_int_equal(access(young, F_OK), 0);
    assert_int_equal(access(dir, F_OK), 0); /* only plain files */
    assert_listed(f, 1, 0);
}

static void test_files_given_to_the_spool_owner(void **state)
{
    struct fx *f = *state;
    if (geteuid() != 0)
        skip(); /* only root makes files someone else must own */
    queue_one(f, "x\r\n", NULL);
    char spool[PATH_MAX];
    snprintf(spool, sizeof(spool), "%s/spool", f->dir);
    assert_int_equal(chown(spool, 65534, 65534), 0);
    save_tried(f, f->id, 1800000000);
    assert_int_equal(spool_hold(f->dir, f->id, f->err, sizeof(f->err)), 0);
    char path[PATH_MAX];
    struct stat sb;
    path_of(f, "hold", f->id, "state", path, sizeof(path));
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_uid, 65534);
    assert_int_equal(sb.st_gid, 65534);
    path_of(f, "hold", NULL, NULL, path, sizeof(path));
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_uid, 65534);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missing_state_is_initial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mismatch_and_malformed_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_refuses_what_no_state_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_after_remove_fails_and_leaves_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hold_and_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_ids_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_takes_the_envelope_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_failing_moves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_states_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_tmp_by_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_given_to_the_spool_owner, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

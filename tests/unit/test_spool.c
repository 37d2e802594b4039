/* Unit tests for the outbound spool, each in a fresh mkdtemp data_dir: a commit leaves exactly
 * ID.msg (the bytes appended) and ID.env (JSON with every field) in queue/ and nothing in tmp/;
 * an abandoned, withdrawn or failed message leaves nothing anywhere; hostile addresses come back
 * from spool_list byte for byte; the lister skips incomplete and malformed entries and lists
 * 1000 entries oldest first. */
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
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/spool.h"

struct fx {
    char dir[64];
    char err[1024];
    char id[96];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/tern-spool-XXXXXX");
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

/* DIR/spool/SUB, or DIR/spool/SUB/NAME. */
static void spool_path(const struct fx *f, const char *sub, const char *name, char *out,
                       size_t outlen)
{
    if (name)
        snprintf(out, outlen, "%s/spool/%s/%s", f->dir, sub, name);
    else
        snprintf(out, outlen, "%s/spool/%s", f->dir, sub);
}

/* Number of entries in DIR/spool/SUB (not . or ..), or -1 if it cannot be opened. */
static int count_in(const struct fx *f, const char *sub)
{
    char dir[PATH_MAX];
    spool_path(f, sub, NULL, dir, sizeof(dir));
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* Does DIR/spool/SUB/ID.EXT exist? */
static int exists(const struct fx *f, const char *sub, const char *id, const char *ext)
{
    char name[128], path[PATH_MAX];
    snprintf(name, sizeof(name), "%s.%s", id, ext);
    spool_path(f, sub, name, path, sizeof(path));
    return access(path, F_OK) == 0;
}

/* Reads a whole file; returns its length or -1. */
static ssize_t slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap);
    close(fd);
    return n;
}

/* Writes text to DIR/spool/queue/NAME. */
static void put_file(const struct fx *f, const char *name, const char *text)
{
    char path[PATH_MAX];
    spool_path(f, "queue", name, path, sizeof(path));
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

/* begin + append + commit of one message; the id is left in f->id. */
static void queue_one(struct fx *f, const char *from, const char *const *rcpts, size_t n,
                      const char *auth, const char *body)
{
    struct spool_msg *m =
        spool_begin(f->dir, from, rcpts, n, auth, f->id, sizeof(f->id), f->err, sizeof(f->err));
    assert_non_null(m);
    assert_int_equal(spool_append(m, body, strlen(body), f->err, sizeof(f->err)), 0);
    assert_int_equal(spool_commit(m, f->err, sizeof(f->err)), 0);
    spool_free(m);
}

/* spool_list's entries, copied. */
struct seen {
    size_t n, cap;
    struct spool_entry *v;
    size_t stop_after; /* 0: never stop */
};

static int collect(void *ctx, const struct spool_entry *e)
{
    struct seen *s = ctx;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        assert_non_null(s->v);
    }
    struct spool_entry *c = &s->v[s->n++];
    *c = *e;
    c->rcpts = malloc(e->nrcpts * sizeof(*e->rcpts));
    assert_non_null(c->rcpts);
    memcpy(c->rcpts, e->rcpts, e->nrcpts * sizeof(*e->rcpts));
    return s->stop_after && s->n >= s->stop_after;
}

static void seen_free(struct seen *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].rcpts);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static void test_commit_layout(void **state)
{
    struct fx *f = *state;
    const char *rcpts[] = {"bob@far.example", "carol@other.example"};
    time_t before = time(NULL);
    struct spool_msg *m = spool_begin(f->dir, "alice@example.org", rcpts, 2, "alice@example.org",
                                      f->id, sizeof(f->id), f->err, sizeof(f->err));
    assert_non_null(m);

    /* SECONDS-USEC-PID-COUNT-RRRR, nothing that could confuse a file name. */
    long long sec;
    long usec, pid;
    unsigned long count;
    unsigned rnd;
    int off = 0;
    assert_int_equal(
        sscanf(f->id, "%lld-%6ld-%ld-%lu-%4x%n", &sec, &usec, &pid, &count, &rnd, &off), 5);
    assert_int_equal((size_t)off, strlen(f->id));
    assert_int_equal(pid, (long)getpid());
    assert_true(sec >= before && usec >= 0 && usec < 1000000);
    assert_int_equal(strspn(f->id, "0123456789abcdef-"), strlen(f->id));

    char body[3 * 4096];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (char)(i * 7); /* every byte value, NUL and bare CR included */
    assert_int_equal(spool_append(m, body, 1, f->err, sizeof(f->err)), 0);
    assert_int_equal(spool_append(m, body + 1, 4000, f->err, sizeof(f->err)), 0);
    assert_int_equal(spool_append(m, "", 0, f->err, sizeof(f->err)), 0);
    assert_int_equal(spool_append(m, body + 4001, sizeof(body) - 4001, f->err, sizeof(f->err)), 0);
    /* Nothing in queue/ before commit. */
    assert_int_equal(count_in(f, "queue"), 0);
    assert_int_equal(count_in(f, "tmp"), 1);
    assert_int_equal(spool_commit(m, f->err, sizeof(f->err)), 0);
    time_t after = time(NULL);
    assert_int_equal(spool_commit(m, f->err, sizeof(f->err)), -1); /* only once */
    assert_int_equal(spool_append(m, "x", 1, f->err, sizeof(f->err)), -1);
    spool_free(m);

    assert_int_equal(count_in(f, "tmp"), 0);
    assert_int_equal(count_in(f, "queue"), 2);
    assert_true(exists(f, "queue", f->id, "msg"));
    assert_true(exists(f, "queue", f->id, "env"));

    char name[128], path[PATH_MAX];
    static char got[sizeof(body) + 1];
    snprintf(name, sizeof(name), "%s.msg", f->id);
    spool_path(f, "queue", name, path, sizeof(path));
    assert_int_equal(slurp(path, got, sizeof(got)), (ssize_t)sizeof(body));
    assert_memory_equal(got, body, sizeof(body));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    snprintf(name, sizeof(name), "%s.env", f->id);
    spool_path(f, "queue", name, path, sizeof(path));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    json_error_t jerr;
    json_t *env = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(env);
    assert_int_equal(json_object_size(env), 7);
    assert_int_equal(json_integer_value(json_object_get(env, "version")), 1);
    assert_string_equal(json_string_value(json_object_get(env, "id")), f->id);
    assert_string_equal(json_string_value(json_object_get(env, "from")), "alice@example.org");
    assert_string_equal(json_string_value(json_object_get(env, "auth_user")), "alice@example.org");
    json_int_t queued = json_integer_value(json_object_get(env, "queued"));
    assert_true(queued >= before && queued <= after);
    assert_int_equal(queued, sec); /* the time that named it */
    assert_true(json_is_integer(json_object_get(env, "size")));
    assert_int_equal(json_integer_value(json_object_get(env, "size")), sizeof(body));
    json_t *list = json_object_get(env, "rcpts");
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(json_string_value(json_array_get(list, 0)), rcpts[0]);
    assert_string_equal(json_string_value(json_array_get(list, 1)), rcpts[1]);
    json_decref(env);

    static const char *const dirs[] = {"", "tmp", "queue"};
    for (size_t i = 0; i < 3; i++) {
        spool_path(f, dirs[i], NULL, path, sizeof(path));
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
    }

    struct seen s = {0};
    assert_int_equal(spool_list(f->dir, collect, &s, f->err, sizeof(f->err)), 1);
    assert_string_equal(s.v[0].id, f->id);
    assert_int_equal(s.v[0].size, sizeof(body));
    assert_int_equal(s.v[0].queued, queued);
    assert_string_equal(s.v[0].auth_user, "alice@example.org");
    seen_free(&s);
}

static void test_free_without_commit(void **state)
{
    struct fx *f = *state;
    const char *rcpts[] = {"bob@far.example"};
    struct spool_msg *m =
        spool_begin(f->dir, "", rcpts, 1, NULL, f->id, sizeof(f->id), f->err, sizeof(f->err));
    assert_non_null(m);
    assert_int_equal(spool_append(m, "partial", 7, f->err, sizeof(f->err)), 0);
    assert_true(exists(f, "tmp", f->id, "msg"));
    spool_free(m);
    spool_free(NULL);
    assert_int_equal(count_in(f, "tmp"), 0);
    assert_int_equal(count_in(f, "queue"), 0);
    assert_int_equal(spool_list(f->dir, collect, NULL, f->err, sizeof(f->err)), 0);
}

static void test_uncommit(void **state)
{
    struct fx *f = *state;
    const char *rcpts[] = {"bob@far.example"};
    struct spool_msg *m = spool_begin(f->dir, "a@example.org", rcpts, 1, "a@example.org", f->id,
                                      sizeof(f->id), f->err, sizeof(f->err));
    assert_non_null(m);
    /* Not committed yet: nothing to withdraw. */
    assert_int_equal(spool_uncommit(m, f->err, sizeof(f->err)), -1);
    assert_int_equal(spool_append(m, "hello\r\n", 7, f->err, sizeof(f->err)), 0);
    assert_int_equal(spool_commit(m, f->err, sizeof(f->err)), 0);
    assert_int_equal(count_in(f, "queue"), 2);

    assert_int_equal(spool_uncommit(m, f->err, sizeof(f->err)), 0);
    assert_int_equal(count_in(f, "queue"), 0);
    assert_int_equal(count_in(f, "tmp"), 0);
    assert_int_equal(spool_uncommit(m, f->err, sizeof(f->err)), -1); /* once */
    assert_int_equal(spool_commit(m, f->err, sizeof(f->err)), -1);   /* gone for good */
    spool_free(m);
    assert_int_equal(spool_list(f->dir, NULL, NULL, f->err, sizeof(f->err)), 0);
}

static void test_rename_failure_leaves_nothing(void **state)
{
    struct fx *f = *state;
    const char *rcpts[] = {"bob@far.example"};
    struct spool_msg *m = spool_begin(f->dir, "a@example.org", rcpts, 1, "a@example.org", f->id,
                                      sizeof(f->id), f->err, sizeof(f->err));
    assert_non_null(m);
    assert_int_equal(spool_append(m, "data\r\n", 6, f->err, sizeof(f->err)), 0);

    /* queue/ replaced by a file: the first rename fails. */
    char queue[PATH_MAX];
    spool_path(f, "queue", NULL, queue, sizeof(queue));
    assert_int_equal(rmdir(queue), 0);
    int fd = open(queue, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);

    f->err[0] = '\0';
    assert_int_equal(spool_commit(m, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, queue)); /* the reason names the path */
    assert_int_equal(count_in(f, "tmp"), 0);
    struct stat st;
    assert_int_equal(stat(queue, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 0);
    assert_int_equal(spool_commit(m, f->err, sizeof(f->err)), -1); /* stays failed */
    spool_free(m);
    assert_int_equal(count_in(f, "tmp"), 0);
}

static void test_env_rename_failure_rolls_back(void **state)
{
    struct fx *f = *state;
    const char *rcpts[] = {"bob@far.example"};
    struct spool_msg *m = spool_begin(f->dir, "a@example.org", rcpts, 1, "a@example.org", f->id,
                                      sizeof(f->id), f->err, sizeof(f->err));
    assert_non_null(m);
    assert_int_equal(spool_append(m, "data\r\n", 6, f->err, sizeof(f->err)), 0);

    /* A non-empty folder named ID.env: the .msg gets into queue/, the .env cannot. */
    char name[128], path[PATH_MAX], inner[PATH_MAX + 8];
    snprintf(name, sizeof(name), "%s.env", f->id);
    spool_path(f, "queue", name, path, sizeof(path));
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(inner, sizeof(inner), "%s/x", path);
    assert_int_equal(mkdir(inner, 0700), 0);

    assert_int_equal(spool_commit(m, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, name));
    assert_false(exists(f, "queue", f->id, "msg")); /* rolled back */
    assert_int_equal(count_in(f, "queue"), 1);      /* only the obstacle */
    assert_int_equal(count_in(f, "tmp"), 0);
    spool_free(m);
    assert_int_equal(spool_list(f->dir, NULL, NULL, f->err, sizeof(f->err)), 0);
}

static void test_write_failure_dooms(void **state)
{
    struct fx *f = *state;
    const char *rcpts[] = {"bob@far.example"};
    struct spool_msg *m = spool_begin(f->dir, "a@example.org", rcpts, 1, "", f->id, sizeof(f->id),
                                      f->err, sizeof(f->err));
    assert_non_null(m);
    /* A file size limit makes write fail with EFBIG instead of killing us with SIGXFSZ. */
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 100;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char big[200];
    memset(big, 'x', sizeof(big));
    int rc = spool_append(m, big, sizeof(big), f->err, sizeof(f->err));
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(f->err, "write"));
    assert_int_equal(spool_append(m, "x", 1, f->err, sizeof(f->err)), -1);
    assert_int_equal(spool_commit(m, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, "write"));
    assert_int_equal(count_in(f, "queue"), 0);
    spool_free(m);
    assert_int_equal(count_in(f, "tmp"), 0);
}

static void test_hostile_round_trip(void **state)
{
    struct fx *f = *state;
    char longest[320];
    memset(longest, 'l', 319);
    memcpy(longest + 300, "@long.example", 13);
    longest[319] = '\0';
    const char *from = "\"quote\\\"d\\\\\"@ex\x01\x1f\x7f.org\t\r\n";
    const char *rcpts[] = {
        "\"a,b c\"@x.example",
        "j\xc3\xb6rg@b\xc3\xbc"
        "cher.example", /* jörg@bücher.example */
        "\"}]\\\",{\\\"x\\\":1}\"@evil.example",
        "\x1b]0;owned\x07@term.example",
        "\xe2\x80\xae"
        "rtl\xf0\x9f\x93\xa7@emoji.example", /* RLO, and a 4-byte character */
        "\xc2\x9b"
        "31m@c1.example",
        "\\u0000@not-a-nul.example",
        longest,
    };
    size_t n = sizeof(rcpts) / sizeof(rcpts[0]);
    const char *auth = "\"\\\n\xc3\xa9\"@example.org";
    queue_one(f, from, rcpts, n, auth, "body\r\n");

    struct seen s = {0};
    assert_int_equal(spool_list(f->dir, collect, &s, f->err, sizeof(f->err)), 1);
    assert_string_equal(s.v[0].from, from);
    assert_string_equal(s.v[0].auth_user, auth);
    assert_int_equal(s.v[0].nrcpts, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(s.v[0].rcpts[i], rcpts[i]);
    seen_free(&s);

    /* The .env is one line of valid JSON, with the control characters escaped. */
    char name[128], path[PATH_MAX], text[8192];
    snprintf(name, sizeof(name), "%s.env", f->id);
    spool_path(f, "queue", name, path, sizeof(path));
    memset(text, 0, sizeof(text));
    ssize_t len = slurp(path, text, sizeof(text) - 1);
    assert_true(len > 0);
    assert_int_equal(text[len - 1], '\n');
    for (ssize_t i = 0; i < len - 1; i++)
        assert_true((unsigned char)text[i] >= 0x20);
}

static void test_begin_refuses(void **state)
{
    struct fx *f = *state;
    char toolong[321];
    memset(toolong, 'x', 320);
    toolong[320] = '\0';
    const char *one[] = {"ok@x.example"};
    const char *bad_utf8[] = {"ok@x.example", "\xff\xfe@x.example"};
    const char *too_long[] = {"ok@x.example", toolong};
    const char *with_null[] = {"ok@x.example", NULL};

    assert_null(
        spool_begin(f->dir, "a@b", one, 0, "", f->id, sizeof(f->id), f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, "recipients"));
    assert_null(
        spool_begin(f->dir, "a@b", bad_utf8, 2, "", f->id, sizeof(f->id), f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, "recipient 2"));
    assert_null(
        spool_begin(f->dir, "a@b", too_long, 2, "", f->id, sizeof(f->id), f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, "recipient 2 is 320 bytes"));
    assert_null(
        spool_begin(f->dir, "a@b", with_null, 2, "", f->id, sizeof(f->id), f->err, sizeof(f->err)));
    assert_null(
        spool_begin(f->dir, toolong, one, 1, "", f->id, sizeof(f->id), f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, "sender"));
    assert_null(
        spool_begin(f->dir, NULL, one, 1, "", f->id, sizeof(f->id), f->err, sizeof(f->err)));
    assert_null(
        spool_begin(f->dir, "a@b", one, 1, "\xc3", f->id, sizeof(f->id), f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, "auth_user"));

    const char **many = calloc(1001, sizeof(*many));
    assert_non_null(many);
    for (size_t i = 0; i < 1001; i++)
        many[i] = "r@x.example";
    assert_null(
        spool_begin(f->dir, "a@b", many, 1001, "", f->id, sizeof(f->id), f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, "1001 recipients, but an envelope holds 1000"));
    /* None of the refusals touched the disk. */
    char spool[PATH_MAX];
    snprintf(spool, sizeof(spool), "%s/spool", f->dir);
    assert_int_equal(access(spool, F_OK), -1);

    /* 1000 recipients is the limit, and fits. */
    struct spool_msg *m =
        spool_begin(f->dir, "a@b", many, 1000, "", f->id, sizeof(f->id), f->err, sizeof(f->err));
    assert_non_null(m);
    assert_int_equal(spool_commit(m, f->err, sizeof(f->err)), 0);
    spool_free(m);
    free(many);
    struct seen s = {0};
    assert_int_equal(spool_list(f->dir, collect, &s, f->err, sizeof(f->err)), 1);
    assert_int_equal(s.v[0].nrcpts, 1000);
    assert_int_equal(s.v[0].size, 0);
    seen_free(&s);

    /* A data_dir that does not exist is a configuration error, not something to create. */
    char missing[PATH_MAX];
    snprintf(missing, sizeof(missing), "%s/nope", f->dir);
    assert_null(
        spool_begin(missing, "a@b", one, 1, "", f->id, sizeof(f->id), f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, missing));
    /* An id buffer too small is refused and leaves nothing behind. */
    char tiny[8];
    assert_null(spool_begin(f->dir, "a@b", one, 1, "", tiny, sizeof(tiny), f->err, sizeof(f->err)));
    assert_int_equal(count_in(f, "tmp"), 0);
}

static void test_list_skips_incomplete_and_malformed(void **state)
{
    struct fx *f = *state;
    assert_int_equal(spool_list(f->dir, collect, NULL, f->err, sizeof(f->err)), 0); /* no spool */
    const char *rcpts[] = {"bob@far.example"};
    queue_one(f, "a@example.org", rcpts, 1, "", "good\r\n");
    char good[96];
    snprintf(good, sizeof(good), "%s", f->id);

    /* A message whose envelope never arrived (a crash between the renames). */
    put_file(f, "1700000000-000001-1-1-aaaa.msg", "orphan\r\n");
    /* Envelopes that are not entries, each with its .msg beside it. */
    static const struct {
        const char *id, *text;
    } bad[] = {
        {"1700000000-000002-1-2-aaaa", "{not json"},
        {"1700000000-000003-1-3-aaaa", ""},
        {"1700000000-000004-1-4-aaaa", "[]"},
        {"1700000000-000005-1-5-aaaa", /* the id inside is another's */
         "{\"version\":1,\"id\":\"1700000000-000001-1-1-aaaa\",\"from\":\"\",\"auth_user\":\"\","
         "\"queued\":1,\"size\":1,\"rcpts\":[\"x@y\"]}"},
        {"1700000000-000006-1-6-aaaa", /* a version we do not know */
         "{\"version\":2,\"id\":\"1700000000-000006-1-6-aaaa\",\"from\":\"\",\"auth_user\":\"\","
         "\"queued\":1,\"size\":1,\"rcpts\":[\"x@y\"]}"},
        {"1700000000-000007-1-7-aaaa", /* no recipients */
         "{\"version\":1,\"id\":\"1700000000-000007-1-7-aaaa\",\"from\":\"\",\"auth_user\":\"\","
         "\"queued\":1,\"size\":1,\"rcpts\":[]}"},
        {"1700000000-000008-1-8-aaaa", /* a recipient that is not a string */
         "{\"version\":1,\"id\":\"1700000000-000008-1-8-aaaa\",\"from\":\"\",\"auth_user\":\"\","
         "\"queued\":1,\"size\":1,\"rcpts\":[\"x@y\",7]}"},
        {"1700000000-000009-1-9-aaaa", /* a NUL that would cut the sender short */
         "{\"version\":1,\"id\":\"1700000000-000009-1-9-aaaa\",\"from\":\"a\\u0000b\","
         "\"auth_user\":\"\",\"queued\":1,\"size\":1,\"rcpts\":[\"x@y\"]}"},
        {"1700000000-000010-1-10-aaaa", /* a negative size */
         "{\"version\":1,\"id\":\"1700000000-000010-1-10-aaaa\",\"from\":\"\",\"auth_user\":\"\","
         "\"queued\":1,\"size\":-1,\"rcpts\":[\"x@y\"]}"},
        {"1700000000-000011-1-11-aaaa", /* a duplicate key */
         "{\"version\":1,\"id\":\"1700000000-000011-1-11-aaaa\",\"from\":\"\",\"from\":\"\","
         "\"auth_user\":\"\",\"queued\":1,\"size\":1,\"rcpts\":[\"x@y\"]}"},
        {"1700000000-000012-1-12-aaaa", /* queued as a string */
         "{\"version\":1,\"id\":\"1700000000-000012-1-12-aaaa\",\"from\":\"\",\"auth_user\":\"\","
         "\"queued\":\"1\",\"size\":1,\"rcpts\":[\"x@y\"]}"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char name[128];
        snprintf(name, sizeof(name), "%s.env", bad[i].id);
        put_file(f, name, bad[i].text);
        snprintf(name, sizeof(name), "%s.msg", bad[i].id);
        put_file(f, name, "x");
    }
    /* A well-formed envelope whose message is missing, one under a name that is not an id,
     * and a folder named like an envelope. */
    put_file(f, "1700000000-000013-1-13-aaaa.env",
             "{\"version\":1,\"id\":\"1700000000-000013-1-13-aaaa\",\"from\":\"\","
             "\"auth_user\":\"\",\"queued\":1,\"size\":1,\"rcpts\":[\"x@y\"]}");
    put_file(f, "Not.An.Id.env",
             "{\"version\":1,\"id\":\"Not.An.Id\",\"from\":\"\","
             "\"auth_user\":\"\",\"queued\":1,\"size\":1,\"rcpts\":[\"x@y\"]}");
    put_file(f, "Not.An.Id.msg", "x");
    char path[PATH_MAX];
    spool_path(f, "queue", "1700000000-000014-1-14-aaaa.env", path, sizeof(path));
    assert_int_equal(mkdir(path, 0700), 0);

    struct seen s = {0};
    assert_int_equal(spool_list(f->dir, collect, &s, f->err, sizeof(f->err)), 1);
    assert_string_equal(s.v[0].id, good);
    seen_free(&s);

    /* A hand-written entry that is well-formed counts, and sorts by its queued time. */
    put_file(f, "1700000000-000013-1-13-aaaa.msg", "x");
    assert_int_equal(spool_list(f->dir, collect, &s, f->err, sizeof(f->err)), 2);
    assert_string_equal(s.v[0].id, "1700000000-000013-1-13-aaaa");
    assert_int_equal(s.v[0].queued, 1);
    assert_string_equal(s.v[0].rcpts[0], "x@y");
    assert_string_equal(s.v[1].id, good);
    seen_free(&s);
}

static void test_list_1000_oldest_first(void **state)
{
    struct fx *f = *state;
    enum { N = 1000 };
    char path[PATH_MAX];
    spool_path(f, "", NULL, path, sizeof(path));
    assert_int_equal(mkdir(path, 0700), 0);
    spool_path(f, "queue", NULL, path, sizeof(path));
    assert_int_equal(mkdir(path, 0700), 0);
    /* Written in shuffled order, with queued times that disagree with the ids' seconds (queued
     * decides), and groups sharing a second (the id's fields decide, as numbers: 9 < 10). */
    static unsigned order[N];
    for (unsigned i = 0; i < N; i++)
        order[i] = i;
    srand(7);
    for (unsigned i = N - 1; i > 0; i--) {
        unsigned j = (unsigned)rand() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (unsigned k = 0; k < N; k++) {
        unsigned i = order[k]; /* the i-th oldest */
        char id[96], name[128], text[512];
        snprintf(id, sizeof(id), "%u-000000-42-%u-beef", 2000000000u - i / 20, i % 20);
        snprintf(text, sizeof(text),
                 "{\"version\":1,\"id\":\"%s\",\"from\":\"s%u@x\",\"auth_user\":\"\","
                 "\"queued\":%u,\"size\":%u,\"rcpts\":[\"r%u@y\"]}\n",
                 id, i, 1700000000u + i / 20, i, i);
        snprintf(name, sizeof(name), "%s.env", id);
        put_file(f, name, text);
        snprintf(name, sizeof(name), "%s.msg", id);
        put_file(f, name, "x");
    }
    struct seen s = {0};
    assert_int_equal(spool_list(f->dir, collect, &s, f->err, sizeof(f->err)), N);
    for (unsigned i = 0; i < N; i++) {
        char want[32];
        snprintf(want, sizeof(want), "s%u@x", i);
        assert_string_equal(s.v[i].from, want);
        assert_int_equal(s.v[i].size, i);
    }
    seen_free(&s);

    /* fn stops the walk by returning non-zero; the count is of entries it was given. */
    s.stop_after = 3;
    assert_int_equal(spool_list(f->dir, collect, &s, f->err, sizeof(f->err)), 3);
    assert_int_equal(s.n, 3);
    seen_free(&s);
}

static void test_commits_listed_in_order(void **state)
{
    struct fx *f = *state;
    enum { N = 1000 };
    /* Real commits, many within one second and microsecond: listed in the order made. */
    static char ids[N][96];
    const char *rcpts[] = {"bob@far.example"};
    for (int i = 0; i < N; i++) {
        char body[32];
        snprintf(body, sizeof(body), "message %d\r\n", i);
        queue_one(f, "a@example.org", rcpts, 1, "a@example.org", body);
        memcpy(ids[i], f->id, sizeof(ids[i]));
    }
    assert_int_equal(count_in(f, "queue"), 2 * N);
    assert_int_equal(count_in(f, "tmp"), 0);
    struct seen s = {0};
    assert_int_equal(spool_list(f->dir, collect, &s, f->err, sizeof(f->err)), N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(s.v[i].id, ids[i]);
        if (i > 0)
            assert_string_not_equal(ids[i - 1], ids[i]);
    }
    seen_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_without_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uncommit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_failure_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_rename_failure_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure_dooms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_skips_incomplete_and_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_1000_oldest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commits_listed_in_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

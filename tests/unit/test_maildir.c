/* Unit tests for Maildir delivery, each in a fresh mkdtemp data_dir: the exact bytes land once
 * in new/ under NAME,S=SIZE with tmp/ left empty; several recipients share one inode; names are
 * unique; mailboxes that would leave data_dir are refused; a failed commit or write leaves no
 * copy anywhere; an abandoned message leaves no tmp file; cross-filesystem recipients get a
 * copy. */
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
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/maildir.h"

struct fx {
    char dir[64];
    char err[512];
    char id[MAILDIR_ID_MAX];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/tern-maildir-XXXXXX");
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

/* Builds DIR/mail/DOMAIN/USER/SUB into out. */
static void sub_path(const struct fx *f, const char *dom_user, const char *sub, char *out,
                     size_t outlen)
{
    snprintf(out, outlen, "%s/mail/%s/%s", f->dir, dom_user, sub);
}

/* Number of entries in a directory (not . or ..); the name of the last one in name. */
static int count_entries(const char *dir, char *name, size_t namelen)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n++;
        if (name)
            snprintf(name, namelen, "%s", e->d_name);
    }
    closedir(d);
    return n;
}

/* Reads a whole small file; returns its length or -1. */
static ssize_t slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap);
    close(fd);
    return n;
}

static void test_path(void **state)
{
    char out[PATH_MAX];
    assert_int_equal(maildir_path("/d", "User@Example.COM", out, sizeof(out)), 0);
    assert_string_equal(out, "/d/mail/example.com/user");
    /* The last '@' separates the domain. */
    assert_int_equal(maildir_path("/d", "a@b@c", out, sizeof(out)), 0);
    assert_string_equal(out, "/d/mail/c/a@b");

    static const char *const bad[] = {
        "../x@y", "a/b@c", "x@..", "x@.",  ".@y",    "..@y", ".x@y",  "x@.y",
        "x@y/z",  "@y",    "x@",   "noat", "x@y/..", "",     "a\n@b", "a@b\x01",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        assert_int_equal(maildir_path("/d", bad[i], out, sizeof(out)), -1);
        assert_int_equal(errno, EINVAL);
    }
    char tiny[8];
    assert_int_equal(maildir_path("/d", "user@example.com", tiny, sizeof(tiny)), -1);
}

static void test_single_recipient(void **state)
{
    struct fx *f = *state;
    const char *rcpt[] = {"Alice@Example.org"};
    struct maildir_msg *m =
        maildir_begin(f->dir, "mx.test", rcpt, 1, f->id, sizeof(f->id), f->err, sizeof(f->err));
    assert_non_null(m);
    assert_true(strlen(f->id) > 0);

    char body[4096 + 64];
    size_t len = 0;
    len += (size_t)snprintf(body, sizeof(body), "Subject: hi\r\n\r\n");
    memset(body + len, 'x', 4096);
    len += 4096;
    memcpy(body + len, "\r\nend\r\n", 7);
    len += 7;
    /* In uneven pieces, as the session would hand them over. */
    assert_int_equal(maildir_append(m, body, 10, f->err, sizeof(f->err)), 0);
    assert_int_equal(maildir_append(m, body + 10, len - 10, f->err, sizeof(f->err)), 0);
    assert_int_equal(maildir_append(m, "", 0, f->err, sizeof(f->err)), 0);
    assert_int_equal(maildir_size(m), len);
    assert_int_equal(maildir_commit(m, f->err, sizeof(f->err)), 0);
    assert_int_equal(maildir_commit(m, f->err, sizeof(f->err)), -1); /* only once */
    maildir_free(m);

    char dir[PATH_MAX], name[256], want[256], path[PATH_MAX * 2];
    sub_path(f, "example.org/alice", "new", dir, sizeof(dir));
    assert_int_equal(count_entries(dir, name, sizeof(name)), 1);
    snprintf(want, sizeof(want), "%s,S=%zu", f->id, len);
    assert_string_equal(name, want);

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char got[sizeof(body) + 1];
    assert_int_equal(slurp(path, got, sizeof(got)), (ssize_t)len);
    assert_memory_equal(got, body, len);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_nlink, 1);

    sub_path(f, "example.org/alice", "tmp", dir, sizeof(dir));
    assert_int_equal(count_entries(dir, NULL, 0), 0);
    sub_path(f, "example.org/alice", "cur", dir, sizeof(dir));
    assert_int_equal(count_entries(dir, NULL, 0), 0);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

static void test_three_recipients_share_inode(void **state)
{
    struct fx *f = *state;
    /* The duplicate (after lowercasing) must not make the second link fail. */
    const char *rcpt[] = {"a@one.test", "b@one.test", "A@ONE.test", "c@two.test"};
    struct maildir_msg *m =
        maildir_begin(f->dir, "mx.test", rcpt, 4, f->id, sizeof(f->id), f->err, sizeof(f->err));
    assert_non_null(m);
    assert_int_equal(maildir_append(m, "hello\r\n", 7, f->err, sizeof(f->err)), 0);
    assert_int_equal(maildir_commit(m, f->err, sizeof(f->err)), 0);
    maildir_free(m);

    static const char *const boxes[] = {"one.test/a", "one.test/b", "two.test/c"};
    ino_t ino = 0;
    for (size_t i = 0; i < 3; i++) {
        char dir[PATH_MAX], name[256], path[PATH_MAX * 2];
        sub_path(f, boxes[i], "new", dir, sizeof(dir));
        assert_int_equal(count_entries(dir, name, sizeof(name)), 1);
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_nlink, 3);
        assert_int_equal(st.st_size, 7);
        if (i == 0)
            ino = st.st_ino;
        assert_int_equal(st.st_ino, ino);
        sub_path(f, boxes[i], "tmp", dir, sizeof(dir));
        assert_int_equal(count_entries(dir, NULL, 0), 0);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_unique_names(void **state)
{
    struct fx *f = *state;
    enum { N = 10000 };
    char **ids = calloc(N, sizeof(*ids));
    assert_non_null(ids);
    const char *rcpt[] = {"u@d.test"};
    for (int i = 0; i < N; i++) {
        struct maildir_msg *m = maildir_begin(f->dir, "host:with/odd,chars", rcpt, 1, f->id,
                                              sizeof(f->id), f->err, sizeof(f->err));
        assert_non_null(m);
        ids[i] = strdup(f->id);
        maildir_free(m);
    }
    /* SECONDS.MusecPpidQcount.HOST, with the host's '/' ':' ',' escaped. */
    long long sec;
    long usec, pid;
    unsigned long q;
    int off = 0;
    assert_int_equal(sscanf(ids[0], "%lld.M%ldP%ldQ%lu.%n", &sec, &usec, &pid, &q, &off), 4);
    assert_true(usec >= 0 && usec < 1000000);
    assert_int_equal(pid, (long)getpid());
    assert_string_equal(ids[0] + off, "host\\072with\\057odd\\054chars");

    qsort(ids, N, sizeof(*ids), cmp_str);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    for (int i = 0; i < N; i++)
        free(ids[i]);
    free(ids);

    char dir[PATH_MAX];
    sub_path(f, "d.test/u", "tmp", dir, sizeof(dir));
    assert_int_equal(count_entries(dir, NULL, 0), 0);
}

static void test_traversal_rejected(void **state)
{
    struct fx *f = *state;
    static const char *const bad[] = {"../x@y", "a/b@c", "x@..", ".hidden@y"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* A valid recipient first: a bad one anywhere must create nothing at all. */
        const char *rcpt[] = {"ok@fine.test", bad[i]};
        f->err[0] = '\0';
        assert_null(
            maildir_begin(f->dir, "mx", rcpt, 2, f->id, sizeof(f->id), f->err, sizeof(f->err)));
        assert_non_null(strstr(f->err, "invalid mailbox"));
    }
    char mail[PATH_MAX];
    snprintf(mail, sizeof(mail), "%s/mail", f->dir);
    assert_int_equal(access(mail, F_OK), -1);
    assert_int_equal(count_entries(f->dir, NULL, 0), 0);
}

/* Makes a recipient's new/ unusable after begin: read-only where permissions bind, and for
 * root (who ignores them) a regular file in its place. */
static void break_new_dir(const char *dir)
{
    if (geteuid() != 0) {
        assert_int_equal(chmod(dir, 0500), 0);
        return;
    }
    assert_int_equal(rmdir(dir), 0);
    int fd = open(dir, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
}

static void test_commit_failure_leaves_no_copy(void **state)
{
    struct fx *f = *state;
    const char *rcpt[] = {"a@x.test", "b@x.test", "c@x.test"};
    struct maildir_msg *m =
        maildir_begin(f->dir, "mx", rcpt, 3, f->id, sizeof(f->id), f->err, sizeof(f->err));
    assert_non_null(m);
    assert_int_equal(maildir_append(m, "data\r\n", 6, f->err, sizeof(f->err)), 0);

    /* The last recipient fails, after the first two already have their links. */
    char dir[PATH_MAX];
    sub_path(f, "x.test/c", "new", dir, sizeof(dir));
    break_new_dir(dir);

    f->err[0] = '\0';
    assert_int_equal(maildir_commit(m, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, "x.test/c/new"));
    assert_int_equal(maildir_commit(m, f->err, sizeof(f->err)), -1); /* stays failed */

    sub_path(f, "x.test/a", "new", dir, sizeof(dir));
    assert_int_equal(count_entries(dir, NULL, 0), 0);
    sub_path(f, "x.test/b", "new", dir, sizeof(dir));
    assert_int_equal(count_entries(dir, NULL, 0), 0);
    if (geteuid() != 0) {
        sub_path(f, "x.test/c", "new", dir, sizeof(dir));
        assert_int_equal(count_entries(dir, NULL, 0), 0);
    }

    maildir_free(m);
    sub_path(f, "x.test/a", "tmp", dir, sizeof(dir));
    assert_int_equal(count_entries(dir, NULL, 0), 0);
}

static void test_free_without_commit(void **state)
{
    struct fx *f = *state;
    const char *rcpt[] = {"a@x.test", "b@x.test"};
    struct maildir_msg *m =
        maildir_begin(f->dir, "mx", rcpt, 2, f->id, sizeof(f->id), f->err, sizeof(f->err));
    assert_non_null(m);
    assert_int_equal(maildir_append(m, "partial", 7, f->err, sizeof(f->err)), 0);

    char dir[PATH_MAX], name[256];
    sub_path(f, "x.test/a", "tmp", dir, sizeof(dir));
    assert_int_equal(count_entries(dir, name, sizeof(name)), 1);
    assert_string_equal(name, f->id);

    maildir_free(m);
    assert_int_equal(count_entries(dir, NULL, 0), 0);
    sub_path(f, "x.test/a", "new", dir, sizeof(dir));
    assert_int_equal(count_entries(dir, NULL, 0), 0);
    sub_path(f, "x.test/b", "new", dir, sizeof(dir));
    assert_int_equal(count_entries(dir, NULL, 0), 0);
}

/* A write that fails part-way (here: the file size limit) dooms the message. */
static void test_write_failure_dooms(void **state)
{
    struct fx *f = *state;
    const char *rcpt[] = {"a@x.test"};
    struct maildir_msg *m =
        maildir_begin(f->dir, "mx", rcpt, 1, f->id, sizeof(f->id), f->err, sizeof(f->err));
    assert_non_null(m);

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 1000;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char buf[4096];
    memset(buf, 'y', sizeof(buf));
    int rc = maildir_append(m, buf, sizeof(buf), f->err, sizeof(f->err));
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);

    assert_int_equal(rc, -1);
    assert_non_null(strstr(f->err, "write"));
    assert_non_null(strstr(f->err, strerror(EFBIG)));
    assert_int_equal(maildir_append(m, "x", 1, f->err, sizeof(f->err)), -1);
    f->err[0] = '\0';
    assert_int_equal(maildir_commit(m, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, strerror(EFBIG)));
    maildir_free(m);

    char dir[PATH_MAX];
    sub_path(f, "x.test/a", "new", dir, sizeof(dir));
    assert_int_equal(count_entries(dir, NULL, 0), 0);
    sub_path(f, "x.test/a", "tmp", dir, sizeof(dir));
    assert_int_equal(count_entries(dir, NULL, 0), 0);
}

static void test_missing_data_dir(void **state)
{
    struct fx *f = *state;
    char gone[PATH_MAX];
    snprintf(gone, sizeof(gone), "%s/nope", f->dir);
    const char *rcpt[] = {"a@x.test"};
    assert_null(maildir_begin(gone, "mx", rcpt, 1, f->id, sizeof(f->id), f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, gone));
    assert_non_null(strstr(f->err, strerror(ENOENT)));
    assert_null(maildir_begin(f->dir, "mx", rcpt, 0, f->id, sizeof(f->id), f->err, sizeof(f->err)));
}

/* A recipient whose domain directory lives on another filesystem gets a copy, not a link. */
static void test_cross_filesystem_copy(void **state)
{
    struct fx *f = *state;
    char far[64] = "/dev/shm/tern-maildir-XXXXXX";
    struct stat here, there;
    if (stat(f->dir, &here) != 0 || !mkdtemp(far)) {
        skip();
        return;
    }
    if (stat(far, &there) != 0 || there.st_dev == here.st_dev) {
        testfs_rm_tree(far);
        skip();
        return;
    }
    char link_path[PATH_MAX];
    snprintf(link_path, sizeof(link_path), "%s/mail", f->dir);
    assert_int_equal(mkdir(link_path, 0700), 0);
    snprintf(link_path, sizeof(link_path), "%s/mail/far.test", f->dir);
    assert_int_equal(symlink(far, link_path), 0);

    const char *rcpt[] = {"a@near.test", "b@far.test"};
    struct maildir_msg *m =
        maildir_begin(f->dir, "mx", rcpt, 2, f->id, sizeof(f->id), f->err, sizeof(f->err));
    assert_non_null(m);
    char body[100000];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (char)('a' + i % 26);
    assert_int_equal(maildir_append(m, body, sizeof(body), f->err, sizeof(f->err)), 0);
    assert_int_equal(maildir_commit(m, f->err, sizeof(f->err)), 0);
    maildir_free(m);

    static const char *const boxes[] = {"near.test/a", "far.test/b"};
    for (size_t i = 0; i < 2; i++) {
        char dir[PATH_MAX], name[256], path[PATH_MAX * 2];
        sub_path(f, boxes[i], "new", dir, sizeof(dir));
        assert_int_equal(count_entries(dir, name, sizeof(name)), 1);
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        static char got[sizeof(body) + 1];
        assert_int_equal(slurp(path, got, sizeof(got)), (ssize_t)sizeof(body));
        assert_memory_equal(got, body, sizeof(body));
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_nlink, 1);
        sub_path(f, boxes[i], "tmp", dir, sizeof(dir));
        assert_int_equal(count_entries(dir, NULL, 0), 0);
    }
    testfs_rm_tree(far);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path),
        cmocka_unit_test_setup_teardown(test_single_recipient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_three_recipients_share_inode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unique_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traversal_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_failure_leaves_no_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_without_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure_dooms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_data_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_filesystem_copy, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

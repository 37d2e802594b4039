/* Unit tests for src/util/editfile.c, the file side of editing the users and mailboxes files:
 * lines cut the way the loaders cut them; an edit replaces the file and keeps its odd mode
 * whatever the umask; an edit that changes nothing or that the caller's check refuses leaves the
 * file (and its inode) alone with no temporary file behind; a symlink's target changes, not the
 * link; an optional file is created with the given mode, a required one is not; a lock held by
 * another process times out as EDITFILE_LOCKED; the "would no longer load" reason names the real
 * file, not the temporary one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testfs.h"
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/editfile.h"

struct fixture {
    char dir[64];
    char path[128];
    char lock[160];
};

/* How many entries the folder holds besides . and .. (a temporary file left behind shows). */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    strcpy(fx->dir, "/tmp/tern-editfile-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path, sizeof(fx->path), "%s/things", fx->dir);
    snprintf(fx->lock, sizeof(fx->lock), "%s.lock", fx->path);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

/* The test's edit: appends ctx's text (NULL: changes nothing); check refuses when told to. */
struct job {
    const char *append;
    bool refuse;
    char seen_tmp[256]; /* the temporary file the check saw */
    char seen_path[256];
};

static int job_apply(void *ctx, const char *path, const struct editfile_buf *old,
                     struct editfile_buf *out)
{
    struct job *j = ctx;
    if (!j->append)
        return 0;
    return editfile_buf_add(out, old->p, old->len) || editfile_buf_str(out, j->append) ? -1 : 1;
}

static int job_check(void *ctx, const char *tmp, const char *path)
{
    struct job *j = ctx;
    snprintf(j->seen_tmp, sizeof(j->seen_tmp), "%s", tmp);
    snprintf(j->seen_path, sizeof(j->seen_path), "%s", path);
    struct stat st;
    assert_int_equal(stat(tmp, &st), 0); /* written and there when the check runs */
    return j->refuse ? -1 : 0;
}

static int edit(const struct fixture *fx, bool optional, int timeout_ms, struct job *j,
                enum editfile_fail *why, char *err, size_t errlen)
{
    const struct editfile f = {.path = fx->path,
                               .noun = "things file",
                               .key = "things",
                               .lock_timeout_ms = timeout_ms,
                               .optional = optional,
                               .mode = 0604,
                               .uid = (uid_t)-1,
                               .gid = (gid_t)-1};
    const struct editfile_ops ops = {job_apply, job_check, j};
    return editfile_edit(&f, &ops, why, err, errlen);
}

static void test_lines(void **state)
{
    (void)state;
    struct editfile_buf b = {0};
    assert_int_equal(editfile_buf_str(&b, "# head\n\n  one: x  \r\n\t# indented\n \ttwo"), 0);
    size_t pos = 0;
    struct editfile_line l;
    assert_true(editfile_next_line(&b, &pos, &l));
    assert_memory_equal(b.p + l.lead, "one: x", l.tail - l.lead);
    assert_int_equal(l.tail - l.lead, 6);
    assert_int_equal(b.p[l.end], '\n'); /* the CR stays inside [start, end) */
    assert_int_equal(b.p[l.end - 1], '\r');
    assert_int_equal(l.next, l.end + 1);
    assert_true(editfile_next_line(&b, &pos, &l));
    assert_int_equal(l.tail - l.lead, 3);
    assert_memory_equal(b.p + l.lead, "two", 3);
    assert_int_equal(l.next, b.len); /* no line end at the end */
    assert_false(editfile_next_line(&b, &pos, &l));
    free(b.p);
}

static void test_edit_keeps_mode(void **state)
{
    struct fixture *fx = *state;
    testfs_put(fx->path, "a\n");
    assert_int_equal(chmod(fx->path, 0604), 0);
    mode_t old = umask(077);
    struct job j = {.append = "b\n"};
    enum editfile_fail why;
    char err[512] = "";
    int r = edit(fx, false, 1000, &j, &why, err, sizeof(err));
    umask(old);
    if (r != 0)
        fail_msg("%s", err);
    assert_int_equal(why, EDITFILE_OK);
    testfs_assert_file(fx->path, "a\nb\n");
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0604);
    assert_string_equal(j.seen_path, fx->path);
    assert_non_null(strstr(j.seen_tmp, "/.things."));
    assert_int_equal(entries(fx->dir), 2); /* the file and its lock */
}

static void test_unchanged_and_refused(void **state)
{
    struct fixture *fx = *state;
    testfs_put(fx->path, "a\n");
    struct stat before, after;
    assert_int_equal(stat(fx->path, &before), 0);
    enum editfile_fail why;
    char err[512] = "untouched";
    struct job same = {.append = NULL};
    assert_int_equal(edit(fx, false, 1000, &same, &why, err, sizeof(err)), 0);
    assert_string_equal(same.seen_tmp, ""); /* nothing written, nothing to check */
    struct job no = {.append = "b\n", .refuse = true};
    assert_int_equal(edit(fx, false, 1000, &no, &why, err, sizeof(err)), -1);
    assert_int_equal(why, EDITFILE_CALLER);
    assert_string_equal(err, "untouched"); /* the caller's reason, not ours */
    assert_int_equal(stat(fx->path, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    testfs_assert_file(fx->path, "a\n");
    assert_int_equal(access(no.seen_tmp, F_OK), -1); /* the temporary file is gone */
    assert_int_equal(entries(fx->dir), 2);
}

static void test_symlink(void **state)
{
    struct fixture *fx = *state;
    char real[160];
    snprintf(real, sizeof(real), "%s/things.real", fx->dir);
    testfs_put(real, "a\n");
    assert_int_equal(symlink("things.real", fx->path), 0);
    struct job j = {.append = "b\n"};
    enum editfile_fail why;
    char err[512] = "";
    if (edit(fx, false, 1000, &j, &why, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    struct stat st;
    assert_int_equal(lstat(fx->path, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    testfs_assert_file(real, "a\nb\n");
    assert_string_equal(j.seen_path, real); /* and the lock sits beside the target */
    char lock[192];
    snprintf(lock, sizeof(lock), "%s.lock", real);
    assert_int_equal(access(lock, F_OK), 0);
}

static void test_absent(void **state)
{
    struct fixture *fx = *state;
    struct job j = {.append = "first\n"};
    enum editfile_fail why;
    char err[512] = "";
    assert_int_equal(edit(fx, false, 1000, &j, &why, err, sizeof(err)), -1);
    assert_int_equal(why, EDITFILE_IO);
    assert_non_null(strstr(err, "cannot find the things file "));
    assert_non_null(strstr(err, "; check things = in tern.conf"));
    assert_int_equal(access(fx->path, F_OK), -1);
    /* optional: created with the given mode */
    mode_t old = umask(077);
    int r = edit(fx, true, 1000, &j, &why, err, sizeof(err));
    umask(old);
    if (r != 0)
        fail_msg("%s", err);
    testfs_assert_file(fx->path, "first\n");
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0604);
    /* a dangling symlink is not ours to replace */
    assert_int_equal(unlink(fx->path), 0);
    assert_int_equal(symlink("nowhere", fx->path), 0);
    assert_int_equal(edit(fx, true, 1000, &j, &why, err, sizeof(err)), -1);
    assert_int_equal(why, EDITFILE_IO);
    assert_non_null(strstr(err, "cannot find or create the things file"));
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_lock_timeout(void **state)
{
    struct fixture *fx = *state;
    testfs_put(fx->path, "a\n");
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* another editor: holds the lock until killed */
        int fd = open(fx->lock, O_RDONLY | O_CREAT, 0640);
        if (fd < 0 || flock(fd, LOCK_EX) < 0 || write(ready[1], "x", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    struct job j = {.append = "b\n"};
    enum editfile_fail why;
    char err[512] = "";
    long long t0 = now_ms();
    assert_int_equal(edit(fx, false, 300, &j, &why, err, sizeof(err)), -1);
    assert_true(now_ms() - t0 >= 300);
    assert_int_equal(why, EDITFILE_LOCKED);
    assert_non_null(strstr(err, "things.lock"));
    assert_non_null(strstr(err, "fuser"));
    testfs_assert_file(fx->path, "a\n");
    /* once the other editor is gone (a crash, even), the lock is free */
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(ready[0]);
    close(ready[1]);
    if (edit(fx, false, 300, &j, &why, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    testfs_assert_file(fx->path, "a\nb\n");
}

static void test_invalid_reason(void **state)
{
    (void)state;
    char out[128];
    editfile_invalid_reason(out, sizeof(out), "/etc/tern/users", "/etc/tern/.users.AbC123",
                            "/etc/tern/.users.AbC123:3: bad line\nalias x: no members\n\n");
    assert_string_equal(out, "nothing changed: /etc/tern/users would no longer load:\n"
                             "/etc/tern/users:3: bad line\nalias x: no members");
    char small[40];
    editfile_invalid_reason(small, sizeof(small), "/etc/tern/users", "/t", "/t:1: x\n");
    assert_int_equal(strlen(small), sizeof(small) - 1); /* cut, and still a string */
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),
        T(test_edit_keeps_mode),
        T(test_unchanged_and_refused),
        T(test_symlink),
        T(test_absent),
        T(test_lock_timeout),
        cmocka_unit_test(test_invalid_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

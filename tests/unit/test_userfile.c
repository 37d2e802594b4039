/* Unit tests for src/auth/userfile.c: add, set password, delete, lock, unlock and list on a
 * users file in a fresh folder with a minimal tern.conf; every other line kept byte for byte
 * (comments, CRLF, Dovecot's own fields); refusals leave the file alone; edits that would break
 * the configuration are refused; mode and owner survive; 4 processes adding at once lose
 * nothing; a held lock times out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testfs.h"
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth/passwd.h"
#include "auth/userfile.h"
#include "conf/config.h"

#define H "{CRYPT}$1$saltsalt$9xy1btjgzLYfb7hivXtC//" /* "secret" */
#define H2 "{CRYPT}$5$rounds=1000$saltsalt$eKLZU9t9OoPWrqOQsoTIKG0aYkZ5rGOoOQhiIvoSWX2"

static const char conf_text[] = "[server]\n"
                                "hostname = mail.example.org\n"
                                "data_dir = .\n"
                                "domains = example.org, example.net\n"
                                "[listen]\n"
                                "smtp = 127.0.0.1:2525\n";

#define L_HEAD "# users: one a line\n"
#define L_ADMIN "admin@example.org:" H ":::Administrator:::\n"
#define L_COMMENT "   # an indented comment, odd   spacing  \n"
#define L_BOB                                                                                      \
    "Bob@Example.org:" H ":1000:1000:Bob B:/home/bob:/bin/sh:moved=bob@elsewhere.com "             \
    "quota_rule=*:storage=1G\n"
#define L_CAROL "carol@example.net:" H ":::Carol:::\r\n"
#define L_DAVE "dave@example.org:\n"
#define L_ERIN "erin@example.org:" H "::::::" /* no line end at the end of the file */

static const char users_text[] = L_HEAD L_ADMIN L_COMMENT L_BOB "\n" L_CAROL L_DAVE L_ERIN;

static const char aliases_text[] = "postmaster: admin@example.org\n"
                                   "abuse: admin\n"
                                   "staff@example.org: admin, carol@example.net\n"
                                   "@example.net: carol@example.net\n";

struct fixture {
    char dir[64];
    char conf[128];
    char users[128];
    struct conf *c;
    struct userfile uf;
};

/* Loads the configuration again, as ternd would; the fixture's uf follows it. */
static void reload(struct fixture *fx)
{
    char err[8192] = "";
    if (fx->c)
        conf_unref(fx->c);
    fx->c = conf_load(fx->conf, err, sizeof(err));
    if (!fx->c)
        fail_msg("conf_load: %s", err);
    userfile_from_conf(&fx->uf, fx->c);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    testfs_make_dir(fx->dir, sizeof(fx->dir), "/tmp/tern-userfile-XXXXXX", "tern.conf", conf_text,
                    "users", users_text, "aliases", aliases_text, (const char *)NULL);
    testfs_path(fx->conf, sizeof(fx->conf), fx->dir, "tern.conf");
    testfs_path(fx->users, sizeof(fx->users), fx->dir, "users");
    reload(fx);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    conf_unref(fx->c);
    testfs_rm_tree(fx->dir);
    assert_int_equal(access(fx->dir, F_OK), -1); /* gone */
    free(fx);
    return 0;
}

static void test_add(void **state)
{
    struct fixture *fx = *state;
    struct userfile_err e;
    assert_int_equal(userfile_add(&fx->uf, "Alice@Example.ORG", H2, "Alice Liddell", true, &e), 0);
    /* the old last line gets its line end; nothing else changes */
    testfs_assert_file(fx->users, L_HEAD L_ADMIN L_COMMENT L_BOB "\n" L_CAROL L_DAVE L_ERIN
                                                                 "\nalice@example.org:" H2
                                                                 ":::Alice Liddell:::admin\n");
    assert_int_equal(userfile_add(&fx->uf, "zed@example.net", H, "", false, &e), 0);
    testfs_assert_file(fx->users, L_HEAD L_ADMIN L_COMMENT L_BOB "\n" L_CAROL L_DAVE L_ERIN
                                                                 "\nalice@example.org:" H2
                                                                 ":::Alice Liddell:::admin\n"
                                                                 "zed@example.net:" H "::::::\n");
    reload(fx);
    const struct tables_user *u = tables_user(fx->c->tables, "alice@example.org");
    assert_non_null(u);
    assert_true(u->admin);
    assert_false(u->locked);
    assert_string_equal(u->name, "Alice Liddell");
    assert_string_equal(u->password, H2);
    assert_int_equal(passwd_verify(u->password, "secret", 6), 1);
    /* zed@example.net comes before the domain's catch-all */
    assert_non_null(tables_user(fx->c->tables, "zed@example.net"));
}

static void test_add_refused(void **state)
{
    struct fixture *fx = *state;
    struct userfile_err e;
    static const struct {
        const char *addr, *pw, *name;
        enum userfile_fail fail;
        const char *says;
    } cases[] = {
        {"admin@example.org", H, "", USERFILE_BAD, "already"},
        {"BOB@example.org", H, "", USERFILE_BAD, "already"},
        {"x@example.com", H, "", USERFILE_BAD, "not one of the local domains"},
        {"staff@example.org", H, "", USERFILE_BAD, "alias"},
        {"abuse@example.net", H, "", USERFILE_BAD, "alias"}, /* bare: every domain */
        {"postmaster@example.org", H, "", USERFILE_BAD, "alias"},
        {"no-at-sign", H, "", USERFILE_BAD, "not an address"},
        {"a@b@example.org", H, "", USERFILE_BAD, "not an address"},
        {".a@example.org", H, "", USERFILE_BAD, "not an address"},
        {"", H, "", USERFILE_BAD, "not an address"},
        {"new@example.org", H, "Evil:Name", USERFILE_BAD, "colon"},
        {"new@example.org", H, "Two\nLines", USERFILE_BAD, "control"},
        {"new@example.org", "{CRYPT}a:b", "", USERFILE_BAD, "colon"},
        {"new@example.org", "{CRYPT}a b", "", USERFILE_BAD, "blank"},
        {"new@example.org", "", "", USERFILE_BAD, "no password"},
        /* a hash the loader refuses would make the whole file refused */
        {"new@example.org", "{PLAIN}secret", "", USERFILE_INVALID, "{CRYPT}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r = userfile_add(&fx->uf, cases[i].addr, cases[i].pw, cases[i].name, false, &e);
        if (r != -1 || e.fail != cases[i].fail || !strstr(e.msg, cases[i].says))
            fail_msg("add %s: r=%d fail=%d msg=%s", cases[i].addr, r, (int)e.fail, e.msg);
        testfs_assert_file(fx->users, users_text);
    }
    /* the reason names the users file, not the temporary one */
    assert_int_equal(userfile_add(&fx->uf, "new@example.org", "{PLAIN}x", "", false, &e), -1);
    assert_non_null(strstr(e.msg, fx->users));
    assert_null(strstr(e.msg, "/.users."));
    char name[200];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_int_equal(userfile_add(&fx->uf, "new@example.org", H, name, false, &e), -1);
    assert_int_equal(e.fail, USERFILE_BAD);
    /* no temporary files left behind */
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "test -z \"$(ls -A '%s' | grep -v -x -e tern.conf -e users "
             "-e aliases -e users.lock)\"",
             fx->dir);
    assert_int_equal(system(cmd), 0);
}

static void test_set_password(void **state)
{
    struct fixture *fx = *state;
    struct userfile_err e;
    assert_int_equal(userfile_set_password(&fx->uf, "bob@EXAMPLE.org", H2, &e), 0);
    testfs_assert_file(fx->users, L_HEAD L_ADMIN L_COMMENT
                       "Bob@Example.org:" H2
                       ":1000:1000:Bob B:/home/bob:/bin/sh:moved=bob@elsewhere.com "
                       "quota_rule=*:storage=1G\n"
                       "\n" L_CAROL L_DAVE L_ERIN);
    /* CRLF stays */
    assert_int_equal(userfile_set_password(&fx->uf, "carol@example.net", H2, &e), 0);
    /* an empty password field gets one */
    assert_int_equal(userfile_set_password(&fx->uf, "dave@example.org", H2, &e), 0);
    testfs_assert_file(fx->users, L_HEAD L_ADMIN L_COMMENT
                       "Bob@Example.org:" H2
                       ":1000:1000:Bob B:/home/bob:/bin/sh:moved=bob@elsewhere.com "
                       "quota_rule=*:storage=1G\n"
                       "\ncarol@example.net:" H2 ":::Carol:::\r\n"
                       "dave@example.org:" H2 "\n" L_ERIN);
    assert_int_equal(userfile_set_password(&fx->uf, "nobody@example.org", H2, &e), -1);
    assert_int_equal(e.fail, USERFILE_NOUSER);
    /* "Example.org" has the domain, not this user: a prefix match would be wrong */
    assert_int_equal(userfile_set_password(&fx->uf, "bo@example.org", H2, &e), -1);
    assert_int_equal(e.fail, USERFILE_NOUSER);
    reload(fx);
    assert_string_equal(tables_user(fx->c->tables, "bob@example.org")->password, H2);
    assert_string_equal(tables_user(fx->c->tables, "bob@example.org")->moved, "bob@elsewhere.com");
}

static void test_delete(void **state)
{
    struct fixture *fx = *state;
    struct userfile_err e;
    assert_int_equal(userfile_delete(&fx->uf, "carol@example.net", &e), -1);
    /* carol is in staff and the catch-all: the aliases would point at nobody (or, through
     * the catch-all, back at themselves) */
    assert_int_equal(e.fail, USERFILE_INVALID);
    if (!strstr(e.msg, "would no longer load") || !strstr(e.msg, "/aliases:"))
        fail_msg("%s", e.msg);
    testfs_assert_file(fx->users, users_text);
    assert_int_equal(userfile_delete(&fx->uf, "admin@example.org", &e), -1);
    assert_int_equal(e.fail, USERFILE_INVALID);
    testfs_assert_file(fx->users, users_text);

    assert_int_equal(userfile_delete(&fx->uf, "dave@example.org", &e), 0);
    testfs_assert_file(fx->users, L_HEAD L_ADMIN L_COMMENT L_BOB "\n" L_CAROL L_ERIN);
    assert_int_equal(userfile_delete(&fx->uf, "erin@example.org", &e), 0);
    testfs_assert_file(fx->users, L_HEAD L_ADMIN L_COMMENT L_BOB "\n" L_CAROL);
    assert_int_equal(userfile_delete(&fx->uf, "bob@example.org", &e), 0);
    testfs_assert_file(fx->users, L_HEAD L_ADMIN L_COMMENT "\n" L_CAROL);
    assert_int_equal(userfile_delete(&fx->uf, "bob@example.org", &e), -1);
    assert_int_equal(e.fail, USERFILE_NOUSER);
    reload(fx);
    assert_int_equal(tables_nusers(fx->c->tables), 2);
}

static void test_lock_unlock(void **state)
{
    struct fixture *fx = *state;
    struct userfile_err e;
    bool changed = false;
    /* extra fields present: nologin joins them */
    assert_int_equal(userfile_lock(&fx->uf, "bob@example.org", &changed, &e), 0);
    assert_true(changed);
    /* extra fields empty, CRLF line, password field only, no line end */
    assert_int_equal(userfile_lock(&fx->uf, "admin@example.org", &changed, &e), 0);
    assert_int_equal(userfile_lock(&fx->uf, "carol@example.net", &changed, &e), 0);
    assert_int_equal(userfile_lock(&fx->uf, "dave@example.org", &changed, &e), 0);
    assert_int_equal(userfile_lock(&fx->uf, "erin@example.org", &changed, &e), 0);
    static const char locked[] =
        L_HEAD "admin@example.org:" H ":::Administrator:::nologin\n" L_COMMENT "Bob@Example.org:" H
               ":1000:1000:Bob B:/home/bob:/bin/sh:moved=bob@elsewhere.com "
               "quota_rule=*:storage=1G nologin\n"
               "\ncarol@example.net:" H ":::Carol:::nologin\r\n"
               "dave@example.org:::::::nologin\n"
               "erin@example.org:" H "::::::nologin";
    testfs_assert_file(fx->users, locked);
    reload(fx);
    for (size_t i = 0; i < tables_nusers(fx->c->tables); i++)
        assert_true(tables_user_at(fx->c->tables, i)->locked);
    /* again: nothing to do, the file is not rewritten */
    struct stat before, after;
    assert_int_equal(stat(fx->users, &before), 0);
    assert_int_equal(userfile_lock(&fx->uf, "bob@example.org", &changed, &e), 0);
    assert_false(changed);
    assert_int_equal(stat(fx->users, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    testfs_assert_file(fx->users, locked);

    const char *const all[] = {"bob@example.org", "admin@example.org", "carol@example.net",
                               "dave@example.org", "erin@example.org"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(userfile_unlock(&fx->uf, all[i], &changed, &e), 0);
        assert_true(changed);
    }
    /* back as it was, but for dave's colons */
    testfs_assert_file(fx->users, L_HEAD L_ADMIN L_COMMENT L_BOB
                       "\n" L_CAROL "dave@example.org:::::::\n" L_ERIN);
    assert_int_equal(userfile_unlock(&fx->uf, "bob@example.org", &changed, &e), 0);
    assert_false(changed);
    assert_int_equal(userfile_lock(&fx->uf, "nobody@example.org", &changed, &e), -1);
    assert_int_equal(e.fail, USERFILE_NOUSER);

    /* Dovecot's nologin=value and other fields: only nologin goes */
    testfs_put(fx->users,
               L_ADMIN L_CAROL "x@example.org:" H ":::::::a=1  NOLOGIN=y\tb=2 nologin\n");
    assert_int_equal(userfile_unlock(&fx->uf, "x@example.org", &changed, &e), 0);
    assert_true(changed);
    testfs_assert_file(fx->users, L_ADMIN L_CAROL "x@example.org:" H ":::::::a=1 b=2\n");
}

static void test_mode_and_owner(void **state)
{
    struct fixture *fx = *state;
    struct userfile_err e;
    assert_int_equal(chmod(fx->users, 0604), 0);
    bool root = geteuid() == 0;
    if (root)
        assert_int_equal(chown(fx->users, 1234, 5678), 0);
    assert_int_equal(userfile_add(&fx->uf, "new@example.org", H, "", false, &e), 0);
    struct stat st;
    assert_int_equal(stat(fx->users, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0604);
    if (root) {
        assert_int_equal(st.st_uid, 1234);
        assert_int_equal(st.st_gid, 5678);
    }
}

static void test_symlink(void **state)
{
    struct fixture *fx = *state;
    struct userfile_err e;
    char real[160];
    snprintf(real, sizeof(real), "%s/users.real", fx->dir);
    assert_int_equal(rename(fx->users, real), 0);
    assert_int_equal(symlink("users.real", fx->users), 0);
    assert_int_equal(userfile_add(&fx->uf, "new@example.org", H, "", false, &e), 0);
    struct stat st;
    assert_int_equal(lstat(fx->users, &st), 0);
    assert_true(S_ISLNK(st.st_mode)); /* the link stays; its target changed */
    char *got = testfs_get(real, NULL);
    assert_non_null(strstr(got, "new@example.org:"));
    free(got);
}

#define NPROC 4
#define NADD 10

static void test_concurrent(void **state)
{
    struct fixture *fx = *state;
    pid_t pids[NPROC];
    for (int p = 0; p < NPROC; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            int bad = 0;
            for (int i = 0; i < NADD; i++) {
                char addr[64];
                struct userfile_err e;
                snprintf(addr, sizeof(addr), "p%d-u%d@example.org", p, i);
                if (userfile_add(&fx->uf, addr, H, "", false, &e) < 0) {
                    fprintf(stderr, "%s: %s\n", addr, e.msg);
                    bad++;
                }
            }
            _exit(bad ? 1 : 0);
        }
    }
    for (int p = 0; p < NPROC; p++) {
        int status;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    reload(fx);
    assert_int_equal(tables_nusers(fx->c->tables), 5 + NPROC * NADD);
    for (int p = 0; p < NPROC; p++)
        for (int i = 0; i < NADD; i++) {
            char addr[64];
            snprintf(addr, sizeof(addr), "p%d-u%d@example.org", p, i);
            assert_non_null(tables_user(fx->c->tables, addr));
        }
    /* and the lines that were there are there, unchanged, first */
    char *got = testfs_get(fx->users, NULL);
    assert_memory_equal(got, users_text, strlen(users_text));
    free(got);
}

static void test_lock_timeout(void **state)
{
    struct fixture *fx = *state;
    struct userfile_err e;
    char lock[160];
    snprintf(lock, sizeof(lock), "%s.lock", fx->users);
    int fd = open(lock, O_RDONLY | O_CREAT, 0640);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    fx->uf.lock_timeout_ms = 200;
    assert_int_equal(userfile_add(&fx->uf, "new@example.org", H, "", false, &e), -1);
    assert_int_equal(e.fail, USERFILE_LOCKED);
    assert_non_null(strstr(e.msg, "users.lock"));
    testfs_assert_file(fx->users, users_text);
    close(fd);
    assert_int_equal(userfile_add(&fx->uf, "new@example.org", H, "", false, &e), 0);
}

static void test_list(void **state)
{
    struct fixture *fx = *state;
    struct userfile_err e;
    bool changed;
    assert_int_equal(userfile_lock(&fx->uf, "dave@example.org", &changed, &e), 0);
    struct tables_user *u;
    size_t n;
    assert_int_equal(userfile_list(&fx->uf, &u, &n, &e), 0);
    assert_int_equal(n, 5);
    assert_string_equal(u[0].addr, "admin@example.org");
    assert_string_equal(u[0].name, "Administrator");
    assert_string_equal(u[1].addr, "bob@example.org");
    assert_string_equal(u[1].moved, "bob@elsewhere.com");
    assert_string_equal(u[3].addr, "dave@example.org");
    assert_true(u[3].locked);
    assert_string_equal(u[3].password, "");
    free(u);
}

/* A {SCRAM-SHA-256} entry goes in, loads, and verifies. */
static void test_add_scram(void **state)
{
    struct fixture *fx = *state;
    struct userfile_err e;
    char h[256], err[256];
    assert_int_equal(passwd_hash_scram("pencil", 6, 4096, h, sizeof(h), err, sizeof(err)), 0);
    int r = userfile_add(&fx->uf, "scram@example.org", h, "", false, &e);
    if (r != 0)
        fail_msg("%s", e.msg);
    reload(fx);
    const struct tables_user *u = tables_user(fx->c->tables, "scram@example.org");
    assert_non_null(u);
    assert_int_equal(passwd_verify(u->password, "pencil", 6), 1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_add),          T(test_add_refused),    T(test_set_password), T(test_delete),
        T(test_lock_unlock),  T(test_mode_and_owner), T(test_symlink),      T(test_concurrent),
        T(test_lock_timeout), T(test_list),           T(test_add_scram),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

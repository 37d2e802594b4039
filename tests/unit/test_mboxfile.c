/* Unit tests for src/conf/mboxfile.c (and mboxline.c): add, delete, add and remove members, set
 * and remove quotas on a mailboxes file in a fresh folder with a minimal tern.conf; every other
 * line kept byte for byte (comments, CRLF, indentation, a comment after the members); the file
 * made when missing (mode 0640); refusals and edits that would not load leave the file alone;
 * a held lock times out; and the users file cannot lose a shared mailbox's only member. */
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
#include <unistd.h>

#include "auth/userfile.h"
#include "conf/config.h"
#include "conf/mboxfile.h"

static const char conf_text[] = "[server]\n"
                                "hostname = mail.example.org\n"
                                "data_dir = .\n"
                                "domains = example.org, example.net\n"
                                "[listen]\n"
                                "smtp = 127.0.0.1:2525\n";

static const char users_text[] = "admin@example.org:{CRYPT}$1$x$y:::Admin:::\n"
                                 "alice@example.org:{CRYPT}$1$x$y:::Alice:::\n"
                                 "bob@example.org:{CRYPT}$1$x$y:::Bob:::\n"
                                 "carol@example.net:{CRYPT}$1$x$y:::Carol:::\n";

static const char aliases_text[] = "postmaster: admin@example.org\n"
                                   "devs@example.org: alice, bob\n";

#define M_HEAD "# shared mailboxes\n"
#define M_SALES "  sales@example.org:alice,bob@example.org   # the sales team\r\n"
#define M_COMMENT "#team@example.org: nobody\n"
#define M_OPS "ops@example.net: quota=1M carol@example.net" /* no line end at the end */

static const char mailboxes_text[] = M_HEAD M_SALES "\n" M_COMMENT M_OPS;

struct fixture {
    char dir[64];
    char conf[128];
    char mailboxes[128];
    struct conf *c;
    struct mboxfile mf;
};

/* Loads the configuration again, as ternd would; the fixture's mf follows it. */
static void reload(struct fixture *fx)
{
    char err[8192] = "";
    if (fx->c)
        conf_unref(fx->c);
    fx->c = conf_load(fx->conf, err, sizeof(err));
    if (!fx->c)
        fail_msg("conf_load: %s", err);
    mboxfile_from_conf(&fx->mf, fx->c);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    testfs_make_dir(fx->dir, sizeof(fx->dir), "/tmp/tern-mboxfile-XXXXXX", "tern.conf", conf_text,
                    "users", users_text, "aliases", aliases_text, "mailboxes", mailboxes_text,
                    (const char *)NULL);
    testfs_path(fx->conf, sizeof(fx->conf), fx->dir, "tern.conf");
    testfs_path(fx->mailboxes, sizeof(fx->mailboxes), fx->dir, "mailboxes");
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
    struct mboxfile_err e;
    const char *m[] = {"Alice", "devs", "carol@example.net", "alice@example.org"};
    assert_int_equal(mboxfile_add(&fx->mf, "Team@Example.ORG", m, 4, 500ull << 20, &e), 0);
    /* the old last line gets its line end; nothing else changes; members as written, lowercased,
     * once each (alice@example.org is alice) */
    testfs_assert_file(fx->mailboxes, M_HEAD M_SALES
                       "\n" M_COMMENT M_OPS
                       "\nteam@example.org: alice, devs, carol@example.net quota=500M\n");
    reload(fx);
    const struct tables_user *u = tables_user(fx->c->tables, "team@example.org");
    assert_non_null(u);
    assert_true(u->shared);
    assert_int_equal(u->quota, 500ull << 20);
    assert_true(tables_is_member(fx->c->tables, "team@example.org", "bob@example.org"));
    assert_true(tables_is_member(fx->c->tables, "team@example.org", "carol@example.net"));
    assert_false(tables_is_member(fx->c->tables, "team@example.org", "admin@example.org"));
    /* a bare member is taken in the mailbox's domain: admin@example.net is nobody */
    const char *m2[] = {"admin"};
    assert_int_equal(mboxfile_add(&fx->mf, "help@example.net", m2, 1, 0, &e), -1);
    assert_int_equal(e.fail, MBOXFILE_INVALID);
    assert_non_null(strstr(e.msg, "admin@example.net"));
}

static void test_add_refused(void **state)
{
    struct fixture *fx = *state;
    struct mboxfile_err e;
    static const struct {
        const char *addr, *member;
        enum mboxfile_fail fail;
        const char *says;
    } cases[] = {
        {"sales@example.org", "alice", MBOXFILE_BAD, "already"},
        {"SALES@example.org", "alice", MBOXFILE_BAD, "already"},
        {"alice@example.org", "bob", MBOXFILE_BAD, "is a user"},
        {"devs@example.org", "bob", MBOXFILE_BAD, "alias"},
        {"postmaster@example.net", "bob", MBOXFILE_BAD, "alias"}, /* bare: every domain */
        {"team@example.com", "bob", MBOXFILE_BAD, "not one of the local domains"},
        {"no-at-sign", "bob", MBOXFILE_BAD, "not an address"},
        {"a@b@example.org", "bob", MBOXFILE_BAD, "not an address"},
        {"#team@example.org", "bob", MBOXFILE_BAD, "not an address"},
        {"team@example.org", "quota=5M", MBOXFILE_BAD, "not valid"},
        {"team@example.org", "#x", MBOXFILE_BAD, "not valid"},
        {"team@example.org", "a b", MBOXFILE_BAD, "not valid"},
        {"team@example.org", "x@y@z", MBOXFILE_BAD, "not valid"},
        /* what only loading tells: the member is nobody, or itself a shared mailbox */
        {"team@example.org", "ghost", MBOXFILE_INVALID, "ghost@example.org is not a local user"},
        {"team@example.org", "sales", MBOXFILE_INVALID, "itself a shared mailbox"},
        {"team@example.org", "team", MBOXFILE_INVALID, "team@example.org"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *m[] = {cases[i].member};
        int r = mboxfile_add(&fx->mf, cases[i].addr, m, 1, 0, &e);
        if (r != -1 || e.fail != cases[i].fail || !strstr(e.msg, cases[i].says))
            fail_msg("add %s %s: r=%d fail=%d msg=%s", cases[i].addr, cases[i].member, r,
                     (int)e.fail, e.msg);
        testfs_assert_file(fx->mailboxes, mailboxes_text);
    }
    /* the reason names the mailboxes file and its line, not the temporary file */
    const char *m[] = {"ghost"};
    assert_int_equal(mboxfile_add(&fx->mf, "team@example.org", m, 1, 0, &e), -1);
    char where[160];
    snprintf(where, sizeof(where), "%s:6:", fx->mailboxes);
    assert_non_null(strstr(e.msg, where));
    assert_null(strstr(e.msg, "/.mailboxes."));
    assert_int_equal(mboxfile_add(&fx->mf, "team@example.org", m, 0, 0, &e), -1);
    assert_int_equal(e.fail, MBOXFILE_BAD);
    /* no temporary files left behind */
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "test -z \"$(ls -A '%s' | grep -v -x -e tern.conf -e users -e aliases -e mailboxes "
             "-e mailboxes.lock)\"",
             fx->dir);
    assert_int_equal(system(cmd), 0);
}

static void test_create(void **state)
{
    struct fixture *fx = *state;
    struct mboxfile_err e;
    assert_int_equal(unlink(fx->mailboxes), 0);
    reload(fx); /* the file is optional */
    assert_int_equal(tables_nshared(fx->c->tables), 0);
    const char *m[] = {"alice"};
    assert_int_equal(mboxfile_delete(&fx->mf, "sales@example.org", &e), -1);
    assert_int_equal(e.fail, MBOXFILE_NOBOX);
    assert_int_equal(access(fx->mailboxes, F_OK), -1);
    umask(077); /* the mode is the file's own, whatever the umask */
    assert_int_equal(mboxfile_add(&fx->mf, "sales@example.org", m, 1, 0, &e), 0);
    umask(022);
    testfs_assert_file(fx->mailboxes, MBOXFILE_HEADER "sales@example.org: alice\n");
    struct stat st;
    assert_int_equal(stat(fx->mailboxes, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    reload(fx);
    assert_true(tables_is_shared(fx->c->tables, "sales@example.org"));
}

static void test_delete(void **state)
{
    struct fixture *fx = *state;
    struct mboxfile_err e;
    assert_int_equal(mboxfile_delete(&fx->mf, "Sales@example.org", &e), 0);
    testfs_assert_file(fx->mailboxes, M_HEAD "\n" M_COMMENT M_OPS);
    /* a commented-out line is no mailbox */
    assert_int_equal(mboxfile_delete(&fx->mf, "team@example.org", &e), -1);
    assert_int_equal(e.fail, MBOXFILE_NOBOX);
    assert_int_equal(mboxfile_delete(&fx->mf, "alice@example.org", &e), -1);
    assert_int_equal(e.fail, MBOXFILE_NOBOX);
    assert_int_equal(mboxfile_delete(&fx->mf, "ops@example.net", &e), 0);
    testfs_assert_file(fx->mailboxes, M_HEAD "\n" M_COMMENT);
    reload(fx);
    assert_int_equal(tables_nshared(fx->c->tables), 0);
}

static void test_members(void **state)
{
    struct fixture *fx = *state;
    struct mboxfile_err e;
    bool changed = false;
    const char *add[] = {"admin", "ALICE", "admin@example.org"};
    assert_int_equal(mboxfile_add_members(&fx->mf, "sales@example.org", add, 3, &changed, &e), 0);
    assert_true(changed);
    /* indentation, the comment after the members and the CRLF stay */
    static const char after_add[] =
        M_HEAD "  sales@example.org:alice,bob@example.org, admin   # the sales team\r\n"
               "\n" M_COMMENT M_OPS;
    testfs_assert_file(fx->mailboxes, after_add);
    assert_int_equal(mboxfile_add_members(&fx->mf, "sales@example.org", add, 2, &changed, &e), 0);
    assert_false(changed);
    testfs_assert_file(fx->mailboxes, after_add);
    const char *ghost[] = {"ghost"};
    assert_int_equal(mboxfile_add_members(&fx->mf, "sales@example.org", ghost, 1, &changed, &e),
                     -1);
    assert_int_equal(e.fail, MBOXFILE_INVALID);
    testfs_assert_file(fx->mailboxes, after_add);

    const char *del[] = {"bob", "Admin@Example.org"};
    assert_int_equal(mboxfile_del_members(&fx->mf, "sales@example.org", del, 2, &e), 0);
    testfs_assert_file(fx->mailboxes,
                       M_HEAD "  sales@example.org:alice   # the sales team\r\n\n" M_COMMENT M_OPS);
    const char *last[] = {"alice"};
    assert_int_equal(mboxfile_del_members(&fx->mf, "sales@example.org", last, 1, &e), -1);
    assert_int_equal(e.fail, MBOXFILE_BAD);
    assert_non_null(strstr(e.msg, "tern mailbox del sales@example.org"));
    const char *notone[] = {"bob"};
    assert_int_equal(mboxfile_del_members(&fx->mf, "sales@example.org", notone, 1, &e), -1);
    assert_int_equal(e.fail, MBOXFILE_BAD);
    assert_non_null(strstr(e.msg, "not a member"));
    assert_int_equal(mboxfile_del_members(&fx->mf, "nobox@example.org", notone, 1, &e), -1);
    assert_int_equal(e.fail, MBOXFILE_NOBOX);
    testfs_assert_file(fx->mailboxes,
                       M_HEAD "  sales@example.org:alice   # the sales team\r\n\n" M_COMMENT M_OPS);

    /* the quota word stays, after the members */
    const char *dave[] = {"alice@example.org"};
    assert_int_equal(mboxfile_add_members(&fx->mf, "ops@example.net", dave, 1, &changed, &e), 0);
    testfs_assert_file(fx->mailboxes,
                       M_HEAD "  sales@example.org:alice   # the sales team\r\n\n" M_COMMENT
                              "ops@example.net: quota=1M carol@example.net, alice@example.org");
    reload(fx);
    assert_int_equal(tables_user(fx->c->tables, "ops@example.net")->quota, 1 << 20);
    assert_true(tables_is_member(fx->c->tables, "ops@example.net", "alice@example.org"));
}

static void test_quota(void **state)
{
    struct fixture *fx = *state;
    struct mboxfile_err e;
    bool changed = false;
    assert_int_equal(mboxfile_set_quota(&fx->mf, "sales@example.org", 3ull << 30, &changed, &e), 0);
    assert_true(changed);
    testfs_assert_file(fx->mailboxes,
                       M_HEAD "  sales@example.org:alice,bob@example.org quota=3G   # "
                              "the sales team\r\n\n" M_COMMENT M_OPS);
    assert_int_equal(mboxfile_set_quota(&fx->mf, "sales@example.org", 3ull << 30, &changed, &e), 0);
    assert_false(changed);
    assert_int_equal(mboxfile_set_quota(&fx->mf, "sales@example.org", 0, &changed, &e), 0);
    assert_true(changed);
    testfs_assert_file(fx->mailboxes, mailboxes_text);
    assert_int_equal(mboxfile_set_quota(&fx->mf, "sales@example.org", 0, &changed, &e), 0);
    assert_false(changed);
    assert_int_equal(mboxfile_set_quota(&fx->mf, "ops@example.net", 1500, &changed, &e), 0);
    testfs_assert_file(fx->mailboxes, M_HEAD M_SALES "\n" M_COMMENT "ops@example.net: quota=1500 "
                                                     "carol@example.net");
    reload(fx);
    assert_int_equal(tables_user(fx->c->tables, "ops@example.net")->quota, 1500);
    assert_int_equal(mboxfile_set_quota(&fx->mf, "bob@example.org", 5, &changed, &e), -1);
    assert_int_equal(e.fail, MBOXFILE_NOBOX);

    char size[32];
    mboxfile_format_size(500ull << 20, size, sizeof(size));
    assert_string_equal(size, "500M");
    mboxfile_format_size(1025, size, sizeof(size));
    assert_string_equal(size, "1025");
    mboxfile_format_size(2048, size, sizeof(size));
    assert_string_equal(size, "2K");
}

static void test_lock_timeout(void **state)
{
    struct fixture *fx = *state;
    struct mboxfile_err e;
    char lock[160];
    snprintf(lock, sizeof(lock), "%s.lock", fx->mailboxes);
    int fd = open(lock, O_RDONLY | O_CREAT, 0640);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0); /* another open file: a conflict even here */
    fx->mf.lock_timeout_ms = 200;
    const char *m[] = {"alice"};
    assert_int_equal(mboxfile_add(&fx->mf, "team@example.org", m, 1, 0, &e), -1);
    assert_int_equal(e.fail, MBOXFILE_LOCKED);
    assert_non_null(strstr(e.msg, "mailboxes.lock"));
    testfs_assert_file(fx->mailboxes, mailboxes_text);
    close(fd); /* released: the next edit goes through */
    assert_int_equal(mboxfile_add(&fx->mf, "team@example.org", m, 1, 0, &e), 0);
}

/* The users file side: a user who is a shared mailbox's only member cannot go. */
static void test_user_del_refused(void **state)
{
    struct fixture *fx = *state;
    struct userfile uf;
    struct userfile_err ue;
    userfile_from_conf(&uf, fx->c);
    assert_string_equal(uf.mailboxes_path, fx->c->mailboxes_file);
    char users[160];
    snprintf(users, sizeof(users), "%s/users", fx->dir);
    assert_int_equal(userfile_delete(&uf, "carol@example.net", &ue), -1);
    assert_int_equal(ue.fail, USERFILE_INVALID);
    assert_non_null(strstr(ue.msg, "ops@example.net"));
    assert_non_null(strstr(ue.msg, "mailboxes:5"));
    testfs_assert_file(users, users_text);
    /* sales names bob directly: that member would be nobody */
    assert_int_equal(userfile_delete(&uf, "bob@example.org", &ue), -1);
    assert_non_null(strstr(ue.msg, "sales@example.org"));
    testfs_assert_file(users, users_text);
    struct mboxfile_err e;
    assert_int_equal(mboxfile_delete(&fx->mf, "ops@example.net", &e), 0);
    assert_int_equal(userfile_delete(&uf, "carol@example.net", &ue), 0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_add),     T(test_add_refused), T(test_create),       T(test_delete),
        T(test_members), T(test_quota),       T(test_lock_timeout), T(test_user_del_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

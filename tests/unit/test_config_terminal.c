/* Unit tests of what the configuration says about terminals: [terminal] allow and max_size
 * (defaults, every value, errors with their lines), the uid field of the users file (a number
 * maps a Unix user, anything else maps nobody), and conf_peek_data_dir, which `tern watch`
 * uses to find the watch socket without reading the rest. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf/config.h"

struct fx {
    char dir[256];
    char conf[300];
    char err[8192];
};

static const char base[] = "[server]\n"
                           "domains = example.org\n"
                           "[listen]\n"
                           "smtp = 127.0.0.1:2525\n";

static void put(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char tmpl[] = "/tmp/tern-test-term.XXXXXX";
    assert_non_null(f);
    assert_non_null(mkdtemp(tmpl));
    char real[PATH_MAX];
    assert_non_null(realpath(tmpl, real));
    assert_true(strlen(real) < sizeof(f->dir));
    strcpy(f->dir, real);
    snprintf(f->conf, sizeof(f->conf), "%s/tern.conf", f->dir);
    put(f->dir, "aliases", "postmaster: alice@example.org\n");
    *state = f;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static struct conf *load(struct fx *f, const char *extra, const char *users)
{
    char text[2048];
    snprintf(text, sizeof(text), "%s%s", base, extra);
    put(f->dir, "tern.conf", text);
    put(f->dir, "users", users ? users : "alice@example.org:{CRYPT}$y$j9T$s$h:::Alice:::\n");
    return conf_load(f->conf, f->err, sizeof(f->err));
}

static void test_terminal_keys(void **state)
{
    struct fx *f = *state;
    struct conf *c = load(f, "", NULL);
    assert_non_null(c);
    assert_int_equal(c->terminal_allow, TERMINAL_ALLOW_ALL);
    assert_int_equal(c->terminal_max_size, 64 * 1024);
    conf_unref(c);
    static const struct {
        const char *v;
        enum conf_terminal_allow a;
    } allow[] = {{"all", TERMINAL_ALLOW_ALL},
                 {"Authenticated", TERMINAL_ALLOW_AUTHENTICATED},
                 {"none", TERMINAL_ALLOW_NONE}};
    for (size_t i = 0; i < 3; i++) {
        char extra[128];
        snprintf(extra, sizeof(extra), "[terminal]\nallow = %s\nmax_size = 1M\n", allow[i].v);
        c = load(f, extra, NULL);
        assert_non_null(c);
        assert_int_equal(c->terminal_allow, allow[i].a);
        assert_int_equal(c->terminal_max_size, 1 << 20);
        conf_unref(c);
    }
    c = load(f, "[terminal]\nallow = some\nmax_size = 2M\nmax_size = 1K\nwatchers = 3\n", NULL);
    assert_null(c);
    char want[512];
    snprintf(want, sizeof(want),
             "%s:6: allow = some: not a choice; write all, authenticated or "
             "none\n",
             f->conf);
    assert_non_null(strstr(f->err, want));
    snprintf(want, sizeof(want), "%s:7: max_size = 2M: more than the maximum of 1024K; lower it\n",
             f->conf);
    assert_non_null(strstr(f->err, want));
    snprintf(want, sizeof(want), "%s:8: max_size is already set on line 7", f->conf);
    assert_non_null(strstr(f->err, want));
    snprintf(want, sizeof(want),
             "%s:9: unknown key 'watchers' in [terminal]; valid keys there "
             "are allow, max_size\n",
             f->conf);
    assert_non_null(strstr(f->err, want));
}

static void test_uid_field(void **state)
{
    struct fx *f = *state;
    struct conf *c = load(f, "",
                          "alice@example.org:{CRYPT}$y$j9T$s$h:1000:1000:Alice:::\n"
                          "bob@example.org:{CRYPT}$y$j9T$s$h:bob:100:Bob:::\n"
                          "carol@example.org:{CRYPT}$y$j9T$s$h:::Carol:::\n"
                          "dan@example.org:{CRYPT}$y$j9T$s$h:0::Dan:::\n"
                          "erin@example.org:{CRYPT}$y$j9T$s$h:4294967295::Erin:::\n"
                          "fay@example.org:{CRYPT}$y$j9T$s$h:99999999999999999999::Fay:::\n"
                          "gus@example.org:{CRYPT}$y$j9T$s$h:12x::Gus:::\n"
                          "hal@example.org:{CRYPT}$y$j9T$s$h\n");
    if (!c)
        fail_msg("%s", f->err);
    static const struct {
        const char *addr;
        bool has;
        unsigned long uid;
    } want[] = {
        {"alice@example.org", true, 1000}, {"bob@example.org", false, 0}, /* a name */
        {"carol@example.org", false, 0},   {"dan@example.org", true, 0},  /* root */
        {"erin@example.org", false, 0},    {"fay@example.org", false, 0}, /* (uid_t)-1, huge */
        {"gus@example.org", false, 0},     {"hal@example.org", false, 0}, /* junk, absent */
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct tables_user *u = tables_user(c->tables, want[i].addr);
        assert_non_null(u);
        assert_int_equal(u->has_uid, want[i].has);
        if (want[i].has)
            assert_int_equal(u->uid, want[i].uid);
    }
    conf_unref(c);
}

static void test_peek_data_dir(void **state)
{
    struct fx *f = *state;
    char out[PATH_MAX], err[512], want[PATH_MAX];
    put(f->dir, "tern.conf",
        "[server]\ndata_dir = var\nusers = /nonexistent\n[tls]\n"
        "key = /unreadable\n");
    assert_int_equal(conf_peek_data_dir(f->conf, out, sizeof(out), err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "%s/var", f->dir);
    assert_string_equal(out, want);
    put(f->dir, "tern.conf", "[listen]\nsmtp = 1\n");
    assert_int_equal(conf_peek_data_dir(f->conf, out, sizeof(out), err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "%s/.", f->dir);
    assert_string_equal(out, want);
    put(f->dir, "tern.conf", "[server]\ndata_dir = /srv/tern\n");
    assert_int_equal(conf_peek_data_dir(f->conf, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "/srv/tern");
    assert_int_equal(
        conf_peek_data_dir("/nonexistent/tern.conf", out, sizeof(out), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot read /nonexistent/tern.conf"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_terminal_keys),
        T(test_uid_field),
        T(test_peek_data_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

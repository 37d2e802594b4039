/* Unit tests for src/conf/: tern.conf values and defaults, the users and aliases files, that
 * every error comes out as FILE:LINE with all of them reported, the deny list, and sizes. Each
 * test writes its files into a fresh mkdtemp folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/config.h"

struct fx {
    char dir[256]; /* a short mkdtemp path: keeps every derived string well inside its buffer */
    char conf[300];
    char users[300];
    char aliases[300];
    char err[16384];
};

static const char users_ok[] =
    "# users\n"
    "admin@example.org:{CRYPT}$y$j9T$salt$hash:::Administrator:::\n"
    "\n"
    "Bob@Example.NET:{CRYPT}$y$j9T$s$h:1000:1000:Bob Builder:/home/bob:/bin/sh:userdb_x=1 "
    "moved=Bob@New.example\n"
    "carol@example.org:\n";

static const char aliases_ok[] = "# aliases\n"
                                 "postmaster: admin\n"
                                 "abuse: admin@example.org\n"
                                 "staff@example.org: admin, carol  # the team\n";

static const char minimal[] = "[server]\n"
                              "domains = example.org, example.net\n"
                              "[listen]\n"
                              "smtp = 127.0.0.1:2525\n";

static void put(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char tmpl[] = "/tmp/tern-test-config.XXXXXX";
    assert_non_null(f);
    assert_non_null(mkdtemp(tmpl));
    char real[PATH_MAX];
    assert_non_null(realpath(tmpl, real)); /* conf_load resolves data_dir the same way */
    assert_true(strlen(real) < sizeof(f->dir));
    strcpy(f->dir, real);
    snprintf(f->conf, sizeof(f->conf), "%s/tern.conf", f->dir);
    snprintf(f->users, sizeof(f->users), "%s/users", f->dir);
    snprintf(f->aliases, sizeof(f->aliases), "%s/aliases", f->dir);
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

/* Writes the three files (NULL: not written) and loads. */
static struct conf *load(struct fx *f, const char *conf, const char *users, const char *aliases)
{
    if (conf)
        put(f->dir, "tern.conf", conf);
    if (users)
        put(f->dir, "users", users);
    if (aliases)
        put(f->dir, "aliases", aliases);
    memset(f->err, 'Z', sizeof(f->err));
    return conf_load(f->conf, f->err, sizeof(f->err));
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* err holds the line "FILE:LINE: text" exactly. */
static void assert_error(const char *err, const char *file, int line, const char *text)
{
    char want[4096];
    snprintf(want, sizeof(want), "%s:%d: %s\n", file, line, text);
    for (const char *s = err; *s; s = strchr(s, '\n') + 1)
        if (strncmp(s, want, strlen(want)) == 0)
            return;
    fail_msg("missing error line:\n  %s in:\n%s", want, err);
}

static void test_full_config(void **state)
{
    struct fx *f = *state;
    static const char conf[] =
        "# tern.conf\n"
        "[server]\n"
        "hostname = Mail.Example.org     ; default: gethostname()\n"
        "data_dir = .                    ; relative to this file's folder\n"
        "user = mailer\n"
        "users = users\n"
        "aliases = aliases\n"
        "domains = example.org, Example.NET   ; comma and/or space separated\n"
        "workers = 8\n"
        "\n"
        "[listen]\n"
        "smtp = 127.0.0.1:2525           ; may repeat\n"
        "smtp = [::1]:2525\n"
        "submission = 127.0.0.1:2587\n"
        "submission = [0:0::0]:2465\n"
        "\n"
        "[limits]\n"
        "message_size = 10M\n"
        "recipients = 50\n"
        "connections = 200\n"
        "connections_per_ip = 5\n"
        "bad_commands = 3\n"
        "junk_commands = 99\n"
        "command_timeout = 5m\n"
        "data_timeout = 1h\n"
        "shutdown_timeout = 0\n"
        "min_free_space = 0\n"
        "\n"
        "[policy]\n"
        "deny = 192.0.2.0/24, 2001:db8::/32   ; may repeat\n"
        "deny = 198.51.100.7 10.9.8.7/8\n"
        "vrfy = none\n"
        "expn = ALL\n";
    struct conf *c = load(f, conf, users_ok, aliases_ok);
    if (!c)
        fail_msg("%s", f->err);
    assert_string_equal(f->err, "");
    assert_int_equal(c->refs, 1);
    assert_string_equal(c->path, f->conf);
    assert_string_equal(c->hostname, "mail.example.org");
    assert_string_equal(c->data_dir, f->dir);
    assert_string_equal(c->user, "mailer");
    assert_string_equal(c->users_file, f->users);
    assert_string_equal(c->aliases_file, f->aliases);
    assert_int_equal(c->workers, 8);

    assert_int_equal(c->nlisteners, 4);
    assert_int_equal(c->listeners[0].kind, LISTEN_SMTP);
    assert_string_equal(c->listeners[0].host, "127.0.0.1");
    assert_int_equal(c->listeners[0].port, 2525);
    assert_int_equal(c->listeners[1].kind, LISTEN_SMTP);
    assert_string_equal(c->listeners[1].host, "::1");
    assert_int_equal(c->listeners[1].port, 2525);
    assert_int_equal(c->listeners[2].kind, LISTEN_SUBMISSION);
    assert_int_equal(c->listeners[2].port, 2587);
    assert_int_equal(c->listeners[3].kind, LISTEN_SUBMISSION);
    assert_string_equal(c->listeners[3].host, "::"); /* written back in canonical form */
    assert_int_equal(c->listeners[3].port, 2465);

    assert_int_equal(c->message_size, 10 * 1024 * 1024);
    assert_int_equal(c->recipients, 50);
    assert_int_equal(c->connections, 200);
    assert_int_equal(c->connections_per_ip, 5);
    assert_int_equal(c->bad_commands, 3);
    assert_int_equal(c->junk_commands, 99);
    assert_int_equal(c->command_timeout, 300);
    assert_int_equal(c->data_timeout, 3600);
    assert_int_equal(c->shutdown_timeout, 0);
    assert_int_equal(c->min_free_space, 0);

    assert_int_equal(c->ndeny, 4);
    assert_int_equal(c->deny[0].family, AF_INET);
    assert_int_equal(c->deny[0].prefix, 24);
    assert_memory_equal(c->deny[0].addr, "\xc0\x00\x02\x00", 4);
    assert_int_equal(c->deny[1].family, AF_INET6);
    assert_int_equal(c->deny[1].prefix, 32);
    assert_memory_equal(c->deny[1].addr, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    assert_int_equal(c->deny[2].prefix, 32);
    assert_int_equal(c->deny[3].prefix, 8);
    assert_memory_equal(c->deny[3].addr, "\x0a\x00\x00\x00", 4); /* host bits cleared */
    assert_int_equal(c->vrfy, DISCLOSE_NONE);
    assert_int_equal(c->expn, DISCLOSE_ALL);

    const struct tables *t = c->tables;
    assert_int_equal(tables_ndomains(t), 2);
    assert_string_equal(tables_domain(t, 0), "example.org");
    assert_string_equal(tables_domain(t, 1), "example.net");
    assert_int_equal(tables_nusers(t), 3);
    assert_int_equal(tables_naliases(t), 3);
    const struct tables_user *u = tables_user(t, "admin@example.org");
    assert_non_null(u);
    assert_string_equal(u->password, "{CRYPT}$y$j9T$salt$hash");
    assert_string_equal(u->name, "Administrator");
    assert_string_equal(u->moved, "");
    u = tables_user(t, "bob@example.net");
    assert_non_null(u);
    assert_string_equal(u->addr, "bob@example.net");
    assert_string_equal(u->name, "Bob Builder");
    assert_string_equal(u->moved, "bob@new.example");
    u = tables_user(t, "carol@example.org");
    assert_non_null(u);
    assert_string_equal(u->password, "");
    assert_string_equal(u->name, "");
    const char *m[4];
    assert_int_equal(tables_expn(t, "staff@example.org", m, 4), 2);
    assert_string_equal(m[0], "admin@example.org");
    assert_string_equal(m[1], "carol@example.org");
    conf_unref(c);
}

static void test_defaults(void **state)
{
    struct fx *f = *state;
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    for (char *p = host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p + 32);
    if (!conf_valid_domain(host))
        skip(); /* this machine's name cannot be the default: nothing to compare */
    struct conf *c = load(f, minimal, users_ok, aliases_ok);
    if (!c)
        fail_msg("%s", f->err);
    assert_string_equal(c->hostname, host);
    assert_string_equal(c->data_dir, f->dir);
    assert_string_equal(c->user, "tern");
    assert_string_equal(c->users_file, f->users);
    assert_string_equal(c->aliases_file, f->aliases);
    assert_int_equal(c->workers, 4);
    assert_int_equal(c->nlisteners, 1);
    assert_int_equal(c->message_size, 25 * 1024 * 1024);
    assert_int_equal(c->recipients, 100);
    assert_int_equal(c->connections, 1000);
    assert_int_equal(c->connections_per_ip, 50);
    assert_int_equal(c->bad_commands, 20);
    assert_int_equal(c->junk_commands, 1000);
    assert_int_equal(c->command_timeout, 300);
    assert_int_equal(c->data_timeout, 600);
    assert_int_equal(c->shutdown_timeout, 30);
    assert_int_equal(c->min_free_space, 100 * 1024 * 1024);
    assert_int_equal(c->ndeny, 0);
    assert_int_equal(c->vrfy, DISCLOSE_AUTHENTICATED);
    assert_int_equal(c->expn, DISCLOSE_AUTHENTICATED);
    assert_ptr_equal(conf_ref(c), c);
    assert_int_equal(c->refs, 2);
    conf_unref(c);
    assert_int_equal(c->refs, 1);
    conf_unref(c);
}

/* data_dir is relative to the file's folder; users and aliases to data_dir. CRLF, a BOM and
 * indented lines are all fine. */
static void test_paths_and_line_forms(void **state)
{
    struct fx *f = *state;
    char data[300], sub[300];
    snprintf(data, sizeof(data), "%s/data", f->dir);
    snprintf(sub, sizeof(sub), "%s/data/lists", f->dir);
    assert_int_equal(mkdir(data, 0700), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    put(data, "people", users_ok);
    put(sub, "aliases", aliases_ok);
    char conf[1024];
    snprintf(conf, sizeof(conf),
             "\xEF\xBB\xBF[server]\r\n"
             "  data_dir = data\r\n"
             "\tusers = people\r\n"
             "aliases = %s/data/lists/aliases\r\n"
             "Domains = example.org example.net\r\n"
             "[LISTEN]\r\n"
             "smtp: 127.0.0.1:2525\r\n",
             f->dir);
    struct conf *c = load(f, conf, NULL, NULL);
    if (!c)
        fail_msg("%s", f->err);
    assert_string_equal(c->data_dir, data);
    char want[400];
    snprintf(want, sizeof(want), "%s/people", data);
    assert_string_equal(c->users_file, want);
    snprintf(want, sizeof(want), "%s/aliases", sub);
    assert_string_equal(c->aliases_file, want);
    assert_int_equal(tables_nusers(c->tables), 3);
    conf_unref(c);
}

/* A relative FILE: errors name it as given, c->path is made absolute for reloads. */
static void test_relative_file(void **state)
{
    struct fx *f = *state;
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    put(f->dir, "users", users_ok);
    put(f->dir, "aliases", aliases_ok);
    put(f->dir, "tern.conf", minimal);
    put(f->dir, "bad.conf", "[server]\ndomains = example.org example.net\nworkers = many\n");
    assert_int_equal(chdir(f->dir), 0);
    struct conf *c = conf_load("./tern.conf", f->err, sizeof(f->err));
    char err[1024];
    struct conf *bad = conf_load("bad.conf", err, sizeof(err));
    assert_int_equal(chdir(cwd), 0);
    if (!c)
        fail_msg("%s", f->err);
    assert_string_equal(c->path, f->conf);
    assert_string_equal(c->data_dir, f->dir);
    conf_unref(c);
    assert_null(bad);
    assert_string_equal(err, "bad.conf:3: workers = many: not a number from 1 to 64; fix the "
                             "value\n"
                             "bad.conf:3: no listener; add smtp = 127.0.0.1:2525 (or "
                             "0.0.0.0:25) under [listen]\n");
}

/* Every error in tern.conf, each at its line, all in one pass. */
static void test_conf_errors_all_reported(void **state)
{
    struct fx *f = *state;
    static const char conf[] = "hostname = x\n"                                              /* 1 */
                               "[server]\n"                                                  /* 2 */
                               "hostname = bad_host\n"                                       /* 3 */
                               "domains = example.org, -bad.org, example.org, example.net\n" /* 4 */
                               "workers = 0\n"                                               /* 5 */
                               "workers = 65\n"                                              /* 6 */
                               "frobnicate = 1\n"                                            /* 7 */
                               "[listen]\n"                                                  /* 8 */
                               "smtp = 127.0.0.1:2525\n"                                     /* 9 */
                               "submission = 127.0.0.1:2525\n"            /* 10 */
                               "smtps = localhost:25\n"                   /* 11 */
                               "smtp = ::1:25\n"                          /* 12 */
                               "smtp = [::1]:70000\n"                     /* 13 */
                               "just junk\n"                              /* 14 */
                               "[limits\n"                                /* 15 */
                               "message_size = 10\n"                      /* 16 */
                               "[limits] extra\n"                         /* 17 */
                               "message_size = 512\n"                     /* 18 */
                               "recipients = -1\n"                        /* 19 */
                               "command_timeout = 5x\n"                   /* 20 */
                               "data_timeout = 10m # ten minutes\n"       /* 21 */
                               "min_free_space = 1T\n"                    /* 22 */
                               "[foo]\n"                                  /* 23 */
                               "x = y\n"                                  /* 24 */
                               "[policy]\n"                               /* 25 */
                               "deny = 10.0.0.0/8 300.1.1.1 fe80::/129\n" /* 26 */
                               "vrfy = sometimes\n"                       /* 27 */
                               "= nothing\n";                             /* 28 */
    struct conf *c = load(f, conf, users_ok, aliases_ok);
    assert_null(c);
    const char *p = f->conf, *e = f->err;
    assert_error(e, p, 1,
                 "hostname is outside any section; put it under its section, like "
                 "[server]");
    assert_error(e, p, 3,
                 "hostname 'bad_host' is not a valid domain name; write this server's "
                 "name, like mail.example.org");
    assert_error(e, p, 4,
                 "'-bad.org' is not a valid domain name; use letters, digits, '-' and "
                 "dots, like example.org");
    assert_error(e, p, 4, "domain example.org is listed twice; remove one");
    assert_error(e, p, 5, "workers = 0: not a number from 1 to 64; fix the value");
    assert_error(e, p, 6, "workers is already set on line 5; keep only one");
    assert_error(e, p, 7,
                 "unknown key 'frobnicate' in [server]; valid keys there are hostname, "
                 "data_dir, user, users, aliases, mailboxes, domains, workers");
    assert_error(e, p, 10,
                 "submission = 127.0.0.1:2525: 127.0.0.1:2525 is already used by "
                 "another listener; give each its own port");
    assert_error(e, p, 11,
                 "smtps = localhost:25: not a listening address; the address must be "
                 "numeric, like 127.0.0.1 or 0.0.0.0");
    assert_error(e, p, 12,
                 "smtp = ::1:25: not a listening address; put an IPv6 address in "
                 "brackets, like [::1]:2525");
    assert_error(e, p, 13,
                 "smtp = [::1]:70000: not a listening address; the port must be a "
                 "number from 1 to 65535");
    assert_error(e, p, 14,
                 "'just junk' is not a setting; write key = value, or start a comment "
                 "with #");
    assert_error(e, p, 15, "section header '[limits' has no closing ']'; write it like [server]");
    assert_error(e, p, 17, "text after the section header; put only [limits] on this line");
    assert_error(e, p, 18, "message_size = 512: less than the minimum of 1K; raise it");
    assert_error(e, p, 19, "recipients = -1: not a number from 1 to 1000000; fix the value");
    assert_error(e, p, 20,
                 "command_timeout = 5x: not a number from 1 to 86400 seconds (suffixes "
                 "s, m, h, d allowed); fix the value");
    assert_error(e, p, 22,
                 "min_free_space = 1T: not a size; write a number of bytes with an "
                 "optional K, M or G suffix, like 25M");
    assert_error(e, p, 23,
                 "unknown section [foo]; valid sections are [server], [listen], "
                 "[limits] and [policy]");
    assert_error(e, p, 26,
                 "deny: '300.1.1.1' is not an address or CIDR block; write "
                 "192.0.2.0/24 or 2001:db8::/32");
    assert_error(e, p, 26,
                 "deny: 'fe80::/129' is not an address or CIDR block; write "
                 "192.0.2.0/24 or 2001:db8::/32");
    assert_error(e, p, 27, "vrfy = sometimes: not a choice; write none, authenticated or all");
    assert_error(e, p, 28, "no key before '='; write key = value");
    /* line 16 sits under the broken header and line 21's '#' comment is fine: nothing more */
    assert_int_equal(count_lines(e), 23);
}

static void test_conf_missing_things(void **state)
{
    struct fx *f = *state;
    /* no listener: pointed at [listen]; no domains: at [server] */
    struct conf *c =
        load(f, "[server]\nworkers = 2\n[listen]\n# smtp = 127.0.0.1:25\n", users_ok, aliases_ok);
    assert_null(c);
    assert_error(f->err, f->conf, 1,
                 "no domains; add domains = example.org (the primary first) "
                 "under [server]");
    assert_error(f->err, f->conf, 3,
                 "no listener; add smtp = 127.0.0.1:2525 (or 0.0.0.0:25) "
                 "under [listen]");
    assert_int_equal(count_lines(f->err), 2);

    /* without the sections, the last line */
    c = load(f, "# nothing\n\n[policy]\nvrfy = all\n\n", users_ok, aliases_ok);
    assert_null(c);
    assert_error(f->err, f->conf, 5,
                 "no domains; add domains = example.org (the primary first) "
                 "under [server]");
    assert_error(f->err, f->conf, 5,
                 "no listener; add smtp = 127.0.0.1:2525 (or 0.0.0.0:25) "
                 "under [listen]");
    assert_int_equal(count_lines(f->err), 2);

    c = load(f, "[server]\ndomains = ,\n[listen]\nsmtp = 0.0.0.0:25\nsmtp = 127.0.0.1:25\n",
             users_ok, aliases_ok);
    assert_null(c);
    assert_error(f->err, f->conf, 2,
                 "domains is empty; list the mail domains, the primary "
                 "first, like domains = example.org, example.net");
    assert_error(f->err, f->conf, 5,
                 "smtp = 127.0.0.1:25: 127.0.0.1:25 is already used by "
                 "another listener; give each its own port");
    assert_int_equal(count_lines(f->err), 2);
}

static void test_missing_files(void **state)
{
    struct fx *f = *state;
    char want[2048];
    assert_null(load(f, NULL, NULL, NULL));
    snprintf(want, sizeof(want),
             "%s: cannot read: No such file or directory; check the path, or create one with "
             "tern init\n",
             f->conf);
    assert_string_equal(f->err, want);

    assert_null(load(f, minimal, NULL, NULL));
    snprintf(want, sizeof(want),
             "users file %s: No such file or directory; create it (`tern init %s` writes a first "
             "one) or set users = to the right path",
             f->users, f->dir);
    assert_error(f->err, f->conf, 1, want);
    snprintf(want, sizeof(want),
             "aliases file %s: No such file or directory; create it (`tern init %s` writes a "
             "first one) or set aliases = to the right path",
             f->aliases, f->dir);
    assert_error(f->err, f->conf, 1, want);
    assert_int_equal(count_lines(f->err), 2);

    assert_null(load(f,
                     "[server]\ndomains = example.org\ndata_dir = nowhere\n[listen]\n"
                     "smtp = 127.0.0.1:25\n",
                     NULL, NULL));
    snprintf(want, sizeof(want),
             "data_dir %s/nowhere: No such file or directory; create it (tern init DIR) or fix "
             "data_dir",
             f->dir);
    assert_error(f->err, f->conf, 3, want);
    assert_int_equal(count_lines(f->err), 1);
}

static void test_users_errors(void **state)
{
    struct fx *f = *state;
    static const char users[] = "admin@example.org:{CRYPT}$y$x:::Admin:::\n"          /* 1 */
                                "bob@other.org::\n"                                   /* 2 */
                                "ADMIN@example.org:\n"                                /* 3 */
                                "carol@example.org:secret\n"                          /* 4 */
                                "nopass\n"                                            /* 5 */
                                "dave:\n"                                             /* 6 */
                                "eve@example.org:::::::moved=nowhere\n"               /* 7 */
                                "fr..ed@example.org:\n"                               /* 8 */
                                "  # an indented comment\n"                           /* 9 */
                                "gina@example.org:{CRYPT}$y$ok:1:2:Gina:/h:/s:a=b\n"; /* 10 */
    assert_null(load(f, minimal, users, aliases_ok));
    const char *p = f->users, *e = f->err;
    assert_error(e, p, 2,
                 "user bob@other.org: other.org is not one of the local domains; add it "
                 "to domains = in [server] or fix the address");
    assert_error(e, p, 3, "user admin@example.org is listed twice; remove one of the lines");
    assert_error(e, p, 4,
                 "the password of carol@example.org is not a {CRYPT} or {SCRAM-SHA-256} "
                 "hash; store only hashes: set it with `tern user passwd carol@example.org`");
    assert_error(e, p, 5,
                 "'nopass' has no password field; write user@domain:{CRYPT}hash (the "
                 "hash may be empty: user@domain:)");
    assert_error(e, p, 6,
                 "user 'dave' is not an address: it has no @domain; write it as "
                 "user@domain");
    assert_error(e, p, 7,
                 "moved=nowhere for eve@example.org is not an address: it has no "
                 "@domain; write moved=user@domain");
    assert_error(e, p, 8,
                 "user 'fr..ed@example.org' is not an address: the local part may hold "
                 "letters, digits, dots (not first, last or doubled) and "
                 "!#$%&'*+-/=?^_`{|}~, at most 64; write it as user@domain");
    assert_int_equal(count_lines(e), 7);
}

static void test_aliases_errors(void **state)
{
    struct fx *f = *state;
    static const char aliases[] = "postmaster: admin\n"                  /* 1 */
                                  "staff: admin, |/bin/sh, /var/log/x\n" /* 2 */
                                  "bad name: admin\n"                    /* 3 */
                                  "list@example.com: admin\n"            /* 4 */
                                  "empty:\n"                             /* 5 */
                                  "  admin, carol\n"                     /* 6 */
                                  "postmaster: carol\n"                  /* 7 */
                                  "x: a..b\n";                           /* 8 */
    assert_null(load(f, minimal, users_ok, aliases));
    const char *p = f->aliases, *e = f->err;
    assert_error(e, p, 2,
                 "alias staff: member '|/bin/sh': pipes, files, :include: and quoted "
                 "names are not supported; list local users");
    assert_error(e, p, 2,
                 "alias staff: member '/var/log/x': pipes, files, :include: and quoted "
                 "names are not supported; list local users");
    assert_error(e, p, 3,
                 "alias name 'bad name' is not valid: the local part may hold letters, "
                 "digits, dots (not first, last or doubled) and !#$%&'*+-/=?^_`{|}~, at "
                 "most 64; write local, local@domain or @domain");
    assert_error(e, p, 4,
                 "alias list@example.com: example.com is not one of the local domains; "
                 "add it to domains = in [server] or fix the name");
    assert_error(e, p, 5, "alias empty has no members; list at least one user after the ':'");
    assert_error(e, p, 6,
                 "'admin, carol' is not an alias; write name: member, member (all on "
                 "one line: continuation lines are not supported)");
    char want[1024];
    snprintf(want, sizeof(want),
             "alias postmaster is defined twice (first at %s:1); merge them into one", p);
    assert_error(e, p, 7, want);
    assert_error(e, p, 8,
                 "alias x: member 'a..b' is not valid: the local part may hold letters, "
                 "digits, dots (not first, last or doubled) and !#$%&'*+-/=?^_`{|}~, at "
                 "most 64; write user or user@domain");
    assert_int_equal(count_lines(e), 8);
}

/* What only the whole table shows: each reason at the line of its alias, postmaster at the end
 * of the file. */
static void test_aliases_finish_errors(void **state)
{
    struct fx *f = *state;
    static const char aliases[] = "# lists\n"                           /* 1 */
                                  "loop1: loop2\n"                      /* 2 */
                                  "loop2: admin, loop1\n"               /* 3 */
                                  "ext@example.org: friend@gmail.com\n" /* 4 */
                                  "typo: amdin\n"                       /* 5 */
                                  "postmaster@example.org: admin\n";    /* 6 */
    assert_null(load(f, minimal, users_ok, aliases));
    const char *p = f->aliases, *e = f->err;
    assert_error(e, p, 2,
                 "alias loop1: loops back to itself (loop1 -> loop2 -> loop1); remove "
                 "one of the members that closes the loop");
    assert_error(e, p, 4,
                 "alias ext@example.org: member friend@gmail.com is not a local user; "
                 "outbound delivery is not available yet");
    assert_error(e, p, 5,
                 "alias typo: member amdin@example.org is not a local user; add it to "
                 "the users file or fix the member");
    assert_error(e, p, 6,
                 "postmaster@example.net reaches no one; add `postmaster: "
                 "you@example.net` to aliases");
    assert_int_equal(count_lines(e), 4);
}

static void test_long_line(void **state)
{
    struct fx *f = *state;
    char conf[2048];
    int n = snprintf(conf, sizeof(conf), "%s[policy]\ndeny = ", minimal);
    for (int i = 0; i < 30; i++)
        n += snprintf(conf + n, sizeof(conf) - (size_t)n, "10.%d.0.0/16, ", i);
    snprintf(conf + n, sizeof(conf) - (size_t)n, "\nvrfy = maybe\n");
    assert_null(load(f, conf, users_ok, aliases_ok));
    assert_error(f->err, f->conf, 6,
                 "line is longer than 197 characters; shorten it (deny and "
                 "listeners may be split over several lines with the same "
                 "key)");
    assert_error(f->err, f->conf, 7,
                 "vrfy = maybe: not a choice; write none, authenticated or "
                 "all");
    assert_int_equal(count_lines(f->err), 2);
}

static void test_error_buffer(void **state)
{
    struct fx *f = *state;
    put(f->dir, "tern.conf", "[server]\nbogus = 1\nbogus2 = 2\n");
    char small[64];
    assert_null(conf_load(f->conf, small, sizeof(small)));
    assert_string_equal(small, "... more errors not shown\n");
    assert_null(conf_load(f->conf, NULL, 0));
}

static void test_denied(void **state)
{
    struct fx *f = *state;
    char conf[512];
    snprintf(conf, sizeof(conf),
             "%s[policy]\ndeny = 192.0.2.0/24, 2001:db8::/32\ndeny = 198.51.100.7, ::1, "
             "203.0.113.128/25\n",
             minimal);
    struct conf *c = load(f, conf, users_ok, aliases_ok);
    if (!c)
        fail_msg("%s", f->err);
    struct {
        const char *addr;
        bool denied;
    } cases[] = {
        {"192.0.2.0", true},
        {"192.0.2.255", true},
        {"192.0.3.0", false},
        {"192.0.1.255", false},
        {"198.51.100.7", true},
        {"198.51.100.8", false},
        {"203.0.113.128", true},
        {"203.0.113.127", false},
        {"2001:db8::1", true},
        {"2001:db8:ffff::", true},
        {"2001:db9::", false},
        {"::1", true},
        {"::2", false},
        {"::ffff:192.0.2.9", true},
        {"::ffff:192.0.3.9", false},
        {"0.0.0.0", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char a[16];
        int family = strchr(cases[i].addr, ':') ? AF_INET6 : AF_INET;
        assert_int_equal(inet_pton(family, cases[i].addr, a), 1);
        if (conf_denied(c, family, a) != cases[i].denied)
            fail_msg("%s: expected %s", cases[i].addr, cases[i].denied ? "denied" : "allowed");
    }
    conf_unref(c);

    /* an empty list denies no one; /0 denies everyone of that family */
    c = load(f, minimal, NULL, NULL);
    assert_non_null(c);
    unsigned char a4[4] = {192, 0, 2, 1};
    assert_false(conf_denied(c, AF_INET, a4));
    conf_unref(c);
    snprintf(conf, sizeof(conf), "%s[policy]\ndeny = 0.0.0.0/0\n", minimal);
    c = load(f, conf, NULL, NULL);
    assert_non_null(c);
    assert_true(conf_denied(c, AF_INET, a4));
    unsigned char a6[16] = {0x20, 0x01};
    assert_false(conf_denied(c, AF_INET6, a6));
    conf_unref(c);
}

static void test_parse_size(void **state)
{
    struct {
        const char *s;
        int r;
        uint64_t v;
    } cases[] = {
        {"25M", 0, 25ull << 20},
        {"1048576", 0, 1048576},
        {"4k", 0, 4096},
        {"4K", 0, 4096},
        {"1G", 0, 1ull << 30},
        {"3g", 0, 3ull << 30},
        {"0", 0, 0},
        {"18446744073709551615", 0, UINT64_MAX},
        {"17179869183G", 0, 17179869183ull << 30},
        {"17179869184G", -1, 0},
        {"18446744073709551616", -1, 0},
        {"", -1, 0},
        {"M", -1, 0},
        {"1.5M", -1, 0},
        {"-1", -1, 0},
        {"+1", -1, 0},
        {"1T", -1, 0},
        {"25MB", -1, 0},
        {" 1", -1, 0},
        {"1 ", -1, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 12345;
        int r = conf_parse_size(cases[i].s, &v);
        if (r != cases[i].r || (r == 0 && v != cases[i].v))
            fail_msg("conf_parse_size(\"%s\") = %d, %llu", cases[i].s, r, (unsigned long long)v);
    }
}

static void test_valid_names(void **state)
{
    assert_true(conf_valid_domain("example.org"));
    assert_true(conf_valid_domain("Mail-1.Example.ORG"));
    assert_true(conf_valid_domain("localhost"));
    assert_false(conf_valid_domain(""));
    assert_false(conf_valid_domain("example.org."));
    assert_false(conf_valid_domain(".example.org"));
    assert_false(conf_valid_domain("a..b"));
    assert_false(conf_valid_domain("-a.org"));
    assert_false(conf_valid_domain("a-.org"));
    assert_false(conf_valid_domain("a_b.org"));
    assert_false(conf_valid_domain("[192.0.2.1]"));
    char label[80];
    memset(label, 'a', 63);
    strcpy(label + 63, ".org");
    assert_true(conf_valid_domain(label));
    memset(label, 'a', 64);
    strcpy(label + 64, ".org");
    assert_false(conf_valid_domain(label));
    assert_true(conf_valid_local("john.doe+tag"));
    assert_true(conf_valid_local("o'brien"));
    assert_false(conf_valid_local(""));
    assert_false(conf_valid_local(".a"));
    assert_false(conf_valid_local("a."));
    assert_false(conf_valid_local("a..b"));
    assert_false(conf_valid_local("a b"));
    assert_false(conf_valid_local("a@b"));
    assert_false(conf_valid_local("\"q\""));
}

/* An smtps listener without a certificate would be cleartext on the implicit-TLS port. */
static void test_smtps_refused(void **state)
{
    struct fx *f = *state;
    struct conf *c = load(f,
                          "[server]\n"
                          "domains = example.org\n"
                          "[listen]\n"
                          "smtps = 127.0.0.1:2465\n",
                          users_ok, aliases_ok);
    assert_null(c);
    assert_error(f->err, f->conf, 3,
                 "smtps listener on port 2465 needs a certificate: add cert = and key = under "
                 "[tls]");
    c = load(f,
             "[server]\n"
             "domains = example.org\n"
             "[listen]\n"
             "smtp = 127.0.0.1:2525\n"
             "[tls]\n"
             "cert = nothere.pem\n",
             users_ok, aliases_ok);
    assert_null(c);
    assert_error(f->err, f->conf, 5, "[tls] needs both cert = and key = (or neither, for no TLS)");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_full_config),
        T(test_smtps_refused),
        T(test_defaults),
        T(test_paths_and_line_forms),
        T(test_relative_file),
        T(test_conf_errors_all_reported),
        T(test_conf_missing_things),
        T(test_missing_files),
        T(test_users_errors),
        T(test_aliases_errors),
        T(test_aliases_finish_errors),
        T(test_long_line),
        T(test_error_buffer),
        T(test_denied),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_valid_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

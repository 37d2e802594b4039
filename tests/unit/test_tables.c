/* Unit tests for src/policy/tables*.c: resolution (users, aliases, nesting, bare aliases,
 * postmaster, moved and forwarded users, limits), VRFY, EXPN, turn= lists, what the tables refuse,
 * and the users file's forward= and turn= as conf_load_users reads them (errors at file:line). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf/config.h"
#include "policy/tables.h"

#include "testfs.h"

static char mb[TABLES_MAX_EXPANSION + 1][TABLES_ADDR_MAX + 1];

static void add_user(struct tables *t, const char *addr, const char *name, const char *moved)
{
    struct tables_user u;
    memset(&u, 0, sizeof(u));
    snprintf(u.addr, sizeof(u.addr), "%s", addr);
    snprintf(u.name, sizeof(u.name), "%s", name);
    snprintf(u.moved, sizeof(u.moved), "%s", moved);
    char err[256] = "";
    assert_int_equal(tables_add_user(t, &u, err, sizeof(err)), 0);
}

/* members: a NULL-terminated list */
static int add_alias_err(struct tables *t, const char *name, char *err, size_t errlen, ...)
{
    const char *m[64];
    size_t n = 0;
    va_list ap;
    va_start(ap, errlen);
    for (const char *s; (s = va_arg(ap, const char *));)
        m[n++] = s;
    va_end(ap);
    return tables_add_alias(t, name, m, n, err, errlen);
}

#define add_alias(t, name, ...)                                                                    \
    do {                                                                                           \
        char e_[256] = "";                                                                         \
        assert_int_equal(add_alias_err(t, name, e_, sizeof(e_), __VA_ARGS__, NULL), 0);            \
    } while (0)

static struct tables *two_domains(void)
{
    struct tables *t = tables_new();
    assert_non_null(t);
    char err[256];
    assert_int_equal(tables_add_domain(t, "Example.ORG", err, sizeof(err)), 0);
    assert_int_equal(tables_add_domain(t, "example.net", err, sizeof(err)), 0);
    return t;
}

/* The table most tests share. */
static int setup(void **state)
{
    struct tables *t = two_domains();
    add_user(t, "Alice@Example.org", "Alice Liddell", "");
    add_user(t, "bob@example.org", "Bob Builder", "");
    add_user(t, "carol@example.net", "Carol Alice Smith", "");
    add_user(t, "dave@example.org", "Dave Gone", "Dave@Elsewhere.com");
    add_user(t, "admin@example.org", "Administrator", "");
    add_user(t, "alice@example.net", "", "");
    add_alias(t, "postmaster", "admin");
    add_alias(t, "abuse", "admin@example.org");
    add_alias(t, "staff@example.org", "alice", "BOB", "carol@example.net");
    add_alias(t, "team@example.org", "staff", "alice@example.org", "dave", "bob");
    add_alias(t, "info@example.org", "bob");
    add_alias(t, "info", "alice");
    char err[1024];
    int r = tables_finish(t, err, sizeof(err));
    if (r != 0)
        fprintf(stderr, "%s", err);
    assert_int_equal(r, 0);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    tables_free(*state);
    return 0;
}

static enum tables_status resolve(const struct tables *t, const char *local, const char *domain,
                                  size_t max, size_t *n)
{
    char fwd[TABLES_ADDR_MAX + 1];
    return tables_resolve(t, local, domain, mb, max, n, fwd, sizeof(fwd));
}

static void test_resolve_user(void **state)
{
    size_t n = 99;
    assert_int_equal(resolve(*state, "ALICE", "example.ORG", 10, &n), TABLES_OK);
    assert_int_equal(n, 1);
    assert_string_equal(mb[0], "alice@example.org");
    assert_int_equal(resolve(*state, "alice", "example.net", 10, &n), TABLES_OK);
    assert_int_equal(n, 1);
    assert_string_equal(mb[0], "alice@example.net");
}

static void test_resolve_alias(void **state)
{
    size_t n = 0;
    assert_int_equal(resolve(*state, "Staff", "example.org", 10, &n), TABLES_OK);
    assert_int_equal(n, 3);
    assert_string_equal(mb[0], "alice@example.org");
    assert_string_equal(mb[1], "bob@example.org");
    assert_string_equal(mb[2], "carol@example.net");
}

/* team = staff + alice (again) + dave (moved: skipped) + bob (again): three distinct. */
static void test_resolve_nested_dedup_skips_moved(void **state)
{
    size_t n = 0;
    assert_int_equal(resolve(*state, "team", "example.org", 10, &n), TABLES_OK);
    assert_int_equal(n, 3);
    assert_string_equal(mb[0], "alice@example.org");
    assert_string_equal(mb[1], "bob@example.org");
    assert_string_equal(mb[2], "carol@example.net");
}

static void test_resolve_bare_alias_each_domain(void **state)
{
    size_t n = 0;
    assert_int_equal(resolve(*state, "abuse", "example.org", 10, &n), TABLES_OK);
    assert_int_equal(n, 1);
    assert_string_equal(mb[0], "admin@example.org");
    assert_int_equal(resolve(*state, "Abuse", "EXAMPLE.NET", 10, &n), TABLES_OK);
    assert_int_equal(n, 1);
    assert_string_equal(mb[0], "admin@example.org");
    /* a full alias wins over the bare one of the same local part */
    assert_int_equal(resolve(*state, "info", "example.org", 10, &n), TABLES_OK);
    assert_string_equal(mb[0], "bob@example.org");
    assert_int_equal(resolve(*state, "info", "example.net", 10, &n), TABLES_OK);
    assert_string_equal(mb[0], "alice@example.org");
    /* a bare alias does not apply outside the local domains */
    assert_int_equal(resolve(*state, "abuse", "example.com", 10, &n), TABLES_FOREIGN);
}

static void test_resolve_postmaster_any_case(void **state)
{
    const char *locals[] = {"postmaster", "PostMaster", "POSTMASTER"};
    const char *domains[] = {NULL, "", "example.org", "Example.Net"};
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 4; j++) {
            size_t n = 0;
            assert_int_equal(resolve(*state, locals[i], domains[j], 10, &n), TABLES_OK);
            assert_int_equal(n, 1);
            assert_string_equal(mb[0], "admin@example.org");
        }
}

static void test_resolve_moved(void **state)
{
    char fwd[TABLES_ADDR_MAX + 1] = "junk";
    size_t n = 7;
    assert_int_equal(tables_resolve(*state, "Dave", "example.org", mb, 10, &n, fwd, sizeof(fwd)),
                     TABLES_MOVED);
    assert_int_equal(n, 0);
    assert_string_equal(fwd, "dave@elsewhere.com");
    /* a short buffer gets a terminated prefix */
    char small[5];
    assert_int_equal(
        tables_resolve(*state, "dave", "example.org", mb, 10, &n, small, sizeof(small)),
        TABLES_MOVED);
    assert_string_equal(small, "dave");
}

static void test_resolve_foreign_unknown(void **state)
{
    size_t n = 5;
    assert_int_equal(resolve(*state, "alice", "example.com", 10, &n), TABLES_FOREIGN);
    assert_int_equal(n, 0);
    assert_int_equal(resolve(*state, "alice", "[192.0.2.1]", 10, &n), TABLES_FOREIGN);
    assert_int_equal(resolve(*state, "nobody", "example.org", 10, &n), TABLES_UNKNOWN);
    assert_int_equal(resolve(*state, "carol", "example.org", 10, &n), TABLES_UNKNOWN);
    assert_int_equal(resolve(*state, "", "example.org", 10, &n), TABLES_UNKNOWN);
    /* a quoted local part holding '@' must not reach the full alias it spells */
    assert_int_equal(resolve(*state, "staff@example.org", "example.net", 10, &n), TABLES_UNKNOWN);
    assert_int_equal(n, 0);
}

static void test_resolve_max(void **state)
{
    size_t n = 0;
    assert_int_equal(resolve(*state, "staff", "example.org", 2, &n), TABLES_TOO_MANY);
    assert_int_equal(n, 0);
    assert_int_equal(resolve(*state, "staff", "example.org", 3, &n), TABLES_OK);
    assert_int_equal(n, 3);
    assert_int_equal(resolve(*state, "alice", "example.org", 0, &n), TABLES_TOO_MANY);
}

/* An alias of N distinct users: "all". */
static struct tables *big_alias(size_t nusers)
{
    struct tables *t = two_domains();
    const char **m = calloc(nusers + 1, sizeof(*m));
    char(*names)[32] = calloc(nusers, sizeof(*names));
    assert_non_null(m);
    assert_non_null(names);
    for (size_t i = 0; i < nusers; i++) {
        snprintf(names[i], sizeof(names[i]), "u%zu", i);
        char addr[64];
        snprintf(addr, sizeof(addr), "u%zu@example.org", i);
        add_user(t, addr, "", "");
        m[i] = names[i];
    }
    m[nusers] = "u0"; /* a repeat does not count twice */
    char err[256];
    assert_int_equal(tables_add_alias(t, "all", m, nusers + 1, err, sizeof(err)), 0);
    add_alias(t, "postmaster", "u0");
    assert_int_equal(tables_finish(t, err, sizeof(err)), 0);
    free(m);
    free(names);
    return t;
}

static void test_resolve_too_many(void **state)
{
    size_t n = 0;
    struct tables *t = big_alias(TABLES_MAX_EXPANSION);
    assert_int_equal(resolve(t, "all", "example.net", TABLES_MAX_EXPANSION + 1, &n), TABLES_OK);
    assert_int_equal(n, TABLES_MAX_EXPANSION);
    assert_string_equal(mb[0], "u0@example.org");
    assert_string_equal(mb[TABLES_MAX_EXPANSION - 1], "u999@example.org");
    tables_free(t);
    t = big_alias(TABLES_MAX_EXPANSION + 1);
    assert_int_equal(resolve(t, "all", "example.net", TABLES_MAX_EXPANSION + 1, &n),
                     TABLES_TOO_MANY);
    assert_int_equal(n, 0);
    tables_free(t);
}

static void test_lookups(void **state)
{
    struct tables *t = *state;
    assert_int_equal(tables_ndomains(t), 2);
    assert_string_equal(tables_domain(t, 0), "example.org");
    assert_string_equal(tables_domain(t, 1), "example.net");
    assert_null(tables_domain(t, 2));
    assert_true(tables_is_local_domain(t, "EXAMPLE.net"));
    assert_false(tables_is_local_domain(t, "example.com"));
    assert_int_equal(tables_nusers(t), 6);
    assert_int_equal(tables_naliases(t), 6);
    assert_string_equal(tables_user_at(t, 0)->addr, "alice@example.org");
    assert_null(tables_user_at(t, 6));
    const struct tables_user *u = tables_user(t, "DAVE@example.ORG");
    assert_non_null(u);
    assert_string_equal(u->name, "Dave Gone");
    assert_string_equal(u->moved, "dave@elsewhere.com");
    assert_null(tables_user(t, "staff@example.org"));
}

static void test_vrfy(void **state)
{
    const struct tables_user *out[8];
    /* local part in both domains first, then the full name that contains it */
    assert_int_equal(tables_vrfy(*state, "ALICE", out, 8), 3);
    assert_string_equal(out[0]->addr, "alice@example.org");
    assert_string_equal(out[1]->addr, "alice@example.net");
    assert_string_equal(out[2]->addr, "carol@example.net");
    /* the count goes past max; only max are written */
    out[1] = NULL;
    assert_int_equal(tables_vrfy(*state, "alice", out, 1), 3);
    assert_string_equal(out[0]->addr, "alice@example.org");
    assert_null(out[1]);
    assert_int_equal(tables_vrfy(*state, "builder", out, 8), 1);
    assert_string_equal(out[0]->addr, "bob@example.org");
    assert_int_equal(tables_vrfy(*state, "Bob@Example.org", out, 8), 1);
    assert_string_equal(out[0]->addr, "bob@example.org");
    assert_int_equal(tables_vrfy(*state, "bob@example.net", out, 8), 0);
    assert_int_equal(tables_vrfy(*state, "liddell@example.org", out, 8), 0);
    assert_int_equal(tables_vrfy(*state, "nobody", out, 8), 0);
    assert_int_equal(tables_vrfy(*state, "", out, 8), 0);
    /* a name matching twice (local part and full name) counts once */
    assert_int_equal(tables_vrfy(*state, "admin", out, 8), 1);
    assert_string_equal(out[0]->addr, "admin@example.org");
}

static void test_expn(void **state)
{
    const char *out[8];
    assert_int_equal(tables_expn(*state, "Staff@example.org", out, 8), 3);
    assert_string_equal(out[0], "alice@example.org");
    assert_string_equal(out[1], "bob@example.org");
    assert_string_equal(out[2], "carol@example.net");
    /* direct members only, as written (normalised), not expanded */
    assert_int_equal(tables_expn(*state, "team@example.org", out, 8), 4);
    assert_string_equal(out[0], "staff@example.org");
    assert_string_equal(out[2], "dave@example.org");
    /* bare alias: members in the primary domain, reachable from any local domain */
    assert_int_equal(tables_expn(*state, "postmaster", out, 8), 1);
    assert_string_equal(out[0], "admin@example.org");
    assert_int_equal(tables_expn(*state, "abuse@example.net", out, 8), 1);
    assert_string_equal(out[0], "admin@example.org");
    /* a bare name means the primary domain, where info is a full alias */
    assert_int_equal(tables_expn(*state, "info", out, 8), 1);
    assert_string_equal(out[0], "bob@example.org");
    out[1] = NULL;
    assert_int_equal(tables_expn(*state, "staff@example.org", out, 1), 3);
    assert_null(out[1]);
    assert_int_equal(tables_expn(*state, "alice@example.org", out, 8), -1);
    assert_int_equal(tables_expn(*state, "nothing", out, 8), -1);
    assert_int_equal(tables_expn(*state, "staff@example.com", out, 8), -1);
    assert_int_equal(tables_expn(*state, "staff@example.net", out, 8), -1);
    /* tables_names_alias: full and bare aliases, in any case; not users, not foreign domains */
    assert_true(tables_names_alias(*state, "Staff@example.org"));
    assert_true(tables_names_alias(*state, "abuse@example.net"));
    assert_true(tables_names_alias(*state, "info@example.net"));
    assert_false(tables_names_alias(*state, "alice@example.org"));
    assert_false(tables_names_alias(*state, "staff@example.net"));
    assert_false(tables_names_alias(*state, "staff@example.com"));
    assert_false(tables_names_alias(*state, "postmaster"));
    assert_false(tables_names_alias(*state, NULL));
}

static void test_add_errors(void **state)
{
    struct tables *t = two_domains();
    char err[256];
    struct tables_user u;
    memset(&u, 0, sizeof(u));
    assert_int_equal(tables_add_domain(t, "EXAMPLE.org", err, sizeof(err)), -1);
    assert_string_equal(err, "domain example.org is listed twice; remove one");
    strcpy(u.addr, "x@example.com");
    assert_int_equal(tables_add_user(t, &u, err, sizeof(err)), -1);
    assert_string_equal(err, "user x@example.com: example.com is not one of the local domains; "
                             "add it to domains = in [server] or fix the address");
    strcpy(u.addr, "noat");
    assert_int_equal(tables_add_user(t, &u, err, sizeof(err)), -1);
    assert_string_equal(err, "user 'noat' is not an address; write it as user@domain");
    add_user(t, "x@example.org", "", "");
    strcpy(u.addr, "X@EXAMPLE.ORG");
    assert_int_equal(tables_add_user(t, &u, err, sizeof(err)), -1);
    assert_string_equal(err, "user x@example.org is listed twice; remove one of the lines");

    assert_int_equal(add_alias_err(t, "a@example.com", err, sizeof(err), "x", NULL), -1);
    assert_string_equal(err, "alias a@example.com: example.com is not one of the local domains; "
                             "add it to domains = in [server] or fix the name");
    assert_int_equal(add_alias_err(t, "x@example.org", err, sizeof(err), "x", NULL), -1);
    assert_string_equal(err, "alias x@example.org is also a user; rename one of the two");
    assert_int_equal(add_alias_err(t, "empty", err, sizeof(err), NULL), -1);
    assert_string_equal(err, "alias empty has no members; list at least one local user");
    const char *m[] = {"x"};
    assert_int_equal(tables_add_alias_at(t, "aliases:3", "Dup", m, 1, err, sizeof(err)), 0);
    assert_int_equal(add_alias_err(t, "dup", err, sizeof(err), "x", NULL), -1);
    assert_string_equal(err,
                        "alias dup is defined twice (first at aliases:3); merge them into one");
    assert_int_equal(add_alias_err(t, "bad", err, sizeof(err), "a@b@c", NULL), -1);
    assert_string_equal(err, "alias bad: member 'a@b@c' is not an address; write user@domain or "
                             "a bare local part");
    tables_free(t);
}

static int finish(struct tables *t, char *err, size_t errlen)
{
    int r = tables_finish(t, err, errlen);
    tables_free(t);
    return r;
}

static void test_finish_cycle(void **state)
{
    struct tables *t = two_domains();
    add_user(t, "admin@example.org", "", "");
    add_alias(t, "postmaster", "admin");
    const char *a[] = {"b"}, *b[] = {"c@example.net"}, *c[] = {"a", "admin@example.org"};
    char err[1024];
    assert_int_equal(tables_add_alias_at(t, "al:1", "a", a, 1, err, sizeof(err)), 0);
    assert_int_equal(tables_add_alias_at(t, "al:2", "b", b, 1, err, sizeof(err)), 0);
    assert_int_equal(tables_add_alias_at(t, "al:3", "c@example.net", c, 2, err, sizeof(err)), 0);
    assert_int_equal(finish(t, err, sizeof(err)), -1);
    assert_string_equal(err, "al:1: alias a: loops back to itself (a -> b -> c@example.net -> a); "
                             "remove one of the members that closes the loop\n");

    t = two_domains();
    add_user(t, "admin@example.org", "", "");
    add_alias(t, "postmaster", "admin", "self");
    add_alias(t, "self", "self");
    assert_int_equal(finish(t, err, sizeof(err)), -1);
    assert_string_equal(err, "alias self: loops back to itself (self -> self); remove one of the "
                             "members that closes the loop\n");
}

static void test_finish_external_and_unknown_member(void **state)
{
    struct tables *t = two_domains();
    add_user(t, "admin@example.org", "", "");
    add_alias(t, "postmaster", "admin");
    add_alias(t, "ext", "admin", "friend@gmail.com");
    add_alias(t, "typo@example.net", "amdin");
    char err[1024];
    assert_int_equal(finish(t, err, sizeof(err)), -1);
    assert_string_equal(err, "alias ext: member friend@gmail.com is not a local user; outbound "
                             "delivery is not available yet\n"
                             "alias typo@example.net: member amdin@example.net is not a local "
                             "user; add it to the users file or fix the member\n");
}

static void test_finish_missing_postmaster(void **state)
{
    struct tables *t = two_domains();
    add_user(t, "admin@example.org", "", "");
    add_alias(t, "postmaster@example.org", "admin");
    char err[1024];
    assert_int_equal(finish(t, err, sizeof(err)), -1);
    assert_string_equal(err, "postmaster@example.net reaches no one; add `postmaster: "
                             "you@example.net` to aliases\n");

    /* a postmaster user will do, unless marked moved */
    t = two_domains();
    add_user(t, "postmaster@example.org", "", "");
    add_user(t, "postmaster@example.net", "", "pm@elsewhere.org");
    assert_int_equal(finish(t, err, sizeof(err)), -1);
    assert_string_equal(err, "postmaster@example.net is a user marked moved, and postmaster must "
                             "always reach someone; remove moved= from it or add `postmaster: "
                             "you@example.net` to aliases\n");
}

static void test_finish_moved_only_and_depth(void **state)
{
    struct tables *t = two_domains();
    add_user(t, "admin@example.org", "", "");
    add_user(t, "gone@example.org", "", "gone@elsewhere.org");
    add_alias(t, "postmaster", "admin");
    add_alias(t, "old", "gone");
    char err[1024];
    assert_int_equal(finish(t, err, sizeof(err)), -1);
    assert_string_equal(err, "alias old: reaches no mailbox, every user on it has moved; add a "
                             "member or remove the alias\n");

    /* a chain of TABLES_MAX_DEPTH aliases is fine, one more is not */
    for (int extra = 0; extra < 2; extra++) {
        t = two_domains();
        add_user(t, "admin@example.org", "", "");
        add_alias(t, "postmaster", "admin");
        int levels = TABLES_MAX_DEPTH + extra;
        for (int i = 1; i <= levels; i++) {
            char name[16], next[16];
            snprintf(name, sizeof(name), "l%d", i);
            snprintf(next, sizeof(next), "l%d", i + 1);
            add_alias(t, name, i == levels ? "admin" : next);
        }
        int r = tables_finish(t, err, sizeof(err));
        size_t n = 0;
        if (extra == 0) {
            assert_int_equal(r, 0);
            assert_int_equal(resolve(t, "l1", NULL, 10, &n), TABLES_OK);
            assert_int_equal(n, 1);
        } else {
            assert_int_equal(r, -1);
            assert_non_null(strstr(err, "alias l1: nests more than 10 aliases deep (l1 -> l2"));
        }
        tables_free(t);
    }
}

/* Errors are all listed, in a buffer too small for them it stays terminated. */
static void test_finish_truncates(void **state)
{
    struct tables *t = two_domains();
    add_user(t, "admin@example.org", "", "");
    add_alias(t, "a", "x@gmail.com");
    add_alias(t, "b", "y@gmail.com");
    char err[40];
    memset(err, 'Z', sizeof(err));
    assert_int_equal(finish(t, err, sizeof(err)), -1);
    assert_int_equal(strlen(err), sizeof(err) - 1);
    assert_memory_equal(err, "alias a: member x@gmail.com is not a lo", sizeof(err) - 1);
}

/* 100k users: every one found by hash. */
static void test_many_users(void **state)
{
    struct tables *t = two_domains();
    enum { N = 100000 };
    for (int i = 0; i < N; i++) {
        char addr[64], name[64];
        snprintf(addr, sizeof(addr), "user%d@example.%s", i, i % 2 ? "net" : "org");
        snprintf(name, sizeof(name), "User Number %d", i);
        add_user(t, addr, name, "");
    }
    add_alias(t, "postmaster", "user0");
    char err[256];
    assert_int_equal(tables_finish(t, err, sizeof(err)), 0);
    assert_int_equal(tables_nusers(t), N);
    for (int i = 0; i < N; i += 997) {
        char local[32];
        snprintf(local, sizeof(local), "USER%d", i);
        size_t n = 0;
        assert_int_equal(resolve(t, local, i % 2 ? "example.net" : "example.org", 1, &n),
                         TABLES_OK);
        assert_int_equal(n, 1);
        char want[64];
        snprintf(want, sizeof(want), "user%d@example.%s", i, i % 2 ? "net" : "org");
        assert_string_equal(mb[0], want);
        assert_int_equal(resolve(t, local, i % 2 ? "example.org" : "example.net", 1, &n),
                         TABLES_UNKNOWN);
    }
    const struct tables_user *out[4];
    assert_int_equal(tables_vrfy(t, "number 99999", out, 4), 1);
    assert_string_equal(out[0]->addr, "user99999@example.net");
    tables_free(t);
}

/* "@domain" catches every unknown address of that domain only; users and aliases come first. */
static void test_catchall(void **state)
{
    (void)state;
    struct tables *t = two_domains();
    add_user(t, "bench@example.org", "Bench", "");
    add_user(t, "alice@example.org", "Alice", "");
    add_user(t, "gone@example.org", "", "new@elsewhere.test");
    add_alias(t, "postmaster", "alice");
    add_alias(t, "@example.org", "bench");
    char err[512];
    assert_int_equal(tables_finish(t, err, sizeof(err)), 0);
    size_t n = 0;
    assert_int_equal(resolve(t, "1rcpt", "example.org", 8, &n), TABLES_OK);
    assert_int_equal(n, 1);
    assert_string_equal(mb[0], "bench@example.org");
    assert_int_equal(resolve(t, "alice", "example.org", 8, &n), TABLES_OK);
    assert_string_equal(mb[0], "alice@example.org");
    assert_int_equal(resolve(t, "gone", "example.org", 8, &n), TABLES_MOVED);
    assert_int_equal(resolve(t, "1rcpt", "example.net", 8, &n), TABLES_UNKNOWN);
    assert_int_equal(resolve(t, "x", "other.test", 8, &n), TABLES_FOREIGN);
    assert_int_equal(add_alias_err(t, "@other.test", err, sizeof(err), "bench", NULL), -1);
    /* the catch-all answers EXPN, but names no alias: a new user may take any such address */
    assert_true(tables_expn(t, "1rcpt@example.org", (const char *[1]){NULL}, 1) >= 0);
    assert_false(tables_names_alias(t, "1rcpt@example.org"));
    assert_true(tables_names_alias(t, "Postmaster@example.org"));
    assert_true(tables_names_alias(t, "postmaster@example.net"));
    tables_free(t);
}

/* Shared mailboxes: stored like a user, members through aliases, checked by tables_finish. */
static int add_shared(struct tables *t, const char *addr, uint64_t quota, char *err, size_t n,
                      const char *m1, const char *m2)
{
    const char *m[2] = {m1, m2};
    return tables_add_shared(t, "mailboxes:1", addr, m, m2 ? 2 : 1, quota, err, n);
}

static void test_shared(void **state)
{
    (void)state;
    struct tables *t = two_domains();
    char err[2048] = "";
    add_user(t, "alice@example.org", "Alice", "");
    add_user(t, "bob@example.org", "Bob", "");
    add_user(t, "carol@example.org", "Carol", "");
    add_user(t, "gone@example.org", "", "x@elsewhere.test");
    add_alias(t, "postmaster", "alice");
    add_alias(t, "devs", "bob", "gone", "team");
    assert_int_equal(add_shared(t, "Team@Example.org", 1000, err, sizeof(err), "alice", "devs"), 0);
    assert_int_equal(tables_finish(t, err, sizeof(err)), 0);
    /* delivered to its own Maildir, once, even through an alias that names it */
    size_t n = 0;
    assert_int_equal(resolve(t, "team", "example.org", 8, &n), TABLES_OK);
    assert_int_equal(n, 1);
    assert_string_equal(mb[0], "team@example.org");
    assert_int_equal(resolve(t, "devs", "example.org", 8, &n), TABLES_OK);
    assert_int_equal(n, 2); /* bob and the team mailbox; gone has moved */
    const struct tables_user *u = tables_user(t, "TEAM@example.org");
    assert_non_null(u);
    assert_true(u->shared && u->locked);
    assert_int_equal(u->quota, 1000);
    assert_string_equal(u->password, "");
    assert_true(tables_is_shared(t, "team@EXAMPLE.org"));
    assert_false(tables_is_shared(t, "alice@example.org"));
    assert_true(tables_is_member(t, "team@example.org", "Alice@example.org"));
    assert_true(tables_is_member(t, "team@example.org", "bob@example.org")); /* via devs */
    assert_false(tables_is_member(t, "team@example.org", "carol@example.org"));
    assert_false(tables_is_member(t, "team@example.org", "gone@example.org"));
    assert_false(tables_is_member(t, "team@example.org", "team@example.org"));
    assert_false(tables_is_member(t, "alice@example.org", "alice@example.org"));
    const char *out[4];
    assert_int_equal(tables_shared_members(t, "team@example.org", out, 4), 2);
    assert_string_equal(out[0], "alice@example.org");
    assert_string_equal(out[1], "devs@example.org");
    assert_int_equal(tables_shared_users(t, "team@example.org", out, 4), 2);
    assert_string_equal(out[0], "alice@example.org");
    assert_string_equal(out[1], "bob@example.org");
    assert_int_equal(tables_shared_members(t, "devs@example.org", out, 4), -1);
    assert_int_equal(tables_nshared(t), 1);
    assert_string_equal(tables_shared_at(t, 0), "team@example.org");
    assert_null(tables_shared_at(t, 1));
    tables_free(t);
}

static void test_shared_errors(void **state)
{
    (void)state;
    struct tables *t = two_domains();
    char err[2048] = "";
    add_user(t, "alice@example.org", "Alice", "");
    add_user(t, "gone@example.org", "", "x@elsewhere.test");
    add_alias(t, "postmaster", "alice");
    assert_int_equal(add_shared(t, "alice@example.org", 0, err, sizeof(err), "alice", NULL), -1);
    assert_non_null(strstr(err, "shared mailbox alice@example.org is also a user"));
    add_alias(t, "ops@example.org", "alice");
    assert_int_equal(add_shared(t, "ops@example.org", 0, err, sizeof(err), "alice", NULL), -1);
    assert_non_null(strstr(err, "is also an alias"));
    assert_int_equal(add_shared(t, "x@other.test", 0, err, sizeof(err), "alice", NULL), -1);
    assert_non_null(strstr(err, "not one of the local domains"));
    assert_int_equal(tables_add_shared(t, NULL, "y@example.org", NULL, 0, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "has no members"));
    assert_int_equal(add_shared(t, "a@example.org", 0, err, sizeof(err), "nobody", NULL), 0);
    assert_int_equal(add_shared(t, "b@example.org", 0, err, sizeof(err), "a", NULL), 0);
    assert_int_equal(add_shared(t, "c@example.org", 0, err, sizeof(err), "gone", NULL), 0);
    assert_int_equal(tables_finish(t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "mailboxes:1: shared mailbox a@example.org: member "
                                "nobody@example.org is not a local user or alias"));
    assert_non_null(strstr(err, "member a@example.org is itself a shared mailbox"));
    assert_non_null(strstr(err, "shared mailbox c@example.org: no member reaches a user"));
    tables_free(t);
}

/* A user with forward= and turn=, as tests and conf/ add one. */
static int add_fwd(struct tables *t, const char *addr, const char *fwd, const char *moved,
                   const char *turn, char *err, size_t n)
{
    struct tables_user u;
    memset(&u, 0, sizeof(u));
    snprintf(u.addr, sizeof(u.addr), "%s", addr);
    snprintf(u.forward, sizeof(u.forward), "%s", fwd);
    snprintf(u.moved, sizeof(u.moved), "%s", moved);
    snprintf(u.turn, sizeof(u.turn), "%s", turn);
    return tables_add_user(t, &u, err, n);
}

static void test_forward(void **state)
{
    (void)state;
    struct tables *t = two_domains();
    char err[512] = "", fwd[TABLES_ADDR_MAX + 1];
    add_user(t, "alice@example.org", "", "");
    assert_int_equal(add_fwd(t, "f1@example.org", "F1@Remote.TEST", "", "", err, sizeof(err)), 0);
    assert_int_equal(add_fwd(t, "f2@example.org", "f2@remote.test", "", "", err, sizeof(err)), 0);
    add_alias(t, "postmaster", "f1"); /* a forwarded postmaster reaches someone */
    add_alias(t, "fwds", "f2", "f1");
    add_alias(t, "mix", "f1", "alice");
    assert_int_equal(add_shared(t, "team@example.org", 0, err, sizeof(err), "f1", NULL), 0);
    assert_int_equal(tables_finish(t, err, sizeof(err)), 0);
    size_t n = 0;
    assert_int_equal(tables_resolve(t, "F1", "example.org", mb, 8, &n, fwd, sizeof(fwd)),
                     TABLES_FORWARD);
    assert_int_equal(n, 1); /* the user reached: its mail goes to the forward address */
    assert_string_equal(mb[0], "f1@example.org");
    assert_string_equal(fwd, "F1@remote.test"); /* the local part is the remote's: as written */
    assert_string_equal(tables_user(t, "f1@example.org")->forward, "F1@remote.test");
    assert_int_equal(tables_resolve(t, "fwds", "example.org", mb, 8, &n, fwd, sizeof(fwd)),
                     TABLES_FORWARD);
    assert_int_equal(n, 2);
    assert_string_equal(fwd, "f2@remote.test"); /* the first one reached */
    assert_int_equal(tables_resolve(t, "mix", "example.org", mb, 8, &n, fwd, sizeof(fwd)),
                     TABLES_OK);
    assert_int_equal(n, 2);
    assert_string_equal(mb[0], "f1@example.org");
    assert_string_equal(mb[1], "alice@example.org");
    assert_int_equal(resolve(t, "f1", "example.org", 0, &n), TABLES_TOO_MANY);
    assert_true(tables_is_member(t, "team@example.org", "f1@example.org")); /* still a person */

    /* what tables_add_user refuses */
    static const struct {
        const char *fwd, *moved, *turn, *err;
    } bad[] = {
        {"x@remote.test", "y@remote.test", "", "user g@example.org has both moved= and forward="},
        {"nope", "", "",
         "user g@example.org: forward=nope is not an address; write "
         "forward=user@domain"},
        {"Alice@Example.NET", "", "",
         "user g@example.org: forward=alice@example.net is in a "
         "local domain; forward= sends mail to other domains"},
        {"", "", "a.test,Example.org",
         "user g@example.org: turn=a.test,example.org names "
         "example.org, a local domain"},
        {"", "", "a.test,,b.test",
         "user g@example.org: turn=a.test,,b.test holds '', which is "
         "not a domain"},
        {"", "", "a.test,x@b.test", "holds 'x@b.test', which is not a domain"},
        {"", "", "a.test,A.TEST", "user g@example.org: turn= names a.test twice; remove one"},
        {"", "", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", "turn= lists more than 16 domains"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(
            add_fwd(t, "g@example.org", bad[i].fwd, bad[i].moved, bad[i].turn, err, sizeof(err)),
            -1);
        if (!strstr(err, bad[i].err))
            fail_msg("case %zu: want \"%s\" in \"%s\"", i, bad[i].err, err);
    }
    assert_null(tables_user(t, "g@example.org"));
    tables_free(t);
}

static void test_turn_domains(void **state)
{
    (void)state;
    struct tables *t = two_domains();
    char err[512] = "", buf[TABLES_TURN_LEN];
    assert_int_equal(add_fwd(t, "a@example.org", "", "", "One.TEST,two.test", err, sizeof(err)), 0);
    const struct tables_user *u = tables_user(t, "a@example.org");
    assert_string_equal(u->turn, "one.test,two.test");
    const char *d[TABLES_TURN_MAX];
    assert_int_equal(tables_turn_domains(u, buf, sizeof(buf), d, TABLES_TURN_MAX), 2);
    assert_string_equal(d[0], "one.test");
    assert_string_equal(d[1], "two.test");
    assert_int_equal(tables_turn_domains(u, buf, sizeof(buf), d, 1), 1);
    assert_int_equal(tables_turn_domains(u, buf, 5, d, TABLES_TURN_MAX), 0); /* no room */
    assert_int_equal(tables_turn_domains(NULL, buf, sizeof(buf), d, TABLES_TURN_MAX), 0);
    add_user(t, "b@example.org", "", ""); /* no turn= */
    u = tables_user(t, "b@example.org");
    assert_int_equal(tables_turn_domains(u, buf, sizeof(buf), d, 4), 0);
    tables_free(t);
}

/* The users file: forward= and turn= read, bad values refused at their file:line. */
static void test_users_file_fields(void **state)
{
    (void)state;
    char dir[64], path[128], buf[4096];
    testfs_make_dir(dir, sizeof(dir), "/tmp/tern-test-tables.XXXXXX", "users",
                    "a@example.org:::::::forward=A@Remote.test turn=c.test,D.test\n"
                    "b@example.org:::::::forward=nope\n"
                    "c@example.org:::::::forward=x@remote.test moved=y@remote.test\n"
                    "d@example.org:::::::turn=c.test,bad..name\n"
                    "e@example.org:::::::turn=c.test,\n"
                    "f@example.org:::::::turn=example.net\n"
                    "g@example.org:::::::forward=g@example.org\n",
                    NULL);
    testfs_path(path, sizeof(path), dir, "users");
    struct tables *t = two_domains();
    struct conf_errors e = {.buf = buf, .cap = sizeof(buf)};
    assert_int_equal(conf_load_users(t, path, &e), 6);
    const struct tables_user *u = tables_user(t, "a@example.org");
    assert_non_null(u);
    assert_string_equal(u->forward, "A@remote.test");
    assert_string_equal(u->turn, "c.test,d.test");
    assert_int_equal(tables_nusers(t), 1);
    static const char *const want[] = {
        ":2: forward=nope for b@example.org is not an address: it has no @domain; write "
        "forward=user@domain\n",
        ":3: user c@example.org has both moved= and forward=",
        ":4: turn=c.test,bad..name for d@example.org: 'bad..name' is not a domain name like "
        "example.org; write turn=domain1,domain2\n",
        ":5: turn=c.test, for e@example.org has an empty domain name",
        ":6: user f@example.org: turn=example.net names example.net, a local domain",
        ":7: user g@example.org: forward=g@example.org is in a local domain",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char line[512];
        snprintf(line, sizeof(line), "%s%s", path, want[i]);
        if (!strstr(buf, line))
            fail_msg("missing \"%s\" in:\n%s", line, buf);
    }
    tables_free(t);
    testfs_rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resolve_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_alias, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_nested_dedup_skips_moved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_bare_alias_each_domain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_postmaster_any_case, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_moved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_foreign_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_max, setup, teardown),
        cmocka_unit_test(test_resolve_too_many),
        cmocka_unit_test_setup_teardown(test_lookups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vrfy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expn, setup, teardown),
        cmocka_unit_test(test_add_errors),
        cmocka_unit_test(test_finish_cycle),
        cmocka_unit_test(test_finish_external_and_unknown_member),
        cmocka_unit_test(test_finish_missing_postmaster),
        cmocka_unit_test(test_finish_moved_only_and_depth),
        cmocka_unit_test(test_finish_truncates),
        cmocka_unit_test(test_many_users),
        cmocka_unit_test(test_catchall),
        cmocka_unit_test(test_shared),
        cmocka_unit_test(test_shared_errors),
        cmocka_unit_test(test_forward),
        cmocka_unit_test(test_turn_domains),
        cmocka_unit_test(test_users_file_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

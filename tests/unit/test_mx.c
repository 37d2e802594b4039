/* Unit tests for the pure routing core (relay/mx.c), no DNS: host name checks, address literals
 * good and malformed, wire-format names and MX rdata (compression, truncation, hostile bytes),
 * the MX order (preference, every tie order reachable from the injected random source, duplicates,
 * the host cap, null MX alone and mixed, IP-address and malformed targets) and the assembly of
 * answers (IPv6 before IPv4 per host, duplicates, the address cap, TEMP versus PERM). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/mx.h"

/* A random source that plays back a script of values, then zeros. */
struct script {
    const uint32_t *v;
    size_t n, at;
};

static uint32_t scripted(void *arg)
{
    struct script *s = arg;
    return s->at < s->n ? s->v[s->at++] : 0;
}

static uint32_t lcg(void *arg)
{
    uint64_t *x = arg;
    *x = *x * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(*x >> 33);
}

static struct mx_rr rr(unsigned pref, const char *name)
{
    struct mx_rr r = {.pref = pref};
    snprintf(r.name, sizeof(r.name), "%s", name);
    r.valid = mx_check_host(name, NULL, 0);
    return r;
}

/* "host/port" of a relay_addr, e.g. "127.0.0.1/25" or "2001:db8::1/25". */
static const char *addr_text(const struct relay_addr *a, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        assert_int_equal(a->len, sizeof(*s6));
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        assert_int_equal(a->ss.ss_family, AF_INET);
        assert_int_equal(a->len, sizeof(*s4));
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        port = ntohs(s4->sin_port);
    }
    snprintf(buf, len, "%s/%u", ip, port);
    return buf;
}

static void test_check_host(void **state)
{
    (void)state;
    char why[256], name[300];
    const char *good[] = {"a.test",       "localhost", "xn--bcher-kva.example",
                          "mx-1.a0.test", "0a.test",   "a.b.c.d.e.f"};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
        assert_true(mx_check_host(good[i], why, sizeof(why)));
    memset(name, 'a', 63);
    strcpy(name + 63, ".test");
    assert_true(mx_check_host(name, why, sizeof(why)));
    name[63] = 'a'; /* a 64-octet label */
    strcpy(name + 64, ".test");
    assert_false(mx_check_host(name, why, sizeof(why)));
    assert_non_null(strstr(why, "63"));
    /* 253 characters is the most a name can have in text (255 octets in wire form) */
    for (size_t i = 0; i < 253; i++)
        name[i] = i % 2 ? '.' : 'a';
    name[253] = '\0';
    assert_true(mx_check_host(name, why, sizeof(why)));
    strcpy(name + 253, "a");
    name[252] = 'a';
    assert_false(mx_check_host(name, why, sizeof(why)));
    assert_non_null(strstr(why, "253"));

    struct {
        const char *name, *reason;
    } bad[] = {
        {"", "empty"},
        {"a.test.", "trailing dot"},
        {"A.test", "lowercase"},
        {"a..test", "empty"},
        {".a.test", "empty"},
        {"-a.test", "hyphen"},
        {"a-.test", "hyphen"},
        {"a_b.test", "0x5f"},
        {"a b.test", "0x20"},
        {"\xc3\xa9.test", "A-labels"},
        {"192.0.2.1", "address literal"},
        {"1.2.3", "all digits"},
        {"a.123", "all digits"},
        {"[1.2.3.4]", "0x5b"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        why[0] = '\0';
        assert_false(mx_check_host(bad[i].name, why, sizeof(why)));
        if (!strstr(why, bad[i].reason))
            fail_msg("\"%s\": why \"%s\" lacks \"%s\"", bad[i].name, why, bad[i].reason);
    }
}

static void test_literal(void **state)
{
    (void)state;
    struct relay_addr a;
    char why[256], buf[64];
    assert_int_equal(mx_literal("[192.0.2.1]", 2525, &a, why, sizeof(why)), 1);
    assert_string_equal(addr_text(&a, buf, sizeof(buf)), "192.0.2.1/2525");
    assert_string_equal(a.host, "[192.0.2.1]");
    assert_int_equal(mx_literal("[IPv6:2001:db8::1]", 25, &a, why, sizeof(why)), 1);
    assert_string_equal(addr_text(&a, buf, sizeof(buf)), "2001:db8::1/25");
    assert_string_equal(a.host, "[IPv6:2001:db8::1]");
    assert_int_equal(mx_literal("[ipv6:::1]", 25, &a, why, sizeof(why)), 1); /* tag any case */
    assert_string_equal(addr_text(&a, buf, sizeof(buf)), "::1/25");
    assert_int_equal(mx_literal("a.test", 25, &a, why, sizeof(why)), 0);
    assert_int_equal(mx_literal("192.0.2.1", 25, &a, why, sizeof(why)), 0);

    struct {
        const char *lit, *reason;
    } bad[] = {
        {"[1.2.3]", "IPv4"},        {"[300.1.1.1]", "IPv4"},   {"[1.2.3.4.5]", "IPv4"},
        {"[01.2.3.4]", "IPv4"},     {"[ 1.2.3.4]", "IPv4"},    {"[IPv6:zz]", "IPv6"},
        {"[IPv6:1.2.3.4]", "IPv6"}, {"[IPv6:]", "IPv6"},       {"[2001:db8::1]", "tag"},
        {"[x-tag:stuff]", "tag"},   {"[1.2.3.4", "closing"},   {"[]", "closing"},
        {"[IPv6:::1%lo]", "IPv6"},  {"[1.2.3.4]x", "closing"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        why[0] = '\0';
        assert_int_equal(mx_literal(bad[i].lit, 25, &a, why, sizeof(why)), -1);
        if (!strstr(why, bad[i].reason))
            fail_msg("%s: why \"%s\" lacks \"%s\"", bad[i].lit, why, bad[i].reason);
    }
    char longlit[300];
    longlit[0] = '[';
    memset(longlit + 1, '1', 280);
    strcpy(longlit + 281, "]");
    assert_int_equal(mx_literal(longlit, 25, &a, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "255"));
}

static void test_wire_name(void **state)
{
    (void)state;
    char out[256];
    bool clean;
    assert_int_equal(mx_wire_name((const unsigned char *)"\0", 1, out, sizeof(out), &clean), 1);
    assert_string_equal(out, ".");
    const unsigned char mx[] = "\3MX1\1A\4Test\0";
    assert_int_equal(mx_wire_name(mx, sizeof(mx) - 1, out, sizeof(out), &clean), 12);
    assert_string_equal(out, "mx1.a.test");
    assert_true(clean);
    /* truncated anywhere */
    for (size_t len = 0; len < sizeof(mx) - 1; len++)
        assert_int_equal(mx_wire_name(mx, len, out, sizeof(out), &clean), -1);
    /* a compression pointer (libunbound hands rdata uncompressed, so it is malformed) */
    const unsigned char ptr[] = "\3mx1\xc0\x0c";
    assert_int_equal(mx_wire_name(ptr, sizeof(ptr) - 1, out, sizeof(out), &clean), -1);
    /* hostile bytes, a dot inside a label among them, come out as '?' and not clean */
    const unsigned char evil[] = "\4a.\n\x80\4test\0";
    assert_int_equal(mx_wire_name(evil, sizeof(evil) - 1, out, sizeof(out), &clean), 11);
    assert_string_equal(out, "a???.test");
    assert_false(clean);
    /* 255 octets is the most; 257 is too long */
    unsigned char w[300];
    size_t o = 0;
    for (int i = 0; i < 4; i++) {
        w[o++] = 63;
        memset(w + o, 'a', 63);
        o += 63;
    }
    w[o++] = 0; /* 257 octets */
    assert_int_equal(mx_wire_name(w, o, out, sizeof(out), &clean), -1);
    w[3 * 64] = 61; /* last label 61: 255 octets */
    w[3 * 64 + 62] = 0;
    assert_int_equal(mx_wire_name(w, 255, out, sizeof(out), &clean), 255);
    assert_int_equal(strlen(out), 253);
    assert_int_equal(mx_wire_name(w, 255, out, 253, &clean), -1); /* out too small */
}

static void test_parse_rdata(void **state)
{
    (void)state;
    struct mx_rr r;
    const unsigned char good[] = "\x01\x02\3mx1\1a\4test\0";
    assert_int_equal(mx_parse_rdata(good, sizeof(good) - 1, &r), 0);
    assert_int_equal(r.pref, 258);
    assert_string_equal(r.name, "mx1.a.test");
    assert_true(r.valid);
    const unsigned char null[] = "\0\0\0";
    assert_int_equal(mx_parse_rdata(null, 3, &r), 0);
    assert_string_equal(r.name, ".");
    assert_false(r.valid);
    const unsigned char ip[] = "\0\x0a\3"
                               "192\1"
                               "0\1"
                               "2\1"
                               "1\0";
    assert_int_equal(mx_parse_rdata(ip, sizeof(ip) - 1, &r), 0);
    assert_string_equal(r.name, "192.0.2.1");
    assert_false(r.valid);
    assert_int_equal(mx_parse_rdata(good, sizeof(good), &r), -1); /* an octet after the name */
    assert_int_equal(mx_parse_rdata(good, 2, &r), -1);
    assert_int_equal(mx_parse_rdata(good, 5, &r), -1);
}

/* mx_select over rrs, returning the target names joined by spaces. */
static enum relay_dns_status select_names(struct mx_rr *rrs, size_t n, mx_random_fn *rng, void *arg,
                                          char *names, size_t len, char *why, size_t whylen)
{
    struct mx_target t[RELAY_MAX_HOSTS];
    size_t nt = 99;
    enum relay_dns_status st = mx_select("a.test", rrs, n, rng, arg, t, &nt, why, whylen);
    names[0] = '\0';
    for (size_t i = 0; i < nt; i++) {
        assert_int_equal(t[i].n4 + t[i].n6, 0);
        snprintf(names + strlen(names), len - strlen(names), "%s%s/%u", i ? " " : "", t[i].name,
                 t[i].pref);
    }
    if (st != RELAY_DNS_OK)
        assert_int_equal(nt, 0);
    return st;
}

static void test_select_order(void **state)
{
    (void)state;
    char names[2048], why[512];
    /* the DNS order does not matter: records are put in name order before the draw */
    struct mx_rr in[] = {rr(20, "mx3.a.test"), rr(10, "mx2.a.test"), rr(10, "mx1.a.test")};
    struct mx_rr rrs[3];
    const uint32_t keep[] = {2, 1}, swap[] = {0, 0};
    struct script s = {keep, 2, 0};
    memcpy(rrs, in, sizeof(in));
    assert_int_equal(select_names(rrs, 3, scripted, &s, names, sizeof(names), why, sizeof(why)),
                     RELAY_DNS_OK);
    assert_string_equal(names, "mx1.a.test/10 mx2.a.test/10 mx3.a.test/20");
    assert_string_equal(why, "");
    s = (struct script){swap, 2, 0};
    memcpy(rrs, in, sizeof(in));
    select_names(rrs, 3, scripted, &s, names, sizeof(names), why, sizeof(why));
    assert_string_equal(names, "mx2.a.test/10 mx1.a.test/10 mx3.a.test/20");

    /* three equal preferences: the six draws give the six orders */
    char seen[6][128];
    size_t nseen = 0;
    for (uint32_t j2 = 0; j2 < 3; j2++) {
        for (uint32_t j1 = 0; j1 < 2; j1++) {
            struct mx_rr eq[] = {rr(5, "c.test"), rr(5, "a.test"), rr(5, "b.test")};
            const uint32_t v[] = {j2, j1};
            s = (struct script){v, 2, 0};
            select_names(eq, 3, scripted, &s, names, sizeof(names), why, sizeof(why));
            for (size_t k = 0; k < nseen; k++)
                assert_string_not_equal(seen[k], names);
            assert_true(strlen(names) < sizeof(seen[0]));
            memcpy(seen[nseen++], names, strlen(names) + 1);
        }
    }
    assert_int_equal(nseen, 6);

    /* and a real random source spreads over them: each order about 1/6 of 600 draws */
    uint64_t x = 42;
    unsigned first_a = 0, first_b = 0, first_c = 0;
    for (int i = 0; i < 600; i++) {
        struct mx_rr eq[] = {rr(5, "c.test"), rr(5, "a.test"), rr(5, "b.test")};
        select_names(eq, 3, lcg, &x, names, sizeof(names), why, sizeof(why));
        first_a += names[0] == 'a';
        first_b += names[0] == 'b';
        first_c += names[0] == 'c';
    }
    assert_true(first_a > 150 && first_b > 150 && first_c > 150);

    /* duplicates keep their lowest preference; at most RELAY_MAX_HOSTS */
    struct mx_rr many[15];
    for (unsigned i = 0; i < 15; i++) {
        char n[32];
        snprintf(n, sizeof(n), "h%02u.a.test", i);
        many[i] = rr(100 - i, n);
    }
    many[14] = rr(1, "h13.a.test"); /* h13 again, at preference 1 */
    s = (struct script){NULL, 0, 0};
    assert_int_equal(select_names(many, 15, scripted, &s, names, sizeof(names), why, sizeof(why)),
                     RELAY_DNS_OK);
    assert_string_equal(names, "h13.a.test/1 h12.a.test/88 h11.a.test/89 h10.a.test/90 "
                               "h09.a.test/91 h08.a.test/92 h07.a.test/93 h06.a.test/94 "
                               "h05.a.test/95 h04.a.test/96");
}

static void test_select_null_and_bad(void **state)
{
    (void)state;
    char names[1024], why[512];
    struct script s = {NULL, 0, 0};
    struct mx_rr null1[] = {rr(0, ".")};
    assert_int_equal(select_names(null1, 1, scripted, &s, names, sizeof(names), why, sizeof(why)),
                     RELAY_DNS_NULLMX);
    assert_non_null(strstr(why, "a.test does not accept mail"));
    assert_non_null(strstr(why, "RFC 7505"));
    struct mx_rr null2[] = {rr(0, "."), rr(10, ".")};
    assert_int_equal(select_names(null2, 2, scripted, &s, names, sizeof(names), why, sizeof(why)),
                     RELAY_DNS_NULLMX);
    /* "." among real records is ignored */
    struct mx_rr mixed[] = {rr(0, "."), rr(10, "mx.a.test")};
    assert_int_equal(select_names(mixed, 2, scripted, &s, names, sizeof(names), why, sizeof(why)),
                     RELAY_DNS_OK);
    assert_string_equal(names, "mx.a.test/10");
    assert_string_equal(why, "");
    /* IP-address and malformed targets are skipped, and said so */
    struct mx_rr ipmix[] = {rr(5, "192.0.2.1"), rr(10, "mx.a.test"), rr(1, "bad_name.test")};
    assert_int_equal(select_names(ipmix, 3, scripted, &s, names, sizeof(names), why, sizeof(why)),
                     RELAY_DNS_OK);
    assert_string_equal(names, "mx.a.test/10");
    assert_non_null(strstr(why, "192.0.2.1"));
    assert_non_null(strstr(why, "bad_name.test"));
    /* nothing usable: temporary (the domain's owner can fix it), with the names */
    struct mx_rr ipmx[] = {rr(10, "192.0.2.1"), rr(0, ".")};
    assert_int_equal(select_names(ipmx, 2, scripted, &s, names, sizeof(names), why, sizeof(why)),
                     RELAY_DNS_TEMP);
    assert_non_null(strstr(why, "MX records of a.test name no usable host"));
    assert_non_null(strstr(why, "192.0.2.1"));
}

static struct mx_target target(const char *name, unsigned pref)
{
    struct mx_target t;
    memset(&t, 0, sizeof(t));
    snprintf(t.name, sizeof(t.name), "%s", name);
    t.pref = pref;
    t.out6 = t.out4 = MX_NODATA;
    return t;
}

static void add4(struct mx_target *t, const char *ip)
{
    assert_int_equal(inet_pton(AF_INET, ip, t->a4[t->n4++]), 1);
    t->out4 = MX_ADDRS;
}

static void add6(struct mx_target *t, const char *ip)
{
    assert_int_equal(inet_pton(AF_INET6, ip, t->a6[t->n6++]), 1);
    t->out6 = MX_ADDRS;
}

static void test_assemble(void **state)
{
    (void)state;
    struct relay_route r;
    char why[1024], buf[64];
    struct mx_target t[3] = {target("mx1.a.test", 10), target("mx2.a.test", 20),
                             target("mx3.a.test", 30)};
    add4(&t[0], "192.0.2.1");
    add6(&t[0], "2001:db8::1");
    add4(&t[0], "192.0.2.2");
    t[1].out6 = t[1].out4 = MX_NXDOMAIN;
    add4(&t[2], "192.0.2.1"); /* same address as mx1: tried once */
    add6(&t[2], "::1");
    t[2].secure6 = true;
    assert_int_equal(mx_assemble(MX_KIND_MX, "a.test", t, 3, 25, true, &r, why, sizeof(why)),
                     RELAY_DNS_OK);
    assert_int_equal(r.n, 4);
    const char *want[] = {"2001:db8::1/25", "192.0.2.1/25", "192.0.2.2/25", "::1/25"};
    const char *host[] = {"mx1.a.test", "mx1.a.test", "mx1.a.test", "mx3.a.test"};
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(addr_text(&r.addrs[i], buf, sizeof(buf)), want[i]);
        assert_string_equal(r.addrs[i].host, host[i]);
    }
    assert_int_equal(r.addrs[0].pref, 10);
    assert_int_equal(r.addrs[3].pref, 30);
    assert_false(r.addrs[0].secure);
    assert_true(r.addrs[3].secure);
    assert_true(r.mx_secure);
    assert_false(r.implicit_mx);
    assert_non_null(strstr(why, "mx2.a.test: no such host (NXDOMAIN)"));

    /* the address cap */
    struct mx_target big[2] = {target("a.test", 0), target("b.test", 1)};
    for (int i = 0; i < 15; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.0.0.%d", i);
        add4(&big[0], ip);
        snprintf(ip, sizeof(ip), "10.0.1.%d", i);
        add4(&big[1], ip);
    }
    assert_int_equal(mx_assemble(MX_KIND_MX, "a.test", big, 2, 25, false, &r, why, sizeof(why)),
                     RELAY_DNS_OK);
    assert_int_equal(r.n, RELAY_MAX_ADDRS);
    assert_string_equal(addr_text(&r.addrs[19], buf, sizeof(buf)), "10.0.1.4/25");

    /* no address: PERM when every lookup said NXDOMAIN or NODATA, TEMP if one failed */
    struct mx_target f[2] = {target("gone.a.test", 10), target("empty.a.test", 20)};
    f[0].out6 = f[0].out4 = MX_NXDOMAIN;
    assert_int_equal(mx_assemble(MX_KIND_MX, "a.test", f, 2, 25, false, &r, why, sizeof(why)),
                     RELAY_DNS_PERM);
    assert_int_equal(r.n, 0);
    assert_string_equal(why, "no MX host of a.test has an address: gone.a.test: no such host "
                             "(NXDOMAIN); empty.a.test: no A or AAAA records");
    f[1].out4 = MX_TEMP;
    snprintf(f[1].fail4, sizeof(f[1].fail4), "SERVFAIL");
    assert_int_equal(mx_assemble(MX_KIND_MX, "a.test", f, 2, 25, false, &r, why, sizeof(why)),
                     RELAY_DNS_TEMP);
    assert_non_null(strstr(why, "empty.a.test: A lookup failed (SERVFAIL)"));
    f[1].out4 = MX_PENDING; /* given up on */
    assert_int_equal(mx_assemble(MX_KIND_MX, "a.test", f, 2, 25, false, &r, why, sizeof(why)),
                     RELAY_DNS_TEMP);

    struct mx_target self = target("a.test", 0);
    assert_int_equal(
        mx_assemble(MX_KIND_IMPLICIT, "a.test", &self, 1, 25, false, &r, why, sizeof(why)),
        RELAY_DNS_PERM);
    assert_true(r.implicit_mx);
    assert_string_equal(why, "a.test has no MX records and no address (a.test: no A or AAAA "
                             "records)");
    self.out6 = MX_TEMP;
    snprintf(self.fail6, sizeof(self.fail6), "REFUSED");
    assert_int_equal(mx_assemble(MX_KIND_HOST, "a.test", &self, 1, 25, false, &r, why, sizeof(why)),
                     RELAY_DNS_TEMP);
    assert_string_equal(why, "host a.test has no address: a.test: AAAA lookup failed (REFUSED)");
}

static void test_route_add(void **state)
{
    (void)state;
    struct relay_route r = {0};
    unsigned char a[4] = {127, 0, 0, 1}, a6[16] = {0};
    a6[15] = 1;
    assert_true(mx_route_add(&r, AF_INET, a, 65535, "h.test", 3, false));
    assert_false(mx_route_add(&r, AF_INET, a, 25, "other.test", 4, false));
    assert_true(mx_route_add(&r, AF_INET6, a6, 1, "h.test", 3, true));
    assert_int_equal(r.n, 2);
    char buf[64];
    assert_string_equal(addr_text(&r.addrs[0], buf, sizeof(buf)), "127.0.0.1/65535");
    assert_string_equal(addr_text(&r.addrs[1], buf, sizeof(buf)), "::1/1");
    assert_true(r.addrs[1].secure);
    for (unsigned i = 2; i < 40; i++) {
        a[3] = (unsigned char)i;
        assert_true(mx_route_add(&r, AF_INET, a, 25, "h.test", 3, false) == (i < RELAY_MAX_ADDRS));
    }
    assert_int_equal(r.n, RELAY_MAX_ADDRS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_host),   cmocka_unit_test(test_literal),
        cmocka_unit_test(test_wire_name),    cmocka_unit_test(test_parse_rdata),
        cmocka_unit_test(test_select_order), cmocka_unit_test(test_select_null_and_bad),
        cmocka_unit_test(test_assemble),     cmocka_unit_test(test_route_add),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

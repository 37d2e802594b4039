/* Unit tests for relay/dns.c against the real libunbound with no network: each test writes an
 * unbound.conf whose "test." zone is static local data and whose root is refused locally, so no
 * query leaves the machine; "slow." is forwarded to a UDP socket on 127.0.0.1 that never answers
 * (timeouts). Each test drives an event_base until the callbacks come, bounded in time. Covered:
 * MX order and the injected tie-break, implicit MX (A only, AAAA only, both), null MX alone and
 * mixed, NXDOMAIN, REFUSED, MX hosts without addresses skipped, TEMP versus PERM, the caps,
 * address literals and explicit hosts, address families, the port in every address, cancel
 * before and during the lookups, free with lookups outstanding and from inside a callback, the
 * route timeout, configuration errors, and the default (resolv.conf + hosts) configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testfs.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "relay/dns.h"

#define PORT 2525

struct fx {
    char dir[64];
    char conf[128];
    char err[512];
    struct event_base *base;
    struct relay_dns *d;
    int silent; /* the UDP socket "slow." is forwarded to */
};

/* What a callback was given. */
struct got {
    int calls;
    enum relay_dns_status st;
    struct relay_route route;
    char why[1024];
    struct relay_dns **free_d; /* free this resolver from inside the callback */
};

static const char *zone = "server:\n"
                          "    module-config: \"iterator\"\n"
                          "    do-not-query-localhost: no\n"
                          "    verbosity: 0\n"
                          "    local-zone: \".\" refuse\n"
                          "    local-zone: \"slow.\" transparent\n"
                          "    local-zone: \"test.\" static\n"
                          "    local-data: \"three.test. MX 20 mx3.three.test.\"\n"
                          "    local-data: \"three.test. MX 10 mx2.three.test.\"\n"
                          "    local-data: \"three.test. MX 10 mx1.three.test.\"\n"
                          "    local-data: \"mx1.three.test. A 127.0.0.11\"\n"
                          "    local-data: \"mx2.three.test. A 127.0.0.12\"\n"
                          "    local-data: \"mx2.three.test. AAAA 2001:db8::12\"\n"
                          "    local-data: \"mx3.three.test. A 127.0.0.13\"\n"
                          "    local-data: \"aonly.test. A 127.0.0.1\"\n"
                          "    local-data: \"aaaaonly.test. AAAA ::1\"\n"
                          "    local-data: \"both.test. A 127.0.0.1\"\n"
                          "    local-data: \"both.test. AAAA ::1\"\n"
                          "    local-data: \"txtonly.test. TXT hello\"\n"
                          "    local-data: \"null.test. MX 0 .\"\n"
                          "    local-data: \"nullmix.test. MX 0 .\"\n"
                          "    local-data: \"nullmix.test. MX 10 mx.nullmix.test.\"\n"
                          "    local-data: \"mx.nullmix.test. A 127.0.0.5\"\n"
                          "    local-data: \"skip.test. MX 10 gone.skip.test.\"\n"
                          "    local-data: \"skip.test. MX 20 mx.skip.test.\"\n"
                          "    local-data: \"mx.skip.test. A 127.0.0.6\"\n"
                          "    local-data: \"noaddr.test. MX 10 gone.noaddr.test.\"\n"
                          "    local-data: \"noaddr.test. MX 20 txtonly.test.\"\n"
                          "    local-data: \"tempmx.test. MX 10 host.elsewhere.\"\n"
                          "    local-data: \"tempmx.test. MX 20 gone.skip.test.\"\n"
                          "    local-data: \"ipmx.test. MX 10 192.0.2.1.\"\n"
                          "    local-data: \"ipmix.test. MX 10 192.0.2.1.\"\n"
                          "    local-data: \"ipmix.test. MX 20 mx.skip.test.\"\n"
                          "    local-data: \"partial.test. MX 10 h.slow.\"\n"
                          "    local-data: \"partial.test. MX 20 mx.skip.test.\"\n";

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->silent = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(f->silent, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(f->silent, (struct sockaddr *)&sin, &len), 0);

    snprintf(f->dir, sizeof(f->dir), "/tmp/tern-dns-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->conf, sizeof(f->conf), "%s/unbound.conf", f->dir);
    FILE *fp = fopen(f->conf, "w");
    assert_non_null(fp);
    fputs(zone, fp);
    /* many.test: 12 MX hosts of 3 addresses each, more than both caps */
    for (int i = 1; i <= 12; i++) {
        fprintf(fp, "    local-data: \"many.test. MX %d h%02d.many.test.\"\n", i, i);
        for (int k = 1; k <= 3; k++)
            fprintf(fp, "    local-data: \"h%02d.many.test. A 127.0.%d.%d\"\n", i, i, k);
    }
    fprintf(fp, "forward-zone:\n    name: \"slow.\"\n    forward-addr: 127.0.0.1@%u\n",
            (unsigned)ntohs(sin.sin_port));
    assert_int_equal(fclose(fp), 0);

    f->base = event_base_new();
    assert_non_null(f->base);
    f->d = relay_dns_new(f->base, f->conf, f->err, sizeof(f->err));
    if (!f->d)
        fail_msg("relay_dns_new: %s", f->err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    relay_dns_free(f->d);
    event_base_free(f->base);
    close(f->silent);
    testfs_rm_tree(f->dir);
    free(f);
    return 0;
}

static void on_route(void *arg, enum relay_dns_status st, const struct relay_route *r,
                     const char *why)
{
    struct got *g = arg;
    g->calls++;
    g->st = st;
    g->route = *r;
    snprintf(g->why, sizeof(g->why), "%s", why);
    if (g->free_d && *g->free_d) {
        relay_dns_free(*g->free_d);
        *g->free_d = NULL;
    }
}

static void expired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the loop until each of gs (NULL-terminated; none: run the full time) was called, or ms. */
static void run(struct fx *f, struct got **gs, unsigned ms)
{
    bool timeout = false;
    struct event *t = evtimer_new(f->base, expired, &timeout);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t, &tv);
    while (!timeout) {
        bool all = gs != NULL;
        for (size_t i = 0; gs && gs[i]; i++)
            all = all && gs[i]->calls > 0;
        if (all)
            break;
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    event_free(t);
}

/* Starts a route for domain into g (asserting fn is not called from inside the call). */
static void start(struct fx *f, const char *domain, struct got *g)
{
    memset(g, 0, sizeof(*g));
    char why[512];
    if (!relay_dns_route(f->d, domain, PORT, on_route, g, why, sizeof(why)))
        fail_msg("relay_dns_route(%s): %s", domain, why);
    assert_int_equal(g->calls, 0);
}

/* One route, run to its answer. */
static void route(struct fx *f, const char *domain, struct got *g)
{
    start(f, domain, g);
    struct got *gs[] = {g, NULL};
    run(f, gs, 5000);
    if (g->calls != 1)
        fail_msg("%s: %d calls", domain, g->calls);
}

/* The route as "host=ip pref; ..." with the port checked in every address. */
static const char *shown(const struct got *g, unsigned port)
{
    static char buf[4096];
    buf[0] = '\0';
    for (size_t i = 0; i < g->route.n; i++) {
        const struct relay_addr *a = &g->route.addrs[i];
        char ip[INET6_ADDRSTRLEN];
        if (a->ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
            assert_int_equal(a->len, sizeof(*s6));
            assert_int_equal(ntohs(s6->sin6_port), port);
            inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        } else {
            const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
            assert_int_equal(a->ss.ss_family, AF_INET);
            assert_int_equal(a->len, sizeof(*s4));
            assert_int_equal(ntohs(s4->sin_port), port);
            inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        }
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s=%s %u", i ? "; " : "", a->host,
                 ip, a->pref);
    }
    return buf;
}

struct script {
    const uint32_t *v;
    size_t n, at;
};

static uint32_t scripted(void *arg)
{
    struct script *s = arg;
    return s->at < s->n ? s->v[s->at++] : 0;
}

static void test_mx_order(void **state)
{
    struct fx *f = *state;
    struct got g;
    const uint32_t keep[] = {2, 1}, swap[] = {0, 0};
    struct script s = {keep, 2, 0};
    relay_dns_set_random(f->d, scripted, &s);
    double t0 = now();
    route(f, "three.test", &g);
    assert_true(now() - t0 < 2.0); /* answered locally: nothing went out and waited */
    assert_int_equal(g.st, RELAY_DNS_OK);
    assert_false(g.route.implicit_mx);
    assert_string_equal(g.why, "");
    /* preference order; within a host IPv6 first */
    assert_string_equal(shown(&g, PORT),
                        "mx1.three.test=127.0.0.11 10; mx2.three.test=2001:db8::12 10; "
                        "mx2.three.test=127.0.0.12 10; mx3.three.test=127.0.0.13 20");
    s = (struct script){swap, 2, 0};
    route(f, "three.test", &g);
    assert_string_equal(shown(&g, PORT),
                        "mx2.three.test=2001:db8::12 10; mx2.three.test=127.0.0.12 10; "
                        "mx1.three.test=127.0.0.11 10; mx3.three.test=127.0.0.13 20");
    assert_int_equal(s.at, 2); /* the draw came from the injected source */
}

static void test_implicit_mx(void **state)
{
    struct fx *f = *state;
    struct got a, aaaa, both;
    start(f, "aonly.test", &a); /* three at once */
    start(f, "aaaaonly.test", &aaaa);
    start(f, "both.test", &both);
    struct got *gs[] = {&a, &aaaa, &both, NULL};
    run(f, gs, 5000);
    assert_int_equal(a.calls + aaaa.calls + both.calls, 3);
    assert_int_equal(a.st, RELAY_DNS_OK);
    assert_true(a.route.implicit_mx);
    assert_string_equal(shown(&a, PORT), "aonly.test=127.0.0.1 0");
    assert_int_equal(aaaa.st, RELAY_DNS_OK);
    assert_string_equal(shown(&aaaa, PORT), "aaaaonly.test=::1 0");
    assert_int_equal(both.st, RELAY_DNS_OK);
    assert_true(both.route.implicit_mx);
    assert_string_equal(shown(&both, PORT), "both.test=::1 0; both.test=127.0.0.1 0");
}

static void test_null_mx(void **state)
{
    struct fx *f = *state;
    struct got g;
    route(f, "null.test", &g);
    assert_int_equal(g.st, RELAY_DNS_NULLMX);
    assert_int_equal(g.route.n, 0);
    assert_non_null(strstr(g.why, "null.test does not accept mail"));
    route(f, "nullmix.test", &g); /* "." beside a real MX is ignored */
    assert_int_equal(g.st, RELAY_DNS_OK);
    assert_string_equal(shown(&g, PORT), "mx.nullmix.test=127.0.0.5 10");
}

static void test_failures(void **state)
{
    struct fx *f = *state;
    struct got g;
    /* a name in the static zone with no data at all: unbound says NXDOMAIN */
    route(f, "nx.test", &g);
    assert_int_equal(g.st, RELAY_DNS_PERM);
    assert_string_equal(g.why, "domain nx.test does not exist (NXDOMAIN)");
    /* exists, but neither MX nor address */
    route(f, "txtonly.test", &g);
    assert_int_equal(g.st, RELAY_DNS_PERM);
    assert_non_null(strstr(g.why, "txtonly.test has no MX records and no address"));
    /* the server refuses: temporary */
    route(f, "nowhere.example", &g);
    assert_int_equal(g.st, RELAY_DNS_TEMP);
    assert_string_equal(g.why, "MX lookup for nowhere.example failed: REFUSED");
    /* every MX host NXDOMAIN or NODATA: permanent */
    route(f, "noaddr.test", &g);
    assert_int_equal(g.st, RELAY_DNS_PERM);
    assert_string_equal(g.why, "no MX host of noaddr.test has an address: gone.noaddr.test: no "
                               "such host (NXDOMAIN); txtonly.test: no A or AAAA records");
    /* one NXDOMAIN, one refused: temporary */
    route(f, "tempmx.test", &g);
    assert_int_equal(g.st, RELAY_DNS_TEMP);
    assert_non_null(strstr(g.why, "host.elsewhere: AAAA lookup failed (REFUSED)"));
    assert_non_null(strstr(g.why, "gone.skip.test: no such host (NXDOMAIN)"));
    /* an MX naming an IP address only */
    route(f, "ipmx.test", &g);
    assert_int_equal(g.st, RELAY_DNS_TEMP);
    assert_non_null(strstr(g.why, "name no usable host"));
    assert_non_null(strstr(g.why, "192.0.2.1"));
}

static void test_hosts_skipped(void **state)
{
    struct fx *f = *state;
    struct got g;
    route(f, "skip.test", &g);
    assert_int_equal(g.st, RELAY_DNS_OK);
    assert_string_equal(shown(&g, PORT), "mx.skip.test=127.0.0.6 20");
    assert_non_null(strstr(g.why, "gone.skip.test: no such host (NXDOMAIN)"));
    route(f, "ipmix.test", &g);
    assert_int_equal(g.st, RELAY_DNS_OK);
    assert_string_equal(shown(&g, PORT), "mx.skip.test=127.0.0.6 20");
    assert_non_null(strstr(g.why, "192.0.2.1"));
}

static void test_caps(void **state)
{
    struct fx *f = *state;
    struct got g;
    route(f, "many.test", &g);
    assert_int_equal(g.st, RELAY_DNS_OK);
    assert_int_equal(g.route.n, RELAY_MAX_ADDRS);
    /* hosts by preference, three addresses each, the 20th from h07 */
    for (size_t i = 0; i < g.route.n; i++) {
        char want[32];
        snprintf(want, sizeof(want), "h%02zu.many.test", i / 3 + 1);
        assert_string_equal(g.route.addrs[i].host, want);
        assert_int_equal(g.route.addrs[i].pref, i / 3 + 1);
    }
    shown(&g, PORT);
}

static void test_literals_and_hosts(void **state)
{
    struct fx *f = *state;
    struct got g;
    char why[512];
    route(f, "[127.0.0.1]", &g);
    assert_int_equal(g.st, RELAY_DNS_OK);
    assert_string_equal(shown(&g, PORT), "[127.0.0.1]=127.0.0.1 0");
    route(f, "[IPv6:::1]", &g);
    assert_string_equal(shown(&g, PORT), "[IPv6:::1]=::1 0");
    const char *bad[] = {"[1.2.3]",     "[IPv6:zz]", "[300.1.1.1]", "Three.test",
                         "three.test.", "127.0.0.1", "a..test",     ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        why[0] = '\0';
        assert_null(relay_dns_route(f->d, bad[i], PORT, on_route, &g, why, sizeof(why)));
        assert_true(strlen(why) > 20);
    }
    assert_null(relay_dns_route(f->d, "three.test", 0, on_route, &g, why, sizeof(why)));
    assert_non_null(strstr(why, "out of range"));
    assert_null(relay_dns_route(f->d, "three.test", 65536, on_route, &g, why, sizeof(why)));

    /* an explicit host: no MX lookup; bare addresses allowed */
    struct got h1, h2, h3, h4;
    memset(&h1, 0, sizeof(h1));
    memset(&h2, 0, sizeof(h2));
    memset(&h3, 0, sizeof(h3));
    memset(&h4, 0, sizeof(h4));
    assert_non_null(relay_dns_host(f->d, "mx2.three.test", 587, false, on_route, &h1, why, 512));
    assert_non_null(relay_dns_host(f->d, "127.0.0.1", 587, false, on_route, &h2, why, 512));
    assert_non_null(relay_dns_host(f->d, "::1", 587, false, on_route, &h3, why, 512));
    assert_non_null(relay_dns_host(f->d, "gone.skip.test", 587, false, on_route, &h4, why, 512));
    assert_int_equal(h1.calls + h2.calls + h3.calls + h4.calls, 0);
    struct got *gs[] = {&h1, &h2, &h3, &h4, NULL};
    run(f, gs, 5000);
    assert_string_equal(shown(&h1, 587),
                        "mx2.three.test=2001:db8::12 0; mx2.three.test=127.0.0.12 0");
    assert_false(h1.route.implicit_mx);
    assert_string_equal(shown(&h2, 587), "127.0.0.1=127.0.0.1 0");
    assert_string_equal(shown(&h3, 587), "::1=::1 0");
    assert_int_equal(h4.st, RELAY_DNS_PERM);
    assert_string_equal(h4.why, "host gone.skip.test has no address: gone.skip.test: no such "
                                "host (NXDOMAIN)");
    /* with an MX lookup, through relay_dns_host */
    memset(&h1, 0, sizeof(h1));
    assert_non_null(relay_dns_host(f->d, "skip.test", 25, true, on_route, &h1, why, 512));
    run(f, gs, 5000);
    assert_string_equal(shown(&h1, 25), "mx.skip.test=127.0.0.6 20");
}

static void test_protocols(void **state)
{
    struct fx *f = *state;
    struct got g;
    relay_dns_set_protocols(f->d, true, false);
    route(f, "both.test", &g);
    assert_string_equal(shown(&g, PORT), "both.test=127.0.0.1 0");
    route(f, "aaaaonly.test", &g);
    assert_int_equal(g.st, RELAY_DNS_PERM);
    relay_dns_set_protocols(f->d, false, true);
    route(f, "both.test", &g);
    assert_string_equal(shown(&g, PORT), "both.test=::1 0");
    relay_dns_set_protocols(f->d, false, false); /* ignored: keeps IPv6 only */
    route(f, "three.test", &g);
    assert_string_equal(shown(&g, PORT), "mx2.three.test=2001:db8::12 10");
}

static void test_cancel(void **state)
{
    struct fx *f = *state;
    struct got c1, c2, c3, ok;
    char why[512];
    memset(&c1, 0, sizeof(c1));
    memset(&c2, 0, sizeof(c2));
    memset(&c3, 0, sizeof(c3));
    /* before the MX answer, and a literal whose answer is already decided */
    relay_dns_cancel(relay_dns_route(f->d, "three.test", PORT, on_route, &c1, why, sizeof(why)));
    relay_dns_cancel(relay_dns_route(f->d, "[127.0.0.1]", PORT, on_route, &c2, why, 512));
    /* during the host lookups: the MX is local, h.slow. never answers */
    struct relay_dns_query *q =
        relay_dns_route(f->d, "partial.test", PORT, on_route, &c3, why, sizeof(why));
    assert_non_null(q);
    route(f, "three.test", &ok); /* answered after the cancelled ones were asked */
    run(f, NULL, 200);
    relay_dns_cancel(q);
    run(f, NULL, 300);
    assert_int_equal(ok.calls, 1);
    assert_int_equal(c1.calls + c2.calls + c3.calls, 0);
    relay_dns_cancel(NULL);
}

static void test_free_outstanding(void **state)
{
    struct fx *f = *state;
    struct got g[4];
    start(f, "a.slow", &g[0]);       /* MX never answered */
    start(f, "partial.test", &g[1]); /* MX answered, one host never */
    run(f, NULL, 100);
    start(f, "three.test", &g[2]);  /* asked, not yet answered */
    start(f, "[127.0.0.1]", &g[3]); /* decided, not yet handed over */
    relay_dns_free(f->d);
    f->d = NULL;
    run(f, NULL, 200);
    for (int i = 0; i < 4; i++)
        assert_int_equal(g[i].calls, 0);
}

static void test_free_in_callback(void **state)
{
    struct fx *f = *state;
    struct got g[3];
    start(f, "both.test", &g[0]);
    start(f, "[127.0.0.1]", &g[1]);
    start(f, "a.slow", &g[2]);
    for (int i = 0; i < 3; i++)
        g[i].free_d = &f->d;
    run(f, NULL, 300);
    assert_null(f->d);
    assert_int_equal(g[0].calls + g[1].calls + g[2].calls, 1);
}

static void test_timeout(void **state)
{
    struct fx *f = *state;
    struct got g;
    relay_dns_set_timeout(f->d, 300);
    double t0 = now();
    route(f, "a.slow", &g);
    assert_true(now() - t0 < 2.0);
    assert_int_equal(g.st, RELAY_DNS_TEMP);
    assert_string_equal(g.why, "MX lookup for a.slow timed out after 0.300 s");
    /* a host that never answers does not hold up the others */
    route(f, "partial.test", &g);
    assert_int_equal(g.st, RELAY_DNS_OK);
    assert_string_equal(shown(&g, PORT), "mx.skip.test=127.0.0.6 20");
    assert_non_null(strstr(g.why, "h.slow: AAAA lookup failed (timed out after 0.300 s)"));
}

static void test_config_errors(void **state)
{
    struct fx *f = *state;
    char err[512], path[160];
    assert_null(relay_dns_new(f->base, "/nonexistent/unbound.conf", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/unbound.conf"));
    snprintf(path, sizeof(path), "%s/bad.conf", f->dir);
    testfs_put(path, "server:\n    no-such-option: 1\n");
    assert_null(relay_dns_new(f->base, path, err, sizeof(err)));
    assert_non_null(strstr(err, "bad.conf"));
}

/* /etc/resolv.conf and /etc/hosts: only names answered locally (localhost) are asked. */
static void test_default_config(void **state)
{
    struct fx *f = *state;
    relay_dns_free(f->d);
    f->d = relay_dns_new(f->base, NULL, f->err, sizeof(f->err));
    if (!f->d)
        fail_msg("relay_dns_new(NULL): %s", f->err);
    struct got g;
    route(f, "localhost", &g);
    assert_int_equal(g.st, RELAY_DNS_OK);
    assert_true(g.route.implicit_mx);
    assert_non_null(strstr(shown(&g, PORT), "localhost=127.0.0.1 0"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mx_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_implicit_mx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_mx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hosts_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_literals_and_hosts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocols, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_outstanding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

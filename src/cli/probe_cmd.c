/* `tern probe`: connects to an SMTP server and reports what it offers, for an admin checking a
 * server before pointing mail at it: the greeting, the EHLO capabilities (SIZE in human units,
 * the AUTH mechanisms), whether STARTTLS is offered, and once TLS is up the protocol, cipher
 * and certificate (subject, issuer, expiry with days left, whether it verified and why not),
 * then QUIT. The handshake is always completed with verification off so that a self-signed or
 * expired certificate can still be shown; libtern checks the chain and the name anyway
 * (tern_tls_info), and the report says plainly when it did not verify. Everything the server
 * sent is printed through cli_put_safe, or as JSON with --json. */
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/client_opts.h"

#define PROBE_TIMEOUT_MS 30000 /* a probe waits 30 s a step, not RFC 5321's minutes */
#define EXPIRY_WARN_DAYS 14

static const char usage[] =
    "usage: tern probe HOST[:PORT] [options]\n"
    "\n"
    "Connects to an SMTP server and shows what it offers: the greeting, the EHLO\n"
    "capabilities (SIZE, AUTH mechanisms ...), whether STARTTLS is offered, and after TLS\n"
    "the protocol, cipher and certificate (subject, issuer, expiry, whether it verified and\n"
    "why not); then QUIT. Nothing is sent but EHLO, STARTTLS and QUIT.\n"
    "\n"
    "  HOST[:PORT]         the server; [IPV6]:PORT for an IPv6 address with a port (default\n"
    "                      port 25, or 465 with --tls)\n"
    "  --starttls          require STARTTLS: fail when it is not offered or does not work\n"
    "                      (default: STARTTLS when offered)\n"
    "  --tls               implicit TLS from the first byte (port 465)\n"
    "  --no-tls            stay in clear, even when STARTTLS is offered\n"
    "  --ca-file FILE      verify against the CAs in FILE (PEM) instead of the system's\n"
    "  --insecure          do not warn about a certificate that does not verify\n"
    "  --helo NAME         the name to give in EHLO (default: this host's name)\n"
    "  --timeout SECONDS   the timeout of each step (default 30)\n"
    "  --verbose           print the dialogue on standard error\n"
    "  --json              print one JSON object instead of text\n"
    "\n"
    "The certificate is always shown, even when it does not verify (the handshake is\n"
    "completed either way, and verification is reported, not enforced).\n"
    "\n"
    "Exit status: 0 the server greeted 220 and the probe went through; 75 (EX_TEMPFAIL) no\n"
    "connection, a 4yz reply, or TLS required and not working; 69 (EX_UNAVAILABLE) a 5yz\n"
    "reply, such as 554 \"no SMTP service here\"; 64 bad usage.\n";

enum { O_JSON = 1, O_HELP };

/* TLS as asked: opportunistic is the default, the three others come from the options. */
enum probe_tls { P_OPPORTUNISTIC, P_STARTTLS, P_IMPLICIT, P_NONE };

struct probe {
    struct client_cli cc;
    enum probe_tls mode;
    bool json, quiet_verify;
    char host[256], port[32];
    json_t *root; /* --json: the report being built */
    int status;   /* the exit status so far */
};

/* ---- output ------------------------------------------------------------------------------ */

static void put_safe(const char *s)
{
    cli_put_safe(stdout, s, strlen(s));
}

/* A JSON string of s; server bytes that are not UTF-8 are written as \xNN text, as the text
 * output shows them, since a JSON string must be UTF-8. */
static json_t *jstr(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t n = strlen(s);
    char *t = malloc(n * 4 + 1), *o = t;
    if (!t)
        return json_null();
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        o += *p < 0x80 ? sprintf(o, "%c", *p) : sprintf(o, "\\x%02x", *p);
    j = json_string(t);
    free(t);
    return j ? j : json_null();
}

static json_t *reply_json(const struct tern_reply *r)
{
    json_t *lines = json_array();
    for (size_t i = 0; lines && i < r->nlines; i++)
        json_array_append_new(lines, jstr(r->lines[i]));
    return json_pack("{s:i, s:o, s:o, s:s}", "code", r->code, "enh", jstr(r->enh), "lines",
                     lines ? lines : json_array(), "class", tern_class_name(r->cls));
}

/* "label    CODE text" and the other lines of r under it. */
static void print_reply(const char *label, const struct tern_reply *r)
{
    for (size_t i = 0; i < r->nlines; i++) {
        printf("%-11s %d%s%s ", i == 0 ? label : "", r->code, r->enh[0] ? " " : "", r->enh);
        put_safe(r->lines[i]);
        putchar('\n');
    }
}

/* Why the probe stopped: on standard error, or in the JSON report. The exit status follows the
 * code: 75 for 4yz and no connection (101), 69 for 5yz. */
static void failure(struct probe *p, const char *what, int code, const char *text)
{
    p->status = client_exit_status(code);
    if (p->json) {
        size_t n = strlen(what) + strlen(text) + 32;
        char *msg = malloc(n);
        if (msg) {
            snprintf(msg, n, "%s: %d %s", what, code, text);
            json_object_set_new(p->root, "error", jstr(msg));
            free(msg);
        }
        return;
    }
    fprintf(stderr, "tern probe: %s port %s: %s: %d ", p->host, p->port, what, code);
    cli_put_safe(stderr, text, strlen(text));
    fputc('\n', stderr);
}

/* 10485760 -> "10 MiB", 35882577 -> "34.2 MiB". */
static void human_size(unsigned long long n, char *buf, size_t len)
{
    static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu bytes", n);
    else if (v - (double)(unsigned long long)v < 0.05)
        snprintf(buf, len, "%.0f %s", v, units[u]);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
}

/* The EHLO reply: its first line, then one capability a line with SIZE and AUTH explained. */
static void report_ehlo(struct probe *p, const char *key, const char *label,
                        const struct tern_reply *r, const struct tern_caps *caps)
{
    char size[64] = "";
    if (caps->size)
        human_size(caps->size, size, sizeof size);
    if (p->json) {
        json_t *o = reply_json(r), *kw = json_array(), *mechs = json_array();
        for (size_t i = 1; i < r->nlines; i++)
            json_array_append_new(kw, jstr(r->lines[i]));
        char auth[sizeof caps->auth];
        snprintf(auth, sizeof auth, "%s", caps->auth);
        for (char *save = NULL, *m = strtok_r(auth, " ", &save); m; m = strtok_r(NULL, " ", &save))
            json_array_append_new(mechs, json_string(m));
        json_object_set_new(o, "esmtp", json_boolean(caps->esmtp));
        json_object_set_new(o, "capabilities", kw);
        json_object_set_new(o, "size",
                            caps->size ? json_integer((json_int_t)caps->size) : json_null());
        json_object_set_new(o, "size_human", caps->size ? json_string(size) : json_null());
        json_object_set_new(o, "auth", mechs);
        json_object_set_new(p->root, key, o);
        return;
    }
    printf("%-11s %d ", label, r->code);
    put_safe(r->nlines ? r->lines[0] : "");
    putchar('\n');
    if (!caps->esmtp) {
        printf("  (no extensions: the server answered HELO only, as RFC 821 servers do)\n");
        return;
    }
    for (size_t i = 1; i < r->nlines; i++) {
        const char *line = r->lines[i];
        size_t kw = strcspn(line, " =");
        printf("  ");
        put_safe(line);
        if (kw == 4 && strncasecmp(line, "SIZE", 4) == 0 && caps->size)
            printf("  (messages up to %s)", size);
        else if (kw == 4 && strncasecmp(line, "SIZE", 4) == 0)
            printf("  (no limit given)");
        else if (kw == 4 && strncasecmp(line, "AUTH", 4) == 0)
            printf("  (mechanisms: %s)", caps->auth[0] ? caps->auth : "none readable");
        putchar('\n');
    }
    if (!(caps->flags & TERN_CAP_AUTH))
        printf("  (no AUTH offered here)\n");
}

/* Days from now to "YYYY-MM-DD HH:MM:SS UTC" (negative once past), rounded down; false when
 * the date cannot be read. */
static bool days_left(const char *not_after, long *days)
{
    struct tm tm = {0};
    if (sscanf(not_after, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    long long d = (long long)t - (long long)time(NULL);
    *days = (long)(d >= 0 ? d / 86400 : -((-d + 86399) / 86400));
    return true;
}

/* The TLS session and the server's certificate. */
static void report_tls(struct probe *p, struct tern_client *c, const char *via)
{
    struct tern_tls_info info;
    if (tern_tls_info(c, &info) < 0)
        return;
    long days = 0;
    bool known = days_left(info.not_after, &days);
    bool warn_expiry = known && days < EXPIRY_WARN_DAYS;
    if (p->json) {
        json_t *o = json_object();
        json_object_set_new(o, "via", json_string(via));
        json_object_set_new(o, "protocol", jstr(info.protocol));
        json_object_set_new(o, "cipher", jstr(info.cipher));
        json_object_set_new(o, "subject", jstr(info.subject));
        json_object_set_new(o, "issuer", jstr(info.issuer));
        json_object_set_new(o, "not_after", jstr(info.not_after));
        json_object_set_new(o, "days_left", known ? json_integer(days) : json_null());
        json_object_set_new(o, "expired", json_boolean(known && days < 0));
        json_object_set_new(o, "expires_soon", json_boolean(warn_expiry));
        json_object_set_new(o, "verified", json_boolean(info.verified));
        json_object_set_new(o, "verify_error",
                            info.verified ? json_null() : jstr(info.verify_error));
        json_object_set_new(p->root, "tls", o);
        return;
    }
    printf("%-11s ", "TLS");
    put_safe(info.protocol);
    printf(", ");
    put_safe(info.cipher);
    printf(" (%s)\n", via);
    printf("  %-9s ", "subject");
    put_safe(info.subject[0] ? info.subject : "(no certificate)");
    printf("\n  %-9s ", "issuer");
    put_safe(info.issuer);
    printf("\n  %-9s ", "expires");
    put_safe(info.not_after[0] ? info.not_after : "(unknown)");
    if (known && days >= 0)
        printf(", in %ld day%s", days, days == 1 ? "" : "s");
    else if (known)
        printf(", %ld day%s ago: EXPIRED", -days, days == -1 ? "" : "s");
    putchar('\n');
    if (warn_expiry && days >= 0)
        printf("  WARNING: the certificate expires in less than %d days: renew it now\n",
               EXPIRY_WARN_DAYS);
    else if (warn_expiry)
        printf("  WARNING: the certificate has expired: clients that verify refuse it; renew "
               "it\n");
    if (info.verified) {
        printf("  %-9s yes, for %s\n", "verified", p->host);
        return;
    }
    printf("  %-9s NO: ", "verified");
    put_safe(info.verify_error);
    printf("\n");
    if (!p->quiet_verify)
        printf("  WARNING: the certificate did not verify for %s (shown anyway: the probe does "
               "not enforce it); tern send refuses such a server unless given its CA with "
               "--ca-file, or --insecure\n",
               p->host);
}

static const char *mode_text(enum probe_tls m)
{
    switch (m) {
    case P_STARTTLS:
        return "STARTTLS required";
    case P_IMPLICIT:
        return "implicit TLS";
    case P_NONE:
        return "in clear, --no-tls";
    default:
        return "STARTTLS when offered";
    }
}

/* The probe itself; p->status is its exit status. */
static void probe(struct probe *p, struct tern_client *c)
{
    struct tern_reply r = {0};
    enum tern_tls first = p->mode == P_IMPLICIT ? TERN_TLS_IMPLICIT : TERN_TLS_NONE;
    if (tern_connect(c, p->host, p->port, first, &r) != 0) {
        if (r.code >= 200 && p->json)
            json_object_set_new(p->root, "greeting", reply_json(&r));
        else if (r.code >= 200)
            print_reply("greeting", &r);
        failure(p, r.code >= 200 ? "the server refused the connection" : "cannot connect", r.code,
                tern_reply_text(&r));
        tern_reply_free(&r);
        return;
    }
    if (p->json)
        json_object_set_new(p->root, "greeting", reply_json(&r));
    else
        print_reply("greeting", &r);
    if (tern_is_tls(c))
        report_tls(p, c, "implicit TLS");
    if (tern_ehlo(c, NULL, &r) != 0) {
        if (r.code >= 200 && !p->json)
            print_reply("EHLO/HELO", &r);
        failure(p, "EHLO and HELO refused", r.code, tern_reply_text(&r));
        goto quit;
    }
    report_ehlo(p, "ehlo", "EHLO", &r, tern_caps(c));
    if (!tern_is_tls(c)) {
        bool offered = (tern_caps(c)->flags & TERN_CAP_STARTTLS) != 0;
        bool tried = offered && p->mode != P_NONE;
        if (p->json)
            json_object_set_new(p->root, "starttls",
                                json_pack("{s:b, s:b}", "offered", offered, "tried", tried));
        else
            printf("%-11s %s\n", "STARTTLS",
                   !offered            ? "not offered: mail to this server travels in clear"
                   : p->mode == P_NONE ? "offered (not tried: --no-tls)"
                                       : "offered");
        if (!offered && p->mode == P_STARTTLS) {
            failure(p, "STARTTLS required (--starttls)", TERN_CODE_CONNECTION,
                    "the server does not offer STARTTLS; probe with --no-tls or --tls instead");
        } else if (tried && tern_starttls(c, &r) != 0) {
            if (r.code >= 200 && !p->json)
                print_reply("STARTTLS", &r);
            failure(p, "STARTTLS failed", r.code, tern_reply_text(&r));
            if (!tern_is_connected(c))
                goto out;
        } else if (tried) {
            report_tls(p, c, "STARTTLS");
            report_ehlo(p, "ehlo_tls", "EHLO (TLS)", &r, tern_caps(c));
        }
    }
quit:
    if (!tern_is_connected(c))
        goto out;
    tern_quit(c, &r);
    if (p->json)
        json_object_set_new(p->root, "quit", reply_json(&r));
    else
        print_reply("QUIT", &r);
out:
    tern_reply_free(&r);
}

static int parse(int argc, char **argv, struct probe *p)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, O_HELP},
        CLIENT_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    client_opts_init(&p->cc);
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (ch == CLIENT_OPT_TLS || ch == CLIENT_OPT_STARTTLS || ch == CLIENT_OPT_NO_TLS)
            p->mode = ch == CLIENT_OPT_TLS        ? P_IMPLICIT
                      : ch == CLIENT_OPT_STARTTLS ? P_STARTTLS
                                                  : P_NONE;
        if (ch == CLIENT_OPT_INSECURE)
            p->quiet_verify = true;
        int t = client_opts_take(&p->cc, "probe", ch, argv[optind - 1], optarg);
        if (t < 0)
            return EX_USAGE;
        if (t > 0)
            continue;
        switch (ch) {
        case O_JSON:
            p->json = true;
            break;
        case 'h':
        case O_HELP:
            fputs(usage, stdout);
            return -1;
        default:
            return client_option_error("probe", ch, argv[optind - 1]);
        }
    }
    if (client_server_arg("probe", argc, argv, optind, p->host, sizeof p->host, p->port,
                          sizeof p->port) != 0)
        return EX_USAGE;
    if (!p->port[0])
        snprintf(p->port, sizeof p->port, "%s", p->mode == P_IMPLICIT ? "465" : "25");
    return 0;
}

int cli_probe(int argc, char **argv)
{
    struct probe *p = calloc(1, sizeof *p);
    if (!p) {
        fprintf(stderr, "tern probe: out of memory\n");
        return EX_OSERR;
    }
    int rc = parse(argc, argv, p);
    if (rc != 0) {
        free(p);
        return rc < 0 ? 0 : rc;
    }
    /* the handshake goes through whatever the certificate: verification is reported (libtern
     * checks chain and name even so), not enforced, or a self-signed one could not be shown */
    p->cc.opts.insecure = 1;
    if (!p->cc.opts.timeouts.connect) {
        unsigned ms = PROBE_TIMEOUT_MS;
        p->cc.opts.timeouts = (struct tern_timeouts){ms, ms, ms, ms, ms, ms, ms, ms};
    }
    struct tern_client *c = tern_client_new(&p->cc.opts);
    if (p->json && !(p->root = json_object()))
        c = (tern_free(c), NULL);
    if (!c) {
        fprintf(stderr, "tern probe: out of memory\n");
        free(p);
        return EX_OSERR;
    }
    if (p->json) {
        json_object_set_new(p->root, "host", jstr(p->host));
        json_object_set_new(p->root, "port", jstr(p->port));
        json_object_set_new(p->root, "mode", json_string(mode_text(p->mode)));
    } else {
        printf("%-11s ", "server");
        put_safe(p->host);
        printf(" port ");
        put_safe(p->port);
        printf(" (%s)\n", mode_text(p->mode));
    }
    probe(p, c);
    tern_free(c);
    rc = p->status;
    if (p->json) {
        json_object_set_new(p->root, "exit", json_integer(rc));
        if (!json_object_get(p->root, "error"))
            json_object_set_new(p->root, "error", json_null());
        if (json_dumpf(p->root, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII) != 0 ||
            putchar('\n') == EOF) {
            fprintf(stderr, "tern probe: cannot write the report: %m\n");
            rc = EX_IOERR;
        }
        json_decref(p->root);
    }
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "tern probe: cannot write the report: %m\n");
        rc = EX_IOERR;
    }
    free(p);
    return rc;
}

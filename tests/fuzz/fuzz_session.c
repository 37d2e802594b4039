/* libFuzzer harness for the SMTP session core: arbitrary client bytes, split at points the input
 * chooses, with a store that fails when the input says so. Alice has a live terminal, under each
 * [terminal] allow: SEND/SOML/SAML must hand the store only terminals that are alice, once,
 * with no mailbox for SEND and her mailbox as SOML's fallback, and XWATCH may only ask to watch
 * for an authenticated user under TLS on submission. Every reply must be a well-formed
 * SMTP reply line, a request must never come twice without a resume, and nothing may crash or
 * leak. The tables hold a shared mailbox, so send-as, Sender: insertion and quotas are reached,
 * and forwarded users (251), relay domains, an ETRN queue and a user entitled to TURN, whose
 * request must name relay domains and after which no byte may be taken. The audit hook is
 * listened to: every field of every event is read and checked, and no AUTH event may carry
 * anything but the one user the fake SASL names (never the client's data). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/data.h"
#include "smtp/session.h"

static struct tables *tables;

static bool mech_ok(void *ctx, const char *mech, size_t len)
{
    (void)ctx;
    return (len == 5 && memcmp(mech, "PLAIN", 5) == 0) ||
           (len == 5 && memcmp(mech, "LOGIN", 5) == 0);
}

static uint8_t full_flags;

/* The shared mailbox is full in the runs whose flags say the APPEND fails too. */
static bool mailbox_full(void *ctx, const char *box)
{
    (void)ctx;
    return (full_flags & 2) && strcmp(box, "sales@example.org") == 0;
}

static struct tables *make_tables(void)
{
    char err[512];
    struct tables *t = tables_new();
    tables_add_domain(t, "example.org", err, sizeof err);
    struct tables_user u = {
        .addr = "alice@example.org", .name = "Alice", .turn = "customer.test,gone.test"};
    tables_add_user(t, &u, err, sizeof err);
    struct tables_user f = {.addr = "fwd@example.org", .forward = "fwd@remote.test"};
    tables_add_user(t, &f, err, sizeof err);
    struct tables_user f2 = {.addr = "fwd2@example.org", .forward = "other@remote.test"};
    tables_add_user(t, &f2, err, sizeof err);
    const char *fwds[] = {"fwd", "fwd2", "alice"};
    tables_add_alias(t, "fwds@example.org", fwds, 2, err, sizeof err);
    tables_add_alias(t, "mixed@example.org", fwds + 1, 2, err, sizeof err);
    struct tables_user m = {.addr = "dave@example.org", .moved = "dave@elsewhere.test"};
    tables_add_user(t, &m, err, sizeof err);
    const char *pm[] = {"alice"};
    tables_add_alias(t, "postmaster", pm, 1, err, sizeof err);
    tables_add_alias(t, "team@example.org", pm, 1, err, sizeof err);
    const char *sales[] = {"alice", "team"};
    tables_add_shared(t, NULL, "sales@example.org", sales, 2, 0, err, sizeof err);
    tables_finish(t, err, sizeof err);
    return t;
}

/* Relay domains: two customers; "gone.test" is in alice's turn= but relayed no more. */
static bool relay_domain(void *ctx, const char *domain)
{
    (void)ctx;
    for (const char *p = domain; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            __builtin_trap(); /* the core hands domains over lowercased */
    return strcmp(domain, "customer.test") == 0 || strcmp(domain, "relay.test") == 0;
}

/* The queue: any answer, sometimes with text holding control characters. */
static int etrn(void *ctx, const char *node, bool subdomains, char *text, size_t textlen)
{
    (void)ctx;
    if (!relay_domain(NULL, node) || textlen < 2 || text[0])
        __builtin_trap(); /* only relay domains reach the queue, with a clean buffer */
    static const int codes[] = {250, 251, 252, 253, 458, 459, 0, 550};
    size_t k = (strlen(node) + (subdomains ? 3 : 0) + (full_flags >> 3)) % 8;
    if (k & 1)
        snprintf(text, textlen, "queue \r\n250 says %d", codes[k]);
    return codes[k];
}

static bool terminal_live(void *ctx, const char *box)
{
    (void)ctx;
    return strcmp(box, "alice@example.org") == 0 || strcmp(box, "sales@example.org") == 0;
}

/* What the store is handed at COMMIT about terminals must hold together. */
static void check_terminals(const struct smtp_txn *t)
{
    if ((t->kind == SMTP_TXN_MAIL && t->nterminals) ||
        (t->kind == SMTP_TXN_SEND && (t->nmailboxes || t->nforeign || !t->nterminals)))
        __builtin_trap();
    for (size_t i = 0; i < t->nterminals; i++) {
        if (strcmp(t->terminals[i], "alice@example.org") != 0 &&
            strcmp(t->terminals[i], "sales@example.org") != 0)
            __builtin_trap(); /* only users whose terminal was live */
        if (i && strcmp(t->terminals[i - 1], t->terminals[i]) >= 0)
            __builtin_trap(); /* sorted, each once */
        bool boxed = false;
        for (size_t k = 0; k < t->nmailboxes; k++)
            boxed |= strcmp(t->mailboxes[k], t->terminals[i]) == 0;
        if (t->kind != SMTP_TXN_SEND && !boxed)
            __builtin_trap(); /* SOML's fallback, SAML's copy */
    }
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* "" or an enhanced status code: class.subject.detail, digits. */
static bool enh_ok(const char *e)
{
    if (!*e)
        return true;
    for (int part = 0; part < 3; part++) {
        size_t n = 0;
        while (e[n] >= '0' && e[n] <= '9')
            n++;
        if (n == 0 || n > 3 || e[n] != (part < 2 ? '.' : '\0'))
            return false;
        e += n + 1;
    }
    return true;
}

static volatile size_t event_sink; /* keeps the reads of every field */

static void on_event(void *ctx, const struct smtp_event *ev)
{
    static const char *const verbs[] = {"HELO", "EHLO", "MAIL", "SEND", "SOML", "SAML",  "RCPT",
                                        "DATA", "BDAT", "AUTH", "ETRN", "TURN", "XWATCH"};
    static const char *const ok_rules[] = {"ok", "relay_authenticated", "relay_domain", "forward"};
    static const char *const limits[] = {"bad_commands", "junk_commands", "auth_failures"};
    (void)ctx;
    if (!ev->verb || !ev->rule || !ev->enh || !ev->text || !ev->mech || (!ev->arg && ev->arg_len))
        __builtin_trap();
    size_t sum =
        strlen(ev->verb) + strlen(ev->rule) + strlen(ev->enh) + strlen(ev->text) + strlen(ev->mech);
    for (size_t i = 0; i < ev->arg_len; i++) /* arg is not terminated: read exactly arg_len */
        sum += (unsigned char)ev->arg[i];
    event_sink += sum;
    if (ev->arg_len > 512 || ev->code < 200 || ev->code > 599 || ev->code == 334 ||
        ev->code == 354 || !ev->rule[0] || !enh_ok(ev->enh) || strlen(ev->mech) >= 32)
        __builtin_trap();
    if (ev->limit) {
        if (!in_list(ev->verb, limits, 3) || strcmp(ev->rule, ev->verb) != 0 || ev->code != 421 ||
            ev->arg_len != 0)
            __builtin_trap();
        return;
    }
    if (!in_list(ev->verb, verbs, sizeof verbs / sizeof verbs[0]))
        __builtin_trap();
    if (ev->code < 400 && !in_list(ev->rule, ok_rules, sizeof ok_rules / sizeof ok_rules[0]))
        __builtin_trap();
    if ((ev->code == 251) != (strcmp(ev->verb, "RCPT") == 0 && strcmp(ev->rule, "forward") == 0) &&
        strcmp(ev->verb, "ETRN") != 0)
        __builtin_trap(); /* 251 is RCPT's for a forwarded user, or ETRN's "nothing waiting" */
    if (strcmp(ev->verb, "TURN") == 0 && ev->code == 250 &&
        (ev->arg_len != 13 || memcmp(ev->arg, "customer.test", 13) != 0))
        __builtin_trap(); /* alice's one relay domain, never gone.test */
    if (strcmp(ev->verb, "AUTH") == 0) {
        /* the fake SASL names alice on success and nobody on failure: anything else in arg came
         * from the client's AUTH data */
        if (ev->arg_len != 0 &&
            (ev->arg_len != 17 || memcmp(ev->arg, "alice@example.org", 17) != 0))
            __builtin_trap();
    } else if (strcmp(ev->verb, "DATA") == 0 || strcmp(ev->verb, "BDAT") == 0) {
        if (ev->arg_len != 0 && (ev->arg_len != 5 || memcmp(ev->arg, "FUZZ1", 5) != 0))
            __builtin_trap();
    }
}

/* Every reply line: three digits, '-' or ' ', printable text, CRLF, at most 512 octets. */
static void check_output(const char *o, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const char *e = memchr(o + i, '\n', n - i);
        if (!e)
            __builtin_trap();
        size_t len = (size_t)(e - (o + i)) + 1;
        if (len < 6 || len > 512 || o[i + len - 2] != '\r')
            __builtin_trap();
        for (int k = 0; k < 3; k++)
            if (o[i + k] < '0' || o[i + k] > '9')
                __builtin_trap();
        if (o[i + 3] != ' ' && o[i + 3] != '-')
            __builtin_trap();
        for (size_t k = 4; k < len - 2; k++)
            if ((unsigned char)o[i + k] < 0x20 || o[i + k] == 0x7f)
                __builtin_trap();
        i += len;
    }
}

static void serve(struct smtp_session *s, uint8_t flags)
{
    const struct smtp_request *q;
    int guard = 0;
    while ((q = smtp_session_request(s))) {
        if (++guard > 100000)
            __builtin_trap(); /* requests must not loop without consuming input */
        struct smtp_result r = {.ok = true};
        if ((q->type == SMTP_REQ_TURN) != (q->turn_domains != NULL) ||
            (q->type == SMTP_REQ_TURN) != (q->nturn != 0))
            __builtin_trap();
        if (q->type == SMTP_REQ_TURN) {
            if (q->nturn != 1 || strcmp(q->turn_domains[0], "customer.test") != 0 ||
                strcmp(smtp_session_auth_user(s), "alice@example.org") != 0)
                __builtin_trap(); /* only an authenticated user, only its relay domains */
            if (smtp_session_feed(s, "220 peer\r\n", 10) != 0)
                __builtin_trap(); /* the connection is the caller's now */
            r.ok = !(flags & 1);
        }
        if (q->type == SMTP_REQ_STORE_APPEND && q->len > 65536)
            __builtin_trap();
        if (q->type == SMTP_REQ_STORE_BEGIN) {
            r.ok = !(flags & 1);
            strcpy(r.id, "FUZZ1");
        } else if (q->type == SMTP_REQ_STORE_APPEND) {
            r.ok = !(flags & 2);
        } else if (q->type == SMTP_REQ_STORE_COMMIT) {
            check_terminals(q->txn);
            r.ok = !(flags & 4);
            r.terminals = q->txn->nterminals;
            if (!r.ok && q->txn->kind == SMTP_TXN_SEND) {
                r.code = 450; /* every terminal went away */
                strcpy(r.enh, "4.2.1");
                strcpy(r.text, "No terminal took the message");
            }
        } else if (q->type == SMTP_REQ_WATCH) {
            if (strcmp(smtp_session_auth_user(s), "alice@example.org") != 0)
                __builtin_trap(); /* nobody watches unauthenticated */
            r.ok = !(flags & 1);
            if (!r.ok) {
                r.code = 452;
                strcpy(r.enh, "4.3.1");
                strcpy(r.text, "too many terminals");
            }
        } else if (q->type == SMTP_REQ_STARTTLS) {
            strcpy(r.tls_info, "TLSv1.3 with cipher FUZZ");
        } else if (q->type == SMTP_REQ_AUTH && !q->auth_cancel) {
            /* a response starting with 'c' continues, 'y' succeeds, anything else fails */
            const char *d = q->auth_data ? q->auth_data : "c";
            if (d[0] == 'c') {
                r.more = true;
                strcpy(r.challenge, "Y2hhbGxlbmdl");
            } else if (d[0] == 'y') {
                strcpy(r.user, "alice@example.org");
            } else {
                r.ok = false;
                r.code = 535;
                strcpy(r.enh, "5.7.8");
                strcpy(r.text, "Authentication credentials invalid");
            }
        }
        smtp_session_resume(s, &r);
    }
    const char *o;
    size_t n = smtp_session_pending_output(s, &o);
    check_output(o, n);
    smtp_session_output_sent(s, n);
    const char *id = smtp_session_message_id(s);
    if (strnlen(id, SMTP_DATA_MSGID_MAX) >= SMTP_DATA_MSGID_MAX)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tables)
        tables = make_tables();
    if (size < 2)
        return 0;
    uint8_t flags = data[0], step = data[1];
    data += 2;
    size -= 2;
    struct smtp_env env = {
        .hostname = "mx.example.org",
        .peer_ip = "192.0.2.1",
        .refuse = flags & 8,
        .max_message_size = 4096,
        .max_recipients = 5,
        .max_bad_commands = 50,
        .max_junk_commands = 200,
        .vrfy = (enum smtp_disclose)((flags >> 4) % 3),
        .expn = (enum smtp_disclose)((flags >> 6) % 3),
        .tables = tables,
        .submission = flags & 0x20,
        .tls_available = flags & 0x40,
        .auth_mechs = "PLAIN LOGIN",
        .auth_cleartext_ok = flags & 0x10,
        .auth_mech_ok = mech_ok,
        .check_from = true,
        .sender_header = true,
        .mailbox_full = mailbox_full,
        .relay_domain = relay_domain,
        .terminal_allow = (enum smtp_terminal_allow)(step % 3),
        .terminal_max_size = 512,
        .terminal_live = terminal_live,
        .etrn = (flags & 4) ? NULL : etrn,
        .event = on_event,
    };
    full_flags = flags;
    struct smtp_session *s = smtp_session_new(&env);
    size_t chunk = step ? step : 1, off = 0;
    serve(s, flags);
    while (off < size && smtp_session_wants_close(s) == SMTP_OPEN) {
        size_t n = size - off < chunk ? size - off : chunk;
        size_t used = smtp_session_feed(s, (const char *)data + off, n);
        if (used > n)
            __builtin_trap();
        off += used;
        serve(s, flags);
        if (used == 0 && !smtp_session_request(s) && smtp_session_wants_close(s) == SMTP_OPEN)
            __builtin_trap(); /* stalled with input left and nothing pending */
    }
    if (flags & 0x80)
        smtp_session_timeout(s);
    serve(s, flags);
    smtp_session_free(s);
    return 0;
}

/* libtern's blocking driver and most of its public API (include/tern/client.h): the handle,
 * connect (with implicit TLS or the whole STARTTLS dance), EHLO with its HELO fallback, STARTTLS,
 * one function per SMTP command, DATA/BDAT, QUIT, and the accessors. Every wait is bounded by
 * the RFC 5321 §4.5.3.2 timeout of the reply awaited; every failure is a reply (see driver.h).
 * AUTH is in sasl.c, whole transactions in send.c. */
#include "client/driver.h"

#include "client/reply.h"
#include "util/version.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define DRV_DATA_CHUNK 65536 /* message octets transformed and flushed at a time */

/* ---- the handle ---- */

static int own(struct tern_client *c, int i, const char **field)
{
    if (!*field)
        return 0;
    c->owned[i] = strdup(*field);
    *field = c->owned[i];
    return c->owned[i] ? 0 : -1;
}

struct tern_client *tern_client_new(const struct tern_client_opts *opts)
{
    struct tern_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (opts)
        c->o = *opts;
    tport_init(&c->tp);
    int bad = own(c, 0, &c->o.helo_name) | own(c, 1, &c->o.ca_file) | own(c, 2, &c->o.ca_path) |
              own(c, 3, &c->o.tls_name) | own(c, 4, &c->o.client_cert) |
              own(c, 5, &c->o.client_key);
    c->core = smtpc_new(c->o.transcript, c->o.transcript_arg);
    if (bad || !c->core) {
        tern_free(c);
        return NULL;
    }
    return c;
}

void tern_free(struct tern_client *c)
{
    if (!c)
        return;
    drv_watch_reset(c);
    tport_free(&c->tp);
    smtpc_free(c->core);
    for (size_t i = 0; i < sizeof c->owned / sizeof c->owned[0]; i++)
        free(c->owned[i]);
    free(c);
}

const char *tern_version(void)
{
    return TERN_VERSION;
}

/* The timeout of the reply to cmd, in ms (RFC 5321 §4.5.3.2). */
static unsigned timeout_for(const struct tern_client *c, enum tern_cmd cmd)
{
    const struct tern_timeouts *t = &c->o.timeouts;
#define PICK(v, def) ((v) ? (v) : (def))
    switch (cmd) {
    case TERN_CMD_CONNECT:
        return PICK(t->greeting, 300000);
    case TERN_CMD_MAIL:
    case TERN_CMD_SEND:
    case TERN_CMD_SOML:
    case TERN_CMD_SAML:
        return PICK(t->mail, 300000);
    case TERN_CMD_RCPT:
        return PICK(t->rcpt, 300000);
    case TERN_CMD_DATA:
        return PICK(t->data_init, 120000);
    case TERN_CMD_DATA_END:
    case TERN_CMD_BDAT:
        return PICK(t->data_end, 600000);
    default:
        return PICK(t->other, 300000);
    }
}

static unsigned timeout_connect(const struct tern_client *c)
{
    return PICK(c->o.timeouts.connect, 60000);
}

static unsigned timeout_write(const struct tern_client *c)
{
    return PICK(c->o.timeouts.data_block, 180000);
#undef PICK
}

/* ---- the moves (driver.h) ---- */

static void close_conn(struct tern_client *c)
{
    drv_watch_reset(c);
    tport_close(&c->tp);
    smtpc_reset(c->core);
    c->inlen = 0;
    c->connected = false;
    c->data_mode = false;
    memset(&c->caps, 0, sizeof c->caps);
}

void drv_fail(struct tern_client *c, enum tern_cmd cmd, struct tern_reply *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->failure, sizeof c->failure, fmt, ap);
    va_end(ap);
    close_conn(c);
    if (r)
        creply_local(r, TERN_CODE_CONNECTION, cmd, "%s", c->failure);
}

/* r says why nothing can be sent: the connection broke (101), or there never was one (0). */
static int not_connected(struct tern_client *c, enum tern_cmd cmd, struct tern_reply *r)
{
    if (c->failure[0])
        creply_local(r, TERN_CODE_CONNECTION, cmd, "%s", c->failure);
    else
        creply_local(r, TERN_CODE_LOCAL, cmd, "not connected: call tern_connect first");
    return -1;
}

int drv_ready(struct tern_client *c, enum tern_cmd cmd, struct tern_reply *r)
{
    if (!c->connected)
        return not_connected(c, cmd, r);
    if (c->frames) {
        creply_local(r, TERN_CODE_LOCAL, cmd,
                     "the connection is a terminal now (XWATCH): only tern_watch_next and "
                     "tern_quit");
        return -1;
    }
    if (c->data_mode) {
        creply_local(r, TERN_CODE_LOCAL, cmd,
                     "a message is being sent after DATA: end it with tern_data_end first");
        return -1;
    }
    return 0;
}

int drv_queue(struct tern_client *c, enum tern_cmd cmd, const char *line, bool secret,
              struct tern_reply *r)
{
    if (drv_ready(c, cmd, r) < 0)
        return -1;
    char why[160];
    if (smtpc_command(c->core, cmd, line, secret, why, sizeof why) < 0) {
        creply_local(r, TERN_CODE_LOCAL, cmd, "%s %s not sent: %s", tern_cmd_name(cmd),
                     secret ? "response" : "command", why);
        return -1;
    }
    return 0;
}

/* Hands the bytes waiting in c->in to the core and keeps what it did not take (the bytes
 * after a reply to STARTTLS, or replies nobody awaits yet). The octets it took. */
static size_t feed_core(struct tern_client *c)
{
    size_t used = smtpc_feed(c->core, c->in, c->inlen);
    memmove(c->in, c->in + used, c->inlen - used);
    c->inlen -= used;
    return used;
}

/* Reads what the server has sent, without waiting, into c->in and the core. 0 when nothing
 * came or more came, -1 with why when the connection ended or failed. */
static int read_some(struct tern_client *c, short *events, char *why, size_t whylen)
{
    if (c->inlen > 0 && feed_core(c) > 0) { /* bytes read before their reply was awaited */
        *events = 0;
        return 1;
    }
    if (c->inlen == sizeof c->in) {
        *events = 0; /* nothing expected takes these: wait for the writes alone */
        return 0;
    }
    ssize_t n = tport_read(&c->tp, c->in + c->inlen, sizeof c->in - c->inlen, events, why, whylen);
    if (n == TPORT_WOULD_BLOCK)
        return 0;
    if (n == 0) {
        snprintf(why, whylen, "the server closed the connection");
        return -1;
    }
    if (n < 0)
        return -1;
    c->inlen += (size_t)n;
    feed_core(c);
    *events = 0;
    return 1;
}

int drv_flush(struct tern_client *c, struct tern_reply *r)
{
    const char *out;
    size_t n;
    char why[256];
    long long deadline = tport_now_ms() + timeout_write(c);
    while ((n = smtpc_output(c->core, &out)) > 0) {
        short wev = 0, rev = 0;
        ssize_t w = tport_write(&c->tp, out, n, &wev, why, sizeof why);
        if (w > 0) {
            smtpc_sent(c->core, (size_t)w);
            deadline = tport_now_ms() + timeout_write(c);
            continue;
        }
        if (w != TPORT_WOULD_BLOCK) {
            drv_fail(c, smtpc_head(c->core), r, "cannot send to %s: %s", c->host, why);
            return -1;
        }
        /* blocked: take in replies meanwhile, or a pipelining server blocks on us in turn */
        int rd = smtpc_waiting(c->core) > 0 ? read_some(c, &rev, why, sizeof why) : 0;
        if (rd < 0) {
            drv_fail(c, smtpc_head(c->core), r, "%s while libtern was sending: %s", c->host, why);
            return -1;
        }
        if (rd > 0)
            continue;
        int p = tport_wait(&c->tp, (short)(wev | rev), deadline, why, sizeof why);
        if (p == 0) {
            drv_fail(c, smtpc_head(c->core), r,
                     "timed out after %u ms sending to %s: the server stopped reading",
                     timeout_write(c), c->host);
            return -1;
        }
        if (p < 0) {
            drv_fail(c, smtpc_head(c->core), r, "%s", why);
            return -1;
        }
    }
    return 0;
}

int drv_reply(struct tern_client *c, struct tern_reply *r)
{
    if (!c->connected)
        return not_connected(c, TERN_CMD_OTHER, r);
    if (drv_flush(c, r) < 0)
        return -1;
    enum tern_cmd cmd = smtpc_head(c->core);
    unsigned timeout = timeout_for(c, cmd);
    long long deadline = tport_now_ms() + timeout;
    char why[256];
    while (!smtpc_reply(c->core, r)) {
        const char *broken = smtpc_broken(c->core);
        if (broken) {
            drv_fail(c, cmd, r,
                     "the reply of %s to %s makes no sense (%s); closed the connection: is this an "
                     "SMTP server?",
                     c->host, tern_cmd_name(cmd), broken);
            return -1;
        }
        if (smtpc_waiting(c->core) == 0) {
            creply_local(r, TERN_CODE_LOCAL, cmd, "no reply is awaited: no command was sent");
            return -1;
        }
        short ev = 0;
        int rd = read_some(c, &ev, why, sizeof why);
        if (rd < 0) {
            drv_fail(c, cmd, r, "no reply from %s to %s: %s", c->host, tern_cmd_name(cmd), why);
            return -1;
        }
        if (rd > 0 || tport_pending(&c->tp) > 0)
            continue;
        int p = tport_wait(&c->tp, ev ? ev : POLLIN, deadline, why, sizeof why);
        if (p == 0) {
            drv_fail(c, cmd, r,
                     "timed out after %u ms waiting for the reply of %s to %s; the server is too "
                     "slow or not an SMTP server",
                     timeout, c->host, tern_cmd_name(cmd));
            return -1;
        }
        if (p < 0) {
            drv_fail(c, cmd, r, "%s", why);
            return -1;
        }
    }
    if (r->code == 421) {
        /* RFC 5321 §3.8: the server is closing; replies still awaited will never come */
        drv_fail(c, cmd, NULL, "the server closed the connection: 421 %.400s", tern_reply_text(r));
    }
    return 0;
}

int drv_exchange(struct tern_client *c, enum tern_cmd cmd, const char *line, bool secret,
                 struct tern_reply *r)
{
    if (drv_queue(c, cmd, line, secret, r) < 0 || drv_reply(c, r) < 0)
        return -1;
    return r->cls == TERN_POSITIVE ? 0 : r->cls == TERN_INTERMEDIATE ? 1 : -1;
}

bool drv_pipelining(const struct tern_client *c)
{
    return (c->caps.flags & TERN_CAP_PIPELINING) && !c->o.no_pipelining;
}

/* ---- connecting ---- */

static int start_tls(struct tern_client *c, struct tern_reply *r)
{
    struct tport_tls conf = {
        .ca_file = c->o.ca_file,
        .ca_path = c->o.ca_path,
        .client_cert = c->o.client_cert,
        .client_key = c->o.client_key,
        .insecure = c->o.insecure != 0,
        .name = c->o.tls_name ? c->o.tls_name : c->host,
    };
    char why[512];
    if (tport_tls_start(&c->tp, &conf, timeout_connect(c), why, sizeof why) < 0) {
        drv_fail(c, TERN_CMD_STARTTLS, r, "%s", why);
        return -1;
    }
    return 0;
}

/* QUIT politely after a refusal, then close; r keeps the refusal. */
static void give_up(struct tern_client *c)
{
    struct tern_reply q = {0};
    if (c->connected && !c->data_mode)
        drv_exchange(c, TERN_CMD_QUIT, "QUIT", false, &q);
    tern_reply_free(&q);
    close_conn(c);
}

int tern_connect(struct tern_client *c, const char *host, const char *port, enum tern_tls tls,
                 struct tern_reply *reply)
{
    if (c->connected) {
        creply_local(reply, TERN_CODE_LOCAL, TERN_CMD_CONNECT,
                     "already connected to %s: tern_quit first", c->host);
        return -1;
    }
    if (!host || !host[0] || strlen(host) >= sizeof c->host) {
        creply_local(reply, TERN_CODE_LOCAL, TERN_CMD_CONNECT,
                     "no host to connect to, or a name longer than 255 octets");
        return -1;
    }
    if (tls != TERN_TLS_NONE && tls != TERN_TLS_STARTTLS && tls != TERN_TLS_IMPLICIT) {
        creply_local(reply, TERN_CODE_LOCAL, TERN_CMD_CONNECT,
                     "unknown TLS mode %d: use TERN_TLS_NONE, _STARTTLS or _IMPLICIT", (int)tls);
        return -1;
    }
    if (!port)
        port = tls == TERN_TLS_IMPLICIT ? "465" : "25";
    snprintf(c->host, sizeof c->host, "%s", host);
    close_conn(c);
    c->failure[0] = '\0';
    char why[512];
    if (tport_connect(&c->tp, host, port, timeout_connect(c), why, sizeof why) < 0) {
        drv_fail(c, TERN_CMD_CONNECT, reply, "%s", why);
        return -1;
    }
    c->connected = true;
    if (tls == TERN_TLS_IMPLICIT && start_tls(c, reply) < 0)
        return -1;
    smtpc_expect(c->core, TERN_CMD_CONNECT);
    if (drv_reply(c, reply) < 0)
        return -1;
    if (reply->cls != TERN_POSITIVE) {
        give_up(c); /* 554 "no SMTP service here": RFC 5321 §3.1 says QUIT */
        return -1;
    }
    if (tls != TERN_TLS_STARTTLS)
        return 0;
    if (tern_ehlo(c, NULL, reply) < 0) {
        give_up(c);
        return -1;
    }
    if (!(c->caps.flags & TERN_CAP_STARTTLS)) {
        give_up(c);
        drv_fail(c, TERN_CMD_STARTTLS, reply,
                 "%s does not offer STARTTLS; connect without TLS, with implicit TLS (port 465), "
                 "or to a server that offers it",
                 host);
        return -1;
    }
    if (tern_starttls(c, reply) < 0) {
        if (c->connected)
            give_up(c); /* refused (454): TLS was required, so nothing more is sent */
        return -1;
    }
    return 0;
}

int tern_is_connected(const struct tern_client *c)
{
    return c->connected;
}

int tern_is_tls(const struct tern_client *c)
{
    return c->connected && c->tp.ssl != NULL;
}

int tern_tls_info(const struct tern_client *c, struct tern_tls_info *info)
{
    if (!tern_is_tls(c)) {
        memset(info, 0, sizeof *info);
        return -1;
    }
    return tport_tls_info(&c->tp, info);
}

const struct tern_caps *tern_caps(const struct tern_client *c)
{
    return &c->caps;
}

/* ---- EHLO, HELO, STARTTLS ---- */

/* Builds "VERB[ arg][ params]" into buf; -1 (r local) when it does not fit. */
static int line_of(char *buf, size_t n, enum tern_cmd cmd, const char *verb, const char *arg,
                   const char *params, struct tern_reply *r)
{
    int k = snprintf(buf, n, "%s%s%s%s%s", verb, arg ? " " : "", arg ? arg : "",
                     params && params[0] ? " " : "", params && params[0] ? params : "");
    if (k < 0 || (size_t)k >= n) {
        creply_local(r, TERN_CODE_LOCAL, cmd, "the %s command would be longer than %zu octets",
                     verb, n - 1);
        return -1;
    }
    return 0;
}

static const char *helo_name(struct tern_client *c, const char *domain)
{
    if (domain)
        return domain;
    if (c->o.helo_name)
        return c->o.helo_name;
    char name[256];
    if (gethostname(name, sizeof name) == 0 && name[0] && memchr(name, '\0', sizeof name))
        snprintf(c->helo, sizeof c->helo, "%s", name);
    else
        snprintf(c->helo, sizeof c->helo, "localhost");
    return c->helo;
}

/* EHLO (or HELO) for domain: the name is remembered for the EHLO after STARTTLS, and the
 * capabilities are those of the reply while the connection stays open. An EHLO refused with
 * 500/502 is an RFC 821 server: HELO follows, and the server offers no extensions. */
static int greet(struct tern_client *c, bool ehlo, const char *domain, struct tern_reply *reply)
{
    enum tern_cmd cmd = ehlo ? TERN_CMD_EHLO : TERN_CMD_HELO;
    char line[512];
    const char *name = helo_name(c, domain);
    if (line_of(line, sizeof line, cmd, ehlo ? "EHLO" : "HELO", name, NULL, reply) < 0)
        return -1;
    if (name != c->helo)
        snprintf(c->helo, sizeof c->helo, "%s", name);
    int rc = drv_exchange(c, cmd, line, false, reply);
    if (ehlo && rc < 0 && c->connected && (reply->code == 500 || reply->code == 502))
        return greet(c, false, c->helo, reply);
    if (c->connected)
        smtpc_parse_caps(reply, ehlo, &c->caps);
    return rc == 0 ? 0 : -1;
}

int tern_helo(struct tern_client *c, const char *domain, struct tern_reply *reply)
{
    return greet(c, false, domain, reply);
}

int tern_ehlo(struct tern_client *c, const char *domain, struct tern_reply *reply)
{
    return greet(c, true, domain, reply);
}

int tern_starttls(struct tern_client *c, struct tern_reply *reply)
{
    if (tern_is_tls(c)) {
        creply_local(reply, TERN_CODE_LOCAL, TERN_CMD_STARTTLS, "the connection is already TLS");
        return -1;
    }
    if (drv_exchange(c, TERN_CMD_STARTTLS, "STARTTLS", false, reply) != 0)
        return -1;
    if (c->inlen > 0) {
        /* anything after the 220 came before TLS, in clear: an injection attempt (CVE-2011-0411
         * is the server-side twin) or a broken server; never read it as if encrypted */
        drv_fail(c, TERN_CMD_STARTTLS, reply,
                 "%s sent data after its 220 to STARTTLS, before TLS began; closed the "
                 "connection (a broken server, or someone injecting commands)",
                 c->host);
        return -1;
    }
    if (start_tls(c, reply) < 0)
        return -1;
    memset(&c->caps, 0, sizeof c->caps); /* RFC 3207 §4.2: forget what was said in clear */
    return tern_ehlo(c, c->helo[0] ? c->helo : NULL, reply);
}

/* ---- the other commands ---- */

/* One command "VERB[ arg]": 0 when positive. */
static int simple(struct tern_client *c, enum tern_cmd cmd, const char *verb, const char *arg,
                  struct tern_reply *reply)
{
    char line[SMTPC_MAX_COMMAND + 1];
    if (line_of(line, sizeof line, cmd, verb, arg, NULL, reply) < 0)
        return -1;
    return drv_exchange(c, cmd, line, false, reply) == 0 ? 0 : -1;
}

/* "VERB FROM:<path>[ params]" or "RCPT TO:<path>[ params]". */
static int path_cmd(struct tern_client *c, enum tern_cmd cmd, const char *verb, const char *path,
                    const char *params, struct tern_reply *reply)
{
    char arg[1100];
    if (!path) {
        creply_local(reply, TERN_CODE_LOCAL, cmd, "no address given for %s", verb);
        return -1;
    }
    int k = snprintf(arg, sizeof arg, "%s:<%s>", cmd == TERN_CMD_RCPT ? "TO" : "FROM", path);
    if (k < 0 || (size_t)k >= sizeof arg) {
        creply_local(reply, TERN_CODE_LOCAL, cmd, "the address for %s is too long", verb);
        return -1;
    }
    char line[SMTPC_MAX_COMMAND + 1];
    if (line_of(line, sizeof line, cmd, verb, arg, params, reply) < 0)
        return -1;
    return drv_exchange(c, cmd, line, false, reply) == 0 ? 0 : -1;
}

int tern_mail(struct tern_client *c, const char *from, const char *params, struct tern_reply *reply)
{
    return path_cmd(c, TERN_CMD_MAIL, "MAIL", from, params, reply);
}

int tern_rcpt(struct tern_client *c, const char *to, const char *params, struct tern_reply *reply)
{
    return path_cmd(c, TERN_CMD_RCPT, "RCPT", to, params, reply);
}

int tern_send_from(struct tern_client *c, const char *from, struct tern_reply *reply)
{
    return path_cmd(c, TERN_CMD_SEND, "SEND", from, NULL, reply);
}

int tern_soml_from(struct tern_client *c, const char *from, struct tern_reply *reply)
{
    return path_cmd(c, TERN_CMD_SOML, "SOML", from, NULL, reply);
}

int tern_saml_from(struct tern_client *c, const char *from, struct tern_reply *reply)
{
    return path_cmd(c, TERN_CMD_SAML, "SAML", from, NULL, reply);
}

int tern_rset(struct tern_client *c, struct tern_reply *reply)
{
    return simple(c, TERN_CMD_RSET, "RSET", NULL, reply);
}

int tern_noop(struct tern_client *c, struct tern_reply *reply)
{
    return simple(c, TERN_CMD_NOOP, "NOOP", NULL, reply);
}

int tern_vrfy(struct tern_client *c, const char *what, struct tern_reply *reply)
{
    return simple(c, TERN_CMD_VRFY, "VRFY", what, reply);
}

int tern_expn(struct tern_client *c, const char *list, struct tern_reply *reply)
{
    return simple(c, TERN_CMD_EXPN, "EXPN", list, reply);
}

int tern_help(struct tern_client *c, const char *topic, struct tern_reply *reply)
{
    return simple(c, TERN_CMD_HELP, "HELP", topic, reply);
}

int tern_turn(struct tern_client *c, struct tern_reply *reply)
{
    int rc = simple(c, TERN_CMD_TURN, "TURN", NULL, reply);
    if (rc == 0) /* the server now expects us to serve: that is ternd's job, not libtern's */
        drv_fail(c, TERN_CMD_TURN, NULL,
                 "TURN reversed the roles and libtern cannot act as the server; connect again");
    return rc;
}

int tern_quit(struct tern_client *c, struct tern_reply *reply)
{
    struct tern_reply tmp = {0};
    struct tern_reply *r = reply ? reply : &tmp;
    if (c->frames) {
        int wrc = drv_watch_quit(c, r);
        c->failure[0] = '\0';
        tern_reply_free(&tmp);
        return wrc;
    }
    int rc = c->data_mode ? -1 : simple(c, TERN_CMD_QUIT, "QUIT", NULL, r);
    if (c->data_mode)
        creply_local(r, TERN_CODE_LOCAL, TERN_CMD_QUIT,
                     "QUIT in the middle of a message: the message was not sent; closed");
    close_conn(c);
    c->failure[0] = '\0';
    tern_reply_free(&tmp);
    return rc;
}

int tern_data_begin(struct tern_client *c, struct tern_reply *reply)
{
    if (drv_exchange(c, TERN_CMD_DATA, "DATA", false, reply) != 1)
        return -1;
    c->data_mode = true;
    c->stuff = (struct smtpc_stuff){.bol = true, .dots = true};
    return 0;
}

int tern_data_write(struct tern_client *c, const void *buf, size_t len, struct tern_reply *reply)
{
    if (!c->data_mode) {
        creply_local(reply, TERN_CODE_LOCAL, TERN_CMD_DATA_END,
                     "no message is being sent: tern_data_begin must get its 354 first");
        return -1;
    }
    const char *p = buf;
    while (len > 0) {
        size_t n = len < DRV_DATA_CHUNK ? len : DRV_DATA_CHUNK;
        if (smtpc_data(c->core, &c->stuff, p, n) < 0) {
            drv_fail(c, TERN_CMD_DATA_END, reply, "out of memory sending the message");
            return -1;
        }
        if (drv_flush(c, reply) < 0)
            return -1;
        p += n;
        len -= n;
    }
    return 0;
}

int tern_data_end(struct tern_client *c, struct tern_reply *reply)
{
    if (!c->data_mode)
        return tern_data_write(c, "", 0, reply); /* says why */
    c->data_mode = false;
    if (smtpc_data_end(c->core, &c->stuff) < 0) {
        drv_fail(c, TERN_CMD_DATA_END, reply, "out of memory sending the message");
        return -1;
    }
    if (drv_reply(c, reply) < 0)
        return -1;
    return reply->cls == TERN_POSITIVE ? 0 : -1;
}

int tern_bdat(struct tern_client *c, const void *buf, size_t len, int last,
              struct tern_reply *reply)
{
    char line[64];
    snprintf(line, sizeof line, "BDAT %zu%s", len, last ? " LAST" : "");
    if (drv_queue(c, TERN_CMD_BDAT, line, false, reply) < 0)
        return -1;
    if (smtpc_raw(c->core, buf, len) < 0) {
        drv_fail(c, TERN_CMD_BDAT, reply, "out of memory sending the message");
        return -1;
    }
    if (drv_reply(c, reply) < 0)
        return -1;
    return reply->cls == TERN_POSITIVE ? 0 : -1;
}

int tern_command(struct tern_client *c, const char *verb, const char *arg, struct tern_reply *reply)
{
    size_t vn = verb ? strlen(verb) : 0;
    bool ok = vn > 0 && vn <= 20;
    for (size_t i = 0; ok && i < vn; i++)
        ok = (verb[i] >= 'A' && verb[i] <= 'Z') || (verb[i] >= 'a' && verb[i] <= 'z') ||
             (verb[i] >= '0' && verb[i] <= '9');
    if (!ok) {
        creply_local(reply, TERN_CODE_LOCAL, TERN_CMD_OTHER,
                     "\"%.40s\" is not an SMTP verb: give 1 to 20 letters or digits",
                     verb ? verb : "");
        return -1;
    }
    enum tern_cmd cmd = smtpc_cmd_of(verb);
    switch (cmd) {
    case TERN_CMD_EHLO:
        return tern_ehlo(c, arg, reply);
    case TERN_CMD_HELO:
        return tern_helo(c, arg, reply);
    case TERN_CMD_STARTTLS:
        return tern_starttls(c, reply);
    case TERN_CMD_QUIT:
        return tern_quit(c, reply);
    case TERN_CMD_TURN:
        return tern_turn(c, reply);
    case TERN_CMD_DATA:
        return tern_data_begin(c, reply);
    case TERN_CMD_BDAT:
        creply_local(reply, TERN_CODE_LOCAL, cmd,
                     "BDAT carries its data after the command: use tern_bdat");
        return -1;
    default:
        break;
    }
    char line[SMTPC_MAX_COMMAND + 1];
    if (line_of(line, sizeof line, cmd, verb, arg, NULL, reply) < 0)
        return -1;
    /* a raw AUTH line may carry credentials: keep them out of the transcript */
    int rc = drv_exchange(c, cmd, line, cmd == TERN_CMD_AUTH, reply);
    return rc >= 0 ? 0 : -1;
}

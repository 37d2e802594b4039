/* The audit records of one SMTP connection (fields in doc/tern.1): connect and disconnect, the
 * TLS handshake, limits hit, the session core's answers to HELO/EHLO, AUTH, MAIL, RCPT and
 * DATA/BDAT (through smtp_env.event), and the record of each accepted message, which is made
 * durable on the worker before its 250. Every string that came from the network goes through
 * audit_str, which bounds it and makes it valid UTF-8; nothing secret is ever passed in. */
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "audit/log.h"
#include "audit/record.h"
#include "net/conn_priv.h"
#include "store/maildir.h"
#include "util/log.h"

static const char *listener_name(enum conf_listener_kind k)
{
    return k == LISTEN_SUBMISSION ? "submission" : k == LISTEN_SMTPS ? "smtps" : "smtp";
}

/* Appends event with fields (stolen), adding the session id first. */
static void record(struct conn *c, const char *event, json_t *fields)
{
    if (!c->srv->audit) {
        json_decref(fields);
        return;
    }
    json_t *f = json_object();
    if (f) {
        json_object_set_new(f, "session", json_string(c->session));
        if (fields)
            json_object_update(f, fields);
    }
    json_decref(fields);
    srv_audit(c->srv, event, f);
}

void conn_audit_connect(struct conn *c)
{
    json_t *f = json_pack("{s:s,s:i,s:s}", "ip", c->ip, "port", c->port, "listener",
                          listener_name(c->kind));
    if (f && c->env.refuse)
        json_object_set_new(f, "refused", json_string("deny"));
    record(c, "connect", f);
    c->connect_recorded = true;
    if (c->env.over_limit)
        conn_audit_limit(c, "connections", "over the connection limits: greeted 421 and closed");
}

void conn_audit_disconnect(struct conn *c)
{
    if (!c->connect_recorded)
        return;
    struct smtp_stats st = {0};
    if (c->s)
        smtp_session_stats(c->s, &st);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    json_int_t ms = (json_int_t)(now.tv_sec - c->began.tv_sec) * 1000 +
                    (now.tv_nsec - c->began.tv_nsec) / 1000000;
    record(c, "disconnect",
           json_pack("{s:s,s:I,s:I,s:I,s:I}", "ip", c->ip, "duration_ms", ms, "bytes_in",
                     (json_int_t)st.bytes_in, "bytes_out", (json_int_t)c->bytes_out, "messages",
                     (json_int_t)st.messages));
}

void conn_audit_tls(struct conn *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    if (!ssl || !c->srv->audit)
        return;
    const SSL_CIPHER *ci = SSL_get_current_cipher(ssl);
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    json_t *f = json_pack("{s:s,s:s}", "protocol", SSL_get_version(ssl), "cipher",
                          ci ? SSL_CIPHER_get_name(ci) : "none");
    if (f)
        json_object_set_new(f, "sni", audit_str(sni)); /* null without SNI */
    record(c, "starttls", f);
}

void conn_audit_tls_fail(struct conn *c, const char *error)
{
    record(c, "starttls_fail", json_pack("{s:s,s:o}", "ip", c->ip, "error", audit_str(error)));
}

void conn_audit_limit(struct conn *c, const char *what, const char *detail)
{
    record(c, "limit",
           json_pack("{s:s,s:s,s:o}", "ip", c->ip, "what", what, "detail", audit_str(detail)));
}

/* The session core's answer to a command, or a limit it hit. */
void conn_audit_event(void *ctx, const struct smtp_event *ev)
{
    struct conn *c = ctx;
    if (!c->srv->audit)
        return;
    if (ev->limit) {
        conn_audit_limit(c, ev->verb, ev->text);
        return;
    }
    json_t *arg = audit_strn(ev->arg, ev->arg_len);
    const char *v = ev->verb;
    if (strcmp(v, "HELO") == 0 || strcmp(v, "EHLO") == 0) {
        record(c, "helo", json_pack("{s:s,s:o,s:i}", "verb", v, "name", arg, "code", ev->code));
        return;
    }
    if (strcmp(v, "XWATCH") == 0) {
        /* a refused XWATCH; the one that succeeds is recorded by net/watch.c */
        if (ev->code >= 400)
            record(c, "watch",
                   json_pack("{s:s,s:o,s:s,s:i,s:s,s:s,s:o}", "via", "xwatch", "user", arg,
                             "result", "fail", "code", ev->code, "enh", ev->enh, "rule", ev->rule,
                             "reason", audit_str(ev->text)));
        else
            json_decref(arg);
        return;
    }
    if (strcmp(v, "AUTH") == 0) {
        record(c, "auth",
               json_pack("{s:o,s:s,s:s,s:i,s:s,s:s}", "user", arg, "mech", ev->mech, "result",
                         ev->code == 235 ? "ok" : "fail", "code", ev->code, "enh", ev->enh, "rule",
                         ev->rule));
        return;
    }
    bool mail = strcmp(v, "MAIL") == 0 || strcmp(v, "SEND") == 0 || strcmp(v, "SOML") == 0 ||
                strcmp(v, "SAML") == 0;
    if (mail) {
        json_decref(c->rcpts); /* a new transaction */
        c->rcpts = NULL;
    } else if (strcmp(v, "RCPT") == 0 && (ev->code == 250 || ev->code == 251)) {
        if (!c->rcpts)
            c->rcpts = json_array();
        if (c->rcpts)
            json_array_append(c->rcpts, arg);
    }
    bool etrn = strcmp(v, "ETRN") == 0, turn = strcmp(v, "TURN") == 0;
    const char *event = mail                     ? "mail"
                        : strcmp(v, "RCPT") == 0 ? "rcpt"
                        : etrn                   ? "etrn"
                        : turn                   ? "turn"
                                                 : "data";
    const char *key = mail                     ? "from"
                      : strcmp(v, "RCPT") == 0 ? "to"
                      : etrn                   ? "node"
                      : turn                   ? "domains"
                                               : "id";
    json_t *f = json_pack("{s:s,s:o,s:i,s:s,s:s}", "verb", v, key, arg, "code", ev->code, "enh",
                          ev->enh, "rule", ev->rule);
    if (f && ev->code >= 400)
        json_object_set_new(f, "reply", audit_str(ev->text));
    record(c, event, f);
}

/* A header field body as a Message-ID: folding and blanks around it go. */
static json_t *message_id(const char *s)
{
    if (!s)
        return json_null();
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    return n ? audit_strn(s, n) : json_null();
}

json_t *conn_audit_message(struct conn *c, const struct smtp_txn *t, const char *const *boxlist,
                           size_t nboxes, const char *id)
{
    if (!c->srv->audit)
        return NULL;
    char sha[65] = "";
    unsigned char md[32];
    unsigned len = 0;
    if (c->sha && EVP_DigestFinal_ex(c->sha, md, &len) == 1 && len == 32)
        for (int i = 0; i < 32; i++)
            snprintf(sha + 2 * i, 3, "%02x", md[i]);
    json_t *boxes = json_array(), *files = json_array();
    for (size_t i = 0; boxes && files && i < nboxes; i++) {
        json_array_append_new(boxes, json_string(boxlist[i]));
        const char *at = strrchr(boxlist[i], '@');
        char f[TABLES_ADDR_MAX + MAILDIR_ID_MAX + 64];
        if (at) /* where maildir_commit links it: DATA_DIR/mail/DOMAIN/LOCAL/new/NAME,S=SIZE */
            snprintf(f, sizeof f, "mail/%s/%.*s/new/%s,S=%llu", at + 1, (int)(at - boxlist[i]),
                     boxlist[i], id, (unsigned long long)c->msg_bytes);
        json_array_append_new(files, json_string(at ? f : boxlist[i]));
    }
    json_t *f =
        json_pack("{s:s,s:s,s:o,s:I,s:s,s:s,s:s,s:o,s:o,s:o}", "session", c->session, "id", id,
                  "message_id", message_id(smtp_session_message_id(c->s)), "size",
                  (json_int_t)c->msg_bytes, "sha256", sha, "from", t->from, "auth_user",
                  t->auth_user, "rcpts", c->rcpts ? json_incref(c->rcpts) : json_array(),
                  "mailboxes", boxes ? boxes : json_array(), "files", files ? files : json_array());
    if (f)
        json_object_set_new(f, "queued",
                            c->spool_id[0] ? json_sprintf("spool/queue/%s.msg", c->spool_id)
                                           : json_null());
    return f;
}

void conn_audit_terminal(struct conn *c, const struct smtp_txn *t, const char *user,
                         size_t watchers, size_t dropped)
{
    static const char *const kinds[] = {"MAIL", "SEND", "SOML", "SAML"};
    record(c, "terminal",
           json_pack("{s:s,s:s,s:s,s:o,s:I,s:I,s:I}", "id", c->msg_id, "verb", kinds[t->kind],
                     "mailbox", user, "from", audit_str(t->from), "size", (json_int_t)c->msg_bytes,
                     "watchers", (json_int_t)watchers, "dropped", (json_int_t)dropped));
}

int conn_audit_append(struct conn *c, json_t *rec, uint64_t *seq, char *err, size_t errlen)
{
    return audit_append(c->srv->audit, "message", rec, seq, err, errlen);
}

int conn_audit_sync(struct conn *c, uint64_t seq, char *err, size_t errlen)
{
    return audit_sync(c->srv->audit, seq, err, errlen);
}

void conn_audit_failed(struct conn *c, const char *why, const char *detail)
{
    /* Called on a worker: safe, because srv_audit only appends (audit_append takes the log's
     * mutex) and this connection's fields are not touched by the loop while its job runs. */
    record(c, "message_failed",
           json_pack("{s:s,s:s,s:o}", "id", c->msg_id, "rule", why, "detail", audit_str(detail)));
}

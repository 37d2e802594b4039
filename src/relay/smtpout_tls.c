/* TLS for the outbound client: the client context, the OpenSSL filter put over the connection
 * (after the 220 to STARTTLS, or at once for implicit TLS), SNI and the host-name check, the end
 * of the handshake, and what is recorded about the session. Every mode checks the certificate
 * and records whether it verified; only the VERIFY modes make a failed check fail the handshake,
 * because opportunistic TLS against an unverified certificate still beats cleartext. */
#include "relay/smtpout_priv.h"

#include <arpa/inet.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

/* OpenSSL's reason for the last failure, or fallback. */
static const char *ssl_reason(char *buf, size_t n, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        return fallback;
    ERR_error_string_n(e, buf, n);
    ERR_clear_error();
    return buf;
}

SSL_CTX *smtpout_ssl_ctx_new(const char *ca_file, char *err, size_t errlen)
{
    char buf[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot set up TLS: %s", ssl_reason(buf, sizeof buf, "?"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* SMTP frames itself (221, end of data): a TCP close without close_notify is no attack */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* per connection, by its mode */
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (!ok) {
        snprintf(err, errlen, "cannot load the trusted CAs from %s: %s; check the path",
                 ca_file ? ca_file : "the system store", ssl_reason(buf, sizeof buf, "?"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

bool so_tls_verify_mode(const struct smtpout *s)
{
    return s->o.tls == SMTPOUT_TLS_VERIFY || s->o.tls == SMTPOUT_TLS_WRAPPER_VERIFY;
}

int so_tls_start(struct smtpout *s)
{
    char buf[256];
    ERR_clear_error();
    SSL *ssl = s->ctx ? SSL_new(s->ctx) : NULL;
    if (!ssl) {
        s->tls.failed = true;
        so_fail(s, "4.7.5", "cannot set up TLS for %s: %s", s->namaddr,
                ssl_reason(buf, sizeof buf, "no client context"));
        return -1;
    }
    unsigned char ip[16];
    bool literal = inet_pton(AF_INET, s->host, ip) == 1 || inet_pton(AF_INET6, s->host, ip) == 1;
    int ok = literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), s->host)
                     : SSL_set_tlsext_host_name(ssl, s->host) == 1 && /* no SNI for IPs */
                           SSL_set1_host(ssl, s->host) == 1;
    if (!ok) {
        SSL_free(ssl);
        s->tls.failed = true;
        so_fail(s, "4.7.5", "cannot check a certificate against \"%s\": %s", s->host,
                ssl_reason(buf, sizeof buf, "not a valid name"));
        return -1;
    }
    SSL_set_verify(ssl, so_tls_verify_mode(s) ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    struct bufferevent *tb =
        bufferevent_openssl_filter_new(s->base, s->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!tb) {
        /* libevent may or may not have freed the plain bufferevent: leak it rather than risk
         * a double free (out of memory only) */
        SSL_free(ssl);
        s->bev = NULL;
        s->tls.failed = true;
        so_fail(s, "4.3.0", "out of memory starting TLS with %s", s->namaddr);
        return -1;
    }
    s->bev = tb;
    bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
    s->state = SO_HANDSHAKE;
    so_bev_setup(s);
    so_arm(s, so_timeout_for(s, TERN_CMD_STARTTLS));
    return 0;
}

void so_tls_record(struct smtpout *s, SSL *ssl)
{
    struct smtpout_tls_info *t = &s->tls;
    t->on = true;
    snprintf(t->protocol, sizeof t->protocol, "%s", SSL_get_version(ssl));
    const char *cipher = SSL_get_cipher_name(ssl);
    snprintf(t->cipher, sizeof t->cipher, "%s", cipher ? cipher : "");
    X509 *peer = SSL_get0_peer_certificate(ssl);
    long vr = SSL_get_verify_result(ssl);
    t->verified = peer && vr == X509_V_OK && !SSL_is_server(ssl);
    if (!peer)
        snprintf(t->verify_error, sizeof t->verify_error, "no certificate");
    else if (SSL_is_server(ssl))
        snprintf(t->verify_error, sizeof t->verify_error, "we are the TLS server (TURN)");
    else if (vr != X509_V_OK)
        snprintf(t->verify_error, sizeof t->verify_error, "%s", X509_verify_cert_error_string(vr));
    else
        t->verify_error[0] = '\0';
}

void so_tls_event(struct smtpout *s, short what)
{
    SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
    if (what & BEV_EVENT_CONNECTED) {
        evtimer_del(s->timer);
        so_tls_record(s, ssl);
        if (so_tls_verify_mode(s) && !s->tls.verified) { /* SSL_VERIFY_PEER should stop it */
            s->tls.failed = true;
            so_fail(s, "4.7.5", "the TLS certificate of %s does not verify: %s", s->namaddr,
                    s->tls.verify_error);
            return;
        }
        if (s->after_starttls)
            so_setup_after_tls(s);
        else
            so_setup_begin(s); /* implicit TLS: the greeting comes now */
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
        return;
    s->tls.failed = true;
    int err = EVUTIL_SOCKET_ERROR();
    unsigned long e, last = 0;
    while ((e = bufferevent_get_openssl_error(s->bev)))
        last = e;
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    char buf[256];
    if (so_tls_verify_mode(s) && vr != X509_V_OK) {
        so_fail(s, "4.7.5", "the TLS certificate of %s does not verify: %s", s->namaddr,
                X509_verify_cert_error_string(vr));
    } else if (last) {
        ERR_error_string_n(last, buf, sizeof buf);
        so_fail(s, "4.7.5", "TLS handshake with %s failed: %s", s->namaddr, buf);
    } else {
        so_fail(s, "4.7.5", "TLS handshake with %s failed: %s", s->namaddr,
                (what & BEV_EVENT_EOF) || !err ? "the server closed the connection"
                                               : strerror(err));
    }
}

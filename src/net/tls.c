/* The TLS server context and session descriptions (see tls.h). */
#include "net/tls.h"

#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The SNI certificates ride on the default context as ex_data, so they live exactly as long as
 * it does: a reload replaces the default context, and handshakes still under way keep theirs. */
struct sni_table {
    size_t n;
    char host[CONF_MAX_SNI][256];
    SSL_CTX *ctx[CONF_MAX_SNI];
};

static int sni_index = -1;

static void sni_table_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp)
{
    struct sni_table *t = ptr;
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        SSL_CTX_free(t->ctx[i]);
    free(t);
}

/* Does the client's name match host ("*.example.org" takes exactly one more label)? */
static bool sni_match(const char *host, const char *name)
{
    if (strncmp(host, "*.", 2) != 0)
        return strcasecmp(host, name) == 0;
    const char *dot = strchr(name, '.');
    return dot && dot != name && strcasecmp(dot + 1, host + 2) == 0;
}

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    (void)arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    struct sni_table *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), sni_index);
    if (!name || !t)
        return SSL_TLSEXT_ERR_OK; /* the default certificate */
    for (size_t i = 0; i < t->n; i++)
        if (sni_match(t->host[i], name)) {
            SSL_set_SSL_CTX(ssl, t->ctx[i]);
            break;
        }
    return SSL_TLSEXT_ERR_OK;
}

/* The last OpenSSL error as text, for a reason the administrator can act on. */
static const char *ssl_reason(void)
{
    static _Thread_local char buf[256];
    unsigned long e = ERR_get_error();
    if (!e)
        return "unknown error";
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return buf;
}

/* One server context for one certificate and key. */
static SSL_CTX *ctx_for(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context: %s", ssl_reason());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION);
    /* forward-secret AEAD suites only for TLS 1.2; TLS 1.3's defaults are all good */
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL");
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "certificate %s cannot be used: %s; give a PEM certificate chain",
                 cert, ssl_reason());
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen,
                 "key %s cannot be used with %s: %s; give the PEM private key of that "
                 "certificate",
                 key, cert, ssl_reason());
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL_CTX *tls_ctx_new(const struct conf *c, char *err, size_t errlen)
{
    err[0] = '\0';
    if (!c->tls_cert[0])
        return NULL;
    SSL_CTX *ctx = ctx_for(c->tls_cert, c->tls_key, err, errlen);
    if (!ctx || c->nsni == 0)
        return ctx;
    if (sni_index < 0) /* first use, on the loop thread before any handshake */
        sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_table_free);
    struct sni_table *t = calloc(1, sizeof *t);
    if (!t || sni_index < 0 || SSL_CTX_set_ex_data(ctx, sni_index, t) != 1) {
        free(t);
        snprintf(err, errlen, "out of memory for the sni certificates");
        SSL_CTX_free(ctx);
        return NULL;
    }
    for (size_t i = 0; i < c->nsni; i++) {
        t->ctx[i] = ctx_for(c->sni[i].cert, c->sni[i].key, err, errlen);
        if (!t->ctx[i]) {
            SSL_CTX_free(ctx); /* frees t and the contexts made so far */
            return NULL;
        }
        snprintf(t->host[i], sizeof t->host[i], "%s", c->sni[i].host);
        t->n = i + 1;
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    return ctx;
}

void tls_describe(const SSL *ssl, char *out, size_t n)
{
    const SSL_CIPHER *ci = SSL_get_current_cipher(ssl);
    int alg = 0;
    int bits = ci ? SSL_CIPHER_get_bits(ci, &alg) : 0;
    snprintf(out, n, "%s with cipher %s (%d/%d bits)", SSL_get_version(ssl),
             ci ? SSL_CIPHER_get_name(ci) : "none", bits, alg);
}

/* The TLS server context and session descriptions (see tls.h). */
#include "net/tls.h"

#include <openssl/err.h>
#include <stdio.h>

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

SSL_CTX *tls_ctx_new(const struct conf *c, char *err, size_t errlen)
{
    err[0] = '\0';
    if (!c->tls_cert[0])
        return NULL;
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
    if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert) != 1) {
        snprintf(err, errlen, "certificate %s cannot be used: %s; give a PEM certificate chain",
                 c->tls_cert, ssl_reason());
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen,
                 "key %s cannot be used with %s: %s; give the PEM private key of that "
                 "certificate",
                 c->tls_key, c->tls_cert, ssl_reason());
        SSL_CTX_free(ctx);
        return NULL;
    }
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

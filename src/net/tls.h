/* TLS for the listeners (OpenSSL 3): the server context built from [tls] (TLS 1.2 minimum, the
 * server's cipher preference, no renegotiation, no compression), and the one-line description of
 * a session's protocol and cipher for logs and Received:. */
#ifndef TERN_NET_TLS_H
#define TERN_NET_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

#include "conf/config.h"

/* A new server context from c's cert and key. NULL with err empty when c has no [tls]; NULL with
 * a reason (naming the file and what to do) when they cannot be used. */
SSL_CTX *tls_ctx_new(const struct conf *c, char *err, size_t errlen);

/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" */
void tls_describe(const SSL *ssl, char *out, size_t n);

#endif

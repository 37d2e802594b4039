/* libtern's transport: one TCP connection (getaddrinfo, every address in turn, non-blocking
 * connect bounded by a timeout) and optionally TLS over it (OpenSSL: certificate and host name
 * verified unless told otherwise, SNI), read and written without ever blocking so the driver can
 * bound every wait with poll. Reasons for failures name the host and what to do about them. */
#ifndef TERN_CLIENT_TRANSPORT_H
#define TERN_CLIENT_TRANSPORT_H

#include "tern/client.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct tport {
    int fd;       /* -1 when closed */
    SSL_CTX *ctx; /* made on first TLS use, kept for reconnects */
    SSL *ssl;     /* non-NULL once TLS started */
    bool ctx_insecure;
};

/* What the caller verifies the server against. */
struct tport_tls {
    const char *ca_file, *ca_path, *client_cert, *client_key;
    bool insecure;
    const char *name; /* the name the certificate must carry (and SNI when not an address) */
};

#define TPORT_WOULD_BLOCK (-2)

void tport_init(struct tport *t);
/* Connects to host:port within timeout_ms. -1 with why (the system's reason) otherwise. */
int tport_connect(struct tport *t, const char *host, const char *port, unsigned timeout_ms,
                  char *why, size_t whylen);
/* TLS handshake over the connection within timeout_ms. -1 with why otherwise. */
int tport_tls_start(struct tport *t, const struct tport_tls *conf, unsigned timeout_ms, char *why,
                    size_t whylen);
/* One attempt: >0 octets moved, 0 end of stream (read only), -1 error (why), TPORT_WOULD_BLOCK
 * with *events set to what to poll for (POLLIN or POLLOUT: TLS may need either). */
ssize_t tport_read(struct tport *t, void *buf, size_t n, short *events, char *why, size_t whylen);
ssize_t tport_write(struct tport *t, const void *buf, size_t n, short *events, char *why,
                    size_t whylen);
/* Bytes TLS has decrypted and not yet handed out (they never show up in poll). */
size_t tport_pending(const struct tport *t);
/* Closes the connection (TLS without close_notify: the peer may be gone); keeps the context. */
void tport_close(struct tport *t);
/* And frees the context. */
void tport_free(struct tport *t);
int tport_tls_info(const struct tport *t, struct tern_tls_info *info);

/* strerror for threads: strerror(3) may share one buffer between them. ERRSTR(e) gives a buffer
 * that lives until the end of the enclosing block, enough for a message's arguments. */
const char *tport_strerror(int err, char *buf, size_t n);
#define ERRSTR(e) tport_strerror((e), (char[128]){0}, 128)

/* Milliseconds on a monotonic clock. */
long long tport_now_ms(void);
/* poll() for events until deadline_ms: 1 ready, 0 timed out, -1 error (why). */
int tport_wait(struct tport *t, short events, long long deadline_ms, char *why, size_t whylen);

#endif

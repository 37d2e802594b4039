/* SMTP AUTH (RFC 4954) mechanisms through GNU SASL: PLAIN, LOGIN and SCRAM-SHA-256, server side.
 * A step may verify a password (slow), so steps run on worker threads; one exchange is never
 * stepped by two threads at once. The tables are read-only and outlive the exchange. */
#ifndef TERN_AUTH_SASL_H
#define TERN_AUTH_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "policy/tables.h"

struct sasl;      /* process-wide: one Gsasl context */
struct sasl_conn; /* one AUTH exchange */

struct sasl *sasl_new(char *err, size_t errlen);
void sasl_free(struct sasl *s);

/* The mechanisms offered, space-separated, for EHLO's AUTH keyword: "PLAIN LOGIN SCRAM-SHA-256". */
const char *sasl_mechanisms(const struct sasl *s);
/* Is mech (any case) one of them? */
bool sasl_supported(const struct sasl *s, const char *mech, size_t len);

/* Starts an exchange with mech for users in t. NULL with a reason on failure. */
struct sasl_conn *sasl_conn_new(struct sasl *s, const char *mech, const struct tables *t, char *err,
                                size_t errlen);

enum sasl_status {
    SASL_CONTINUE,   /* send "334 " + *out, read the next response */
    SASL_OK,         /* authenticated: user holds the address (lowercased user@domain) */
    SASL_BAD_BASE64, /* the response was not base64: 501 5.5.2 */
    SASL_FAIL,       /* wrong user or password, locked user, or a protocol error: 535 5.7.8 */
    SASL_NOT_ADMIN,  /* authorization identity differs and the user is not an admin: 535 5.7.8 */
    SASL_TEMP,       /* internal failure: 454 4.7.0 */
};

/* Worker thread. in is the client's base64 response ("" for an empty one, "=" already mapped to
 * "" by the caller; NULL when AUTH had no initial response). *out (malloc'd base64, maybe "")
 * is set on SASL_CONTINUE. Reasons for the log (never the secret) go to why. */
enum sasl_status sasl_conn_step(struct sasl_conn *c, const char *in, char **out, char *user,
                                size_t userlen, char *why, size_t whylen);

/* The authentication identity the client tried, once known ("" before), for throttling per user
 * and the log. */
const char *sasl_conn_authid(const struct sasl_conn *c);

void sasl_conn_free(struct sasl_conn *c);

#endif

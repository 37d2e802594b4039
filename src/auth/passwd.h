/* Credentials of the users file: verifying a password against a stored {CRYPT} (yescrypt, and
 * any scheme libxcrypt knows) or {SCRAM-SHA-256} entry, and making new ones. Deliberately slow:
 * call only from worker threads or the CLI, never on the event loop. */
#ifndef TERN_AUTH_PASSWD_H
#define TERN_AUTH_PASSWD_H

#include <stdbool.h>
#include <stddef.h>

#define PASSWD_MAX 1024 /* longest password accepted (bytes) */
/* ~12 ms here, like one yescrypt verify: PLAIN timing must not tell SCRAM users from unknown
 * names (which cost a yescrypt dummy) */
#define PASSWD_SCRAM_ITER 50000

/* 1 when password matches stored ("{CRYPT}..." or "{SCRAM-SHA-256}..."), 0 when not, -1 when the
 * stored value is unusable (empty, unknown scheme, malformed). Constant-time comparison. */
int passwd_verify(const char *stored, const char *password, size_t pwlen);

/* Verifies against a fixed dummy hash of the same cost and returns 0: used when the user does not
 * exist or is locked, so that neither the reply nor its timing tells. */
int passwd_verify_dummy(const char *password, size_t pwlen);

/* "{CRYPT}$y$..." (yescrypt, random salt from getrandom). 0, or -1 with a reason. */
int passwd_hash_crypt(const char *password, size_t pwlen, char *out, size_t outlen, char *err,
                      size_t errlen);

/* "{SCRAM-SHA-256}ITER,SALT,STOREDKEY,SERVERKEY" (Dovecot's format: salt and keys in base64),
 * PBKDF2-HMAC-SHA-256 with a random 16-byte salt. 0, or -1 with a reason. */
int passwd_hash_scram(const char *password, size_t pwlen, unsigned iterations, char *out,
                      size_t outlen, char *err, size_t errlen);

/* The parts of a {SCRAM-SHA-256} entry, as GNU SASL's server wants them: iteration count as
 * decimal text, salt in base64, StoredKey and ServerKey in hex. -1 if stored is not SCRAM. */
struct passwd_scram {
    char iter[16];
    char salt_b64[64];
    char stored_hex[65];
    char server_hex[65];
};
int passwd_scram_parts(const char *stored, struct passwd_scram *out);

#endif

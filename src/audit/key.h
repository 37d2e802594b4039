/* The audit log's forward-secure MAC key: k(n+1) = SHA-256(k(n)), where n, the epoch, counts
 * evolutions since the first key. Owns the key's one-line file format ("EPOCH HEXKEY\n", the
 * same for audit/key and for the first key the admin keeps elsewhere), the key id that lets a
 * verifier tell a wrong key from an edited record, and the replace-by-rename that overwrites a
 * small file durably. Knowing k(n) gives every later key and no earlier one: that is what
 * makes records of past epochs safe from someone who takes the machine later. */
#ifndef TERN_AUDIT_KEY_H
#define TERN_AUDIT_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AUDIT_KEY_LEN 32
#define AUDIT_KEY_HEX_LEN 64
#define AUDIT_KEY_ID_HEX_LEN 16
/* Past this an epoch is not one a log reaches (900 s epochs: over a century), and evolving a
 * first key that far would take seconds: a number this big is damage, not history. */
#define AUDIT_EPOCH_MAX (1ull << 22)

/* k(n+1) = SHA-256(k(n)), in place. */
void audit_key_evolve(unsigned char key[AUDIT_KEY_LEN]);

/* The key's public name: hex of the first 8 bytes of HMAC-SHA-256(key, "tern-audit key id").
 * It names the key without revealing it or the next one (which is SHA-256 of the key). */
void audit_key_id(const unsigned char key[AUDIT_KEY_LEN], char out[AUDIT_KEY_ID_HEX_LEN + 1]);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void audit_hex(const unsigned char *bytes, size_t n, char *out);

/* Parses exactly 2n hex digits (either case) into bytes. 0, or -1. */
int audit_unhex(const char *hex, size_t hexlen, unsigned char *bytes, size_t n);

/* Reads a key file: one line "EPOCH HEXKEY". 0, or -1 with a reason naming path (a missing
 * file, a malformed line). */
int audit_key_load(const char *path, uint64_t *epoch, unsigned char key[AUDIT_KEY_LEN], char *err,
                   size_t errlen);

/* Writes a key file durably through audit_file_replace. 0, or -1 with a reason. */
int audit_key_store(const char *path, uint64_t epoch, const unsigned char key[AUDIT_KEY_LEN],
                    mode_t mode, char *err, size_t errlen);

/* Replaces path with text: PATH.tmp written with mode, fsync'd, renamed over path; the
 * directory is fsync'd too when sync_dir (without it a crash may bring the old file back, never
 * half a file). 0, or -1 with a reason naming the path. */
int audit_file_replace(const char *path, const char *text, size_t len, mode_t mode, bool sync_dir,
                       char *err, size_t errlen);

#endif

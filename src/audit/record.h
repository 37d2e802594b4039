/* One audit record: one JSON object on one line, written by audit/log.c, read back by
 * audit/verify.c and (later) `tern audit show`. The line is
 *
 *   {"seq":N,"ts":"YYYY-MM-DDTHH:MM:SS.uuuuuuZ","epoch":E,"event":"NAME",FIELDS...,"mac":"HEX"}
 *
 * compact, ASCII (jansson escapes quotes, C0 controls, NULs and everything past 0x7f; DEL itself
 * stays raw, so readers such as `tern audit show` escape it for terminals), keys in
 * exactly that order, the event's own fields in the order the caller added them, mac always
 * last. The MAC'd ("canonical") bytes are the line as stored up to, not including, its final
 * ,"mac":" member: the line is always CANONICAL + ,"mac":"<64 hex>"} + "\n". So a verifier
 * checks the bytes it reads and never depends on re-serializing JSON the same way twice.
 *
 *   mac = HMAC-SHA-256(k(epoch), PREV || CANONICAL)
 *
 * where PREV is the previous record's mac as 32 raw bytes, or 32 zero bytes before the first
 * record of a new log (seq 1). Strings from the network are hostile: every string value is
 * made valid UTF-8 and bounded (AUDIT_FIELD_MAX bytes, then a marker saying how much was cut);
 * a whole line is bounded by AUDIT_LINE_MAX. */
#ifndef TERN_AUDIT_RECORD_H
#define TERN_AUDIT_RECORD_H

#include "audit/key.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUDIT_LINE_MAX 16384 /* bytes of a record line, its newline included */
#define AUDIT_FIELD_MAX 1000 /* bytes of one string value before it is cut */
#define AUDIT_EVENT_MAX 64   /* bytes of an event name: [a-z0-9_.] */
#define AUDIT_TS_LEN 27      /* 2024-05-01T12:34:56.123456Z */
#define AUDIT_MAC_LEN 32
#define AUDIT_MAC_HEX_LEN 64
#define AUDIT_MAC_SUFFIX_LEN 74 /* ,"mac":"<64 hex>"} */

/* A bounded, valid-UTF-8 JSON string for a value that came from outside: invalid bytes become
 * U+FFFD, and past AUDIT_FIELD_MAX bytes the rest is cut (at a character boundary) and
 * "...[+N bytes]" appended. NUL bytes are kept (the line shows them as \u0000). NULL only when
 * out of memory; a NULL s gives JSON null. */
json_t *audit_strn(const char *s, size_t len);
json_t *audit_str(const char *s);

/* Formats microseconds since the Unix epoch as RFC 3339 UTC with microseconds. */
void audit_format_ts(int64_t us, char out[AUDIT_TS_LEN + 1]);

/* The microseconds since the Unix epoch of a stamp that audit_ts_valid accepts. */
int64_t audit_ts_us(const char *s);

/* Does s have exactly the shape audit_format_ts writes (fields in range)? Such strings sort
 * lexicographically in time order. */
bool audit_ts_valid(const char *s);

/* Is name a valid event name: 1..AUDIT_EVENT_MAX bytes of [a-z0-9_.]? */
bool audit_event_name_valid(const char *name);

/* HMAC-SHA-256(key, prev || canon). 0, or -1 if OpenSSL fails. Thread-safe. */
int audit_mac(const unsigned char key[AUDIT_KEY_LEN], const unsigned char prev[AUDIT_MAC_LEN],
              const char *canon, size_t len, unsigned char out[AUDIT_MAC_LEN]);

/* What the writer puts before the event's fields. */
struct audit_record_meta {
    uint64_t seq;
    int64_t ts_us;
    uint64_t epoch;
    const char *event;
};

/* Formats one record into out (outlen > AUDIT_LINE_MAX): the line, its newline, a NUL, and
 * its length without the NUL in *len. fields (borrowed; NULL for none) must be an object none
 * of whose keys is seq, ts, epoch, event or mac; its strings are bounded and made valid in
 * place. A line that would pass AUDIT_LINE_MAX is written again with strings cut to 64 bytes
 * and arrays to 16 members, and if still too long with the fields replaced by
 * {"fields_dropped":BYTES}: a record is never lost for being big. The record's mac goes to
 * mac_out. 0, or -1 with a reason (bad event name or key, out of memory). */
int audit_record_format(const struct audit_record_meta *meta, json_t *fields,
                        const unsigned char key[AUDIT_KEY_LEN],
                        const unsigned char prev[AUDIT_MAC_LEN], char *out, size_t outlen,
                        size_t *len, unsigned char mac_out[AUDIT_MAC_LEN], char *err,
                        size_t errlen);

/* A line read back. */
struct audit_record {
    uint64_t seq;
    uint64_t epoch;
    char ts[AUDIT_TS_LEN + 1];
    char event[AUDIT_EVENT_MAX + 1];
    unsigned char mac[AUDIT_MAC_LEN];
    size_t canon_len; /* the line's first canon_len bytes are what the mac covers */
    json_t *obj;      /* the whole object, owned; NULL unless parsed with keep */
};

/* Parses one line (without its newline) of at most AUDIT_LINE_MAX - 1 bytes into rec: the
 * mac suffix is where it must be, the JSON is one object without duplicate keys, seq, ts,
 * epoch, event come first in that order and are well-formed (seq >= 1, epoch <=
 * AUDIT_EPOCH_MAX), mac is last and matches the suffix. Keeps the parsed object in rec->obj
 * when keep (release it with audit_record_release). 0, or -1 with a reason saying what is
 * wrong. Never trusts the input: any bytes give 0 or -1. */
int audit_record_parse(const char *line, size_t len, struct audit_record *rec, bool keep, char *err,
                       size_t errlen);

/* Does rec's mac hold for line under key, after the record whose mac is prev? */
bool audit_record_mac_ok(const struct audit_record *rec, const char *line,
                         const unsigned char key[AUDIT_KEY_LEN],
                         const unsigned char prev[AUDIT_MAC_LEN]);

/* Frees rec->obj, if kept. */
void audit_record_release(struct audit_record *rec);

#endif

/* The record line of record.h: bounding hostile strings, the time stamp, the MAC (OpenSSL's
 * EVP_MAC HMAC, fetched once), formatting a record with jansson and parsing one back without
 * trusting a byte of it. The formatter owns the fixed key order; the parser checks it, so a
 * line that merely parses as JSON is not yet a record. */
#include "audit/record.h"

#include "util/err.h"

#include "util/utf8.h"
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SMALL_STRING_MAX 64 /* strings in a record that had to be shrunk */
#define SMALL_ARRAY_MAX 16
#define ARRAY_MAX 1024 /* members of one array in a record */
#define DEPTH_MAX 8    /* nesting of fields: a record is a flat event, not a document */
#define MARKER_MAX 32  /* "...[+N bytes]" with N up to 20 digits */

static const char mac_prefix[] = ",\"mac\":\"";

/* s made valid UTF-8 and cut after max bytes, with a marker saying how many were cut. */
static json_t *bounded_string(const char *s, size_t len, size_t max)
{
    static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
    char buf[AUDIT_FIELD_MAX + MARKER_MAX + 1];
    if (max > AUDIT_FIELD_MAX)
        max = AUDIT_FIELD_MAX;
    size_t o = 0, i = 0;
    while (i < len) {
        size_t n = utf8_char_len((const unsigned char *)s + i, len - i);
        const char *piece = n ? s + i : replacement;
        size_t plen = n ? n : 3;
        if (o + plen > max)
            break;
        memcpy(buf + o, piece, plen);
        o += plen;
        i += n ? n : 1;
    }
    if (i < len)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "...[+%zu bytes]", len - i);
    return json_stringn(buf, o);
}

json_t *audit_strn(const char *s, size_t len)
{
    return s ? bounded_string(s, len, AUDIT_FIELD_MAX) : json_null();
}

json_t *audit_str(const char *s)
{
    return s ? bounded_string(s, strlen(s), AUDIT_FIELD_MAX) : json_null();
}

/* Does this string value need bounding: too long, or not valid UTF-8 (a _nocheck string)?
 * The slack lets a string audit_strn already cut keep its marker. */
static bool string_needs_bound(const char *s, size_t len, size_t max)
{
    if (len > max + MARKER_MAX)
        return true;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_char_len((const unsigned char *)s + i, len - i);
        if (n == 0)
            return true;
        i += n;
    }
    return false;
}

/* The value to store instead of v, or NULL to keep v (possibly bounded in place). */
static json_t *bound_value(json_t *v, size_t strmax, size_t arrmax, int depth);

/* Bounds an object's values in place. */
static void bound_object(json_t *obj, size_t strmax, size_t arrmax, int depth)
{
    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
        json_t *rep = bound_value(json_object_iter_value(it), strmax, arrmax, depth + 1);
        if (rep)
            json_object_iter_set_new(obj, it, rep);
    }
}

/* Bounds an array's members and length in place. */
static void bound_array(json_t *arr, size_t strmax, size_t arrmax, int depth)
{
    size_t n = json_array_size(arr);
    if (n > arrmax) {
        while (json_array_size(arr) > arrmax)
            json_array_remove(arr, json_array_size(arr) - 1);
        char more[48];
        snprintf(more, sizeof(more), "...[+%zu more]", n - arrmax);
        json_array_append_new(arr, json_string(more));
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *rep = bound_value(json_array_get(arr, i), strmax, arrmax, depth + 1);
        if (rep)
            json_array_set_new(arr, i, rep);
    }
}

static json_t *bound_value(json_t *v, size_t strmax, size_t arrmax, int depth)
{
    if ((json_is_object(v) || json_is_array(v)) && depth >= DEPTH_MAX)
        return json_string("[nested too deep]");
    if (json_is_object(v))
        bound_object(v, strmax, arrmax, depth);
    else if (json_is_array(v))
        bound_array(v, strmax, arrmax, depth);
    else if (json_is_string(v) &&
             string_needs_bound(json_string_value(v), json_string_length(v), strmax))
        return bounded_string(json_string_value(v), json_string_length(v), strmax);
    return NULL;
}

void audit_format_ts(int64_t us, char out[AUDIT_TS_LEN + 1])
{
    if (us < 0)
        us = 0;
    time_t sec = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    if (tm.tm_year + 1900 > 9999) /* keeps the fixed width that makes stamps sort */
        tm = (struct tm){.tm_year = 9999 - 1900, .tm_mon = 11, .tm_mday = 31};
    char buf[96]; /* room for what the compiler cannot rule out; the fields fit in 27 */
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000));
    memcpy(out, buf, AUDIT_TS_LEN);
    out[AUDIT_TS_LEN] = '\0';
}

/* The decimal value of n digits at s, or -1 if any is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

bool audit_ts_valid(const char *s)
{
    if (strlen(s) != AUDIT_TS_LEN)
        return false;
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != '.' || s[26] != 'Z')
        return false;
    int mon = digits(s + 5, 2), day = digits(s + 8, 2), h = digits(s + 11, 2);
    int min = digits(s + 14, 2), sec = digits(s + 17, 2);
    return digits(s, 4) >= 0 && digits(s + 20, 6) >= 0 && mon >= 1 && mon <= 12 && day >= 1 &&
           day <= 31 && h >= 0 && h <= 23 && min >= 0 && min <= 59 && sec >= 0 && sec <= 60;
}

int64_t audit_ts_us(const char *s)
{
    struct tm tm = {.tm_year = digits(s, 4) - 1900,
                    .tm_mon = digits(s + 5, 2) - 1,
                    .tm_mday = digits(s + 8, 2),
                    .tm_hour = digits(s + 11, 2),
                    .tm_min = digits(s + 14, 2),
                    .tm_sec = digits(s + 17, 2)};
    return (int64_t)timegm(&tm) * 1000000 + digits(s + 20, 6);
}

bool audit_event_name_valid(const char *name)
{
    size_t n = 0;
    for (; name[n]; n++) {
        char c = name[n];
        if (n >= AUDIT_EVENT_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
            return false;
    }
    return n > 0;
}

static EVP_MAC *hmac_alg;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

/* Fetches the HMAC implementation once: fetching is the slow part of a MAC this small. */
static void fetch_hmac(void)
{
    hmac_alg = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
}

/* A context keyed with the last key used, re-initialised for each record with the key it holds
 * (EVP_MAC_init with a NULL key) instead of fetching the digest and hashing the key again, or
 * copying a context (the key changes once an epoch). One for the process, under its own lock
 * for the whole MAC: the writer and verify call this from one thread at a time anyway. Never
 * freed: it is reachable until exit. */
static pthread_mutex_t keyed_mu = PTHREAD_MUTEX_INITIALIZER;
static EVP_MAC_CTX *keyed;
static unsigned char keyed_key[AUDIT_KEY_LEN];

/* Under keyed_mu: keyed holds key and is ready for a message; false on failure. */
static bool keyed_ready(const unsigned char key[AUDIT_KEY_LEN])
{
    if (keyed && CRYPTO_memcmp(keyed_key, key, AUDIT_KEY_LEN) == 0)
        return EVP_MAC_init(keyed, NULL, 0, NULL) == 1;
    EVP_MAC_CTX_free(keyed);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    keyed = EVP_MAC_CTX_new(hmac_alg);
    if (keyed && !EVP_MAC_init(keyed, key, AUDIT_KEY_LEN, params)) {
        EVP_MAC_CTX_free(keyed);
        keyed = NULL;
    }
    if (keyed)
        memcpy(keyed_key, key, AUDIT_KEY_LEN);
    return keyed != NULL;
}

int audit_mac(const unsigned char key[AUDIT_KEY_LEN], const unsigned char prev[AUDIT_MAC_LEN],
              const char *canon, size_t len, unsigned char out[AUDIT_MAC_LEN])
{
    pthread_once(&hmac_once, fetch_hmac);
    if (!hmac_alg)
        return -1;
    pthread_mutex_lock(&keyed_mu);
    size_t outlen = 0;
    bool ok = keyed_ready(key) && EVP_MAC_update(keyed, prev, AUDIT_MAC_LEN) &&
              EVP_MAC_update(keyed, (const unsigned char *)canon, len) &&
              EVP_MAC_final(keyed, out, &outlen, AUDIT_MAC_LEN) && outlen == AUDIT_MAC_LEN;
    if (!ok) { /* a context in an unknown state is not reused */
        EVP_MAC_CTX_free(keyed);
        keyed = NULL;
    }
    pthread_mutex_unlock(&keyed_mu);
    return ok ? 0 : -1;
}

/* The record without mac into out: the writer's fixed keys, then the fields (or a note of how
 * big they were), as one JSON object with no final NUL. The fixed keys are printed, not built:
 * none of them needs escaping (event names are checked, ts is digits and punctuation), and
 * dumping the fields object alone after them gives the bytes one merged object would, without
 * copying it. Returns the length the record needs (more than outlen when it did not fit), 0 on
 * error. */
static size_t dump(const struct audit_record_meta *m, json_t *fields, size_t dropped, char *out,
                   size_t outlen)
{
    char ts[AUDIT_TS_LEN + 1];
    audit_format_ts(m->ts_us, ts);
    int h = snprintf(out, outlen, "{\"seq\":%llu,\"ts\":\"%s\",\"epoch\":%llu,\"event\":\"%s\"",
                     (unsigned long long)m->seq, ts, (unsigned long long)m->epoch, m->event);
    if (h < 0 || (size_t)h + 1 >= outlen)
        return 0;
    size_t n = (size_t)h;
    if (dropped) {
        int d = snprintf(out + n, outlen - n, ",\"fields_dropped\":%zu}", dropped);
        return d < 0 ? 0 : n + (size_t)d;
    }
    if (!fields || json_object_size(fields) == 0) {
        out[n] = '}';
        return n + 1;
    }
    size_t f = json_dumpb(fields, out + n, outlen - n, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (f == 0)
        return 0;
    if (f <= outlen - n)
        out[n] = ','; /* the fields' own '{' joins them to the fixed keys */
    return n + f;
}

/* Is key one the writer owns? */
static bool reserved_key(const char *key)
{
    static const char *const keys[] = {"seq", "ts", "epoch", "event", "mac"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(key, keys[i]) == 0)
            return true;
    return false;
}

int audit_record_format(const struct audit_record_meta *meta, json_t *fields,
                        const unsigned char key[AUDIT_KEY_LEN],
                        const unsigned char prev[AUDIT_MAC_LEN], char *out, size_t outlen,
                        size_t *len, unsigned char mac_out[AUDIT_MAC_LEN], char *err, size_t errlen)
{
    if (outlen <= AUDIT_LINE_MAX || !meta->event || !audit_event_name_valid(meta->event) ||
        meta->seq < 1 || meta->seq > INT64_MAX || meta->epoch > AUDIT_EPOCH_MAX) {
        err_set(err, errlen, "audit: bad record (event name, seq, epoch or buffer)");
        return -1;
    }
    if (fields && !json_is_object(fields)) {
        err_set(err, errlen, "audit: the fields of a %s record are not a JSON object", meta->event);
        return -1;
    }
    for (void *it = fields ? json_object_iter(fields) : NULL; it;
         it = json_object_iter_next(fields, it)) {
        if (reserved_key(json_object_iter_key(it))) {
            err_set(err, errlen, "audit: a %s record may not set its own \"%s\"", meta->event,
                    json_object_iter_key(it));
            return -1;
        }
    }
    if (fields)
        bound_object(fields, AUDIT_FIELD_MAX, ARRAY_MAX, 0);

    size_t n = 0, dropped = 0;
    for (int stage = 0; stage < 3; stage++) {
        n = dump(meta, fields, dropped, out, outlen);
        if (n == 0) {
            err_set(err, errlen, "audit: cannot serialize a %s record", meta->event);
            return -1;
        }
        if (n - 1 + AUDIT_MAC_SUFFIX_LEN + 1 <= AUDIT_LINE_MAX)
            break;
        if (stage == 0 && fields)
            bound_object(fields, SMALL_STRING_MAX, SMALL_ARRAY_MAX, 0);
        else if (stage == 1)
            dropped = n;
        else
            n = 0; /* cannot happen: the fixed keys alone are short */
    }
    if (n < 2 || out[n - 1] != '}') {
        err_set(err, errlen, "audit: cannot fit a %s record in a line", meta->event);
        return -1;
    }
    size_t canon = n - 1;
    if (audit_mac(key, prev, out, canon, mac_out) != 0) {
        err_set(err, errlen, "audit: HMAC-SHA-256 failed in OpenSSL");
        return -1;
    }
    char *p = out + canon;
    memcpy(p, mac_prefix, sizeof(mac_prefix) - 1);
    p += sizeof(mac_prefix) - 1;
    audit_hex(mac_out, AUDIT_MAC_LEN, p);
    p += AUDIT_MAC_HEX_LEN;
    memcpy(p, "\"}\n", 4);
    *len = canon + AUDIT_MAC_SUFFIX_LEN + 1;
    return 0;
}

/* Is s exactly 64 lowercase hex digits, as the writer writes a mac? */
static bool lower_hex64(const char *s)
{
    for (int i = 0; i < AUDIT_MAC_HEX_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* Copies a JSON string member into out if it is one of at most max bytes without NULs. */
static bool get_string(json_t *v, char *out, size_t max)
{
    if (!json_is_string(v))
        return false;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n > max || memchr(s, '\0', n))
        return false;
    memcpy(out, s, n + 1);
    return true;
}

/* Checks the key order and the writer's members of a parsed line. NULL, or what is wrong. */
static const char *check_members(json_t *o, const char *line, size_t len, struct audit_record *rec)
{
    static const char *const first[] = {"seq", "ts", "epoch", "event"};
    size_t i = 0;
    const char *last = NULL;
    for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it), i++) {
        last = json_object_iter_key(it);
        if (i < 4 && strcmp(last, first[i]) != 0)
            return "its members are not in the order seq, ts, epoch, event";
    }
    if (i < 5 || strcmp(last, "mac") != 0)
        return "mac is not its last member";
    json_t *seq = json_object_get(o, "seq"), *epoch = json_object_get(o, "epoch");
    if (!json_is_integer(seq) || json_integer_value(seq) < 1)
        return "seq is not a positive integer";
    if (!json_is_integer(epoch) || json_integer_value(epoch) < 0 ||
        (uint64_t)json_integer_value(epoch) > AUDIT_EPOCH_MAX)
        return "epoch is not an integer in range";
    if (!get_string(json_object_get(o, "ts"), rec->ts, AUDIT_TS_LEN) || !audit_ts_valid(rec->ts))
        return "ts is not an RFC 3339 UTC time with microseconds";
    if (!get_string(json_object_get(o, "event"), rec->event, AUDIT_EVENT_MAX) ||
        !audit_event_name_valid(rec->event))
        return "event is not an event name";
    json_t *mac = json_object_get(o, "mac");
    const char *suffix_hex = line + len - AUDIT_MAC_SUFFIX_LEN + sizeof(mac_prefix) - 1;
    if (!json_is_string(mac) || json_string_length(mac) != AUDIT_MAC_HEX_LEN ||
        memcmp(json_string_value(mac), suffix_hex, AUDIT_MAC_HEX_LEN) != 0)
        return "its mac member is not the one at its end";
    rec->seq = (uint64_t)json_integer_value(seq);
    rec->epoch = (uint64_t)json_integer_value(epoch);
    return NULL;
}

int audit_record_parse(const char *line, size_t len, struct audit_record *rec, bool keep, char *err,
                       size_t errlen)
{
    memset(rec, 0, sizeof(*rec));
    if (len >= AUDIT_LINE_MAX) {
        err_set(err, errlen, "longer than %d bytes", AUDIT_LINE_MAX - 1);
        return -1;
    }
    static const char start[] = "{\"seq\":";
    if (len < sizeof(start) - 1 + AUDIT_MAC_SUFFIX_LEN || memcmp(line, start, 7) != 0) {
        err_set(err, errlen, "not an audit record");
        return -1;
    }
    const char *suffix = line + len - AUDIT_MAC_SUFFIX_LEN;
    if (memcmp(suffix, mac_prefix, sizeof(mac_prefix) - 1) != 0 ||
        !lower_hex64(suffix + sizeof(mac_prefix) - 1) || suffix[AUDIT_MAC_SUFFIX_LEN - 2] != '"' ||
        suffix[AUDIT_MAC_SUFFIX_LEN - 1] != '}') {
        err_set(err, errlen, "does not end in a mac");
        return -1;
    }
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!o || !json_is_object(o)) {
        /* Only the position: jansson's text may quote the hostile bytes themselves. */
        err_set(err, errlen, "not valid JSON (at byte %d)", o ? 0 : je.position);
        json_decref(o);
        return -1;
    }
    const char *why = check_members(o, line, len, rec);
    if (why) {
        json_decref(o);
        memset(rec, 0, sizeof(*rec));
        err_set(err, errlen, "%s", why);
        return -1;
    }
    audit_unhex(line + len - AUDIT_MAC_SUFFIX_LEN + sizeof(mac_prefix) - 1, AUDIT_MAC_HEX_LEN,
                rec->mac, AUDIT_MAC_LEN);
    rec->canon_len = len - AUDIT_MAC_SUFFIX_LEN;
    if (keep)
        rec->obj = o;
    else
        json_decref(o);
    return 0;
}

bool audit_record_mac_ok(const struct audit_record *rec, const char *line,
                         const unsigned char key[AUDIT_KEY_LEN],
                         const unsigned char prev[AUDIT_MAC_LEN])
{
    unsigned char mac[AUDIT_MAC_LEN];
    if (audit_mac(key, prev, line, rec->canon_len, mac) != 0)
        return false;
    return CRYPTO_memcmp(mac, rec->mac, AUDIT_MAC_LEN) == 0;
}

void audit_record_release(struct audit_record *rec)
{
    json_decref(rec->obj);
    rec->obj = NULL;
}

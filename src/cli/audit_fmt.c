/* Text for `tern audit`: the times an admin types (RFC 3339, a date, or "-2h") read into
 * microseconds, and records written out as table lines. Which fields a line shows for each
 * kind of event is decided here, from the schema ternd writes (see doc/tern.1); a kind this
 * table does not know shows all its fields, so a newer ternd's records are never hidden.
 * Every string of a record is printed through cli_put_safe: records carry what clients sent. */
#include "cli/audit.h"
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EVENT_WIDTH 13   /* starttls_fail */
#define SESSION_WIDTH 12 /* pads shorter session ids so that the details line up */
#define DETAIL_INDENT "                      "
#define US_PER_S INT64_C(1000000)

/* The fields a table line shows, in this order, for each kind ternd and the log write. */
static const struct {
    const char *event;
    const char *fields[9];
} salient[] = {
    {"start", {"version", "pid", "config"}},
    {"stop", {"reason"}},
    {"reload", {"ok", "error"}},
    {"connect", {"ip", "port", "listener"}},
    {"disconnect", {"ip", "duration_ms", "bytes_in", "bytes_out", "messages"}},
    {"helo", {"verb", "name"}},
    {"starttls", {"protocol", "cipher", "sni"}},
    {"starttls_fail", {"error"}},
    {"auth", {"user", "mech", "result", "code", "rule"}},
    {"mail", {"from", "code", "enh", "rule", "reply"}},
    {"rcpt", {"to", "code", "enh", "rule", "reply"}},
    {"data", {"verb", "id", "code", "enh", "rule", "reply"}},
    {"message", {"id", "message_id", "size", "from", "auth_user", "rcpts", "mailboxes", "queued"}},
    {"message_failed", {"id", "rule", "detail"}},
    {"limit", {"ip", "what", "detail"}},
    {"admin", {"unix_user", "uid", "command", "args", "result"}},
    {"create", {"key_id"}},
    {"epoch", {"reason", "key_id"}},
    {"rotate", {"prev_file"}},
    {"recover", {"dropped_bytes", "file"}},
};

/* Members every record has, shown in the columns or not at all. */
static const char *const common[] = {"seq", "ts", "epoch", "event", "mac", "session"};

/* ---- times --------------------------------------------------------------------------------- */

/* n digits at s as a number, or -1. */
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

/* -N followed by a unit, before now. */
static int parse_relative(const char *s, int64_t now_us, int64_t *out)
{
    static const struct {
        char unit;
        int64_t seconds;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 604800}};
    char *end;
    errno = 0;
    if (s[1] < '0' || s[1] > '9')
        return -1;
    unsigned long long n = strtoull(s + 1, &end, 10);
    if (errno || end[0] == '\0' || end[1] != '\0')
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (units[i].unit != end[0])
            continue;
        if (n > (unsigned long long)(INT64_MAX / US_PER_S / units[i].seconds / 2))
            return -1; /* further back than time goes */
        *out = now_us - (int64_t)n * units[i].seconds * US_PER_S;
        return 0;
    }
    return -1;
}

int acli_parse_time(const char *s, bool end, int64_t now_us, int64_t *out)
{
    if (s[0] == '-')
        return parse_relative(s, now_us, out);
    size_t len = strlen(s);
    if (len < 10 || s[4] != '-' || s[7] != '-')
        return -1;
    struct tm tm = {0};
    int year = digits(s, 4), mon = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = 0, min = 0, sec = 0;
    int64_t frac_us = 0, offset = 0;
    if (year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31)
        return -1;
    bool date_only = len == 10;
    if (!date_only) {
        const char *p = s + 10;
        if ((*p != 'T' && *p != 't' && *p != ' ') || strlen(p) < 6 || p[3] != ':')
            return -1;
        hour = digits(p + 1, 2);
        min = digits(p + 4, 2);
        p += 6;
        if (*p == ':') {
            sec = digits(p + 1, 2);
            if (sec < 0 || strlen(p) < 3)
                return -1;
            p += 3;
            if (*p == '.') {
                int n = 0;
                for (p++; *p >= '0' && *p <= '9'; p++, n++)
                    if (n < 6)
                        frac_us = frac_us * 10 + (*p - '0');
                if (n == 0)
                    return -1;
                for (; n < 6; n++)
                    frac_us *= 10;
            }
        }
        if (hour < 0 || hour > 23 || min < 0 || min > 59 || sec > 59)
            return -1;
        if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
            offset = 0;
        } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
            int oh = digits(p + 1, 2), om = digits(p + 4, 2);
            if (oh < 0 || oh > 23 || om < 0 || om > 59)
                return -1;
            offset = (*p == '+' ? 1 : -1) * (oh * 3600 + om * 60);
        } else {
            return -1;
        }
    }
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    struct tm back;
    /* timegm carries 2026-02-31 into March: a day the month does not have is a mistake. */
    if (t == (time_t)-1 || !gmtime_r(&t, &back) || back.tm_mday != day || back.tm_mon != mon - 1)
        return -1;
    int64_t us = ((int64_t)t - offset) * US_PER_S + frac_us;
    *out = date_only && end ? us + 86400 * US_PER_S - 1 : us;
    return 0;
}

/* ---- records -------------------------------------------------------------------------------- */

const char *acli_session_key(json_t *obj, char *buf, size_t buflen, size_t *len)
{
    json_t *s = json_object_get(obj, "session");
    if (json_is_string(s)) {
        *len = json_string_length(s);
        return json_string_value(s);
    }
    if (json_is_integer(s)) {
        int n = snprintf(buf, buflen, "%lld", (long long)json_integer_value(s));
        *len = n > 0 && (size_t)n < buflen ? (size_t)n : 0;
        return buf;
    }
    return NULL;
}

/* A string that would not read as one value on a line: empty, or with a blank or a quote. */
static bool needs_quotes(const char *s, size_t len)
{
    return len == 0 || memchr(s, ' ', len) || memchr(s, '"', len) || memchr(s, '\t', len);
}

static void put_string(FILE *out, const char *s, size_t len)
{
    if (!needs_quotes(s, len)) {
        cli_put_safe(out, s, len);
        return;
    }
    putc('"', out);
    for (const char *q; (q = memchr(s, '"', len));) {
        cli_put_safe(out, s, (size_t)(q - s));
        fputs("\\\"", out);
        len -= (size_t)(q - s) + 1;
        s = q + 1;
    }
    cli_put_safe(out, s, len);
    putc('"', out);
}

static void put_value(FILE *out, json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        put_string(out, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        fprintf(out, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL:
        fprintf(out, "%g", json_real_value(v));
        break;
    case JSON_TRUE:
        fputs("yes", out);
        break;
    case JSON_FALSE:
        fputs("no", out);
        break;
    case JSON_NULL:
        putc('-', out);
        break;
    case JSON_ARRAY: {
        size_t i;
        json_t *m;
        if (json_array_size(v) == 0)
            putc('-', out);
        json_array_foreach(v, i, m)
        {
            if (i)
                putc(',', out);
            put_value(out, m);
        }
        break;
    }
    case JSON_OBJECT: {
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (text)
            cli_put_safe(out, text, strlen(text));
        free(text);
        break;
    }
    }
}

/* key=value; sep goes before it (the column gap before the first field, a blank later). */
static void put_field(FILE *out, const char *sep, const char *key, json_t *v)
{
    fputs(sep, out);
    cli_put_safe(out, key, strlen(key));
    putc('=', out);
    put_value(out, v);
}

static bool listed(const char *key, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n && names[i]; i++)
        if (strcmp(key, names[i]) == 0)
            return true;
    return false;
}

void acli_print_heading(FILE *out)
{
    fprintf(out, "%-20s  %-*s  %-*s  %s\n", "TIME", EVENT_WIDTH, "EVENT", SESSION_WIDTH, "SESSION",
            "DETAILS");
}

void acli_print_record(FILE *out, const struct audit_record *rec, bool detail)
{
    /* Seconds are enough to read by; seq (in --json) orders records within one. */
    fprintf(out, "%.19sZ  %-*s  ", rec->ts, EVENT_WIDTH, rec->event);
    char buf[32];
    size_t slen = 0;
    const char *session = acli_session_key(rec->obj, buf, sizeof(buf), &slen);
    if (!session) {
        session = "-";
        slen = 1;
    }
    cli_put_safe(out, session, slen);
    for (size_t i = slen; i < SESSION_WIDTH; i++)
        putc(' ', out);

    const char *const *fields = NULL;
    size_t nfields = 0;
    for (size_t i = 0; i < sizeof(salient) / sizeof(salient[0]); i++) {
        if (strcmp(salient[i].event, rec->event) == 0) {
            fields = salient[i].fields;
            nfields = sizeof(salient[i].fields) / sizeof(salient[i].fields[0]);
        }
    }
    const char *key;
    json_t *v;
    size_t shown = 0;
    if (fields) {
        for (size_t i = 0; i < nfields && fields[i]; i++) {
            if ((v = json_object_get(rec->obj, fields[i])))
                put_field(out, shown++ ? " " : "  ", fields[i], v);
        }
    }
    size_t ncommon = sizeof(common) / sizeof(common[0]);
    if (!fields) { /* a kind this table does not know: everything, so nothing is hidden */
        json_object_foreach(rec->obj, key, v)
        {
            if (!listed(key, common, ncommon))
                put_field(out, shown++ ? " " : "  ", key, v);
        }
    }
    putc('\n', out);
    if (!detail || !fields)
        return;
    json_object_foreach(rec->obj, key, v)
    {
        if (listed(key, common, ncommon) || listed(key, fields, nfields))
            continue;
        put_field(out, DETAIL_INDENT, key, v);
        putc('\n', out);
    }
}

/* s without blanks around it and without one pair of angle brackets. */
static void bare_msgid(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t'))
        (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
    if (*n >= 2 && (*s)[0] == '<' && (*s)[*n - 1] == '>')
        (*s)++, *n -= 2;
}

bool acli_msgid_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    bare_msgid(&a, &alen);
    bare_msgid(&b, &blen);
    return alen == blen && alen > 0 && memcmp(a, b, alen) == 0;
}

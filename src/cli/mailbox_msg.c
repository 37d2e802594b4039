/* The parts of a stored message `tern mailbox list` shows: the Date:, From: and Subject: header
 * fields, read from the head of the file and unfolded, the date parsed as RFC 5322 says (with
 * its obsolete forms, since old mail keeps them). Header text comes from whoever sent the mail,
 * so everything shown on a terminal goes through mbox_put_safe first. */
#include "cli/mailbox.h"
#include "util/utf8.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define HEAD_MAX (64 * 1024) /* headers past this are not read: list shows what it found */
#define FIELD_MAX 998        /* RFC 5322's line limit, for one unfolded field */

/* Is the sequence at p (len bytes) something a terminal obeys: a C1 control, or a bidi
 * embedding, override or isolate (U+202A..U+202E, U+2066..U+2069) that reorders the line? */
static bool is_control(const unsigned char *p, size_t len)
{
    if (len == 1)
        return p[0] < 0x20 || p[0] == 0x7f;
    if (len == 2)
        return p[0] == 0xc2 && p[1] < 0xa0;
    return len == 3 && p[0] == 0xe2 &&
           ((p[1] == 0x80 && p[2] >= 0xaa && p[2] <= 0xae) ||
            (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9));
}

void mbox_put_safe(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_char_len(p + i, n - i);
        if (len == 0 || is_control(p + i, len))
            putc('?', out);
        else
            fwrite(p + i, 1, len, out);
        i += len ? len : 1;
    }
}

char *mbox_utf8_copy(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_char_len(p + i, n - i);
        if (len == 0) {
            out[o++] = '?';
            i++;
        } else {
            memcpy(out + o, p + i, len);
            o += len;
            i += len;
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- dates ------------------------------------------------------------------------------ */

/* Drops (comments), nested too, which RFC 5322 allows anywhere in a date as CFWS. */
static void strip_comments(char *s)
{
    int depth = 0;
    char *w = s; /* never ahead of r: at most one byte written per byte read */
    for (char *r = s; *r; r++) {
        if (depth && *r == '\\' && r[1]) {
            r++;
        } else if (*r == '(') {
            if (depth++ == 0)
                *w++ = ' ';
        } else if (*r == ')' && depth) {
            depth--;
        } else if (!depth) {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* The next token of s: letters, digits, or one of ':' '+' '-' with what follows. */
static const char *token(const char **s, size_t *len)
{
    const char *p = *s;
    while (*p == ' ' || *p == '\t' || *p == ',')
        p++;
    const char *start = p;
    if (*p == '+' || *p == '-')
        p++;
    while (isalnum((unsigned char)*p) || *p == ':')
        p++;
    *len = (size_t)(p - start);
    *s = p;
    return *len ? start : NULL;
}

static bool all_digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return len > 0;
}

/* The zone as seconds east of UTC: +hhmm, -hhmm, or the obsolete names (military letters and
 * unknown names count as -0000, "unknown", as RFC 5322 4.3 says). */
static long zone_offset(const char *z, size_t len)
{
    static const struct {
        const char *name;
        int hours;
    } zones[] = {{"UT", 0},   {"GMT", 0},  {"EST", -5}, {"EDT", -4}, {"CST", -6},
                 {"CDT", -5}, {"MST", -7}, {"MDT", -6}, {"PST", -8}, {"PDT", -7}};
    if (len == 5 && (z[0] == '+' || z[0] == '-') && all_digits(z + 1, 4)) {
        long hh = (z[1] - '0') * 10 + (z[2] - '0'), mm = (z[3] - '0') * 10 + (z[4] - '0');
        if (hh > 23 || mm > 59)
            return 0;
        return (z[0] == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
    }
    for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
        if (strlen(zones[i].name) == len && strncasecmp(z, zones[i].name, len) == 0)
            return zones[i].hours * 3600L;
    return 0;
}

int mbox_parse_date(const char *in, time_t *out)
{
    static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
    char s[256];
    if (strlen(in) >= sizeof(s))
        return -1;
    strcpy(s, in);
    strip_comments(s);
    const char *p = s;
    size_t len;
    const char *t = token(&p, &len);
    if (t && isalpha((unsigned char)t[0])) /* the day of the week: not checked, as others do */
        t = token(&p, &len);
    if (!t || len > 2 || !all_digits(t, len))
        return -1;
    struct tm tm = {0};
    tm.tm_mday = atoi(t);
    t = token(&p, &len);
    const char *m = NULL;
    for (int i = 0; t && len == 3 && i < 12 && !m; i++)
        if (strncasecmp(t, months + 3 * i, 3) == 0) {
            m = t;
            tm.tm_mon = i;
        }
    t = m ? token(&p, &len) : NULL;
    if (!t || len < 2 || len > 4 || !all_digits(t, len))
        return -1;
    int year = atoi(t);
    if (len == 2) /* obsolete two-digit years: 00-49 are 2000-2049 (RFC 5322 4.3) */
        year += year < 50 ? 2000 : 1900;
    else if (len == 3)
        year += 1900;
    tm.tm_year = year - 1900;
    t = token(&p, &len);
    int hh = -1, mm = -1, ss = 0, used = 0;
    char tbuf[16];
    if (!t || len >= sizeof(tbuf))
        return -1;
    memcpy(tbuf, t, len);
    tbuf[len] = '\0';
    if (sscanf(tbuf, "%2d:%2d%n:%2d%n", &hh, &mm, &used, &ss, &used) < 2 || (size_t)used != len ||
        hh > 23 || mm > 59 || ss > 60 || tm.tm_mday < 1 || tm.tm_mday > 31)
        return -1;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss == 60 ? 59 : ss;
    t = token(&p, &len);
    long off = t ? zone_offset(t, len) : 0;
    time_t when = timegm(&tm);
    if (when == (time_t)-1)
        return -1;
    *out = when - off;
    return 0;
}

/* ---- headers ---------------------------------------------------------------------------- */

/* The value of field name in the header block h (len bytes, up to the blank line), unfolded
 * (CRLF before a blank dropped), blanks trimmed, at most FIELD_MAX bytes: malloc'd, "" when
 * the field is not there, NULL when out of memory. The first such field counts. */
static char *field(const char *h, size_t len, const char *name)
{
    size_t nl = strlen(name);
    for (size_t pos = 0; pos < len;) {
        const char *eol = memchr(h + pos, '\n', len - pos);
        size_t end = eol ? (size_t)(eol - h) : len;
        if (end - pos > nl && strncasecmp(h + pos, name, nl) == 0 && h[pos + nl] == ':') {
            char *v = malloc(FIELD_MAX + 1);
            if (!v)
                return NULL;
            size_t n = 0;
            for (size_t i = pos + nl + 1; i < len && n < FIELD_MAX; i++) {
                if (h[i] == '\r' || h[i] == '\n') {
                    size_t j = i + (h[i] == '\r' && i + 1 < len && h[i + 1] == '\n');
                    if (j + 1 >= len || (h[j + 1] != ' ' && h[j + 1] != '\t'))
                        break; /* the field ends here */
                    i = j;
                    continue;
                }
                v[n++] = h[i];
            }
            while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
                n--;
            v[n] = '\0';
            size_t lead = strspn(v, " \t");
            memmove(v, v + lead, n - lead + 1);
            return v;
        }
        pos = end + 1;
    }
    return strdup("");
}

int mbox_msg_read(int dir_fd, const char *name, time_t mtime, struct mbox_msg *m)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    char *h = malloc(HEAD_MAX + 1);
    if (!h) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    size_t len = 0;
    while (len < HEAD_MAX) {
        ssize_t n = read(fd, h + len, HEAD_MAX - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (memmem(h, len, "\n\n", 2) || memmem(h, len, "\n\r\n", 3))
            break;
    }
    close(fd);
    h[len] = '\0';
    /* the header block ends at the first empty line */
    char *a = memmem(h, len, "\n\n", 2), *b = memmem(h, len, "\n\r\n", 3);
    char *end = a && (!b || a < b) ? a + 1 : b ? b + 1 : h + len;
    len = (size_t)(end - h);
    char *date = field(h, len, "Date");
    m->from = field(h, len, "From");
    m->subject = field(h, len, "Subject");
    free(h);
    if (!date || !m->from || !m->subject) {
        free(date);
        errno = ENOMEM;
        return -1;
    }
    if (!date[0] || mbox_parse_date(date, &m->date) < 0)
        m->date = mtime;
    free(date);
    return 0;
}

void mbox_msg_free(struct mbox_msg *m)
{
    free(m->name);
    free(m->from);
    free(m->subject);
}

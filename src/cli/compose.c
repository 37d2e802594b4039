/* compose_message (compose.h): checks every input, then writes the header fields, the text part
 * and the attachments, and puts them together, single-part or multipart/mixed under a boundary
 * checked against every byte of every part. The encodings themselves are compose_enc.c's. Also
 * the small helpers the CLI needs around it: the OpenSSL random source, reading a FILE* within
 * a limit, and the media type of a file name. */
#include "cli/compose.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "cli/compose_priv.h"
#include "util/err.h"

#define MSGID_RANDOM 16 /* 128 bits: unique without asking anyone */
#define HOST_MAX 255
#define MAX_OFFSET_MIN (24 * 60)
#define MIB ((size_t)1024 * 1024)

int compose_random_openssl(void *ctx, void *buf, size_t len)
{
    (void)ctx;
    while (len > 0) {
        int n = len > INT32_MAX ? INT32_MAX : (int)len;
        if (RAND_bytes(buf, n) != 1)
            return -1;
        buf = (unsigned char *)buf + n;
        len -= (size_t)n;
    }
    return 0;
}

const char *compose_size_text(char buf[COMPOSE_SIZE_TEXT], size_t n)
{
    if (n < MIB)
        snprintf(buf, COMPOSE_SIZE_TEXT, "%zu octets", n);
    else
        snprintf(buf, COMPOSE_SIZE_TEXT, "%zu octets (%zu MiB)", n, n / MIB);
    return buf;
}

int compose_read_bounded(FILE *f, size_t max, char **data, size_t *len, bool *over)
{
    struct cbuf b = {0};
    char chunk[65536];
    size_t got;

    *data = NULL;
    *len = 0;
    *over = false;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (got > max - b.n) {
            *over = true;
            *len = b.n + got;
            cb_free(&b);
            return -1;
        }
        cb_put(&b, chunk, got);
        if (b.oom)
            break;
    }
    int saved = errno;
    bool oom = b.oom || (b.p == NULL && (b.p = calloc(1, 1)) == NULL);
    if (oom || ferror(f)) {
        *len = b.n;
        cb_free(&b);
        errno = oom ? ENOMEM : saved;
        return -1;
    }
    *data = b.p;
    *len = b.n;
    return 0;
}

int compose_read(FILE *f, const char *what, size_t max, char **data, size_t *len, char *err,
                 size_t errlen)
{
    bool over;
    char lim[COMPOSE_SIZE_TEXT];
    if (compose_read_bounded(f, max, data, len, &over) == 0)
        return 0;
    if (over)
        err_set(err, errlen,
                "%s is larger than the limit of %s; send less, or share large files another "
                "way",
                what, compose_size_text(lim, max));
    else
        err_set(err, errlen, "cannot read %s: %s", what, strerror(errno));
    return -1;
}

/* Extensions people attach most, lower case; anything else is application/octet-stream. */
static const struct {
    const char *ext, *type;
} media_types[] = {
    {"pdf", "application/pdf"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"svg", "image/svg+xml"},
    {"txt", "text/plain"},
    {"text", "text/plain"},
    {"log", "text/plain"},
    {"md", "text/markdown"},
    {"html", "text/html"},
    {"htm", "text/html"},
    {"csv", "text/csv"},
    {"ics", "text/calendar"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"json", "application/json"},
    {"xml", "application/xml"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"odt", "application/vnd.oasis.opendocument.text"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
};

const char *compose_guess_type(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *dot = strrchr(slash != NULL ? slash + 1 : name, '.');
    if (dot != NULL && dot[1] != 0) {
        for (size_t i = 0; i < sizeof media_types / sizeof media_types[0]; i++) {
            if (strcasecmp(dot + 1, media_types[i].ext) == 0)
                return media_types[i].type;
        }
    }
    return "application/octet-stream";
}

/* ---- header fields ---- */

int compose_check_controls(const char *what, const char *s, char *err, size_t errlen)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != 0; p++) {
        if (*p == '\r' || *p == '\n') {
            err_set(err, errlen,
                    "%s holds a line break: a header field cannot, and one there would start a "
                    "new field; write it on one line",
                    what);
            return -1;
        }
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
            err_set(err, errlen, "%s holds the control character 0x%02X; remove it", what, *p);
            return -1;
        }
    }
    return 0;
}

/* Position of the '<' that starts the angle-addr of a name-addr, or NULL: the first '<'
 * outside quoted-strings and comments. */
static const char *angle_start(const char *s)
{
    bool quoted = false;
    int depth = 0;
    for (; *s != 0; s++) {
        if (*s == '\\' && (quoted || depth > 0) && s[1] != 0)
            s++;
        else if (*s == '"' && depth == 0)
            quoted = !quoted;
        else if (*s == '(' && !quoted)
            depth++;
        else if (*s == ')' && !quoted && depth > 0)
            depth--;
        else if (*s == '<' && !quoted && depth == 0)
            return s;
    }
    return NULL;
}

/* The display name before the '<' at lt as text: quotes and the backslashes of quoted-pairs
 * dropped, white space around trimmed. */
static void display_text(const char *s, const char *lt, struct cbuf *out)
{
    bool quoted = false;
    for (; s < lt; s++) {
        if (*s == '"')
            quoted = !quoted;
        else if (*s == '\\' && quoted && s + 1 < lt)
            cb_put(out, ++s, 1);
        else
            cb_put(out, s, 1);
    }
    size_t a = 0, z = out->n;
    while (a < z && (out->p[a] == ' ' || out->p[a] == '\t'))
        a++;
    while (z > a && (out->p[z - 1] == ' ' || out->p[z - 1] == '\t'))
        z--;
    if (out->n > 0) {
        memmove(out->p, out->p + a, z - a);
        out->n = z - a;
        out->p[out->n] = 0;
    }
}

/* One mailbox of From, To or Cc, as given: ASCII as written; a non-ASCII display name as
 * RFC 2047 encoded-words before the address; a non-ASCII address (RFC 6532) as written, since
 * such mail needs SMTPUTF8 anyway. addr, if not NULL, receives the envelope address. */
static int put_mailbox(struct fold *f, const char *opt, const char *given, bool comma, char *addr,
                       char *err, size_t errlen)
{
    char what[64], env[HDR_ADDR_MAX + 1];
    snprintf(what, sizeof what, "the %s address", opt);
    if (compose_check_controls(what, given, err, errlen) < 0)
        return -1;
    if (compose_envelope_addr(given, env, err, errlen) < 0)
        return -1;
    if (addr != NULL)
        memcpy(addr, env, strlen(env) + 1);

    const char *s = given;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    struct cbuf t = {0};
    const char *lt = angle_start(s);
    if (enc_ascii((const unsigned char *)s, n) ||
        !enc_ascii((const unsigned char *)env, strlen(env))) {
        cb_put(&t, s, n);
        if (comma)
            cb_put(&t, ",", 1);
        fold_words(f, t.p, t.n);
    } else if (lt == NULL) {
        err_set(err, errlen,
                "%s '%s' has non-ASCII text outside a display name; write it as "
                "'Name <%s>'",
                what, given, env);
        return -1;
    } else {
        display_text(s, lt, &t);
        if (t.n > 0)
            fold_encoded(f, " ", 1, t.p, t.n, true);
        t.n = 0;
        cb_put(&t, "<", 1);
        cb_puts(&t, env);
        cb_puts(&t, comma ? ">," : ">");
        fold_token(f, " ", 1, t.p, t.n);
    }
    bool oom = t.oom;
    cb_free(&t);
    if (oom) {
        err_set(err, errlen, "out of memory writing %s", what);
        return -1;
    }
    return 0;
}

static int end_field(struct fold *f, const char *name, char *err, size_t errlen)
{
    if (!fold_end(f)) {
        err_set(err, errlen,
                "the %s field has a word too long to fold within 998 octets a line "
                "(RFC 5322 2.1.1); shorten it",
                name);
        return -1;
    }
    return 0;
}

static int put_addresses(struct cbuf *h, const char *name, const char *opt, const char *const *list,
                         size_t n, char *err, size_t errlen)
{
    struct fold f;
    if (n == 0)
        return 0;
    fold_start(&f, h, name);
    for (size_t i = 0; i < n; i++) {
        if (list[i] == NULL) {
            err_set(err, errlen, "%s address %zu is missing", opt, i + 1);
            return -1;
        }
        if (put_mailbox(&f, opt, list[i], i + 1 < n, NULL, err, errlen) < 0)
            return -1;
    }
    return end_field(&f, name, err, errlen);
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* Must this word of the subject be an encoded-word: non-ASCII, a control, something a reader
 * would take for an encoded-word, or too long to fold? */
static bool subject_word_encoded(const char *w, size_t n, size_t wsn)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)w[i];
        if (c >= 0x7f || c < 0x20 || (c == '=' && i + 1 < n && w[i + 1] == '?'))
            return true;
    }
    return wsn + n > COMPOSE_SOFT_LINE;
}

/* Subject: words that can stand as they are stay so; from the first word that cannot to the
 * last one, the text (white space inside included) goes as encoded-words, so a mostly ASCII
 * subject stays readable even to a reader that does not decode. */
static int put_subject(struct cbuf *h, const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (strpbrk(s, "\r\n") != NULL) {
        err_set(err, errlen, "the subject holds a line break; write it on one line");
        return -1;
    }
    if (!enc_utf8_valid((const unsigned char *)s, n)) {
        err_set(err, errlen,
                "the subject is not valid UTF-8; write it in UTF-8 (check the terminal's "
                "locale, or convert it with iconv)");
        return -1;
    }
    size_t first = n, last = 0; /* first encoded word's start, last one's end */
    for (size_t i = 0; i < n;) {
        size_t ws = i;
        while (i < n && is_wsp(s[i]))
            i++;
        size_t w = i;
        while (i < n && !is_wsp(s[i]))
            i++;
        if (i > w && subject_word_encoded(s + w, i - w, w - ws)) {
            if (first == n)
                first = w;
            last = i;
        }
    }

    struct fold f;
    fold_start(&f, h, "Subject");
    if (n > 0 && is_wsp(s[0]))
        fold_token(&f, " ", 1, "", 0); /* readers drop one SP after the colon, not more */
    if (first == n) {
        fold_words(&f, s, n);
    } else {
        size_t pre = first;
        while (pre > 0 && is_wsp(s[pre - 1]))
            pre--;
        fold_words(&f, s, pre);
        if (first > pre)
            fold_encoded(&f, s + pre, first - pre, s + first, last - first, false);
        else
            fold_encoded(&f, " ", 1, s + first, last - first, false);
        fold_words(&f, s + last, n - last);
    }
    return end_field(&f, "Subject", err, errlen);
}

static const char *const day_names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* RFC 5322 3.3 date-time in the sender's zone, written by hand: strftime's names follow the
 * locale, the format's do not. */
static int put_date(struct cbuf *h, time_t now, long utc_offset, char *err, size_t errlen)
{
    long off = utc_offset / 60;
    if (off > MAX_OFFSET_MIN || off < -MAX_OFFSET_MIN) {
        err_set(err, errlen, "the UTC offset %ld s is not a time zone's; check TZ", utc_offset);
        return -1;
    }
    time_t local = now + (time_t)off * 60;
    struct tm tm;
    if (gmtime_r(&local, &tm) == NULL || tm.tm_year < 0 || tm.tm_year > 9999 - 1900) {
        err_set(err, errlen, "the time %lld cannot be written as a date; check the clock",
                (long long)now);
        return -1;
    }
    long a = off < 0 ? -off : off;
    char line[80];
    snprintf(line, sizeof line, "Date: %s, %d %s %d %02d:%02d:%02d %c%02ld%02ld\r\n",
             day_names[tm.tm_wday], tm.tm_mday, month_names[tm.tm_mon], tm.tm_year + 1900,
             tm.tm_hour, tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+', a / 60, a % 60);
    cb_puts(h, line);
    return 0;
}

int compose_get_random(const struct compose_input *in, void *buf, size_t len, char *err,
                       size_t errlen)
{
    compose_random_fn fn = in->random != NULL ? in->random : compose_random_openssl;
    if (fn(in->random_ctx, buf, len) < 0) {
        const char *why = "the random source failed";
        if (in->random == NULL) {
            why = ERR_reason_error_string(ERR_get_error());
            why = why != NULL ? why : "RAND_bytes failed";
        }
        err_set(err, errlen,
                "cannot get random bytes for the Message-ID and MIME boundary (%s); check "
                "that /dev/urandom is readable",
                why);
        return -1;
    }
    return 0;
}

/* Message-ID: <128 random bits in hex@host>, host a dot-atom or a domain literal. */
static int put_message_id(struct cbuf *h, const struct compose_input *in, const char *from_addr,
                          char *err, size_t errlen)
{
    const char *host = in->host;
    if (host == NULL) {
        host = strrchr(from_addr, '@');
        host = host != NULL ? host + 1 : "";
    }
    size_t hn = strlen(host);
    bool literal = hn > 2 && host[0] == '[' && host[hn - 1] == ']'; /* no-fold-literal */
    for (size_t i = 1; literal && i + 1 < hn; i++) {
        unsigned char c = (unsigned char)host[i];
        literal = c >= 33 && c <= 126 && c != '[' && c != ']' && c != '\\';
    }
    if (hn > HOST_MAX || (!literal && !enc_dot_atom(host, hn))) {
        err_set(err, errlen,
                "'%s' cannot be the right side of a Message-ID (RFC 5322 3.6.4): give a "
                "plain ASCII host or domain name",
                host);
        return -1;
    }
    unsigned char r[MSGID_RANDOM];
    if (compose_get_random(in, r, sizeof r, err, errlen) < 0)
        return -1;
    char hex[2 * MSGID_RANDOM + 1];
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    cb_puts(h, "Message-ID: <");
    cb_puts(h, hex);
    cb_puts(h, "@");
    cb_puts(h, host);
    cb_puts(h, ">\r\n");
    return 0;
}

/* Fields --header may not give, and why. */
static const struct {
    const char *name, *why;
} refused_fields[] = {
    {"From", "use --from"},
    {"To", "use --to"},
    {"Cc", "use --cc"},
    {"Subject", "use --subject"},
    {"Bcc", "it would show every recipient who else got the mail: make those addresses "
            "recipients only (they go in the envelope)"},
    {"Date", "tern send writes it from the clock"},
    {"Message-ID", "tern send makes a unique one"},
    {"MIME-Version", "tern send writes the MIME structure from --body and --attach"},
    {"Return-Path", "the receiving server writes it from the envelope sender"},
};
/* RFC 5322 3.6: at most once in a message. */
static const char *const once_fields[] = {"Sender", "Reply-To", "In-Reply-To", "References"};

static int put_extra(struct cbuf *h, const char *const *fields, size_t n, char *err, size_t errlen)
{
    size_t seen[sizeof once_fields / sizeof once_fields[0]] = {0};
    for (size_t i = 0; i < n; i++) {
        const char *s = fields[i];
        if (s == NULL) {
            err_set(err, errlen, "--header %zu is missing", i + 1);
            return -1;
        }
        const char *colon = strchr(s, ':');
        size_t nn = colon != NULL ? (size_t)(colon - s) : 0;
        if (colon == NULL || nn == 0) {
            err_set(err, errlen, "--header '%s' is not of the form 'Name: value'", s);
            return -1;
        }
        char name[COMPOSE_HARD_LINE + 1];
        if (nn > COMPOSE_HARD_LINE - 2) {
            err_set(err, errlen, "--header '%.40s...' has a field name over 996 octets", s);
            return -1;
        }
        memcpy(name, s, nn);
        name[nn] = 0;
        for (size_t k = 0; k < nn; k++) {
            if (!enc_ftext((unsigned char)name[k])) {
                err_set(err, errlen,
                        "--header field name '%s' may hold only printable ASCII, no spaces "
                        "(RFC 5322 3.6.8); write it as 'Name: value'",
                        name);
                return -1;
            }
        }
        for (size_t k = 0; k < sizeof refused_fields / sizeof refused_fields[0]; k++) {
            if (strcasecmp(name, refused_fields[k].name) == 0) {
                err_set(err, errlen, "--header cannot set %s: %s", name, refused_fields[k].why);
                return -1;
            }
        }
        if (strncasecmp(name, "Content-", 8) == 0) {
            err_set(err, errlen,
                    "--header cannot set %s: the Content-* fields follow from --body and "
                    "--attach",
                    name);
            return -1;
        }
        for (size_t k = 0; k < sizeof once_fields / sizeof once_fields[0]; k++) {
            if (strcasecmp(name, once_fields[k]) == 0 && seen[k]++ > 0) {
                err_set(err, errlen,
                        "--header gives %s twice; a message may have it once (RFC 5322 3.6)",
                        once_fields[k]);
                return -1;
            }
        }
        const char *v = colon + 1;
        while (is_wsp(*v))
            v++;
        char what[COMPOSE_HARD_LINE + 32];
        snprintf(what, sizeof what, "--header %s", name);
        if (compose_check_controls(what, v, err, errlen) < 0)
            return -1;
        if (!enc_ascii((const unsigned char *)v, strlen(v))) {
            err_set(err, errlen,
                    "--header %s has non-ASCII text; only the subject and display names are "
                    "encoded for you (RFC 2047): write the value in ASCII",
                    name);
            return -1;
        }
        struct fold f;
        fold_start(&f, h, name);
        fold_words(&f, v, strlen(v));
        if (end_field(&f, name, err, errlen) < 0)
            return -1;
    }
    return 0;
}

int compose_message(const struct compose_input *in, char **out, size_t *out_len, char *err,
                    size_t errlen)
{
    struct cbuf h = {0}, b = {0};
    struct fold f;
    char from_addr[HDR_ADDR_MAX + 1];
    int rc = -1;

    *out = NULL;
    *out_len = 0;
    if (in->from == NULL) {
        err_set(err, errlen, "a message needs a sender: give --from");
        return -1;
    }
    /* RFC 5322 3.6's order, which is also the order people read them in. */
    if (put_date(&h, in->now, in->utc_offset, err, errlen) < 0)
        goto done;
    fold_start(&f, &h, "From");
    if (put_mailbox(&f, "--from", in->from, false, from_addr, err, errlen) < 0 ||
        end_field(&f, "From", err, errlen) < 0)
        goto done;
    if (put_addresses(&h, "To", "--to", in->to, in->n_to, err, errlen) < 0 ||
        put_addresses(&h, "Cc", "--cc", in->cc, in->n_cc, err, errlen) < 0)
        goto done;
    if (in->subject != NULL && put_subject(&h, in->subject, err, errlen) < 0)
        goto done;
    if (put_message_id(&h, in, from_addr, err, errlen) < 0 ||
        put_extra(&h, in->headers, in->n_headers, err, errlen) < 0)
        goto done;
    cb_puts(&h, "MIME-Version: 1.0\r\n");
    if (mime_build(in, &h, &b, err, errlen) < 0)
        goto done;
    cb_put(&h, "\r\n", 2);
    cb_put(&h, b.p, b.n);
    if (h.oom || b.oom) {
        err_set(err, errlen, "out of memory composing the message (%zu octets so far)", h.n);
        goto done;
    }
    *out = h.p;
    *out_len = h.n;
    h = (struct cbuf){0};
    rc = 0;
done:
    cb_free(&h);
    cb_free(&b);
    return rc;
}

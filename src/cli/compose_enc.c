/* The composer's encodings (compose_priv.h): the growing buffer, header folding, RFC 2047
 * encoded-words, RFC 2231 parameters, base64 and quoted-printable bodies, and the character
 * class tests they rest on. Nothing here decides what goes in a message; compose.c does. */
#include "cli/compose_priv.h"
#include "util/utf8.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EW_MAX 75      /* RFC 2047 2: an encoded-word is at most 75 characters */
#define EW_OVERHEAD 12 /* "=?utf-8?q?" and "?=" */
#define QP_LINE 76     /* RFC 2045 6.7 (5), the "=" of a soft break included */
#define B64_LINE 76    /* RFC 2045 6.8 */
/* A parameter segment with the SP before it and the ";" after it stays within 78 columns. */
#define PARAM_SEG (COMPOSE_SOFT_LINE - 2)

static const char hex_digits[] = "0123456789ABCDEF";

void cb_free(struct cbuf *b)
{
    free(b->p);
    *b = (struct cbuf){0};
}

/* Appends n bytes left for the caller to write, and gives where they start; NULL (and oom)
 * when memory runs out. The NUL after them is the caller's to keep if it writes fewer. */
static char *cb_extend(struct cbuf *b, size_t n)
{
    if (b->oom)
        return NULL;
    if (n >= SIZE_MAX / 2 - b->n) {
        b->oom = true;
        return NULL;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    char *at = b->p + b->n;
    b->n += n;
    b->p[b->n] = 0;
    return at;
}

/* Gives back the bytes of a cb_extend that were not written. */
static void cb_shrink(struct cbuf *b, size_t n)
{
    if (!b->oom && n <= b->n) {
        b->n = n;
        b->p[n] = 0;
    }
}

void cb_put(struct cbuf *b, const void *s, size_t n)
{
    if (n == 0)
        return;
    char *at = cb_extend(b, n);
    if (at != NULL)
        memcpy(at, s, n);
}

void cb_puts(struct cbuf *b, const char *s)
{
    cb_put(b, s, strlen(s));
}

/* ---- character classes ---- */

bool enc_utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = utf8_char_len(s + i, n - i);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

bool enc_ascii(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= 0x80)
            return false;
    }
    return true;
}

bool enc_atext(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

bool enc_ftext(unsigned char c)
{
    return c >= 33 && c <= 126 && c != ':';
}

bool enc_dot_atom(const char *s, size_t n)
{
    bool after_dot = true; /* no leading dot */
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (after_dot)
                return false;
            after_dot = true;
        } else if (enc_atext((unsigned char)s[i])) {
            after_dot = false;
        } else {
            return false;
        }
    }
    return n > 0 && !after_dot;
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* ---- folding ---- */

void fold_start(struct fold *f, struct cbuf *b, const char *name)
{
    *f = (struct fold){.b = b};
    cb_puts(b, name);
    cb_put(b, ":", 1);
    f->col = strlen(name) + 1;
    f->over = f->col > COMPOSE_HARD_LINE;
}

static void fold_break(struct fold *f)
{
    cb_put(f->b, "\r\n", 2);
    f->col = 0;
    f->content = false;
}

void fold_token(struct fold *f, const char *ws, size_t wsn, const char *tok, size_t n)
{
    size_t here = f->col + wsn + n, fresh = wsn + n;
    /* Only before white space (that is what folding is), never before white space alone (a
     * line of nothing but WSP is not allowed), and right after the field name only when that
     * is what brings the token within the limit. */
    if (wsn > 0 && n > 0 && f->col > 0) {
        bool soft = here > COMPOSE_SOFT_LINE && (f->content || fresh <= COMPOSE_SOFT_LINE);
        bool hard = here > COMPOSE_HARD_LINE && fresh <= COMPOSE_HARD_LINE;
        if (soft || hard)
            fold_break(f);
    }
    cb_put(f->b, ws, wsn);
    cb_put(f->b, tok, n);
    f->col += wsn + n;
    f->content = true;
    if (f->col > COMPOSE_HARD_LINE)
        f->over = true;
}

void fold_words(struct fold *f, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t ws = i;
        while (i < n && is_wsp(s[i]))
            i++;
        size_t word = i;
        while (i < n && !is_wsp(s[i]))
            i++;
        if (ws == 0 && word == 0)
            fold_token(f, " ", 1, s, i);
        else
            fold_token(f, s + ws, word - ws, s + word, i - word);
    }
}

bool fold_end(struct fold *f)
{
    cb_put(f->b, "\r\n", 2);
    return !f->over;
}

/* ---- RFC 2047 ---- */

/* Can c stand for itself in Q? RFC 2047 5(3) for a phrase, 4.2 (3) elsewhere; SP is "_". */
static bool q_plain(unsigned char c, bool phrase)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ' ')
        return true;
    if (phrase)
        return strchr("!*+-/", c) != NULL && c != 0;
    return c > ' ' && c < 127 && c != '=' && c != '?' && c != '_';
}

static size_t b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

/* Writes the base64 of s (n bytes, a line's worth at most) at o, without line breaks, and a NUL
 * after it that the caller overwrites or keeps; gives the length written. */
static size_t b64_write(char *o, const unsigned char *s, size_t n)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)o, s, (int)n);
}

/* Writes one encoded-word for s (n bytes) into word (room for EW_MAX + 1); its length. */
static size_t ew_write(char *word, const unsigned char *s, size_t n, bool q, bool phrase)
{
    size_t w = 0;
    memcpy(word, q ? "=?utf-8?q?" : "=?utf-8?b?", 10);
    w = 10;
    if (!q) {
        w += b64_write(word + w, s, n);
    } else {
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') {
                word[w++] = '_';
            } else if (q_plain(s[i], phrase)) {
                word[w++] = (char)s[i];
            } else {
                word[w++] = '=';
                word[w++] = hex_digits[s[i] >> 4];
                word[w++] = hex_digits[s[i] & 15];
            }
        }
    }
    word[w++] = '?';
    word[w++] = '=';
    return w;
}

static size_t qlen_from(const unsigned char *s, size_t n, bool phrase)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += q_plain(s[i], phrase) ? 1 : 3;
    return len;
}

void fold_encoded(struct fold *f, const char *ws, size_t wsn, const char *str, size_t n,
                  bool phrase)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t qlen = qlen_from(s, n, phrase);
    /* Q unless it is more than a quarter longer: mostly ASCII text stays legible to a reader
     * that does not decode, and Q needs no more room until most characters are encoded. */
    bool q = qlen * 4 <= b64_len(n) * 5;

    for (size_t i = 0; i < n;) {
        size_t first = utf8_char_len(s + i, n - i);
        if (first == 0)
            first = 1; /* not UTF-8 after all: whole bytes then, still decodable */
        size_t first_cost = 0;
        for (size_t k = 0; k < first; k++)
            first_cost += q ? (q_plain(s[i + k], phrase) ? 1 : 3) : 0;
        if (!q)
            first_cost = b64_len(first);
        size_t used = f->col + wsn;
        size_t room = used < COMPOSE_SOFT_LINE ? COMPOSE_SOFT_LINE - used : 0;
        /* A display name that fits one encoded-word on a line of its own gets one: readers
         * (Python's email among them) put a space between the words of a split phrase. */
        size_t whole = EW_OVERHEAD + (q ? qlen_from(s + i, n - i, phrase) : b64_len(n - i));
        bool own_line = phrase && i == 0 && whole <= EW_MAX && whole > room;
        if (f->col > 0 && (own_line || room < EW_OVERHEAD + first_cost)) {
            fold_break(f);
            room = COMPOSE_SOFT_LINE - wsn;
        }
        size_t max = room < EW_MAX ? room : EW_MAX;

        /* As many whole characters as fit; always at least one, so this ends. */
        size_t j = i, qsum = 0;
        while (j < n) {
            size_t cl = utf8_char_len(s + j, n - j);
            if (cl == 0)
                cl = 1;
            size_t qnext = qsum;
            for (size_t k = 0; k < cl; k++)
                qnext += q_plain(s[j + k], phrase) ? 1 : 3;
            size_t len = EW_OVERHEAD + (q ? qnext : b64_len(j + cl - i));
            if (len > max && j > i)
                break;
            j += cl;
            qsum = qnext;
        }
        char word[EW_MAX + 16];
        size_t wn = ew_write(word, s + i, j - i, q, phrase);
        fold_token(f, ws, wsn, word, wn);
        ws = " "; /* white space between encoded-words is not part of the text (RFC 2047 6.2) */
        wsn = 1;
        i = j;
    }
}

/* ---- RFC 2231 ---- */

/* RFC 2231 attribute-char: may stand for itself in an extended value. */
static bool param_plain(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$&+-.^_`|~", c) != NULL;
}

/* Appends one character of value (cl bytes at s) as it goes in the parameter. */
static void param_char(struct cbuf *t, const unsigned char *s, size_t cl, bool ext)
{
    for (size_t k = 0; k < cl; k++) {
        if (!ext) {
            if (s[k] == '"' || s[k] == '\\')
                cb_put(t, "\\", 1);
            cb_put(t, s + k, 1);
        } else if (param_plain(s[k])) {
            cb_put(t, s + k, 1);
        } else {
            char pct[3] = {'%', hex_digits[s[k] >> 4], hex_digits[s[k] & 15]};
            cb_put(t, pct, 3);
        }
    }
}

static size_t param_cost(const unsigned char *s, size_t cl, bool ext)
{
    size_t cost = 0;
    for (size_t k = 0; k < cl; k++) {
        if (!ext)
            cost += s[k] == '"' || s[k] == '\\' ? 2 : 1;
        else
            cost += param_plain(s[k]) ? 1 : 3;
    }
    return cost;
}

/* name=..., or segment k of name (k >= 0) when split. */
static void param_head(struct cbuf *t, const char *name, long k, bool ext)
{
    char idx[32] = "";
    if (k >= 0)
        snprintf(idx, sizeof idx, "*%ld", k);
    cb_puts(t, name);
    cb_puts(t, idx);
    cb_puts(t, ext ? "*=" : "=\"");
    if (ext && k <= 0)
        cb_puts(t, "utf-8''");
}

void fold_param(struct fold *f, const char *name, const char *value)
{
    const unsigned char *v = (const unsigned char *)value;
    size_t vn = strlen(value);
    bool ext = false;
    for (size_t i = 0; i < vn; i++)
        ext |= v[i] < 0x20 || v[i] > 0x7e;

    struct cbuf t = {0};
    param_head(&t, name, -1, ext);
    param_char(&t, v, vn, ext);
    if (!ext)
        cb_put(&t, "\"", 1);
    fold_token(f, "", 0, ";", 1);
    if (t.n <= PARAM_SEG) {
        fold_token(f, " ", 1, t.p, t.n);
        cb_free(&t);
        return;
    }

    /* RFC 2231 3: name*0, name*1, ...; a segment never splits a character, so even a reader
     * that decodes segment by segment shows whole ones. */
    for (size_t i = 0, k = 0; i < vn; k++) {
        t.n = 0;
        param_head(&t, name, (long)k, ext);
        size_t head = t.n;
        while (i < vn) {
            size_t cl = ext ? utf8_char_len(v + i, vn - i) : 1;
            if (cl == 0)
                cl = 1;
            if (t.n + param_cost(v + i, cl, ext) + (ext ? 0 : 1) > PARAM_SEG && t.n > head)
                break;
            param_char(&t, v + i, cl, ext);
            i += cl;
        }
        if (!ext)
            cb_put(&t, "\"", 1);
        if (k > 0)
            fold_token(f, "", 0, ";", 1);
        fold_token(f, " ", 1, t.p, t.n);
    }
    f->b->oom |= t.oom;
    cb_free(&t);
}

/* ---- bodies ---- */

void enc_base64_lines(struct cbuf *b, const unsigned char *s, size_t n)
{
    size_t chunk = B64_LINE / 4 * 3; /* 57 octets per line */
    size_t lines = (n + chunk - 1) / chunk;
    size_t start = b->n;
    char *o = cb_extend(b, b64_len(n) + (lines > 0 ? lines - 1 : 0) * 2);
    if (o == NULL)
        return;
    size_t w = 0;
    for (size_t i = 0; i < n; i += chunk) {
        if (i > 0) {
            o[w++] = '\r';
            o[w++] = '\n';
        }
        w += b64_write(o + w, s + i, n - i < chunk ? n - i : chunk);
    }
    cb_shrink(b, start + w);
}

void enc_qp(struct cbuf *b, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t e = i;
        while (e < n && !(s[e] == '\r' && e + 1 < n && s[e + 1] == '\n'))
            e++;
        /* worst case: every octet =XX, a soft break per 24 of them, the CRLF */
        size_t len = e - i, start = b->n;
        char *o = cb_extend(b, len * 3 + (len / 24 + 1) * 3 + 2);
        if (o == NULL)
            return;
        size_t w = 0, col = 0;
        for (size_t k = i; k < e; k++) {
            unsigned char c = s[k];
            bool last = k + 1 == e;
            /* White space at the end of a line may be stripped in transit (6.7 (3)). */
            bool lit = (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last);
            size_t t = lit ? 1 : 3;
            if (col + t > (last ? QP_LINE : QP_LINE - 1)) {
                memcpy(o + w, "=\r\n", 3);
                w += 3;
                col = 0;
            }
            if (lit) {
                o[w++] = (char)c;
            } else {
                o[w++] = '=';
                o[w++] = hex_digits[c >> 4];
                o[w++] = hex_digits[c & 15];
            }
            col += t;
        }
        if (e < n) {
            o[w++] = '\r';
            o[w++] = '\n';
            e += 2;
        }
        cb_shrink(b, start + w);
        i = e;
    }
}

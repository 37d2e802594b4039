/* libFuzzer harness for src/smtp/hdr.c: parses the input as a From: field body and traps on a
 * broken invariant (the count is bounded by the input, does not depend on max, and grows by one
 * when a mailbox is appended; outputs are terminated, within HDR_ADDR_MAX, well-formed UTF-8 with
 * no CR, LF or NUL, hold exactly one '@' outside quotes once requoted, and reparse to themselves;
 * nothing past the count is written, and a failure leaves every output empty). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/hdr.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define FUZZ_OUT 4
/* "<" + a local part quoted with every octet escaped + "@" + domain + ">, " */
#define FUZZ_CANON_MAX (2 * HDR_ADDR_MAX + 8)

static bool fuzz_is_atext(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c >= 0x80 || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* dot-atom-text: the local parts that need no quotes. */
static bool fuzz_is_dot_atom(const char *s, size_t n)
{
    bool need = true;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (need)
                return false;
            need = true;
        } else if (fuzz_is_atext((unsigned char)s[i])) {
            need = false;
        } else {
            return false;
        }
    }
    return !need;
}

/* Independent of hdr.c's own check: a plain decoder that rejects overlongs, surrogates and
 * values above U+10FFFF by computing the code point. */
static bool fuzz_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t more;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            more = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            more = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            more = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i <= more)
            return false;
        for (size_t k = 1; k <= more; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += more + 1;
    }
    return true;
}

/* Appends "<addr>" to buf with the local part requoted when it is not a dot-atom, checks that
 * the result has exactly one '@' outside the quotes, and returns the new length. */
static size_t fuzz_canon(char *buf, size_t n, const char *addr)
{
    const char *at = strrchr(addr, '@');
    FUZZ_CHECK(at != NULL);
    size_t llen = (size_t)(at - addr), start = n;

    buf[n++] = '<';
    bool quote = !fuzz_is_dot_atom(addr, llen);
    if (quote)
        buf[n++] = '"';
    for (size_t i = 0; i < llen; i++) {
        if (addr[i] == '"' || addr[i] == '\\')
            buf[n++] = '\\';
        buf[n++] = addr[i];
    }
    if (quote)
        buf[n++] = '"';
    size_t sep = n; /* the '@' between local part and domain */
    size_t dlen = strlen(at);
    memcpy(buf + n, at, dlen);
    n += dlen;
    buf[n++] = '>';

    /* Quotes only mean something in the local part; a domain literal may hold a '"' as dtext,
     * but never an '@', so the '@' count runs over the whole address. */
    size_t ats = 0;
    bool in_quotes = false;
    for (size_t i = start; i < n; i++) {
        if (i > sep) {
            ats += buf[i] == '@';
            continue;
        }
        if (in_quotes && buf[i] == '\\')
            i++;
        else if (buf[i] == '"')
            in_quotes = !in_quotes;
        else if (!in_quotes && buf[i] == '@')
            ats++;
    }
    FUZZ_CHECK(ats == 1 && !in_quotes);
    return n;
}

static int fuzz_parse(const char *s, size_t n, char (*out)[HDR_ADDR_MAX + 1], size_t max)
{
    char *d = malloc(n > 0 ? n : 1); /* exact size: ASan reports any read past n */
    FUZZ_CHECK(d != NULL);
    if (n > 0)
        memcpy(d, s, n);
    int got = hdr_from_addresses(d, n, out, max);
    free(d);
    return got;
}

static void fuzz_check_addr(const char *a)
{
    FUZZ_CHECK(memchr(a, 0, HDR_ADDR_MAX + 1) != NULL);
    size_t n = strlen(a);
    FUZZ_CHECK(fuzz_utf8((const unsigned char *)a, n));
    const char *at = strrchr(a, '@');
    FUZZ_CHECK(at != NULL && at[1] != 0);
    for (const char *p = a; *p; p++) {
        unsigned char c = (unsigned char)*p;
        FUZZ_CHECK(c != '\r' && c != '\n' && c != 0x7F && (c >= 0x20 || c == '\t'));
        if (p > at) /* the domain: no '@' (strrchr), no whitespace */
            FUZZ_CHECK(c != ' ' && c != '\t');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char out[FUZZ_OUT][HDR_ADDR_MAX + 1];

    memset(out, 'x', sizeof out);
    int got = fuzz_parse(s, size, out, FUZZ_OUT);
    FUZZ_CHECK(got == -1 || got >= 1);
    /* Each mailbox takes at least three octets ("a@b") and one separator. */
    FUZZ_CHECK(got < 0 || (size_t)got * 4 <= size + 1);
    for (size_t i = 0; i < FUZZ_OUT; i++) {
        if (got < 0)
            FUZZ_CHECK(out[i][0] == 0);
        else if ((int)i >= got)
            FUZZ_CHECK(out[i][0] == 'x' && out[i][HDR_ADDR_MAX] == 'x');
        else
            fuzz_check_addr(out[i]);
    }

    /* The count does not depend on max, and a smaller max writes the same prefix. */
    char one[1][HDR_ADDR_MAX + 1];
    FUZZ_CHECK(fuzz_parse(s, size, NULL, 0) == got);
    FUZZ_CHECK(fuzz_parse(s, size, one, 1) == got);
    FUZZ_CHECK(got < 0 ? one[0][0] == 0 : strcmp(one[0], out[0]) == 0);

    if (got < 0)
        return 0;

    /* The requoted addresses, as a list of angle-addrs, parse back to the same addresses. */
    static char canon[FUZZ_OUT * FUZZ_CANON_MAX];
    size_t n = 0, shown = got < FUZZ_OUT ? (size_t)got : FUZZ_OUT;
    for (size_t i = 0; i < shown; i++) {
        if (i > 0) {
            canon[n++] = ',';
            canon[n++] = ' ';
        }
        n = fuzz_canon(canon, n, out[i]);
    }
    char again[FUZZ_OUT][HDR_ADDR_MAX + 1];
    FUZZ_CHECK(fuzz_parse(canon, n, again, FUZZ_OUT) == (int)shown);
    for (size_t i = 0; i < shown; i++)
        FUZZ_CHECK(strcmp(again[i], out[i]) == 0);

    /* A valid list ends between tokens, so one more mailbox after a comma counts once more. */
    char *longer = malloc(size + 5);
    FUZZ_CHECK(longer != NULL);
    if (size > 0)
        memcpy(longer, s, size);
    memcpy(longer + size, ",z@y", 4);
    FUZZ_CHECK(fuzz_parse(longer, size + 4, NULL, 0) == got + 1);
    free(longer);
    return 0;
}

/* The From: field reader used by the send-as policy: a lexer that turns an RFC 5322 field body
 * into tokens (atoms, quoted-strings, domain literals, specials) with all CFWS between them
 * dropped, and a one-token-lookahead parser of mailbox-list over those tokens. Dropping CFWS in
 * the lexer is what makes the obsolete grammar (4.4: CFWS around every '.', '@' and '<') fall out
 * for free. Nothing here allocates or recurses; each byte is looked at a bounded number of times.
 */
#include "smtp/hdr.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

/* RFC 5322 3.2.2 allows comments to nest without limit; a bound keeps a hostile header from
 * costing anything, and no MUA nests deeper than two. */
#define HDR_COMMENT_DEPTH 8

enum hdr_kind {
    HDR_END,     /* end of the value */
    HDR_ATOM,    /* 1*atext (atext widened by RFC 6532 to octets >= 0x80) */
    HDR_QUOTED,  /* quoted-string, quotes included in [start, end) */
    HDR_LITERAL, /* domain-literal, brackets included */
    HDR_SPECIAL, /* one of < > @ , : ; . */
    HDR_BAD,     /* anything that cannot appear in a mailbox-list */
};

struct hdr_lex {
    const unsigned char *s;
    size_t len;
    size_t pos;         /* first byte not yet tokenised */
    enum hdr_kind kind; /* the current token */
    unsigned char special;
    size_t start, end;
};

/* An address being assembled. Overflow is remembered rather than fatal: a display name is
 * assembled the same way and may be as long as it likes. */
struct hdr_buf {
    char s[HDR_ADDR_MAX + 1];
    size_t n;
    bool over;
};

static bool hdr_is_atext(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80)
        return true;
    return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool hdr_is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* Length of one FWS unit at i: 1 for WSP, 3 for a fold (CRLF WSP), 0 for none, -1 for a CR that
 * is not part of a fold: a CRLF without WSP after it would end the header field. */
static int hdr_fws_len(const struct hdr_lex *lx, size_t i)
{
    if (hdr_is_wsp(lx->s[i]))
        return 1;
    if (lx->s[i] != '\r')
        return 0;
    if (lx->len - i >= 3 && lx->s[i + 1] == '\n' && hdr_is_wsp(lx->s[i + 2]))
        return 3;
    return -1;
}

/* quoted-pair at i (s[i] == '\\'): VCHAR or WSP, VCHAR widened to UTF-8 by RFC 6532. The
 * obs-qp forms (NUL, CR, LF, controls) are refused: they only ever serve to smuggle. */
static bool hdr_quoted_pair(const struct hdr_lex *lx, size_t i)
{
    if (i + 1 >= lx->len)
        return false;
    unsigned char c = lx->s[i + 1];
    return (c >= 33 && c <= 126) || hdr_is_wsp(c) || c >= 0x80;
}

/* Skips a comment starting at pos (s[pos] == '('), counting depth instead of recursing. */
static bool hdr_skip_comment(struct hdr_lex *lx)
{
    unsigned depth = 0;
    while (lx->pos < lx->len) {
        unsigned char c = lx->s[lx->pos];
        int f = hdr_fws_len(lx, lx->pos);
        if (f < 0)
            return false;
        if (f > 0) {
            lx->pos += (size_t)f;
        } else if (c == '(') {
            if (++depth > HDR_COMMENT_DEPTH)
                return false;
            lx->pos++;
        } else if (c == ')') {
            lx->pos++;
            if (--depth == 0)
                return true;
        } else if (c == '\\') {
            if (!hdr_quoted_pair(lx, lx->pos))
                return false;
            lx->pos += 2;
        } else if ((c >= 33 && c <= 126) || c >= 0x80) { /* ctext: '(' ')' '\' handled above */
            lx->pos++;
        } else {
            return false;
        }
    }
    return false; /* unclosed */
}

/* Scans a quoted-string (s[pos] == '"') up to and including its closing quote. */
static bool hdr_scan_quoted(struct hdr_lex *lx)
{
    lx->pos++;
    while (lx->pos < lx->len) {
        unsigned char c = lx->s[lx->pos];
        int f = hdr_fws_len(lx, lx->pos);
        if (f < 0)
            return false;
        if (f > 0) {
            lx->pos += (size_t)f;
        } else if (c == '"') {
            lx->pos++;
            return true;
        } else if (c == '\\') {
            if (!hdr_quoted_pair(lx, lx->pos))
                return false;
            lx->pos += 2;
        } else if ((c >= 33 && c <= 126) || c >= 0x80) { /* qtext */
            lx->pos++;
        } else {
            return false;
        }
    }
    return false;
}

/* Scans a domain-literal (s[pos] == '[') through its ']'. dtext is narrowed by '@' (and obs-dtext
 * quoted-pairs are not taken) so that the domain of an address can never contain an '@', which
 * keeps "split at the last '@'" unambiguous for callers. */
static bool hdr_scan_literal(struct hdr_lex *lx)
{
    lx->pos++;
    while (lx->pos < lx->len) {
        unsigned char c = lx->s[lx->pos];
        int f = hdr_fws_len(lx, lx->pos);
        if (f < 0)
            return false;
        if (f > 0) {
            lx->pos += (size_t)f;
        } else if (c == ']') {
            lx->pos++;
            return true;
        } else if ((c >= 33 && c <= 126 && c != '[' && c != '\\' && c != '@') || c >= 0x80) {
            lx->pos++;
        } else {
            return false;
        }
    }
    return false;
}

/* Moves to the next token, skipping CFWS first. A lexical error becomes an HDR_BAD token, which
 * no parser state accepts. */
static void hdr_next(struct hdr_lex *lx)
{
    for (;;) {
        if (lx->pos >= lx->len) {
            lx->kind = HDR_END;
            lx->start = lx->end = lx->pos;
            return;
        }
        int f = hdr_fws_len(lx, lx->pos);
        if (f < 0) {
            lx->kind = HDR_BAD;
            return;
        }
        if (f > 0) {
            lx->pos += (size_t)f;
        } else if (lx->s[lx->pos] == '(') {
            if (!hdr_skip_comment(lx)) {
                lx->kind = HDR_BAD;
                return;
            }
        } else {
            break;
        }
    }

    unsigned char c = lx->s[lx->pos];
    bool ok = true;
    lx->start = lx->pos;
    if (c == '"') {
        lx->kind = HDR_QUOTED;
        ok = hdr_scan_quoted(lx);
    } else if (c == '[') {
        lx->kind = HDR_LITERAL;
        ok = hdr_scan_literal(lx);
    } else if (strchr("<>@,:;.", c) != NULL && c != 0) {
        lx->kind = HDR_SPECIAL;
        lx->special = c;
        lx->pos++;
    } else if (hdr_is_atext(c)) {
        lx->kind = HDR_ATOM;
        while (lx->pos < lx->len && hdr_is_atext(lx->s[lx->pos]))
            lx->pos++;
    } else {
        ok = false; /* NUL, LF, controls, stray ')' ']' '\' */
    }
    if (!ok)
        lx->kind = HDR_BAD;
    lx->end = lx->pos;
}

static bool hdr_is_special(const struct hdr_lex *lx, unsigned char c)
{
    return lx->kind == HDR_SPECIAL && lx->special == c;
}

static bool hdr_is_word(const struct hdr_lex *lx)
{
    return lx->kind == HDR_ATOM || lx->kind == HDR_QUOTED;
}

static void hdr_put(struct hdr_buf *b, unsigned char c)
{
    if (b->n < HDR_ADDR_MAX)
        b->s[b->n++] = (char)c;
    else
        b->over = true;
}

/* Appends the current token's meaning: an atom as is, a quoted-string without its quotes, the
 * backslashes of its quoted-pairs and the CRLF of its folds (RFC 5322 3.2.4), a domain literal
 * without its FWS. The lexer has already checked the token, so this only transcribes. */
static void hdr_put_token(struct hdr_buf *b, const struct hdr_lex *lx)
{
    const unsigned char *s = lx->s;
    size_t i = lx->start, end = lx->end;

    if (lx->kind == HDR_QUOTED) {
        for (i++, end--; i < end; i++) {
            if (s[i] == '\\')
                i++;
            else if (s[i] == '\r')
                i += 2; /* CR LF, then the WSP is kept as the next byte */
            if (i < end)
                hdr_put(b, s[i]);
        }
        return;
    }
    for (; i < end; i++) {
        if (lx->kind == HDR_LITERAL && (hdr_is_wsp(s[i]) || s[i] == '\r' || s[i] == '\n'))
            continue;
        hdr_put(b, s[i]);
    }
}

/* Consumes word *(word / ".") and writes it to b with the dots. *strict tells whether it was
 * word *("." word), the shape a local part must have (RFC 5322 dot-atom, quoted-string or
 * obs-local-part); anything else can only be an obs-phrase. Returns the number of items. */
static size_t hdr_take_words(struct hdr_lex *lx, struct hdr_buf *b, bool *strict)
{
    size_t items = 0;
    bool last_dot = true; /* as if just after a dot: a leading dot breaks strictness */

    *strict = true;
    while (hdr_is_word(lx) || hdr_is_special(lx, '.')) {
        bool dot = lx->kind == HDR_SPECIAL;
        if (dot == last_dot)
            *strict = false;
        last_dot = dot;
        if (dot)
            hdr_put(b, '.');
        else
            hdr_put_token(b, lx);
        items++;
        hdr_next(lx);
    }
    if (last_dot)
        *strict = false;
    return items;
}

/* domain = dot-atom / domain-literal / obs-domain. */
static bool hdr_take_domain(struct hdr_lex *lx, struct hdr_buf *b)
{
    if (lx->kind == HDR_LITERAL) {
        hdr_put_token(b, lx);
        hdr_next(lx);
        return true;
    }
    for (;;) {
        if (lx->kind != HDR_ATOM)
            return false;
        hdr_put_token(b, lx);
        hdr_next(lx);
        if (!hdr_is_special(lx, '.'))
            return true;
        hdr_put(b, '.');
        hdr_next(lx);
    }
}

/* addr-spec = local-part "@" domain, the local part already in b as word *("." word). */
static bool hdr_take_at_domain(struct hdr_lex *lx, struct hdr_buf *b, size_t items, bool strict)
{
    if (items == 0 || !strict || !hdr_is_special(lx, '@'))
        return false;
    hdr_put(b, '@');
    hdr_next(lx);
    return hdr_take_domain(lx, b);
}

/* obs-route = obs-domain-list ":", just after the '<'. Only its syntax matters: the route is
 * dropped, as RFC 5322 4.4 says to. */
static bool hdr_skip_route(struct hdr_lex *lx)
{
    struct hdr_buf scratch;

    while (hdr_is_special(lx, ','))
        hdr_next(lx);
    for (;;) {
        if (!hdr_is_special(lx, '@'))
            return false;
        hdr_next(lx);
        scratch.n = 0;
        if (!hdr_take_domain(lx, &scratch))
            return false;
        if (hdr_is_special(lx, ':')) {
            hdr_next(lx);
            return true;
        }
        if (!hdr_is_special(lx, ','))
            return false;
        while (hdr_is_special(lx, ','))
            hdr_next(lx);
        if (hdr_is_special(lx, ':')) {
            hdr_next(lx);
            return true;
        }
    }
}

/* mailbox = name-addr / addr-spec, leaving the addr-spec in b. */
static bool hdr_take_mailbox(struct hdr_lex *lx, struct hdr_buf *b)
{
    bool strict;

    b->n = 0;
    b->over = false;
    bool starts_with_word = hdr_is_word(lx);
    size_t items = hdr_take_words(lx, b, &strict);
    if (!hdr_is_special(lx, '<'))
        return hdr_take_at_domain(lx, b, items, strict);

    /* name-addr: what came before '<' was the display name, if anything. A phrase must start
     * with a word; obs-phrase then allows words, dots and CFWS in any order. */
    if (items > 0 && !starts_with_word)
        return false;
    b->n = 0;
    b->over = false;
    hdr_next(lx);
    if ((hdr_is_special(lx, '@') || hdr_is_special(lx, ',')) && !hdr_skip_route(lx))
        return false;
    items = hdr_take_words(lx, b, &strict);
    if (!hdr_take_at_domain(lx, b, items, strict) || !hdr_is_special(lx, '>'))
        return false;
    hdr_next(lx);
    return true;
}

/* RFC 3629 well-formedness: no overlongs, surrogates or values above U+10FFFF. */
static bool hdr_valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        unsigned char lo = 0x80, hi = 0xBF;
        size_t more;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            if (c == 0xE0)
                lo = 0xA0;
            if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            if (c == 0xF0)
                lo = 0x90;
            if (c == 0xF4)
                hi = 0x8F;
        } else {
            return false;
        }
        if (n - i <= more || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= more; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return false;
        }
        i += more + 1;
    }
    return true;
}

/* mailbox-list / obs-mbox-list: mailboxes separated by commas, where obs-mbox-list lets list
 * elements be empty (leading, doubled and trailing commas) as long as one mailbox is present. */
static int hdr_list(struct hdr_lex *lx, char (*out)[HDR_ADDR_MAX + 1], size_t max)
{
    struct hdr_buf b;
    size_t count = 0;

    hdr_next(lx);
    while (lx->kind != HDR_END) {
        if (hdr_is_special(lx, ',')) {
            hdr_next(lx);
            continue;
        }
        if (!hdr_take_mailbox(lx, &b))
            return -1;
        if (lx->kind != HDR_END && !hdr_is_special(lx, ','))
            return -1; /* two mailboxes without a comma, or a group's ':' / ';' */
        /* Addresses beyond max are checked all the same, so the count does not depend on max. */
        if (b.over || !hdr_valid_utf8((const unsigned char *)b.s, b.n) || count == INT_MAX)
            return -1;
        if (count < max) {
            memcpy(out[count], b.s, b.n);
            out[count][b.n] = 0;
        }
        count++;
    }
    return count == 0 ? -1 : (int)count;
}

int hdr_from_addresses(const char *value, size_t len, char (*out)[HDR_ADDR_MAX + 1], size_t max)
{
    struct hdr_lex lx = {.s = (const unsigned char *)value, .len = value != NULL ? len : 0};

    if (out == NULL)
        max = 0;
    int n = hdr_list(&lx, out, max);
    if (n < 0) {
        /* Leave nothing behind that a careless caller could mistake for a parsed address. */
        for (size_t i = 0; i < max; i++)
            out[i][0] = 0;
    }
    return n;
}

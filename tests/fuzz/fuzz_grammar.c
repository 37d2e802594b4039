/* libFuzzer harness for src/smtp/grammar.c: runs every parser over the input with every flag
 * combination and traps on a broken invariant (consumed within the input, outputs terminated,
 * errors leave nothing behind, a formatted path reparses to the same mailbox, SMTPUTF8 only
 * ever widens what is accepted, and the per-part validators agree with the path parser). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/grammar.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static bool fuzz_terminated(const char *s, size_t cap)
{
    return memchr(s, 0, cap) != NULL;
}

static bool fuzz_has_8bit(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s >= 0x80)
            return true;
    }
    return false;
}

static void fuzz_path(const char *s, size_t len, unsigned flags)
{
    struct smtp_path p, q;
    size_t consumed = (size_t)-1;
    enum smtp_path_err e = smtp_parse_path(s, len, flags, &p, &consumed);

    FUZZ_CHECK(e == SMTP_PATH_OK || e == SMTP_PATH_SYNTAX || e == SMTP_PATH_TOO_LONG ||
               e == SMTP_PATH_NEEDS_UTF8);
    FUZZ_CHECK(consumed <= len);
    FUZZ_CHECK(fuzz_terminated(p.local, sizeof p.local));
    FUZZ_CHECK(fuzz_terminated(p.domain, sizeof p.domain));
    if (e != SMTP_PATH_OK) {
        FUZZ_CHECK(consumed == 0 && p.local[0] == 0 && p.domain[0] == 0);
        FUZZ_CHECK(!(e == SMTP_PATH_NEEDS_UTF8 && (flags & SMTP_PATH_UTF8)));
        return;
    }

    FUZZ_CHECK(consumed >= 2 && consumed <= SMTP_PATH_MAX);
    FUZZ_CHECK(s[0] == '<' && s[consumed - 1] == '>');
    FUZZ_CHECK(strlen(p.local) <= SMTP_LOCAL_MAX && strlen(p.domain) <= SMTP_DOMAIN_MAX);
    FUZZ_CHECK(!p.null || (flags & SMTP_PATH_REVERSE));
    FUZZ_CHECK(!p.postmaster || (flags & SMTP_PATH_POSTMASTER));
    FUZZ_CHECK(!p.utf8 || (flags & SMTP_PATH_UTF8));
    FUZZ_CHECK(p.utf8 == (fuzz_has_8bit(p.local) || fuzz_has_8bit(p.domain)));
    if (p.null) {
        FUZZ_CHECK(consumed == 2 && p.local[0] == 0 && p.domain[0] == 0);
    } else if (p.postmaster) {
        FUZZ_CHECK(consumed == 12 && strcmp(p.local, "postmaster") == 0 && p.domain[0] == 0);
    } else if (p.literal) {
        FUZZ_CHECK(smtp_valid_address_literal(p.domain, strlen(p.domain)));
        FUZZ_CHECK(smtp_valid_helo(p.domain, strlen(p.domain)));
    } else {
        FUZZ_CHECK(smtp_valid_domain(p.domain, strlen(p.domain), p.utf8));
    }

    /* Declaring SMTPUTF8 only ever widens what is accepted; the result is otherwise the same. */
    if (!(flags & SMTP_PATH_UTF8)) {
        size_t c2;
        FUZZ_CHECK(smtp_parse_path(s, len, flags | SMTP_PATH_UTF8, &q, &c2) == SMTP_PATH_OK);
        FUZZ_CHECK(c2 == consumed && memcmp(&p, &q, sizeof p) == 0);
    }

    /* Formatting, then parsing "<" formatted ">", gives the same mailbox back. */
    char buf[2 + 2 * SMTP_LOCAL_MAX + 3 + SMTP_DOMAIN_MAX + 1];
    buf[0] = '<';
    size_t n = smtp_path_format(&p, buf + 1, sizeof buf - 2);
    FUZZ_CHECK(n + 3 <= sizeof buf);
    FUZZ_CHECK(buf[1 + n] == 0 && strlen(buf + 1) == n);
    FUZZ_CHECK(n + 2 <= consumed); /* canonical form is never longer */
    buf[1 + n] = '>';
    size_t c3;
    FUZZ_CHECK(smtp_parse_path(buf, n + 2, flags, &q, &c3) == SMTP_PATH_OK);
    FUZZ_CHECK(c3 == n + 2);
    FUZZ_CHECK(strcmp(p.local, q.local) == 0 && strcmp(p.domain, q.domain) == 0);
    FUZZ_CHECK(p.null == q.null && p.postmaster == q.postmaster && p.literal == q.literal &&
               p.utf8 == q.utf8 && !q.had_route);

    /* A truncated format is a terminated prefix of the full one. */
    char small[8];
    for (size_t cap = 0; cap <= sizeof small; cap++) {
        memset(small, 'x', sizeof small);
        FUZZ_CHECK(smtp_path_format(&p, small, cap) == n);
        if (cap > 0) {
            size_t k = n < cap - 1 ? n : cap - 1;
            FUZZ_CHECK(small[k] == 0 && memcmp(small, buf + 1, k) == 0);
        }
        for (size_t i = cap; i < sizeof small; i++)
            FUZZ_CHECK(small[i] == 'x');
    }
}

static void fuzz_params(const char *s, size_t len, bool utf8)
{
    struct smtp_param out[8];
    for (size_t max = 0; max <= 8; max += 4) {
        int got = smtp_parse_params(s, len, utf8, out, max);
        FUZZ_CHECK(got >= -2 && got <= (int)max);
        for (int i = 0; i < got; i++) {
            FUZZ_CHECK(out[i].keylen > 0 && out[i].key >= s &&
                       out[i].key + out[i].keylen <= s + len);
            FUZZ_CHECK(out[i].value == NULL ||
                       (out[i].valuelen > 0 && out[i].value == out[i].key + out[i].keylen + 1 &&
                        out[i].value + out[i].valuelen <= s + len));
            FUZZ_CHECK(out[i].value != NULL || out[i].valuelen == 0);
        }
        if (got >= 0 && !utf8) {
            struct smtp_param wide[8];
            FUZZ_CHECK(smtp_parse_params(s, len, true, wide, max) == got);
            FUZZ_CHECK(memcmp(wide, out, (size_t)got * sizeof out[0]) == 0);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so ASan reports any read past the end. */
    char *s = malloc(size > 0 ? size : 1);
    if (s == NULL)
        return 0;
    if (size > 0)
        memcpy(s, data, size);

    for (unsigned flags = 0; flags < 8; flags++)
        fuzz_path(s, size, flags);

    bool dom = smtp_valid_domain(s, size, false);
    bool dom8 = smtp_valid_domain(s, size, true);
    bool lit = smtp_valid_address_literal(s, size);
    bool helo = smtp_valid_helo(s, size);
    FUZZ_CHECK(!dom || dom8);
    FUZZ_CHECK(helo == (dom || lit));
    FUZZ_CHECK(!(dom8 && lit));
    if (dom || lit) {
        /* Anything the validators accept works as the domain of a path. */
        char path[3 + SMTP_DOMAIN_MAX + 1];
        struct smtp_path p;
        size_t consumed;
        path[0] = '<';
        path[1] = 'u';
        path[2] = '@';
        memcpy(path + 3, s, size);
        path[3 + size] = '>';
        enum smtp_path_err e = smtp_parse_path(path, size + 4, 0, &p, &consumed);
        FUZZ_CHECK(e == (size + 4 <= SMTP_PATH_MAX ? SMTP_PATH_OK : SMTP_PATH_TOO_LONG));
    }

    fuzz_params(s, size, false);
    fuzz_params(s, size, true);

    /* A word never equals a range holding a different number of bytes. */
    FUZZ_CHECK(!smtp_word_eq(s, size, "postmaster") || size == 10);
    if (size > 0 && size < 64 && memchr(s, 0, size) == NULL) {
        char word[64];
        memcpy(word, s, size);
        word[size] = 0;
        FUZZ_CHECK(smtp_word_eq(s, size, word));
        FUZZ_CHECK(!smtp_word_eq(s, size - 1, word));
    }

    free(s);
    return 0;
}

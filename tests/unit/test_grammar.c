/* Unit tests for src/smtp/grammar.c: table-driven cases for paths (the RFC 5321 examples, source
 * routes, quoting, literals, SMTPUTF8, size limits and malformed input), domains, address
 * literals, HELO arguments, ESMTP parameters, path formatting and word comparison. Every input
 * is copied into a heap buffer of exactly its length so ASan catches any read past len. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/grammar.h"

#define R SMTP_PATH_REVERSE
#define P SMTP_PATH_POSTMASTER
#define U SMTP_PATH_UTF8

/* expected struct smtp_path booleans */
#define B_NULL 0x01u
#define B_PM 0x02u
#define B_Q 0x04u
#define B_RT 0x08u
#define B_U8 0x10u
#define B_LIT 0x20u

/* A copy with no slack after it: reading s[len] is an ASan error. */
static char *test_dup_exact(const char *s, size_t n)
{
    char *d = malloc(n > 0 ? n : 1);
    assert_non_null(d);
    if (n > 0)
        memcpy(d, s, n);
    return d;
}

static unsigned test_path_bits(const struct smtp_path *p)
{
    return (p->null ? B_NULL : 0) | (p->postmaster ? B_PM : 0) | (p->quoted ? B_Q : 0) |
           (p->had_route ? B_RT : 0) | (p->utf8 ? B_U8 : 0) | (p->literal ? B_LIT : 0);
}

static enum smtp_path_err test_parse(const char *s, size_t n, unsigned flags, struct smtp_path *p,
                                     size_t *consumed)
{
    char *d = test_dup_exact(s, n);
    enum smtp_path_err e = smtp_parse_path(d, n, flags, p, consumed);
    free(d);
    return e;
}

struct path_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    unsigned flags;
    enum smtp_path_err err;
    const char *local;
    const char *domain;
    unsigned bits;
    size_t consumed; /* 0: all of in */
};

#define OK(in_, fl, lo, dom, b)                                                                    \
    {                                                                                              \
        .in = in_, .flags = fl, .err = SMTP_PATH_OK, .local = lo, .domain = dom, .bits = b         \
    }
/* a path followed by bytes that belong to the caller */
#define OKT(path_, tail, fl, lo, dom, b)                                                           \
    {                                                                                              \
        .in = path_ tail, .flags = fl, .err = SMTP_PATH_OK, .local = lo, .domain = dom, .bits = b, \
        .consumed = sizeof(path_) - 1                                                              \
    }
#define ERR(in_, fl, e)                                                                            \
    {                                                                                              \
        .in = in_, .flags = fl, .err = e                                                           \
    }
/* for inputs with an embedded NUL */
#define ERRN(in_, fl, e)                                                                           \
    {                                                                                              \
        .in = in_, .len = sizeof(in_) - 1, .flags = fl, .err = e                                   \
    }

#define SYN SMTP_PATH_SYNTAX
#define N8 SMTP_PATH_NEEDS_UTF8

static const struct path_case path_cases[] = {
    /* plain mailboxes */
    OK("<user@example.org>", 0, "user", "example.org", 0),
    OK("<Smith@bar.com>", 0, "Smith", "bar.com", 0),
    OK("<userx@y.foo.org>", 0, "userx", "y.foo.org", 0),
    OK("<Admin.MRC@foo.com>", 0, "Admin.MRC", "foo.com", 0),
    OK("<a@b>", 0, "a", "b", 0),
    OK("<first.last@sub.example.co.uk>", 0, "first.last", "sub.example.co.uk", 0),
    OK("<a.b.c.d@example.org>", 0, "a.b.c.d", "example.org", 0),
    OK("<user+tag@example.org>", 0, "user+tag", "example.org", 0),
    OK("<user%other@example.org>", 0, "user%other", "example.org", 0),
    OK("<host!user@example.org>", 0, "host!user", "example.org", 0),
    OK("<!#$%&'*+-/=?^_`{|}~@example.org>", 0, "!#$%&'*+-/=?^_`{|}~", "example.org", 0),
    OK("<=?utf-8?q?x?=@example.org>", 0, "=?utf-8?q?x?=", "example.org", 0),
    OK("<0@example.org>", 0, "0", "example.org", 0),
    OK("<-@example.org>", 0, "-", "example.org", 0),
    OK("<user@EXAMPLE.ORG>", 0, "user", "EXAMPLE.ORG", 0),
    OK("<USER@Example.Org>", 0, "USER", "Example.Org", 0),
    OK("<user@a-b.example>", 0, "user", "a-b.example", 0),
    OK("<user@a--b.example>", 0, "user", "a--b.example", 0),
    OK("<user@xn--bcher-kva.example>", 0, "user", "xn--bcher-kva.example", 0),
    OK("<user@123.example>", 0, "user", "123.example", 0),
    OK("<user@1.2.3.4>", 0, "user", "1.2.3.4", 0),
    OK("<user@localhost>", 0, "user", "localhost", 0),
    OK("<user@a.b.c.d.e.f.g>", 0, "user", "a.b.c.d.e.f.g", 0),
    OK("<user@example.org>", R, "user", "example.org", 0),
    OK("<user@example.org>", P, "user", "example.org", 0),
    OK("<user@example.org>", U, "user", "example.org", 0),
    OK("<user@example.org>", R | P | U, "user", "example.org", 0),
    OKT("<u@example.org>", " SIZE=100", 0, "u", "example.org", 0),
    OKT("<u@example.org>", ">", 0, "u", "example.org", 0),
    OKT("<u@example.org>", "<v@example.org>", 0, "u", "example.org", 0),
    OKT("<u@example.org>", " BODY=8BITMIME SMTPUTF8", R | U, "u", "example.org", 0),
    OKT("<u@example.org>", " \xC3\xA9", 0, "u", "example.org", 0),

    /* quoted local parts */
    OK("<\"Abc@def\"@example.com>", 0, "Abc@def", "example.com", B_Q),
    OK("<\"Fred\\ Bloggs\"@example.com>", 0, "Fred Bloggs", "example.com", B_Q),
    OK("<\"Joe.\\\\Blow\"@example.com>", 0, "Joe.\\Blow", "example.com", B_Q),
    OK("<\"user@other\"@example.org>", 0, "user@other", "example.org", B_Q),
    OK("<\"abc\"@example.org>", 0, "abc", "example.org", B_Q),
    OK("<\"\"@example.org>", 0, "", "example.org", B_Q),
    OK("<\" \"@example.org>", 0, " ", "example.org", B_Q),
    OK("<\"a\\\"b\"@example.org>", 0, "a\"b", "example.org", B_Q),
    OK("<\"a>b\"@example.org>", 0, "a>b", "example.org", B_Q),
    OK("<\"a.b.\"@example.org>", 0, "a.b.", "example.org", B_Q),
    OK("<\"a..b\"@example.org>", 0, "a..b", "example.org", B_Q),
    OK("<\".a\"@example.org>", 0, ".a", "example.org", B_Q),
    OK("<\"\\a\"@example.org>", 0, "a", "example.org", B_Q),
    OK("<\"a,b:c;d\"@example.org>", 0, "a,b:c;d", "example.org", B_Q),
    OK("<\"<x>\"@example.org>", 0, "<x>", "example.org", B_Q),
    OK("<\"[]\"@example.org>", 0, "[]", "example.org", B_Q),
    OK("<\"\\\\\\\"\"@example.org>", 0, "\\\"", "example.org", B_Q),
    OK("<\"~ (comment)\"@example.org>", 0, "~ (comment)", "example.org", B_Q),
    OK("<\"\\ \"@example.org>", 0, " ", "example.org", B_Q),
    OK("<\"\\~\"@[1.2.3.4]>", 0, "~", "[1.2.3.4]", B_Q | B_LIT),

    /* source routes (RFC 5321 4.1.1.3): accepted and dropped */
    OK("<@hosta.int,@jkl.org:userc@d.bar.org>", 0, "userc", "d.bar.org", B_RT),
    OK("<@jkl.org:userc@d.bar.org>", 0, "userc", "d.bar.org", B_RT),
    OK("<@a:b@c>", 0, "b", "c", B_RT),
    OK("<@a.b:u@c.d>", R, "u", "c.d", B_RT),
    OK("<@a.b,@c.d,@e.f:u@g.h>", 0, "u", "g.h", B_RT),
    OK("<@a.b:\"x y\"@c.d>", 0, "x y", "c.d", B_RT | B_Q),
    OK("<@a.b:u@[1.2.3.4]>", 0, "u", "[1.2.3.4]", B_RT | B_LIT),
    OK("<@A-B.Example:u@c.d>", P, "u", "c.d", B_RT),

    /* address literals */
    OK("<userx@[192.168.0.1]>", 0, "userx", "[192.168.0.1]", B_LIT),
    OK("<u@[0.0.0.0]>", 0, "u", "[0.0.0.0]", B_LIT),
    OK("<u@[255.255.255.255]>", 0, "u", "[255.255.255.255]", B_LIT),
    OK("<u@[001.002.003.004]>", 0, "u", "[001.002.003.004]", B_LIT),
    OK("<u@[IPv6:2001:db8:0:0:0:0:0:1]>", 0, "u", "[IPv6:2001:db8:0:0:0:0:0:1]", B_LIT),
    OK("<u@[IPv6:0000:0000:0000:0000:0000:0000:0000:0001]>", 0, "u",
       "[IPv6:0000:0000:0000:0000:0000:0000:0000:0001]", B_LIT),
    OK("<u@[IPv6:ffff:FFFF:abcd:ABCD:0:1:2:3]>", 0, "u", "[IPv6:ffff:FFFF:abcd:ABCD:0:1:2:3]",
       B_LIT),
    OK("<u@[IPv6:2001:DB8::1]>", 0, "u", "[IPv6:2001:DB8::1]", B_LIT),
    OK("<u@[IPv6:::1]>", 0, "u", "[IPv6:::1]", B_LIT),
    OK("<u@[IPv6:::]>", 0, "u", "[IPv6:::]", B_LIT),
    OK("<u@[IPv6:1::]>", 0, "u", "[IPv6:1::]", B_LIT),
    OK("<u@[IPv6:1:2:3:4:5:6::]>", 0, "u", "[IPv6:1:2:3:4:5:6::]", B_LIT),
    OK("<u@[IPv6:1:2:3::4:5:6]>", 0, "u", "[IPv6:1:2:3::4:5:6]", B_LIT),
    OK("<u@[IPv6:::1:2:3:4:5:6]>", 0, "u", "[IPv6:::1:2:3:4:5:6]", B_LIT),
    OK("<u@[ipv6:::1]>", 0, "u", "[ipv6:::1]", B_LIT),
    OK("<u@[IPV6:fe80::1]>", 0, "u", "[IPV6:fe80::1]", B_LIT),
    OK("<u@[IPv6:0:0:0:0:0:ffff:192.0.2.1]>", 0, "u", "[IPv6:0:0:0:0:0:ffff:192.0.2.1]", B_LIT),
    OK("<u@[IPv6:::ffff:192.0.2.1]>", 0, "u", "[IPv6:::ffff:192.0.2.1]", B_LIT),
    OK("<u@[IPv6:::192.0.2.1]>", 0, "u", "[IPv6:::192.0.2.1]", B_LIT),
    OK("<u@[IPv6:1:2:3:4::192.0.2.1]>", 0, "u", "[IPv6:1:2:3:4::192.0.2.1]", B_LIT),
    OK("<u@[IPv6:1::2:3:4:192.0.2.1]>", 0, "u", "[IPv6:1::2:3:4:192.0.2.1]", B_LIT),
    OK("<u@[IPv6:::1:2:3:4:192.0.2.1]>", 0, "u", "[IPv6:::1:2:3:4:192.0.2.1]", B_LIT),
    OK("<u@[x-tag:some-content]>", 0, "u", "[x-tag:some-content]", B_LIT),
    OK("<u@[tag:a:b:c]>", 0, "u", "[tag:a:b:c]", B_LIT),
    OK("<u@[IPv6x:anything!]>", 0, "u", "[IPv6x:anything!]", B_LIT),

    /* the null reverse-path and bare postmaster */
    OK("<>", R, "", "", B_NULL),
    OK("<>", R | P | U, "", "", B_NULL),
    OKT("<>", " SIZE=0", R, "", "", B_NULL),
    OKT("<>", ">", R, "", "", B_NULL),
    ERR("<>", 0, SYN),
    ERR("<>", P, SYN),
    ERR("<>", U, SYN),
    ERR("< >", R, SYN),
    ERR("<", R, SYN),
    OK("<Postmaster>", P, "postmaster", "", B_PM),
    OK("<postmaster>", P, "postmaster", "", B_PM),
    OK("<POSTMASTER>", P, "postmaster", "", B_PM),
    OK("<postmaster>", R | P | U, "postmaster", "", B_PM),
    OKT("<PostMaster>", " NOTIFY=NEVER", P, "postmaster", "", B_PM),
    ERR("<Postmaster>", 0, SYN),
    ERR("<Postmaster>", R, SYN),
    ERR("<Postmaster>", R | U, SYN),
    OK("<Postmaster@example.org>", 0, "Postmaster", "example.org", 0),
    OK("<Postmaster@example.org>", P, "Postmaster", "example.org", 0),
    ERR("<postmasterx>", P, SYN),
    ERR("<postmaste>", P, SYN),
    ERR("<postmaster", P, SYN),
    ERR("<\"postmaster\">", P, SYN),
    ERR("<@a.b:postmaster>", P, SYN),
    ERR("<post master>", P, SYN),

    /* SMTPUTF8 (RFC 6531) */
    OK("<用户@例子.广告>", U, "用户", "例子.广告", B_U8),
    ERR("<用户@例子.广告>", 0, N8),
    ERR("<用户@例子.广告>", R | P, N8),
    OK("<jöran@example.org>", U, "jöran", "example.org", B_U8),
    ERR("<jöran@example.org>", 0, N8),
    OK("<user@bücher.example>", U, "user", "bücher.example", B_U8),
    ERR("<user@bücher.example>", 0, N8),
    OK("<\"ö ö\"@example.org>", U, "ö ö", "example.org", B_Q | B_U8),
    ERR("<\"ö ö\"@example.org>", R, N8),
    OK("<😀@example.org>", U, "😀", "example.org", B_U8),
    OK("<\xC2\xA0@x.org>", U, "\xC2\xA0", "x.org", B_U8),
    OK("<\xF4\x8F\xBF\xBF@x.org>", U, "\xF4\x8F\xBF\xBF", "x.org", B_U8),
    OK("<\xEF\xBF\xBD@x.org>", U, "\xEF\xBF\xBD", "x.org", B_U8),
    OK("<user@éxample.org>", U, "user", "éxample.org", B_U8),
    OK("<jöran@bücher.example>", R | P | U, "jöran", "bücher.example", B_U8),
    OK("<@bücher.example:u@example.org>", U, "u", "example.org", B_RT),
    ERR("<@bücher.example:u@example.org>", 0, N8),
    OK("<user@[IPv6:::1]>", U, "user", "[IPv6:::1]", B_LIT),
    ERR("<\xC0\xAF@x.org>", U, SYN),         /* overlong '/' */
    ERR("<\xC1\xBF@x.org>", U, SYN),         /* overlong */
    ERR("<\xE0\x80\xAF@x.org>", U, SYN),     /* overlong, 3 bytes */
    ERR("<\xE0\x9F\xBF@x.org>", U, SYN),     /* overlong, 3 bytes */
    ERR("<\xF0\x80\x80\xAF@x.org>", U, SYN), /* overlong, 4 bytes */
    ERR("<\xF0\x8F\xBF\xBF@x.org>", U, SYN), /* overlong, 4 bytes */
    ERR("<\xED\xA0\x80@x.org>", U, SYN),     /* surrogate U+D800 */
    ERR("<\xED\xBF\xBF@x.org>", U, SYN),     /* surrogate U+DFFF */
    ERR("<\xF4\x90\x80\x80@x.org>", U, SYN), /* U+110000 */
    ERR("<\xF5\x80\x80\x80@x.org>", U, SYN), /* invalid lead */
    ERR("<\x80@x.org>", U, SYN),             /* lone continuation */
    ERR("<\xC3@x.org>", U, SYN),             /* truncated */
    ERR("<a\xC3", U, SYN),                   /* truncated at the end of input */
    ERR("<a\xE2\x82", U, SYN),               /* truncated at the end of input */
    ERR("<\xFF@x.org>", U, SYN),             /* never valid */
    ERR("<\xC2\x85@x.org>", U, SYN),         /* C1 control NEL */
    ERR("<\"\xC3\"@x.org>", U, SYN),         /* truncated inside quotes */
    ERR("<u@b\xC3.org>", U, SYN),            /* truncated in a domain */
    ERR("<\xFF@x.org>", 0, N8),              /* 8-bit without SMTPUTF8: client's fault */
    ERR("<\xC0\xAF@x.org>", 0, N8),          /* likewise, not validated */
    ERR("<u@[1.2.3.4\xC3\xA9]>", U, SYN),    /* no UTF-8 in literals */
    ERR("<u@[1.2.3.4\xC3\xA9]>", 0, SYN),    /* ...so it is a syntax error */
    ERR("<jöran>", 0, SYN),                  /* broken apart from the 8-bit octets */
    ERR("<u@-bü.example>", 0, SYN),          /* ditto */
    ERR("<u@bü-.example>", U, SYN),          /* U-label still may not end in '-' */
    ERR("<\"\\\xC3\xA9\"@x.org>", U, SYN),   /* quoted-pair is ASCII only */

    /* framing */
    ERR("", 0, SYN),
    ERR("<", 0, SYN),
    ERR(">", 0, SYN),
    ERR("user@example.org", 0, SYN),
    ERR("<user@example.org", 0, SYN),
    ERR(" <user@example.org>", 0, SYN),
    ERR("<<user@example.org>>", 0, SYN),
    ERR("[user@example.org]", 0, SYN),
    ERR("<user>", 0, SYN),
    ERR("<@example.org>", 0, SYN),
    ERR("<user@>", 0, SYN),
    ERR("<@>", R, SYN),
    ERR("<user@@example.org>", 0, SYN),
    ERR("<a@b@c>", 0, SYN),

    /* domains */
    ERR("<user@example..org>", 0, SYN),
    ERR("<user@.example.org>", 0, SYN),
    ERR("<user@example.org.>", 0, SYN),
    ERR("<user@.>", 0, SYN),
    ERR("<user@-example.org>", 0, SYN),
    ERR("<user@example-.org>", 0, SYN),
    ERR("<user@example.-org>", 0, SYN),
    ERR("<user@exa_mple.org>", 0, SYN),
    ERR("<user@exa mple.org>", 0, SYN),
    ERR("<user@example.org;>", 0, SYN),
    ERR("<user@example.org/x>", 0, SYN),

    /* local parts */
    ERR("<.user@example.org>", 0, SYN),
    ERR("<user.@example.org>", 0, SYN),
    ERR("<us..er@example.org>", 0, SYN),
    ERR("<.@example.org>", 0, SYN),
    ERR("<us er@example.org>", 0, SYN),
    ERR("< user@example.org>", 0, SYN),
    ERR("<user@example.org >", 0, SYN),
    ERR("<user @example.org>", 0, SYN),
    ERR("<user@ example.org>", 0, SYN),
    ERR("<us\ter@example.org>", 0, SYN),
    ERR("<user\r@example.org>", 0, SYN),
    ERR("<user\r\n@example.org>", 0, SYN),
    ERRN("<us\0er@example.org>", 0, SYN),
    ERRN("<user@example.org\0>", 0, SYN),
    ERR("<user\x7f@example.org>", 0, SYN),
    ERR("<us(er)@example.org>", 0, SYN),
    ERR("<us,er@example.org>", 0, SYN),
    ERR("<us[er@example.org>", 0, SYN),
    ERR("<us:er@example.org>", 0, SYN),
    ERR("<us;er@example.org>", 0, SYN),
    ERR("<us\\er@example.org>", 0, SYN),
    ERR("<us\"er@example.org>", 0, SYN),
    ERR("<\"unterminated@example.org>", 0, SYN),
    ERR("<\"a\"b\"@example.org>", 0, SYN),
    ERR("<\"a\\\"@example.org>", 0, SYN),
    ERR("<\"a\tb\"@example.org>", 0, SYN),
    ERR("<\"a\\\x01\"@example.org>", 0, SYN),
    ERR("<\"a\\\x7f\"@example.org>", 0, SYN),
    ERR("<\"a\x7f\"@example.org>", 0, SYN),
    ERR("<\"a\"", 0, SYN),
    ERR("<\"a\\", 0, SYN),
    ERR("<\"a\".\"b\"@example.org>", 0, SYN),
    ERR("<a.\"b\"@example.org>", 0, SYN),
    ERR("<\"a\"b@example.org>", 0, SYN),
    ERR("<\"a\" @example.org>", 0, SYN),

    /* source routes */
    ERR("<@a.b,u@c.d>", 0, SYN),
    ERR("<@a.b:@c.d:u@e.f>", 0, SYN),
    ERR("<@a.b;u@c.d>", 0, SYN),
    ERR("<@:u@c.d>", 0, SYN),
    ERR("<@a.b,:u@c.d>", 0, SYN),
    ERR("<,@a.b:u@c.d>", 0, SYN),
    ERR("<@[1.2.3.4]:u@c.d>", 0, SYN),
    ERR("<@a..b:u@c.d>", 0, SYN),
    ERR("<@a.b.:u@c.d>", 0, SYN),
    ERR("<@a.b, @c.d:u@e.f>", 0, SYN),
    ERR("<@a.b:>", 0, SYN),
    ERR("<@a.b:u@c.d", 0, SYN),

    /* address literals */
    ERR("<user@[192.168.0.256]>", 0, SYN),
    ERR("<user@[192.168.0]>", 0, SYN),
    ERR("<user@[192.168.0.1.5]>", 0, SYN),
    ERR("<user@[1234.1.1.1]>", 0, SYN),
    ERR("<user@[1.2.3.]>", 0, SYN),
    ERR("<user@[.1.2.3]>", 0, SYN),
    ERR("<user@[1..2.3]>", 0, SYN),
    ERR("<user@[ 1.2.3.4]>", 0, SYN),
    ERR("<user@[192.168.0.1>", 0, SYN),
    ERR("<user@[192.168.0.1", 0, SYN),
    ERR("<user@192.168.0.1]>", 0, SYN),
    ERR("<user@[]>", 0, SYN),
    ERR("<user@[1.2.3.4]x>", 0, SYN),
    ERR("<user@[1.2.3.4].org>", 0, SYN),
    ERR("<user@x[1.2.3.4]>", 0, SYN),
    ERR("<user@[IPv6:1:2:3:4:5:6:7]>", 0, SYN),
    ERR("<user@[IPv6:1:2:3:4:5:6:7:8:9]>", 0, SYN),
    ERR("<user@[IPv6:1:2:3:4:5:6:7::]>", 0, SYN), /* RFC 5321: "::" is >= 2 groups */
    ERR("<user@[IPv6:::1:2:3:4:5:6:7]>", 0, SYN),
    ERR("<user@[IPv6:1:2:3:4::5:6:7]>", 0, SYN),
    ERR("<user@[IPv6:1::2::3]>", 0, SYN),
    ERR("<user@[IPv6:12345::1]>", 0, SYN),
    ERR("<user@[IPv6:g::1]>", 0, SYN),
    ERR("<user@[IPv6:1:::2]>", 0, SYN),
    ERR("<user@[IPv6::1]>", 0, SYN),
    ERR("<user@[IPv6:1:]>", 0, SYN),
    ERR("<user@[IPv6:1::2:]>", 0, SYN),
    ERR("<user@[IPv6:]>", 0, SYN),
    ERR("<user@[IPv6]>", 0, SYN),
    ERR("<user@[IPv6:1:2:3:4:5::192.0.2.1]>", 0, SYN),
    ERR("<user@[IPv6:1:2:3:4:5:192.0.2.1]>", 0, SYN),
    ERR("<user@[IPv6:1:2:3:4:5:6:7:192.0.2.1]>", 0, SYN),
    ERR("<user@[IPv6:::ffff:192.0.2.256]>", 0, SYN),
    ERR("<user@[IPv6:::ffff:192.0.2]>", 0, SYN),
    ERR("<user@[IPv6:192.0.2.1]>", 0, SYN),
    ERR("<user@[IPv6::::1.2.3.4]>", 0, SYN),
    ERR("<user@[IPv6:1.2.3.4::]>", 0, SYN),
    ERR("<user@[IPv6:::1.2.3.4:1]>", 0, SYN),
    ERR("<user@[:abc]>", 0, SYN),
    ERR("<user@[tag-:abc]>", 0, SYN),
    ERR("<user@[tag:]>", 0, SYN),
    ERR("<user@[tag:a b]>", 0, SYN),
    ERR("<user@[tag:a\\b]>", 0, SYN),
    ERR("<user@[t_g:ab]>", 0, SYN),
    ERR("<user@[tag:a[b]>", 0, SYN),
    ERR("<user@[tag:a]b]>", 0, SYN),
};

static void test_path_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof path_cases / sizeof path_cases[0]; i++) {
        const struct path_case *c = &path_cases[i];
        size_t n = c->len ? c->len : strlen(c->in);
        struct smtp_path p;
        size_t consumed = 12345;
        memset(&p, 0xA5, sizeof p);
        enum smtp_path_err e = test_parse(c->in, n, c->flags, &p, &consumed);
        if (e != c->err)
            fail_msg("case %zu <%s> flags %u: err %d, want %d", i, c->in, c->flags, e, c->err);
        if (e != SMTP_PATH_OK) {
            static const struct smtp_path zero;
            if (consumed != 0 || memcmp(&p, &zero, sizeof p) != 0)
                fail_msg("case %zu <%s>: outputs not cleared on error", i, c->in);
            continue;
        }
        size_t want = c->consumed ? c->consumed : n;
        if (consumed != want)
            fail_msg("case %zu <%s>: consumed %zu, want %zu", i, c->in, consumed, want);
        if (strcmp(p.local, c->local) != 0)
            fail_msg("case %zu <%s>: local [%s], want [%s]", i, c->in, p.local, c->local);
        if (strcmp(p.domain, c->domain) != 0)
            fail_msg("case %zu <%s>: domain [%s], want [%s]", i, c->in, p.domain, c->domain);
        if (test_path_bits(&p) != c->bits)
            fail_msg("case %zu <%s>: bits %#x, want %#x", i, c->in, test_path_bits(&p), c->bits);
    }
}

/* A path must not be recognised before its closing '>': every proper prefix of an accepted
 * path fails, and each is parsed from an exact-size copy so over-reads show up under ASan. */
static void test_path_prefixes_fail(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof path_cases / sizeof path_cases[0]; i++) {
        const struct path_case *c = &path_cases[i];
        if (c->err != SMTP_PATH_OK)
            continue;
        size_t n = c->consumed ? c->consumed : (c->len ? c->len : strlen(c->in));
        for (size_t k = 0; k < n; k++) {
            struct smtp_path p;
            size_t consumed;
            if (test_parse(c->in, k, c->flags, &p, &consumed) == SMTP_PATH_OK)
                fail_msg("case %zu <%s>: prefix of %zu accepted", i, c->in, k);
        }
    }
}

/* Formatting an accepted path and parsing "<" formatted ">" gives the same mailbox back. */
static void test_path_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof path_cases / sizeof path_cases[0]; i++) {
        const struct path_case *c = &path_cases[i];
        if (c->err != SMTP_PATH_OK)
            continue;
        size_t n = c->len ? c->len : strlen(c->in);
        struct smtp_path p, q;
        size_t consumed;
        char buf[600];
        assert_int_equal(test_parse(c->in, n, c->flags, &p, &consumed), SMTP_PATH_OK);
        buf[0] = '<';
        size_t f = smtp_path_format(&p, buf + 1, sizeof buf - 2);
        assert_true(f < sizeof buf - 3);
        buf[1 + f] = '>';
        buf[2 + f] = 0; /* for the message only; the parser gets f + 2 bytes */
        if (test_parse(buf, f + 2, c->flags, &q, &consumed) != SMTP_PATH_OK)
            fail_msg("case %zu <%s>: formatted %s does not parse", i, c->in, buf);
        assert_int_equal(consumed, f + 2);
        assert_string_equal(p.local, q.local);
        assert_string_equal(p.domain, q.domain);
        assert_int_equal(p.null, q.null);
        assert_int_equal(p.postmaster, q.postmaster);
        assert_int_equal(p.literal, q.literal);
        assert_int_equal(p.utf8, q.utf8);
    }
}

/* Builds "<" local "@" domain ">" into buf from repeated characters. */
static size_t test_build(char *buf, size_t cap, const char *local, const char *domain)
{
    int n = snprintf(buf, cap, "<%s@%s>", local, domain);
    assert_true(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

static void test_fill(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = 0;
}

/* A domain of total length n made of 63-octet labels of 'a' (the last one shorter). */
static void test_domain_of(char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (i % 64 == 63) ? '.' : 'a';
    if (n > 0 && buf[n - 1] == '.')
        buf[n - 1] = 'b'; /* never end in a dot */
    buf[n] = 0;
}

static void test_expect(const char *in, size_t n, unsigned flags, enum smtp_path_err err,
                        size_t local_len, size_t domain_len)
{
    struct smtp_path p;
    size_t consumed;
    enum smtp_path_err e = test_parse(in, n, flags, &p, &consumed);
    if (e != err)
        fail_msg("len %zu <%.40s...>: err %d, want %d", n, in, e, err);
    if (err == SMTP_PATH_OK) {
        assert_int_equal(consumed, n);
        assert_int_equal(strlen(p.local), local_len);
        assert_int_equal(strlen(p.domain), domain_len);
    } else {
        assert_int_equal(consumed, 0);
    }
}

static void test_path_limits(void **state)
{
    (void)state;
    char local[300], domain[300], path[700];
    size_t n;

    /* local part: 64 octets as written */
    test_fill(local, 'a', 64);
    n = test_build(path, sizeof path, local, "example.org");
    test_expect(path, n, 0, SMTP_PATH_OK, 64, 11);
    test_fill(local, 'a', 65);
    n = test_build(path, sizeof path, local, "example.org");
    test_expect(path, n, 0, SMTP_PATH_TOO_LONG, 0, 0);
    test_fill(local, 'a', 200);
    n = test_build(path, sizeof path, local, "example.org");
    test_expect(path, n, R | P | U, SMTP_PATH_TOO_LONG, 0, 0);

    /* quoted: the quotes and backslashes count */
    local[0] = '"';
    test_fill(local + 1, 'a', 62);
    strcat(local, "\"");
    n = test_build(path, sizeof path, local, "example.org");
    test_expect(path, n, 0, SMTP_PATH_OK, 62, 11);
    local[0] = '"';
    test_fill(local + 1, 'a', 63);
    strcat(local, "\"");
    n = test_build(path, sizeof path, local, "example.org");
    test_expect(path, n, 0, SMTP_PATH_TOO_LONG, 0, 0);
    local[0] = '"';
    for (size_t i = 0; i < 31; i++)
        memcpy(local + 1 + 2 * i, "\\a", 2);
    strcpy(local + 63, "\"");
    n = test_build(path, sizeof path, local, "example.org");
    test_expect(path, n, 0, SMTP_PATH_OK, 31, 11);
    local[0] = '"';
    for (size_t i = 0; i < 32; i++)
        memcpy(local + 1 + 2 * i, "\\a", 2);
    strcpy(local + 65, "\"");
    n = test_build(path, sizeof path, local, "example.org");
    test_expect(path, n, 0, SMTP_PATH_TOO_LONG, 0, 0);

    /* UTF-8 limits are in octets: 32 x "é" is 64 octets */
    local[0] = 0;
    for (int i = 0; i < 32; i++)
        strcat(local, "é");
    n = test_build(path, sizeof path, local, "example.org");
    test_expect(path, n, U, SMTP_PATH_OK, 64, 11);
    test_expect(path, n, 0, SMTP_PATH_NEEDS_UTF8, 0, 0);
    strcat(local, "é");
    n = test_build(path, sizeof path, local, "example.org");
    test_expect(path, n, U, SMTP_PATH_TOO_LONG, 0, 0);
    test_expect(path, n, 0, SMTP_PATH_NEEDS_UTF8, 0, 0); /* 8-bit outranks the length */

    /* whole path: 256 including the brackets */
    test_domain_of(domain, 252);
    n = test_build(path, sizeof path, "u", domain);
    assert_int_equal(n, 256);
    test_expect(path, n, 0, SMTP_PATH_OK, 1, 252);
    test_domain_of(domain, 253);
    n = test_build(path, sizeof path, "u", domain);
    test_expect(path, n, 0, SMTP_PATH_TOO_LONG, 0, 0);
    test_fill(local, 'a', 64);
    test_domain_of(domain, 189);
    n = test_build(path, sizeof path, local, domain);
    test_expect(path, n, 0, SMTP_PATH_OK, 64, 189);
    test_domain_of(domain, 190);
    n = test_build(path, sizeof path, local, domain);
    test_expect(path, n, 0, SMTP_PATH_TOO_LONG, 0, 0);

    /* domain: 255 (reachable only past the path limit, so TOO_LONG either way) */
    test_domain_of(domain, 255);
    n = test_build(path, sizeof path, "u", domain);
    test_expect(path, n, 0, SMTP_PATH_TOO_LONG, 0, 0);
    test_domain_of(domain, 280);
    n = test_build(path, sizeof path, "u", domain);
    test_expect(path, n, 0, SMTP_PATH_TOO_LONG, 0, 0);

    /* a label over 63 octets is a syntax error, not a size limit */
    test_fill(domain, 'a', 63);
    strcat(domain, ".org");
    n = test_build(path, sizeof path, "u", domain);
    test_expect(path, n, 0, SMTP_PATH_OK, 1, 67);
    test_fill(domain, 'a', 64);
    strcat(domain, ".org");
    n = test_build(path, sizeof path, "u", domain);
    test_expect(path, n, 0, SMTP_PATH_SYNTAX, 0, 0);

    /* the dropped source route still counts towards the path length */
    strcpy(path, "<@");
    test_domain_of(path + 2, 244);
    strcat(path, ":u@ex.org>");
    n = strlen(path);
    assert_int_equal(n, 256);
    test_expect(path, n, 0, SMTP_PATH_OK, 1, 6);
    strcpy(path, "<@");
    test_domain_of(path + 2, 245);
    strcat(path, ":u@ex.org>");
    n = strlen(path);
    test_expect(path, n, 0, SMTP_PATH_TOO_LONG, 0, 0);

    /* an over-long literal */
    strcpy(domain, "[x:");
    test_fill(domain + 3, 'a', 251);
    strcat(domain, "]");
    n = test_build(path, sizeof path, "u", domain);
    test_expect(path, n, 0, SMTP_PATH_TOO_LONG, 0, 0);

    /* syntax errors in over-long input are still syntax errors */
    test_fill(local, 'a', 200);
    local[100] = ' ';
    n = test_build(path, sizeof path, local, "example.org");
    test_expect(path, n, 0, SMTP_PATH_SYNTAX, 0, 0);
}

/* Input far beyond any limit, with and without a closing bracket. */
static void test_path_huge(void **state)
{
    (void)state;
    size_t n = 100000;
    char *buf = malloc(n);
    assert_non_null(buf);
    buf[0] = '<';
    memset(buf + 1, 'a', n - 1);
    test_expect(buf, n, U, SMTP_PATH_SYNTAX, 0, 0);
    memcpy(buf + n - 4, "@x>", 3);
    test_expect(buf, n - 1, U, SMTP_PATH_TOO_LONG, 0, 0);
    buf[1] = '"';
    buf[n - 5] = '"';
    test_expect(buf, n - 1, 0, SMTP_PATH_TOO_LONG, 0, 0);
    free(buf);
}

static void test_path_null_outputs(void **state)
{
    (void)state;
    assert_int_equal(smtp_parse_path("<a@b>", 5, 0, NULL, NULL), SMTP_PATH_OK);
    assert_int_equal(smtp_parse_path("<a@b", 4, 0, NULL, NULL), SMTP_PATH_SYNTAX);
    assert_int_equal(smtp_parse_path(NULL, 0, R, NULL, NULL), SMTP_PATH_SYNTAX);
}

struct domain_case {
    const char *in;
    bool utf8;
    bool valid;
};

static const struct domain_case domain_cases[] = {
    {"example.org", false, true},
    {"a", false, true},
    {"A", false, true},
    {"0", false, true},
    {"a-b.c", false, true},
    {"a--b.c", false, true},
    {"xn--bcher-kva.example", false, true},
    {"1.2.3.4", false, true},
    {"EXAMPLE.org", false, true},
    {"mail1.example-2.org", false, true},
    {"example.org", true, true},
    {"bücher.example", true, true},
    {"例子.广告", true, true},
    {"bücher.example", false, false},
    {"", false, false},
    {"", true, false},
    {".", false, false},
    {"example.org.", false, false},
    {"example.org.", true, false},
    {".example.org", false, false},
    {"a..b", false, false},
    {"-a.b", false, false},
    {"a-.b", false, false},
    {"a.-b", false, false},
    {"a.b-", false, false},
    {"a_b.org", false, false},
    {"a b.org", false, false},
    {"a@b.org", false, false},
    {"[1.2.3.4]", false, false},
    {"bü-.example", true, false},
    {"-bü.example", true, false},
    {"b\xC3.example", true, false},
    {"b\xC0\xAF.example", true, false},
    {"b\xED\xA0\x80.example", true, false},
    {"b\xC2\x85.example", true, false},
    {"b\x7f.example", true, false},
};

static void test_domain_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof domain_cases / sizeof domain_cases[0]; i++) {
        const struct domain_case *c = &domain_cases[i];
        size_t n = strlen(c->in);
        char *d = test_dup_exact(c->in, n);
        if (smtp_valid_domain(d, n, c->utf8) != c->valid)
            fail_msg("domain %zu [%s] utf8=%d: want %d", i, c->in, c->utf8, c->valid);
        free(d);
    }
}

static void test_domain_limits(void **state)
{
    (void)state;
    char buf[400];
    char *d;

    assert_false(smtp_valid_domain("a\0b", 3, false));
    assert_true(smtp_valid_domain("example.orgX", 11, false)); /* only len bytes count */
    assert_false(smtp_valid_domain(NULL, 0, true));

    test_fill(buf, 'a', 63);
    assert_true(smtp_valid_domain(buf, 63, false));
    test_fill(buf, 'a', 64);
    assert_false(smtp_valid_domain(buf, 64, false));

    /* 4 x 63 + 3 dots = 255 */
    for (size_t i = 0; i < 255; i++)
        buf[i] = (i % 64 == 63) ? '.' : 'a';
    d = test_dup_exact(buf, 255);
    assert_true(smtp_valid_domain(d, 255, false));
    free(d);
    memcpy(buf + 255, ".a", 2);
    d = test_dup_exact(buf, 257);
    assert_false(smtp_valid_domain(d, 257, false));
    free(d);

    /* U-label limits are in octets: 31 x "é" + "a" = 63 octets */
    buf[0] = 0;
    for (int i = 0; i < 31; i++)
        strcat(buf, "é");
    strcat(buf, "a");
    assert_int_equal(strlen(buf), 63);
    assert_true(smtp_valid_domain(buf, 63, true));
    strcat(buf, "b");
    assert_false(smtp_valid_domain(buf, 64, true));
}

struct literal_case {
    const char *in;
    bool valid;
};

static const struct literal_case literal_cases[] = {
    {"[192.168.0.1]", true},
    {"[0.0.0.0]", true},
    {"[255.255.255.255]", true},
    {"[01.1.001.0]", true},
    {"[IPv6:2001:db8:0:0:0:0:0:1]", true},
    {"[IPv6:2001:db8::1]", true},
    {"[IPv6:::]", true},
    {"[IPv6:::1]", true},
    {"[IPv6:1::]", true},
    {"[IPv6:1:2:3:4:5:6::]", true},
    {"[IPv6:::1:2:3:4:5:6]", true},
    {"[IPv6::1:2:3:4:5:6]", false}, /* "IPv6:" takes one colon */
    {"[IPv6:1:2:3::4:5:6]", true},
    {"[IPv6:1:2:3:4:5:6:1.2.3.4]", true},
    {"[IPv6:::1.2.3.4]", true},
    {"[IPv6:1:2:3:4::1.2.3.4]", true},
    {"[IPv6:::1:2:3:4:1.2.3.4]", true},
    {"[IPv6:1:2::3:4:1.2.3.4]", true},
    {"[ipv6:ABCD:EF01::]", true},
    {"[x:y]", true},
    {"[x-y:!\"#Z^~]", true},
    {"[1:a]", true},
    {"[tag:a:b]", true},
    {"", false},
    {"[", false},
    {"[]", false},
    {"1.2.3.4", false},
    {"[1.2.3.4", false},
    {"1.2.3.4]", false},
    {"[1.2.3.4]]", false},
    {"[256.1.1.1]", false},
    {"[1.2.3]", false},
    {"[1.2.3.4.5]", false},
    {"[0001.2.3.4]", false},
    {"[1.2.3.-4]", false},
    {"[+1.2.3.4]", false},
    {"[IPv6:1:2:3:4:5:6:7:8]x", false},
    {"[IPv6:1:2:3:4:5:6:7]", false},
    {"[IPv6:1:2:3:4:5:6:7::]", false},
    {"[IPv6:::1:2:3:4:5:6:7]", false},
    {"[IPv6:1:2:3:4:5::1.2.3.4]", false},
    {"[IPv6:::1:2:3:4:5:1.2.3.4]", false},
    {"[IPv6:1:2:3:4:5:1.2.3.4]", false},
    {"[IPv6:1::2::3]", false},
    {"[IPv6:1:::3]", false},
    {"[IPv6:::::]", false},
    {"[IPv6:12345::]", false},
    {"[IPv6:x::]", false},
    {"[IPv6:1::1.2.3]", false},
    {"[IPv6:1::1.2.3.4.5]", false},
    {"[IPv6:1.2.3.4]", false},
    {"[IPv6:]", false},
    {"[IPv6: ::1]", false},
    {"[:x]", false},
    {"[-:x]", false},
    {"[x-:y]", false},
    {"[x_y:z]", false},
    {"[x:]", false},
    {"[x:a b]", false},
    {"[x:a[b]", false},
    {"[x:a\\b]", false},
    {"[x:a\x7f]", false},
    {"[x:\xC3\xA9]", false},
};

static void test_literal_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof literal_cases / sizeof literal_cases[0]; i++) {
        const struct literal_case *c = &literal_cases[i];
        size_t n = strlen(c->in);
        char *d = test_dup_exact(c->in, n);
        if (smtp_valid_address_literal(d, n) != c->valid)
            fail_msg("literal %zu [%s]: want %d", i, c->in, c->valid);
        free(d);
    }
}

static void test_literal_limits(void **state)
{
    (void)state;
    char buf[300];
    strcpy(buf, "[x:");
    test_fill(buf + 3, 'a', 251);
    strcat(buf, "]");
    assert_int_equal(strlen(buf), 255);
    assert_true(smtp_valid_address_literal(buf, 255));
    strcpy(buf + 254, "a]");
    assert_false(smtp_valid_address_literal(buf, 256));
    assert_false(smtp_valid_address_literal("[1.2.3.4]", 8));
    assert_false(smtp_valid_address_literal(NULL, 0));
}

static void test_helo(void **state)
{
    (void)state;
    static const struct literal_case cases[] = {
        {"mail.example.org", true}, {"localhost", true},
        {"192.0.2.1", true},        {"[192.0.2.1]", true},
        {"[IPv6:::1]", true},       {"[IPv6:2001:db8::1]", true},
        {"[x-tag:y]", true},        {"", false},
        {"bücher.example", false},  {"example.org.", false},
        {"mail_1.example", false},  {"foo bar", false},
        {"[192.0.2.1", false},      {"[192.0.2.256]", false},
        {"<example.org>", false},   {"[IPv6:1:2:3:4:5:6:7]", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].in);
        char *d = test_dup_exact(cases[i].in, n);
        if (smtp_valid_helo(d, n) != cases[i].valid)
            fail_msg("helo %zu [%s]: want %d", i, cases[i].in, cases[i].valid);
        free(d);
    }
}

struct param_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    bool utf8;
    size_t max;
    int want;
    const char *params[4]; /* "KEY" or "KEY=VALUE" for each expected parameter */
};

static const struct param_case param_cases[] = {
    {"", 0, false, 4, 0, {NULL}},
    {"   ", 0, false, 4, 0, {NULL}},
    {"SIZE=1000", 0, false, 4, 1, {"SIZE=1000"}},
    {"SIZE=1000 BODY=8BITMIME", 0, false, 4, 2, {"SIZE=1000", "BODY=8BITMIME"}},
    {"  SIZE=1000   BODY=8BITMIME  ", 0, false, 4, 2, {"SIZE=1000", "BODY=8BITMIME"}},
    {"SMTPUTF8", 0, false, 4, 1, {"SMTPUTF8"}},
    {"SIZE=1 SMTPUTF8 BODY=7BIT", 0, false, 4, 3, {"SIZE=1", "SMTPUTF8", "BODY=7BIT"}},
    {"ENVID=QQ314159 RET=HDRS", 0, false, 4, 2, {"ENVID=QQ314159", "RET=HDRS"}},
    {"NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user+2Bx@example.org",
     0,
     false,
     4,
     2,
     {"NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;user+2Bx@example.org"}},
    {"X-FOO=bar", 0, false, 4, 1, {"X-FOO=bar"}},
    {"1KEY=v", 0, false, 4, 1, {"1KEY=v"}},
    {"KEY-=v", 0, false, 4, 1, {"KEY-=v"}},
    {"AUTH=<>", 0, false, 4, 1, {"AUTH=<>"}},
    {"K=!~", 0, false, 4, 1, {"K=!~"}},
    {"K=\xC3\xA9", 0, true, 4, 1, {"K=\xC3\xA9"}},
    {"K=a\xF0\x9F\x98\x80z", 0, true, 4, 1, {"K=a\xF0\x9F\x98\x80z"}},
    {"A B C", 0, false, 3, 3, {"A", "B", "C"}},
    {"A B C", 0, false, 2, -2, {NULL}},
    {"A", 0, false, 0, -2, {NULL}},
    {"", 0, false, 0, 0, {NULL}},
    {"A B =", 0, false, 2, -1, {NULL}},
    {"-KEY=v", 0, false, 4, -1, {NULL}},
    {"KEY=", 0, false, 4, -1, {NULL}},
    {"KEY= x", 0, false, 4, -1, {NULL}},
    {"=v", 0, false, 4, -1, {NULL}},
    {"KEY=a=b", 0, false, 4, -1, {NULL}},
    {"KEY==", 0, false, 4, -1, {NULL}},
    {"KE_Y=v", 0, false, 4, -1, {NULL}},
    {"KEY=v\t", 0, false, 4, -1, {NULL}},
    {"KEY\t=v", 0, false, 4, -1, {NULL}},
    {"\tKEY=v", 0, false, 4, -1, {NULL}},
    {"KEY=\x7f", 0, false, 4, -1, {NULL}},
    {"KEY=v\r\n", 0, false, 4, -1, {NULL}},
    {"KEY=\xC3\xA9", 0, false, 4, -1, {NULL}},
    {"KEY=\xC3", 0, true, 4, -1, {NULL}},
    {"KEY=\xC3 X", 0, true, 4, -1, {NULL}},
    {"KEY=\xED\xA0\x80", 0, true, 4, -1, {NULL}},
    {"KEY=\xC0\xAF", 0, true, 4, -1, {NULL}},
    {"K\xC3\xA9Y=v", 0, true, 4, -1, {NULL}},
    {"KEY=a\0b", 7, false, 4, -1, {NULL}},
};

static void test_params_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof param_cases / sizeof param_cases[0]; i++) {
        const struct param_case *c = &param_cases[i];
        size_t n = c->len ? c->len : strlen(c->in);
        struct smtp_param out[4];
        char *d = test_dup_exact(c->in, n);
        int got = smtp_parse_params(d, n, c->utf8, out, c->max);
        if (got != c->want)
            fail_msg("params %zu [%s]: got %d, want %d", i, c->in, got, c->want);
        for (int k = 0; k < got; k++) {
            char text[128];
            assert_true(out[k].key >= d && out[k].key + out[k].keylen <= d + n);
            if (out[k].value == NULL) {
                snprintf(text, sizeof text, "%.*s", (int)out[k].keylen, out[k].key);
            } else {
                assert_true(out[k].valuelen > 0);
                assert_true(out[k].value >= d && out[k].value + out[k].valuelen <= d + n);
                snprintf(text, sizeof text, "%.*s=%.*s", (int)out[k].keylen, out[k].key,
                         (int)out[k].valuelen, out[k].value);
            }
            if (strcmp(text, c->params[k]) != 0)
                fail_msg("params %zu [%s] #%d: [%s], want [%s]", i, c->in, k, text, c->params[k]);
        }
        free(d);
    }
}

static void test_params_range(void **state)
{
    (void)state;
    struct smtp_param out[2];
    /* only len bytes are looked at: the '\t' after them is not part of the input */
    assert_int_equal(smtp_parse_params("SIZE=10\t", 7, false, out, 2), 1);
    assert_int_equal(out[0].valuelen, 2);
    assert_int_equal(smtp_parse_params(NULL, 0, false, out, 2), 0);
    assert_int_equal(smtp_parse_params("A B", 3, false, NULL, 0), -2);
}

static void test_format(void **state)
{
    (void)state;
    struct smtp_path p;
    char buf[600];

    memset(&p, 0, sizeof p);
    p.null = true;
    memset(buf, 'x', sizeof buf);
    assert_int_equal(smtp_path_format(&p, buf, sizeof buf), 0);
    assert_string_equal(buf, "");

    memset(&p, 0, sizeof p);
    p.postmaster = true;
    strcpy(p.local, "postmaster");
    assert_int_equal(smtp_path_format(&p, buf, sizeof buf), 10);
    assert_string_equal(buf, "postmaster");
    strcpy(p.domain, "example.org");
    assert_int_equal(smtp_path_format(&p, buf, sizeof buf), 22);
    assert_string_equal(buf, "postmaster@example.org");

    static const struct {
        const char *local, *domain, *want;
    } cases[] = {
        {"user", "example.org", "user@example.org"},
        {"first.last", "example.org", "first.last@example.org"},
        {"user%other", "example.org", "user%other@example.org"},
        {"Fred Bloggs", "example.com", "\"Fred Bloggs\"@example.com"},
        {"Abc@def", "example.com", "\"Abc@def\"@example.com"},
        {"a\"b\\c", "x", "\"a\\\"b\\\\c\"@x"},
        {"", "x", "\"\"@x"},
        {"a..b", "x", "\"a..b\"@x"},
        {".a", "x", "\".a\"@x"},
        {"a.", "x", "\"a.\"@x"},
        {"a(b)", "x", "\"a(b)\"@x"},
        {"jöran", "bücher.example", "jöran@bücher.example"},
        {"u", "[1.2.3.4]", "u@[1.2.3.4]"},
        {"u", "[IPv6:::1]", "u@[IPv6:::1]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&p, 0, sizeof p);
        strcpy(p.local, cases[i].local);
        strcpy(p.domain, cases[i].domain);
        size_t n = smtp_path_format(&p, buf, sizeof buf);
        assert_string_equal(buf, cases[i].want);
        assert_int_equal(n, strlen(cases[i].want));
    }

    /* truncation: like snprintf, the full length comes back and the output stays terminated */
    memset(&p, 0, sizeof p);
    strcpy(p.local, "user");
    strcpy(p.domain, "example.org");
    memset(buf, 'x', sizeof buf);
    assert_int_equal(smtp_path_format(&p, buf, 5), 16);
    assert_string_equal(buf, "user");
    assert_int_equal(buf[5], 'x');
    assert_int_equal(smtp_path_format(&p, buf, 1), 16);
    assert_string_equal(buf, "");
    buf[0] = 'x';
    assert_int_equal(smtp_path_format(&p, buf, 0), 16);
    assert_int_equal(buf[0], 'x');
    assert_int_equal(smtp_path_format(&p, buf, 17), 16);
    assert_string_equal(buf, "user@example.org");
}

/* Paths whose canonical form differs from how they were written. */
static void test_format_canonical(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        unsigned flags;
        const char *want;
    } cases[] = {
        {"<\"abc\"@x>", 0, "abc@x"},
        {"<\"\\a\\b\"@x>", 0, "ab@x"},
        {"<\"a\\ b\"@x>", 0, "\"a b\"@x"},
        {"<\"a\\\\b\"@x>", 0, "\"a\\\\b\"@x"},
        {"<@a,@b:c@d>", 0, "c@d"},
        {"<POSTMASTER>", P, "postmaster"},
        {"<>", R, ""},
        {"<\"ö\"@x>", U, "ö@x"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct smtp_path p;
        size_t consumed;
        char buf[300];
        size_t n = strlen(cases[i].in);
        assert_int_equal(test_parse(cases[i].in, n, cases[i].flags, &p, &consumed), SMTP_PATH_OK);
        assert_int_equal(smtp_path_format(&p, buf, sizeof buf), strlen(cases[i].want));
        assert_string_equal(buf, cases[i].want);
    }
}

static void test_word_eq(void **state)
{
    (void)state;
    assert_true(smtp_word_eq("MAIL", 4, "mail"));
    assert_true(smtp_word_eq("mail", 4, "MAIL"));
    assert_true(smtp_word_eq("MaIl", 4, "mAiL"));
    assert_true(smtp_word_eq("FROM:", 4, "from"));
    assert_true(smtp_word_eq("", 0, ""));
    assert_true(smtp_word_eq("8BITMIME", 8, "8bitmime"));
    assert_false(smtp_word_eq("MAI", 3, "mail"));
    assert_false(smtp_word_eq("MAILX", 5, "mail"));
    assert_false(smtp_word_eq("", 0, "mail"));
    assert_false(smtp_word_eq("M", 1, ""));
    assert_false(smtp_word_eq("M\0IL", 4, "m"));
    assert_false(smtp_word_eq("\xE9", 1, "\xC9")); /* ASCII folding only */
    assert_false(smtp_word_eq("[", 1, "{"));       /* not a 0x20 flip */
    assert_false(smtp_word_eq("@", 1, "`"));
    char *d = test_dup_exact("RCPT", 4);
    assert_true(smtp_word_eq(d, 4, "rcpt"));
    assert_false(smtp_word_eq(d, 4, "rcpt2"));
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_table),
        cmocka_unit_test(test_path_prefixes_fail),
        cmocka_unit_test(test_path_round_trip),
        cmocka_unit_test(test_path_limits),
        cmocka_unit_test(test_path_huge),
        cmocka_unit_test(test_path_null_outputs),
        cmocka_unit_test(test_domain_table),
        cmocka_unit_test(test_domain_limits),
        cmocka_unit_test(test_literal_table),
        cmocka_unit_test(test_literal_limits),
        cmocka_unit_test(test_helo),
        cmocka_unit_test(test_params_table),
        cmocka_unit_test(test_params_range),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_canonical),
        cmocka_unit_test(test_word_eq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* UTF-8 well-formedness (RFC 3629), the one definition the grammar, the header parser, the audit
 * records and the CLI all use: no overlong forms, no surrogates, nothing past U+10FFFF. */
#ifndef TERN_UTIL_UTF8_H
#define TERN_UTIL_UTF8_H

#include <stddef.h>

/* Length (1..4) of the well-formed UTF-8 character at s, n > 0 bytes being readable, or 0
 * when s does not start one. ASCII bytes are characters of length 1. */
size_t utf8_char_len(const unsigned char *s, size_t n);

#endif

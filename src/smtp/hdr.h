/* The addresses of an RFC 5322 From: field, for checking that a submitting user writes only as
 * itself: RFC 5322 3.4 mailbox-list with the obsolete forms real MUAs still send (4.4), and the
 * RFC 6532 UTF-8 extensions. Pure; no allocation, no recursion. */
#ifndef TERN_SMTP_HDR_H
#define TERN_SMTP_HDR_H

#include <stddef.h>

/* RFC 5321 4.5.3.1: local part 64 + "@" + domain 255. A longer address is refused, never
 * truncated: a truncated address could compare equal to somebody's real one. */
#define HDR_ADDR_MAX 320

/* value: the field body after "From:" (may contain CRLF + WSP folding), len bytes, not
 * NUL-terminated. Writes the addr-specs (local@domain, local part unquoted like grammar.c does,
 * domain as written with CFWS removed) into out, at most max (out may be NULL when max is 0).
 * Because the local part is unquoted it may itself contain '@': split at the LAST '@'; the domain
 * never contains one. Returns the number of mailboxes found (may exceed max), or -1 when the field
 * is not a valid mailbox-list (RFC 5322 3.4; also accepted: obs-phrase with '.', a missing
 * display name, comments anywhere CFWS is allowed nested up to depth 8, quoted-pairs, obs-route
 * in angle-addr, obs-local-part and obs-domain with CFWS around the dots, and empty list
 * elements; encoded-words are just atoms). A group (name: a, b;) is -1, as is an address over
 * HDR_ADDR_MAX or one that is not well-formed UTF-8. Octets >= 0x80 are accepted anywhere text is
 * (display names, comments). On -1 every out[i] for i < max is the empty string. Never reads past
 * len; linear time. */
int hdr_from_addresses(const char *value, size_t len, char (*out)[HDR_ADDR_MAX + 1], size_t max);

#endif

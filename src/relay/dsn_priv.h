/* What the report composer's files share (dsn.c assembles the report, dsn_text.c makes hostile
 * text harmless and lays it out in lines, dsn_orig.c copies the original message): a growing
 * byte buffer and the writers. Not for use outside src/relay/dsn*.c. */
#ifndef TERN_RELAY_DSN_PRIV_H
#define TERN_RELAY_DSN_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define DSN_SOFT_LINE 78  /* RFC 5322 2.1.1: SHOULD, without the CRLF */
#define DSN_HARD_LINE 998 /* RFC 5322 2.1.1: MUST */
#define DSN_DATE_MAX 40

/* A byte buffer that remembers a failed allocation instead of reporting each one: the caller
 * appends freely and checks oom once, at the end. p is NUL-terminated whenever n > 0. */
struct dbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

void db_put(struct dbuf *b, const void *s, size_t n);
void db_puts(struct dbuf *b, const char *s);
void db_printf(struct dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void db_free(struct dbuf *b);

/* s (hostile, NUL-terminated, may be NULL) as one line of printable ASCII for a status field:
 * each run of CR, LF and HTAB one space, each other control and each non-ASCII character
 * (or stray 8-bit byte) '?', white space at either end dropped, at most max octets of s read
 * ("..." added when there were more). Appended to out. */
void dsn_clean_ascii(struct dbuf *out, const char *s, size_t max);
/* The same for UTF-8 text (the human-readable part): well-formed characters are kept, but
 * C1 controls, as terminals obey them, become '?'. */
void dsn_clean_utf8(struct dbuf *out, const char *s, size_t max);

/* Appends s (n octets, one line's worth: no CR, LF or NUL) after col octets already on the
 * current line, breaking before a space where a line would pass 78 octets, and inside a word
 * (never inside a UTF-8 character) only where one would pass 998. Each new line starts with
 * lead, one SP for a folded header field (RFC 5322 folding, undone by unfolding); a break
 * takes the place of one space. Ends without CRLF. */
void dsn_wrap(struct dbuf *b, size_t col, const char *s, size_t n, const char *lead);
/* "Name: " then s wrapped as a folded field, then CRLF. */
void dsn_field(struct dbuf *b, const char *name, const char *s, size_t n);

/* RFC 5322 date-time of t in UTC, locale-free; -1 when t is out of gmtime's range. */
int dsn_date(char out[DSN_DATE_MAX], time_t t);

/* Is s all printable ASCII (SP to '~')? */
bool dsn_printable(const char *s);
/* An address-type and address for Final-Recipient or Original-Recipient (RFC 3464 2.3.1,
 * 2.3.2): "rfc822; ADDR" when ADDR is ASCII, else RFC 6533's "utf-8; " with the
 * ASCII-only utf-8-addr-xtext form message/delivery-status requires (\x{HEX} for each
 * non-ASCII character and for SP, '+', '=' and '\'). Controls and broken UTF-8 become '?'. */
void dsn_addr_value(struct dbuf *b, const char *addr);
/* ORCPT as given ("type;address" or a bare address) as such a value. */
void dsn_orcpt_value(struct dbuf *b, const char *orcpt);

/* dsn_orig.c: the header section of the original (up to its first empty line) as CRLF lines
 * of at most 998 octets, each line's controls but HTAB and its malformed UTF-8 replaced by
 * '?', no more than max octets in all: the section is cut after the last line that fits
 * (*cut then). *eight when 8-bit (UTF-8, RFC 6532) text was kept. */
void dsn_orig_headers(struct dbuf *out, const char *orig, size_t len, size_t max, bool *cut,
                      bool *eight);
/* The whole original the same way, its body kept byte for byte but for NUL and bare CR ('?'),
 * LF made CRLF and lines over 998 octets broken: what 8bit transfer encoding allows. */
void dsn_orig_full(struct dbuf *out, const char *orig, size_t len, bool *eight);

#endif

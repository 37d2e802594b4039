/* What the composer's files share (compose.c writes the header fields, compose_mime.c the
 * body, compose_enc.c encodes, compose_raw.c checks --raw and envelope addresses): a growing
 * byte buffer, a header-field writer that folds as it goes, and the encoders. Not for use
 * outside src/cli/compose*.c. */
#ifndef TERN_CLI_COMPOSE_PRIV_H
#define TERN_CLI_COMPOSE_PRIV_H

#include <stdbool.h>
#include <stddef.h>

#include "cli/compose.h"

#define COMPOSE_SOFT_LINE 78  /* RFC 5322 2.1.1: SHOULD, without the CRLF */
#define COMPOSE_HARD_LINE 998 /* RFC 5322 2.1.1: MUST */

/* A byte buffer that remembers a failed allocation instead of reporting each one: the caller
 * appends freely and checks oom once, at the end. p is NUL-terminated whenever n > 0. */
struct cbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

void cb_put(struct cbuf *b, const void *s, size_t n);
void cb_puts(struct cbuf *b, const char *s);
void cb_free(struct cbuf *b);

/* One header field being written: "Name:" then tokens, each with the white space before it. A
 * token goes on a new line (CRLF inserted before its white space, which is RFC 5322 folding:
 * unfolding gives back the same bytes) when it would pass 78 columns. over is set when a line
 * passes 998 all the same. */
struct fold {
    struct cbuf *b;
    size_t col;
    bool content; /* a token is on the current line (not just the field name) */
    bool over;
};

void fold_start(struct fold *f, struct cbuf *b, const char *name);
/* ws (wsn bytes of SP/HTAB, may be 0: then never folded before) then tok. */
void fold_token(struct fold *f, const char *ws, size_t wsn, const char *tok, size_t n);
/* s split at its runs of white space, each word with the run before it (" " before the first
 * when s does not start with one). */
void fold_words(struct fold *f, const char *s, size_t n);
/* s (valid UTF-8) as RFC 2047 encoded-words in charset utf-8, Q unless B is much shorter,
 * each at most 75 characters, never splitting a character, the first after ws. phrase: the
 * words stand in a display name, where Q may leave fewer characters as they are (5(3)). */
void fold_encoded(struct fold *f, const char *ws, size_t wsn, const char *s, size_t n, bool phrase);
/* "; name=value": a quoted-string when value is printable ASCII, else RFC 2231 utf-8''%XX; cut
 * into RFC 2231 continuations (name*0, name*1, ...) when too long for one line. */
void fold_param(struct fold *f, const char *name, const char *value);
/* Ends the field with CRLF; false when a line is over 998 octets. */
bool fold_end(struct fold *f);

/* Appends s as base64 lines of 76 characters, CRLF between them, none after the last. */
void enc_base64_lines(struct cbuf *b, const unsigned char *s, size_t n);
/* Appends s (CRLF line breaks; may hold bare CR, NUL, anything) as quoted-printable: CRLF stays
 * a line break, lines at most 76 characters with soft breaks. */
void enc_qp(struct cbuf *b, const unsigned char *s, size_t n);

/* Length of the valid UTF-8 character at s (n > 0 bytes left), 0 when there is none. */

/* Is s (n bytes) valid UTF-8 / all ASCII? */
bool enc_utf8_valid(const unsigned char *s, size_t n);
bool enc_ascii(const unsigned char *s, size_t n);

/* RFC 5322 atext (ASCII only) / ftext (printable ASCII but ':'). */
bool enc_atext(unsigned char c);
bool enc_ftext(unsigned char c);
/* Is s a dot-atom-text (RFC 5322 3.2.3), as a Message-ID's right side must be? */
bool enc_dot_atom(const char *s, size_t n);

/* compose.c: -1 and why when s (what names it in the reason) holds a line break or another
 * control but HTAB: octets that would end a header field or that none may hold. */
int compose_check_controls(const char *what, const char *s, char *err, size_t errlen);
#define COMPOSE_SIZE_TEXT 64
/* compose.c: "N octets", and from 1 MiB on " (M MiB)" after it, into buf; gives buf. */
const char *compose_size_text(char buf[COMPOSE_SIZE_TEXT], size_t n);
/* compose.c: compose_read without the reason: -1 with *over when f holds more than max octets
 * (*len then says how many were seen), else with errno. */
int compose_read_bounded(FILE *f, size_t max, char **data, size_t *len, bool *over);
/* compose.c: in's random source (or OpenSSL's) into buf. */
int compose_get_random(const struct compose_input *in, void *buf, size_t len, char *err,
                       size_t errlen);
/* compose_mime.c: everything from the body's limits to its encoding. Appends the MIME fields
 * of the message (after MIME-Version) to h and the body to b. */
int mime_build(const struct compose_input *in, struct cbuf *h, struct cbuf *b, char *err,
               size_t errlen);

#endif

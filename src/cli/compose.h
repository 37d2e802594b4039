/* The message `tern send` builds from its options (issue 7): an RFC 5322 header section (Date,
 * From, To, Cc, Subject, Message-ID, the user's extra fields, MIME-Version) over a text/plain
 * body, or a multipart/mixed one when files are attached, with CRLF line endings throughout.
 * Also the checks for --raw (a message the user wrote whole) and the envelope address of a
 * --from/--to as given. Pure: no I/O except reading the FILE*s handed in, no clock, no
 * randomness except through the source handed in, so every output can be tested byte for byte.
 * Lines starting with "." are left alone: dot-stuffing is the SMTP layer's.
 *
 * Every function returns 0, or -1 with the reason (what is wrong and what to do) in err, which
 * COMPOSE_ERR_MAX bytes always hold whole. */
#ifndef TERN_CLI_COMPOSE_H
#define TERN_CLI_COMPOSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "smtp/hdr.h"

/* Body plus attachments, before encoding: base64 makes the message a third larger than this. */
#define COMPOSE_MAX_DEFAULT ((size_t)50 * 1024 * 1024)
#define COMPOSE_ERR_MAX 512

/* Fills buf with len unpredictable bytes; 0, or -1 when it cannot. */
typedef int (*compose_random_fn)(void *ctx, void *buf, size_t len);

/* The production source: OpenSSL's RAND_bytes (ctx unused). */
int compose_random_openssl(void *ctx, void *buf, size_t len);

struct compose_attachment {
    const char *path; /* as given: its last component names the file, its extension its type */
    const char *name; /* the file name the recipient sees; NULL: the last component of path */
    const char *type; /* "type/subtype"; NULL: guessed from the extension (compose_guess_type) */
    const void *data; /* the bytes (len of them), or NULL and: */
    size_t len;
    FILE *file; /* read to its end, not closed */
};

struct compose_input {
    const char *from; /* one mailbox: "a@b", "Name <a@b>", "\"Doe, J\" <a@b>" */
    const char *const *to;
    size_t n_to;
    const char *const *cc;
    size_t n_cc;         /* with n_to 0 too, neither To nor Cc is written (Bcc-only mail) */
    const char *subject; /* UTF-8; NULL: no Subject field */
    /* "Name: value" each. The name is RFC 5322 ftext; the value printable ASCII or tab. Fields
     * this module writes itself are refused (From, To, Cc, Subject, Date, Message-ID,
     * MIME-Version, Content-*), as are Bcc (it would tell every recipient who else got the
     * mail) and Return-Path (the final server writes it); Sender, Reply-To, In-Reply-To and
     * References may appear once each, anything else (X-*, Keywords, ...) any number of times. */
    const char *const *headers;
    size_t n_headers;
    const void *body; /* body_len bytes, any octets; NULL: no text part (attachments only) */
    size_t body_len;
    /* NULL: us-ascii or utf-8 as the body is, else "unknown-8bit" (RFC 1428): the bytes go
     * through unchanged and the reader's program guesses. */
    const char *body_charset;
    const struct compose_attachment *attach;
    size_t n_attach;
    const char *host; /* right side of the Message-ID; NULL: the domain of the From address */
    time_t now;       /* for Date */
    long utc_offset;  /* seconds east of UTC (struct tm's tm_gmtoff), minutes kept */
    compose_random_fn random; /* Message-ID and boundary; NULL: compose_random_openssl */
    void *random_ctx;
    bool eight_bit;  /* the server offers 8BITMIME: a UTF-8 body may go as 8bit, not QP */
    size_t max_size; /* body + attachments, in octets; 0: COMPOSE_MAX_DEFAULT */
};

/* Builds the message into *out (malloc'd, *out_len octets, NUL after them; free() it). */
int compose_message(const struct compose_input *in, char **out, size_t *out_len, char *err,
                    size_t errlen);

/* For --raw: msg must start with a header section holding a From field and ending at an empty
 * line (or at the end: a message may have no body). Bare LF becomes CRLF, and a missing final
 * line break is added; NUL, bare CR and lines over 998 octets are refused, as is a message over
 * max_size octets (0: COMPOSE_MAX_DEFAULT). The result goes to *out as for compose_message. */
int compose_raw_check(const void *msg, size_t len, size_t max_size, char **out, size_t *out_len,
                      char *err, size_t errlen);

/* The address for MAIL FROM / RCPT TO of one mailbox as given to --from or --to:
 * "Bob <bob@example.org>" gives bob@example.org, a local part that is not a dot-string is
 * quoted again (RFC 5321 4.1.2). A list, a group or anything not a mailbox is refused. */
int compose_envelope_addr(const char *given, char out[HDR_ADDR_MAX + 1], char *err, size_t errlen);

/* Reads f to its end into *data (malloc'd, NUL after the *len octets); refuses more than max
 * octets. what names the file in the reason ("the body", "attachment report.pdf"). */
int compose_read(FILE *f, const char *what, size_t max, char **data, size_t *len, char *err,
                 size_t errlen);

/* The media type for a file name by its extension (pdf, png, jpg, ..., case ignored);
 * "application/octet-stream" when unknown. */
const char *compose_guess_type(const char *name);

#endif

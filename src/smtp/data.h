/* The message-data scanner: a byte-at-a-time state machine for the text after DATA (dot
 * transparency, RFC 5321 4.5.2) and for BDAT chunks (raw). It finds the end of data only at
 * <CRLF>.<CRLF>, flags bare CR and bare LF (never treated as line ends: that is what defeats SMTP
 * smuggling, CVE-2023-51766), enforces the 1000-octet line limit and the size limit, and counts
 * Received: header fields for loop detection. It keeps no more than one small header prefix. */
#ifndef TERN_SMTP_DATA_H
#define TERN_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_DATA_LINE_MAX 1000    /* octets including CRLF, RFC 5321 4.5.3.1.6 */
#define SMTP_DATA_MAX_RECEIVED 100 /* more Received: fields than this is a loop (RFC 5321 6.3) */
#define SMTP_DATA_FROM_MAX 1000    /* one From: field, folded lines included */
#define SMTP_DATA_MSGID_MAX 256    /* the Message-ID: field body kept for the audit log */

struct smtp_data {
    int state;
    bool raw;       /* BDAT: no dot transparency, no line rules */
    bool done;      /* <CRLF>.<CRLF> seen (text mode) */
    bool bare_crlf; /* a CR or LF not part of CRLF */
    bool line_too_long;
    bool too_big;   /* more than max_size octets */
    bool in_header; /* still in the header section */
    uint64_t max_size;
    uint64_t size; /* message octets after unstuffing */
    size_t line_len;
    size_t received; /* Received: fields in the header */
    char hdr[12];    /* the first octets of the current header line */
    size_t hdr_len;
    /* The From: field's body (folding kept), for checking who a submitting user writes as. */
    char from[SMTP_DATA_FROM_MAX];
    size_t from_len;
    bool from_overflow; /* longer than the buffer: cannot be checked */
    bool in_from;       /* the current header line is From: or its continuation */
    size_t nfrom;       /* From: fields seen */
    size_t nsender;     /* Sender: fields seen */
    /* The first Message-ID: field's body, unfolded and cut at SMTP_DATA_MSGID_MAX - 1 octets
     * (NUL-terminated; hostile like everything else in the message). */
    char msgid[SMTP_DATA_MSGID_MAX];
    size_t msgid_len;
    bool in_msgid;
    /* Set by the caller to stop the scan just before the empty line that ends the header
     * section (or, BDAT and text alike, before its CR), so that a field can be added there;
     * the scan then sets header_end and returns. Disarmed once it has fired. */
    bool stop_at_header_end;
    bool header_end;
    bool header_end_lf; /* the empty line is a bare LF (BDAT): fields there end in LF too */
};

/* Starts a message; raw for BDAT. The size count goes on across BDAT chunks. */
void smtp_data_init(struct smtp_data *d, bool raw, uint64_t max_size);

/* Scans in[0..n): writes the message octets to out (at most cap) and returns how many input
 * octets it consumed. It stops when out is full or (text mode) at the end of data, which it
 * consumes. Once too_big or line_too_long is set, octets are counted but no longer written. */
size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t n, char *out, size_t cap,
                      size_t *outlen);

/* Did the message break a rule? Then it must be refused at its end. */
bool smtp_data_failed(const struct smtp_data *d);

#endif

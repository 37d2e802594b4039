/* The SMTP client protocol core: the mirror of src/smtp/session.h, with no sockets, files, clocks
 * or threads. The caller queues commands (each becomes bytes to send and a reply expected), takes
 * the bytes to send, and feeds the server's bytes back; replies come out matched to commands in
 * the order sent, which is all PIPELINING needs, and classified positive / intermediate /
 * negative by the seeds' client table. Message data is queued dot-stuffed and with bare LF (and
 * bare CR) turned into CRLF. Also the EHLO capability parser. */
#ifndef TERN_CLIENT_CLIENT_H
#define TERN_CLIENT_CLIENT_H

#include "tern/client.h"

#include <stdbool.h>
#include <stddef.h>

/* Commands queued but not yet answered, at most: a pipelined transaction with this many
 * recipients is sent in groups. */
#define SMTPC_MAX_PENDING 1024
/* Longest command line libtern sends (RFC 5321 §4.5.3.1.4 says 512; AUTH responses go longer,
 * RFC 4954 §4 allows 12288 octets of base64). */
#define SMTPC_MAX_COMMAND 12288

struct smtpc;

/* The state of the message-data transform between chunks. */
struct smtpc_stuff {
    bool bol;   /* at the beginning of a line */
    bool cr;    /* the previous octet was a CR not yet known to be followed by LF */
    bool dots;  /* dot-stuff (DATA); false for BDAT */
    bool eight; /* an octet >= 0x80 was seen */
};

struct smtpc *smtpc_new(tern_transcript_fn *fn, void *arg);
void smtpc_free(struct smtpc *c);
/* A new connection: forgets pending commands, partial replies, output and errors. */
void smtpc_reset(struct smtpc *c);

/* Expects a reply without sending anything (the greeting). -1 when too many are pending. */
int smtpc_expect(struct smtpc *c, enum tern_cmd cmd);
/* Queues "line CRLF" and expects its reply. secret: the line is an AUTH response (or AUTH with
 * an initial response); the transcript shows it masked and the buffer is wiped once sent.
 * -1 with why when the line is too long or holds CR, LF or NUL, too many are pending, or out of
 * memory. */
int smtpc_command(struct smtpc *c, enum tern_cmd cmd, const char *line, bool secret, char *why,
                  size_t whylen);
/* Queues message data through the transform (no reply is expected). -1 when out of memory. */
int smtpc_data(struct smtpc *c, struct smtpc_stuff *st, const void *buf, size_t len);
/* Ends DATA: CRLF if the message did not end with one, ".CRLF", and expects the reply. */
int smtpc_data_end(struct smtpc *c, struct smtpc_stuff *st);
/* Queues len raw octets (BDAT chunk content): no transform, no reply. */
int smtpc_raw(struct smtpc *c, const void *buf, size_t len);

/* The bytes waiting to be sent; smtpc_sent says how many went out. */
size_t smtpc_output(const struct smtpc *c, const char **out);
void smtpc_sent(struct smtpc *c, size_t n);

/* Reads the server's bytes while replies are expected, stopping after a reply to STARTTLS
 * (what follows it belongs to the TLS layer, or is an injection attempt). Returns the bytes
 * read; 0 when nothing is expected. On a malformed reply the core is broken (smtpc_broken). */
size_t smtpc_feed(struct smtpc *c, const char *buf, size_t len);
/* Takes the oldest complete reply, classified: 1 if there was one, 0 if not. */
int smtpc_reply(struct smtpc *c, struct tern_reply *r);
/* Replies expected and not yet complete. */
size_t smtpc_waiting(const struct smtpc *c);
/* The command the next reply will answer (TERN_CMD_OTHER when none). */
enum tern_cmd smtpc_head(const struct smtpc *c);
/* NULL while the server's replies make sense, else why they do not. */
const char *smtpc_broken(const struct smtpc *c);

/* The class of code as an answer to cmd (the seeds' client table). */
enum tern_class smtpc_classify(enum tern_cmd cmd, int code);
/* The command verb of a name ("mail" -> TERN_CMD_MAIL); TERN_CMD_OTHER when unknown. */
enum tern_cmd smtpc_cmd_of(const char *verb);

/* The capabilities in a 250 reply to EHLO (or HELO, esmtp 0) into caps, replacing them. */
void smtpc_parse_caps(const struct tern_reply *r, bool ehlo, struct tern_caps *caps);

/* The transform itself, into out (room for SMTPC_TRANSFORM_MAX(len) octets); with end, also the
 * message's end. Returns the octets written. For BDAT chunks, whose size is sent first. */
#define SMTPC_TRANSFORM_MAX(len) (2 * (len) + 4)
size_t smtpc_transform(struct smtpc_stuff *st, const void *buf, size_t len, bool end, char *out);
/* Octets the transform makes of buf (CRLF line ends, no dot-stuffing when st->dots is false),
 * and with end, of the message's end (its final CRLF): summed over all chunks, the SIZE to
 * declare. Sets st->eight when an octet >= 0x80 is seen. */
unsigned long long smtpc_measure(struct smtpc_stuff *st, const void *buf, size_t len, bool end);

#endif

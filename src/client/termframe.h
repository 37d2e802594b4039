/* Terminal messages on the wire: how ternd frames a message for a terminal (a `tern watch`
 * session) and how a reader takes the frames apart again. The framing is the same on ternd's
 * local watch socket (DATA_DIR/watch, after its "ok" line) and on a submission connection after
 * XWATCH's 250:
 *
 *   TERM time=SECONDS id=ID size=OCTETS from=<SENDER>\r\n
 *   the message as ternd received it, each line ending in CRLF and a line that starts with
 *   "." given one more "." (dot-stuffed, as after DATA)\r\n
 *   .\r\n
 *
 * Between frames an XWATCH connection also carries SMTP replies (221 after QUIT, 421 when
 * ternd ends the session); the local socket carries nothing else. The reader trusts nothing: a
 * TERM line is at most TFRAME_HEAD_MAX octets, a reply line TERN_REPLY_MAX_LINE, and of a
 * message it keeps TERN_TERM_TEXT_MAX octets however long it is, counting the rest. Pure: no
 * I/O, used by ternd (format), libtern's tern_watch_next and `tern watch` (parse). */
#ifndef TERN_CLIENT_TERMFRAME_H
#define TERN_CLIENT_TERMFRAME_H

#include "client/reply.h"
#include "tern/client.h"

#include <stdbool.h>
#include <stddef.h>

#define TFRAME_HEAD_MAX 1400 /* a TERM line with its CRLF: id, sender and numbers fit */

/* The whole frame of one message, malloc'd (free it), its length in *outlen; NULL when out of
 * memory. msg may hold any octets: a bare LF becomes CRLF, and a message that does not end in
 * a line end gets one. from is the sender without angle brackets ("" for the null sender). */
char *tframe_format(long long time, const char *id, const char *from, const char *msg, size_t len,
                    size_t *outlen);

enum tframe_event {
    TFRAME_MORE,    /* all of the input was taken: feed more */
    TFRAME_MESSAGE, /* a whole message: take it with tframe_take_message */
    TFRAME_REPLY,   /* an SMTP reply between messages: take it with tframe_take_reply */
    TFRAME_BAD,     /* not this framing: why says what; the stream cannot be trusted */
};

struct tframe {
    int state;
    char head[TFRAME_HEAD_MAX + 1]; /* the TERM line being read */
    size_t head_len;
    struct rparse reply; /* a reply being read */
    struct tern_term_message msg;
    size_t cap; /* of msg.text */
    char why[160];
};

void tframe_init(struct tframe *p);
void tframe_free(struct tframe *p);

/* Reads buf until something is complete; *used: octets read. After TFRAME_MESSAGE or
 * TFRAME_REPLY take it before feeding more; after TFRAME_BAD feed nothing more. */
enum tframe_event tframe_feed(struct tframe *p, const char *buf, size_t len, size_t *used);

/* Moves the message into m (freeing what m held). */
void tframe_take_message(struct tframe *p, struct tern_term_message *m);
/* Moves the reply into r (freeing what r held); -1 when out of memory (r says so). */
int tframe_take_reply(struct tframe *p, struct tern_reply *r);

#endif

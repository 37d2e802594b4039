/* The client's reply parser: turns the server's bytes into whole SMTP replies (RFC 5321 §4.2),
 * one at a time, incrementally, so a reply may arrive split at any byte. Everything it keeps is
 * bounded (TERN_REPLY_MAX_LINE octets a line, TERN_REPLY_MAX_LINES lines a reply), and anything
 * that is not a reply (a bad code, codes that change between lines, no space or hyphen after the
 * code, NUL or bare CR) is an error with a reason, after which the connection cannot be trusted
 * to be in step and must be closed. Also the constructors of the replies libtern makes itself. */
#ifndef TERN_CLIENT_REPLY_H
#define TERN_CLIENT_REPLY_H

#include "tern/client.h"

#include <stdbool.h>
#include <stddef.h>

struct rparse {
    char line[TERN_REPLY_MAX_LINE + 2]; /* the line being read, and its CR */
    size_t len;
    int code;     /* of the reply's first line, 0 before it */
    char **lines; /* texts of the lines read so far (TERN_REPLY_MAX_LINES at most) */
    size_t nlines;
    bool done;     /* a whole reply is waiting in lines for rparse_take */
    bool failed;   /* err says why; feed refuses everything after */
    char err[192]; /* why the input is not a reply */
};

void rparse_init(struct rparse *p);
/* Drops any partial reply and error: a new connection. */
void rparse_reset(struct rparse *p);

/* Reads bytes of buf until a reply is complete. Returns 1 when it is (take it with
 * rparse_take before feeding more), 0 when all of buf was read and more is needed, -1 on
 * malformed input or out of memory (p->err). *used: bytes of buf read. */
int rparse_feed(struct rparse *p, const char *buf, size_t len, size_t *used);

/* Moves the complete reply into r (freeing what r held): code, enhanced code, lines, text.
 * cls and cmd are left for the caller. -1 when out of memory (r then a local error). */
int rparse_take(struct rparse *p, struct tern_reply *r);

/* Fills r with a reply libtern made: code TERN_CODE_LOCAL or TERN_CODE_CONNECTION, one line of
 * text, negative. Never fails (an out-of-memory reply is static text). */
void creply_local(struct tern_reply *r, int code, enum tern_cmd cmd, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Copies src into dst (a deep copy); -1 when out of memory. */
int creply_copy(struct tern_reply *dst, const struct tern_reply *src);

#endif

/* SMTP replies: formatting single- and multi-line replies with or without RFC 3463 enhanced
 * status codes, into a growable output buffer the session owns. Reply text never carries a
 * control character, whatever the client sent. */
#ifndef TERN_SMTP_REPLY_H
#define TERN_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

struct smtp_out {
    char *buf;
    size_t len; /* bytes held */
    size_t off; /* bytes already handed to the caller and sent */
    size_t cap;
    bool failed; /* out of memory: the session must close */
};

/* One reply line "CODE[ ENH] text". enh may be NULL; it is written only when esc is true. */
void reply_add(struct smtp_out *o, bool esc, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* A multi-line reply: "CODE-[ENH ]line" for all but the last, "CODE [ENH ]line" last. */
void reply_add_lines(struct smtp_out *o, bool esc, int code, const char *enh,
                     const char *const *lines, size_t n);

size_t reply_pending(const struct smtp_out *o);
void reply_sent(struct smtp_out *o, size_t n);
void reply_free(struct smtp_out *o);

#endif

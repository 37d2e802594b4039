/* The delivery state of a spool entry: DATA_DIR/spool/queue/ID.state beside ID.env and ID.msg,
 * a JSON document (jansson) saying how often delivery was tried, when next, and what became of
 * each recipient. The queue manager writes it after every attempt; `tern queue` reads it, and
 * writes it for flush. It is written like the rest of the spool: tmp/, fsync, rename, fsync the
 * folder; an entry without one has never been tried. */
#ifndef TERN_STORE_SPOOL_STATE_H
#define TERN_STORE_SPOOL_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "store/spool.h"

enum spool_rcpt_status { SPOOL_RCPT_PENDING, SPOOL_RCPT_SENT, SPOOL_RCPT_FAILED };

#define SPOOL_REPLY_MAX 512  /* bytes of spool_rcpt_state.reply, NUL included */
#define SPOOL_REMOTE_MAX 300 /* bytes of spool_rcpt_state.remote, NUL included */

struct spool_rcpt_state {
    char addr[320];
    enum spool_rcpt_status status;
    int code;                      /* last remote reply code (100..599), 0 = none/local */
    char reply[SPOOL_REPLY_MAX];   /* the last reply as the server sent it ("451 4.7.1 ..."), or
                                      a local reason; one line: saving replaces control
                                      characters with spaces and bytes that are not UTF-8 with
                                      '?', and cuts it to fit */
    char remote[SPOOL_REMOTE_MAX]; /* "mx.example.net[192.0.2.1]" of the last attempt, "" if
                                      none; saved as reply is */
    time_t done;                   /* when SENT/FAILED, 0 while pending */
};

struct spool_state {
    unsigned attempts;
    time_t last_try, next_try; /* 0 = never / now */
    bool delay_notified;       /* the 4-hour delay notice has been sent */
    size_t nrcpts;
    struct spool_rcpt_state *rcpts; /* same order as the .env's rcpts */
};

/* The state of an entry never tried: every recipient pending, nothing else set. 0, or -1
 * (memory) with a reason. */
int spool_state_init(const struct spool_entry *e, struct spool_state *st, char *err, size_t errlen);

/* Reads ID.state of e (from hold/ when e->held). A missing one gives spool_state_init's. A
 * state that is malformed, bigger than any we write, or whose recipients are not the
 * envelope's (count, order, bytes) is refused: -1 with errno EBADMSG and a reason saying what
 * to do (other errnos: the file could not be read). */
int spool_state_load(const char *data_dir, const struct spool_entry *e, struct spool_state *st,
                     char *err, size_t errlen);

/* Writes st as queue/ID.state: tmp/ID.state.XXXXXX, fsync, rename, fsync queue/. Fails with
 * errno ENOENT and leaves nothing when queue/ID.env is not there, before or just after the
 * rename (the entry was delivered, deleted or held meanwhile). EINVAL: a bad id, or st holds
 * what no state may (no recipients or more than an envelope, an unknown status, a code outside
 * 0..999, a string without its NUL). 0, or -1 with a reason. */
int spool_state_save(const char *data_dir, const char *id, const struct spool_state *st, char *err,
                     size_t errlen);

void spool_state_free(struct spool_state *st);

/* "pending", "sent", "failed". */
const char *spool_rcpt_status_name(enum spool_rcpt_status s);

/* "Deliver now": sets next_try to 0 in the state of the entry id in queue/, or of every entry
 * in queue/ (id NULL); entries never tried are due already and keep no state file. The number
 * of entries flushed, or -1 with errno and a reason: ENOENT no such entry, EBUSY the entry is
 * on hold (release it), EINVAL a bad id. For the whole queue a failing entry does not stop the
 * others; the first reason is kept and -1 returned at the end. */
int spool_flush(const char *data_dir, const char *id, char *err, size_t errlen);

#endif

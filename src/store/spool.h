/* The outbound queue: mail accepted for recipients in foreign domains (from authenticated users)
 * waits in DATA_DIR/spool/ until delivery exists. Each entry is two files written like Maildir
 * (tmp/, fsync, rename into new/... then fsync the directory): ID.msg (the message as stored,
 * trace headers included) and ID.env (the envelope, written last: an entry without its .env is
 * incomplete and ignored). */
#ifndef TERN_STORE_SPOOL_H
#define TERN_STORE_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct spool_msg;

/* Opens DATA_DIR/spool/tmp/ID.msg (creating spool/{tmp,queue}). The id is written to id. Runs on
 * the loop: mkdir/open only. auth_user is who submitted it ("" if nobody). */
struct spool_msg *spool_begin(const char *data_dir, const char *from, const char *const *rcpts,
                              size_t nrcpts, const char *auth_user, char *id, size_t idlen,
                              char *err, size_t errlen);
int spool_append(struct spool_msg *m, const void *buf, size_t len, char *err, size_t errlen);
/* Worker thread: fsync ID.msg, write+fsync ID.env in tmp/, rename both into queue/ (msg first,
 * env last), fsync queue/. 0, or -1 with a reason and nothing left in queue/. */
int spool_commit(struct spool_msg *m, char *err, size_t errlen);
/* Removes a committed entry again (env first), for rolling back a transaction whose local
 * deliveries failed after the spool commit. */
int spool_uncommit(struct spool_msg *m, char *err, size_t errlen);
/* Discards an uncommitted message and frees; after commit only frees. */
void spool_free(struct spool_msg *m);

struct spool_entry {
    char id[96];
    char from[320];
    char auth_user[320];
    time_t queued;
    uint64_t size;
    size_t nrcpts;
    char (*rcpts)[320];
};

/* Calls fn for each complete entry in queue/, oldest first. Returns the number listed, or -1 with a
 * reason. */
int spool_list(const char *data_dir, int (*fn)(void *ctx, const struct spool_entry *e), void *ctx,
               char *err, size_t errlen);

#endif

/* The outbound queue: mail accepted for recipients in foreign domains (from authenticated users)
 * waits in DATA_DIR/spool/ until delivery exists. Each entry is two files written like Maildir
 * (tmp/, fsync, rename into new/... then fsync the directory): ID.msg (the message as stored,
 * trace headers included) and ID.env (the envelope, written last: an entry without its .env is
 * incomplete and ignored). */
#ifndef TERN_STORE_SPOOL_H
#define TERN_STORE_SPOOL_H

#include <stdbool.h>
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
    bool held; /* in hold/ (spool_list_held, spool_entry_load); spool_list leaves it false */
};

/* Calls fn for each complete entry in queue/, oldest first. Returns the number listed, or -1 with a
 * reason. */
int spool_list(const char *data_dir, int (*fn)(void *ctx, const struct spool_entry *e), void *ctx,
               char *err, size_t errlen);

/* ---- one entry, and the admin's actions (store/spool_entry.c) -------------------------------
 * Held entries wait in DATA_DIR/spool/hold/, the same files as in queue/, never delivered until
 * released. An entry moves between the two folders without ever being complete in both or in
 * neither: its .msg (and .state) are hard-linked into the other folder first, then its .env is
 * renamed there in one step (first out of one, last into the other), then the old links go.
 *
 * On -1 these set errno as well as the reason: ENOENT when there is no such entry (no .env, or
 * one without its .msg), EINVAL for an id that is not one of ours, EBADMSG for an envelope that
 * cannot be read; anything else is the file system's own errno. Files made while running as
 * root (tern as root) are given to the owner of DATA_DIR/spool, so ternd can go on using them. */

/* Is id shaped like the spool's ids: 1 to 95 of [0-9a-f-]? Every id that comes from outside
 * (the command line, the control socket, a file name) is checked before it names a file, so
 * none can climb out of the spool ("/" and "." are not in the set). */
bool spool_id_valid(const char *id);

/* As spool_list, for the entries in hold/ (held set), oldest first. */
int spool_list_held(const char *data_dir, int (*fn)(void *ctx, const struct spool_entry *e),
                    void *ctx, char *err, size_t errlen);

/* One complete entry by id, from queue/ or (held) hold/: fills e (the caller frees e->rcpts).
 * 0, or -1 with errno and a reason. */
int spool_entry_load(const char *data_dir, const char *id, bool held, struct spool_entry *e,
                     char *err, size_t errlen);

/* The message of id, from queue/ or else hold/, opened O_RDONLY; -1 with errno and a reason. */
int spool_msg_open(const char *data_dir, const char *id, char *err, size_t errlen);

/* Removes the entry id from queue/ or hold/: ID.env first (a crash half-way leaves an
 * incomplete entry, ignored and swept), then ID.state and ID.msg; fsyncs the folder. 0, or -1
 * with errno (ENOENT: no such entry) and a reason; a -1 after the .env went means the entry is
 * gone but a file of it could not be removed (the reason names it). */
int spool_remove(const char *data_dir, const char *id, char *err, size_t errlen);

/* Moves the entry id from queue/ to hold/ (spool_hold) or back (spool_release), as said above,
 * fsyncing both folders (making hold/ when needed). 0 moved, 1 it was already there (nothing
 * done), -1 with errno (ENOENT: in neither folder) and a reason, the entry left where it was;
 * but EIO: moved, and a folder could not be fsync'd (a crash might undo the move). */
int spool_hold(const char *data_dir, const char *id, char *err, size_t errlen);
int spool_release(const char *data_dir, const char *id, char *err, size_t errlen);

#define SPOOL_STALE_SECONDS (24 * 3600)

/* Start-up hygiene, for ternd before its queue manager reads the spool: removes the files of
 * tmp/ not written to for SPOOL_STALE_SECONDS before now (what a crash left mid-write), and in
 * queue/ and hold/ the .msg and .state files without a .env beside them whose inode has not
 * changed for as long (what a crash left between the steps of a commit, remove, hold or release).
 * Never touches a complete entry. The number of files removed, or -1 with a reason (it still
 * tries the rest). */
int spool_sweep(const char *data_dir, time_t now, char *err, size_t errlen);

#endif

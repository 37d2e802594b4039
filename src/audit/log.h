/* The audit log writer: the one place records are made. It owns DATA_DIR/audit/:
 *
 *   audit.log           records (record.h), appended whole with one write(2) each
 *   audit.log.000001..  rotated files, oldest first; each later file opens with a rotate record
 *                       that chains from the last record of the file before
 *   key                 "EPOCH HEXKEY\n" (0600): the current key only, overwritten as it evolves
 *   first-key           the first key, same format (0400), written once when the log is made:
 *                       the admin moves it off the machine and brings it back to verify
 *   head                "SEQ MACHEX\n": the last record known durable, so verify can tell a
 *                       truncated tail; it may lag the log, never lead it
 *   lock                flock'd while a writer has the log open: a second writer is refused
 *
 * Records written by the writer itself (besides the caller's events):
 *   create  {"key_id"}                         seq 1, epoch 0, chained from 32 zero bytes
 *   epoch   {"key_id","reason"}                the first record under a newly evolved key
 *   rotate  {"prev_file","prev_mac","key_id"}  the first record of every later file
 *   recover {"dropped_bytes","file"}           a torn, never-synced tail was cut at open
 *
 * Thread-safe: one mutex orders records, so lines never interleave and seq has no gaps.
 * Durability is separate from appending: audit_append leaves the line in the page cache;
 * audit_sync makes it durable, with one fsync shared by every caller waiting at the time
 * (group commit), so a message's record rides the same batch as the message. */
#ifndef TERN_AUDIT_LOG_H
#define TERN_AUDIT_LOG_H

#include "audit/key.h"

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define AUDIT_EPOCH_SECONDS 900
#define AUDIT_HEAD_MS 1000
#define AUDIT_LOG_NAME "audit.log"
#define AUDIT_KEY_NAME "key"
#define AUDIT_FIRST_KEY_NAME "first-key"
#define AUDIT_HEAD_NAME "head"
#define AUDIT_LOCK_NAME "lock"

struct audit;

struct audit_opts {
    const char *dir;        /* DATA_DIR/audit; made (0700) if absent */
    unsigned epoch_seconds; /* the key evolves this often; 0: AUDIT_EPOCH_SECONDS */
    uint64_t max_bytes;     /* audit_maintain rotates audit.log past this size; 0: never */
    bool syslog;            /* copy each line to syslog(3), LOG_MAIL|LOG_INFO, "ternd-audit" */
    unsigned head_ms;       /* audit_sync rewrites head at most this often; 0: AUDIT_HEAD_MS */
    unsigned lock_wait_ms;  /* wait this long for a writer holding the lock; 0: refuse at once */
    /* Test hook: called after each fsync of audit.log, without the lock held. NULL in ternd. */
    void (*on_fsync)(void *arg);
    void *on_fsync_arg;
};

/* What audit_open found or did, for the caller to tell the admin. */
struct audit_open_info {
    bool created; /* a new log: show first_key_hex once, and where first_key_path is */
    char first_key_hex[AUDIT_KEY_HEX_LEN + 1];
    char first_key_path[PATH_MAX];
    bool first_key_present; /* first-key is still beside the log: warn that it must move */
    uint64_t seq;           /* the last record's seq after open */
    uint64_t epoch;         /* the current epoch after open */
    uint64_t dropped_bytes; /* a torn tail cut at open (a recover record says so too) */
    bool finished_rotation; /* a rotation cut short by a crash was completed */
};

/* Opens the log in o->dir, creating a new one (and its first key) when there is none. On an
 * existing log it takes the current key, checks the last record against it and against head,
 * evolves the key (an epoch record, reason "start") and cuts a torn tail that was never
 * synced. It refuses, with a reason that says what to do, a log another process holds, a
 * log whose key is missing, older than the log or not the log's, and a log shorter than head
 * says (truncated): those need `tern audit verify`, not a writer that papers over them.
 * info may be NULL. NULL on failure. */
struct audit *audit_open(const struct audit_opts *o, struct audit_open_info *info, char *err,
                         size_t errlen);

/* Appends one record: event (an event name, record.h) and fields, an object (stolen, even on
 * failure; NULL for none; keys other than seq, ts, epoch, event, mac; values made with
 * audit_str for anything that came from outside). Formats, MACs and write(2)s the line; the
 * record is not durable until audit_sync. Its seq goes to *seq_out (may be NULL). Never
 * blocks on the disk, except when the key is overdue by a whole epoch (audit_maintain not
 * called): then it evolves first. 0, or -1 with a reason: nothing was written. After a
 * failed fsync or a half-finished rotation every call fails: restart to recover. */
int audit_append(struct audit *a, const char *event, json_t *fields, uint64_t *seq_out, char *err,
                 size_t errlen);

/* Makes every record up to seq durable (0: everything appended so far). Callers that arrive
 * while an fsync is in flight wait for it, and if it does not cover their record, one of them
 * issues the next for all: N concurrent callers cost about two fsyncs of audit.log, not N.
 * Then brings head up to date if head_ms have passed since it last was: head may lag, so a
 * busy log pays for head's own fsync once in that time, not once a batch (audit_maintain,
 * audit_rotate and audit_close always bring it up to date). Blocks: call from a worker, never
 * the event loop. 0, or -1 with a reason. */
int audit_sync(struct audit *a, uint64_t seq, char *err, size_t errlen);

/* Evolves the key now (reason: "start", "timer", ...): writes the new key to audit/key
 * durably, forgets the old one, and appends an epoch record under the new key. Blocks. */
int audit_evolve(struct audit *a, const char *reason, char *err, size_t errlen);

/* Closes audit.log as audit.log.N (N one past the highest present) and starts a new
 * audit.log whose first record is a rotate record chained from the old file's last. Both
 * files and head are durable on return. Blocks. 0, or -1 with a reason. */
int audit_rotate(struct audit *a, char *err, size_t errlen);

/* The periodic work, for a timer that runs it on a worker (every few seconds): evolves the key
 * when its epoch is over (reason "timer"), rotates when audit.log passed max_bytes, and
 * brings a lagging head up to date. 0, or -1 with a reason. */
int audit_maintain(struct audit *a, time_t now, char *err, size_t errlen);

/* Syncs everything, updates head, releases the lock and frees, once every other call on a has
 * returned. 0, or -1 with a reason (the log is closed and freed either way). NULL: no-op. */
int audit_close(struct audit *a, char *err, size_t errlen);

struct audit_stats {
    uint64_t seq;         /* last record appended */
    uint64_t durable_seq; /* last record known durable */
    uint64_t epoch;
    uint64_t records;     /* appended since open, the writer's own included */
    uint64_t log_fsyncs;  /* fsyncs of audit.log (the group commit's measure) */
    uint64_t head_writes; /* fsync'd rewrites of head */
    uint64_t rotations;
    uint64_t bytes; /* size of the current audit.log */
};
void audit_get_stats(struct audit *a, struct audit_stats *st);

/* The files of the log in dir, in chain order (audit.log.N by N, then audit.log), for
 * audit_verify. *files is an array of *n malloc'd paths; free with audit_series_free.
 * 0, or -1 with a reason (no such directory, no log in it). */
int audit_series(const char *dir, char ***files, size_t *n, char *err, size_t errlen);
void audit_series_free(char **files, size_t n);

#endif

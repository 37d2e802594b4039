/* Maildir++ quotas: the `maildirsize` file at the root of a Maildir, the format Courier and
 * Dovecot's `maildir` quota backend share. Its first line holds the limit ("1048576S" or
 * "1048576S,1000C"); every later line is a "bytes count" delta, appended with O_APPEND by whoever
 * delivers or expunges. Usage is the sum of the lines. When the file is missing, 5120 octets or
 * larger, older than 15 minutes or unreadable as Maildir++ it is recomputed from the Maildir's
 * files (quota_recalc), as the Maildir++ specification asks. Maildir++ quotas are approximate by
 * design (no locks): a delivery racing a recomputation can be counted twice or not at all until
 * the next one. Plain file I/O, no locks held across calls, no static state: callers on the event
 * loop use quota_read only (one small read); quota_add and quota_recalc run on workers, several at
 * once for one Maildir if need be. */
#ifndef TERN_STORE_QUOTA_H
#define TERN_STORE_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QUOTA_FILE "maildirsize"
#define QUOTA_FILE_MAX 5120     /* at this size the file is recomputed (Maildir++) */
#define QUOTA_MAX_AGE (15 * 60) /* seconds: an older file is recomputed (Maildir++) */
#define QUOTA_WARN_PERCENT 90   /* the log warns when usage passes this share of the limit */

struct quota_usage {
    uint64_t bytes;
    uint64_t count;
    uint64_t limit_bytes; /* from the file's first line; 0 when the line has no S limit */
    uint64_t limit_count; /* 0 when the line has no C limit */
};

/* Reads DIR/maildirsize (DIR is a Maildir root) and sums it into u, reading at most
 * QUOTA_FILE_MAX octets. *stale is set when the file is missing (or not a plain file), unreadable
 * as Maildir++ (garbage, NUL bytes, a line without its newline, a negative or overflowing total),
 * QUOTA_FILE_MAX octets or larger, older than QUOTA_MAX_AGE, or at or over its own limit with more
 * than one delta line (Maildir++ trusts such totals only from a fresh summary): then u holds what
 * could be read, clamped to [0, UINT64_MAX] (zeros when missing), and the caller should recompute
 * on a worker. Callers also recompute when u->limit_bytes differs from their configured limit, so
 * the first line follows configuration changes. Returns 0, or -1 with a reason only for I/O errors
 * other than a missing file. */
int quota_read(const char *dir, struct quota_usage *u, bool *stale, char *err, size_t errlen);

/* Appends one "bytes count" line (either may be negative) to DIR/maildirsize with a single
 * O_APPEND write, so concurrent appenders never interleave. Call it AFTER the change is in the
 * Maildir (the message linked into new/, or removed): when the file is missing it is created
 * through quota_recalc, which then already counts the change, so no line is appended. limit is
 * the mailbox's quota in bytes (0: none), written in the first line when the file is (re)made.
 * A file that has grown past QUOTA_FILE_MAX is still appended to; quota_read reports it stale.
 * A zero change does nothing. 0, or -1 with a reason. */
int quota_add(const char *dir, uint64_t limit, int64_t bytes, int64_t count, char *err,
              size_t errlen);

/* Recomputes usage from DIR's messages: new/ and cur/ of the Maildir and of every Maildir++
 * folder (".NAME/" directories holding cur/new/tmp; every folder counts, Trash too; symlinked
 * folders and names starting with '.' do not). A file's size is taken from ",S=NNN" in its name
 * when present, else from stat. Writes a fresh maildirsize (first line "NS" from limit N, or
 * "0S" for none as Dovecot writes it, then one line with the totals) to a temporary file in
 * DIR/tmp/ and renames it into place; when the directories' timestamps changed meanwhile it scans
 * again (three scans at most, then keeps the last). Fills u when not NULL. 0, or -1 with a
 * reason. */
int quota_recalc(const char *dir, uint64_t limit, struct quota_usage *u, char *err, size_t errlen);

/* Is the mailbox already full (usage at or past limit)? false when limit is 0. */
bool quota_full(const struct quota_usage *u, uint64_t limit);
/* Would adding one message of bytes to usage u pass limit? false when limit is 0. */
bool quota_exceeded(const struct quota_usage *u, uint64_t limit, uint64_t bytes);

#endif

/* Verifying an audit log (log.h, record.h): a series of files read in chain order, checked
 * line by line, and the first thing wrong named by file, line and kind. What is checked:
 *   - every line is a record (record.h's shape; a line is at most AUDIT_LINE_MAX bytes);
 *   - seq goes up by exactly 1 across the whole series, ts never goes backwards;
 *   - seq 1 is the create record, a rotate record opens every file after the first and
 *     carries the previous file's last mac; the epoch only rises, and only at an epoch or
 *     rotate record;
 *   - with a key, each record's mac: a key of epoch E (the first key is epoch 0, audit/key is
 *     the current epoch) evolves to check every record of epoch E or later; records of earlier
 *     epochs are checked for order and links only, and the result says so;
 *   - with the head file, that the log reaches the record head names.
 * The kind of the first fault, from the seq pattern around it:
 *   deleted    seq jumps forward and the skipped records do not turn up just after;
 *   reordered  seq jumps forward and a skipped record turns up within the next lines;
 *   inserted   seq repeats one already seen (the next line continues where it left off);
 *   edited     seq fits but the mac, time, epoch, links or shape do not; a line that is no
 *              record; a lone record whose seq was changed (the next line fits without it);
 *   truncated  the log ends before the record head names, or a file ends inside a line.
 * Any bytes at all give a verdict: lines are bounded, JSON is parsed by jansson with
 * duplicates refused, numbers are range-checked, evolutions are bounded by max_epoch. */
#ifndef TERN_AUDIT_VERIFY_H
#define TERN_AUDIT_VERIFY_H

#include "audit/record.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum audit_verdict {
    AUDIT_INTACT = 0,
    AUDIT_EDITED,
    AUDIT_DELETED,
    AUDIT_INSERTED,
    AUDIT_REORDERED,
    AUDIT_TRUNCATED,
    AUDIT_WRONG_KEY,  /* the key given is not this log's */
    AUDIT_UNREADABLE, /* a file, key or head could not be read: nothing was proven */
};

/* "intact", "edited", ..., "wrong key", "unreadable". */
const char *audit_verdict_name(enum audit_verdict v);

struct audit_verify_opts {
    const unsigned char *first_key; /* k(0), AUDIT_KEY_LEN bytes (the first-key file), or NULL */
    const char *key_file;           /* a key file, normally audit/key (the current one), or NULL */
    const char *head_file;          /* audit/head, or NULL: then a cut tail goes unnoticed */
    uint64_t max_epoch;             /* epochs past this are damage; 0: AUDIT_EPOCH_MAX */
};

struct audit_verify_result {
    enum audit_verdict verdict;
    const char *file; /* where the first fault is: one of the names given (not copied) */
    uint64_t line;    /* its line, from 1 */
    char why[512];    /* one sentence, safe to print: no bytes from the log */

    uint64_t records; /* records checked before the first fault (all, when intact) */
    uint64_t first_seq, last_seq;
    char first_ts[AUDIT_TS_LEN + 1], last_ts[AUDIT_TS_LEN + 1];
    uint64_t first_epoch, last_epoch;
    uint64_t macs_checked; /* records whose mac was verified */
    bool macs_all;         /* every record's mac, the first's link included */
    bool head_checked;     /* the end was compared with the head file */
    char scope[384];       /* what was and was not proven, in words */
};

/* Verifies files[0..n) in chain order (audit_series gives them). 0 when intact, 1 when a
 * fault or a wrong key was found, -1 when something could not be read; r says which,
 * where and what was proven. */
int audit_verify(const char *const *files, size_t n, const struct audit_verify_opts *o,
                 struct audit_verify_result *r);

/* The same, fed from memory (the fuzzer; a CLI reading stdin): new loads the keys and head
 * (a failure is the verdict), then for each file begin_file, any number of feeds of its bytes,
 * end_file; finish sets the verdict and frees v. NULL only when out of memory. r must outlive
 * v, and the names given to begin_file must outlive r (r->file points at one). */
struct audit_verifier;
struct audit_verifier *audit_verifier_new(const struct audit_verify_opts *o,
                                          struct audit_verify_result *r);
void audit_verifier_begin_file(struct audit_verifier *v, const char *name);
void audit_verifier_feed(struct audit_verifier *v, const void *buf, size_t len);
void audit_verifier_end_file(struct audit_verifier *v);
enum audit_verdict audit_verifier_finish(struct audit_verifier *v);

#endif

/* The writer's state, shared by log.c (appending, syncing, evolving, rotating) and log_open.c
 * (finding where an existing log left off, or making a new one). Not for other folders. */
#ifndef TERN_AUDIT_LOG_PRIV_H
#define TERN_AUDIT_LOG_PRIV_H

#include "audit/log.h"
#include "audit/record.h"

#include <pthread.h>
#include <sys/types.h>

struct audit {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a sync or a head write finished */

    char *dir;
    char *log_path, *key_path, *head_path;
    int fd;      /* audit.log, O_APPEND; -1 after a rotation that could not finish */
    int lock_fd; /* audit/lock, flock'd */
    unsigned lock_wait_ms;
    unsigned epoch_seconds;
    uint64_t max_bytes;
    bool syslog;
    void (*on_fsync)(void *arg);
    void *on_fsync_arg;

    unsigned char key[AUDIT_KEY_LEN]; /* k(epoch); the only key this process holds */
    uint64_t epoch;
    bool epoch_record_due; /* the key evolved but its epoch record is not written yet */
    time_t next_evolve;

    uint64_t seq;                          /* last record written */
    unsigned char last_mac[AUDIT_MAC_LEN]; /* its mac: what the next record chains from */
    int64_t last_us;                       /* its time: stamps never go backwards */
    uint64_t size;                         /* bytes in audit.log */
    unsigned long next_rot;                /* N for the next audit.log.N */

    uint64_t durable; /* last record known durable */
    unsigned char durable_mac[AUDIT_MAC_LEN];
    bool syncing;       /* one caller is fsyncing audit.log for everyone */
    bool head_busy;     /* one caller is writing head */
    uint64_t head_seq;  /* what head says */
    unsigned head_ms;   /* audit_sync rewrites head at most this often */
    int64_t head_at_ms; /* when it last did (CLOCK_MONOTONIC) */
    bool broken;        /* an fsync failed or a rotation half-finished: refuse everything */
    char broken_why[256];

    uint64_t records, log_fsyncs, head_writes, rotations;
    char line[AUDIT_LINE_MAX + 1]; /* the record being formatted, under mu */
};

/* Joins dir and name into a fresh string; NULL when out of memory. */
char *audit_path(const char *dir, const char *name);

/* Appends one record under mu; fields stolen. Writes a pending epoch record first. The line
 * is copied to *syslog_copy (malloc'd) when syslog is on and syslog_copy is not NULL. */
int audit_append_locked(struct audit *a, const char *event, json_t *fields, char **syslog_copy,
                        char *err, size_t errlen);

/* Evolves the key and writes its epoch record, under mu; the next evolution is due
 * epoch_seconds after now. */
int audit_evolve_locked(struct audit *a, const char *reason, time_t now, char *err, size_t errlen);

/* Waits (under mu) until no sync or head write is in flight, then fsyncs audit.log and
 * writes head, so that everything written is durable and head names the last record. */
int audit_sync_all_locked(struct audit *a, char *err, size_t errlen);

/* Releases everything a writer holds (its files, the flock, syslog, the key) without syncing:
 * the end of audit_close, and the undoing of an audit_open that failed part way. */
void audit_free(struct audit *a);

/* Writes head: "SEQ MACHEX\n". */
int audit_head_write(const char *path, uint64_t seq, const unsigned char mac[AUDIT_MAC_LEN],
                     char *err, size_t errlen);

/* The time now in microseconds, never before the last record's. */
int64_t audit_now_us(const struct audit *a);

#endif

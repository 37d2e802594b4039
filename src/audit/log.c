/* The running writer of log.h: appending a record under the one mutex, the group commit that
 * makes records durable with one fsync per batch of waiting callers, key evolution, rotation
 * and closing. Opening (and recovering from a crash) is log_open.c's. Everything that blocks
 * on the disk is documented as blocking, so ternd knows to call it from a worker. */
#include "audit/log_priv.h"

#include "util/err.h"
#include "util/fsutil.h"
#include "util/log.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

char *audit_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int64_t audit_now_us(const struct audit *a)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    /* A clock stepped back must not make verify report a reordering. */
    return us < a->last_us ? a->last_us : us;
}

int audit_head_write(const char *path, uint64_t seq, const unsigned char mac[AUDIT_MAC_LEN],
                     char *err, size_t errlen)
{
    char hex[AUDIT_MAC_HEX_LEN + 1], text[96];
    audit_hex(mac, AUDIT_MAC_LEN, hex);
    int n = snprintf(text, sizeof(text), "%llu %s\n", (unsigned long long)seq, hex);
    /* No directory fsync: a crash may bring back an older head, which only lags the log. */
    return audit_file_replace(path, text, (size_t)n, 0600, false, err, errlen);
}

/* Writes one formatted line; on failure removes whatever part of it reached the file, so the
 * next record does not follow half a line. */
static int write_line(struct audit *a, size_t len, char *err, size_t errlen)
{
    if (a->fd >= 0 && fsutil_write_all(a->fd, a->line, len) == 0)
        return 0;
    int e = a->fd >= 0 ? errno : EBADF;
    fsutil_err(err, errlen, "audit", "cannot append to", a->log_path, e);
    if (a->fd >= 0 && ftruncate(a->fd, (off_t)a->size) != 0) {
        a->broken = true;
        snprintf(a->broken_why, sizeof(a->broken_why),
                 "audit: %s holds part of a record that could not be removed; restart ternd",
                 a->log_path);
    }
    return -1;
}

/* Formats and writes one record, fields stolen. */
static int append_one(struct audit *a, const char *event, json_t *fields, char **syslog_copy,
                      char *err, size_t errlen)
{
    struct audit_record_meta m = {a->seq + 1, audit_now_us(a), a->epoch, event};
    unsigned char mac[AUDIT_MAC_LEN];
    size_t len = 0;
    int rc = audit_record_format(&m, fields, a->key, a->last_mac, a->line, sizeof(a->line), &len,
                                 mac, err, errlen);
    json_decref(fields);
    if (rc != 0 || write_line(a, len, err, errlen) != 0)
        return -1;
    a->seq = m.seq;
    a->last_us = m.ts_us;
    a->size += len;
    a->records++;
    memcpy(a->last_mac, mac, sizeof(mac));
    if (a->syslog && syslog_copy)
        *syslog_copy = strndup(a->line, len - 1); /* best effort: the file is what counts */
    else if (a->syslog) /* the writer's own records (create, epoch, rotate, recover): rare */
        syslog(LOG_INFO, "%.*s", (int)(len - 1), a->line);
    return 0;
}

/* The fields of an epoch record. */
static json_t *epoch_fields(const struct audit *a, const char *reason)
{
    char id[AUDIT_KEY_ID_HEX_LEN + 1];
    audit_key_id(a->key, id);
    return json_pack("{s:s, s:s}", "key_id", id, "reason", reason);
}

int audit_append_locked(struct audit *a, const char *event, json_t *fields, char **syslog_copy,
                        char *err, size_t errlen)
{
    if (a->broken) {
        json_decref(fields);
        err_set(err, errlen, "%s", a->broken_why);
        return -1;
    }
    /* Every record after an evolution must follow its epoch record, or verify would see the
     * epoch change on an ordinary record. */
    if (a->epoch_record_due) {
        if (append_one(a, "epoch", epoch_fields(a, "retry"), NULL, err, errlen) != 0) {
            json_decref(fields);
            return -1;
        }
        a->epoch_record_due = false;
    }
    return append_one(a, event, fields, syslog_copy, err, errlen);
}

int audit_evolve_locked(struct audit *a, const char *reason, time_t now, char *err, size_t errlen)
{
    if (a->broken) {
        err_set(err, errlen, "%s", a->broken_why);
        return -1;
    }
    unsigned char next[AUDIT_KEY_LEN];
    memcpy(next, a->key, sizeof(next));
    audit_key_evolve(next);
    /* The new key is durable before any record uses it: a crash in between must leave a key
     * file at least as new as the log, or the next start would find the log ahead of it. */
    if (audit_key_store(a->key_path, a->epoch + 1, next, 0600, err, errlen) != 0) {
        OPENSSL_cleanse(next, sizeof(next));
        return -1;
    }
    memcpy(a->key, next, sizeof(next));
    OPENSSL_cleanse(next, sizeof(next));
    a->epoch++;
    a->next_evolve = now + (time_t)a->epoch_seconds;
    a->epoch_record_due = false;
    if (append_one(a, "epoch", epoch_fields(a, reason), NULL, err, errlen) != 0) {
        a->epoch_record_due = true;
        return -1;
    }
    return 0;
}

/* Makes records up to target durable; the caller set syncing and dropped mu. */
static int fsync_log(struct audit *a, int fd, char *err, size_t errlen)
{
    if (fdatasync(fd) != 0) {
        fsutil_err(err, errlen, "audit", "cannot fsync", a->log_path, errno);
        return -1;
    }
    if (a->on_fsync)
        a->on_fsync(a->on_fsync_arg);
    return 0;
}

/* Records an fsync failure: after one, the kernel may have dropped the dirty pages, so no
 * later fsync can vouch for them; only a restart (which re-reads the file) can. */
static void mark_broken(struct audit *a, const char *why)
{
    a->broken = true;
    snprintf(a->broken_why, sizeof(a->broken_why), "%.220s; restart ternd", why);
}

/* Milliseconds on the monotonic clock, for head's pace. */
static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Brings head up to the durable end, under mu (dropped while writing), when forced or when
 * head_ms have passed since the last time. One writer at a time; a caller that finds one busy
 * leaves it be (head may lag the log, never lead it). The fsync of head is off the batch's
 * path: the next batch's log fsync can start meanwhile. */
static void update_head(struct audit *a, bool force)
{
    if (a->head_busy || a->head_seq >= a->durable ||
        (!force && mono_ms() - a->head_at_ms < (int64_t)a->head_ms))
        return;
    a->head_busy = true;
    uint64_t seq = a->durable;
    unsigned char mac[AUDIT_MAC_LEN];
    memcpy(mac, a->durable_mac, sizeof(mac));
    pthread_mutex_unlock(&a->mu);
    char why[256];
    int r = audit_head_write(a->head_path, seq, mac, why, sizeof(why));
    pthread_mutex_lock(&a->mu);
    if (r == 0) {
        a->head_seq = seq;
        a->head_writes++;
        a->head_at_ms = mono_ms();
    } else {
        log_warn("%s (a cut end of the audit log may go unnoticed until head is written)", why);
    }
    a->head_busy = false;
    pthread_cond_broadcast(&a->cv);
}

int audit_sync(struct audit *a, uint64_t seq, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&a->mu);
    if (seq == 0 || seq > a->seq)
        seq = a->seq;
    while (a->durable < seq) {
        if (a->broken) {
            err_set(err, errlen, "%s", a->broken_why);
            rc = -1;
            break;
        }
        if (a->syncing) { /* it may cover seq; if not, the loop starts the next one */
            pthread_cond_wait(&a->cv, &a->mu);
            continue;
        }
        /* This caller syncs for everyone written so far, itself included. */
        a->syncing = true;
        uint64_t target = a->seq;
        unsigned char mac[AUDIT_MAC_LEN];
        memcpy(mac, a->last_mac, sizeof(mac));
        int fd = a->fd;
        pthread_mutex_unlock(&a->mu);
        char why[256] = "";
        int r = fsync_log(a, fd, why, sizeof(why));
        pthread_mutex_lock(&a->mu);
        a->log_fsyncs++;
        a->syncing = false;
        if (r != 0) {
            mark_broken(a, why);
            pthread_cond_broadcast(&a->cv);
            continue; /* reports broken above */
        }
        if (target > a->durable) {
            a->durable = target;
            memcpy(a->durable_mac, mac, sizeof(mac));
        }
        pthread_cond_broadcast(&a->cv); /* the waiters it covered go now, before head */
        update_head(a, false);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int audit_sync_all_locked(struct audit *a, char *err, size_t errlen)
{
    while (a->syncing || a->head_busy)
        pthread_cond_wait(&a->cv, &a->mu);
    if (a->broken) {
        err_set(err, errlen, "%s", a->broken_why);
        return -1;
    }
    char why[256];
    if (a->durable < a->seq) {
        if (fsync_log(a, a->fd, why, sizeof(why)) != 0) {
            mark_broken(a, why);
            err_set(err, errlen, "%s", why);
            return -1;
        }
        a->log_fsyncs++;
        a->durable = a->seq;
        memcpy(a->durable_mac, a->last_mac, sizeof(a->durable_mac));
    }
    if (audit_head_write(a->head_path, a->seq, a->last_mac, err, errlen) != 0)
        return -1;
    a->head_seq = a->seq;
    a->head_writes++;
    a->head_at_ms = mono_ms();
    return 0;
}

/* Sends one line to syslog and frees it. */
static void syslog_line(char *line)
{
    if (line)
        syslog(LOG_INFO, "%s", line);
    free(line);
}

int audit_append(struct audit *a, const char *event, json_t *fields, uint64_t *seq_out, char *err,
                 size_t errlen)
{
    char *copy = NULL;
    pthread_mutex_lock(&a->mu);
    int rc = 0;
    /* The timer normally evolves the key; this only catches a timer that stopped. */
    time_t now = time(NULL);
    if (!a->broken && now >= a->next_evolve + (time_t)a->epoch_seconds)
        rc = audit_evolve_locked(a, "overdue", now, err, errlen);
    if (rc == 0)
        rc = audit_append_locked(a, event, fields, &copy, err, errlen);
    else
        json_decref(fields);
    if (rc == 0 && seq_out)
        *seq_out = a->seq;
    pthread_mutex_unlock(&a->mu);
    syslog_line(copy); /* outside the lock: a stalled syslogd must not stall the writer */
    return rc;
}

int audit_evolve(struct audit *a, const char *reason, char *err, size_t errlen)
{
    pthread_mutex_lock(&a->mu);
    int rc = audit_evolve_locked(a, reason, time(NULL), err, errlen);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

/* The path of the next rotated file. */
static char *rotated_path(const struct audit *a, unsigned long n)
{
    char name[64];
    snprintf(name, sizeof(name), AUDIT_LOG_NAME ".%06lu", n);
    return audit_path(a->dir, name);
}

/* Renames audit.log to the next free audit.log.N, never over an existing file. */
static char *rename_away(struct audit *a, char *err, size_t errlen)
{
    for (int tries = 0; tries < 1000; tries++, a->next_rot++) {
        char *to = rotated_path(a, a->next_rot);
        if (!to) {
            err_set(err, errlen, "audit: out of memory");
            return NULL;
        }
        int r = renameat2(AT_FDCWD, a->log_path, AT_FDCWD, to, RENAME_NOREPLACE);
        if (r != 0 && errno == EINVAL) { /* a file system without NOREPLACE; we hold the lock */
            struct stat st;
            r = lstat(to, &st) == 0 ? (errno = EEXIST, -1) : rename(a->log_path, to);
        }
        if (r == 0) {
            a->next_rot++;
            return to;
        }
        int e = errno;
        free(to);
        if (e != EEXIST) {
            fsutil_err(err, errlen, "audit", "cannot rename", a->log_path, e);
            return NULL;
        }
    }
    err_set(err, errlen, "audit: no free name to rotate %s to", a->log_path);
    return NULL;
}

/* Rotation under mu: everything durable, rename, new file, rotate record, durable again. */
static int rotate_locked(struct audit *a, char *err, size_t errlen)
{
    if (audit_sync_all_locked(a, err, errlen) != 0)
        return -1;
    char why[256] = "";
    char *to = rename_away(a, why, sizeof(why));
    if (!to) {
        err_set(err, errlen, "%s", why);
        return -1;
    }
    close(a->fd);
    a->fd = -1;
    /* From here a failure leaves no usable audit.log: refuse records until a restart, whose
     * open finishes the rotation from the renamed file. */
    int rc = -1;
    int fd = open(a->log_path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        fsutil_err(why, sizeof(why), "audit", "cannot create", a->log_path, errno);
        goto out;
    }
    a->fd = fd;
    a->size = 0;
    if (fsutil_fsync_dir(a->dir, "audit", why, sizeof(why)) != 0)
        goto out;
    char mac_hex[AUDIT_MAC_HEX_LEN + 1], id[AUDIT_KEY_ID_HEX_LEN + 1];
    audit_hex(a->last_mac, AUDIT_MAC_LEN, mac_hex);
    audit_key_id(a->key, id);
    const char *base = strrchr(to, '/') + 1;
    json_t *f = json_pack("{s:s, s:s, s:s}", "prev_file", base, "prev_mac", mac_hex, "key_id", id);
    /* A file opens with its rotate record; carrying key_id, it also marks a pending epoch. */
    a->epoch_record_due = false;
    if (audit_append_locked(a, "rotate", f, NULL, why, sizeof(why)) != 0 ||
        audit_sync_all_locked(a, why, sizeof(why)) != 0)
        goto out;
    a->rotations++;
    rc = 0;
out:
    if (rc != 0) {
        if (!a->broken)
            mark_broken(a, why);
        err_set(err, errlen, "%s", why);
    }
    free(to);
    return rc;
}

int audit_rotate(struct audit *a, char *err, size_t errlen)
{
    pthread_mutex_lock(&a->mu);
    int rc = rotate_locked(a, err, errlen);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int audit_maintain(struct audit *a, time_t now, char *err, size_t errlen)
{
    pthread_mutex_lock(&a->mu);
    int rc = 0;
    if (now >= a->next_evolve)
        rc = audit_evolve_locked(a, "timer", now, err, errlen);
    if (rc == 0 && a->max_bytes && a->size >= a->max_bytes)
        rc = rotate_locked(a, err, errlen);
    if (rc == 0)
        update_head(a, true);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int audit_close(struct audit *a, char *err, size_t errlen)
{
    if (!a)
        return 0;
    pthread_mutex_lock(&a->mu);
    int rc = audit_sync_all_locked(a, err, errlen); /* a broken log reports why */
    pthread_mutex_unlock(&a->mu);
    audit_free(a);
    return rc;
}

void audit_free(struct audit *a)
{
    if (a->fd >= 0)
        close(a->fd);
    if (a->lock_fd >= 0)
        close(a->lock_fd); /* releases the flock */
    if (a->syslog)
        closelog(); /* harmless when a failed open had not reached openlog yet */
    OPENSSL_cleanse(a->key, sizeof(a->key));
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a->dir);
    free(a->log_path);
    free(a->key_path);
    free(a->head_path);
    free(a);
}

void audit_get_stats(struct audit *a, struct audit_stats *st)
{
    pthread_mutex_lock(&a->mu);
    *st = (struct audit_stats){a->seq,        a->durable,     a->epoch,     a->records,
                               a->log_fsyncs, a->head_writes, a->rotations, a->size};
    pthread_mutex_unlock(&a->mu);
}

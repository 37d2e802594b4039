/* Opening the audit log (log.h): a new log with its first key, or an existing one picked up
 * where it left off. Owns the crash cases: a torn line that was never synced is cut (and a
 * recover record says so), a rotation cut short is finished, a creation cut short before any
 * record is started again. Everything that points at tampering instead (the log shorter than
 * head, a key that does not fit the log) is refused with a reason, because a writer that
 * carried on would bury the evidence under new records. Also lists a log's files in order. */
#include "audit/log_priv.h"

#include "util/err.h"
#include "util/fsutil.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#define TAIL_MAX (3 * AUDIT_LINE_MAX) /* room for the last two lines and a torn third */

/* Where a log file left off. */
struct tail {
    bool have;               /* it holds a complete record */
    struct audit_record rec; /* the last one (obj kept) */
    bool have_prev;          /* the mac it chains from is known */
    unsigned char prev[AUDIT_MAC_LEN];
    const char *line;  /* its bytes, in buf */
    uint64_t good_end; /* offset just past its newline */
    uint64_t size;     /* of the file */
    char *buf;
};

static void tail_free(struct tail *t)
{
    audit_record_release(&t->rec);
    free(t->buf);
    memset(t, 0, sizeof(*t));
}

/* Start of the line that ends just before end (a newline or the buffer's end), or NULL when
 * it starts before the buffer (and the buffer is not the whole file). */
static const char *line_start(const char *buf, const char *end, bool whole)
{
    for (const char *p = end; p > buf; p--)
        if (p[-1] == '\n')
            return p;
    return whole ? buf : NULL;
}

/* The mac the record at line chains from, when its own line or the one before says. */
static void find_prev(struct tail *t, const char *start, bool whole)
{
    json_t *pm = json_object_get(t->rec.obj, "prev_mac");
    if (t->rec.seq == 1 && strcmp(t->rec.event, "create") == 0) {
        memset(t->prev, 0, sizeof(t->prev));
        t->have_prev = true;
    } else if (strcmp(t->rec.event, "rotate") == 0 && json_is_string(pm)) {
        t->have_prev =
            audit_unhex(json_string_value(pm), json_string_length(pm), t->prev, AUDIT_MAC_LEN) == 0;
    } else if (start > t->buf) {
        const char *pstart = line_start(t->buf, start - 1, whole);
        struct audit_record prev;
        if (pstart &&
            audit_record_parse(pstart, (size_t)(start - 1 - pstart), &prev, false, NULL, 0) == 0 &&
            prev.seq + 1 == t->rec.seq) {
            memcpy(t->prev, prev.mac, sizeof(t->prev));
            t->have_prev = true;
        }
    }
}

/* Reads where the file at path left off. 0 (t->have false for a file without a complete
 * line), or -1 with a reason when its end is not a record and not a torn one either. */
static int read_tail(const char *path, struct tail *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fsutil_err(err, errlen, "audit", "cannot read", path, errno);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    t->size = (uint64_t)st.st_size;
    size_t chunk = t->size < TAIL_MAX ? (size_t)t->size : TAIL_MAX;
    bool whole = chunk == t->size;
    t->buf = malloc(chunk + 1);
    ssize_t got = t->buf ? pread(fd, t->buf, chunk, (off_t)(t->size - chunk)) : -1;
    int e = errno;
    close(fd);
    if (got != (ssize_t)chunk) {
        fsutil_err(err, errlen, "audit", "cannot read", path, got < 0 ? e : EIO);
        return -1;
    }
    const char *end = t->buf + chunk, *nl = end;
    while (nl > t->buf && nl[-1] != '\n')
        nl--;
    size_t torn = (size_t)(end - nl);
    if (torn >= AUDIT_LINE_MAX || (nl == t->buf && !whole)) {
        err_set(err, errlen,
                "audit: %s ends in %zu bytes that are no record; run `tern audit verify`", path,
                torn);
        return -1;
    }
    if (nl == t->buf)
        return 0; /* no complete line: at most a torn one */
    t->good_end = t->size - torn;
    const char *start = line_start(t->buf, nl - 1, whole);
    char why[128] = "line too long";
    if (!start ||
        audit_record_parse(start, (size_t)(nl - 1 - start), &t->rec, true, why, sizeof(why)) != 0) {
        err_set(err, errlen,
                "audit: the last record of %s is damaged (%s); run `tern audit verify`", path, why);
        return -1;
    }
    t->have = true;
    t->line = start;
    find_prev(t, start, whole);
    return 0;
}

/* Reads head into *seq and mac. 1 when present, 0 when absent, -1 when unreadable. */
static int read_head(const char *path, uint64_t *seq, unsigned char mac[AUDIT_MAC_LEN], char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f && errno == ENOENT)
        return 0;
    char line[128] = "", *end;
    bool ok = f && fgets(line, sizeof(line), f);
    if (f)
        fclose(f);
    if (ok) {
        errno = 0;
        *seq = strtoull(line, &end, 10);
        ok = errno == 0 && end != line && *end == ' ' && strlen(end + 1) == AUDIT_MAC_HEX_LEN + 1 &&
             end[1 + AUDIT_MAC_HEX_LEN] == '\n' &&
             audit_unhex(end + 1, AUDIT_MAC_HEX_LEN, mac, AUDIT_MAC_LEN) == 0;
    }
    if (!ok)
        err_set(err, errlen,
                "audit: %s is not a head file (\"SEQ MAC\"); run `tern audit verify`, and "
                "remove it to start anyway",
                path);
    return ok ? 1 : -1;
}

/* Makes a new log: first key (kept twice: audit/key and first-key for the admin), audit.log
 * and its create record, head. */
static int create_log(struct audit *a, struct audit_open_info *info, char *err, size_t errlen)
{
    char *first = audit_path(a->dir, AUDIT_FIRST_KEY_NAME);
    int rc = -1;
    if (!first) {
        err_set(err, errlen, "audit: out of memory");
        return -1;
    }
    if (RAND_bytes(a->key, AUDIT_KEY_LEN) != 1) {
        err_set(err, errlen, "audit: OpenSSL could not make a random key");
        goto out;
    }
    a->epoch = 0;
    if (audit_key_store(first, 0, a->key, 0400, err, errlen) != 0 ||
        audit_key_store(a->key_path, 0, a->key, 0600, err, errlen) != 0)
        goto out;
    a->fd = open(a->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (a->fd < 0) {
        fsutil_err(err, errlen, "audit", "cannot create", a->log_path, errno);
        goto out;
    }
    if (fsutil_fsync_dir(a->dir, "audit", err, errlen) != 0)
        goto out;
    char id[AUDIT_KEY_ID_HEX_LEN + 1];
    audit_key_id(a->key, id);
    memset(a->last_mac, 0, sizeof(a->last_mac));
    a->seq = 0;
    a->size = 0;
    if (audit_append_locked(a, "create", json_pack("{s:s}", "key_id", id), NULL, err, errlen) ||
        audit_sync_all_locked(a, err, errlen))
        goto out;
    info->created = true;
    audit_hex(a->key, AUDIT_KEY_LEN, info->first_key_hex);
    snprintf(info->first_key_path, sizeof(info->first_key_path), "%s", first);
    rc = 0;
out:
    free(first);
    return rc;
}

/* The numbers N of the files DIR/audit.log.N, unsorted, into a malloc'd *nums. */
static int scan_rotated(const char *dir, unsigned long **nums, size_t *n, char *err, size_t errlen)
{
    *nums = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        fsutil_err(err, errlen, "audit", "cannot list", dir, errno);
        return -1;
    }
    size_t cap = 0;
    const size_t plen = sizeof(AUDIT_LOG_NAME ".") - 1;
    for (struct dirent *de; (de = readdir(d));) {
        const char *s = de->d_name;
        if (strncmp(s, AUDIT_LOG_NAME ".", plen) != 0 || !s[plen] || strlen(s + plen) > 9 ||
            strspn(s + plen, "0123456789") != strlen(s + plen))
            continue;
        /* Only the names the writer makes: the series and the rotation counter agree. */
        char canon[64];
        unsigned long num = strtoul(s + plen, NULL, 10);
        snprintf(canon, sizeof(canon), AUDIT_LOG_NAME ".%06lu", num);
        if (strcmp(canon, s) != 0)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            unsigned long *grown = realloc(*nums, cap * sizeof(**nums));
            if (!grown) {
                closedir(d);
                err_set(err, errlen, "audit: out of memory");
                return -1;
            }
            *nums = grown;
        }
        (*nums)[(*n)++] = num;
    }
    closedir(d);
    return 0;
}

static int cmp_ulong(const void *x, const void *y)
{
    unsigned long a = *(const unsigned long *)x, b = *(const unsigned long *)y;
    return a < b ? -1 : a > b;
}

/* Checks the place a log left off against head and the key, and takes it over. */
static int take_over(struct audit *a, const struct tail *t, const char *file, char *err,
                     size_t errlen)
{
    uint64_t hseq = 0;
    unsigned char hmac[AUDIT_MAC_LEN];
    int h = read_head(a->head_path, &hseq, hmac, err, errlen);
    if (h < 0)
        return -1;
    if (h == 1 && hseq > t->rec.seq) {
        err_set(err, errlen,
                "audit: %s ends at record %llu but %s says %llu was written: the log was "
                "truncated; run `tern audit verify`",
                file, (unsigned long long)t->rec.seq, a->head_path, (unsigned long long)hseq);
        return -1;
    }
    if (h == 1 && hseq == t->rec.seq && CRYPTO_memcmp(hmac, t->rec.mac, AUDIT_MAC_LEN) != 0) {
        err_set(err, errlen,
                "audit: the last record of %s is not the one %s names: it was replaced; run "
                "`tern audit verify`",
                file, a->head_path);
        return -1;
    }
    if (t->rec.epoch > a->epoch) {
        err_set(err, errlen,
                "audit: %s is at epoch %llu but the log reached epoch %llu: an old key file "
                "was put back; restore the current one",
                a->key_path, (unsigned long long)a->epoch, (unsigned long long)t->rec.epoch);
        return -1;
    }
    if (t->rec.epoch == a->epoch && t->have_prev &&
        !audit_record_mac_ok(&t->rec, t->line, a->key, t->prev)) {
        err_set(err, errlen,
                "audit: %s does not verify the last record of %s (wrong key file, or the "
                "record was edited); run `tern audit verify`",
                a->key_path, file);
        return -1;
    }
    a->seq = a->durable = t->rec.seq;
    memcpy(a->last_mac, t->rec.mac, sizeof(a->last_mac));
    memcpy(a->durable_mac, t->rec.mac, sizeof(a->durable_mac));
    a->last_us = audit_ts_us(t->rec.ts);
    return 0;
}

/* Opens an existing log whose current key is loaded. */
static int open_existing(struct audit *a, struct audit_open_info *info, const char *newest,
                         char *err, size_t errlen)
{
    struct tail t = {0}, rt = {0};
    int rc = -1;
    uint64_t dropped = 0;
    bool finish_rotation = false;
    if (access(a->log_path, F_OK) == 0 && read_tail(a->log_path, &t, err, errlen) != 0)
        goto out;
    const struct tail *use = &t;
    const char *file = a->log_path;
    if (!t.have) {
        /* audit.log missing or holding at most a torn line: a rotation cut short. */
        if (!newest) {
            bool head = access(a->head_path, F_OK) == 0;
            if (a->epoch == 0 && !head) { /* a creation cut short before any record */
                rc = create_log(a, info, err, errlen);
                goto out;
            }
            err_set(err, errlen,
                    "audit: %s exists but %s holds no records: the log was removed; move %s "
                    "aside to start a new log",
                    a->key_path, a->log_path, a->dir);
            goto out;
        }
        if (read_tail(newest, &rt, err, errlen) != 0)
            goto out;
        if (!rt.have || rt.good_end != rt.size) {
            err_set(err, errlen,
                    "audit: %s does not end in a whole record; run `tern audit verify`", newest);
            goto out;
        }
        use = &rt;
        file = newest;
        finish_rotation = true;
        dropped = t.size;
    }
    if (take_over(a, use, file, err, errlen) != 0)
        goto out;
    if (!finish_rotation && t.good_end != t.size) {
        /* A torn line past head was never synced, so never acknowledged: cut it, say so. */
        int fd = open(a->log_path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)t.good_end) != 0 || fsync(fd) != 0) {
            fsutil_err(err, errlen, "audit", "cannot cut the torn end of", a->log_path, errno);
            if (fd >= 0)
                close(fd);
            goto out;
        }
        close(fd);
        dropped = t.size - t.good_end;
    }
    a->fd = open(a->log_path,
                 O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (finish_rotation ? O_TRUNC : 0), 0600);
    if (a->fd < 0) {
        fsutil_err(err, errlen, "audit", "cannot open", a->log_path, errno);
        goto out;
    }
    a->size = finish_rotation ? 0 : t.good_end;
    if (finish_rotation) {
        char hex[AUDIT_MAC_HEX_LEN + 1], id[AUDIT_KEY_ID_HEX_LEN + 1];
        audit_hex(a->last_mac, AUDIT_MAC_LEN, hex);
        audit_key_id(a->key, id);
        json_t *f = json_pack("{s:s, s:s, s:s}", "prev_file", strrchr(newest, '/') + 1, "prev_mac",
                              hex, "key_id", id);
        if (fsutil_fsync_dir(a->dir, "audit", err, errlen) != 0 ||
            audit_append_locked(a, "rotate", f, NULL, err, errlen) != 0)
            goto out;
        info->finished_rotation = true;
    }
    if (audit_evolve_locked(a, "start", time(NULL), err, errlen) != 0)
        goto out;
    if (dropped && audit_append_locked(a, "recover",
                                       json_pack("{s:I, s:s}", "dropped_bytes", (json_int_t)dropped,
                                                 "file", AUDIT_LOG_NAME),
                                       NULL, err, errlen) != 0)
        goto out;
    info->dropped_bytes = dropped;
    rc = audit_sync_all_locked(a, err, errlen);
out:
    tail_free(&t);
    tail_free(&rt);
    return rc;
}

/* Takes audit/lock, so that a second writer (a second ternd, or `tern` while ternd runs)
 * is refused instead of forking the chain. */
/* flock, retried for up to ms: another writer (`tern` recording an admin action while ternd is
 * down, or ternd itself) holds the lock only for a moment. */
static int lock_within(int fd, unsigned ms)
{
    for (unsigned waited = 0;; waited += 10) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK || waited >= ms)
            return -1;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        errno = EWOULDBLOCK;
    }
}

static int take_lock(struct audit *a, char *err, size_t errlen)
{
    char *path = audit_path(a->dir, AUDIT_LOCK_NAME);
    if (!path) {
        err_set(err, errlen, "audit: out of memory");
        return -1;
    }
    a->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int rc = 0;
    if (a->lock_fd < 0) {
        fsutil_err(err, errlen, "audit", "cannot open", path, errno);
        rc = -1;
    } else if (lock_within(a->lock_fd, a->lock_wait_ms) != 0) {
        if (errno == EWOULDBLOCK)
            err_set(err, errlen,
                    "audit: another process has the log in %s open (is ternd running?)", a->dir);
        else
            fsutil_err(err, errlen, "audit", "cannot lock", path, errno);
        rc = -1;
    }
    free(path);
    return rc;
}

/* Opens or creates the log once the directory is locked. */
static int open_locked(struct audit *a, struct audit_open_info *info, char *err, size_t errlen)
{
    unsigned long *nums;
    size_t n;
    if (scan_rotated(a->dir, &nums, &n, err, errlen) != 0)
        return -1;
    unsigned long max = 0;
    for (size_t i = 0; i < n; i++)
        max = nums[i] > max ? nums[i] : max;
    free(nums);
    a->next_rot = max + 1;
    char name[64];
    snprintf(name, sizeof(name), AUDIT_LOG_NAME ".%06lu", max);
    char *newest = n ? audit_path(a->dir, name) : NULL;
    if (n && !newest) {
        err_set(err, errlen, "audit: out of memory");
        return -1;
    }
    int rc;
    if (access(a->key_path, F_OK) != 0 && errno == ENOENT) {
        struct stat st;
        bool records =
            n || access(a->head_path, F_OK) == 0 || (stat(a->log_path, &st) == 0 && st.st_size > 0);
        if (records) {
            err_set(err, errlen,
                    "audit: %s is missing but the log exists: new records cannot be chained; "
                    "verify it with the first key, then move %s aside to start a new log",
                    a->key_path, a->dir);
            rc = -1;
        } else {
            rc = create_log(a, info, err, errlen);
        }
    } else {
        rc = audit_key_load(a->key_path, &a->epoch, a->key, err, errlen);
        if (rc == 0)
            rc = open_existing(a, info, newest, err, errlen);
    }
    free(newest);
    return rc;
}

struct audit *audit_open(const struct audit_opts *o, struct audit_open_info *info, char *err,
                         size_t errlen)
{
    struct audit_open_info scratch;
    if (!info)
        info = &scratch;
    memset(info, 0, sizeof(*info));
    struct audit *a = calloc(1, sizeof(*a));
    if (!a) {
        err_set(err, errlen, "audit: out of memory");
        return NULL;
    }
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->fd = a->lock_fd = -1;
    a->epoch_seconds = o->epoch_seconds ? o->epoch_seconds : AUDIT_EPOCH_SECONDS;
    a->max_bytes = o->max_bytes;
    a->syslog = o->syslog;
    a->on_fsync = o->on_fsync;
    a->on_fsync_arg = o->on_fsync_arg;
    a->head_ms = o->head_ms ? o->head_ms : AUDIT_HEAD_MS;
    a->lock_wait_ms = o->lock_wait_ms;
    a->dir = strdup(o->dir);
    a->log_path = audit_path(o->dir, AUDIT_LOG_NAME);
    a->key_path = audit_path(o->dir, AUDIT_KEY_NAME);
    a->head_path = audit_path(o->dir, AUDIT_HEAD_NAME);
    bool made = false;
    if (!a->dir || !a->log_path || !a->key_path || !a->head_path) {
        err_set(err, errlen, "audit: out of memory");
        goto fail;
    }
    if (fsutil_make_dir(a->dir, &made, "audit", err, errlen) != 0 || take_lock(a, err, errlen) != 0)
        goto fail;
    a->next_evolve = time(NULL) + (time_t)a->epoch_seconds;
    if (a->syslog) /* before open_locked: its create/epoch/recover records are copied too */
        openlog("ternd-audit", LOG_PID | LOG_NDELAY, LOG_MAIL);
    if (open_locked(a, info, err, errlen) != 0)
        goto fail;
    char *first = audit_path(a->dir, AUDIT_FIRST_KEY_NAME);
    info->first_key_present = first && access(first, F_OK) == 0;
    free(first);
    info->seq = a->seq;
    info->epoch = a->epoch;
    return a;
fail:
    audit_free(a); /* it never opened: nothing to sync */
    return NULL;
}

int audit_series(const char *dir, char ***files, size_t *n, char *err, size_t errlen)
{
    unsigned long *nums;
    size_t count;
    *files = NULL;
    *n = 0;
    if (scan_rotated(dir, &nums, &count, err, errlen) != 0)
        return -1;
    if (count) /* nums is NULL without rotated files */
        qsort(nums, count, sizeof(*nums), cmp_ulong);
    char **out = calloc(count + 1, sizeof(*out));
    size_t k = 0;
    for (size_t i = 0; out && i < count; i++) {
        char name[64];
        snprintf(name, sizeof(name), AUDIT_LOG_NAME ".%06lu", nums[i]);
        if (!(out[k++] = audit_path(dir, name)))
            goto oom;
    }
    free(nums);
    nums = NULL;
    if (!out)
        goto oom;
    char *cur = audit_path(dir, AUDIT_LOG_NAME);
    if (!cur)
        goto oom;
    if (access(cur, F_OK) == 0)
        out[k++] = cur;
    else
        free(cur);
    if (k == 0) {
        free(out);
        err_set(err, errlen, "audit: no audit log in %s", dir);
        return -1;
    }
    *files = out;
    *n = k;
    return 0;
oom:
    free(nums);
    audit_series_free(out, k);
    err_set(err, errlen, "audit: out of memory");
    return -1;
}

void audit_series_free(char **files, size_t n)
{
    for (size_t i = 0; files && i < n; i++)
        free(files[i]);
    free(files);
}

/* Maildir++ quota accounting (quota.h): parsing and summing maildirsize, appending one delta line
 * per change, and recomputing the file from the messages in new/ and cur/ of every folder. */
#include "store/quota.h"

#include "util/err.h"
#include "util/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Recomputations whose directories changed while they were read are repeated this many times in
 * all; the last result is kept even then, as Maildir++ quotas are approximate by design. */
#define RECALC_TRIES 3
/* ".NAME/new" or ".NAME/cur" relative to the Maildir */
#define REL_MAX (NAME_MAX + 8)

/* Writes "quota: WHAT PATH: strerror; what to do". fsutil_err has the hints for the errors an admin
 * fixes by hand; the others get one that fits a file tern can rebuild. */
static void set_errno(char *err, size_t errlen, const char *what, const char *path, int errnum)
{
    switch (errnum) {
    case EACCES:
    case EPERM:
    case ENOSPC:
    case EDQUOT:
    case EROFS:
    case ENOENT:
    case ENOTDIR:
    case EMFILE:
    case ENFILE:
        fsutil_err(err, errlen, "quota", what, path, errnum);
        return;
    default:
        break;
    }
    char buf[128];
    const char *msg = strerror_r(errnum, buf, sizeof(buf));
    const char *hint =
        errnum == EISDIR || errnum == ELOOP || errnum == ENXIO
            ? "; something that is not a plain file is in the way: move it aside and tern "
              "rebuilds the quota file"
            : "; check the disk and the kernel log (dmesg); the quota file is rebuilt from the "
              "Maildir once it can be read";
    err_set(err, errlen, "quota: %s %s: %s%s", what, path, msg, hint);
}

/* Like set_errno for a path DIR/REL (REL may be "" for DIR itself, NAME may be NULL). */
static void set_errno_at(char *err, size_t errlen, const char *what, const char *dir,
                         const char *rel, const char *name, int errnum)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s%s%s%s%s", dir, *rel ? "/" : "", rel, name ? "/" : "",
             name ? name : "");
    set_errno(err, errlen, what, path, errnum);
}

/* DIR/maildirsize into out; -1 with a reason when DIR is missing or the path too long. */
static int file_path(const char *dir, char *out, size_t outlen, char *err, size_t errlen)
{
    if (!dir || !*dir) {
        err_set(err, errlen, "quota: no Maildir given; this is a bug in the caller");
        return -1;
    }
    int n = snprintf(out, outlen, "%s/%s", dir, QUOTA_FILE);
    if (n < 0 || (size_t)n >= outlen) {
        err_set(err, errlen, "quota: path too long: %.64s...; use a shorter data_dir", dir);
        return -1;
    }
    return 0;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- parsing ----------------------------------------------------------------------------------
 */

/* A signed total kept as two saturating sums, so that no input can overflow it. */
struct sum {
    uint64_t pos, neg;
};

static void sum_add(struct sum *s, bool negative, uint64_t v)
{
    if (negative)
        s->neg = add_sat(s->neg, v);
    else
        s->pos = add_sat(s->pos, v);
}

/* The total clamped to [0, UINT64_MAX]; false when it had to be clamped (negative or saturated),
 * which no honest file produces. */
static bool sum_total(const struct sum *s, uint64_t *out)
{
    if (s->pos == UINT64_MAX || s->neg == UINT64_MAX) {
        *out = s->pos == UINT64_MAX && s->neg != UINT64_MAX ? UINT64_MAX : 0;
        return false;
    }
    if (s->pos < s->neg) {
        *out = 0;
        return false;
    }
    *out = s->pos - s->neg;
    return true;
}

/* Decimal digits at *p (before end) into *v, saturating at UINT64_MAX. false when there is no
 * digit or the value overflowed. */
static bool parse_digits(const char **p, const char *end, uint64_t *v)
{
    const char *s = *p;
    uint64_t n = 0;
    bool ok = true;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (n > (UINT64_MAX - d) / 10) {
            n = UINT64_MAX;
            ok = false;
        } else {
            n = n * 10 + d;
        }
    }
    ok = ok && s != *p;
    *p = s;
    *v = n;
    return ok;
}

/* [-+]digits. false unless the value fits the signed 64 bits that Dovecot reads it into. */
static bool parse_signed(const char **p, const char *end, bool *negative, uint64_t *mag)
{
    *negative = false;
    if (*p < end && (**p == '-' || **p == '+')) {
        *negative = **p == '-';
        (*p)++;
    }
    if (!parse_digits(p, end, mag))
        return false;
    return *mag <= (uint64_t)INT64_MAX + (*negative ? 1u : 0u);
}

static const char *skip_blank(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    return s;
}

/* The first line: "" (no limits) or comma-separated NUMBERS / NUMBERC terms. false on anything
 * else; the terms that did parse are kept. */
static bool parse_definition(const char *s, const char *end, struct quota_usage *u)
{
    if (s == end)
        return true;
    bool ok = true;
    for (;;) {
        const char *t = memchr(s, ',', (size_t)(end - s));
        if (!t)
            t = end;
        const char *q = s;
        uint64_t v;
        if (parse_digits(&q, t, &v) && q + 1 == t && (*q == 'S' || *q == 'C')) {
            if (*q == 'S')
                u->limit_bytes = v;
            else
                u->limit_count = v;
        } else {
            ok = false;
        }
        if (t == end)
            return ok;
        s = t + 1;
    }
}

/* One "bytes count" line. Courier pads lines with blanks, so blanks around the numbers are fine. */
static bool parse_delta(const char *s, const char *end, struct sum *bytes, struct sum *count)
{
    bool neg_b, neg_c;
    uint64_t b, c;
    s = skip_blank(s, end);
    if (!parse_signed(&s, end, &neg_b, &b) || s == end || (*s != ' ' && *s != '\t'))
        return false;
    s = skip_blank(s, end);
    if (!parse_signed(&s, end, &neg_c, &c) || skip_blank(s, end) != end)
        return false;
    sum_add(bytes, neg_b, b);
    sum_add(count, neg_c, c);
    return true;
}

/* Sums the maildirsize held in buf[0, len) into u (limits included); *deltas gets the number of
 * delta lines. false when anything is not Maildir++: garbage or NUL bytes, a torn last line
 * (ignored: it may be an append still in flight), no delta line at all, a total that is negative
 * or does not fit. The caller then reports the file stale; u keeps what could be read. */
static bool parse_file(const char *buf, size_t len, struct quota_usage *u, size_t *deltas)
{
    *deltas = 0;
    const char *end = buf + len;
    const char *nl = memchr(buf, '\n', len);
    if (!nl)
        return false;
    bool ok = parse_definition(buf, nl, u);
    struct sum bytes = {0, 0}, count = {0, 0};
    for (const char *p = nl + 1; p < end; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            ok = false;
            break;
        }
        if (parse_delta(p, nl, &bytes, &count))
            (*deltas)++;
        else
            ok = false;
    }
    bool bytes_ok = sum_total(&bytes, &u->bytes);
    bool count_ok = sum_total(&count, &u->count);
    return ok && bytes_ok && count_ok && *deltas > 0;
}

/* ---- reading and appending ------------------------------------------------------------------- */

int quota_read(const char *dir, struct quota_usage *u, bool *stale, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    *stale = true;
    char path[PATH_MAX];
    if (file_path(dir, path, sizeof(path), err, errlen) != 0)
        return -1;
    /* O_NONBLOCK so that a FIFO planted as maildirsize cannot stall the event loop; O_NOFOLLOW so
     * a symlink is never read through (the recomputation replaces it). */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ELOOP)
            return 0;
        set_errno(err, errlen, "open", path, errno);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_errno(err, errlen, "stat", path, errno);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return 0;
    }
    /* Maildir++: read into a QUOTA_FILE_MAX buffer; filling it means the file is due anyway. */
    char buf[QUOTA_FILE_MAX];
    size_t len = 0;
    while (len < sizeof(buf)) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            set_errno(err, errlen, "read", path, errno);
            close(fd);
            memset(u, 0, sizeof(*u));
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);

    size_t deltas;
    bool ok = parse_file(buf, len, u, &deltas);
    time_t now = time(NULL);
    /* A timestamp far in the future would never age: treat it as old too. */
    bool old = st.st_mtime <= now - QUOTA_MAX_AGE || st.st_mtime > now + QUOTA_MAX_AGE;
    bool big = len >= QUOTA_FILE_MAX || st.st_size >= QUOTA_FILE_MAX;
    /* Maildir++: totals at or over the file's own limit are only trusted from a fresh summary
     * line, so a refusal never rests on deltas that may have raced. */
    bool over = (u->limit_bytes != 0 && u->bytes >= u->limit_bytes) ||
                (u->limit_count != 0 && u->count >= u->limit_count);
    *stale = !ok || big || old || (over && deltas > 1);
    return 0;
}

int quota_add(const char *dir, uint64_t limit, int64_t bytes, int64_t count, char *err,
              size_t errlen)
{
    if (bytes == 0 && count == 0)
        return 0;
    char path[PATH_MAX];
    if (file_path(dir, path, sizeof(path), err, errlen) != 0)
        return -1;
    /* No O_CREAT: a missing file is made by a recomputation, which already counts this change
     * because callers add only after it is in the Maildir. O_NOFOLLOW so a planted symlink never
     * makes us append to its target; O_NONBLOCK so a FIFO fails (ENXIO) instead of blocking. */
    int fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ELOOP || errno == ENXIO)
            return quota_recalc(dir, limit, NULL, err, errlen);
        set_errno(err, errlen, "open", path, errno);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_errno(err, errlen, "stat", path, errno);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return quota_recalc(dir, limit, NULL, err, errlen);
    }

    char line[64];
    int n = snprintf(line, sizeof(line), "%" PRId64 " %" PRId64 "\n", bytes, count);
    /* One write() per line: O_APPEND makes it land whole at the end, whoever else appends. */
    ssize_t w;
    do
        w = write(fd, line, (size_t)n);
    while (w < 0 && errno == EINTR);
    if (w != n) {
        int e = errno;
        close(fd);
        if (w < 0) {
            set_errno(err, errlen, "append to", path, e);
            return -1;
        }
        /* A torn line would merge with the next one into a plausible wrong number: drop the file
         * so that the next change recomputes it. */
        unlink(path);
        err_set(err, errlen,
                "quota: short write to %s (%zd of %d bytes, the disk may be full); the file was "
                "removed and is rebuilt at the next delivery",
                path, w, n);
        return -1;
    }
    if (close(fd) != 0) {
        set_errno(err, errlen, "close", path, errno);
        return -1;
    }
    return 0;
}

/* ---- recomputing ------------------------------------------------------------------------------
 */

struct scan {
    uint64_t bytes, count;
    uint64_t stamp; /* order-independent mix of every scanned directory's identity and mtime */
    size_t dirs;
};

/* splitmix64's finaliser: spreads every input bit over the output. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static void note_dir(struct scan *s, const struct stat *st)
{
    uint64_t h = mix((uint64_t)st->st_dev);
    h = mix(h ^ (uint64_t)st->st_ino);
    h = mix(h ^ (uint64_t)st->st_mtim.tv_sec);
    h = mix(h ^ (uint64_t)st->st_mtim.tv_nsec);
    s->stamp += h; /* a sum, so the order readdir returns folders in does not matter */
    s->dirs++;
}

/* The size in a name "ID,S=SIZE" or "ID,S=SIZE:2,FLAGS" (also ",S=SIZE,W=..."). false when the
 * name carries none or a malformed one: then the file is stat'ed. */
static bool size_from_name(const char *name, uint64_t *size)
{
    const char *p = strstr(name, ",S=");
    if (!p)
        return false;
    p += 3;
    if (!parse_digits(&p, p + strlen(p), size))
        return false;
    return *p == '\0' || *p == ':' || *p == ',';
}

/* Notes the directory REL (new/ or cur/ of a folder) of the Maildir open as root and, when files,
 * adds its messages to s. A missing directory counts as empty. Names starting with '.' are
 * skipped, as every Maildir reader does. */
static int scan_dir(int root, const char *dir, const char *rel, bool files, struct scan *s,
                    char *err, size_t errlen)
{
    int fd = openat(root, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        set_errno_at(err, errlen, "open", dir, rel, NULL, errno);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_errno_at(err, errlen, "stat", dir, rel, NULL, errno);
        close(fd);
        return -1;
    }
    note_dir(s, &st);
    if (!files) {
        close(fd);
        return 0;
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        set_errno_at(err, errlen, "open", dir, rel, NULL, errno);
        close(fd);
        return -1;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno != 0) {
                set_errno_at(err, errlen, "read", dir, rel, NULL, errno);
                rc = -1;
            }
            break;
        }
        if (e->d_name[0] == '.')
            continue;
        uint64_t size;
        if (!size_from_name(e->d_name, &size)) {
            struct stat m;
            if (fstatat(dirfd(d), e->d_name, &m, 0) != 0) {
                /* Expunged or moved while we read (or a dangling link): nothing to count. */
                if (errno == ENOENT || errno == ESTALE || errno == ELOOP)
                    continue;
                set_errno_at(err, errlen, "stat", dir, rel, e->d_name, errno);
                rc = -1;
                break;
            }
            if (!S_ISREG(m.st_mode))
                continue;
            size = (uint64_t)m.st_size;
        }
        s->bytes = add_sat(s->bytes, size);
        s->count++;
    }
    closedir(d);
    return rc;
}

/* Is the root entry e a Maildir++ folder: ".NAME" (not "." or "..NAME") and a real directory?
 * Symlinks are not followed, so a link to another Maildir is never counted here. */
static bool is_folder(int root, const struct dirent *e)
{
    if (e->d_name[0] != '.' || e->d_name[1] == '\0' || e->d_name[1] == '.')
        return false;
    if (e->d_type == DT_DIR)
        return true;
    if (e->d_type != DT_UNKNOWN)
        return false;
    struct stat st;
    return fstatat(root, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* Walks new/ and cur/ of DIR and of every folder into s (timestamps only unless files). */
static int scan_maildir(const char *dir, bool files, struct scan *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        set_errno(err, errlen, "open", dir, errno);
        return -1;
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        set_errno(err, errlen, "open", dir, errno);
        close(fd);
        return -1;
    }
    int root = dirfd(d);
    int rc = 0;
    if (scan_dir(root, dir, "new", files, s, err, errlen) != 0 ||
        scan_dir(root, dir, "cur", files, s, err, errlen) != 0)
        rc = -1;
    while (rc == 0) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno != 0) {
                set_errno(err, errlen, "read", dir, errno);
                rc = -1;
            }
            break;
        }
        if (!is_folder(root, e))
            continue;
        char rel[REL_MAX];
        snprintf(rel, sizeof(rel), "%s/new", e->d_name);
        if (scan_dir(root, dir, rel, files, s, err, errlen) != 0)
            rc = -1;
        snprintf(rel, sizeof(rel), "%s/cur", e->d_name);
        if (rc == 0 && scan_dir(root, dir, rel, files, s, err, errlen) != 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

/* Writes the definition line and one summary line to a fresh file in DIR/tmp/ (beside
 * maildirsize when tmp/ is missing) and renames it over path. No fsync: the file is a cache, and
 * one left empty or torn by a crash reads as stale and is rebuilt. */
static int write_file(const char *dir, const char *path, uint64_t limit, const struct scan *s,
                      char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s/tmp/%s.XXXXXX", dir, QUOTA_FILE);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        err_set(err, errlen, "quota: path too long: %.64s...; use a shorter data_dir", dir);
        return -1;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        snprintf(tmp, sizeof(tmp), "%s/%s.XXXXXX", dir, QUOTA_FILE);
        fd = mkostemp(tmp, O_CLOEXEC);
    }
    if (fd < 0) {
        set_errno(err, errlen, "create", tmp, errno);
        return -1;
    }
    /* "0S" rather than an empty line when there is no limit, as Dovecot writes it. */
    char buf[96];
    n = snprintf(buf, sizeof(buf), "%" PRIu64 "S\n%" PRIu64 " %" PRIu64 "\n", limit, s->bytes,
                 s->count);
    if (fsutil_write_all(fd, buf, (size_t)n) != 0) {
        set_errno(err, errlen, "write", tmp, errno);
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) != 0) {
        set_errno(err, errlen, "close", tmp, errno);
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        set_errno(err, errlen, "rename to", path, errno);
        unlink(tmp);
        return -1;
    }
    return 0;
}

int quota_recalc(const char *dir, uint64_t limit, struct quota_usage *u, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (file_path(dir, path, sizeof(path), err, errlen) != 0)
        return -1;
    struct scan s;
    for (int attempt = 1;; attempt++) {
        if (scan_maildir(dir, true, &s, err, errlen) != 0 ||
            write_file(dir, path, limit, &s, err, errlen) != 0)
            return -1;
        /* Maildir++: look at the directories again after the rename. A message moved from new/
         * to cur/ mid-scan is counted twice or not at all; a change shows in the timestamps. */
        struct scan again;
        if (scan_maildir(dir, false, &again, err, errlen) != 0)
            return -1;
        if ((again.stamp == s.stamp && again.dirs == s.dirs) || attempt == RECALC_TRIES)
            break;
    }
    if (u) {
        u->bytes = s.bytes;
        u->count = s.count;
        u->limit_bytes = limit;
        u->limit_count = 0;
    }
    return 0;
}

bool quota_full(const struct quota_usage *u, uint64_t limit)
{
    return limit != 0 && u->bytes >= limit;
}

bool quota_exceeded(const struct quota_usage *u, uint64_t limit, uint64_t bytes)
{
    return limit != 0 && (bytes > limit || u->bytes > limit - bytes);
}

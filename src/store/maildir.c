/* Durable Maildir delivery. Owns the mapping from a mailbox "user@domain" to its Maildir under
 * data_dir, the unique file names, and the protocol that makes a delivery all-or-nothing: the
 * message is written once into tmp/ of the first recipient, and at commit fsync'd, linked (or
 * copied, across filesystems) into new/ of every recipient as NAME,S=SIZE, each new/ fsync'd,
 * and only then reported delivered. A failure part-way removes every copy already made. */
#include "util/err.h"
#include "util/fsutil.h"
#include "store/maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* RFC 5321 §4.5.3.1 limits, so a path component never approaches NAME_MAX. */
#define LOCAL_MAX 64
#define DOMAIN_MAX 255
#define COPY_CHUNK 65536
#define OPEN_ATTEMPTS 8

struct maildir_msg {
    int fd;            /* the tmp file, open until commit; -1 after */
    size_t size;       /* bytes appended */
    bool failed;       /* an append or commit failed: the message can no longer be delivered */
    bool committed;    /* every recipient has it */
    bool tmp_exists;   /* tmp_path is ours to unlink */
    bool sync_parents; /* directories above new/ may be fresh: fsync them at commit */
    bool holds_fresh;  /* this message created directories and counts in fresh_dirs */
    char name[MAILDIR_ID_MAX];
    char failure[256]; /* why the message is doomed, repeated by commit */
    char *data_dir;
    char *tmp_path;
    size_t nbox;
    char **boxes; /* Maildir paths, deduplicated; boxes[0] holds the tmp file */
};

/* Messages whose begin created Maildir directories that no commit has fsync'd into their
 * parents yet. A begin that finds directories already there while this is non-zero cannot
 * know whether they are durable, so it fsyncs the parents too. */
static atomic_uint fresh_dirs;

/* Process-wide part of the unique name, so two messages in the same microsecond differ. */
static atomic_ulong name_counter;

/* Writes "maildir: WHAT PATH: strerror" into the caller's buffer. Thread-safe: commit reports
 * from workers. */
static void set_errno(char *err, size_t errlen, const char *what, const char *path, int errnum)
{
    fsutil_err(err, errlen, "maildir", what, path, errnum);
}

/* Copies s into out with anything but printable ASCII replaced, so hostile mailboxes never
 * put control bytes into a log line. */
static const char *printable(const char *s, char *out, size_t outlen)
{
    size_t i = 0;
    for (; s[i] && i + 1 < outlen; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    out[i] = '\0';
    return out;
}

/* Checks one side of a mailbox and appends it lowercased to out. Rejects what could leave
 * data_dir or name a hidden or special entry: '/', control bytes, a leading '.'. */
static int append_component(char *out, size_t outlen, size_t *used, const char *s, size_t len,
                            size_t max)
{
    if (len == 0 || len > max || s[0] == '.')
        return -1;
    if (*used + len + 1 > outlen)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '/' || c < 0x20 || c == 0x7f)
            return -1;
        out[(*used)++] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
    }
    out[*used] = '\0';
    return 0;
}

int maildir_path(const char *data_dir, const char *mailbox, char *out, size_t outlen)
{
    if (!data_dir || !mailbox || !out || outlen == 0) {
        errno = EINVAL;
        return -1;
    }
    /* The last '@' separates the domain: a quoted local part may itself contain '@'. */
    const char *at = strrchr(mailbox, '@');
    if (!at) {
        errno = EINVAL;
        return -1;
    }
    int n = snprintf(out, outlen, "%s/mail/", data_dir);
    if (n < 0 || (size_t)n >= outlen) {
        errno = ENAMETOOLONG;
        return -1;
    }
    size_t used = (size_t)n;
    const char *domain = at + 1;
    if (append_component(out, outlen, &used, domain, strlen(domain), DOMAIN_MAX) != 0)
        goto invalid;
    if (used + 2 > outlen)
        goto invalid;
    out[used++] = '/';
    if (append_component(out, outlen, &used, mailbox, (size_t)(at - mailbox), LOCAL_MAX) != 0)
        goto invalid;
    return 0;

invalid:
    out[0] = '\0';
    errno = EINVAL;
    return -1;
}

/* Creates one directory, accepting an existing one (or a symlink to one). */
static int make_dir(const char *path, bool *created, char *err, size_t errlen)
{
    return fsutil_make_dir(path, created, "maildir", err, errlen);
}

/* mkdir -p for the part of box below data_dir, then tmp/ new/ cur/. data_dir itself must
 * exist: a missing one is a configuration error, not something to paper over. */
static int make_maildir(const char *data_dir, const char *box, bool *created, char *err,
                        size_t errlen)
{
    char path[PATH_MAX];
    size_t len = strlen(box);
    if (len + sizeof("/tmp") > sizeof(path)) {
        err_set(err, errlen, "maildir: path too long: %.64s...", box);
        return -1;
    }
    memcpy(path, box, len + 1);
    for (size_t i = strlen(data_dir) + 1; i < len; i++) {
        if (path[i] != '/')
            continue;
        path[i] = '\0';
        int rc = make_dir(path, created, err, errlen);
        path[i] = '/';
        if (rc != 0)
            return -1;
    }
    if (make_dir(path, created, err, errlen) != 0)
        return -1;
    static const char *const subdirs[] = {"/tmp", "/new", "/cur"};
    for (size_t i = 0; i < 3; i++) {
        memcpy(path + len, subdirs[i], strlen(subdirs[i]) + 1);
        if (make_dir(path, created, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int maildir_make(const char *data_dir, const char *mailbox, char *out, size_t outlen, char *err,
                 size_t errlen)
{
    bool created = false;
    if (maildir_path(data_dir, mailbox, out, outlen) != 0) {
        err_set(err, errlen, "maildir: %s is not a mailbox name that fits a path", mailbox);
        return -1;
    }
    return make_maildir(data_dir, out, &created, err, errlen);
}

/* Appends host to out with the characters that would break a Maildir name escaped as \ooo:
 * '/' and ':' (the spec), ',' (Maildir++ fields), '\' and non-printables. Stops rather than
 * split an escape when out is full; uniqueness rests on time, pid and counter anyway. */
static void append_host(char *out, size_t outlen, const char *host)
{
    size_t used = strlen(out);
    for (const char *s = host; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool esc = c == '/' || c == ':' || c == ',' || c == '\\' || c < 0x21 || c > 0x7e;
        size_t need = esc ? 4 : 1;
        if (used + need + 1 > outlen)
            break;
        if (esc)
            snprintf(out + used, outlen - used, "\\%03o", c);
        else
            out[used] = (char)c;
        used += need;
    }
    out[used] = '\0';
}

/* Builds SECONDS.MusecPpidQcount.HOST (cr.yp.to/proto/maildir.html). */
static void make_name(char *out, size_t outlen, const char *host)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long q = atomic_fetch_add(&name_counter, 1);
    snprintf(out, outlen, "%lld.M%ldP%ldQ%lu.", (long long)ts.tv_sec, ts.tv_nsec / 1000L,
             (long)getpid(), q);
    append_host(out, outlen, host);
}

/* Duplicates a string into a fresh allocation, reporting failure in err. */
static char *dup_str(const char *s, char *err, size_t errlen)
{
    char *d = strdup(s);
    if (!d)
        err_set(err, errlen, "maildir: out of memory");
    return d;
}

/* Builds the deduplicated Maildir list and creates the directories. */
static int resolve_boxes(struct maildir_msg *m, const char *const *mailboxes, size_t n, char *err,
                         size_t errlen)
{
    m->boxes = calloc(n, sizeof(*m->boxes));
    if (!m->boxes) {
        err_set(err, errlen, "maildir: out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        if (!mailboxes[i] || maildir_path(m->data_dir, mailboxes[i], path, sizeof(path)) != 0) {
            char shown[80];
            err_set(err, errlen, "maildir: invalid mailbox \"%s\"",
                    mailboxes[i] ? printable(mailboxes[i], shown, sizeof(shown)) : "(null)");
            return -1;
        }
        bool dup = false;
        for (size_t j = 0; j < m->nbox && !dup; j++)
            dup = strcmp(m->boxes[j], path) == 0;
        if (dup)
            continue;
        if (!(m->boxes[m->nbox] = dup_str(path, err, errlen)))
            return -1;
        m->nbox++;
    }
    return 0;
}

/* Do tmp/, new/ and cur/ of every mailbox exist already? */
static bool boxes_exist(const struct maildir_msg *m)
{
    static const char *const sub[] = {"tmp", "new", "cur"};
    for (size_t i = 0; i < m->nbox; i++)
        for (size_t k = 0; k < 3; k++) {
            char path[PATH_MAX];
            struct stat st;
            int n = snprintf(path, sizeof path, "%s/%s", m->boxes[i], sub[k]);
            if (n < 0 || (size_t)n >= sizeof path || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
                return false;
        }
    return true;
}

/* Opens a fresh tmp file in the first Maildir, retrying with a new name if one is taken (by a
 * process that had our pid before, say). */
static int open_tmp(struct maildir_msg *m, const char *host, char *err, size_t errlen)
{
    char path[PATH_MAX];
    for (int attempt = 0; attempt < OPEN_ATTEMPTS; attempt++) {
        make_name(m->name, sizeof(m->name), host);
        int n = snprintf(path, sizeof(path), "%s/tmp/%s", m->boxes[0], m->name);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            err_set(err, errlen, "maildir: path too long in %.64s...", m->boxes[0]);
            return -1;
        }
        m->fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (m->fd >= 0) {
            m->tmp_exists = true;
            m->tmp_path = dup_str(path, err, errlen);
            return m->tmp_path ? 0 : -1;
        }
        if (errno != EEXIST)
            break;
    }
    set_errno(err, errlen, "open", path, errno);
    return -1;
}

struct maildir_msg *maildir_begin(const char *data_dir, const char *hostname,
                                  const char *const *mailboxes, size_t n, char *id, size_t idlen,
                                  char *err, size_t errlen)
{
    if (!data_dir || !mailboxes || n == 0) {
        err_set(err, errlen, "maildir: no data_dir or no recipients");
        return NULL;
    }
    char host[256];
    if (!hostname || !*hostname) {
        if (gethostname(host, sizeof(host)) != 0 || !host[0])
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        hostname = host;
    }

    struct maildir_msg *m = calloc(1, sizeof(*m));
    if (!m) {
        err_set(err, errlen, "maildir: out of memory");
        return NULL;
    }
    m->fd = -1;
    if (!(m->data_dir = dup_str(data_dir, err, errlen)))
        goto fail;

    /* Only once every mailbox is known to be valid, so a bad one creates nothing. */
    if (resolve_boxes(m, mailboxes, n, err, errlen) != 0)
        goto fail;
    if (boxes_exist(m)) {
        /* made by an earlier begin: durable unless its commit is still to come */
        m->sync_parents = atomic_load(&fresh_dirs) > 0;
    } else {
        /* Counted before mkdir so that a concurrent begin that sees our directories already
         * existing also sees the count and fsyncs their parents. Begins run on several
         * workers at once: only those that may create count, or every begin would sync. */
        atomic_fetch_add(&fresh_dirs, 1);
        m->holds_fresh = true;
        bool created = false;
        for (size_t i = 0; i < m->nbox; i++)
            if (make_maildir(m->data_dir, m->boxes[i], &created, err, errlen) != 0)
                goto fail;
        if (created) {
            m->sync_parents = true;
        } else {
            m->holds_fresh = false;
            m->sync_parents = atomic_fetch_sub(&fresh_dirs, 1) > 1;
        }
    }

    if (open_tmp(m, hostname, err, errlen) != 0)
        goto fail;
    if (id && idlen > 0) {
        if (strlen(m->name) >= idlen) {
            err_set(err, errlen, "maildir: id buffer too small for %s", m->name);
            goto fail;
        }
        memcpy(id, m->name, strlen(m->name) + 1);
    }
    return m;

fail:
    maildir_free(m);
    return NULL;
}

size_t maildir_keep(struct maildir_msg *m, const char *const *mailboxes, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < m->nbox; i++) {
        bool keep = false;
        for (size_t k = 0; k < n && !keep; k++) {
            char path[PATH_MAX];
            keep = maildir_path(m->data_dir, mailboxes[k], path, sizeof(path)) == 0 &&
                   strcmp(path, m->boxes[i]) == 0;
        }
        if (keep)
            m->boxes[w++] = m->boxes[i];
        else
            free(m->boxes[i]);
    }
    m->nbox = w;
    return w;
}

void maildir_new_id(char *out, size_t outlen, const char *hostname)
{
    char host[256];
    if (!hostname || !*hostname) {
        if (gethostname(host, sizeof(host)) != 0 || !host[0])
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        hostname = host;
    }
    make_name(out, outlen, hostname);
}

/* Marks the message undeliverable, keeping the reason for commit. */
static void doom(struct maildir_msg *m, const char *reason)
{
    if (!m->failed) {
        /* Truncation is fine: the reason only has to name the first failure. */
        size_t n = strnlen(reason, sizeof(m->failure) - 1);
        memcpy(m->failure, reason, n);
        m->failure[n] = '\0';
    }
    m->failed = true;
}

int maildir_append(struct maildir_msg *m, const void *buf, size_t len, char *err, size_t errlen)
{
    if (m->failed) {
        err_set(err, errlen, "%s", m->failure);
        return -1;
    }
    if (m->committed || m->fd < 0) {
        err_set(err, errlen, "maildir: append to %s after commit", m->name);
        return -1;
    }
    if (fsutil_write_all(m->fd, buf, len) != 0) {
        set_errno(m->failure, sizeof(m->failure), "write", m->tmp_path, errno);
        m->failed = true;
        err_set(err, errlen, "%s", m->failure);
        return -1;
    }
    m->size += len;
    return 0;
}

/* fsyncs a directory so that entries created or removed in it survive a crash. */
static int fsync_dir(const char *path, char *err, size_t errlen)
{
    return fsutil_fsync_dir(path, "maildir", err, errlen);
}

/* Makes the chain of directories above each new/ durable: Maildir, domain, mail/, data_dir. */
static int sync_parents(const struct maildir_msg *m, char *err, size_t errlen)
{
    char path[PATH_MAX];
    for (size_t i = 0; i < m->nbox; i++) {
        snprintf(path, sizeof(path), "%s", m->boxes[i]);
        if (fsync_dir(path, err, errlen) != 0)
            return -1;
        *strrchr(path, '/') = '\0'; /* the domain directory */
        if (fsync_dir(path, err, errlen) != 0)
            return -1;
    }
    snprintf(path, sizeof(path), "%s/mail", m->data_dir);
    if (fsync_dir(path, err, errlen) != 0 || fsync_dir(m->data_dir, err, errlen) != 0)
        return -1;
    return 0;
}

/* Copies src into box/tmp/FINAL, fsyncs it and renames it to dst: the cross-filesystem
 * stand-in for link(). Leaves nothing behind in tmp/ on failure. */
static int copy_into(const struct maildir_msg *m, const char *box, const char *final,
                     const char *dst, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/tmp/%s", box, final);
    int in = open(m->tmp_path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        set_errno(err, errlen, "open", m->tmp_path, errno);
        return -1;
    }
    int out = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (out < 0) {
        set_errno(err, errlen, "open", tmp, errno);
        close(in);
        return -1;
    }
    char *buf = malloc(COPY_CHUNK);
    size_t total = 0;
    int rc = -1;
    if (!buf) {
        err_set(err, errlen, "maildir: out of memory copying to %s", tmp);
        goto done;
    }
    for (;;) {
        ssize_t r = read(in, buf, COPY_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            set_errno(err, errlen, "read", m->tmp_path, errno);
            goto done;
        }
        if (r == 0)
            break;
        if (fsutil_write_all(out, buf, (size_t)r) != 0) {
            set_errno(err, errlen, "write", tmp, errno);
            goto done;
        }
        total += (size_t)r;
    }
    if (total != m->size) {
        err_set(err, errlen, "maildir: copy of %s has %zu bytes, expected %zu", m->tmp_path, total,
                m->size);
        goto done;
    }
    if (fsync(out) != 0) {
        set_errno(err, errlen, "fsync", tmp, errno);
        goto done;
    }
    rc = 0;
done:
    free(buf);
    close(in);
    if (close(out) != 0 && rc == 0) {
        set_errno(err, errlen, "close", tmp, errno);
        rc = -1;
    }
    /* rename() replaces silently, but dst carries our unique name so nothing is lost. */
    if (rc == 0 && rename(tmp, dst) != 0) {
        set_errno(err, errlen, "rename to", dst, errno);
        rc = -1;
    }
    if (rc != 0)
        unlink(tmp);
    return rc;
}

/* Removes the first n new/ entries made by a failed commit and fsyncs their directories, so
 * no recipient keeps a copy. Problems are appended to the reason already in err. */
static void rollback(const struct maildir_msg *m, size_t n, const char *final, char *err,
                     size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        char why[512] = "";
        snprintf(path, sizeof(path), "%s/new/%s", m->boxes[i], final);
        if (unlink(path) != 0 && errno != ENOENT)
            set_errno(why, sizeof(why), "rollback unlink", path, errno);
        else {
            snprintf(path, sizeof(path), "%s/new", m->boxes[i]);
            fsync_dir(path, why, sizeof(why));
        }
        if (why[0] && err && errlen) {
            size_t used = strlen(err);
            if (used + 3 < errlen)
                snprintf(err + used, errlen - used, "; %s", why);
        }
    }
}

int maildir_commit(struct maildir_msg *m, char *err, size_t errlen)
{
    if (m->committed) {
        err_set(err, errlen, "maildir: %s already committed", m->name);
        return -1;
    }
    if (m->failed) {
        err_set(err, errlen, "%s", m->failure);
        return -1;
    }
    char local_err[512];
    if (!err || errlen == 0) {
        err = local_err;
        errlen = sizeof(local_err);
    }

    if (fsync(m->fd) != 0) {
        set_errno(err, errlen, "fsync", m->tmp_path, errno);
        goto fail;
    }
    int fd = m->fd;
    m->fd = -1;
    if (close(fd) != 0) {
        set_errno(err, errlen, "close", m->tmp_path, errno);
        goto fail;
    }
    if (m->sync_parents && sync_parents(m, err, errlen) != 0)
        goto fail;

    char final[MAILDIR_ID_MAX + 32];
    snprintf(final, sizeof(final), "%s,S=%zu", m->name, m->size);
    size_t linked = 0; /* boxes with an entry in new/, to remove if a later one fails */
    bool ok = true;
    for (size_t i = 0; ok && i < m->nbox; i++) {
        const char *box = m->boxes[i];
        char dst[PATH_MAX];
        int n = snprintf(dst, sizeof(dst), "%s/new/%s", box, final);
        if (n < 0 || (size_t)n >= sizeof(dst)) {
            err_set(err, errlen, "maildir: path too long in %.64s...", box);
            ok = false;
            break;
        }
        if (link(m->tmp_path, dst) != 0) {
            if (errno != EXDEV) {
                set_errno(err, errlen, "link to", dst, errno);
                ok = false;
                break;
            }
            if (copy_into(m, box, final, dst, err, errlen) != 0) {
                ok = false;
                break;
            }
        }
        /* The entry exists from here on: count it before the fsync so that a failed fsync
         * rolls it back too. */
        linked++;
        dst[strlen(dst) - strlen(final) - 1] = '\0';
        ok = fsync_dir(dst, err, errlen) == 0;
    }
    if (!ok) {
        rollback(m, linked, final, err, errlen);
        goto fail;
    }

    if (m->holds_fresh) {
        m->holds_fresh = false;
        atomic_fetch_sub(&fresh_dirs, 1);
    }
    m->committed = true;
    /* Every recipient has a durable copy; a tmp file we fail to remove is only litter that
     * Maildir readers clean up, so it does not undo the delivery. */
    if (unlink(m->tmp_path) == 0)
        m->tmp_exists = false;
    return 0;

fail:
    doom(m, err);
    return -1;
}

void maildir_free(struct maildir_msg *m)
{
    if (!m)
        return;
    if (m->fd >= 0)
        close(m->fd);
    if (m->tmp_exists)
        unlink(m->tmp_path);
    if (m->holds_fresh)
        atomic_fetch_sub(&fresh_dirs, 1);
    for (size_t i = 0; i < m->nbox; i++)
        free(m->boxes[i]);
    free(m->boxes);
    free(m->tmp_path);
    free(m->data_dir);
    free(m);
}

size_t maildir_size(const struct maildir_msg *m)
{
    return m->size;
}

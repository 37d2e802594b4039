/* The mechanics of editing an admin's text file in place (see editfile.h), shared by the users
 * file (auth/userfile.c) and the mailboxes file (conf/mboxfile.c): the lock is an flock on
 * NAME.lock, so that a crashed editor never leaves it held; the new text goes to a temporary file
 * beside the original, so that rename replaces it in one step; what the text says is the
 * caller's business. */
#include "util/editfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fsutil.h"

int editfile_buf_add(struct editfile_buf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int editfile_buf_str(struct editfile_buf *b, const char *s)
{
    return editfile_buf_add(b, s, strlen(s));
}

bool editfile_is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\f' || c == '\v';
}

bool editfile_next_line(const struct editfile_buf *b, size_t *pos, struct editfile_line *l)
{
    while (*pos < b->len) {
        l->start = *pos;
        const char *nl = memchr(b->p + l->start, '\n', b->len - l->start);
        l->end = nl ? (size_t)(nl - b->p) : b->len;
        l->next = nl ? l->end + 1 : b->len;
        *pos = l->next;
        l->lead = l->start;
        while (l->lead < l->end && editfile_is_blank(b->p[l->lead]))
            l->lead++;
        l->tail = l->end;
        while (l->tail > l->lead &&
               (editfile_is_blank(b->p[l->tail - 1]) || b->p[l->tail - 1] == '\r'))
            l->tail--;
        if (l->lead < l->tail && b->p[l->lead] != '#')
            return true;
    }
    return false;
}

int editfile_write_temp(const char *dir, const char *name, const void *content, size_t len,
                        mode_t mode, uid_t uid, gid_t gid, char *tmp, size_t tmplen, char *err,
                        size_t errlen)
{
    if (snprintf(tmp, tmplen, "%s/.%s.XXXXXX", dir, name) >= (int)tmplen) {
        err_set(err, errlen, "%s/%s: path too long; use a shorter folder", dir, name);
        return -1;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        err_set(err, errlen, "cannot create a file in %s: %s; check the folder's permissions", dir,
                strerror(errno));
        return -1;
    }
    /* fchown before fchmod: changing the owner may clear set-id bits the mode should keep */
    if ((uid != (uid_t)-1 && fchown(fd, uid, gid) < 0) || fchmod(fd, mode) < 0 ||
        fsutil_write_all(fd, content, len) < 0 || fsync(fd) < 0) {
        err_set(err, errlen, "cannot write %s: %s; check free space and permissions", tmp,
                strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) < 0) {
        err_set(err, errlen, "cannot write %s: %s; check free space", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int editfile_sync_dir(const char *dir)
{
    char err[256];
    return fsutil_fsync_dir(dir, "tern", err, sizeof err);
}

/* Copies s into dst (cap bytes), writing `to` wherever `from` occurs. */
static void replace_all(char *dst, size_t cap, const char *s, const char *from, const char *to)
{
    size_t n = 0, flen = strlen(from), tlen = strlen(to);
    while (*s && n + 1 < cap) {
        if (flen && strncmp(s, from, flen) == 0) {
            size_t k = tlen < cap - 1 - n ? tlen : cap - 1 - n;
            memcpy(dst + n, to, k);
            n += k;
            s += flen;
        } else {
            dst[n++] = *s++;
        }
    }
    dst[n] = '\0';
}

void editfile_invalid_reason(char *out, size_t outlen, const char *path, const char *tmp,
                             const char *msgs)
{
    char head[PATH_MAX + 128];
    snprintf(head, sizeof(head), "nothing changed: %s would no longer load:\n", path);
    size_t hl = strlen(head) < outlen ? strlen(head) : outlen - 1;
    memcpy(out, head, hl);
    replace_all(out + hl, outlen - hl, msgs, tmp, path);
    size_t ml = strlen(out);
    while (ml > 0 && out[ml - 1] == '\n')
        out[--ml] = '\0';
}

/* The file resolved, its folder and base name, its lock, and whether it exists yet. */
struct target {
    char path[PATH_MAX];
    char dir[PATH_MAX];
    const char *base;
    char lock[PATH_MAX + 8];
    bool exists;
};

/* Where an optional file that does not exist yet will be: its folder resolved, its own name
 * kept. An errno other than ENOENT when it cannot be made there. */
static int absent_target(const char *path, struct target *t)
{
    struct stat st;
    int why = errno;
    char dir[PATH_MAX], real[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (slash == dir)
        strcpy(dir, "/");
    else if (slash)
        *slash = '\0';
    if (why == ENOENT && lstat(path, &st) == 0)
        why = ELOOP; /* a symlink to nowhere is not ours to replace */
    if (why == ENOENT && (!base[0] || !realpath(slash ? dir : ".", real)))
        why = base[0] ? errno : EISDIR;
    if (why == ENOENT && snprintf(t->path, sizeof(t->path), "%s/%s", strcmp(real, "/") ? real : "",
                                  base) >= (int)sizeof(t->path))
        why = ENAMETOOLONG;
    return why;
}

static int target_of(const struct editfile *f, struct target *t, char *err, size_t errlen)
{
    t->exists = realpath(f->path, t->path) != NULL;
    if (!t->exists) {
        int why = f->optional ? absent_target(f->path, t) : errno;
        if (why != ENOENT || !f->optional) {
            err_set(err, errlen, "cannot find%s the %s %s: %s; check %s = in tern.conf%s",
                    f->optional ? " or create" : "", f->noun, f->path, strerror(why), f->key,
                    f->optional ? " and that its folder exists" : "");
            return -1;
        }
    }
    strcpy(t->dir, t->path);
    char *slash = strrchr(t->dir, '/'); /* absolute by now */
    t->base = t->path + (slash - t->dir) + 1;
    if (slash == t->dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    if (snprintf(t->lock, sizeof(t->lock), "%s.lock", t->path) >= (int)sizeof(t->lock)) {
        err_set(err, errlen, "%s: path too long; move the %s", t->path, f->noun);
        return -1;
    }
    return 0;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Takes the edit lock, waiting up to the timeout. Polling rather than a blocking flock: an alarm
 * signal to bound the wait would be the process's, not ours. Made by root, the lock goes to the
 * file's owner uid so that it opens for them next time. The fd, or -1 with *fail and err. */
static int lock_take(const struct editfile *f, const struct target *t, uid_t uid, gid_t gid,
                     enum editfile_fail *fail, char *err, size_t errlen)
{
    *fail = EDITFILE_IO;
    int fd = open(t->lock, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        err_set(err, errlen, "cannot open the lock file %s: %s; check the folder's permissions",
                t->lock, strerror(errno));
        return -1;
    }
    struct stat ls;
    if (geteuid() == 0 && uid != (uid_t)-1 && uid != 0 && fstat(fd, &ls) == 0 && ls.st_uid == 0)
        (void)fchown(fd, uid, gid);
    long long deadline = now_ms() + f->lock_timeout_ms;
    long wait_ms = 5;
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            err_set(err, errlen, "cannot lock %s: %s", t->lock, strerror(errno));
            close(fd);
            return -1;
        }
        if (now_ms() >= deadline) {
            *fail = EDITFILE_LOCKED;
            err_set(err, errlen,
                    "another edit of %s has held %s for over %d s; try again, or look for a stuck "
                    "process with fuser %s",
                    t->path, t->lock, f->lock_timeout_ms / 1000, t->lock);
            close(fd);
            return -1;
        }
        struct timespec ts = {0, wait_ms * 1000000L};
        nanosleep(&ts, NULL);
        if (wait_ms < 50)
            wait_ms *= 2;
    }
    return fd;
}

/* Reads the whole file into b (which ends up at least empty); its mode and owner go to st. An
 * optional file that does not exist (yet) reads as empty. */
static int read_file(const struct editfile *f, const char *path, struct editfile_buf *b,
                     struct stat *st, char *err, size_t errlen)
{
    int fd = -1;
    if (editfile_buf_add(b, "", 0) < 0)
        goto nomem;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && f->optional)
        return 0;
    if (fd < 0 || fstat(fd, st) < 0) {
        err_set(err, errlen, "cannot read %s: %s; check %sthat you may read it", path,
                strerror(errno), f->optional ? "" : "it exists and ");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    for (;;) {
        char chunk[65536];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || b->len + (size_t)(n > 0 ? n : 0) > EDITFILE_MAX) {
            if (n < 0)
                err_set(err, errlen, "cannot read %s: %s", path, strerror(errno));
            else
                err_set(err, errlen, "%s is larger than %u MiB; is it really the %s?", path,
                        EDITFILE_MAX >> 20, f->noun);
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        if (editfile_buf_add(b, chunk, (size_t)n) < 0)
            goto nomem;
    }
    close(fd);
    return 0;
nomem:
    err_set(err, errlen, "out of memory reading %s", path);
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Writes out over t's file: temporary file, the caller's check, rename, flush the folder. */
static int replace(const struct target *t, const struct stat *st, const struct editfile_buf *out,
                   const struct editfile_ops *ops, enum editfile_fail *fail, char *err,
                   size_t errlen)
{
    char tmp[PATH_MAX + 32];
    /* Root keeps the owner (a new file: the configured one); others cannot give files away. */
    uid_t uid = geteuid() == 0 ? st->st_uid : (uid_t)-1;
    if (editfile_write_temp(t->dir, t->base, out->p ? out->p : "", out->len, st->st_mode & 07777,
                            uid, st->st_gid, tmp, sizeof(tmp), err, errlen) < 0)
        return -1;
    if (ops->check && ops->check(ops->ctx, tmp, t->path) < 0) {
        *fail = EDITFILE_CALLER;
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, t->path) < 0) {
        err_set(err, errlen, "cannot replace %s: %s; check the folder's permissions", t->path,
                strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (editfile_sync_dir(t->dir) < 0) {
        err_set(err, errlen, "%s was changed, but flushing %s failed: %s; run sync", t->path,
                t->dir, strerror(errno));
        return -1;
    }
    return 0;
}

static void wipe(struct editfile_buf *b)
{
    if (b->p)
        explicit_bzero(b->p, b->len);
    free(b->p);
}

int editfile_edit(const struct editfile *f, const struct editfile_ops *ops,
                  enum editfile_fail *fail, char *err, size_t errlen)
{
    struct target t;
    struct stat st = {.st_mode = f->mode, .st_uid = f->uid, .st_gid = f->gid};
    *fail = EDITFILE_IO;
    if (target_of(f, &t, err, errlen) < 0)
        return -1;
    if (t.exists && stat(t.path, &st) < 0) {
        err_set(err, errlen, "cannot read %s: %s", t.path, strerror(errno));
        return -1;
    }
    int lockfd = lock_take(f, &t, st.st_uid, st.st_gid, fail, err, errlen);
    if (lockfd < 0)
        return -1;
    struct editfile_buf old = {0}, out = {0};
    int r = read_file(f, t.path, &old, &st, err, errlen);
    if (r == 0) {
        r = ops->apply(ops->ctx, t.path, &old, &out);
        if (r < 0)
            *fail = EDITFILE_CALLER;
        else if (r > 0)
            r = replace(&t, &st, &out, ops, fail, err, errlen);
    }
    wipe(&old);
    wipe(&out);
    close(lockfd); /* releases the lock */
    if (r < 0)
        return -1;
    *fail = EDITFILE_OK;
    return 0;
}

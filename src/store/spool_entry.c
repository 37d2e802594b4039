/* The spool one entry at a time, for the queue manager and the admin (spool.h): reading an entry
 * by id from queue/ or hold/, listing hold/, opening a message, removing an entry, moving it to
 * hold/ and back, and sweeping what a crash left between two steps. The envelope is spool.c's
 * (version 1); it is read here with the same checks as spool.c's lister, which walks queue/
 * only. Every step that adds or removes a name fsyncs its folder, in the order that keeps an
 * entry complete in exactly one folder at every moment: .env last in, first out. */
#include "store/spool.h"
#include "store/spool_priv.h"

#include "util/err.h"
#include "util/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes "spool: WHAT PATH: strerror" (and a hint) into err. */
static void set_errno(char *err, size_t errlen, const char *what, const char *path, int errnum)
{
    fsutil_err(err, errlen, SPOOL_WHO, what, path, errnum);
}

/* -1 with errno e; the reason is already in err. */
static int fail(int e)
{
    errno = e;
    return -1;
}

/* The id is not echoed: it came from outside and may hold what a terminal obeys. */
static int bad_id(char *err, size_t errlen)
{
    err_set(err, errlen,
            "spool: not a queue id (ids look like 1732491234-123456-4242-0-1a2b: digits, a-f "
            "and '-'; tern queue list shows them)");
    return fail(EINVAL);
}

bool spool_id_valid(const char *id)
{
    if (!id)
        return false;
    size_t len = strnlen(id, SPOOL_ID_MAX);
    return len > 0 && len < SPOOL_ID_MAX && strspn(id, "0123456789abcdef-") == len;
}

int spool_path(char *out, size_t outlen, const char *data_dir, const char *sub, const char *id,
               const char *ext, char *err, size_t errlen)
{
    if (!data_dir || !*data_dir) {
        err_set(err, errlen, "spool: no data_dir; set data_dir in tern.conf");
        return fail(EINVAL);
    }
    int n;
    if (!sub)
        n = snprintf(out, outlen, "%s/spool", data_dir);
    else if (!id)
        n = snprintf(out, outlen, "%s/spool/%s", data_dir, sub);
    else
        n = snprintf(out, outlen, "%s/spool/%s/%s.%s", data_dir, sub, id, ext);
    if (n < 0 || (size_t)n >= outlen) {
        err_set(err, errlen, "spool: data_dir %.64s... is too long for queue file names", data_dir);
        return fail(ENAMETOOLONG);
    }
    return 0;
}

int spool_read_file(const char *path, size_t max, char **buf, size_t *len, char *err, size_t errlen)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        set_errno(err, errlen, "open", path, e);
        return fail(e);
    }
    struct stat st;
    char *b = NULL;
    int e = 0;
    if (fstat(fd, &st) != 0) {
        e = errno;
        set_errno(err, errlen, "stat", path, e);
    } else if (!S_ISREG(st.st_mode)) {
        e = EINVAL;
        err_set(err, errlen, "spool: %s is not a plain file; move it out of the spool", path);
    } else if (st.st_size > (off_t)max) {
        e = EFBIG;
        err_set(err, errlen,
                "spool: %s is %lld bytes, more than tern ever writes there; move it out of the "
                "spool",
                path, (long long)st.st_size);
    } else if (!(b = malloc((size_t)st.st_size + 1))) {
        e = ENOMEM;
        err_set(err, errlen, "spool: out of memory reading %s", path);
    }
    size_t got = 0;
    while (!e && got < (size_t)st.st_size) {
        ssize_t r = read(fd, b + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            e = errno;
            set_errno(err, errlen, "read", path, e);
        } else if (r == 0) {
            break; /* it shrank since fstat: what is there is what we parse */
        } else {
            got += (size_t)r;
        }
    }
    close(fd);
    if (e) {
        free(b);
        return fail(e);
    }
    b[got] = '\0';
    *buf = b;
    *len = got;
    return 0;
}

int spool_give_back(int fd, const char *data_dir, const char *path, char *err, size_t errlen)
{
    if (geteuid() != 0)
        return 0;
    char dir[PATH_MAX];
    struct stat st;
    if (spool_path(dir, sizeof(dir), data_dir, NULL, NULL, NULL, err, errlen) != 0)
        return -1;
    if (stat(dir, &st) != 0) {
        int e = errno;
        set_errno(err, errlen, "stat", dir, e);
        return fail(e);
    }
    if (st.st_uid == 0)
        return 0; /* root's spool: root's files */
    if (fchown(fd, st.st_uid, st.st_gid) != 0) {
        int e = errno;
        err_set(err, errlen,
                "spool: cannot give %s to uid %u: %s; chown it to the user ternd "
                "runs as",
                path, (unsigned)st.st_uid, strerror(e));
        return fail(e);
    }
    return 0;
}

/* ---- reading entries ------------------------------------------------------------------------ */

/* Reads the complete entry id of SUB/ into e. */
static int load_entry(const char *data_dir, const char *sub, const char *id, struct spool_entry *e,
                      char *err, size_t errlen)
{
    char path[PATH_MAX];
    memset(e, 0, sizeof(*e));
    if (spool_path(path, sizeof(path), data_dir, sub, id, "env", err, errlen) != 0)
        return -1;
    char *buf;
    size_t len;
    if (spool_read_file(path, SPOOL_ENV_FILE_MAX, &buf, &len, err, errlen) != 0) {
        if (errno == ENOENT)
            err_set(err, errlen, "spool: no entry %s in %s/", id, sub);
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    int rc = root ? spool_parse_env(root, id, e) : -1;
    json_decref(root);
    if (rc != 0) {
        free(e->rcpts);
        e->rcpts = NULL;
        e->nrcpts = 0;
        err_set(err, errlen,
                "spool: %s is not an envelope tern can read (or memory ran out); "
                "tern queue delete %s removes the entry",
                path, id);
        return fail(EBADMSG);
    }
    struct stat st;
    if (spool_path(path, sizeof(path), data_dir, sub, id, "msg", err, errlen) != 0 ||
        lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        free(e->rcpts);
        e->rcpts = NULL;
        e->nrcpts = 0;
        err_set(err, errlen,
                "spool: entry %s in %s/ has no message file, so it is not complete; tern queue "
                "delete %s removes what is left",
                id, sub, id);
        return fail(ENOENT);
    }
    e->held = strcmp(sub, "hold") == 0;
    return 0;
}

int spool_entry_load(const char *data_dir, const char *id, bool held, struct spool_entry *e,
                     char *err, size_t errlen)
{
    memset(e, 0, sizeof(*e));
    if (!spool_id_valid(id))
        return bad_id(err, errlen);
    return load_entry(data_dir, held ? "hold" : "queue", id, e, err, errlen);
}

int spool_list_held(const char *data_dir, int (*fn)(void *ctx, const struct spool_entry *e),
                    void *ctx, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    if (spool_path(dir, sizeof(dir), data_dir, "hold", NULL, NULL, err, errlen) != 0)
        return -1;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0; /* nothing was ever held */
        set_errno(err, errlen, "open folder", dir, errno);
        return -1;
    }
    struct spool_entry *v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0) {
                set_errno(err, errlen, "read folder", dir, errno);
                rc = -1;
            }
            break;
        }
        size_t len = strlen(de->d_name);
        if (len < 5 || len - 4 >= SPOOL_ID_MAX || strcmp(de->d_name + len - 4, ".env") != 0)
            continue;
        char stem[SPOOL_ID_MAX];
        memcpy(stem, de->d_name, len - 4);
        stem[len - 4] = '\0';
        if (!spool_id_valid(stem))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct spool_entry *nv = realloc(v, ncap * sizeof(*v));
            if (!nv) {
                err_set(err, errlen, "spool: out of memory listing %s", dir);
                rc = -1;
                break;
            }
            v = nv;
            cap = ncap;
        }
        /* Incomplete or malformed entries are skipped, as spool_list skips them. */
        char skip[256];
        if (load_entry(data_dir, "hold", stem, &v[n], skip, sizeof(skip)) == 0)
            n++;
    }
    closedir(d);
    if (rc == 0 && n > 1)
        qsort(v, n, sizeof(*v), spool_cmp_entry);
    int listed = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        listed++;
        if (fn && fn(ctx, &v[i]) != 0)
            break;
    }
    for (size_t i = 0; i < n; i++)
        free(v[i].rcpts);
    free(v);
    return rc == 0 ? listed : -1;
}

int spool_msg_open(const char *data_dir, const char *id, char *err, size_t errlen)
{
    if (!spool_id_valid(id))
        return bad_id(err, errlen);
    static const char *const subs[] = {"queue", "hold"};
    for (size_t i = 0; i < 2; i++) {
        char path[PATH_MAX];
        if (spool_path(path, sizeof(path), data_dir, subs[i], id, "msg", err, errlen) != 0)
            return -1;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0 && errno == ENOENT)
            continue;
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            int e = errno;
            set_errno(err, errlen, fd < 0 ? "open" : "stat", path, e);
            if (fd >= 0)
                close(fd);
            return fail(e);
        }
        if (!S_ISREG(st.st_mode)) {
            close(fd);
            err_set(err, errlen, "spool: %s is not a plain file; move it out of the spool", path);
            return fail(EINVAL);
        }
        /* Blocking again: a plain file never blocks, but a reader should not see EAGAIN. */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        return fd;
    }
    err_set(err, errlen, "spool: no message %s in the queue or on hold", id);
    return fail(ENOENT);
}

/* ---- removing and moving ---------------------------------------------------------------- */

/* Does path exist (not followed)? -1 with errno and a reason when that cannot be told. */
static int present(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        return 1;
    if (errno == ENOENT)
        return 0;
    int e = errno;
    set_errno(err, errlen, "stat", path, e);
    return fail(e);
}

/* Which folder holds the .env of id: "queue", "hold", or NULL with errno (ENOENT: neither). */
static const char *where(const char *data_dir, const char *id, char *err, size_t errlen)
{
    static const char *const subs[] = {"queue", "hold"};
    for (size_t i = 0; i < 2; i++) {
        char path[PATH_MAX];
        if (spool_path(path, sizeof(path), data_dir, subs[i], id, "env", err, errlen) != 0)
            return NULL;
        int p = present(path, err, errlen);
        if (p < 0)
            return NULL;
        if (p)
            return subs[i];
    }
    err_set(err, errlen, "spool: no entry %s in the queue or on hold", id);
    errno = ENOENT;
    return NULL;
}

int spool_remove(const char *data_dir, const char *id, char *err, size_t errlen)
{
    if (!spool_id_valid(id))
        return bad_id(err, errlen);
    const char *sub = where(data_dir, id, err, errlen);
    if (!sub)
        return -1;
    char path[PATH_MAX], why[PATH_MAX + 256];
    if (spool_path(path, sizeof(path), data_dir, sub, id, "env", err, errlen) != 0)
        return -1;
    /* The envelope first: without it whatever is left is an incomplete entry, never sent. */
    if (unlink(path) != 0) {
        int e = errno;
        if (e == ENOENT)
            err_set(err, errlen, "spool: no entry %s in the queue or on hold", id);
        else
            set_errno(err, errlen, "unlink", path, e);
        return fail(e);
    }
    int first = 0;
    static const char *const rest[] = {"state", "msg"};
    for (size_t i = 0; i < 2; i++) {
        if (spool_path(path, sizeof(path), data_dir, sub, id, rest[i], why, sizeof(why)) == 0 &&
            unlink(path) == 0)
            continue;
        if (errno == ENOENT || first)
            continue;
        first = errno;
        set_errno(why, sizeof(why), "unlink", path, first);
        err_set(err, errlen, "spool: entry %s is removed, but %s (tern's start sweeps it)", id,
                why + strlen(SPOOL_WHO ": "));
    }
    if (spool_path(path, sizeof(path), data_dir, sub, NULL, NULL, why, sizeof(why)) == 0 &&
        fsutil_fsync_dir(path, SPOOL_WHO, why, sizeof(why)) != 0 && !first) {
        first = EIO;
        err_set(err, errlen, "spool: entry %s is removed, but may come back after a crash: %s", id,
                why);
    }
    return first ? fail(first) : 0;
}

/* Makes DATA_DIR/spool/SUB (path) if missing, giving it to the spool's owner and making it
 * durable in spool/. */
static int make_folder(const char *data_dir, const char *path, char *err, size_t errlen)
{
    bool created = false;
    if (fsutil_make_dir(path, &created, SPOOL_WHO, err, errlen) != 0)
        return -1;
    if (!created)
        return 0;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        set_errno(err, errlen, "open folder", path, e);
        return fail(e);
    }
    int rc = spool_give_back(fd, data_dir, path, err, errlen);
    close(fd);
    char spool[PATH_MAX];
    if (rc == 0 &&
        (spool_path(spool, sizeof(spool), data_dir, NULL, NULL, NULL, err, errlen) != 0 ||
         fsutil_fsync_dir(spool, SPOOL_WHO, err, errlen) != 0))
        rc = -1;
    return rc;
}

/* Hard-links src to dst, replacing a dst left by a crash (the caller knows no .env is beside
 * it, so it belongs to no entry). *made says whether dst is now ours; a missing src is not an
 * error (made false, and a stale dst is removed). */
static int put_link(const char *src, const char *dst, bool *made, char *err, size_t errlen)
{
    *made = false;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (link(src, dst) == 0) {
            *made = true;
            return 0;
        }
        int e = errno;
        if (e != EEXIST && e != ENOENT) {
            set_errno(err, errlen, "link to", dst, e);
            return fail(e);
        }
        if (e == ENOENT) {
            int p = present(src, err, errlen);
            if (p < 0)
                return -1;
            if (p) { /* then it is dst's folder that is missing */
                set_errno(err, errlen, "link to", dst, e);
                return fail(e);
            }
        }
        if (unlink(dst) != 0 && errno != ENOENT) {
            e = errno;
            set_errno(err, errlen, "unlink stale", dst, e);
            return fail(e);
        }
        if (e == ENOENT)
            return 0;
    }
    err_set(err, errlen, "spool: %s keeps coming back; is another tern moving the same entry?",
            dst);
    return fail(EEXIST);
}

/* Paths of one entry in one folder. */
struct place {
    char dir[PATH_MAX], env[PATH_MAX], msg[PATH_MAX], state[PATH_MAX];
};

static int place_of(struct place *p, const char *data_dir, const char *sub, const char *id,
                    char *err, size_t errlen)
{
    return spool_path(p->dir, sizeof(p->dir), data_dir, sub, NULL, NULL, err, errlen) == 0 &&
                   spool_path(p->env, sizeof(p->env), data_dir, sub, id, "env", err, errlen) == 0 &&
                   spool_path(p->msg, sizeof(p->msg), data_dir, sub, id, "msg", err, errlen) == 0 &&
                   spool_path(p->state, sizeof(p->state), data_dir, sub, id, "state", err,
                              errlen) == 0
               ? 0
               : -1;
}

/* Moves entry id from a's folder (`from`) to b's (`to`) as spool.h says; the paths are filled. */
static int move_paths(struct place *a, struct place *b, const char *data_dir, const char *id,
                      const char *from, const char *to, char *err, size_t errlen)
{
    int in_from = present(a->env, err, errlen);
    int in_to = in_from < 0 ? -1 : present(b->env, err, errlen);
    if (in_from < 0 || in_to < 0)
        return -1;
    if (!in_from && in_to)
        return 1;
    if (!in_from) {
        err_set(err, errlen, "spool: no entry %s in the queue or on hold", id);
        return fail(ENOENT);
    }
    if (in_to) {
        err_set(err, errlen,
                "spool: entry %s has an envelope in both %s/ and %s/, which tern never makes; "
                "move one of them out of the spool",
                id, from, to);
        return fail(EEXIST);
    }
    if (make_folder(data_dir, b->dir, err, errlen) != 0)
        return -1;
    /* The message and state into `to` first: without its .env the entry is ignored there. */
    bool msg_made = false, state_made = false;
    char why[PATH_MAX + 256];
    if (put_link(a->msg, b->msg, &msg_made, err, errlen) != 0)
        return -1;
    if (!msg_made) {
        err_set(err, errlen,
                "spool: entry %s in %s/ has no message file, so it is not complete; tern queue "
                "delete %s removes what is left",
                id, from, id);
        return fail(ENOENT);
    }
    int e = 0;
    if (put_link(a->state, b->state, &state_made, err, errlen) != 0)
        e = errno;
    else if (fsutil_fsync_dir(b->dir, SPOOL_WHO, err, errlen) != 0)
        e = EIO;
    else if (rename(a->env, b->env) != 0) { /* the one step that moves the entry */
        e = errno;
        set_errno(err, errlen, "rename to", b->env, e);
    }
    if (e) { /* nothing has moved: take back the links */
        unlink(b->msg);
        if (state_made)
            unlink(b->state);
        fsutil_fsync_dir(b->dir, SPOOL_WHO, why, sizeof(why));
        return fail(e);
    }
    int rc = 0;
    if (fsutil_fsync_dir(b->dir, SPOOL_WHO, err, errlen) != 0 ||
        fsutil_fsync_dir(a->dir, SPOOL_WHO, err, errlen) != 0)
        rc = -1; /* moved, but a crash might undo it: worth saying */
    /* What stays behind in `from` is litter now (no .env): removed, or swept at start. */
    unlink(a->msg);
    unlink(a->state);
    fsutil_fsync_dir(a->dir, SPOOL_WHO, why, sizeof(why));
    return rc ? fail(EIO) : 0;
}

static int move_entry(const char *data_dir, const char *id, const char *from, const char *to,
                      char *err, size_t errlen)
{
    if (!spool_id_valid(id))
        return bad_id(err, errlen);
    struct place *p = malloc(2 * sizeof(*p)); /* 8 paths: too much for a worker's stack */
    if (!p) {
        err_set(err, errlen, "spool: out of memory");
        return fail(ENOMEM);
    }
    int rc = -1;
    if (place_of(&p[0], data_dir, from, id, err, errlen) == 0 &&
        place_of(&p[1], data_dir, to, id, err, errlen) == 0)
        rc = move_paths(&p[0], &p[1], data_dir, id, from, to, err, errlen);
    int e = errno;
    free(p);
    errno = e;
    return rc;
}

int spool_hold(const char *data_dir, const char *id, char *err, size_t errlen)
{
    return move_entry(data_dir, id, "queue", "hold", err, errlen);
}

int spool_release(const char *data_dir, const char *id, char *err, size_t errlen)
{
    return move_entry(data_dir, id, "hold", "queue", err, errlen);
}

/* ---- sweeping ------------------------------------------------------------------------------ */

/* Is name STEM.msg or STEM.state with a valid stem? Then the STEM.env name goes into env. */
static bool entry_part(const char *name, char *env, size_t envlen)
{
    size_t len = strlen(name), ext = 0;
    if (len > 4 && strcmp(name + len - 4, ".msg") == 0)
        ext = 4;
    else if (len > 6 && strcmp(name + len - 6, ".state") == 0)
        ext = 6;
    if (!ext || len - ext >= SPOOL_ID_MAX)
        return false;
    char stem[SPOOL_ID_MAX];
    memcpy(stem, name, len - ext);
    stem[len - ext] = '\0';
    if (!spool_id_valid(stem))
        return false;
    snprintf(env, envlen, "%s.env", stem);
    return true;
}

/* Removes the stale files of one folder: in tmp/ (litter false) any plain file not written
 * since before; elsewhere .msg and .state without their .env, unchanged since before. */
static int sweep_dir(const char *dir, bool litter, time_t before, int *removed, char *err,
                     size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        set_errno(err, errlen, "open folder", dir, errno);
        return -1;
    }
    int rc = 0, here = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char env[SPOOL_ID_MAX + 8];
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (litter && (!entry_part(de->d_name, env, sizeof(env)) ||
                       fstatat(dirfd(d), env, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT))
            continue; /* not ours, or part of an entry (or we cannot tell) */
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        /* ctime too for litter: a link or rename just now makes an old message new again. */
        if (st.st_mtime >= before || (litter && st.st_ctime >= before))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0) {
            here++;
        } else if (errno != ENOENT && rc == 0) {
            char path[PATH_MAX + 256];
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            set_errno(err, errlen, "unlink", path, errno);
            rc = -1;
        }
    }
    closedir(d);
    *removed += here;
    if (here && fsutil_fsync_dir(dir, SPOOL_WHO, rc ? NULL : err, rc ? 0 : errlen) != 0)
        rc = -1;
    return rc;
}

int spool_sweep(const char *data_dir, time_t now, char *err, size_t errlen)
{
    static const char *const subs[] = {"tmp", "queue", "hold"};
    time_t before = now - SPOOL_STALE_SECONDS;
    int removed = 0, rc = 0;
    for (size_t i = 0; i < 3; i++) {
        char dir[PATH_MAX];
        char *e = rc ? NULL : err;
        size_t elen = rc ? 0 : errlen; /* the first reason is kept */
        if (spool_path(dir, sizeof(dir), data_dir, subs[i], NULL, NULL, e, elen) != 0 ||
            sweep_dir(dir, i > 0, before, &removed, e, elen) != 0)
            rc = -1;
    }
    return rc ? -1 : removed;
}

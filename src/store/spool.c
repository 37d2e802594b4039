/* The outbound queue on disk: DATA_DIR/spool/{tmp,queue}/. Owns the queue ids, the envelope
 * format (ID.env, a JSON document written with jansson so hostile addresses are escaped
 * correctly) and the protocol that makes an entry appear all at once: the message is written
 * into tmp/, and at commit fsync'd, its envelope written and fsync'd beside it, both renamed into
 * queue/ (the .env last: its presence is what makes an entry complete) and queue/ fsync'd. A
 * failure part-way removes whatever reached queue/. Also reads the queue back, oldest first. */
#include "store/spool.h"
#include "store/spool_priv.h"

#include "util/fsutil.h"
#include "util/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define WHO "spool"
#define ENV_VERSION 1
#define ID_MAX (sizeof(((struct spool_entry *)0)->id))
#define ADDR_MAX 320 /* spool_entry's address fields, NUL included: 319 bytes of address */
#define OPEN_ATTEMPTS 8

struct spool_msg {
    int fd;            /* tmp/ID.msg, open until commit; -1 after */
    uint64_t size;     /* bytes appended */
    bool failed;       /* an append or commit failed, or the entry was withdrawn */
    bool committed;    /* the entry is complete in queue/ */
    bool msg_in_tmp;   /* tmp/ID.msg is ours to unlink */
    bool env_in_tmp;   /* tmp/ID.env is ours to unlink */
    bool sync_parents; /* spool/ or its subfolders may be fresh: fsync spool/ and data_dir */
    bool holds_fresh;  /* this message created folders and counts in fresh_dirs */
    char id[ID_MAX];
    char failure[512]; /* why the message is doomed, repeated by append and commit */
    char *data_dir;
    char *spool_dir; /* DATA_DIR/spool */
    json_t *env;     /* the envelope, complete but for its size, built at begin */
};

/* Messages whose begin created spool folders that no commit has fsync'd into their parents
 * yet; as in maildir.c, a begin that finds the folders while this is non-zero cannot know they
 * are durable, so it fsyncs the parents too. */
static atomic_uint fresh_dirs;

/* Process-wide part of the id, so two messages in the same microsecond differ. */
static atomic_ulong id_counter;

/* Writes "spool: WHAT PATH: strerror" (and a hint) into the caller's buffer. */
static void set_errno(char *err, size_t errlen, const char *what, const char *path, int errnum)
{
    fsutil_err(err, errlen, WHO, what, path, errnum);
}

/* Builds DATA_DIR/spool/SUB/ID.EXT (SUB and EXT optional) into out; begin has checked that
 * the longest of these fits in PATH_MAX. */
static void entry_path(const struct spool_msg *m, const char *sub, const char *ext, char *out,
                       size_t outlen)
{
    if (!ext)
        snprintf(out, outlen, "%s/%s", m->spool_dir, sub);
    else
        snprintf(out, outlen, "%s/%s/%s.%s", m->spool_dir, sub, m->id, ext);
}

/* SECONDS-USEC-PID-COUNT-RRRR: Maildir's recipe without its dots, and four random hex digits
 * so that a pid and counter reused after a restart within the same microsecond still differ.
 * usec is zero-padded so ids of one second sort as strings too. Returns the seconds. */
static time_t make_id(char *out, size_t outlen)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long count = atomic_fetch_add(&id_counter, 1);
    unsigned short r;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (unsigned short)((unsigned long)ts.tv_nsec ^
                             (count * 40503ul)); /* the rest is unique */
    snprintf(out, outlen, "%lld-%06ld-%ld-%lu-%04x", (long long)ts.tv_sec, ts.tv_nsec / 1000L,
             (long)getpid(), count, (unsigned)r);
    return ts.tv_sec;
}

/* Is name (len bytes) shaped like one of our ids? Keeps anything that could climb out of
 * queue/ or confuse a listing out of it. */
static bool valid_id(const char *name, size_t len)
{
    if (len == 0 || len >= ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-'))
            return false;
    }
    return true;
}

/* A JSON string for one address, checked against the limits spool_list can read back. */
static json_t *addr_string(const char *s, const char *what, size_t index, char *err, size_t errlen)
{
    char name[48];
    if (index)
        snprintf(name, sizeof(name), "%s %zu", what, index);
    else
        snprintf(name, sizeof(name), "%s", what);
    if (!s) {
        err_set(err, errlen, "spool: %s is missing (NULL)", name);
        return NULL;
    }
    size_t len = strlen(s);
    if (len >= ADDR_MAX) {
        err_set(err, errlen, "spool: %s is %zu bytes, more than the %d an envelope holds", name,
                len, ADDR_MAX - 1);
        return NULL;
    }
    /* jansson refuses invalid UTF-8 here; the session accepts 8-bit addresses only with
     * SMTPUTF8, so this only catches a caller's bug, but must: an envelope that could not be
     * parsed back would be a message silently lost. */
    json_t *j = json_string(s);
    if (!j)
        err_set(err, errlen, "spool: %s is not valid UTF-8 (or memory ran out)", name);
    return j;
}

/* Sets key in obj to v, taking v (jansson releases it even on failure). A NULL v means its
 * maker failed and wrote the reason; otherwise -1 means memory ran out. */
static int put(json_t *obj, const char *key, json_t *v, char *err, size_t errlen)
{
    if (!v)
        return -1;
    if (json_object_set_new(obj, key, v) != 0) {
        err_set(err, errlen, "spool: out of memory building the envelope");
        return -1;
    }
    return 0;
}

/* A JSON value made by jansson, with the reason for a NULL (memory) written. */
static json_t *made(json_t *v, char *err, size_t errlen)
{
    if (!v)
        err_set(err, errlen, "spool: out of memory building the envelope");
    return v;
}

/* Builds the envelope with every field in its final order; id, queued and size are filled in
 * later (setting an existing key keeps its place). */
static json_t *env_new(const char *from, const char *auth_user, const char *const *rcpts,
                       size_t nrcpts, char *err, size_t errlen)
{
    json_t *env = made(json_object(), err, errlen);
    json_t *list = made(json_array(), err, errlen);
    if (!env || !list)
        goto fail;
    for (size_t i = 0; i < nrcpts; i++) {
        json_t *r = addr_string(rcpts[i], "recipient", i + 1, err, errlen);
        if (!r)
            goto fail;
        if (json_array_append_new(list, r) != 0) {
            err_set(err, errlen, "spool: out of memory building the envelope");
            goto fail;
        }
    }
    bool ok = put(env, "version", made(json_integer(ENV_VERSION), err, errlen), err, errlen) == 0 &&
              put(env, "id", made(json_string(""), err, errlen), err, errlen) == 0 &&
              put(env, "from", addr_string(from, "sender", 0, err, errlen), err, errlen) == 0 &&
              put(env, "auth_user", addr_string(auth_user, "auth_user", 0, err, errlen), err,
                  errlen) == 0 &&
              put(env, "queued", made(json_integer(0), err, errlen), err, errlen) == 0 &&
              put(env, "size", made(json_integer(0), err, errlen), err, errlen) == 0;
    json_t *l = list;
    list = NULL;
    if (!ok) {
        json_decref(l);
        goto fail;
    }
    if (put(env, "rcpts", l, err, errlen) != 0) /* takes l, even when it fails */
        goto fail;
    return env;

fail:
    json_decref(list);
    json_decref(env);
    return NULL;
}

/* Creates spool/, spool/tmp/ and spool/queue/ under data_dir (which must exist: a missing one
 * is a configuration error, not something to paper over). */
static int make_dirs(struct spool_msg *m, bool *created, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (fsutil_make_dir(m->spool_dir, created, WHO, err, errlen) != 0)
        return -1;
    entry_path(m, "tmp", NULL, path, sizeof(path));
    if (fsutil_make_dir(path, created, WHO, err, errlen) != 0)
        return -1;
    entry_path(m, "queue", NULL, path, sizeof(path));
    return fsutil_make_dir(path, created, WHO, err, errlen);
}

/* Opens a fresh tmp/ID.msg, retrying with a new id if one is taken. Returns the id's time. */
static int open_tmp(struct spool_msg *m, time_t *queued, char *err, size_t errlen)
{
    char path[PATH_MAX];
    for (int attempt = 0; attempt < OPEN_ATTEMPTS; attempt++) {
        *queued = make_id(m->id, sizeof(m->id));
        entry_path(m, "tmp", "msg", path, sizeof(path));
        m->fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (m->fd >= 0) {
            m->msg_in_tmp = true;
            return 0;
        }
        if (errno != EEXIST)
            break;
    }
    set_errno(err, errlen, "open", path, errno);
    return -1;
}

struct spool_msg *spool_begin(const char *data_dir, const char *from, const char *const *rcpts,
                              size_t nrcpts, const char *auth_user, char *id, size_t idlen,
                              char *err, size_t errlen)
{
    if (!data_dir || !*data_dir) {
        err_set(err, errlen, "spool: no data_dir; set data_dir in tern.conf");
        return NULL;
    }
    if (!rcpts || nrcpts == 0) {
        err_set(err, errlen, "spool: a message without recipients cannot be queued");
        return NULL;
    }
    if (nrcpts > SPOOL_RCPTS_MAX) {
        err_set(err, errlen, "spool: %zu recipients, but an envelope holds %d; split them", nrcpts,
                SPOOL_RCPTS_MAX);
        return NULL;
    }
    /* Longest path: DATA_DIR/spool/queue/ID.msg with the longest id. */
    if (strlen(data_dir) + sizeof("/spool/queue/.msg") + ID_MAX > PATH_MAX) {
        err_set(err, errlen, "spool: data_dir %.64s... is too long for queue file names", data_dir);
        return NULL;
    }

    struct spool_msg *m = calloc(1, sizeof(*m));
    if (!m) {
        err_set(err, errlen, "spool: out of memory");
        return NULL;
    }
    m->fd = -1;
    /* Everything about the envelope is checked before anything touches the disk. */
    if (!(m->env = env_new(from, auth_user ? auth_user : "", rcpts, nrcpts, err, errlen)))
        goto fail;
    if (!(m->data_dir = strdup(data_dir)) || asprintf(&m->spool_dir, "%s/spool", data_dir) < 0) {
        m->spool_dir = NULL;
        err_set(err, errlen, "spool: out of memory");
        goto fail;
    }

    /* Counted before mkdir so a concurrent begin that sees our folders already there also
     * sees the count and fsyncs their parents. */
    atomic_fetch_add(&fresh_dirs, 1);
    m->holds_fresh = true;
    bool created = false;
    if (make_dirs(m, &created, err, errlen) != 0)
        goto fail;
    if (created) {
        m->sync_parents = true;
    } else {
        m->holds_fresh = false;
        m->sync_parents = atomic_fetch_sub(&fresh_dirs, 1) > 1;
    }

    time_t queued;
    if (open_tmp(m, &queued, err, errlen) != 0)
        goto fail;
    if (put(m->env, "id", made(json_string(m->id), err, errlen), err, errlen) != 0 ||
        put(m->env, "queued", made(json_integer((json_int_t)queued), err, errlen), err, errlen) !=
            0)
        goto fail;
    if (id && idlen > 0) {
        if (strlen(m->id) >= idlen) {
            err_set(err, errlen, "spool: id buffer too small for %s", m->id);
            goto fail;
        }
        memcpy(id, m->id, strlen(m->id) + 1);
    }
    return m;

fail:
    spool_free(m);
    return NULL;
}

/* Marks the message undeliverable, keeping the first reason for later calls. */
static void doom(struct spool_msg *m, const char *reason)
{
    if (!m->failed)
        snprintf(m->failure, sizeof(m->failure), "%s", reason);
    m->failed = true;
}

int spool_append(struct spool_msg *m, const void *buf, size_t len, char *err, size_t errlen)
{
    if (m->failed) {
        err_set(err, errlen, "%s", m->failure);
        return -1;
    }
    if (m->committed || m->fd < 0) {
        err_set(err, errlen, "spool: append to %s after commit", m->id);
        return -1;
    }
    if (fsutil_write_all(m->fd, buf, len) != 0) {
        char path[PATH_MAX];
        entry_path(m, "tmp", "msg", path, sizeof(path));
        set_errno(m->failure, sizeof(m->failure), "write", path, errno);
        m->failed = true;
        err_set(err, errlen, "%s", m->failure);
        return -1;
    }
    m->size += len;
    return 0;
}

/* Writes the envelope to tmp/ID.env and fsyncs it. */
static int write_env(struct spool_msg *m, char *err, size_t errlen)
{
    char path[PATH_MAX];
    entry_path(m, "tmp", "env", path, sizeof(path));
    if (put(m->env, "size", made(json_integer((json_int_t)m->size), err, errlen), err, errlen) != 0)
        return -1;
    char *text = json_dumps(m->env, JSON_COMPACT);
    if (!text) {
        err_set(err, errlen, "spool: out of memory writing the envelope of %s", m->id);
        return -1;
    }
    int rc = -1;
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_errno(err, errlen, "open", path, errno);
        goto done;
    }
    m->env_in_tmp = true;
    if (fsutil_write_all(fd, text, strlen(text)) != 0 || fsutil_write_all(fd, "\n", 1) != 0) {
        set_errno(err, errlen, "write", path, errno);
        close(fd);
        goto done;
    }
    if (fsync(fd) != 0) {
        set_errno(err, errlen, "fsync", path, errno);
        close(fd);
        goto done;
    }
    if (close(fd) != 0) {
        set_errno(err, errlen, "close", path, errno);
        goto done;
    }
    rc = 0;
done:
    free(text);
    return rc;
}

/* Appends "; REASON" to err, for problems met while cleaning up after a first failure. */
static void add_reason(char *err, size_t errlen, const char *why)
{
    if (!why[0] || !err || errlen == 0)
        return;
    size_t used = strlen(err);
    if (used + 3 < errlen)
        snprintf(err + used, errlen - used, "; %s", why);
}

/* Unlinks queue/ID.EXT when it got there; true if something was removed. Problems go to err. */
static bool remove_queued(const struct spool_msg *m, const char *ext, char *err, size_t errlen)
{
    char path[PATH_MAX], why[PATH_MAX + 128] = "";
    entry_path(m, "queue", ext, path, sizeof(path));
    if (unlink(path) == 0)
        return true;
    if (errno != ENOENT) {
        set_errno(why, sizeof(why), "rollback unlink", path, errno);
        add_reason(err, errlen, why);
    }
    return false;
}

/* Undoes a commit that failed after a rename: the .env first, so that a crash half-way never
 * leaves a complete entry, then the .msg, then makes the removal durable. */
static void rollback(struct spool_msg *m, bool env_queued, bool msg_queued, char *err,
                     size_t errlen)
{
    bool removed = false;
    if (env_queued)
        removed |= remove_queued(m, "env", err, errlen);
    if (msg_queued)
        removed |= remove_queued(m, "msg", err, errlen);
    if (removed) {
        char path[PATH_MAX], why[PATH_MAX + 128] = "";
        entry_path(m, "queue", NULL, path, sizeof(path));
        fsutil_fsync_dir(path, WHO, why, sizeof(why));
        add_reason(err, errlen, why);
    }
}

/* Unlinks the tmp/ files this message still owns. */
static void remove_tmp(struct spool_msg *m)
{
    char path[PATH_MAX];
    if (m->msg_in_tmp) {
        entry_path(m, "tmp", "msg", path, sizeof(path));
        if (unlink(path) == 0 || errno == ENOENT)
            m->msg_in_tmp = false;
    }
    if (m->env_in_tmp) {
        entry_path(m, "tmp", "env", path, sizeof(path));
        if (unlink(path) == 0 || errno == ENOENT)
            m->env_in_tmp = false;
    }
}

/* Renames tmp/ID.EXT to queue/ID.EXT. */
static int move_to_queue(struct spool_msg *m, const char *ext, char *err, size_t errlen)
{
    char from[PATH_MAX], to[PATH_MAX];
    entry_path(m, "tmp", ext, from, sizeof(from));
    entry_path(m, "queue", ext, to, sizeof(to));
    if (rename(from, to) != 0) {
        set_errno(err, errlen, "rename to", to, errno);
        return -1;
    }
    return 0;
}

int spool_commit(struct spool_msg *m, char *err, size_t errlen)
{
    if (m->committed) {
        err_set(err, errlen, "spool: %s already committed", m->id);
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
    char path[PATH_MAX];
    bool msg_queued = false, env_queued = false;

    entry_path(m, "tmp", "msg", path, sizeof(path));
    if (fsync(m->fd) != 0) {
        set_errno(err, errlen, "fsync", path, errno);
        goto fail;
    }
    int fd = m->fd;
    m->fd = -1;
    if (close(fd) != 0) {
        set_errno(err, errlen, "close", path, errno);
        goto fail;
    }
    if (write_env(m, err, errlen) != 0)
        goto fail;
    /* Fresh folders must be reachable after a crash before anything in them counts. */
    if (m->sync_parents && (fsutil_fsync_dir(m->spool_dir, WHO, err, errlen) != 0 ||
                            fsutil_fsync_dir(m->data_dir, WHO, err, errlen) != 0))
        goto fail;

    /* The message first: an entry is complete only once its envelope is there too. */
    if (move_to_queue(m, "msg", err, errlen) != 0)
        goto fail;
    msg_queued = true;
    m->msg_in_tmp = false;
    if (move_to_queue(m, "env", err, errlen) != 0)
        goto fail;
    env_queued = true;
    m->env_in_tmp = false;
    entry_path(m, "queue", NULL, path, sizeof(path));
    if (fsutil_fsync_dir(path, WHO, err, errlen) != 0)
        goto fail;

    if (m->holds_fresh) {
        m->holds_fresh = false;
        atomic_fetch_sub(&fresh_dirs, 1);
    }
    m->committed = true;
    return 0;

fail:
    rollback(m, env_queued, msg_queued, err, errlen);
    if (m->fd >= 0) {
        close(m->fd);
        m->fd = -1;
    }
    remove_tmp(m);
    doom(m, err);
    return -1;
}

int spool_uncommit(struct spool_msg *m, char *err, size_t errlen)
{
    if (!m->committed) {
        err_set(err, errlen, "spool: %s is not in the queue, nothing to withdraw", m->id);
        return -1;
    }
    char path[PATH_MAX];
    /* The envelope first: without it the entry is incomplete and ignored, whatever happens to
     * the message file after. */
    entry_path(m, "queue", "env", path, sizeof(path));
    if (unlink(path) != 0 && errno != ENOENT) {
        set_errno(err, errlen, "unlink", path, errno);
        return -1;
    }
    m->committed = false;
    doom(m, "spool: the message was withdrawn from the queue");
    int rc = 0;
    entry_path(m, "queue", "msg", path, sizeof(path));
    if (unlink(path) != 0 && errno != ENOENT) {
        /* Only litter now (ignored without its .env), but worth a line in the caller's log. */
        set_errno(err, errlen, "unlink", path, errno);
        rc = -1;
    }
    entry_path(m, "queue", NULL, path, sizeof(path));
    char why[PATH_MAX + 128] = "";
    if (fsutil_fsync_dir(path, WHO, why, sizeof(why)) != 0) {
        if (rc == 0)
            err_set(err, errlen, "%s", why);
        else
            add_reason(err, errlen, why);
        rc = -1;
    }
    return rc;
}

void spool_free(struct spool_msg *m)
{
    if (!m)
        return;
    if (m->fd >= 0)
        close(m->fd);
    if (m->spool_dir)
        remove_tmp(m);
    if (m->holds_fresh)
        atomic_fetch_sub(&fresh_dirs, 1);
    json_decref(m->env);
    free(m->spool_dir);
    free(m->data_dir);
    free(m);
}

/* Copies the string at key into out (outlen bytes, NUL included); -1 when it is missing, not a
 * string, too long, or holds a NUL that would cut it short. */
static int get_string(json_t *obj, const char *key, char *out, size_t outlen)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len >= outlen || strlen(s) != len)
        return -1;
    memcpy(out, s, len + 1);
    return 0;
}

/* A non-negative integer at key, or -1. */
static int get_uint(json_t *obj, const char *key, json_int_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

int spool_parse_env(json_t *root, const char *stem, struct spool_entry *e)
{
    json_int_t version, queued, size;
    if (!json_is_object(root) || get_uint(root, "version", &version) != 0 || version != ENV_VERSION)
        return -1;
    /* The id inside must be the file's own: a copied or renamed envelope is not an entry. */
    if (get_string(root, "id", e->id, sizeof(e->id)) != 0 || strcmp(e->id, stem) != 0)
        return -1;
    if (get_string(root, "from", e->from, sizeof(e->from)) != 0 ||
        get_string(root, "auth_user", e->auth_user, sizeof(e->auth_user)) != 0 ||
        get_uint(root, "queued", &queued) != 0 || get_uint(root, "size", &size) != 0)
        return -1;
    e->queued = (time_t)queued;
    e->size = (uint64_t)size;
    json_t *rcpts = json_object_get(root, "rcpts");
    size_t n = json_array_size(rcpts);
    if (!json_is_array(rcpts) || n == 0 || n > SPOOL_RCPTS_MAX)
        return -1;
    if (!(e->rcpts = calloc(n, sizeof(*e->rcpts))))
        return -1;
    e->nrcpts = n;
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(rcpts, i);
        const char *s = json_string_value(r);
        size_t len = json_string_length(r);
        if (!s || len >= sizeof(e->rcpts[i]) || strlen(s) != len)
            return -1;
        memcpy(e->rcpts[i], s, len + 1);
    }
    return 0;
}

/* Reads queue/STEM.env (dfd is queue/) into e. -1 for anything that is not a complete entry
 * of ours: unreadable, oversized, malformed, or without its .msg beside it. */
static int load_entry(int dfd, const char *name, const char *stem, struct spool_entry *e)
{
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -1; /* withdrawn since readdir, or not a plain file */
    struct stat st;
    char *buf = NULL;
    json_t *root = NULL;
    int rc = -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)SPOOL_ENV_FILE_MAX)
        goto done;
    size_t len = (size_t)st.st_size;
    if (!(buf = malloc(len + 1)))
        goto done;
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            goto done;
        got += (size_t)r;
    }
    json_error_t jerr;
    if (!(root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr)))
        goto done;
    if (spool_parse_env(root, stem, e) != 0)
        goto done;
    char msg[ID_MAX + 8];
    snprintf(msg, sizeof(msg), "%s.msg", stem);
    if (fstatat(dfd, msg, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
        goto done;
    rc = 0;
done:
    if (rc != 0) {
        free(e->rcpts);
        e->rcpts = NULL;
    }
    json_decref(root);
    free(buf);
    close(fd);
    return rc;
}

/* Orders ids field by field ('-'-separated), each field as a number: a shorter run of digits
 * is smaller, so count 9 sorts before count 10. Equal fields fall through to the next. */
static int cmp_id(const char *a, const char *b)
{
    while (*a && *b) {
        size_t la = strcspn(a, "-"), lb = strcspn(b, "-");
        if (la != lb)
            return la < lb ? -1 : 1;
        int c = strncmp(a, b, la);
        if (c != 0)
            return c;
        a += la;
        b += lb;
        if (*a)
            a++;
        if (*b)
            b++;
    }
    return strcmp(a, b);
}

int spool_cmp_entry(const void *pa, const void *pb)
{
    const struct spool_entry *a = pa, *b = pb;
    if (a->queued != b->queued)
        return a->queued < b->queued ? -1 : 1;
    return cmp_id(a->id, b->id);
}

/* Reads every complete entry of queue/ (dfd) into *out. -1 with a reason when the folder
 * cannot be read or memory runs out. */
static int collect(DIR *d, const char *dir, struct spool_entry **out, size_t *nout, char *err,
                   size_t errlen)
{
    struct spool_entry *v = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0) {
                set_errno(err, errlen, "read folder", dir, errno);
                goto fail;
            }
            break;
        }
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".env") != 0 || !valid_id(de->d_name, len - 4))
            continue;
        char stem[ID_MAX];
        memcpy(stem, de->d_name, len - 4);
        stem[len - 4] = '\0';
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct spool_entry *nv = realloc(v, ncap * sizeof(*v));
            if (!nv) {
                err_set(err, errlen, "spool: out of memory listing %s", dir);
                goto fail;
            }
            v = nv;
            cap = ncap;
        }
        memset(&v[n], 0, sizeof(v[n]));
        /* Malformed or incomplete entries are skipped: the queue is read by people and by
         * delivery, and neither can do anything with half an entry. */
        if (load_entry(dirfd(d), de->d_name, stem, &v[n]) == 0)
            n++;
    }
    *out = v;
    *nout = n;
    return 0;
fail:
    for (size_t i = 0; i < n; i++)
        free(v[i].rcpts);
    free(v);
    return -1;
}

int spool_list(const char *data_dir, int (*fn)(void *ctx, const struct spool_entry *e), void *ctx,
               char *err, size_t errlen)
{
    char dir[PATH_MAX];
    int w = snprintf(dir, sizeof(dir), "%s/spool/queue", data_dir ? data_dir : "");
    if (!data_dir || w < 0 || (size_t)w >= sizeof(dir)) {
        err_set(err, errlen, "spool: no data_dir, or one too long; check data_dir in tern.conf");
        return -1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0; /* nothing was ever queued */
        set_errno(err, errlen, "open folder", dir, errno);
        return -1;
    }
    struct spool_entry *v = NULL;
    size_t n = 0;
    int rc = collect(d, dir, &v, &n, err, errlen);
    closedir(d);
    if (rc != 0)
        return -1;
    if (n > 1) /* v may be NULL when n is 0, which qsort does not accept */
        qsort(v, n, sizeof(*v), spool_cmp_entry);
    /* fn returns non-zero to stop early; the count is of the entries it was given. */
    int listed = 0;
    for (size_t i = 0; i < n; i++) {
        listed++;
        if (fn && fn(ctx, &v[i]) != 0)
            break;
    }
    for (size_t i = 0; i < n; i++)
        free(v[i].rcpts);
    free(v);
    return listed;
}

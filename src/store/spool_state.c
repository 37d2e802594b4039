/* The delivery state of a spool entry (spool_state.h): ID.state beside ID.env, read with every
 * field checked and its recipients matched against the envelope's, written like the rest of the
 * spool (tmp/, fsync, rename, fsync queue/) and only while the entry is still in queue/, so a
 * state never outlives its entry. Also "flush": a state whose next try is now. The strings a
 * remote server sent are made one line of UTF-8 before they are saved, so the file always parses
 * back and nothing in it can reach a terminal as a control sequence. */
#include "store/spool_state.h"
#include "store/spool_priv.h"

#include "util/err.h"
#include "util/fsutil.h"
#include "util/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_VERSION 1
/* 1000 recipients of 319-byte addresses, 511-byte replies and 299-byte hosts, each byte escaped
 * as \u00XX at worst: under 7 MB. Anything bigger is not ours and is not read into memory. */
#define STATE_FILE_MAX (8u << 20)
#define CODE_MAX 999

static const char *const status_names[] = {"pending", "sent", "failed"};

/* -1 with errno e; the reason is already in err. */
static int fail(int e)
{
    errno = e;
    return -1;
}

const char *spool_rcpt_status_name(enum spool_rcpt_status s)
{
    return (unsigned)s < 3 ? status_names[s] : "?";
}

int spool_state_init(const struct spool_entry *e, struct spool_state *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof(*st));
    if (e->nrcpts == 0 || e->nrcpts > SPOOL_RCPTS_MAX || !e->rcpts) {
        err_set(err, errlen, "spool: entry %.95s has %zu recipients; an entry has 1 to %d", e->id,
                e->nrcpts, SPOOL_RCPTS_MAX);
        return fail(EINVAL);
    }
    if (!(st->rcpts = calloc(e->nrcpts, sizeof(*st->rcpts)))) {
        err_set(err, errlen, "spool: out of memory");
        return fail(ENOMEM);
    }
    st->nrcpts = e->nrcpts;
    for (size_t i = 0; i < e->nrcpts; i++) {
        snprintf(st->rcpts[i].addr, sizeof(st->rcpts[i].addr), "%s", e->rcpts[i]);
        st->rcpts[i].status = SPOOL_RCPT_PENDING;
    }
    return 0;
}

void spool_state_free(struct spool_state *st)
{
    if (!st)
        return;
    free(st->rcpts);
    st->rcpts = NULL;
    st->nrcpts = 0;
}

/* ---- reading ----------------------------------------------------------------------------------
 */

/* A non-negative integer at key no greater than max into out; -1 otherwise. */
static int get_int(json_t *obj, const char *key, json_int_t max, json_int_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

/* The string at key, shorter than cap and without a NUL, into out; -1 otherwise. */
static int get_string(json_t *obj, const char *key, char *out, size_t cap)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return -1;
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len >= cap || strlen(s) != len)
        return -1;
    memcpy(out, s, len + 1);
    return 0;
}

/* Fills r from the object o, which must be about want (the envelope's address i); NULL, or
 * what is wrong (in why). */
static const char *parse_rcpt(json_t *o, const char *want, size_t i, struct spool_rcpt_state *r,
                              char *why, size_t whylen)
{
    json_int_t code, done;
    const char *status = json_string_value(json_object_get(o, "status"));
    if (!json_is_object(o) || get_string(o, "addr", r->addr, sizeof(r->addr)) != 0) {
        snprintf(why, whylen, "recipient %zu has no address", i + 1);
        return why;
    }
    if (strcmp(r->addr, want) != 0) {
        snprintf(why, whylen, "recipient %zu is not the envelope's recipient %zu", i + 1, i + 1);
        return why;
    }
    size_t s = 0;
    while (status && s < 3 && strcmp(status, status_names[s]) != 0)
        s++;
    if (!status || s == 3 || get_int(o, "code", CODE_MAX, &code) != 0 ||
        get_string(o, "reply", r->reply, sizeof(r->reply)) != 0 ||
        get_string(o, "remote", r->remote, sizeof(r->remote)) != 0 ||
        get_int(o, "done", LLONG_MAX, &done) != 0) {
        snprintf(why, whylen,
                 "recipient %zu lacks a status, code, reply, remote or done, or has one out of "
                 "bounds",
                 i + 1);
        return why;
    }
    r->status = (enum spool_rcpt_status)s;
    r->code = (int)code;
    r->done = (time_t)done;
    return NULL;
}

/* Fills st from the parsed state of e; NULL, or what is wrong. */
static const char *parse_state(json_t *root, const struct spool_entry *e, struct spool_state *st,
                               char *why, size_t whylen)
{
    json_int_t version, attempts, last, next;
    char id[SPOOL_ID_MAX];
    if (!json_is_object(root) || get_int(root, "version", INT_MAX, &version) != 0 ||
        version != STATE_VERSION)
        return "not a version 1 state";
    if (get_string(root, "id", id, sizeof(id)) != 0 || strcmp(id, e->id) != 0)
        return "its id is not the entry's";
    json_t *notified = json_object_get(root, "delay_notified");
    if (get_int(root, "attempts", UINT_MAX, &attempts) != 0 ||
        get_int(root, "last_try", LLONG_MAX, &last) != 0 ||
        get_int(root, "next_try", LLONG_MAX, &next) != 0 || !json_is_boolean(notified))
        return "attempts, last_try, next_try or delay_notified is missing or out of bounds";
    json_t *rcpts = json_object_get(root, "rcpts");
    if (!json_is_array(rcpts) || json_array_size(rcpts) != e->nrcpts)
        return "its recipients are not the envelope's (not as many)";
    if (!(st->rcpts = calloc(e->nrcpts, sizeof(*st->rcpts))))
        return "out of memory";
    st->nrcpts = e->nrcpts;
    st->attempts = (unsigned)attempts;
    st->last_try = (time_t)last;
    st->next_try = (time_t)next;
    st->delay_notified = json_is_true(notified);
    for (size_t i = 0; i < e->nrcpts; i++) {
        const char *bad =
            parse_rcpt(json_array_get(rcpts, i), e->rcpts[i], i, &st->rcpts[i], why, whylen);
        if (bad)
            return bad;
    }
    return NULL;
}

int spool_state_load(const char *data_dir, const struct spool_entry *e, struct spool_state *st,
                     char *err, size_t errlen)
{
    memset(st, 0, sizeof(*st));
    if (!spool_id_valid(e->id)) {
        err_set(err, errlen, "spool: the entry has no valid queue id");
        return fail(EINVAL);
    }
    char path[PATH_MAX];
    if (spool_path(path, sizeof(path), data_dir, e->held ? "hold" : "queue", e->id, "state", err,
                   errlen) != 0)
        return -1;
    char *buf;
    size_t len;
    if (spool_read_file(path, STATE_FILE_MAX, &buf, &len, err, errlen) != 0) {
        if (errno == ENOENT)
            return spool_state_init(e, st, err, errlen);
        return fail(errno == EFBIG || errno == EINVAL ? EBADMSG : errno); /* not ours */
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    char why[128];
    const char *bad = root ? parse_state(root, e, st, why, sizeof(why)) : NULL;
    if (!root) {
        snprintf(why, sizeof(why), "not JSON (%.60s at byte %d)", jerr.text, jerr.position);
        bad = why;
    }
    json_decref(root);
    if (!bad)
        return 0;
    spool_state_free(st);
    err_set(err, errlen,
            "spool: %s cannot be used: %s; remove it to start the entry's delivery state over",
            path, bad);
    return fail(EBADMSG);
}

/* ---- writing ----------------------------------------------------------------------------------
 */

/* s (up to its NUL or cap - 1 bytes) as one line of UTF-8 into out (cap bytes): control
 * characters become spaces and bytes that start no UTF-8 character '?', so the result is never
 * longer than s. */
static void one_line(const char *s, size_t cap, char *out)
{
    size_t n = strnlen(s, cap - 1), o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t l = c < 0x20 || c == 0x7f ? 0 : utf8_char_len((const unsigned char *)s + i, n - i);
        if (l == 0) {
            out[o++] = c < 0x20 || c == 0x7f ? ' ' : '?';
            i++;
        } else {
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
        }
    }
    out[o] = '\0';
}

/* Checks what st holds against what a state may; NULL, or what is wrong. */
static const char *check_state(const struct spool_state *st, char *why, size_t whylen)
{
    if (!st->rcpts || st->nrcpts == 0 || st->nrcpts > SPOOL_RCPTS_MAX)
        return "a state has 1 to 1000 recipients";
    if (st->last_try < 0 || st->next_try < 0)
        return "last_try and next_try are times, not negative";
    for (size_t i = 0; i < st->nrcpts; i++) {
        const struct spool_rcpt_state *r = &st->rcpts[i];
        if (strnlen(r->addr, sizeof(r->addr)) == sizeof(r->addr) || (unsigned)r->status > 2 ||
            r->code < 0 || r->code > CODE_MAX || r->done < 0) {
            snprintf(why, whylen,
                     "recipient %zu has an address without its NUL, an unknown status, a code "
                     "outside 0..999 or a negative time",
                     i + 1);
            return why;
        }
    }
    return NULL;
}

/* One recipient as JSON; NULL when memory ran out or the address is not UTF-8. */
static json_t *rcpt_json(const struct spool_rcpt_state *r)
{
    char reply[SPOOL_REPLY_MAX], remote[SPOOL_REMOTE_MAX];
    one_line(r->reply, sizeof(reply), reply);
    one_line(r->remote, sizeof(remote), remote);
    return json_pack("{s:s, s:s, s:i, s:s, s:s, s:I}", "addr", r->addr, "status",
                     status_names[r->status], "code", r->code, "reply", reply, "remote", remote,
                     "done", (json_int_t)r->done);
}

static char *state_text(const char *id, const struct spool_state *st)
{
    json_t *rcpts = json_array();
    for (size_t i = 0; rcpts && i < st->nrcpts; i++) {
        if (json_array_append_new(rcpts, rcpt_json(&st->rcpts[i])) != 0) {
            json_decref(rcpts);
            rcpts = NULL;
        }
    }
    if (!rcpts)
        return NULL;
    json_t *root = json_pack("{s:i, s:s, s:I, s:I, s:I, s:b, s:o}", "version", STATE_VERSION, "id",
                             id, "attempts", (json_int_t)st->attempts, "last_try",
                             (json_int_t)st->last_try, "next_try", (json_int_t)st->next_try,
                             "delay_notified", st->delay_notified, "rcpts", rcpts);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}

/* Is queue/ID.env there? 1, 0, or -1 with errno and a reason. */
static int env_present(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        return 1;
    int e = errno;
    if (e == ENOENT)
        return 0;
    fsutil_err(err, errlen, SPOOL_WHO, "stat", path, e);
    return fail(e);
}

/* Writes text into the fresh file fd (tmp), made the spool owner's, and fsyncs it. */
static int write_tmp(int fd, const char *data_dir, const char *tmp, const char *text, char *err,
                     size_t errlen)
{
    if (spool_give_back(fd, data_dir, tmp, err, errlen) != 0)
        return -1;
    if (fsutil_write_all(fd, text, strlen(text)) != 0 || fsutil_write_all(fd, "\n", 1) != 0 ||
        fsync(fd) != 0) {
        int e = errno;
        fsutil_err(err, errlen, SPOOL_WHO, "write", tmp, e);
        return fail(e);
    }
    return 0;
}

/* Renames tmp to dst (queue/ID.state) while queue/ID.env is there, and fsyncs queue/; when it
 * is not, before the rename or just after it, fails with ENOENT keeping nothing at dst. */
static int move_in(const char *tmp, const char *env, const char *dst, const char *queue,
                   const char *id, char *err, size_t errlen)
{
    int p = env_present(env, err, errlen);
    if (p < 0)
        return -1;
    if (p == 0) { /* delivered, deleted or held meanwhile: a state of nothing is not kept */
        err_set(err, errlen,
                "spool: entry %s is not in the queue any more (delivered, deleted or held "
                "meanwhile); its delivery state was not saved",
                id);
        return fail(ENOENT);
    }
    if (rename(tmp, dst) != 0) {
        int e = errno;
        fsutil_err(err, errlen, SPOOL_WHO, "rename to", dst, e);
        return fail(e);
    }
    p = env_present(env, err, errlen);
    if (p == 1)
        return fsutil_fsync_dir(queue, SPOOL_WHO, err, errlen) == 0 ? 0 : fail(EIO);
    /* It left between the look and the rename (or we cannot tell): take the state back. */
    int e = p == 0 ? ENOENT : errno;
    unlink(dst);
    char why[PATH_MAX + 256];
    fsutil_fsync_dir(queue, SPOOL_WHO, why, sizeof(why));
    if (p == 0)
        err_set(err, errlen,
                "spool: entry %s left the queue while its delivery state was saved (delivered, "
                "deleted or held); the state was not kept",
                id);
    return fail(e);
}

int spool_state_save(const char *data_dir, const char *id, const struct spool_state *st, char *err,
                     size_t errlen)
{
    char why[160];
    const char *bad = spool_id_valid(id) ? check_state(st, why, sizeof(why)) : "not a queue id";
    if (bad) {
        err_set(err, errlen, "spool: cannot save a delivery state: %s", bad);
        return fail(EINVAL);
    }
    char tmp[PATH_MAX], env[PATH_MAX], dst[PATH_MAX], queue[PATH_MAX];
    if (spool_path(tmp, sizeof(tmp), data_dir, "tmp", id, "state.XXXXXX", err, errlen) != 0 ||
        spool_path(env, sizeof(env), data_dir, "queue", id, "env", err, errlen) != 0 ||
        spool_path(dst, sizeof(dst), data_dir, "queue", id, "state", err, errlen) != 0 ||
        spool_path(queue, sizeof(queue), data_dir, "queue", NULL, NULL, err, errlen) != 0)
        return -1;
    char *text = state_text(id, st);
    if (!text) {
        err_set(err, errlen,
                "spool: out of memory (or an address that is not UTF-8) saving the delivery "
                "state of %s",
                id);
        return fail(ENOMEM);
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        fsutil_err(err, errlen, SPOOL_WHO, "create", tmp, e);
        free(text);
        return fail(e);
    }
    int rc = write_tmp(fd, data_dir, tmp, text, err, errlen);
    int e = errno;
    free(text);
    if (close(fd) != 0 && rc == 0) {
        e = errno;
        fsutil_err(err, errlen, SPOOL_WHO, "close", tmp, e);
        rc = -1;
    }
    if (rc == 0 && move_in(tmp, env, dst, queue, id, err, errlen) == 0)
        return 0;
    if (rc == 0)
        e = errno;
    unlink(tmp); /* gone already when the rename happened */
    return fail(e);
}

/* ---- flush ---------------------------------------------------------------------------------- */

/* next_try = 0 for the entry e of queue/, saving only when that changes something. */
static int flush_one(const char *data_dir, const struct spool_entry *e, char *err, size_t errlen)
{
    struct spool_state st;
    if (spool_state_load(data_dir, e, &st, err, errlen) != 0)
        return -1;
    int rc = 0;
    if (st.next_try != 0) {
        st.next_try = 0;
        rc = spool_state_save(data_dir, e->id, &st, err, errlen);
    }
    int saved = errno;
    spool_state_free(&st);
    errno = saved;
    return rc;
}

struct flush_all {
    const char *data_dir;
    int flushed;
    int failed; /* errno of the first failure, 0 if none */
    char *err;
    size_t errlen;
};

static int flush_cb(void *arg, const struct spool_entry *e)
{
    struct flush_all *c = arg;
    char why[PATH_MAX + 256];
    if (flush_one(c->data_dir, e, why, sizeof(why)) == 0)
        c->flushed++;
    else if (errno != ENOENT && !c->failed) { /* ENOENT: gone meanwhile, nothing to flush */
        c->failed = errno ? errno : EIO;
        err_set(c->err, c->errlen, "%s", why);
    }
    return 0;
}

int spool_flush(const char *data_dir, const char *id, char *err, size_t errlen)
{
    if (!id) {
        struct flush_all c = {.data_dir = data_dir, .err = err, .errlen = errlen};
        if (spool_list(data_dir, flush_cb, &c, err, errlen) < 0)
            return fail(errno ? errno : EIO);
        return c.failed ? fail(c.failed) : c.flushed;
    }
    struct spool_entry e;
    if (spool_entry_load(data_dir, id, false, &e, err, errlen) != 0) {
        if (errno != ENOENT)
            return -1;
        struct spool_entry h;
        char why[PATH_MAX + 256];
        if (spool_entry_load(data_dir, id, true, &h, why, sizeof(why)) == 0) {
            free(h.rcpts);
            err_set(err, errlen, "spool: %s is on hold; tern queue release %s lets it go", id, id);
            return fail(EBUSY);
        }
        err_set(err, errlen, "spool: no entry %s in the queue", id);
        return fail(ENOENT);
    }
    int rc = flush_one(data_dir, &e, err, errlen);
    int saved = errno;
    free(e.rcpts);
    errno = saved;
    return rc == 0 ? 1 : -1;
}

/* Edits of the users file. One edit: lock users.lock (flock, so a crashed editor never leaves
 * it held), read the whole file, change or add or drop exactly one line, write the result to a
 * temporary file beside it with the original's mode and owner, load that the way ternd would
 * (so no edit can leave a file ternd refuses), rename it over the original and flush the
 * folder. Readers (ternd) see the old file or the new one, never half of one. */
#include "auth/userfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fsutil.h"

#define FILE_MAX (64u << 20) /* a users file past this is not one a person keeps */
#define FINISH_ERR_MAX 65536

/* A growable byte buffer. */
struct buf {
    char *p;
    size_t len, cap;
};

static int buf_add(struct buf *b, const void *s, size_t n)
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
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int buf_str(struct buf *b, const char *s)
{
    return buf_add(b, s, strlen(s));
}

static void fail(struct userfile_err *e, enum userfile_fail f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct userfile_err *e, enum userfile_fail f, const char *fmt, ...)
{
    e->fail = f;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
}

void userfile_from_conf(struct userfile *uf, const struct conf *c)
{
    uf->path = c->users_file;
    uf->aliases_path = c->aliases_file;
    uf->mailboxes_path = c->mailboxes_file;
    uf->tables = c->tables;
    uf->lock_timeout_ms = USERFILE_LOCK_TIMEOUT_MS;
}

int userfile_write_temp(const char *dir, const char *name, const void *content, size_t len,
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

int userfile_sync_dir(const char *dir)
{
    char err[256];
    return fsutil_fsync_dir(dir, "tern", err, sizeof err);
}

/* The lowercased address, checked for shape; -1 with e filled. */
static int take_addr(const char *addr, char *out, struct userfile_err *e)
{
    size_t n = addr ? strlen(addr) : 0;
    const char *at = addr ? strchr(addr, '@') : NULL;
    char local[TABLES_ADDR_MAX + 1];
    if (n == 0 || n > TABLES_ADDR_MAX || !at || strchr(at + 1, '@')) {
        fail(e, USERFILE_BAD, "'%s' is not an address; write it as user@domain", addr ? addr : "");
        return -1;
    }
    memcpy(local, addr, (size_t)(at - addr));
    local[at - addr] = '\0';
    if (!conf_valid_local(local) || !conf_valid_domain(at + 1)) {
        fail(e, USERFILE_BAD,
             "'%s' is not an address: the local part may hold letters, digits, dots (not first, "
             "last or doubled) and !#$%%&'*+-/=?^_`{|}~, the domain must be a name like "
             "example.org",
             addr);
        return -1;
    }
    for (size_t i = 0; i <= n; i++)
        out[i] = (addr[i] >= 'A' && addr[i] <= 'Z') ? (char)(addr[i] + ('a' - 'A')) : addr[i];
    return 0;
}

/* A stored password field must not break the line it goes in. */
static int check_password_field(const char *pw, struct userfile_err *e)
{
    if (!pw || !*pw) {
        fail(e, USERFILE_BAD, "no password hash given");
        return -1;
    }
    for (const char *p = pw; *p; p++)
        if (*p == ':' || (unsigned char)*p <= ' ' || *p == 0x7f) {
            fail(e, USERFILE_BAD,
                 "the password field holds a colon, a blank or a control character; store a "
                 "hash made by passwd_hash_crypt or passwd_hash_scram");
            return -1;
        }
    if (strlen(pw) >= sizeof(((struct tables_user *)0)->password)) {
        fail(e, USERFILE_BAD, "the password hash is longer than %zu characters",
             sizeof(((struct tables_user *)0)->password) - 1);
        return -1;
    }
    return 0;
}

static int check_name(const char *name, struct userfile_err *e)
{
    if (strlen(name) > USERFILE_NAME_MAX) {
        fail(e, USERFILE_BAD, "the full name is longer than %d bytes; shorten it",
             USERFILE_NAME_MAX);
        return -1;
    }
    for (const char *p = name; *p; p++)
        if (*p == ':' || (unsigned char)*p < ' ' || *p == 0x7f) {
            fail(e, USERFILE_BAD,
                 "the full name holds a colon or a control character, which the users file "
                 "cannot keep; leave them out");
            return -1;
        }
    return 0;
}

/* Is addr an alias, full or bare? The domain's catch-all does not count: it only takes addresses
 * that nothing else names, so a new user simply comes before it. tables_expn answers for the
 * catch-all too, so an address nobody would choose tells whether the catch-all is what
 * answered: both then share one member list. */
static bool is_alias(const struct tables *t, const char *addr)
{
    const char *m[1] = {NULL}, *pm[1] = {NULL};
    if (tables_expn(t, addr, m, 1) < 0)
        return false;
    char probe[TABLES_ADDR_MAX + 64];
    snprintf(probe, sizeof(probe), "tern-probe.no-such-user@%s", strchr(addr, '@') + 1);
    if (m[0] && tables_expn(t, probe, pm, 1) >= 0 && pm[0] == m[0])
        return false;
    return true;
}

/* The users file resolved (so an edit replaces the target of a symlink, not the link), and its
 * folder. */
struct target {
    char path[PATH_MAX];
    char dir[PATH_MAX];
    const char *base;
    char lock[PATH_MAX + 8];
};

static int target_of(const struct userfile *uf, struct target *t, struct userfile_err *e)
{
    if (!realpath(uf->path, t->path)) {
        fail(e, USERFILE_IO, "cannot find the users file %s: %s; check users = in tern.conf",
             uf->path, strerror(errno));
        return -1;
    }
    strcpy(t->dir, t->path);
    char *slash = strrchr(t->dir, '/'); /* realpath's answer is absolute */
    t->base = t->path + (slash - t->dir) + 1;
    if (slash == t->dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    if (snprintf(t->lock, sizeof(t->lock), "%s.lock", t->path) >= (int)sizeof(t->lock)) {
        fail(e, USERFILE_IO, "%s: path too long; move the users file", t->path);
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

/* Takes the edit lock, waiting up to the timeout. The fd, or -1 with e filled. Polling rather
 * than a blocking flock: an alarm signal to bound the wait would be the process's, not ours. */
static int lock_take(const struct userfile *uf, const struct target *t, const struct stat *st,
                     struct userfile_err *e)
{
    int fd = open(t->lock, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        fail(e, USERFILE_IO, "cannot open the lock file %s: %s; check the folder's permissions",
             t->lock, strerror(errno));
        return -1;
    }
    /* Made by root, the lock must still open for the users file's owner next time. */
    struct stat ls;
    if (geteuid() == 0 && fstat(fd, &ls) == 0 && ls.st_uid == 0 && st->st_uid != 0)
        (void)fchown(fd, st->st_uid, st->st_gid);
    long long deadline = now_ms() + uf->lock_timeout_ms;
    long wait_ms = 5;
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            fail(e, USERFILE_IO, "cannot lock %s: %s", t->lock, strerror(errno));
            close(fd);
            return -1;
        }
        if (now_ms() >= deadline) {
            fail(e, USERFILE_LOCKED,
                 "another edit of %s has held %s for over %d s; try again, or look for a stuck "
                 "process with fuser %s",
                 t->path, t->lock, uf->lock_timeout_ms / 1000, t->lock);
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

/* Reads the whole file; its mode and owner go to st. */
static int read_file(const char *path, struct buf *b, struct stat *st, struct userfile_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, st) < 0) {
        fail(e, USERFILE_IO, "cannot read %s: %s; check it exists and that you may read it", path,
             strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (buf_add(b, "", 0) < 0)
        goto nomem;
    for (;;) {
        char chunk[65536];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fail(e, USERFILE_IO, "cannot read %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        if (b->len + (size_t)n > FILE_MAX) {
            fail(e, USERFILE_IO, "%s is larger than %u MiB; is it really the users file?", path,
                 FILE_MAX >> 20);
            close(fd);
            return -1;
        }
        if (buf_add(b, chunk, (size_t)n) < 0)
            goto nomem;
    }
    close(fd);
    return 0;
nomem:
    fail(e, USERFILE_IO, "out of memory reading %s", path);
    close(fd);
    return -1;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\f' || c == '\v';
}

/* One line of the file: [start, end) holds it without its line end; the fields are inside
 * [lead, tail), which leaves out the blanks (and a CR) around it, as the loader does. */
struct line {
    size_t start, end, next; /* next: where the following line starts */
    size_t lead, tail;
};

/* Finds the line of addr (lowercased). 1 found, 0 not. */
static int find_user(const struct buf *b, const char *addr, struct line *out)
{
    size_t alen = strlen(addr);
    for (size_t pos = 0; pos < b->len;) {
        struct line l = {.start = pos};
        const char *nl = memchr(b->p + pos, '\n', b->len - pos);
        l.end = nl ? (size_t)(nl - b->p) : b->len;
        l.next = nl ? l.end + 1 : b->len;
        pos = l.next;
        l.lead = l.start;
        while (l.lead < l.end && is_blank(b->p[l.lead]))
            l.lead++;
        l.tail = l.end;
        while (l.tail > l.lead && (is_blank(b->p[l.tail - 1]) || b->p[l.tail - 1] == '\r'))
            l.tail--;
        if (l.lead == l.tail || b->p[l.lead] == '#')
            continue;
        const char *colon = memchr(b->p + l.lead, ':', l.tail - l.lead);
        size_t ulen = colon ? (size_t)(colon - (b->p + l.lead)) : l.tail - l.lead;
        if (ulen == alen && strncasecmp(b->p + l.lead, addr, alen) == 0) {
            *out = l;
            return 1;
        }
    }
    return 0;
}

/* Where field i (0: user, 1: password, ... 7: extra fields) of a line starts, and its length;
 * -1 when the line has fewer fields. The extra fields run to the end of the line. */
static int field_at(const struct buf *b, const struct line *l, int i, size_t *off, size_t *len)
{
    size_t p = l->lead;
    for (int k = 0; k < i; k++) {
        const char *c = memchr(b->p + p, ':', l->tail - p);
        if (!c)
            return -1;
        p = (size_t)(c - b->p) + 1;
    }
    const char *c = i < 7 ? memchr(b->p + p, ':', l->tail - p) : NULL;
    *off = p;
    *len = (c ? (size_t)(c - b->p) : l->tail) - p;
    return 0;
}

/* Is tok (len bytes) the extra field nologin, bare or with a value? */
static bool is_nologin(const char *tok, size_t len)
{
    return (len == 7 && strncasecmp(tok, "nologin", 7) == 0) ||
           (len > 7 && strncasecmp(tok, "nologin=", 8) == 0);
}

enum op { OP_ADD, OP_PASSWD, OP_DELETE, OP_LOCK, OP_UNLOCK };

struct edit {
    enum op op;
    const char *addr; /* lowercased */
    const char *password;
    const char *name;
    bool admin;
    bool changed; /* out: lock/unlock found it already so when false */
};

/* Builds the new file content into out from the old one in b. */
static int apply(const struct buf *b, struct edit *ed, struct buf *out, struct userfile_err *e)
{
    struct line l;
    int found = find_user(b, ed->addr, &l);
    ed->changed = true;
    if (ed->op == OP_ADD) {
        if (found) {
            fail(e, USERFILE_BAD, "%s is a user already; change the password with tern user passwd",
                 ed->addr);
            return -1;
        }
        bool nl = b->len > 0 && b->p[b->len - 1] != '\n';
        int r = buf_add(out, b->p, b->len);
        if (!r && nl)
            r = buf_str(out, "\n");
        if (!r)
            r = buf_str(out, ed->addr) || buf_str(out, ":") || buf_str(out, ed->password) ||
                buf_str(out, ":::") || buf_str(out, ed->name) || buf_str(out, ":::") ||
                buf_str(out, ed->admin ? "admin\n" : "\n");
        return r;
    }
    if (!found) {
        fail(e, USERFILE_NOUSER, "%s is not a user; tern user list shows who is", ed->addr);
        return -1;
    }
    size_t off, len;
    switch (ed->op) {
    case OP_DELETE:
        return buf_add(out, b->p, l.start) || buf_add(out, b->p + l.next, b->len - l.next);
    case OP_PASSWD:
        if (field_at(b, &l, 1, &off, &len) < 0) /* "user" alone, with no password field */
            return buf_add(out, b->p, l.tail) || buf_str(out, ":") || buf_str(out, ed->password) ||
                   buf_add(out, b->p + l.tail, b->len - l.tail);
        return buf_add(out, b->p, off) || buf_str(out, ed->password) ||
               buf_add(out, b->p + off + len, b->len - off - len);
    case OP_LOCK: {
        int have = 0; /* how many colons the line has, up to the extra fields' */
        for (size_t p = l.lead; p < l.tail && have < 7; p++)
            have += b->p[p] == ':';
        const char *sep = "";
        if (have == 7 && field_at(b, &l, 7, &off, &len) == 0) {
            for (size_t p = off; p < off + len;) {
                while (p < off + len && is_blank(b->p[p]))
                    p++;
                size_t q = p;
                while (q < off + len && !is_blank(b->p[q]))
                    q++;
                if (q > p && is_nologin(b->p + p, q - p)) {
                    ed->changed = false;
                    return 0;
                }
                p = q;
            }
            sep = len ? " " : "";
        }
        static const char colons[] = ":::::::";
        return buf_add(out, b->p, l.tail) || buf_add(out, colons, (size_t)(7 - have)) ||
               buf_str(out, sep) || buf_str(out, "nologin") ||
               buf_add(out, b->p + l.tail, b->len - l.tail);
    }
    case OP_UNLOCK: {
        if (field_at(b, &l, 7, &off, &len) < 0) {
            ed->changed = false;
            return 0;
        }
        struct buf kept = {0};
        int r = 0, dropped = 0;
        for (size_t p = off; p < off + len && !r;) {
            while (p < off + len && is_blank(b->p[p]))
                p++;
            size_t q = p;
            while (q < off + len && !is_blank(b->p[q]))
                q++;
            if (q > p && is_nologin(b->p + p, q - p))
                dropped++;
            else if (q > p)
                r = (kept.len && buf_str(&kept, " ")) || buf_add(&kept, b->p + p, q - p);
            p = q;
        }
        ed->changed = dropped > 0;
        /* the other extra fields stay, one blank apart */
        if (!r && ed->changed)
            r = buf_add(out, b->p, off) || buf_add(out, kept.p ? kept.p : "", kept.len) ||
                buf_add(out, b->p + off + len, b->len - off - len);
        free(kept.p);
        return r;
    }
    case OP_ADD:
        break;
    }
    return -1;
}

/* Fresh tables with uf's local domains: what the loader needs before reading users. */
static struct tables *scratch_tables(const struct userfile *uf, struct userfile_err *e)
{
    struct tables *t = tables_new();
    if (!t) {
        fail(e, USERFILE_IO, "out of memory; free some memory and try again");
        return NULL;
    }
    char why[512];
    for (size_t i = 0; i < tables_ndomains(uf->tables); i++)
        if (tables_add_domain(t, tables_domain(uf->tables, i), why, sizeof(why)) < 0) {
            fail(e, USERFILE_IO, "%s", why);
            tables_free(t);
            return NULL;
        }
    return t;
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

/* Loads the would-be users file tmp with the aliases and shared mailboxes, as conf_load would:
 * 0 if ternd would take it, else -1 with the loader's reasons, naming path instead of tmp. */
static int validate(const struct userfile *uf, const char *tmp, const char *path,
                    struct userfile_err *e)
{
    struct tables *t = scratch_tables(uf, e);
    if (!t)
        return -1;
    char *msgs = calloc(1, FINISH_ERR_MAX);
    if (!msgs) {
        tables_free(t);
        fail(e, USERFILE_IO, "out of memory; free some memory and try again");
        return -1;
    }
    struct conf_errors ce = {msgs, FINISH_ERR_MAX, 0, 0, false};
    int nlines = 0;
    conf_load_users(t, tmp, &ce);
    if (uf->aliases_path)
        conf_load_aliases(t, uf->aliases_path, &ce, &nlines);
    /* A shared mailbox's members must stay users: optional file, as conf_load reads it. */
    struct stat mst;
    if (uf->mailboxes_path && stat(uf->mailboxes_path, &mst) == 0)
        conf_load_mailboxes(t, uf->mailboxes_path, &ce, &nlines);
    int r = 0;
    if (ce.n > 0)
        r = -1;
    else if (uf->aliases_path && tables_finish(t, msgs, FINISH_ERR_MAX) < 0)
        r = -1;
    if (r < 0) {
        char head[PATH_MAX + 128];
        snprintf(head, sizeof(head), "nothing changed: %s would no longer load:\n", path);
        size_t hl = strlen(head) < sizeof(e->msg) ? strlen(head) : sizeof(e->msg) - 1;
        e->fail = USERFILE_INVALID;
        memcpy(e->msg, head, hl);
        replace_all(e->msg + hl, sizeof(e->msg) - hl, msgs, tmp, path);
        size_t ml = strlen(e->msg);
        while (ml > 0 && e->msg[ml - 1] == '\n')
            e->msg[--ml] = '\0';
    }
    free(msgs);
    tables_free(t);
    return r;
}

/* One whole edit: lock, read, apply, write, check, rename, flush. */
static int edit_file(const struct userfile *uf, struct edit *ed, struct userfile_err *e)
{
    struct target t;
    struct stat st;
    if (target_of(uf, &t, e) < 0)
        return -1;
    if (stat(t.path, &st) < 0) {
        fail(e, USERFILE_IO, "cannot read %s: %s", t.path, strerror(errno));
        return -1;
    }
    int lockfd = lock_take(uf, &t, &st, e);
    if (lockfd < 0)
        return -1;
    struct buf old = {0}, out = {0};
    char tmp[PATH_MAX + 32] = "";
    int r = -1;
    if (read_file(t.path, &old, &st, e) < 0)
        goto done;
    if (apply(&old, ed, &out, e) != 0) {
        if (e->fail == USERFILE_OK)
            fail(e, USERFILE_IO, "out of memory editing %s", t.path);
        goto done;
    }
    if (!ed->changed) {
        r = 0;
        goto done;
    }
    char why[PATH_MAX + 256];
    uid_t uid = geteuid() == 0 ? st.st_uid : (uid_t)-1;
    if (userfile_write_temp(t.dir, t.base, out.p ? out.p : "", out.len, st.st_mode & 07777, uid,
                            st.st_gid, tmp, sizeof(tmp), why, sizeof(why)) < 0) {
        tmp[0] = '\0';
        fail(e, USERFILE_IO, "%s", why);
        goto done;
    }
    if (validate(uf, tmp, t.path, e) < 0)
        goto done;
    if (rename(tmp, t.path) < 0) {
        fail(e, USERFILE_IO, "cannot replace %s: %s; check the folder's permissions", t.path,
             strerror(errno));
        goto done;
    }
    tmp[0] = '\0';
    if (userfile_sync_dir(t.dir) < 0) {
        fail(e, USERFILE_IO, "%s was changed, but flushing %s failed: %s; run sync", t.path, t.dir,
             strerror(errno));
        goto done;
    }
    r = 0;
done:
    if (tmp[0])
        unlink(tmp);
    if (old.p)
        explicit_bzero(old.p, old.len); /* hashes: not secrets, but no need to leave them */
    if (out.p)
        explicit_bzero(out.p, out.len);
    free(old.p);
    free(out.p);
    close(lockfd); /* releases the lock */
    return r;
}

static void clear_err(struct userfile_err *e)
{
    e->fail = USERFILE_OK;
    e->msg[0] = '\0';
}

int userfile_add(const struct userfile *uf, const char *addr, const char *password,
                 const char *name, bool admin, struct userfile_err *e)
{
    clear_err(e);
    char a[TABLES_ADDR_MAX + 1];
    if (take_addr(addr, a, e) < 0 || check_password_field(password, e) < 0 ||
        check_name(name ? name : "", e) < 0)
        return -1;
    const char *domain = strchr(a, '@') + 1;
    if (!tables_is_local_domain(uf->tables, domain)) {
        fail(e, USERFILE_BAD,
             "%s is not one of the local domains; add it to domains = under [server] in "
             "tern.conf first, or pick one of: %s%s",
             domain, tables_ndomains(uf->tables) ? tables_domain(uf->tables, 0) : "(none)",
             tables_ndomains(uf->tables) > 1 ? ", ..." : "");
        return -1;
    }
    if (is_alias(uf->tables, a)) {
        fail(e, USERFILE_BAD,
             "%s is an alias; remove it from the aliases file first, or pick another address", a);
        return -1;
    }
    struct edit ed = {
        .op = OP_ADD, .addr = a, .password = password, .name = name ? name : "", .admin = admin};
    return edit_file(uf, &ed, e);
}

int userfile_set_password(const struct userfile *uf, const char *addr, const char *password,
                          struct userfile_err *e)
{
    clear_err(e);
    char a[TABLES_ADDR_MAX + 1];
    if (take_addr(addr, a, e) < 0 || check_password_field(password, e) < 0)
        return -1;
    struct edit ed = {.op = OP_PASSWD, .addr = a, .password = password};
    return edit_file(uf, &ed, e);
}

int userfile_delete(const struct userfile *uf, const char *addr, struct userfile_err *e)
{
    clear_err(e);
    char a[TABLES_ADDR_MAX + 1];
    if (take_addr(addr, a, e) < 0)
        return -1;
    struct edit ed = {.op = OP_DELETE, .addr = a};
    return edit_file(uf, &ed, e);
}

static int lock_or_unlock(const struct userfile *uf, enum op op, const char *addr, bool *changed,
                          struct userfile_err *e)
{
    clear_err(e);
    char a[TABLES_ADDR_MAX + 1];
    if (take_addr(addr, a, e) < 0)
        return -1;
    struct edit ed = {.op = op, .addr = a};
    int r = edit_file(uf, &ed, e);
    if (changed)
        *changed = r == 0 && ed.changed;
    return r;
}

int userfile_lock(const struct userfile *uf, const char *addr, bool *changed,
                  struct userfile_err *e)
{
    return lock_or_unlock(uf, OP_LOCK, addr, changed, e);
}

int userfile_unlock(const struct userfile *uf, const char *addr, bool *changed,
                    struct userfile_err *e)
{
    return lock_or_unlock(uf, OP_UNLOCK, addr, changed, e);
}

int userfile_list(const struct userfile *uf, struct tables_user **users, size_t *n,
                  struct userfile_err *e)
{
    clear_err(e);
    *users = NULL;
    *n = 0;
    struct tables *t = scratch_tables(uf, e);
    if (!t)
        return -1;
    char msgs[4096];
    struct conf_errors ce = {msgs, sizeof(msgs), 0, 0, false};
    if (conf_load_users(t, uf->path, &ce) > 0) {
        size_t ml = strlen(msgs);
        while (ml > 0 && msgs[ml - 1] == '\n')
            msgs[--ml] = '\0';
        fail(e, USERFILE_INVALID, "%s; fix the file (tern config check lists every error)", msgs);
        tables_free(t);
        return -1;
    }
    size_t count = tables_nusers(t);
    struct tables_user *out = calloc(count ? count : 1, sizeof(*out));
    if (!out) {
        fail(e, USERFILE_IO, "out of memory listing %zu users", count);
        tables_free(t);
        return -1;
    }
    for (size_t i = 0; i < count; i++)
        out[i] = *tables_user_at(t, i);
    tables_free(t);
    *users = out;
    *n = count;
    return 0;
}

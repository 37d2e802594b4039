/* Edits of the users file: what one edit does to the text (change or add or drop exactly one
 * line, every other line byte for byte) and the check that ternd would still load the result.
 * The locking, reading, temporary file, rename and flush are util/editfile.c's, shared with the
 * mailboxes file. */
#include "auth/userfile.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "util/editfile.h"

#define FINISH_ERR_MAX 65536

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

/* Finds the line of addr (lowercased). 1 found, 0 not. */
static int find_user(const struct editfile_buf *b, const char *addr, struct editfile_line *out)
{
    size_t alen = strlen(addr);
    for (size_t pos = 0; editfile_next_line(b, &pos, out);) {
        const char *colon = memchr(b->p + out->lead, ':', out->tail - out->lead);
        size_t ulen = colon ? (size_t)(colon - (b->p + out->lead)) : out->tail - out->lead;
        if (ulen == alen && strncasecmp(b->p + out->lead, addr, alen) == 0)
            return 1;
    }
    return 0;
}

/* Where field i (0: user, 1: password, ... 7: extra fields) of a line starts, and its length;
 * -1 when the line has fewer fields. The extra fields run to the end of the line. */
static int field_at(const struct editfile_buf *b, const struct editfile_line *l, int i, size_t *off,
                    size_t *len)
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
static int apply(const struct editfile_buf *b, struct edit *ed, struct editfile_buf *out,
                 struct userfile_err *e)
{
    struct editfile_line l;
    int found = find_user(b, ed->addr, &l);
    ed->changed = true;
    if (ed->op == OP_ADD) {
        if (found) {
            fail(e, USERFILE_BAD, "%s is a user already; change the password with tern user passwd",
                 ed->addr);
            return -1;
        }
        bool nl = b->len > 0 && b->p[b->len - 1] != '\n';
        int r = editfile_buf_add(out, b->p, b->len);
        if (!r && nl)
            r = editfile_buf_str(out, "\n");
        if (!r)
            r = editfile_buf_str(out, ed->addr) || editfile_buf_str(out, ":") ||
                editfile_buf_str(out, ed->password) || editfile_buf_str(out, ":::") ||
                editfile_buf_str(out, ed->name) || editfile_buf_str(out, ":::") ||
                editfile_buf_str(out, ed->admin ? "admin\n" : "\n");
        return r;
    }
    if (!found) {
        fail(e, USERFILE_NOUSER, "%s is not a user; tern user list shows who is", ed->addr);
        return -1;
    }
    size_t off, len;
    switch (ed->op) {
    case OP_DELETE:
        return editfile_buf_add(out, b->p, l.start) ||
               editfile_buf_add(out, b->p + l.next, b->len - l.next);
    case OP_PASSWD:
        if (field_at(b, &l, 1, &off, &len) < 0) /* "user" alone, with no password field */
            return editfile_buf_add(out, b->p, l.tail) || editfile_buf_str(out, ":") ||
                   editfile_buf_str(out, ed->password) ||
                   editfile_buf_add(out, b->p + l.tail, b->len - l.tail);
        return editfile_buf_add(out, b->p, off) || editfile_buf_str(out, ed->password) ||
               editfile_buf_add(out, b->p + off + len, b->len - off - len);
    case OP_LOCK: {
        int have = 0; /* how many colons the line has, up to the extra fields' */
        for (size_t p = l.lead; p < l.tail && have < 7; p++)
            have += b->p[p] == ':';
        const char *sep = "";
        if (have == 7 && field_at(b, &l, 7, &off, &len) == 0) {
            for (size_t p = off; p < off + len;) {
                while (p < off + len && editfile_is_blank(b->p[p]))
                    p++;
                size_t q = p;
                while (q < off + len && !editfile_is_blank(b->p[q]))
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
        return editfile_buf_add(out, b->p, l.tail) ||
               editfile_buf_add(out, colons, (size_t)(7 - have)) || editfile_buf_str(out, sep) ||
               editfile_buf_str(out, "nologin") ||
               editfile_buf_add(out, b->p + l.tail, b->len - l.tail);
    }
    case OP_UNLOCK: {
        if (field_at(b, &l, 7, &off, &len) < 0) {
            ed->changed = false;
            return 0;
        }
        struct editfile_buf kept = {0};
        int r = 0, dropped = 0;
        for (size_t p = off; p < off + len && !r;) {
            while (p < off + len && editfile_is_blank(b->p[p]))
                p++;
            size_t q = p;
            while (q < off + len && !editfile_is_blank(b->p[q]))
                q++;
            if (q > p && is_nologin(b->p + p, q - p))
                dropped++;
            else if (q > p)
                r = (kept.len && editfile_buf_str(&kept, " ")) ||
                    editfile_buf_add(&kept, b->p + p, q - p);
            p = q;
        }
        ed->changed = dropped > 0;
        /* the other extra fields stay, one blank apart */
        if (!r && ed->changed)
            r = editfile_buf_add(out, b->p, off) ||
                editfile_buf_add(out, kept.p ? kept.p : "", kept.len) ||
                editfile_buf_add(out, b->p + off + len, b->len - off - len);
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
        e->fail = USERFILE_INVALID;
        editfile_invalid_reason(e->msg, sizeof(e->msg), path, tmp, msgs);
    }
    free(msgs);
    tables_free(t);
    return r;
}

/* One edit of uf, for editfile's callbacks. */
struct job {
    const struct userfile *uf;
    struct edit *ed;
    struct userfile_err *e;
};

static int job_apply(void *ctx, const char *path, const struct editfile_buf *old,
                     struct editfile_buf *out)
{
    struct job *j = ctx;
    if (apply(old, j->ed, out, j->e) != 0) {
        if (j->e->fail == USERFILE_OK)
            fail(j->e, USERFILE_IO, "out of memory editing %s", path);
        return -1;
    }
    return j->ed->changed;
}

static int job_check(void *ctx, const char *tmp, const char *path)
{
    struct job *j = ctx;
    return validate(j->uf, tmp, path, j->e);
}

/* One whole edit: lock, read, apply, write, check, rename, flush. */
static int edit_file(const struct userfile *uf, struct edit *ed, struct userfile_err *e)
{
    const struct editfile f = {.path = uf->path,
                               .noun = "users file",
                               .key = "users",
                               .lock_timeout_ms = uf->lock_timeout_ms,
                               .uid = (uid_t)-1,
                               .gid = (gid_t)-1};
    struct job j = {uf, ed, e};
    const struct editfile_ops ops = {job_apply, job_check, &j};
    enum editfile_fail why;
    if (editfile_edit(&f, &ops, &why, e->msg, sizeof(e->msg)) == 0)
        return 0;
    if (why != EDITFILE_CALLER)
        e->fail = why == EDITFILE_LOCKED ? USERFILE_LOCKED : USERFILE_IO;
    return -1;
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
    if (tables_names_alias(uf->tables, a)) {
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

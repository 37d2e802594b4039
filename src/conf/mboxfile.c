/* Edits of the shared mailboxes file. One edit: lock mailboxes.lock (flock, so a crashed editor
 * never leaves it held), read the whole file (none yet: empty), change or add or drop exactly one
 * line, write the result to a temporary file beside it with the original's mode and owner (a new
 * file: 0640, ternd's user), load it with the users and aliases the way ternd would (so no edit
 * can leave files ternd refuses), rename it over the original and flush the folder. Readers
 * (ternd) see the old file or the new one, never half of one. What the new text is, line by line,
 * is mboxline.c's business. */
#include "conf/mboxfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/userfile.h"
#include "conf/mboxline.h"

#define FILE_MAX (64u << 20) /* a mailboxes file past this is not one a person keeps */
#define FINISH_ERR_MAX 65536

int mboxfile_owner(const struct conf *c, uid_t *uid, gid_t *gid)
{
    *uid = (uid_t)-1;
    *gid = (gid_t)-1;
    if (geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(c->user);
    if (!pw)
        return -1;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

void mboxfile_from_conf(struct mboxfile *mf, const struct conf *c)
{
    mf->path = c->mailboxes_file;
    mf->users_path = c->users_file;
    mf->aliases_path = c->aliases_file;
    mf->tables = c->tables;
    mf->lock_timeout_ms = MBOXFILE_LOCK_TIMEOUT_MS;
    if (mboxfile_owner(c, &mf->uid, &mf->gid) < 0) {
        mf->uid = (uid_t)-1; /* the CLI warns; ternd would not start without the user anyway */
        mf->gid = (gid_t)-1;
    }
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s + ('a' - 'A'));
}

/* The lowercased shared mailbox address, checked for shape; -1 with e filled. */
static int take_addr(const char *addr, char *out, struct mboxfile_err *e)
{
    size_t n = addr ? strlen(addr) : 0;
    const char *at = addr ? strchr(addr, '@') : NULL;
    char local[TABLES_ADDR_MAX + 1];
    if (n == 0 || n > TABLES_ADDR_MAX || !at || strchr(at + 1, '@')) {
        mbox_fail(e, MBOXFILE_BAD, "'%s' is not an address; write it as team@domain",
                  addr ? addr : "");
        return -1;
    }
    memcpy(local, addr, (size_t)(at - addr));
    local[at - addr] = '\0';
    if (!conf_valid_local(local) || !conf_valid_domain(at + 1) || local[0] == '#') {
        mbox_fail(
            e, MBOXFILE_BAD,
            "'%s' is not an address: the local part may hold letters, digits, dots (not first, "
            "last or doubled) and !#$%%&'*+-/=?^_`{|}~ (not # first), the domain must be a name "
            "like example.org",
            addr);
        return -1;
    }
    memcpy(out, addr, n + 1);
    lower(out);
    return 0;
}

/* A member as it will be written (lowercased, bare or full) into out; -1 with e filled. */
static int take_member(const char *m, char *out, struct mboxfile_err *e)
{
    size_t n = m ? strlen(m) : 0;
    const char *at = m ? strchr(m, '@') : NULL;
    bool ok = n > 0 && n <= TABLES_ADDR_MAX && m[0] != '#' && strncasecmp(m, "quota=", 6) != 0;
    if (ok && at) {
        char local[TABLES_ADDR_MAX + 1];
        memcpy(local, m, (size_t)(at - m));
        local[at - m] = '\0';
        ok = !strchr(at + 1, '@') && conf_valid_local(local) && conf_valid_domain(at + 1);
    } else if (ok) {
        ok = conf_valid_local(m);
    }
    if (!ok) {
        mbox_fail(e, MBOXFILE_BAD,
                  "member '%s' is not valid; write a user or alias as user@domain, or a bare local "
                  "part (taken in the mailbox's domain)",
                  m ? m : "");
        return -1;
    }
    memcpy(out, m, n + 1);
    lower(out);
    return 0;
}

/* Is addr an alias, full or bare? A catch-all does not count (see userfile.c's twin). */
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

/* The mailboxes file resolved (so an edit replaces the target of a symlink, not the link), its
 * folder, and whether it exists yet. */
struct target {
    char path[PATH_MAX];
    char dir[PATH_MAX];
    const char *base;
    char lock[PATH_MAX + 8];
    bool exists;
};

static int target_of(const struct mboxfile *mf, struct target *t, struct mboxfile_err *e)
{
    struct stat st;
    t->exists = realpath(mf->path, t->path) != NULL;
    if (!t->exists) {
        /* Not there yet: its folder must be. A dangling symlink is not ours to replace. */
        int why = errno;
        char dir[PATH_MAX], real[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", mf->path);
        char *slash = strrchr(dir, '/');
        const char *base = strrchr(mf->path, '/') ? strrchr(mf->path, '/') + 1 : mf->path;
        if (slash == dir)
            strcpy(dir, "/");
        else if (slash)
            *slash = '\0';
        if (why == ENOENT && lstat(mf->path, &st) == 0)
            why = ELOOP; /* a symlink to nowhere */
        if (why == ENOENT && (!base[0] || !realpath(slash ? dir : ".", real)))
            why = base[0] ? errno : EISDIR;
        if (why == ENOENT && snprintf(t->path, sizeof(t->path), "%s/%s",
                                      strcmp(real, "/") ? real : "", base) >= (int)sizeof(t->path))
            why = ENAMETOOLONG;
        if (why != ENOENT) {
            mbox_fail(e, MBOXFILE_IO,
                      "cannot find or create the mailboxes file %s: %s; check mailboxes = in "
                      "tern.conf and that its folder exists",
                      mf->path, strerror(why));
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
        mbox_fail(e, MBOXFILE_IO, "%s: path too long; move the mailboxes file", t->path);
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

/* Takes the edit lock, waiting up to the timeout (polling, as userfile.c does, for the same
 * reason: no alarm signal of ours). Made by root, the lock goes to owner uid so that the file's
 * owner can take it next time. The fd, or -1 with e filled. */
static int lock_take(const struct mboxfile *mf, const struct target *t, uid_t uid, gid_t gid,
                     struct mboxfile_err *e)
{
    int fd = open(t->lock, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        mbox_fail(e, MBOXFILE_IO,
                  "cannot open the lock file %s: %s; check the folder's permissions", t->lock,
                  strerror(errno));
        return -1;
    }
    struct stat ls;
    if (geteuid() == 0 && uid != (uid_t)-1 && uid != 0 && fstat(fd, &ls) == 0 && ls.st_uid == 0)
        (void)fchown(fd, uid, gid);
    long long deadline = now_ms() + mf->lock_timeout_ms;
    long wait_ms = 5;
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            mbox_fail(e, MBOXFILE_IO, "cannot lock %s: %s", t->lock, strerror(errno));
            close(fd);
            return -1;
        }
        if (now_ms() >= deadline) {
            mbox_fail(
                e, MBOXFILE_LOCKED,
                "another edit of %s has held %s for over %d s; try again, or look for a stuck "
                "process with fuser %s",
                t->path, t->lock, mf->lock_timeout_ms / 1000, t->lock);
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

/* Reads the whole file into b (which ends up at least empty); its mode and owner go to st. A
 * file that does not exist (yet) reads as empty, with *exists false. */
static int read_file(const char *path, struct mbox_buf *b, struct stat *st, bool *exists,
                     struct mboxfile_err *e)
{
    if (mbox_buf_add(b, "", 0) < 0) {
        mbox_fail(e, MBOXFILE_IO, "out of memory reading %s", path);
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *exists = fd >= 0;
    if (fd < 0 && errno == ENOENT)
        return 0;
    if (fd < 0 || fstat(fd, st) < 0) {
        mbox_fail(e, MBOXFILE_IO, "cannot read %s: %s; check that you may read it", path,
                  strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    for (;;) {
        char chunk[65536];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || b->len + (size_t)(n > 0 ? n : 0) > FILE_MAX) {
            if (n < 0)
                mbox_fail(e, MBOXFILE_IO, "cannot read %s: %s", path, strerror(errno));
            else
                mbox_fail(e, MBOXFILE_IO,
                          "%s is larger than %u MiB; is it really the mailboxes file?", path,
                          FILE_MAX >> 20);
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        if (mbox_buf_add(b, chunk, (size_t)n) < 0) {
            mbox_fail(e, MBOXFILE_IO, "out of memory reading %s", path);
            close(fd);
            return -1;
        }
    }
    close(fd);
    return 0;
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

/* Loads the would-be mailboxes file tmp with the domains, users and aliases, as conf_load
 * would, then tables_finish: 0 if ternd would take it, else -1 with the loader's reasons,
 * naming path instead of tmp. */
static int validate(const struct mboxfile *mf, const char *tmp, const char *path,
                    struct mboxfile_err *e)
{
    struct tables *t = tables_new();
    char *msgs = calloc(1, FINISH_ERR_MAX);
    if (!t || !msgs) {
        tables_free(t);
        free(msgs);
        mbox_fail(e, MBOXFILE_IO, "out of memory; free some memory and try again");
        return -1;
    }
    struct conf_errors ce = {msgs, FINISH_ERR_MAX, 0, 0, false};
    char why[512];
    for (size_t i = 0; i < tables_ndomains(mf->tables); i++)
        if (tables_add_domain(t, tables_domain(mf->tables, i), why, sizeof(why)) < 0)
            conf_error(&ce, path, 0, "%s", why);
    int nlines = 0;
    conf_load_users(t, mf->users_path, &ce);
    conf_load_aliases(t, mf->aliases_path, &ce, &nlines);
    conf_load_mailboxes(t, tmp, &ce, &nlines);
    int r = ce.n > 0 || tables_finish(t, msgs, FINISH_ERR_MAX) < 0 ? -1 : 0;
    if (r < 0) {
        char head[PATH_MAX + 128];
        snprintf(head, sizeof(head), "nothing changed: %s would no longer load:\n", path);
        size_t hl = strlen(head) < sizeof(e->msg) ? strlen(head) : sizeof(e->msg) - 1;
        e->fail = MBOXFILE_INVALID;
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
static int edit_file(const struct mboxfile *mf, struct mbox_edit *ed, struct mboxfile_err *e)
{
    struct target t;
    struct stat st = {.st_mode = 0640, .st_uid = mf->uid, .st_gid = mf->gid};
    if (target_of(mf, &t, e) < 0)
        return -1;
    if (t.exists && stat(t.path, &st) < 0) {
        mbox_fail(e, MBOXFILE_IO, "cannot read %s: %s", t.path, strerror(errno));
        return -1;
    }
    int lockfd = lock_take(mf, &t, st.st_uid, st.st_gid, e);
    if (lockfd < 0)
        return -1;
    struct mbox_buf old = {0}, out = {0};
    char tmp[PATH_MAX + 32] = "";
    int r = -1;
    bool exists;
    if (read_file(t.path, &old, &st, &exists, e) < 0 || mbox_apply(&old, ed, &out, e) != 0)
        goto done;
    if (!ed->changed) {
        r = 0;
        goto done;
    }
    char why[PATH_MAX + 256];
    /* Root keeps the owner (a new file: ternd's user); others cannot give files away. */
    uid_t uid = geteuid() == 0 ? st.st_uid : (uid_t)-1;
    if (userfile_write_temp(t.dir, t.base, out.p ? out.p : "", out.len, st.st_mode & 07777, uid,
                            st.st_gid, tmp, sizeof(tmp), why, sizeof(why)) < 0) {
        tmp[0] = '\0';
        mbox_fail(e, MBOXFILE_IO, "%s", why);
        goto done;
    }
    if (validate(mf, tmp, t.path, e) < 0)
        goto done;
    if (rename(tmp, t.path) < 0) {
        mbox_fail(e, MBOXFILE_IO, "cannot replace %s: %s; check the folder's permissions", t.path,
                  strerror(errno));
        goto done;
    }
    tmp[0] = '\0';
    if (userfile_sync_dir(t.dir) < 0) {
        mbox_fail(e, MBOXFILE_IO, "%s was changed, but flushing %s failed: %s; run sync", t.path,
                  t.dir, strerror(errno));
        goto done;
    }
    r = 0;
done:
    if (tmp[0])
        unlink(tmp);
    free(old.p);
    free(out.p);
    close(lockfd); /* releases the lock */
    return r;
}

static void clear_err(struct mboxfile_err *e)
{
    e->fail = MBOXFILE_OK;
    e->msg[0] = '\0';
}

/* Checks and normalises the members of an edit: written forms into w, local@domain into nm,
 * each an array of n malloc'd by the caller. */
static int take_members(const char *addr, const char *const *members, size_t n,
                        char (*w)[TABLES_ADDR_MAX + 1], char (*nm)[TABLES_ADDR_MAX + 1],
                        struct mboxfile_err *e)
{
    if (n == 0) {
        mbox_fail(e, MBOXFILE_BAD, "no members given; name at least one user or alias");
        return -1;
    }
    if (n > MBOXFILE_MAX_MEMBERS) {
        mbox_fail(e, MBOXFILE_BAD, "more than %d members in one go; split the edit or use an alias",
                  MBOXFILE_MAX_MEMBERS);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (take_member(members[i], w[i], e) < 0)
            return -1;
        mbox_norm_member(w[i], strlen(w[i]), strchr(addr, '@') + 1, nm[i]);
    }
    return 0;
}

/* An edit of members: the checks, the arrays, the edit. */
static int member_edit(const struct mboxfile *mf, enum mbox_op op, const char *addr,
                       const char *const *members, size_t n, uint64_t quota, bool *changed,
                       struct mboxfile_err *e)
{
    clear_err(e);
    char a[TABLES_ADDR_MAX + 1];
    if (take_addr(addr, a, e) < 0)
        return -1;
    char(*w)[TABLES_ADDR_MAX + 1] = calloc(n + 1, sizeof(*w));
    char(*nm)[TABLES_ADDR_MAX + 1] = calloc(n + 1, sizeof(*nm));
    const char **wp = calloc(n + 1, sizeof(*wp));
    int r = -1;
    if (!w || !nm || !wp) {
        mbox_fail(e, MBOXFILE_IO, "out of memory; free some memory and try again");
        goto done;
    }
    if (op != MBOX_DELETE && op != MBOX_QUOTA && take_members(a, members, n, w, nm, e) < 0)
        goto done;
    for (size_t i = 0; i < n; i++)
        wp[i] = w[i];
    if (op == MBOX_ADD) {
        const char *domain = strchr(a, '@') + 1;
        const struct tables_user *u = tables_user(mf->tables, a);
        if (!tables_is_local_domain(mf->tables, domain)) {
            mbox_fail(e, MBOXFILE_BAD,
                      "%s is not one of the local domains; add it to domains = under [server] in "
                      "tern.conf first, or pick one of: %s%s",
                      domain, tables_ndomains(mf->tables) ? tables_domain(mf->tables, 0) : "(none)",
                      tables_ndomains(mf->tables) > 1 ? ", ..." : "");
            goto done;
        }
        if (u && !u->shared) {
            mbox_fail(
                e, MBOXFILE_BAD,
                "%s is a user; pick another address for the shared mailbox (or remove the user "
                "first with tern user del)",
                a);
            goto done;
        }
        if (is_alias(mf->tables, a)) {
            mbox_fail(
                e, MBOXFILE_BAD,
                "%s is an alias; remove it from the aliases file first, or pick another address",
                a);
            goto done;
        }
    }
    struct mbox_edit ed = {.op = op,
                           .addr = a,
                           .members = wp,
                           .norm = (const char(*)[TABLES_ADDR_MAX + 1]) nm,
                           .n = n,
                           .quota = quota};
    r = edit_file(mf, &ed, e);
    if (changed)
        *changed = r == 0 && ed.changed;
done:
    free(w);
    free(nm);
    free(wp);
    return r;
}

int mboxfile_add(const struct mboxfile *mf, const char *addr, const char *const *members, size_t n,
                 uint64_t quota, struct mboxfile_err *e)
{
    return member_edit(mf, MBOX_ADD, addr, members, n, quota, NULL, e);
}

int mboxfile_delete(const struct mboxfile *mf, const char *addr, struct mboxfile_err *e)
{
    return member_edit(mf, MBOX_DELETE, addr, NULL, 0, 0, NULL, e);
}

int mboxfile_add_members(const struct mboxfile *mf, const char *addr, const char *const *members,
                         size_t n, bool *changed, struct mboxfile_err *e)
{
    return member_edit(mf, MBOX_ADD_MEMBERS, addr, members, n, 0, changed, e);
}

int mboxfile_del_members(const struct mboxfile *mf, const char *addr, const char *const *members,
                         size_t n, struct mboxfile_err *e)
{
    return member_edit(mf, MBOX_DEL_MEMBERS, addr, members, n, 0, NULL, e);
}

int mboxfile_set_quota(const struct mboxfile *mf, const char *addr, uint64_t quota, bool *changed,
                       struct mboxfile_err *e)
{
    return member_edit(mf, MBOX_QUOTA, addr, NULL, 0, quota, changed, e);
}

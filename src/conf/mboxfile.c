/* Edits of the shared mailboxes file: the checks of an edit's address and members, and that
 * ternd would still load the result with the users and aliases. The file side (lock, read,
 * temporary file with the original's mode and owner, or 0640 and ternd's user for the first one,
 * rename, flush) is util/editfile.c's, shared with the users file; what the new text is, line by
 * line, is mboxline.c's business. */
#include "conf/mboxfile.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf/mboxline.h"
#include "util/editfile.h"

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
    conf_lowercase(out);
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
    conf_lowercase(out);
    return 0;
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
        e->fail = MBOXFILE_INVALID;
        editfile_invalid_reason(e->msg, sizeof(e->msg), path, tmp, msgs);
    }
    free(msgs);
    tables_free(t);
    return r;
}

/* One edit of mf, for editfile's callbacks. */
struct job {
    const struct mboxfile *mf;
    struct mbox_edit *ed;
    struct mboxfile_err *e;
};

static int job_apply(void *ctx, const char *path, const struct editfile_buf *old,
                     struct editfile_buf *out)
{
    struct job *j = ctx;
    return mbox_apply(old, j->ed, out, j->e) != 0 ? -1 : j->ed->changed;
}

static int job_check(void *ctx, const char *tmp, const char *path)
{
    struct job *j = ctx;
    return validate(j->mf, tmp, path, j->e);
}

/* One whole edit: lock, read, apply, write, check, rename, flush. A new file gets 0640 and
 * ternd's user. */
static int edit_file(const struct mboxfile *mf, struct mbox_edit *ed, struct mboxfile_err *e)
{
    const struct editfile f = {.path = mf->path,
                               .noun = "mailboxes file",
                               .key = "mailboxes",
                               .lock_timeout_ms = mf->lock_timeout_ms,
                               .optional = true,
                               .mode = 0640,
                               .uid = mf->uid,
                               .gid = mf->gid};
    struct job j = {mf, ed, e};
    const struct editfile_ops ops = {job_apply, job_check, &j};
    enum editfile_fail why;
    if (editfile_edit(&f, &ops, &why, e->msg, sizeof(e->msg)) == 0)
        return 0;
    if (why != EDITFILE_CALLER)
        e->fail = why == EDITFILE_LOCKED ? MBOXFILE_LOCKED : MBOXFILE_IO;
    return -1;
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
        if (tables_names_alias(mf->tables, a)) {
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

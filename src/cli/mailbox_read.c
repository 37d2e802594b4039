/* `tern mailbox list`, `show` and `check`: what an administrator needs to see and tidy in any
 * mailbox's Maildir (DATA_DIR/mail/DOMAIN/LOCAL) without a mail client. Only the messages are
 * looked at (new/ and cur/, and the Maildir++ folders' for sizes); Dovecot's own files beside
 * them (dovecot*, subscriptions, maildirsize, dovecot-acl) and tmp/ are not messages. Nothing
 * here changes a message; check only removes tmp/ leftovers and rewrites caches. */
#include "cli/cli.h"
#include "cli/mailbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "conf/mboxfile.h"
#include "store/acl.h"
#include "store/maildir.h"
#include "store/quota.h"

#define ID_SHOWN 20             /* characters of an ID list shows, more when not unique */
#define TMP_MAX_AGE (36 * 3600) /* tmp/ files older than this are dead (the Maildir spec) */

struct msgs {
    struct mbox_msg *v;
    size_t n, cap;
};

static void msgs_free(struct msgs *ms)
{
    for (size_t i = 0; i < ms->n; i++)
        mbox_msg_free(&ms->v[i]);
    free(ms->v);
}

/* The flags of a Maildir name (after ":2,") that list shows, in a fixed order. */
static void name_flags(const char *name, bool is_new, char *out)
{
    const char *info = strstr(name, ":2,");
    size_t n = 0;
    if (is_new)
        out[n++] = 'N';
    for (const char *f = "DFPRST"; info && *f; f++)
        if (strchr(info + 3, *f))
            out[n++] = *f;
    out[n] = '\0';
}

/* Adds the messages of DIR/sub (new or cur) to ms; with headers false only their names. A file
 * that goes while we look (Dovecot moved it) is skipped. 0, or -1 with errno. */
static int scan_sub(const char *dir, const char *sub, bool headers, struct msgs *ms)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", dir, sub) >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? 0 : -1;
    DIR *d = fdopendir(dup(dfd));
    if (!d) {
        close(dfd);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (ms->n == ms->cap) {
            size_t cap = ms->cap ? ms->cap * 2 : 64;
            struct mbox_msg *v = realloc(ms->v, cap * sizeof(*v));
            if (!v) {
                rc = -1;
                break;
            }
            ms->v = v;
            ms->cap = cap;
        }
        struct mbox_msg *m = &ms->v[ms->n];
        memset(m, 0, sizeof(*m));
        m->is_new = strcmp(sub, "new") == 0;
        m->size = (uint64_t)st.st_size;
        m->date = st.st_mtime;
        if (!(m->name = strdup(e->d_name))) {
            rc = -1;
            break;
        }
        const char *info = strstr(m->name, ":2,");
        m->uniq = info ? (size_t)(info - m->name) : strlen(m->name);
        name_flags(m->name, m->is_new, m->flags);
        if (headers && mbox_msg_read(dfd, m->name, st.st_mtime, m) != 0) {
            int saved = errno;
            mbox_msg_free(m);
            if (saved == ENOENT)
                continue;
            errno = saved;
            rc = -1;
            break;
        }
        ms->n++;
    }
    int saved = errno;
    closedir(d);
    close(dfd);
    errno = saved;
    return rc;
}

static int by_date(const void *a, const void *b)
{
    const struct mbox_msg *x = a, *y = b;
    if (x->date != y->date)
        return x->date < y->date ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* How many characters of each message's unique name to show: ID_SHOWN, or enough to tell it
 * from every other (what show accepts), or all of it. */
static size_t *shown_lengths(const struct msgs *ms)
{
    size_t *len = calloc(ms->n + 1, sizeof(*len));
    size_t *order = calloc(ms->n + 1, sizeof(*order));
    if (!len || !order) {
        free(len);
        free(order);
        return NULL;
    }
    for (size_t i = 0; i < ms->n; i++)
        order[i] = i;
    /* insertion sort by name: neighbours share the longest prefixes */
    for (size_t i = 1; i < ms->n; i++)
        for (size_t j = i; j > 0 && strcmp(ms->v[order[j - 1]].name, ms->v[order[j]].name) > 0;
             j--) {
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (size_t k = 0; k < ms->n; k++) {
        const struct mbox_msg *m = &ms->v[order[k]];
        size_t need = ID_SHOWN;
        for (int side = -1; side <= 1; side += 2) {
            if ((side < 0 && k == 0) || (side > 0 && k + 1 >= ms->n))
                continue;
            const struct mbox_msg *o = &ms->v[order[k + (size_t)side]];
            size_t l = 0;
            while (l < m->uniq && l < o->uniq && m->name[l] == o->name[l])
                l++;
            if (l + 1 > need)
                need = l + 1;
        }
        len[order[k]] = need < m->uniq ? need : m->uniq;
    }
    free(order);
    return len;
}

/* One message as a JSON object; NULL when out of memory. */
static json_t *msg_json(const struct mbox_msg *m)
{
    char when[32], file[NAME_MAX + 8];
    cli_format_time(m->date, when, sizeof(when));
    snprintf(file, sizeof(file), "%s/%s", m->is_new ? "new" : "cur", m->name);
    char *id = strndup(m->name, m->uniq);
    char *idu = id ? mbox_utf8_copy(id) : NULL, *fileu = mbox_utf8_copy(file);
    char *from = mbox_utf8_copy(m->from), *subject = mbox_utf8_copy(m->subject);
    json_t *j = NULL;
    if (idu && fileu && from && subject)
        j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s}", "id", idu, "file", fileu, "date", when,
                      "from", from, "subject", subject, "size", (json_int_t)m->size, "flags",
                      m->flags);
    free(id);
    free(idu);
    free(fileu);
    free(from);
    free(subject);
    return j;
}

/* Prints the JSON value j (consumed) after sep; -1 when it is NULL or output fails. */
static int put_json(json_t *j, const char *sep)
{
    if (!j)
        return -1;
    fputs(sep, stdout);
    /* ASCII only: header text may hold controls a terminal would obey. */
    int rc = json_dumpf(j, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(j);
    return rc;
}

/* list NAME: the messages of one mailbox, oldest first. */
static int list_one(const struct mbox_opts *o, const struct conf *c)
{
    char dir[PATH_MAX];
    const struct tables_user *u;
    int r = mbox_find(o->sub, c, o->args[0], dir, &u);
    if (r)
        return r;
    struct msgs ms = {0};
    if (scan_sub(dir, "new", true, &ms) != 0 || scan_sub(dir, "cur", true, &ms) != 0) {
        int saved = errno;
        fprintf(stderr,
                "tern mailbox list: cannot read the Maildir %s: %s; check its permissions (run "
                "as root or as ternd's user)\n",
                dir, strerror(saved));
        msgs_free(&ms);
        return saved == ENOMEM ? EX_OSERR : EX_IOERR;
    }
    if (ms.n > 1)
        qsort(ms.v, ms.n, sizeof(*ms.v), by_date);
    size_t *shown = shown_lengths(&ms);
    if (!shown) {
        fprintf(stderr, "tern mailbox list: out of memory\n");
        msgs_free(&ms);
        return EX_OSERR;
    }
    uint64_t total = 0;
    if (o->json)
        fputs("[", stdout);
    else if (ms.n)
        printf("%-*s  %-20s  %10s  %-5s  %s\n", ID_SHOWN, "ID", "DATE", "SIZE", "FLAGS",
               "FROM  SUBJECT");
    for (size_t i = 0; i < ms.n && r == 0; i++) {
        const struct mbox_msg *m = &ms.v[i];
        total += m->size;
        if (o->json) {
            if (put_json(msg_json(m), i ? ",\n  " : "\n  ") != 0)
                r = EX_IOERR;
            continue;
        }
        char when[32], id[NAME_MAX + 1];
        cli_format_time(m->date, when, sizeof(when));
        snprintf(id, sizeof(id), "%.*s", (int)shown[i], m->name);
        mbox_put_safe(stdout, id); /* names come from whoever wrote the file */
        printf("%*s  %-20s  %10llu  %-5s  ", shown[i] < ID_SHOWN ? (int)(ID_SHOWN - shown[i]) : 0,
               "", when, (unsigned long long)m->size, m->flags[0] ? m->flags : "-");
        mbox_put_safe(stdout, m->from[0] ? m->from : "-");
        fputs("  ", stdout);
        mbox_put_safe(stdout, m->subject[0] ? m->subject : "-");
        putchar('\n');
    }
    if (r == 0 && o->json)
        fputs(ms.n ? "\n]\n" : "]\n", stdout);
    else if (r == 0)
        printf("%zu message%s, %llu bytes in %s\n", ms.n, ms.n == 1 ? "" : "s",
               (unsigned long long)total, o->args[0]);
    free(shown);
    msgs_free(&ms);
    return r;
}

/* Messages and bytes in a whole Maildir: new/ and cur/ of the inbox and of every Maildir++
 * folder (.NAME/), as the quota counts them. A missing Maildir is empty. 0, or -1 with errno. */
static int box_usage(const char *dir, uint64_t *count, uint64_t *bytes)
{
    struct msgs ms = {0};
    int rc = scan_sub(dir, "new", false, &ms) || scan_sub(dir, "cur", false, &ms) ? -1 : 0;
    DIR *d = rc == 0 ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && rc == 0 && (e = readdir(d))) {
        char sub[NAME_MAX + 8];
        struct stat st;
        if (e->d_name[0] != '.' || !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
            continue;
        snprintf(sub, sizeof(sub), "%s/new", e->d_name);
        rc = scan_sub(dir, sub, false, &ms);
        snprintf(sub, sizeof(sub), "%s/cur", e->d_name);
        if (rc == 0)
            rc = scan_sub(dir, sub, false, &ms);
    }
    int saved = errno;
    if (d)
        closedir(d);
    else if (rc == 0 && errno != ENOENT)
        rc = -1;
    *count = ms.n;
    *bytes = 0;
    for (size_t i = 0; i < ms.n; i++)
        *bytes += ms.v[i].size;
    msgs_free(&ms);
    errno = saved;
    return rc;
}

/* list without NAME: every mailbox, users and shared, with what it holds. */
static int list_all(const struct mbox_opts *o, const struct conf *c)
{
    const struct tables *t = c->tables;
    int width = 7, r = 0;
    for (size_t i = 0; i < tables_nusers(t); i++)
        if ((int)strlen(tables_user_at(t, i)->addr) > width)
            width = (int)strlen(tables_user_at(t, i)->addr);
    if (o->json)
        fputs("[", stdout);
    else
        printf("%-*s  %-6s  %8s  %12s  %6s  %4s\n", width, "MAILBOX", "KIND", "MESSAGES", "SIZE",
               "QUOTA", "USE");
    uint64_t all_count = 0, all_bytes = 0;
    for (size_t i = 0; i < tables_nusers(t); i++) {
        const struct tables_user *u = tables_user_at(t, i);
        char dir[PATH_MAX], quota[32] = "-", use[16] = "-";
        uint64_t count = 0, bytes = 0;
        if (maildir_path(c->data_dir, u->addr, dir, sizeof(dir)) != 0 ||
            box_usage(dir, &count, &bytes) != 0) {
            fprintf(stderr,
                    "tern mailbox list: cannot read the Maildir of %s: %s; check its "
                    "permissions (run as root or as ternd's user)\n",
                    u->addr, strerror(errno));
            r = EX_IOERR;
        }
        all_count += count;
        all_bytes += bytes;
        const char *kind = u->shared ? "shared" : "user";
        if (u->quota) {
            mboxfile_format_size(u->quota, quota, sizeof(quota));
            snprintf(use, sizeof(use), "%llu%%", (unsigned long long)(bytes * 100 / u->quota));
        }
        if (o->json) {
            json_t *j = json_pack(
                "{s:s, s:s, s:I, s:I, s:o, s:o}", "mailbox", u->addr, "kind", kind, "messages",
                (json_int_t)count, "size", (json_int_t)bytes, "quota",
                u->quota ? json_integer((json_int_t)u->quota) : json_null(), "use_percent",
                u->quota ? json_integer((json_int_t)(bytes * 100 / u->quota)) : json_null());
            if (put_json(j, i ? ",\n  " : "\n  ") != 0)
                r = EX_IOERR;
        } else {
            printf("%-*s  %-6s  %8llu  %12llu  %6s  %4s\n", width, u->addr, kind,
                   (unsigned long long)count, (unsigned long long)bytes, quota, use);
        }
    }
    if (o->json)
        fputs(tables_nusers(t) ? "\n]\n" : "]\n", stdout);
    else
        printf("%zu mailboxes, %llu messages, %llu bytes\n", tables_nusers(t),
               (unsigned long long)all_count, (unsigned long long)all_bytes);
    return r;
}

int mbox_list(const struct mbox_opts *o, const struct conf *c)
{
    int r = o->nargs ? list_one(o, c) : list_all(o, c);
    if (fflush(stdout) != 0 && r == 0) {
        fprintf(stderr, "tern mailbox list: writing standard output: %s\n", strerror(errno));
        r = EX_IOERR;
    }
    return r;
}

int mbox_show(const struct mbox_opts *o, const struct conf *c)
{
    char dir[PATH_MAX];
    const struct tables_user *u;
    int r = mbox_find(o->sub, c, o->args[0], dir, &u);
    if (r)
        return r;
    const char *id = o->args[1];
    size_t idlen = strlen(id);
    struct msgs ms = {0};
    if (scan_sub(dir, "new", false, &ms) != 0 || scan_sub(dir, "cur", false, &ms) != 0) {
        fprintf(stderr, "tern mailbox show: cannot read the Maildir %s: %s\n", dir,
                strerror(errno));
        msgs_free(&ms);
        return EX_IOERR;
    }
    /* Candidates: names whose unique part starts with ID; one that is ID exactly wins. */
    size_t found = 0, pick = 0;
    for (size_t i = 0; i < ms.n; i++) {
        const struct mbox_msg *m = &ms.v[i];
        if (idlen == 0 || idlen > m->uniq || strncmp(m->name, id, idlen) != 0)
            continue;
        if (m->uniq == idlen) {
            found = 1;
            pick = i;
            break;
        }
        found++;
        pick = i;
    }
    if (found != 1) {
        fprintf(stderr, "tern mailbox show: ");
        mbox_put_safe(stderr, id);
        if (found == 0) {
            fprintf(stderr, " is no message of %s; tern mailbox list %s shows the IDs\n",
                    o->args[0], o->args[0]);
        } else {
            fprintf(stderr, " fits %zu messages of %s; give more of the ID:\n", found, o->args[0]);
            for (size_t i = 0; i < ms.n; i++)
                if (idlen <= ms.v[i].uniq && strncmp(ms.v[i].name, id, idlen) == 0) {
                    fputs("  ", stderr);
                    mbox_put_safe(stderr, ms.v[i].name);
                    fputc('\n', stderr);
                }
        }
        msgs_free(&ms);
        return found ? EX_DATAERR : EX_NOINPUT;
    }
    char path[PATH_MAX + NAME_MAX + 8];
    snprintf(path, sizeof(path), "%s/%s/%s", dir, ms.v[pick].is_new ? "new" : "cur",
             ms.v[pick].name);
    msgs_free(&ms);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        fprintf(stderr, "tern mailbox show: cannot read %s: %s%s\n", path, strerror(errno),
                errno == ENOENT ? " (a mail client moved it just now: try again)" : "");
        return errno == ENOENT ? EX_NOINPUT : EX_IOERR;
    }
    fflush(stdout);
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "tern mailbox show: cannot read %s: %s\n", path, strerror(errno));
            r = EX_IOERR;
            break;
        }
        if (n == 0)
            break;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(STDOUT_FILENO, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                fprintf(stderr, "tern mailbox show: writing standard output: %s\n",
                        strerror(errno));
                close(fd);
                return EX_IOERR;
            }
            done += w;
        }
    }
    close(fd);
    return r;
}

/* Removes the files of DIR/SUB older than cutoff: deliveries that died half-way (the Maildir
 * spec allows 36 hours). Adds to *removed. 0, or -1 with the reason on stderr. */
static int tidy_tmp(const char *addr, const char *dir, const char *sub, time_t cutoff,
                    size_t *removed)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, sub);
    DIR *d = opendir(path);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, "tern mailbox check: %s: cannot read %s: %s\n", addr, path,
                strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode) ||
            st.st_mtime >= cutoff)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            (*removed)++;
        else if (errno != ENOENT) {
            fprintf(stderr, "tern mailbox check: %s: cannot remove %s/%s: %s\n", addr, path,
                    e->d_name, strerror(errno));
            rc = -1;
        }
    }
    closedir(d);
    return rc;
}

/* One mailbox: tmp/ leftovers (the inbox's and every folder's), then maildirsize. */
static int check_one(const struct conf *c, const char *addr, uint64_t quota, time_t cutoff)
{
    char dir[PATH_MAX], err[1024];
    struct stat st;
    if (maildir_path(c->data_dir, addr, dir, sizeof(dir)) != 0 || stat(dir, &st) != 0) {
        printf("%s: no Maildir yet (nothing delivered); nothing to check\n", addr);
        return 0;
    }
    size_t removed = 0;
    int rc = tidy_tmp(addr, dir, "tmp", cutoff, &removed);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        struct stat fst;
        char sub[NAME_MAX + 8];
        if (e->d_name[0] != '.' || !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            fstatat(dirfd(d), e->d_name, &fst, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(fst.st_mode))
            continue;
        snprintf(sub, sizeof(sub), "%s/tmp", e->d_name);
        if (tidy_tmp(addr, dir, sub, cutoff, &removed) != 0)
            rc = -1;
    }
    if (d)
        closedir(d);
    struct quota_usage u;
    if (quota_recalc(dir, quota, &u, err, sizeof(err)) != 0) {
        fprintf(stderr, "tern mailbox check: %s: %s\n", addr, err);
        return EX_IOERR;
    }
    /* Made by root, maildirsize must still be ternd's to append to: give it the Maildir's
     * owner. */
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/%s", dir, QUOTA_FILE);
    if (geteuid() == 0 && lchown(path, st.st_uid, st.st_gid) != 0) {
        fprintf(stderr, "tern mailbox check: %s: cannot give %s to the Maildir's owner: %s\n", addr,
                path, strerror(errno));
        rc = -1;
    }
    printf("%s: ", addr);
    if (removed)
        printf("removed %zu file%s older than 36 hours from tmp/", removed,
               removed == 1 ? "" : "s");
    else
        printf("nothing old in tmp/");
    printf("; maildirsize recomputed: %llu message%s, %llu bytes", (unsigned long long)u.count,
           u.count == 1 ? "" : "s", (unsigned long long)u.bytes);
    if (quota) {
        char q[32];
        mboxfile_format_size(quota, q, sizeof(q));
        printf(" of %s (%llu%%)%s", q, (unsigned long long)(u.bytes * 100 / quota),
               u.bytes >= quota ? ", FULL: mail to it is refused" : "");
    } else {
        printf(", no quota");
    }
    printf("\n");
    return rc ? EX_IOERR : 0;
}

int mbox_check(const struct mbox_opts *o, const struct conf *c)
{
    int r = 0;
    /* ACLs first: they also make a shared mailbox's missing Maildir, which is then checked. */
    uid_t uid;
    gid_t gid;
    mbox_owner(o->sub, c, &uid, &gid);
    char err[1024];
    size_t changed = 0;
    int acl = acl_sync(c->data_dir, c->tables, uid, gid, &changed, err, sizeof(err));
    time_t cutoff = time(NULL) - TMP_MAX_AGE;
    if (o->nargs == 0) {
        for (size_t i = 0; i < tables_nusers(c->tables); i++) {
            const struct tables_user *u = tables_user_at(c->tables, i);
            int one = check_one(c, u->addr, u->quota, cutoff);
            r = r ? r : one;
        }
    }
    for (int i = 0; i < o->nargs; i++) {
        char dir[PATH_MAX];
        const struct tables_user *u;
        int one = mbox_find(o->sub, c, o->args[i], dir, &u);
        if (one == 0)
            one = check_one(c, o->args[i], u ? u->quota : 0, cutoff);
        r = r ? r : one;
    }
    if (acl != 0) {
        fprintf(stderr, "tern mailbox check: ACLs: %s\n", err);
        r = r ? r : EX_IOERR;
    } else if (changed) {
        printf("ACLs: updated %zu Dovecot ACL file%s (dovecot-acl)\n", changed,
               changed == 1 ? "" : "s");
    } else {
        printf("ACLs: every shared mailbox's dovecot-acl is in line with %s\n", c->mailboxes_file);
    }
    return r;
}

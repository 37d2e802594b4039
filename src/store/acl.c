/* Writes the dovecot-acl files of shared mailboxes from the tables (see acl.h): the member
 * lists become Dovecot's per-mailbox ACLs, and Maildirs no longer shared lose theirs. */
#include "store/acl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/maildir.h"
#include "util/err.h"
#include "util/fsutil.h"

/* The file's wanted content: a comment, then one line per member user. malloc'd. */
static char *acl_text(const struct tables *t, const char *box, size_t *len)
{
    long n = tables_shared_users(t, box, NULL, 0);
    if (n < 0)
        return NULL;
    const char **users = calloc((size_t)n + 1, sizeof(*users));
    size_t cap = 256 + (size_t)n * (TABLES_ADDR_MAX + 32);
    char *buf = malloc(cap);
    if (!users || !buf) {
        free(users);
        free(buf);
        return NULL;
    }
    tables_shared_users(t, box, users, (size_t)n);
    size_t used = (size_t)snprintf(buf, cap,
                                   "# Written by tern from its mailboxes file: members of %s.\n"
                                   "# Edit the members with `tern mailbox`, not here.\n",
                                   box);
    for (long i = 0; i < n; i++)
        used +=
            (size_t)snprintf(buf + used, cap - used, "user=%s %s\n", users[i], ACL_MEMBER_RIGHTS);
    free(users);
    *len = used;
    return buf;
}

/* Is the file at path exactly text? */
static int same_content(const char *path, const char *text, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    char *buf = malloc(len + 1);
    ssize_t got = buf ? read(fd, buf, len + 1) : -1;
    int same = got == (ssize_t)len && memcmp(buf, text, len) == 0;
    free(buf);
    close(fd);
    return same;
}

/* Replaces path with text: a temporary file beside it, flushed, then renamed over it. */
static int replace_file(const char *dir, const char *path, const char *text, size_t len, uid_t uid,
                        gid_t gid, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, ACL_FILE) >= sizeof(tmp)) {
        err_set(err, errlen, "acl: path too long: %.64s...", dir);
        return -1;
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fsutil_err(err, errlen, "acl", "create", tmp, errno);
        return -1;
    }
    int rc = fsutil_write_all(fd, text, len);
    int e = errno;
    if (rc == 0 && fchmod(fd, 0640) != 0)
        rc = -1, e = errno;
    if (rc == 0 && uid != (uid_t)-1 && fchown(fd, uid, gid) != 0)
        rc = -1, e = errno;
    if (rc == 0 && fsync(fd) != 0)
        rc = -1, e = errno;
    if (close(fd) != 0 && rc == 0)
        rc = -1, e = errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -1, e = errno;
    if (rc != 0) {
        unlink(tmp);
        fsutil_err(err, errlen, "acl", "write", path, e);
        return -1;
    }
    return fsutil_fsync_dir(dir, "acl", err, errlen);
}

/* chown -R for the Maildir folders acl_sync may just have made (root running `tern`). */
static void chown_maildir(const char *box, uid_t uid, gid_t gid)
{
    static const char *const sub[] = {"", "/tmp", "/new", "/cur"};
    char p[PATH_MAX];
    for (size_t i = 0; i < 4; i++)
        if ((size_t)snprintf(p, sizeof(p), "%s%s", box, sub[i]) < sizeof(p))
            if (lchown(p, uid, gid) != 0) {
                /* best effort: ternd reports a Maildir it cannot write when it delivers */
            }
    char parent[PATH_MAX];
    snprintf(parent, sizeof(parent), "%s", box);
    char *slash = strrchr(parent, '/');
    if (slash) {
        *slash = '\0';
        if (lchown(parent, uid, gid) != 0) {
            /* as above */
        }
    }
}

static int sync_one(const char *data_dir, const struct tables *t, const char *box, uid_t uid,
                    gid_t gid, size_t *changed, char *err, size_t errlen)
{
    char dir[PATH_MAX], path[PATH_MAX];
    if (maildir_make(data_dir, box, dir, sizeof(dir), err, errlen) != 0)
        return -1;
    if (uid != (uid_t)-1)
        chown_maildir(dir, uid, gid);
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, ACL_FILE) >= sizeof(path)) {
        err_set(err, errlen, "acl: path too long: %.64s...", dir);
        return -1;
    }
    size_t len = 0;
    char *text = acl_text(t, box, &len);
    if (!text) {
        err_set(err, errlen, "acl: out of memory writing the ACL of %s; free some memory", box);
        return -1;
    }
    int rc = 0;
    if (!same_content(path, text, len)) {
        rc = replace_file(dir, path, text, len, uid, gid, err, errlen);
        if (rc == 0)
            (*changed)++;
    }
    free(text);
    return rc;
}

/* Removes dovecot-acl from DATA_DIR/mail/DOMAIN/LOCAL when LOCAL@DOMAIN is not shared. */
static int sweep(const char *data_dir, const struct tables *t, size_t *changed, char *err,
                 size_t errlen)
{
    char mail[PATH_MAX];
    snprintf(mail, sizeof(mail), "%s/mail", data_dir);
    DIR *top = opendir(mail);
    if (!top)
        return 0; /* nothing delivered yet */
    int rc = 0;
    struct dirent *d;
    while ((d = readdir(top))) {
        if (d->d_name[0] == '.' || !tables_is_local_domain(t, d->d_name))
            continue;
        char ddir[PATH_MAX];
        if ((size_t)snprintf(ddir, sizeof(ddir), "%s/%s", mail, d->d_name) >= sizeof(ddir))
            continue;
        DIR *dom = opendir(ddir);
        if (!dom)
            continue;
        struct dirent *b;
        while ((b = readdir(dom))) {
            char addr[TABLES_ADDR_MAX + 2], path[PATH_MAX];
            if (b->d_name[0] == '.' ||
                (size_t)snprintf(addr, sizeof(addr), "%s@%s", b->d_name, d->d_name) >=
                    sizeof(addr) ||
                tables_is_shared(t, addr) ||
                (size_t)snprintf(path, sizeof(path), "%s/%s/%s", ddir, b->d_name, ACL_FILE) >=
                    sizeof(path))
                continue;
            if (unlink(path) == 0)
                (*changed)++;
            else if (errno != ENOENT && errno != ENOTDIR && rc == 0) {
                fsutil_err(err, errlen, "acl", "remove", path, errno);
                rc = -1;
            }
        }
        closedir(dom);
    }
    closedir(top);
    return rc;
}

int acl_sync(const char *data_dir, const struct tables *t, uid_t uid, gid_t gid, size_t *changed,
             char *err, size_t errlen)
{
    size_t dummy = 0;
    if (!changed)
        changed = &dummy;
    *changed = 0;
    int rc = 0;
    char why[1024];
    for (size_t i = 0; i < tables_nshared(t); i++)
        if (sync_one(data_dir, t, tables_shared_at(t, i), uid, gid, changed, why, sizeof(why)) !=
                0 &&
            rc == 0) {
            err_set(err, errlen, "%s", why);
            rc = -1;
        }
    if (sweep(data_dir, t, changed, why, sizeof(why)) != 0 && rc == 0) {
        err_set(err, errlen, "%s", why);
        rc = -1;
    }
    return rc;
}

/* The checks made once tern.conf has been read whole: defaults that depend on the machine, paths
 * made absolute against the file's folder, required keys, the [tls] files, and the users and
 * aliases files loaded into the tables, every problem reported as FILE:LINE. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/loader.h"
#include "conf/values.h"

static int key_line(const struct loader *l, const char *name)
{
    for (size_t i = 0; i < CONF_NKEYS; i++)
        if (strcmp(conf_keys[i].name, name) == 0)
            return l->key_line[i];
    return 0;
}

/* Where to point at a server key: its line, else [server], else the end. */
static int server_line(const struct loader *l, const char *name)
{
    int line = key_line(l, name);
    return line ? line : conf_where(l, SEC_SERVER);
}

/* dir/rel, or rel when it is absolute; -1 when too long. */
static int path_join(char *out, size_t n, const char *dir, const char *rel)
{
    int r = rel[0] == '/' ? snprintf(out, n, "%s", rel) : snprintf(out, n, "%s/%s", dir, rel);
    return r < 0 || (size_t)r >= n ? -1 : 0;
}

/* The folder the config file was named in, absolute and canonical. A symlinked file is not
 * followed: relative paths go from where the admin put the link. */
static int conf_dir(const char *file, char *out)
{
    char tmp[PATH_MAX];
    if (strlen(file) >= sizeof(tmp))
        return -1;
    strcpy(tmp, file);
    char *slash = strrchr(tmp, '/');
    if (!slash)
        strcpy(tmp, ".");
    else if (slash == tmp)
        slash[1] = '\0';
    else
        *slash = '\0';
    return realpath(tmp, out) ? 0 : -1;
}

static int tls_line(const struct loader *l, const char *name)
{
    int line = key_line(l, name);
    return line ? line : conf_where(l, SEC_TLS);
}

/* [tls]: both files or neither, both readable; an smtps listener needs them. Whether they hold
 * a usable certificate and key is checked by OpenSSL when ternd loads them (net/tls.c). */
static void conf_finish_tls(struct loader *l, bool dirs_ok)
{
    struct conf *c = l->c;
    if (!l->tls_cert[0] != !l->tls_key[0]) {
        conf_error(l->e, l->file, conf_where(l, SEC_TLS),
                   "[tls] needs both cert = and key = (or neither, for no TLS)");
        return;
    }
    if (l->tls_cert[0] && dirs_ok) {
        const char *name[2] = {"cert", "key"};
        const char *rel[2] = {l->tls_cert, l->tls_key};
        char *dst[2] = {c->tls_cert, c->tls_key};
        for (int i = 0; i < 2; i++) {
            if (path_join(dst[i], PATH_MAX, c->data_dir, rel[i]) < 0)
                conf_error(l->e, l->file, tls_line(l, name[i]), "%s path is too long", name[i]);
            else if (access(dst[i], R_OK) != 0)
                conf_error(l->e, l->file, tls_line(l, name[i]),
                           "%s %s: %s; create it (make run makes a self-signed one) or fix the "
                           "path",
                           name[i], dst[i], strerror(errno));
        }
    }
    if (c->nsni && !l->tls_cert[0])
        conf_error(l->e, l->file, l->sni_line[0],
                   "sni = needs a default certificate too: add cert = and key = under [tls]");
    for (size_t i = 0; dirs_ok && i < c->nsni; i++) {
        char *files[2] = {c->sni[i].cert, c->sni[i].key};
        for (int k = 0; k < 2; k++) {
            char abs[PATH_MAX];
            if (path_join(abs, sizeof abs, c->data_dir, files[k]) < 0) {
                conf_error(l->e, l->file, l->sni_line[i], "sni: path too long");
                continue;
            }
            if (access(abs, R_OK) != 0)
                conf_error(l->e, l->file, l->sni_line[i], "sni %s: %s: %s; fix the path",
                           c->sni[i].host, abs, strerror(errno));
            memcpy(files[k], abs, sizeof abs);
        }
    }
    if (!l->tls_cert[0])
        for (size_t i = 0; i < c->nlisteners; i++)
            if (c->listeners[i].kind == LISTEN_SMTPS)
                conf_error(l->e, l->file, conf_where(l, SEC_LISTEN),
                           "smtps listener on port %d needs a certificate: add cert = and key = "
                           "under [tls]",
                           c->listeners[i].port);
}

/* Defaults, paths, required keys, then the users and aliases files. */
void conf_finish(struct loader *l)
{
    struct conf *c = l->c;
    if (!c->hostname[0] && !key_line(l, "hostname")) {
        char h[256] = "";
        if (gethostname(h, sizeof(h) - 1) < 0 || !conf_valid_domain(h))
            conf_error(l->e, l->file, conf_where(l, SEC_SERVER),
                       "this machine's name '%s' is not a valid domain name, and hostname is not "
                       "set; add hostname = mail.example.org under [server]",
                       h);
        snprintf(c->hostname, sizeof(c->hostname), "%s", h);
        conf_lowercase(c->hostname);
    }
    if (l->ndomains == 0 && !key_line(l, "domains"))
        conf_error(l->e, l->file, conf_where(l, SEC_SERVER),
                   "no domains; add domains = example.org (the primary first) under [server]");
    if (c->nlisteners == 0)
        conf_error(l->e, l->file, conf_where(l, SEC_LISTEN),
                   "no listener; add smtp = 127.0.0.1:2525 (or 0.0.0.0:25) under [listen]");

    char dir[PATH_MAX];
    bool dirs_ok = false;
    if (conf_dir(l->file, dir) < 0) {
        conf_error(l->e, l->file, 0,
                   "cannot tell which folder this file is in; give its full path");
    } else {
        /* Absolute, so a reload finds the same file whatever the daemon's working folder. */
        const char *base = strrchr(l->file, '/');
        base = base ? base + 1 : l->file;
        if (snprintf(c->path, sizeof(c->path), "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", base) >=
            (int)sizeof(c->path))
            snprintf(c->path, sizeof(c->path), "%s", l->file);
        char joined[PATH_MAX];
        struct stat st;
        int line = server_line(l, "data_dir");
        if (path_join(joined, sizeof(joined), dir, l->data_dir) < 0)
            conf_error(l->e, l->file, line, "data_dir is too long; use a shorter path");
        else if (stat(joined, &st) < 0)
            conf_error(l->e, l->file, line,
                       "data_dir %s: %s; create it (tern init DIR) or fix data_dir", joined,
                       strerror(errno));
        else if (!S_ISDIR(st.st_mode))
            conf_error(l->e, l->file, line, "data_dir %s is not a folder; point data_dir at one",
                       joined);
        else if (!realpath(joined, c->data_dir))
            conf_error(l->e, l->file, line, "data_dir %s: %s; fix data_dir", joined,
                       strerror(errno));
        else
            dirs_ok = true;
    }
    if (dirs_ok && path_join(c->users_file, sizeof(c->users_file), c->data_dir, l->users) < 0) {
        conf_error(l->e, l->file, server_line(l, "users"), "users path is too long; shorten it");
        dirs_ok = false;
    }
    if (dirs_ok &&
        path_join(c->aliases_file, sizeof(c->aliases_file), c->data_dir, l->aliases) < 0) {
        conf_error(l->e, l->file, server_line(l, "aliases"),
                   "aliases path is too long; shorten it");
        dirs_ok = false;
    }
    if (dirs_ok &&
        path_join(c->mailboxes_file, sizeof(c->mailboxes_file), c->data_dir, l->mailboxes) < 0) {
        conf_error(l->e, l->file, server_line(l, "mailboxes"),
                   "mailboxes path is too long; shorten it");
        dirs_ok = false;
    }
    conf_finish_tls(l, dirs_ok);
    conf_relay_finish(l, dirs_ok);
    /* Without domains or files every user line would be an error too: stop here. */
    if (!dirs_ok || l->ndomains == 0)
        return;

    c->tables = tables_new();
    if (!c->tables) {
        conf_error(l->e, l->file, 0, "out of memory; free some memory and try again");
        return;
    }
    char why[512];
    for (size_t i = 0; i < l->ndomains; i++)
        if (tables_add_domain(c->tables, l->domains[i], why, sizeof(why)) < 0)
            conf_error(l->e, l->file, server_line(l, "domains"), "%s", why);

    struct stat st;
    const char *what[2] = {"users", "aliases"};
    const char *path[2] = {c->users_file, c->aliases_file};
    bool present[2];
    for (int i = 0; i < 2; i++) {
        present[i] = stat(path[i], &st) == 0;
        if (!present[i])
            conf_error(l->e, l->file, server_line(l, what[i]),
                       "%s file %s: %s; create it (`tern init %s` writes a first one) or set "
                       "%s = to the right path",
                       what[i], path[i], strerror(errno), c->data_dir, what[i]);
    }
    int before = l->e->n;
    if (present[0])
        conf_load_users(c->tables, c->users_file, l->e);
    int nlines = 0;
    if (present[1])
        conf_load_aliases(c->tables, c->aliases_file, l->e, &nlines);
    /* The mailboxes file is optional: a missing default means no shared mailboxes, but a path
     * someone wrote must exist (a typo would silently drop every shared mailbox). */
    int mlines = 0;
    if (stat(c->mailboxes_file, &st) == 0)
        conf_load_mailboxes(c->tables, c->mailboxes_file, l->e, &mlines);
    else if (errno != ENOENT || key_line(l, "mailboxes") > 0)
        conf_error(l->e, l->file, server_line(l, "mailboxes"),
                   "mailboxes file %s: %s; create it (`tern mailbox add` does) or fix "
                   "mailboxes =",
                   c->mailboxes_file, strerror(errno));
    if (l->e->n > before || !present[0] || !present[1])
        return; /* the alias checks would only repeat those errors */

    size_t cap = 65536;
    char *fin = malloc(cap);
    if (!fin) {
        conf_error(l->e, l->file, 0, "out of memory; free some memory and try again");
        return;
    }
    if (tables_finish(c->tables, fin, cap) < 0) {
        /* Reasons about one alias already start "ALIASES:LINE: "; the rest are about something
         * missing, so they point at the end of the aliases file, where it would be added. */
        for (char *s = fin, *nl; *s; s = nl + 1) {
            nl = strchr(s, '\n');
            if (!nl)
                break; /* a reason cut short by the buffer */
            *nl = '\0';
            char *end = NULL;
            long line = 0;
            const char *file = c->aliases_file;
            size_t plen = strlen(file);
            if (strncmp(s, c->mailboxes_file, strlen(c->mailboxes_file)) == 0 &&
                s[strlen(c->mailboxes_file)] == ':') {
                file = c->mailboxes_file;
                plen = strlen(file);
            }
            if (strncmp(s, file, plen) == 0 && s[plen] == ':')
                line = strtol(s + plen + 1, &end, 10);
            if (end && end[0] == ':' && end[1] == ' ' && line > 0 && line <= INT_MAX)
                conf_error(l->e, file, (int)line, "%s", end + 2);
            else
                conf_error(l->e, c->aliases_file, nlines > 0 ? nlines : 1, "%s", s);
        }
        if (l->e->n == before)
            conf_error(l->e, c->aliases_file, nlines > 0 ? nlines : 1,
                       "the aliases do not check out, and the reasons did not fit; shorten the "
                       "file and try again");
    }
    free(fin);
}

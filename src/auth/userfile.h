/* Edits of the users file (Dovecot passwd-file) while ternd may be reading it and other admins
 * may be editing it: each edit takes users.lock beside the file, rewrites one line into a
 * temporary file with the same mode and owner, checks that the result still loads the way
 * ternd would load it, and renames it into place (util/editfile does the file side). Every
 * other line stays byte for byte. */
#ifndef TERN_AUTH_USERFILE_H
#define TERN_AUTH_USERFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/config.h"
#include "policy/tables.h"

#define USERFILE_LOCK_TIMEOUT_MS 10000
#define USERFILE_NAME_MAX 127 /* a full name, as tables_user.name holds it */

/* Which file, checked against what, and how long to wait for another edit to finish. */
struct userfile {
    const char *path;            /* the users file */
    const char *aliases_path;    /* read to check the result (postmaster, alias members) */
    const char *mailboxes_path;  /* read too when it exists (shared mailboxes' members) */
    const struct tables *tables; /* the local domains and the aliases, from conf_load */
    int lock_timeout_ms;
};

/* Fills uf from a loaded configuration, which must outlive it. */
void userfile_from_conf(struct userfile *uf, const struct conf *c);

/* Why an edit failed, so that the CLI can tell the cases apart (its exit status). */
enum userfile_fail {
    USERFILE_OK,
    USERFILE_BAD,     /* bad address or name, not a local domain, an alias, already a user */
    USERFILE_NOUSER,  /* no such user */
    USERFILE_IO,      /* cannot read, write or rename */
    USERFILE_LOCKED,  /* another edit held the lock past lock_timeout_ms */
    USERFILE_INVALID, /* the file would no longer load (e.g. postmaster would reach nobody) */
};

struct userfile_err {
    enum userfile_fail fail;
    char msg[2048]; /* what went wrong and what to do */
};

/* Each returns 0, or -1 with e filled. addr is user@domain in any case; it is written
 * lowercased. password is a whole stored field: "{CRYPT}$y$..." or "{SCRAM-SHA-256}...". */
int userfile_add(const struct userfile *uf, const char *addr, const char *password,
                 const char *name, bool admin, struct userfile_err *e);
int userfile_set_password(const struct userfile *uf, const char *addr, const char *password,
                          struct userfile_err *e);
int userfile_delete(const struct userfile *uf, const char *addr, struct userfile_err *e);
/* Lock adds the extra field `nologin` (Dovecot's), unlock removes it. *changed tells whether
 * the file had to change (false: it was already so). */
int userfile_lock(const struct userfile *uf, const char *addr, bool *changed,
                  struct userfile_err *e);
int userfile_unlock(const struct userfile *uf, const char *addr, bool *changed,
                    struct userfile_err *e);

/* The users as the file says now, in its order, read the way ternd reads them: *users is
 * malloc'd (free() it), *n its length. The password fields come along: wipe before freeing. */
int userfile_list(const struct userfile *uf, struct tables_user **users, size_t *n,
                  struct userfile_err *e);

#endif

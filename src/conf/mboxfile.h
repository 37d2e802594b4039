/* Edits of the shared mailboxes file (`mailboxes`, `team@domain: member, member quota=SIZE`)
 * while ternd may be reading it and other admins may be editing it, as auth/userfile edits the
 * users file (util/editfile does the file side of both): each edit takes mailboxes.lock beside
 * the file, rewrites one line into a temporary file with the same mode and owner, checks that
 * the result loads the way ternd would load it (domains, users, aliases and the new file, then
 * tables_finish), and renames it into place. Every other line stays byte for byte. The file is
 * optional: the first add creates it. */
#ifndef TERN_CONF_MBOXFILE_H
#define TERN_CONF_MBOXFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "conf/config.h"
#include "policy/tables.h"

#define MBOXFILE_LOCK_TIMEOUT_MS 10000
#define MBOXFILE_MAX_MEMBERS 1000 /* members given in one edit */
/* What a new (or empty) mailboxes file starts with; `tern init` writes it too. */
#define MBOXFILE_HEADER                                                                            \
    "# mailboxes: team@domain: member, member [quota=SIZE]. Members are users or aliases\n"        \
    "# (a bare name is taken in the mailbox's domain); edit with `tern mailbox`.\n"

/* Which file, checked against what, owned by whom when it has to be created. */
struct mboxfile {
    const char *path;            /* the mailboxes file */
    const char *users_path;      /* read to check the result (members must be users) */
    const char *aliases_path;    /* and the aliases (members may be aliases) */
    const struct tables *tables; /* the local domains, users and aliases, from conf_load */
    int lock_timeout_ms;
    uid_t uid; /* owner of a file created new, and of its lock; (uid_t)-1: whoever runs this */
    gid_t gid;
};

/* Fills mf from a loaded configuration, which must outlive it. When running as root the owner
 * is the configuration's `user =` (ternd's), else nobody in particular. */
void mboxfile_from_conf(struct mboxfile *mf, const struct conf *c);

/* The uid/gid of the configuration's `user =` when this process is root, so that files made
 * for ternd belong to it; (uid_t)-1 otherwise. -1 when root and that user does not exist. */
int mboxfile_owner(const struct conf *c, uid_t *uid, gid_t *gid);

/* Why an edit failed, so that the CLI can tell the cases apart (its exit status). */
enum mboxfile_fail {
    MBOXFILE_OK,
    MBOXFILE_BAD,     /* bad address or member, not local, a user or alias, already shared,
                       * not a member, the last member */
    MBOXFILE_NOBOX,   /* no such shared mailbox */
    MBOXFILE_IO,      /* cannot read, write or rename */
    MBOXFILE_LOCKED,  /* another edit held the lock past lock_timeout_ms */
    MBOXFILE_INVALID, /* the files would no longer load (e.g. a member is not a user) */
};

struct mboxfile_err {
    enum mboxfile_fail fail;
    char msg[2048]; /* what went wrong and what to do */
};

/* Each returns 0, or -1 with e filled. addr is team@domain in any case; members are addresses
 * or bare local parts (taken in addr's domain), written lowercased as given; quota is in bytes,
 * 0 for none. *changed (may be NULL) tells whether the file had to change: adding members who
 * are there already, removing a quota that is not set, and so on, change nothing. */
int mboxfile_add(const struct mboxfile *mf, const char *addr, const char *const *members, size_t n,
                 uint64_t quota, struct mboxfile_err *e);
int mboxfile_delete(const struct mboxfile *mf, const char *addr, struct mboxfile_err *e);
int mboxfile_add_members(const struct mboxfile *mf, const char *addr, const char *const *members,
                         size_t n, bool *changed, struct mboxfile_err *e);
/* Refuses to remove a member who is not one, or the last member (delete the mailbox instead). */
int mboxfile_del_members(const struct mboxfile *mf, const char *addr, const char *const *members,
                         size_t n, struct mboxfile_err *e);
int mboxfile_set_quota(const struct mboxfile *mf, const char *addr, uint64_t quota, bool *changed,
                       struct mboxfile_err *e);

/* A size as `quota=` writes it: the largest unit (G, M, K) that divides it, like "500M". */
void mboxfile_format_size(uint64_t bytes, char *out, size_t outlen);

#endif

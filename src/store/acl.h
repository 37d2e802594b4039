/* Dovecot ACLs for shared mailboxes: tern's `mailboxes` file is the one truth about who may read
 * a shared mailbox, and Dovecot (contrib/dovecot) enforces it from a `dovecot-acl` file (its
 * vfile format) in each shared Maildir. acl_sync makes those files say exactly what the tables
 * say: one `user=ADDR RIGHTS` line per member user, and no dovecot-acl left in a Maildir that is
 * no longer shared. ternd runs it at start and after every reload; `tern mailbox` after every
 * edit. Files are replaced atomically (temporary file, rename) and only when they change. */
#ifndef TERN_STORE_ACL_H
#define TERN_STORE_ACL_H

#include <stddef.h>
#include <sys/types.h>

#include "policy/tables.h"

#define ACL_FILE "dovecot-acl"
/* lookup, read, seen, write flags, write deleted, insert, post, expunge: all a member needs to
 * work in the mailbox, but not `a` (changing the ACL: tern's file decides), `x` (deleting the
 * mailbox) nor `k` (subfolders: Dovecot would make them outside the Maildir++ layout that tern's
 * quota and `tern mailbox` read). */
#define ACL_MEMBER_RIGHTS "lrwstipe"

/* Makes every shared mailbox's Maildir (if missing) and its dovecot-acl; removes dovecot-acl
 * from Maildirs under DATA_DIR/mail that are not shared mailboxes any more. Files and folders
 * it creates get owner uid/gid unless uid is (uid_t)-1. *changed (may be NULL) counts the files
 * written or removed. 0, or -1 with a reason (it goes on with the other mailboxes first). */
int acl_sync(const char *data_dir, const struct tables *t, uid_t uid, gid_t gid, size_t *changed,
             char *err, size_t errlen);

#endif

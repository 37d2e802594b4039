/* What `tern` does so that every admin action leaves an `admin` record in the audit log
 * (audit_admin.c): the record goes through ternd's control socket (net/control.h) when ternd
 * runs, and straight into DATA_DIR/audit otherwise; and the files a writer run as root made
 * there are given back to the folder's owner, ternd's user (shared with `tern audit rotate`). */
#ifndef TERN_CLI_AUDIT_ADMIN_H
#define TERN_CLI_AUDIT_ADMIN_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

struct conf;

#define CLI_ADMIN_RESULT_MAX 1024 /* bytes kept of the reason an action was refused */

/* Records that `tern COMMAND ARGS` ran, with its result: "ok", or the reason it was refused.
 * args must never hold a password or other secret (a flag such as --password-file, without
 * its value, is fine). Does nothing when [audit] enabled = no. A record that cannot be made
 * costs one warning line on stderr saying why and what to do; the action stands, and the
 * command's exit status is the caller's, unchanged. */
void cli_audit_admin(const struct conf *c, const char *command, const char *const *args,
                     size_t nargs, const char *result);

/* A reason for a refusal that printed its own, for the record: "failed (exit status N: ...)". */
const char *cli_admin_status_text(int status, char *buf, size_t buflen);

/* Why an admin action was refused, printed and kept for its record (tern user, tern mailbox):
 * prints "tern CMD SUB: REASON" on stderr and copies REASON into keep (CLI_ADMIN_RESULT_MAX
 * bytes, "" until then) when it is the first one; keep NULL keeps nothing. */
void cli_admin_vrefuse(const char *cmd, const char *sub, char *keep, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* The result to record for an action that ended with exit status: "ok" for 0, else the first
 * reason kept by cli_admin_vrefuse, else cli_admin_status_text into buf. */
const char *cli_admin_result(int status, const char *kept, char *buf, size_t buflen);

/* After a writer run as root in dir (DATA_DIR/audit): gives the files it may have made or
 * replaced (audit.log, key, head, lock) to uid:gid, the owner of dir, so that ternd can go on
 * writing. Nothing to do when we are not root or dir is root's. 0, or -1 with what could not be
 * given back (the first such file) and what to do; it still tries the others. */
int cli_audit_give_back(const char *dir, uid_t uid, gid_t gid, char *err, size_t errlen);

#endif

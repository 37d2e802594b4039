/* What the files of `tern mailbox` share: mailbox_cmd.c parses the command line, runs the
 * subcommands that edit the mailboxes file and hands the reading ones (list, show, check) to
 * mailbox_read.c, which reads Maildirs with the help of mailbox_msg.c. Internal to src/cli/. */
#ifndef TERN_CLI_MAILBOX_H
#define TERN_CLI_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "conf/config.h"

/* One invocation: the subcommand, its options and its operands. */
struct mbox_opts {
    const char *sub;
    const char *config;
    const char *quota; /* --quota SIZE, as given */
    bool json;         /* --json */
    char **args;       /* the operands after the subcommand */
    int nargs;
    char *refusal; /* CLI_ADMIN_RESULT_MAX: the first reason an edit was refused, for its record */
};

/* Copies NAME lowercased into out (TABLES_ADDR_MAX + 1) if it has the shape local@domain; else
 * says why on stderr and returns EX_DATAERR. */
int mbox_take_addr(const char *sub, const char *name, char *out);

/* The Maildir of a mailbox (user or shared, or one whose line is gone but whose Maildir is
 * still there): its path into dir (PATH_MAX), its entry (NULL for such a leftover) into *u.
 * 0, or an exit status with the reason on stderr. */
int mbox_find(const char *sub, const struct conf *c, const char *addr, char *dir,
              const struct tables_user **u);

/* The owner of what is made for ternd (its `user =` when we are root, else (uid_t)-1, with a
 * warning when that user does not exist), and DATA_DIR/mail made for it if missing. */
void mbox_owner(const char *sub, const struct conf *c, uid_t *uid, gid_t *gid);

/* The reading subcommands (mailbox_read.c). Each returns an exit status. */
int mbox_list(const struct mbox_opts *o, const struct conf *c);
int mbox_show(const struct mbox_opts *o, const struct conf *c);
int mbox_check(const struct mbox_opts *o, const struct conf *c);

/* Messages and their headers (mailbox_msg.c). */
struct mbox_msg {
    char *name;    /* the file name in new/ or cur/ */
    size_t uniq;   /* length of the unique part: the name up to ":2," */
    bool is_new;   /* in new/ */
    char flags[8]; /* from ":2,FLAGS": the letters of DFPRST present, in that order */
    uint64_t size;
    time_t date; /* Date: header, else the file's mtime */
    char *from;  /* as in the header, unfolded; "" when none; may hold anything */
    char *subject;
};

/* Reads the headers of the message file path (opened in dir_fd) into m's date, from and
 * subject; mtime is the fallback date. 0, or -1 with errno. */
int mbox_msg_read(int dir_fd, const char *name, time_t mtime, struct mbox_msg *m);
void mbox_msg_free(struct mbox_msg *m);

/* Parses an RFC 5322 date-time (obsolete forms too); -1 when it is not one. */
int mbox_parse_date(const char *s, time_t *out);

/* Writes s to out with what a terminal would obey (C0 and C1 controls, DEL, bidi controls,
 * bytes that are not UTF-8) replaced by '?', so a hostile header cannot move the cursor or
 * fake a line. */
void mbox_put_safe(FILE *out, const char *s);
/* The same replacement into a malloc'd copy for JSON (which must be UTF-8): NULL when out of
 * memory. Only invalid UTF-8 is replaced; JSON escapes the controls itself. */
char *mbox_utf8_copy(const char *s);

#endif

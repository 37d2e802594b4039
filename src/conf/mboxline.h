/* The text side of editing the mailboxes file, shared by mboxfile.c (which does the locking,
 * the files and the checks) and nothing else: finding a shared mailbox's line the way the loader
 * cuts it, and building the file's new content with one line added, dropped or rewritten. Pure:
 * no I/O. Internal to src/conf/. */
#ifndef TERN_CONF_MBOXLINE_H
#define TERN_CONF_MBOXLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/mboxfile.h"
#include "util/editfile.h"

/* Fills e with f and a formatted reason. */
void mbox_fail(struct mboxfile_err *e, enum mboxfile_fail f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A member as written (m, len bytes) as lowercased local@domain, a bare one taken in domain;
 * out holds TABLES_ADDR_MAX + 1. */
void mbox_norm_member(const char *m, size_t len, const char *domain, char *out);

enum mbox_op { MBOX_ADD, MBOX_DELETE, MBOX_ADD_MEMBERS, MBOX_DEL_MEMBERS, MBOX_QUOTA };

struct mbox_edit {
    enum mbox_op op;
    const char *addr;                        /* lowercased */
    const char *const *members;              /* as they will be written (take_member) */
    const char (*norm)[TABLES_ADDR_MAX + 1]; /* the same, as local@domain */
    size_t n;
    uint64_t quota;
    bool changed; /* out */
};

/* Builds the new file content into out from the old one in b. ed->changed tells whether the
 * file has to change at all. 0, or -1 with e filled. */
int mbox_apply(const struct editfile_buf *b, struct mbox_edit *ed, struct editfile_buf *out,
               struct mboxfile_err *e);

#endif

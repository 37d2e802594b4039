/* The commit of one accepted message, run on a worker before its 250: the quota check of every
 * recipient mailbox, then the spool copy for other domains, then the Maildir copies, all or
 * nothing, then the quota charge. The one place that orders these steps. */
#ifndef TERN_STORE_DELIVER_H
#define TERN_STORE_DELIVER_H

#include <stddef.h>

#include "policy/tables.h"
#include "store/maildir.h"
#include "store/spool.h"

enum deliver_status {
    DELIVER_OK,     /* durable everywhere: answer 250 */
    DELIVER_FULL,   /* a mailbox's quota would be passed (named in which): 552 5.2.2 */
    DELIVER_FAILED, /* I/O error (reason in err), nothing left behind: 451 4.3.0 */
};

/* m (local copies, may be NULL) goes to the n mailboxes boxes; sp (may be NULL) is the queued
 * copy for other domains. Quotas are those t gives each mailbox. */
enum deliver_status deliver_commit(const char *data_dir, const struct tables *t,
                                   struct maildir_msg *m, struct spool_msg *sp,
                                   const char (*boxes)[TABLES_ADDR_MAX + 1], size_t n, char *which,
                                   size_t whichlen, char *err, size_t errlen);

#endif

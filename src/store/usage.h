/* Quotas at delivery time, over the Maildir++ files of store/quota.c: RCPT asks whether a
 * mailbox is already full (one small read, fine on the loop); the commit, on a worker, checks
 * that the message fits every recipient mailbox before it is linked in (recomputing a stale
 * maildirsize there) and charges it afterwards, warning in the log when a mailbox passes 90%.
 * Concurrent deliveries may each pass the check and together overshoot by their sizes: the
 * Maildir++ design accepts that, as Dovecot and Courier do. */
#ifndef TERN_STORE_USAGE_H
#define TERN_STORE_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/tables.h"

/* Is mailbox (user@domain), whose quota is quota bytes (0: none), at or over it? */
bool usage_full(const char *data_dir, const char *mailbox, uint64_t quota);

/* Would a message of size bytes pass the quota of one of the n mailboxes (looked up in t)?
 * 0 when it fits everywhere; 1 when not, the mailbox named in which; -1 on an I/O error
 * (reason in err). Fills before[i] with each mailbox's usage (0 without quota). */
int usage_check(const char *data_dir, const struct tables *t,
                const char (*boxes)[TABLES_ADDR_MAX + 1], size_t n, uint64_t size, uint64_t *before,
                char *which, size_t whichlen, char *err, size_t errlen);

/* After the message is stored: adds it to the maildirsize of every mailbox with a quota and
 * warns in the log for those that pass 90% now. before is usage_check's. Failures only log:
 * the message is safe, and a wrong maildirsize is recomputed when it goes stale. */
void usage_charge(const char *data_dir, const struct tables *t,
                  const char (*boxes)[TABLES_ADDR_MAX + 1], size_t n, uint64_t size,
                  const uint64_t *before);

#endif

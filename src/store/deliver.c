/* One message's commit on a worker (see deliver.h): quotas, spool, Maildirs, charge. */
#include "store/deliver.h"

#include <stdint.h>
#include <stdlib.h>

#include "store/usage.h"
#include "util/err.h"
#include "util/log.h"

enum deliver_status deliver_commit(const char *data_dir, const struct tables *t,
                                   struct maildir_msg *m, struct spool_msg *sp,
                                   const char (*boxes)[TABLES_ADDR_MAX + 1], size_t n, char *which,
                                   size_t whichlen, char *err, size_t errlen)
{
    uint64_t small[8], *before = small;
    if (m && n > 8 && !(before = calloc(n, sizeof *before))) {
        err_set(err, errlen, "out of memory checking quotas; free some memory");
        return DELIVER_FAILED;
    }
    enum deliver_status st = DELIVER_OK;
    if (m) {
        int q = usage_check(data_dir, t, boxes, n, maildir_size(m), before, which, whichlen, err,
                            errlen);
        if (q != 0)
            st = q > 0 ? DELIVER_FULL : DELIVER_FAILED;
    }
    if (st == DELIVER_OK && sp && spool_commit(sp, err, errlen) != 0)
        st = DELIVER_FAILED;
    if (st == DELIVER_OK && m) {
        if (maildir_commit(m, err, errlen) != 0) {
            st = DELIVER_FAILED;
            char err2[256];
            if (sp && spool_uncommit(sp, err2, sizeof err2) != 0) /* all or nothing */
                log_err("could not take back the queued copy: %s", err2);
        } else {
            usage_charge(data_dir, t, boxes, n, maildir_size(m), before);
        }
    }
    if (before != small)
        free(before);
    return st;
}

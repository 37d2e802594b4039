/* Quota checks and charges at delivery (see usage.h), over store/quota.c. */
#include "store/usage.h"

#include <limits.h>
#include <stdio.h>

#include "store/maildir.h"
#include "store/quota.h"
#include "util/err.h"
#include "util/log.h"

/* The quota of a mailbox, 0 when none (or not a local mailbox). */
static uint64_t quota_of(const struct tables *t, const char *box)
{
    const struct tables_user *u = tables_user(t, box);
    return u ? u->quota : 0;
}

bool usage_full(const char *data_dir, const char *mailbox, uint64_t quota)
{
    char dir[PATH_MAX];
    struct quota_usage u;
    bool stale = false;
    if (quota == 0 || maildir_path(data_dir, mailbox, dir, sizeof dir) != 0 ||
        quota_read(dir, &u, &stale, NULL, 0) != 0)
        return false; /* cannot tell here: the commit checks again */
    return quota_full(&u, quota);
}

int usage_check(const char *data_dir, const struct tables *t,
                const char (*boxes)[TABLES_ADDR_MAX + 1], size_t n, uint64_t size, uint64_t *before,
                char *which, size_t whichlen, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        before[i] = 0;
        uint64_t quota = quota_of(t, boxes[i]);
        if (quota == 0)
            continue;
        char dir[PATH_MAX];
        struct quota_usage u;
        bool stale = false;
        if (maildir_path(data_dir, boxes[i], dir, sizeof dir) != 0) {
            err_set(err, errlen, "quota: %s is not a mailbox name that fits a path", boxes[i]);
            return -1;
        }
        if (quota_read(dir, &u, &stale, err, errlen) != 0)
            return -1;
        /* stale, or its first line still holds a limit the admin has since changed */
        if ((stale || u.limit_bytes != quota) && quota_recalc(dir, quota, &u, err, errlen) != 0)
            return -1;
        before[i] = u.bytes;
        if (quota_exceeded(&u, quota, size)) {
            snprintf(which, whichlen, "%s", boxes[i]);
            return 1;
        }
    }
    return 0;
}

void usage_charge(const char *data_dir, const struct tables *t,
                  const char (*boxes)[TABLES_ADDR_MAX + 1], size_t n, uint64_t size,
                  const uint64_t *before)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t quota = quota_of(t, boxes[i]);
        char dir[PATH_MAX], err[512];
        if (quota == 0 || maildir_path(data_dir, boxes[i], dir, sizeof dir) != 0)
            continue;
        if (quota_add(dir, quota, (int64_t)size, 1, err, sizeof err) != 0) {
            log_warn("quota of %s not updated (it is recomputed later): %s", boxes[i], err);
            continue;
        }
        uint64_t warn = quota / 100 * QUOTA_WARN_PERCENT;
        uint64_t after = before[i] + size;
        if (before[i] < warn && after >= warn)
            log_warn("mailbox %s is %llu%% full (%llu of %llu bytes); raise its quota or ask its "
                     "owner to delete mail",
                     boxes[i], (unsigned long long)(after * 100 / quota), (unsigned long long)after,
                     (unsigned long long)quota);
    }
}

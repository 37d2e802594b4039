/* File-system helpers shared by the two stores, maildir.c and spool.c, which keep the same
 * durability discipline: every byte written or an error, directories fsync'd after entries are
 * added or removed, and every failure reported as a reason naming the path. */
#ifndef TERN_UTIL_FSUTIL_H
#define TERN_UTIL_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* Writes "WHO: WHAT PATH: strerror(errnum)" into err, followed by a hint at what to do for the
 * errors an admin can fix (permissions, a full or read-only disk, too many open files).
 * Thread-safe: commits report from worker threads. */
void fsutil_err(char *err, size_t errlen, const char *who, const char *what, const char *path,
                int errnum);

/* Creates one directory with mode 0700, accepting an existing one (or a symlink to one);
 * sets *created when it made it. 0, or -1 with a reason prefixed by who. */
int fsutil_make_dir(const char *path, bool *created, const char *who, char *err, size_t errlen);

/* Writes all of buf to fd, riding out partial writes and signals. 0, or -1 with errno set
 * (ENOSPC for a write that makes no progress). */
int fsutil_write_all(int fd, const void *buf, size_t len);

/* fsyncs a directory so that entries created or removed in it survive a crash. 0, or -1 with
 * a reason prefixed by who. */
int fsutil_fsync_dir(const char *path, const char *who, char *err, size_t errlen);

#endif

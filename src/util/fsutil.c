/* The file-system helpers of fsutil.h: the full write, the directory fsync, the tolerant mkdir
 * and the reason writer that both stores (Maildir delivery and the outbound spool) use, so the
 * two keep one discipline and report failures the same way. */
#include "util/fsutil.h"

#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What an admin can do about the errors that are theirs to fix; "" for the rest. */
static const char *hint(int errnum)
{
    switch (errnum) {
    case EACCES:
    case EPERM:
        return "; check that the folder belongs to the user the server runs as";
    case ENOSPC:
    case EDQUOT:
        return "; free disk space (or raise the quota)";
    case EROFS:
        return "; the file system is mounted read-only";
    case ENOENT:
        return "; a folder on the way is missing: check data_dir in tern.conf";
    case ENOTDIR:
        return "; something that is not a folder is in the way: move it aside";
    case EMFILE:
    case ENFILE:
        return "; too many open files: raise the limit (ulimit -n)";
    default:
        return "";
    }
}

void fsutil_err(char *err, size_t errlen, const char *who, const char *what, const char *path,
                int errnum)
{
    char buf[128];
    /* The GNU strerror_r (we build with _GNU_SOURCE) may return a static string, not buf. */
    const char *msg = strerror_r(errnum, buf, sizeof(buf));
    err_set(err, errlen, "%s: %s %s: %s%s", who, what, path, msg, hint(errnum));
}

int fsutil_make_dir(const char *path, bool *created, const char *who, char *err, size_t errlen)
{
    if (mkdir(path, 0700) == 0) {
        *created = true;
        return 0;
    }
    int e = errno;
    struct stat st;
    if (e == EEXIST && stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        e = ENOTDIR;
    }
    fsutil_err(err, errlen, who, "mkdir", path, e);
    return -1;
}

int fsutil_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = ENOSPC;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int fsutil_fsync_dir(const char *path, const char *who, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        fsutil_err(err, errlen, who, "open", path, errno);
        return -1;
    }
    if (fsync(fd) != 0) {
        fsutil_err(err, errlen, who, "fsync", path, errno);
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

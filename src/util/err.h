/* Reasons for failures: functions return -1 and write why into a caller's buffer (DESIGN.md's
 * error convention). This is the one writer of such reasons. */
#ifndef TERN_UTIL_ERR_H
#define TERN_UTIL_ERR_H

#include <stddef.h>

/* Formats a reason into err, if the caller gave a buffer. */
void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

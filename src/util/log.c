/* The daemon log (see log.h): formatted into one buffer, written with one write(2). */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level level = LOG_LVL_INFO;

void log_set_level(enum log_level l)
{
    level = l;
}

void log_msg(enum log_level l, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if (l > level)
        return;
    char buf[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, sizeof buf - n, ".%06ldZ ternd[%d]: %s: ", (long)tv.tv_usec,
                          (int)getpid(), names[l]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t start = n;
    n += (size_t)m < sizeof buf - n - 1 ? (size_t)m : sizeof buf - n - 2;
    /* Messages quote what clients sent: no control character may forge or split a log line.
     * Reload errors are the one multi-line message, and their newlines are ours. */
    for (size_t i = start; i < n; i++)
        if (((unsigned char)buf[i] < 0x20 && buf[i] != '\n') || buf[i] == 0x7f)
            buf[i] = '?';
    buf[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, n);
    (void)w; /* nowhere left to report a failed log write */
}

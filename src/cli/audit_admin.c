/* The `admin` record of each `tern` action that changes something (audit_admin.h). The request
 * line of net/control.h is made once; it goes to ternd's control socket when ternd runs (ternd
 * holds the writer lock, and takes the Unix user from the socket, not from us), and when
 * nothing listens there it is turned into the same record here and written with the audit
 * library, as ternd would. A log that does not exist yet is left to ternd to create: its first
 * key must be shown to the admin by the process that made it, at ternd's start.
 *
 * Writing the log as root leaves files ternd (running as its own user) could not open again;
 * cli_audit_give_back hands them to the owner of DATA_DIR/audit, for `tern audit rotate` too.
 *
 * Never fatal: the action is done before it is recorded, so a record that cannot be made is
 * one warning line on stderr, and the command's exit status stays the action's.
 *
 * A refused action is recorded with the first reason it printed (cli_admin_vrefuse keeps it),
 * so that the log and the admin's terminal say the same thing. */
#include "cli/audit_admin.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include "audit/log.h"
#include "audit/record.h"
#include "conf/config.h"
#include "net/control.h"

#define REPLY_WAIT_SECONDS 15 /* ternd answers after its fsync; a busy disk can take a while */
#define WHY_MAX 1024

/* Why a record was not made and what to do, for the one warning line. */
struct miss {
    char why[WHY_MAX];
    const char *todo;
};

/* Formats the reason into m->why (truncation is fine: it is one line of a warning). */
static void say(struct miss *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct miss *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->why, sizeof(m->why), fmt, ap);
    va_end(ap);
}

/* ---- the request line ------------------------------------------------------------------ */

/* s as a record's string: cut at a character boundary to at most max bytes, the cut said as
 * audit_strn says it, and made valid UTF-8. */
static json_t *bounded(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return audit_strn(s, n);
    size_t keep = max;
    while (keep > 0 && ((unsigned char)s[keep] & 0xc0) == 0x80)
        keep--;
    char *buf = malloc(keep + 32);
    if (!buf)
        return NULL;
    memcpy(buf, s, keep);
    snprintf(buf + keep, 32, "...[+%zu bytes]", n - keep);
    json_t *v = audit_str(buf);
    free(buf);
    return v;
}

/* The request as one JSON line (without its newline), with every string cut to at most cut
 * bytes and the args beyond CONTROL_ARGS_MAX summed up as ternd would; NULL when out of
 * memory. */
static char *request_at(const char *command, const char *const *args, size_t nargs,
                        const char *result, size_t cut)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < nargs; i++) {
        json_t *s;
        if (nargs <= CONTROL_ARGS_MAX || i < CONTROL_ARGS_MAX - 1) {
            s = bounded(args[i], cut);
        } else {
            char more[64];
            snprintf(more, sizeof(more), "...[+%zu more args]", nargs - i);
            s = json_string(more);
        }
        if (!s || json_array_append_new(a, s) != 0) {
            json_decref(a);
            a = NULL;
        } else if (json_array_size(a) == CONTROL_ARGS_MAX) {
            break;
        }
    }
    json_t *cmd = bounded(command, cut), *res = bounded(result, cut);
    json_t *req = a && cmd && res
                      ? json_pack("{s:o,s:o,s:o}", "command", cmd, "args", a, "result", res)
                      : NULL;
    if (!req) {
        json_decref(a);
        json_decref(cmd);
        json_decref(res);
        return NULL;
    }
    char *line = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return line;
}

/* The request, made to fit CONTROL_LINE_MAX (its newline included): strings are cut shorter
 * until it does. A line of 64 args of 16 bytes, each byte escaped as \u00XX, still fits. */
static char *request_line(const char *command, const char *const *args, size_t nargs,
                          const char *result, size_t *len)
{
    static const size_t cuts[] = {AUDIT_FIELD_MAX, 256, 64, 16};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        char *line = request_at(command, args, nargs, result, cuts[i]);
        if (!line)
            return NULL;
        *len = strlen(line);
        if (*len < CONTROL_LINE_MAX)
            return line;
        free(line);
    }
    return NULL;
}

/* ---- through ternd ----------------------------------------------------------------------- */

enum via { VIA_DONE, VIA_MISSED, VIA_NOBODY }; /* NOBODY: no ternd listens; write it here */

/* Sends the line to ternd at path and reads its reply. */
static enum via through_ternd(const char *path, const char *line, size_t len, struct miss *m)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        say(m, "the control socket's path %s is too long", path);
        m->todo = "choose a shorter data_dir";
        return VIA_MISSED;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        say(m, "socket(): %s", strerror(errno));
        m->todo = "try again";
        return VIA_MISSED;
    }
    struct timeval tv = {REPLY_WAIT_SECONDS, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        if (e == ENOENT || e == ECONNREFUSED)
            return VIA_NOBODY; /* no ternd, or one that died and left its socket */
        say(m, "cannot reach ternd at %s: %s", path, strerror(e));
        m->todo = e == EACCES || e == EPERM ? "run tern as root or as the user ternd runs as"
                                            : "check that ternd runs and what its log says";
        return VIA_MISSED;
    }
    char reply[CONTROL_REPLY_MAX + 1];
    size_t got = 0;
    bool sent = false;
    char *msg = malloc(len + 1);
    if (msg) {
        memcpy(msg, line, len);
        msg[len] = '\n';
        sent = send(fd, msg, len + 1, MSG_NOSIGNAL) == (ssize_t)(len + 1);
        free(msg);
    }
    while (sent && got < CONTROL_REPLY_MAX && !memchr(reply, '\n', got)) {
        ssize_t n = recv(fd, reply + got, CONTROL_REPLY_MAX - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    int e = errno;
    close(fd);
    reply[got] = '\0';
    reply[strcspn(reply, "\r\n")] = '\0';
    if (strncmp(reply, "ok ", 3) == 0)
        return VIA_DONE;
    if (strncmp(reply, "error ", 6) == 0) {
        say(m, "ternd refused it: %s", reply + 6);
        m->todo = "see ternd's log";
    } else if (!sent || got == 0) {
        say(m, "ternd did not answer within %d s (%s)", REPLY_WAIT_SECONDS,
            !sent         ? "sending failed"
            : e == EAGAIN ? "timed out"
                          : "connection closed");
        m->todo = "see ternd's log; tern audit show --event admin shows whether it came late";
    } else {
        say(m, "ternd's reply is not understood: %.200s", reply);
        m->todo = "make sure tern and ternd are the same version";
    }
    return VIA_MISSED;
}

/* ---- written here --------------------------------------------------------------------------- */

static bool exists(const char *dir, const char *name)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0 && (strcmp(name, AUDIT_LOG_NAME) != 0 || st.st_size > 0);
}

/* Has ternd made the log in dir? Without its key, head and records there is none yet (and an
 * audit_open here would make it, showing the first key to nobody). */
static bool log_made(const char *dir)
{
    return exists(dir, AUDIT_KEY_NAME) || exists(dir, AUDIT_HEAD_NAME) ||
           exists(dir, AUDIT_LOG_NAME);
}

/* Opens the log in dir as ternd would, appends the record made from line, syncs, closes. */
static bool write_here(const struct conf *c, const char *dir, const char *line, size_t len,
                       struct miss *m)
{
    struct stat dst;
    if (stat(dir, &dst) != 0 || !log_made(dir)) {
        if (errno == EACCES) {
            say(m, "cannot read %s: %s", dir, strerror(errno));
            m->todo = "run tern as root or as the user ternd runs as";
        } else {
            say(m, "ternd has not created its audit log in %s yet", dir);
            m->todo = "start ternd once: it creates the log and shows its first key";
        }
        return false;
    }
    char err[PATH_MAX + 512];
    struct audit_opts o = {.dir = dir,
                           .epoch_seconds = (unsigned)c->audit_epoch,
                           .max_bytes = c->audit_max_size,
                           .syslog = c->audit_syslog,
                           .lock_wait_ms = 2000}; /* another tern, or ternd starting */
    struct audit *a = audit_open(&o, NULL, err, sizeof(err));
    if (!a) {
        bool held = strstr(err, "another process has the log") != NULL;
        bool denied = access(dir, W_OK) != 0;
        say(m, "%s", strncmp(err, "audit: ", 7) ? err : err + 7);
        m->todo = held     ? "if ternd runs, restart it: it listens on audit/control; else wait "
                             "for the other tern command"
                  : denied ? "run tern as root or as the user ternd runs as"
                           : "fix that, then check the log with tern audit verify";
        return false;
    }
    struct passwd *pw = getpwuid(geteuid());
    json_t *f = control_admin_fields(line, len, (unsigned long)geteuid(), pw ? pw->pw_name : "",
                                     err, sizeof(err));
    uint64_t seq = 0;
    int rc = f ? audit_append(a, "admin", f, &seq, err, sizeof(err)) : -1;
    if (rc == 0)
        rc = audit_sync(a, seq, err, sizeof(err));
    char cerr[512];
    if (audit_close(a, cerr, sizeof(cerr)) != 0 && rc == 0) {
        snprintf(err, sizeof(err), "%s", cerr);
        rc = -1;
    }
    char gerr[PATH_MAX + 256];
    if (cli_audit_give_back(dir, dst.st_uid, dst.st_gid, gerr, sizeof(gerr)) != 0 && rc == 0)
        fprintf(stderr, "tern: warning: recorded in the audit log, but %s before ternd starts\n",
                gerr);
    if (rc != 0) {
        say(m, "%s", strncmp(err, "audit: ", 7) ? err : err + 7);
        m->todo = "fix that, then check the log with tern audit verify";
        return false;
    }
    return true;
}

/* ---- the entry points --------------------------------------------------------------------- */

void cli_audit_admin(const struct conf *c, const char *command, const char *const *args,
                     size_t nargs, const char *result)
{
    if (!c->audit_enabled)
        return;
    struct miss m = {.todo = ""};
    char dir[PATH_MAX], path[PATH_MAX + 16];
    size_t len = 0;
    char *line = request_line(command, args, nargs, result, &len);
    bool done = false;
    if (!line) {
        say(&m, "out of memory");
        m.todo = "try again";
    } else if (snprintf(dir, sizeof(dir), "%s/audit", c->data_dir) >= (int)sizeof(dir)) {
        say(&m, "the path %s/audit is too long", c->data_dir);
        m.todo = "choose a shorter data_dir";
    } else {
        snprintf(path, sizeof(path), "%s/%s", dir, CONTROL_SOCKET_NAME);
        enum via v = through_ternd(path, line, len, &m);
        done = v == VIA_DONE || (v == VIA_NOBODY && write_here(c, dir, line, len, &m));
    }
    free(line);
    if (done)
        return;
    fprintf(stderr, "tern %s: warning: %s, but not recorded in the audit log: %s; %s\n", command,
            strcmp(result, "ok") == 0 ? "done" : "refused", m.why, m.todo);
}

const char *cli_admin_status_text(int status, char *buf, size_t buflen)
{
    static const char *const names[] = {
        "bad arguments", "bad data",        "no input",       "no such user",  "no such host",
        "unavailable",   "internal error",  "system error",   "system file",   "cannot create",
        "I/O error",     "try again later", "protocol error", "no permission", "bad configuration"};
    const char *what =
        status >= EX_USAGE && status <= EX_CONFIG ? names[status - EX_USAGE] : "failed";
    snprintf(buf, buflen, "failed (exit status %d: %s)", status, what);
    return buf;
}

void cli_admin_vrefuse(const char *cmd, const char *sub, char *keep, const char *fmt, va_list ap)
{
    char msg[CLI_ADMIN_RESULT_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    fprintf(stderr, "tern %s %s: %s\n", cmd, sub, msg);
    if (keep && !keep[0])
        memcpy(keep, msg, sizeof(msg));
}

const char *cli_admin_result(int status, const char *kept, char *buf, size_t buflen)
{
    if (status == 0)
        return "ok";
    return kept && kept[0] ? kept : cli_admin_status_text(status, buf, buflen);
}

int cli_audit_give_back(const char *dir, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    if (geteuid() != 0 || uid == 0)
        return 0;
    static const char *const names[] = {AUDIT_LOG_NAME, AUDIT_KEY_NAME, AUDIT_HEAD_NAME,
                                        AUDIT_LOCK_NAME};
    int rc = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (lchown(path, uid, gid) != 0 && errno != ENOENT && rc == 0) {
            snprintf(err, errlen,
                     "cannot give %s to uid %u: %s; chown it to the user ternd runs as", path,
                     (unsigned)uid, strerror(errno));
            rc = -1;
        }
    }
    return rc;
}

/* The `tern queue` actions that change the queue: flush, delete, hold and release. Each does
 * its file operation itself, through store/spool (running as root or as ternd's user; files it
 * makes are given to the spool's owner there), then tells a running ternd on its control socket
 * with one line {"queue":VERB,"id":ID} so its queue manager looks again. When nothing listens
 * there, ternd is not running, and the file operation is all there is: the queue manager reads
 * the spool when it starts. The admin record of the action is a separate request (queue_cmd.c,
 * through cli_audit_admin), so the record's path stays what it is for every other command. */
#include "cli/cli.h"
#include "cli/queue_cmd.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "conf/config.h"
#include "net/control.h"
#include "store/spool.h"
#include "store/spool_state.h"

#define REPLY_WAIT_SECONDS 15 /* as cli_audit_admin: ternd answers from a worker */

enum poke { POKE_TOLD, POKE_NOBODY, POKE_MISSED };

/* Sends line to the control socket at path and reads ternd's one-line reply. */
static enum poke send_line(const char *path, const char *line, char *why, size_t whylen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(why, whylen, "the control socket's path %.200s... is too long", path);
        return POKE_MISSED;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whylen, "socket(): %s", strerror(errno));
        return POKE_MISSED;
    }
    struct timeval tv = {REPLY_WAIT_SECONDS, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        if (e == ENOENT || e == ECONNREFUSED)
            return POKE_NOBODY; /* no ternd, or one that died and left its socket */
        snprintf(why, whylen, "cannot reach ternd at %.900s: %s%s", path, strerror(e),
                 e == EACCES ? " (run tern as root or as the user ternd runs as)" : "");
        return POKE_MISSED;
    }
    size_t len = strlen(line);
    bool sent = send(fd, line, len, MSG_NOSIGNAL) == (ssize_t)len;
    char reply[CONTROL_REPLY_MAX + 1];
    size_t got = 0;
    while (sent && got < CONTROL_REPLY_MAX && !memchr(reply, '\n', got)) {
        ssize_t n = recv(fd, reply + got, CONTROL_REPLY_MAX - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    reply[got] = '\0';
    reply[strcspn(reply, "\r\n")] = '\0';
    if (strcmp(reply, "ok") == 0)
        return POKE_TOLD;
    if (strncmp(reply, "error ", 6) == 0)
        snprintf(why, whylen, "ternd refused it: %.300s", reply + 6);
    else if (got == 0)
        snprintf(why, whylen, "ternd did not answer within %d s", REPLY_WAIT_SECONDS);
    else
        snprintf(why, whylen, "ternd's reply is not understood (is it older than tern?): %.200s",
                 reply);
    return POKE_MISSED;
}

/* Tells ternd what was done; prints a warning when a ternd that runs could not be told. */
static enum poke poke(const struct queue_opts *o, const struct conf *c, const char *id)
{
    char why[1024], path[PATH_MAX];
    json_t *req = id ? json_pack("{s:s, s:s}", "queue", o->sub, "id", id)
                     : json_pack("{s:s}", "queue", o->sub);
    char *line = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    char *msg = line ? malloc(strlen(line) + 2) : NULL;
    enum poke p = POKE_MISSED;
    if (!msg)
        snprintf(why, sizeof(why), "out of memory");
    else if (snprintf(path, sizeof(path), "%s/audit/%s", c->data_dir, CONTROL_SOCKET_NAME) >=
             (int)sizeof(path))
        snprintf(why, sizeof(why), "the path %.200s.../audit is too long", c->data_dir);
    else {
        sprintf(msg, "%s\n", line);
        p = send_line(path, msg, why, sizeof(why));
    }
    free(msg);
    free(line);
    if (p == POKE_NOBODY && !c->audit_enabled) {
        /* No control socket without the audit log: a ternd may run and not know. */
        fprintf(stderr,
                "tern queue %s: warning: done, but a running ternd cannot be told ([audit] "
                "enabled = no: it has no control socket); it sees the change when it next reads "
                "the queue, at the latest when it restarts\n",
                o->sub);
    } else if (p == POKE_MISSED) {
        fprintf(stderr,
                "tern queue %s: warning: done, but ternd was not told: %s; it sees the change "
                "when it next reads the queue, at the latest when it restarts\n",
                o->sub, why);
    }
    return p;
}

/* How the end of an action's line reads, after ternd was or was not told. */
static const char *told(enum poke p)
{
    return p == POKE_TOLD     ? "ternd told"
           : p == POKE_NOBODY ? "ternd is not running"
                              : "ternd not told";
}

/* Prints why a spool call failed and gives its exit status; errno is the call's. */
static int refused(const struct queue_opts *o, const char *err)
{
    int e = errno;
    queue_refuse(o, "%s", strncmp(err, "spool: ", 7) == 0 ? err + 7 : err);
    return queue_status(e);
}

int queue_flush(const struct queue_opts *o, const struct conf *c)
{
    char err[4096];
    int n = spool_flush(c->data_dir, o->id, err, sizeof(err));
    if (n < 0)
        return refused(o, err);
    if (n == 0) {
        printf("the queue is empty: nothing to flush\n");
        return 0;
    }
    enum poke p = poke(o, c, o->id);
    if (o->id)
        printf("flushed %s: due now (%s)\n", o->id, told(p));
    else
        printf("flushed %d message%s: due now (%s)\n", n, n == 1 ? "" : "s", told(p));
    return 0;
}

/* Is the entry id still there, queued or held (a failed remove may have taken its .env)? */
static bool still_there(const struct conf *c, const char *id)
{
    char why[4096];
    for (int held = 0; held < 2; held++) {
        struct spool_entry e;
        if (spool_entry_load(c->data_dir, id, held, &e, why, sizeof(why)) == 0) {
            free(e.rcpts);
            return true;
        }
        if (errno != ENOENT)
            return true; /* cannot tell: say nothing happened */
    }
    return false;
}

int queue_delete(const struct queue_opts *o, const struct conf *c)
{
    char err[4096];
    int status = 0;
    if (spool_remove(c->data_dir, o->id, err, sizeof(err)) != 0) {
        int e = errno;
        status = refused(o, err);
        if (e == ENOENT || e == EINVAL || still_there(c, o->id))
            return status;
        /* the envelope went, and with it the entry, but a file of it stayed: ternd must hear */
    }
    enum poke p = poke(o, c, o->id);
    printf("deleted %s (%s)\n", o->id, told(p));
    return status;
}

int queue_hold(const struct queue_opts *o, const struct conf *c)
{
    char err[4096];
    int r = spool_hold(c->data_dir, o->id, err, sizeof(err));
    if (r < 0 && errno != EIO)
        return refused(o, err);
    if (r == 1) {
        printf("%s is already on hold\n", o->id);
        return 0;
    }
    int status = r < 0 ? refused(o, err) : 0; /* EIO: held, but not durably */
    enum poke p = poke(o, c, o->id);
    printf("held %s: it stays until tern queue release %s (%s)\n", o->id, o->id, told(p));
    return status;
}

int queue_release(const struct queue_opts *o, const struct conf *c)
{
    char err[4096];
    int r = spool_release(c->data_dir, o->id, err, sizeof(err));
    if (r < 0 && errno != EIO)
        return refused(o, err);
    if (r == 1) {
        printf("%s is not on hold: it is in the queue already\n", o->id);
        return 0;
    }
    int status = r < 0 ? refused(o, err) : 0; /* EIO: released, but not durably */
    enum poke p = poke(o, c, o->id);
    printf("released %s back to the queue (%s)\n", o->id, told(p));
    return status;
}

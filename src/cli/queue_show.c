/* `tern queue show ID`: one message of the queue (or on hold) in full: its envelope, the state
 * of each recipient (pending, sent or failed, with the last reply and the server that gave it)
 * and the message's header, as lines for people or as one JSON object. Everything but the
 * id came from the network: the text output escapes what a terminal would obey, the JSON is
 * ASCII with bytes that are not UTF-8 written as \xNN text. Only the header is read (at most
 * HEADER_MAX bytes), never the body. */
#include "cli/cli.h"
#include "cli/queue_cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "conf/config.h"
#include "store/spool.h"
#include "store/spool_state.h"

#define HEADER_MAX (64 * 1024)

/* The message's header: the bytes before the first empty line, at most HEADER_MAX of them. */
struct header {
    char *buf;
    size_t len;
    bool cut; /* the header goes on past HEADER_MAX */
};

/* Where the header in buf (len bytes) ends: just after the line end before the first empty
 * line (CRLF or bare LF, as the message was stored), or len when there is none yet. */
static size_t header_end(const char *buf, size_t len)
{
    for (const char *p = buf; (p = memchr(p, '\n', len - (size_t)(p - buf))); p++) {
        size_t rest = len - (size_t)(p - buf) - 1;
        if (rest >= 1 && (p[1] == '\n' || (rest >= 2 && p[1] == '\r' && p[2] == '\n')))
            return (size_t)(p - buf) + 1;
    }
    return len;
}

/* Reads the header of the message id into h. 0, or an exit status with the reason printed. */
static int read_header(const struct queue_opts *o, const char *data_dir, struct header *h)
{
    char err[4096];
    int fd = spool_msg_open(data_dir, o->id, err, sizeof(err));
    if (fd < 0) {
        int e = errno;
        fprintf(stderr, "tern queue show: %s\n", err);
        return queue_status(e);
    }
    if (!(h->buf = malloc(HEADER_MAX + 1))) {
        close(fd);
        fprintf(stderr, "tern queue show: out of memory\n");
        return EX_OSERR;
    }
    size_t got = 0, end = 0;
    int status = 0;
    while (got < HEADER_MAX + 1) {
        ssize_t r = read(fd, h->buf + got, HEADER_MAX + 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "tern queue show: reading the message %s: %s\n", o->id,
                    strerror(errno));
            status = EX_IOERR;
            break;
        }
        if (r == 0)
            break;
        /* look again from a little before the new bytes: an empty line may straddle reads */
        size_t from = got > 2 ? got - 2 : 0;
        got += (size_t)r;
        end = from + header_end(h->buf + from, got - from);
        if (end < got)
            break;
    }
    close(fd);
    end = header_end(h->buf, got);
    h->cut = end == got && got > HEADER_MAX;
    h->len = end > HEADER_MAX ? HEADER_MAX : end;
    return status;
}

/* Calls fn for each line of the header (without its line end). */
static int each_line(const struct header *h, int (*fn)(void *ctx, const char *s, size_t len),
                     void *ctx)
{
    size_t start = 0;
    while (start < h->len) {
        const char *nl = memchr(h->buf + start, '\n', h->len - start);
        size_t end = nl ? (size_t)(nl - h->buf) : h->len, len = end - start;
        if (len > 0 && h->buf[start + len - 1] == '\r')
            len--;
        if (fn(ctx, h->buf + start, len) != 0)
            return -1;
        start = end + 1;
    }
    return 0;
}

/* ---- text ------------------------------------------------------------------------------------ */

static int print_line(void *ctx, const char *s, size_t len)
{
    FILE *out = ctx;
    fputs("  ", out);
    cli_put_safe(out, s, len);
    putc('\n', out);
    return 0;
}

static void print_time(FILE *out, const char *label, time_t t, const char *zero)
{
    char when[32];
    if (t)
        cli_format_time(t, when, sizeof(when));
    fprintf(out, "%-13s%s\n", label, t ? when : zero);
}

static void print_text(FILE *out, const struct spool_entry *e, const struct spool_state *st,
                       const char *why, const struct header *h)
{
    fprintf(out, "%-13s%s\n", "id", e->id);
    fprintf(out, "%-13s%s\n", "status",
            e->held ? "held (tern queue release lets it go)" : "queued");
    print_time(out, "queued", e->queued, "-");
    fprintf(out, "%-13s%llu bytes\n", "size", (unsigned long long)e->size);
    fprintf(out, "%-13s<", "from");
    queue_put(out, e->from);
    fprintf(out, ">\n%-13s", "submitter");
    queue_put(out, e->auth_user[0] ? e->auth_user : "-");
    putc('\n', out);
    if (st) {
        fprintf(out, "%-13s%u\n", "attempts", st->attempts);
        print_time(out, "last try", st->last_try, "never");
        if (e->held)
            fprintf(out, "%-13s%s\n", "next try", "none while held");
        else
            print_time(out, "next try", st->next_try > time(NULL) ? st->next_try : 0, "now");
        fprintf(out, "%-13s%s\n", "delay notice", st->delay_notified ? "sent" : "not sent");
    } else {
        fprintf(out, "%-13s", "state");
        queue_put(out, why);
        putc('\n', out);
    }
    fprintf(out, "recipients   %zu\n", e->nrcpts);
    for (size_t i = 0; i < e->nrcpts; i++) {
        const struct spool_rcpt_state *r = st ? &st->rcpts[i] : NULL;
        fprintf(out, "  %-8s ", r ? spool_rcpt_status_name(r->status) : "?");
        queue_put(out, e->rcpts[i]);
        if (r && r->done) {
            char when[32];
            cli_format_time(r->done, when, sizeof(when));
            fprintf(out, "  %s", when);
        }
        putc('\n', out);
        if (r && (r->reply[0] || r->remote[0])) {
            fputs("           ", out);
            queue_put(out, r->reply[0] ? r->reply : "-");
            if (r->remote[0]) {
                fputs(" (", out);
                queue_put(out, r->remote);
                putc(')', out);
            }
            putc('\n', out);
        }
    }
    fputs("header\n", out);
    each_line(h, print_line, out);
    if (h->cut)
        fprintf(out, "  [the header goes on past %d KiB; not shown]\n", HEADER_MAX / 1024);
}

/* ---- JSON ------------------------------------------------------------------------------------ */

/* Sets key in obj to v (taken); false when v is NULL or memory ran out. */
static bool put(json_t *obj, const char *key, json_t *v)
{
    return v && json_object_set_new(obj, key, v) == 0;
}

static json_t *rcpt_json(const char *addr, const struct spool_rcpt_state *r)
{
    json_t *o = json_object();
    bool ok = o && put(o, "addr", queue_json_text(addr, strlen(addr)));
    if (ok && r)
        ok = put(o, "status", json_string(spool_rcpt_status_name(r->status))) &&
             put(o, "code", r->code ? json_integer(r->code) : json_null()) &&
             put(o, "reply", queue_json_text(r->reply, strlen(r->reply))) &&
             put(o, "remote", queue_json_text(r->remote, strlen(r->remote))) &&
             put(o, "done", queue_json_time(r->done));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int add_line(void *ctx, const char *s, size_t len)
{
    return json_array_append_new(ctx, queue_json_text(s, len));
}

static json_t *show_json(const struct spool_entry *e, const struct spool_state *st, const char *why,
                         const struct header *h)
{
    json_t *o = json_object(), *rcpts = json_array(), *lines = json_array();
    bool ok = o && rcpts && lines && put(o, "id", json_string(e->id)) &&
              put(o, "held", json_boolean(e->held)) &&
              put(o, "queued", queue_json_time(e->queued)) &&
              put(o, "size", json_integer((json_int_t)e->size)) &&
              put(o, "from", queue_json_text(e->from, strlen(e->from))) &&
              put(o, "auth_user", queue_json_text(e->auth_user, strlen(e->auth_user)));
    if (ok && st)
        ok = put(o, "attempts", json_integer(st->attempts)) &&
             put(o, "last_try", queue_json_time(st->last_try)) &&
             put(o, "next_try", queue_json_time(st->next_try)) &&
             put(o, "delay_notified", json_boolean(st->delay_notified));
    else if (ok)
        ok = put(o, "state_error", queue_json_text(why, strlen(why)));
    for (size_t i = 0; ok && i < e->nrcpts; i++)
        ok = json_array_append_new(rcpts, rcpt_json(e->rcpts[i], st ? &st->rcpts[i] : NULL)) == 0;
    ok = ok && each_line(h, add_line, lines) == 0;
    json_t *r = rcpts, *l = lines;
    rcpts = lines = NULL;
    ok = ok && put(o, "rcpts", r) && put(o, "header", l) &&
         put(o, "header_cut", json_boolean(h->cut));
    if (!ok) {
        json_decref(rcpts);
        json_decref(lines);
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- show ------------------------------------------------------------------------------------ */

int queue_show(const struct queue_opts *o, const struct conf *c)
{
    char err[4096];
    struct spool_entry e;
    if (spool_entry_load(c->data_dir, o->id, false, &e, err, sizeof(err)) != 0 &&
        (errno != ENOENT ||
         spool_entry_load(c->data_dir, o->id, true, &e, err, sizeof(err)) != 0)) {
        int st = queue_status(errno);
        if (errno == ENOENT)
            fprintf(stderr, "tern queue show: no message %s in the queue or on hold\n", o->id);
        else
            fprintf(stderr, "tern queue show: %s\n", err);
        return st;
    }
    struct spool_state st;
    char why[4096];
    bool have = spool_state_load(c->data_dir, &e, &st, why, sizeof(why)) == 0;
    struct header h = {0};
    int status = read_header(o, c->data_dir, &h);
    if (status == 0) {
        if (o->json) {
            json_t *j = show_json(&e, have ? &st : NULL, why, &h);
            if (!j || json_dumpf(j, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) != 0) {
                fprintf(stderr, "tern queue show: out of memory\n");
                status = EX_OSERR;
            }
            json_decref(j);
            putchar('\n');
        } else {
            print_text(stdout, &e, have ? &st : NULL, why, &h);
        }
        if (fflush(stdout) != 0 || ferror(stdout)) {
            fprintf(stderr, "tern queue show: writing standard output: %s\n", strerror(errno));
            status = EX_IOERR;
        }
    }
    if (status == 0 && !have) {
        fprintf(stderr, "tern queue show: %s\n", why);
        status = EX_DATAERR;
    }
    free(h.buf);
    free(e.rcpts);
    if (have)
        spool_state_free(&st);
    return status;
}

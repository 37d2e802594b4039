/* `tern queue`: shows an admin what waits in the outbound queue (DATA_DIR/spool/queue/, and the
 * messages on hold in spool/hold/) and acts on it. This file reads the command line, lists the
 * queue with each entry's delivery state, and holds what the other queue_*.c files share;
 * queue_show.c shows one entry, queue_act.c changes the queue. Addresses, replies and headers
 * come from the network, so the text output escapes anything a terminal would obey. */
#include "cli/audit_admin.h"
#include "cli/cli.h"
#include "cli/queue_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "conf/config.h"
#include "store/spool.h"
#include "store/spool_state.h"
#include "util/utf8.h"

static const char usage[] =
    "usage: tern queue list [--json] [-c CONFIG]\n"
    "       tern queue show ID [--json] [-c CONFIG]\n"
    "       tern queue flush [ID] [-c CONFIG]\n"
    "       tern queue delete ID [-c CONFIG]\n"
    "       tern queue hold ID [-c CONFIG]\n"
    "       tern queue release ID [-c CONFIG]\n"
    "\n"
    "Mail accepted for other domains waits in DATA_DIR/spool/queue/ until ternd\n"
    "delivers it; messages on hold wait in DATA_DIR/spool/hold/ and are not delivered\n"
    "until released. ID is a queue id as list shows it.\n"
    "\n"
    "  list      the queue, oldest first, then the messages on hold, one a line:\n"
    "              ID  QUEUED  SIZE  SENDER  RECIPIENTS  SUBMITTER  queued|held\n"
    "            followed, once delivery was tried, by\n"
    "              N tries  next NEXT  last: REPLY\n"
    "            QUEUED and NEXT in UTC (RFC 3339; NEXT is 'now' when due), SENDER\n"
    "            <> for none, RECIPIENTS separated by commas, SUBMITTER the\n"
    "            authenticated user (- for none); a last line counts them:\n"
    "            'N messages, N bytes, N on hold'.\n"
    "  show      one message: its envelope, each recipient's state (pending, sent\n"
    "            or failed, the last reply and the server that gave it) and the\n"
    "            message's header\n"
    "  flush     deliver ID, or every queued message, now rather than at its next\n"
    "            retry\n"
    "  delete    remove ID, queued or held, for good (no bounce is sent)\n"
    "  hold      keep ID from being delivered until it is released\n"
    "  release   put a held ID back in the queue; its retry schedule is kept\n"
    "            (flush it to deliver it now)\n"
    "\n"
    "  -c, --config FILE  the configuration naming data_dir (default $TERN_CONF,\n"
    "                     else /etc/tern/tern.conf if it exists, else\n"
    "                     ./var/tern.conf)\n"
    "  --json             list, show: JSON instead (list: an array of objects)\n"
    "\n"
    "Text from the network (addresses, replies, headers) is shown with control\n"
    "characters as \\xNN or \\uNNNN. flush, delete, hold and release change the\n"
    "files themselves, then tell a running ternd through DATA_DIR/audit/control;\n"
    "each leaves an admin record in the audit log.\n"
    "\n"
    "Exit status: 0 done, 1 no such message, 64 bad arguments, 65 a bad ID or an\n"
    "envelope or delivery state that cannot be read, 71 out of memory, 74 cannot\n"
    "read or write the queue, 77 no permission, 78 bad configuration.\n";

/* ---- shared by the queue_*.c files ---------------------------------------------------------- */

void queue_refuse(const struct queue_opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_admin_vrefuse("queue", o->sub, o->refusal, fmt, ap);
    va_end(ap);
}

int queue_status(int e)
{
    switch (e) {
    case ENOENT:
    case EBUSY:
        return QUEUE_NO_ENTRY;
    case EINVAL:
    case EBADMSG:
    case EFBIG:
        return EX_DATAERR;
    case ENOMEM:
        return EX_OSERR;
    case EACCES:
    case EPERM:
        return EX_NOPERM;
    default:
        return EX_IOERR;
    }
}

void queue_put(FILE *out, const char *s)
{
    cli_put_safe(out, s, strlen(s));
}

json_t *queue_json_text(const char *s, size_t len)
{
    char *t = malloc(len * 4 + 1), *o = t;
    if (!t)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t l = s[i] ? utf8_char_len((const unsigned char *)s + i, len - i) : 0;
        if (l == 0) {
            o += sprintf(o, "\\x%02x", (unsigned char)s[i]);
            i++;
        } else {
            memcpy(o, s + i, l);
            o += l;
            i += l;
        }
    }
    json_t *j = json_stringn(t, (size_t)(o - t));
    free(t);
    return j;
}

json_t *queue_json_time(time_t t)
{
    if (t == 0)
        return json_null();
    char when[32];
    cli_format_time(t, when, sizeof(when));
    return json_string(when);
}

const char *queue_last_reply(const struct spool_state *st)
{
    for (size_t i = 0; i < st->nrcpts; i++)
        if (st->rcpts[i].status == SPOOL_RCPT_PENDING && st->rcpts[i].reply[0])
            return st->rcpts[i].reply;
    for (size_t i = 0; i < st->nrcpts; i++)
        if (st->rcpts[i].reply[0])
            return st->rcpts[i].reply;
    return "";
}

/* ---- list ------------------------------------------------------------------------------------ */

/* What each listed entry is printed with, and the running totals. */
struct list_ctx {
    FILE *out;
    const char *data_dir;
    bool json;
    size_t count, held;
    unsigned long long bytes;
    bool bad_state; /* some state could not be read: the exit status says so */
    bool failed;    /* memory or output failed: stop */
};

/* One entry as a JSON object; st NULL when its state could not be read (why says why). NULL
 * when memory ran out. */
static json_t *entry_json(const struct spool_entry *e, const struct spool_state *st,
                          const char *why)
{
    json_t *rcpts = json_array();
    for (size_t i = 0; rcpts && i < e->nrcpts; i++) {
        if (json_array_append_new(rcpts, queue_json_text(e->rcpts[i], strlen(e->rcpts[i]))) != 0) {
            json_decref(rcpts);
            rcpts = NULL;
        }
    }
    if (!rcpts)
        return NULL;
    const char *last = st ? queue_last_reply(st) : "";
    json_t *j = json_pack(
        "{s:s, s:o, s:I, s:o, s:o, s:o, s:b}", "id", e->id, "queued", queue_json_time(e->queued),
        "size", (json_int_t)e->size, "from", queue_json_text(e->from, strlen(e->from)), "auth_user",
        queue_json_text(e->auth_user, strlen(e->auth_user)), "rcpts", rcpts, "held", e->held);
    if (j && st &&
        (json_object_set_new(j, "attempts", json_integer(st->attempts)) != 0 ||
         json_object_set_new(j, "last_try", queue_json_time(st->last_try)) != 0 ||
         json_object_set_new(j, "next_try", queue_json_time(st->next_try)) != 0 ||
         json_object_set_new(j, "last_reply",
                             last[0] ? queue_json_text(last, strlen(last)) : json_null()) != 0)) {
        json_decref(j);
        j = NULL;
    }
    if (j && !st && json_object_set_new(j, "state_error", queue_json_text(why, strlen(why))) != 0) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* The entry as one line for people. */
static void entry_line(FILE *out, const struct spool_entry *e, const struct spool_state *st)
{
    char when[32];
    cli_format_time(e->queued, when, sizeof(when));
    fprintf(out, "%s  %s  %llu  ", e->id, when, (unsigned long long)e->size);
    queue_put(out, e->from[0] ? e->from : "<>");
    fputs("  ", out);
    for (size_t i = 0; i < e->nrcpts; i++) {
        if (i)
            putc(',', out);
        queue_put(out, e->rcpts[i]);
    }
    fputs("  ", out);
    queue_put(out, e->auth_user[0] ? e->auth_user : "-");
    fputs(e->held ? "  held" : "  queued", out);
    if (!st) {
        fputs("  (delivery state unreadable: tern queue show says why)", out);
    } else if (st->attempts > 0) {
        char next[32] = "now";
        if (st->next_try > time(NULL))
            cli_format_time(st->next_try, next, sizeof(next));
        fprintf(out, "  %u %s  next %s", st->attempts, st->attempts == 1 ? "try" : "tries", next);
        const char *last = queue_last_reply(st);
        if (last[0]) {
            fputs("  last: ", out);
            queue_put(out, last);
        }
    }
    putc('\n', out);
}

/* spool_list's callback: prints one entry; non-zero stops the listing (output failed). */
static int print_entry(void *arg, const struct spool_entry *e)
{
    struct list_ctx *c = arg;
    struct spool_state st;
    char why[1024];
    bool have = spool_state_load(c->data_dir, e, &st, why, sizeof(why)) == 0;
    if (!have) {
        c->bad_state = true;
        fprintf(stderr, "tern queue list: %s\n", why);
    }
    if (c->json) {
        json_t *j = entry_json(e, have ? &st : NULL, why);
        fputs(c->count ? ",\n  " : "\n  ", c->out);
        /* ASCII only: addresses may hold bidi or C1 controls a terminal would obey. */
        if (!j || json_dumpf(j, c->out, JSON_COMPACT | JSON_ENSURE_ASCII) != 0)
            c->failed = true;
        json_decref(j);
    } else {
        entry_line(c->out, e, have ? &st : NULL);
    }
    if (have)
        spool_state_free(&st);
    c->count++;
    c->held += e->held;
    c->bytes += e->size;
    if (ferror(c->out))
        c->failed = true;
    return c->failed ? -1 : 0;
}

static int run_list(const struct queue_opts *o, const struct conf *conf)
{
    struct list_ctx c = {.out = stdout, .data_dir = conf->data_dir, .json = o->json};
    char err[4096];
    if (c.json)
        fputs("[", c.out);
    int n = spool_list(conf->data_dir, print_entry, &c, err, sizeof(err));
    if (n >= 0 && !c.failed)
        n = spool_list_held(conf->data_dir, print_entry, &c, err, sizeof(err));
    int status = 0;
    if (c.failed) {
        fprintf(stderr, "tern queue list: writing the list failed: %s\n",
                ferror(c.out) ? strerror(errno) : "out of memory");
        status = ferror(c.out) ? EX_IOERR : EX_OSERR;
    } else if (n < 0) {
        fprintf(stderr, "tern queue list: %s\n", err);
        status = EX_IOERR;
    } else if (c.json) {
        fputs(c.count ? "\n]\n" : "]\n", c.out);
    } else {
        printf("%zu messages, %llu bytes, %zu on hold\n", c.count, c.bytes, c.held);
    }
    if (fflush(c.out) != 0 && status == 0) {
        fprintf(stderr, "tern queue list: writing standard output: %s\n", strerror(errno));
        status = EX_IOERR;
    }
    return status == 0 && c.bad_state ? EX_DATAERR : status;
}

/* ---- the command line -------------------------------------------------------------------------
 */

enum id_use { ID_NONE, ID_OPTIONAL, ID_REQUIRED };

struct subcommand {
    const char *name;
    enum id_use id;
    bool json;    /* takes --json */
    bool changes; /* an admin action: recorded in the audit log */
    int (*run)(const struct queue_opts *o, const struct conf *c);
};

static const struct subcommand subcommands[] = {
    {"list", ID_NONE, true, false, run_list},
    {"show", ID_REQUIRED, true, false, queue_show},
    {"flush", ID_OPTIONAL, false, true, queue_flush},
    {"delete", ID_REQUIRED, false, true, queue_delete},
    {"hold", ID_REQUIRED, false, true, queue_hold},
    {"release", ID_REQUIRED, false, true, queue_release},
};

/* The action's admin record: "queue SUB" with the id (none for flushing everything). */
static void record(const struct queue_opts *o, const struct conf *c, int status)
{
    const char *args[1] = {o->id};
    char command[32], text[64];
    snprintf(command, sizeof(command), "queue %s", o->sub);
    cli_audit_admin(c, command, args, o->id ? 1 : 0,
                    cli_admin_result(status, o->refusal, text, sizeof(text)));
}

/* 0, 1 when --help was asked, or EX_USAGE. argv[0] is the subcommand. */
static int parse_args(int argc, char **argv, struct queue_opts *o)
{
    enum { O_JSON = 256 };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 0; /* glibc: start a fresh scan, whatever parsed before */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            return 1;
        case 'c':
            o->config = optarg;
            break;
        case O_JSON:
            o->json = true;
            break;
        default:
            return cli_option_error("queue", o->sub, ch, argv[optind - 1]);
        }
    }
    if (optind < argc)
        o->id = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "tern queue %s: one ID only (got ", o->sub);
        queue_put(stderr, argv[optind]);
        fputs(" too); see tern queue --help\n", stderr);
        return EX_USAGE;
    }
    return 0;
}

/* Checks the arguments against what sc takes; 0, or EX_USAGE / EX_DATAERR with why printed. */
static int check_args(const struct subcommand *sc, const struct queue_opts *o)
{
    if (o->json && !sc->json) {
        fprintf(stderr, "tern queue %s: takes no --json; see tern queue --help\n", sc->name);
        return EX_USAGE;
    }
    if (sc->id == ID_REQUIRED && !o->id) {
        fprintf(stderr, "tern queue %s: which message? give its ID (tern queue list shows them)\n",
                sc->name);
        return EX_USAGE;
    }
    if (sc->id == ID_NONE && o->id) {
        fprintf(stderr, "tern queue %s: takes no ID; see tern queue --help\n", sc->name);
        return EX_USAGE;
    }
    if (o->id && !spool_id_valid(o->id)) {
        fprintf(stderr, "tern queue %s: '", sc->name);
        queue_put(stderr, o->id);
        fputs("' is not a queue id (like 1732491234-123456-4242-0-1a2b: digits, a-f and '-'; "
              "tern queue list shows them)\n",
              stderr);
        return EX_DATAERR;
    }
    return 0;
}

int cli_queue(int argc, char **argv)
{
    int r;
    const struct subcommand *sc =
        cli_subcommand(argc, argv, "queue", usage, subcommands,
                       sizeof(subcommands) / sizeof(subcommands[0]), sizeof(subcommands[0]), &r);
    if (!sc)
        return r;
    struct queue_opts o = {.sub = sc->name};
    r = parse_args(argc - 1, argv + 1, &o);
    if (r == 1) {
        fputs(usage, stdout);
        return 0;
    }
    if (r || (r = check_args(sc, &o)))
        return r;
    struct conf *c = cli_load_conf("queue", sc->name, &o.config, &r);
    if (!c)
        return r;
    char refusal[CLI_ADMIN_RESULT_MAX] = "";
    o.refusal = refusal;
    r = sc->run(&o, c);
    if (sc->changes)
        record(&o, c, r);
    conf_unref(c);
    return r;
}

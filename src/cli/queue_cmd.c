/* `tern queue`: shows an admin what waits in the outbound queue (DATA_DIR/spool/queue/), as
 * lines for people or as JSON for scripts. Only `list` exists yet; the actions that change the
 * queue (show, flush, delete, hold, release) arrive with outbound delivery. Addresses in the
 * queue come from the network, so the text output escapes anything a terminal would obey. */
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "conf/config.h"
#include "store/spool.h"

#define ERRBUF_SIZE (256 * 1024)

static const char usage[] =
    "usage: tern queue list [-c CONFIG] [--json]\n"
    "\n"
    "list    Lists the outbound queue, oldest first, one message a line:\n"
    "          ID  QUEUED  SIZE  SENDER  RECIPIENTS  SUBMITTER\n"
    "        QUEUED is UTC in RFC 3339, SIZE in bytes, SENDER <> for none,\n"
    "        RECIPIENTS separated by commas, SUBMITTER the authenticated user\n"
    "        (- for none); then a last line 'N messages, N bytes'. Control\n"
    "        characters in addresses are shown as \\xNN or \\uNNNN.\n"
    "        --json prints a JSON array of {id, queued, size, from, auth_user,\n"
    "        rcpts} instead.\n"
    "\n"
    "  -c CONFIG   the configuration naming data_dir (default: $TERN_CONF, else\n"
    "              /etc/tern/tern.conf if it exists, else ./var/tern.conf)\n"
    "\n"
    "Not yet: show, flush, delete, hold and release come with outbound delivery,\n"
    "which tern does not have yet; until then queued messages stay queued.\n";

/* What each listed entry is printed with, and the running totals. */
struct list_ctx {
    FILE *out;
    bool json;
    size_t count;
    unsigned long long bytes;
};

/* Prints s for a terminal (cli_put_safe): a hostile address cannot move the cursor, retitle
 * the window, reorder the line or fake another one. */
static void put_safe(FILE *out, const char *s)
{
    cli_put_safe(out, s, strlen(s));
}

/* One entry as a JSON object; NULL when memory ran out (or a string is not UTF-8, which
 * spool_list never hands out). */
static json_t *entry_json(const struct spool_entry *e)
{
    char when[32];
    cli_format_time(e->queued, when, sizeof(when));
    json_t *rcpts = json_array();
    for (size_t i = 0; rcpts && i < e->nrcpts; i++) {
        if (json_array_append_new(rcpts, json_string(e->rcpts[i])) != 0) {
            json_decref(rcpts);
            rcpts = NULL;
        }
    }
    if (!rcpts)
        return NULL;
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:o}", "id", e->id, "queued", when, "size",
                     (json_int_t)e->size, "from", e->from, "auth_user", e->auth_user, "rcpts",
                     rcpts);
}

/* spool_list's callback: prints one entry; non-zero stops the listing (output failed). */
static int print_entry(void *arg, const struct spool_entry *e)
{
    struct list_ctx *c = arg;
    if (c->json) {
        json_t *j = entry_json(e);
        if (!j)
            return -1;
        fputs(c->count ? ",\n  " : "\n  ", c->out);
        /* ASCII only: addresses may hold bidi or C1 controls a terminal would obey. */
        int rc = json_dumpf(j, c->out, JSON_COMPACT | JSON_ENSURE_ASCII);
        json_decref(j);
        if (rc != 0)
            return -1;
    } else {
        char when[32];
        cli_format_time(e->queued, when, sizeof(when));
        fprintf(c->out, "%s  %s  %llu  ", e->id, when, (unsigned long long)e->size);
        put_safe(c->out, e->from[0] ? e->from : "<>");
        fputs("  ", c->out);
        for (size_t i = 0; i < e->nrcpts; i++) {
            if (i)
                putc(',', c->out);
            put_safe(c->out, e->rcpts[i]);
        }
        fputs("  ", c->out);
        put_safe(c->out, e->auth_user[0] ? e->auth_user : "-");
        putc('\n', c->out);
    }
    c->count++;
    c->bytes += e->size;
    return ferror(c->out) ? -1 : 0;
}

static int queue_list(int argc, char **argv)
{
    const char *file = NULL;
    struct list_ctx c = {.out = stdout};
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--json") == 0) {
            c.json = true;
        } else if (strcmp(argv[i], "-c") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "tern queue list: -c needs a file; see tern queue --help\n");
                return EX_USAGE;
            }
            file = argv[++i];
        } else {
            fprintf(stderr, "tern queue list: unknown argument %s; see tern queue --help\n",
                    argv[i]);
            return EX_USAGE;
        }
    }
    if (!file)
        file = conf_default_path();

    char *err = malloc(ERRBUF_SIZE);
    if (!err) {
        fprintf(stderr, "tern queue list: out of memory\n");
        return EX_OSERR;
    }
    int status = 0;
    struct conf *conf = conf_load(file, err, ERRBUF_SIZE);
    if (!conf) {
        fputs(err, stderr); /* each error already says where and what to do */
        free(err);
        return EX_CONFIG;
    }
    if (c.json)
        fputs("[", c.out);
    int n = spool_list(conf->data_dir, print_entry, &c, err, ERRBUF_SIZE);
    if (n < 0) {
        fprintf(stderr, "tern queue list: %s\n", err);
        status = EX_IOERR;
    } else if ((size_t)n != c.count) {
        fprintf(stderr, "tern queue list: writing the list failed: %s\n",
                ferror(c.out) ? strerror(errno) : "out of memory");
        status = ferror(c.out) ? EX_IOERR : EX_OSERR;
    } else if (c.json) {
        fputs(c.count ? "\n]\n" : "]\n", c.out);
    } else {
        printf("%zu messages, %llu bytes\n", c.count, c.bytes);
    }
    if (fflush(c.out) != 0 && status == 0) {
        fprintf(stderr, "tern queue list: writing standard output: %s\n", strerror(errno));
        status = EX_IOERR;
    }
    conf_unref(conf);
    free(err);
    return status;
}

int cli_queue(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return EX_USAGE;
    }
    if (cli_is_help(argv[1])) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(argv[1], "list") == 0)
        return queue_list(argc - 1, argv + 1);
    static const char *const later[] = {"show", "flush", "delete", "hold", "release"};
    for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
        if (strcmp(argv[1], later[i]) == 0) {
            fprintf(stderr, "tern queue: %s is not there yet: it comes with outbound delivery\n\n",
                    argv[1]);
            fputs(usage, stderr);
            return EX_USAGE;
        }
    }
    fprintf(stderr, "tern queue: unknown action '%s'\n\n", argv[1]);
    fputs(usage, stderr);
    return EX_USAGE;
}

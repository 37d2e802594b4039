/* What the files of `tern queue` share: queue_cmd.c (the command line, list), queue_show.c
 * (show) and queue_act.c (flush, delete, hold, release: the actions that change the queue, tell
 * ternd and leave an admin record). Exit statuses: 0 done, 1 no such entry, and <sysexits.h>
 * for the rest, as queue_status maps them. */
#ifndef TERN_CLI_QUEUE_CMD_H
#define TERN_CLI_QUEUE_CMD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

struct conf;
struct spool_state;

#define QUEUE_NO_ENTRY 1 /* exit status: no such entry (in the queue, or on hold) */

struct queue_opts {
    const char *sub; /* the subcommand: "list", "show", ... */
    const char *config;
    const char *id; /* checked with spool_id_valid; NULL when none was given */
    bool json;
    char *refusal; /* CLI_ADMIN_RESULT_MAX: the first reason printed, for the audit record */
};

int queue_show(const struct queue_opts *o, const struct conf *c);    /* queue_show.c */
int queue_flush(const struct queue_opts *o, const struct conf *c);   /* queue_act.c */
int queue_delete(const struct queue_opts *o, const struct conf *c);  /* queue_act.c */
int queue_hold(const struct queue_opts *o, const struct conf *c);    /* queue_act.c */
int queue_release(const struct queue_opts *o, const struct conf *c); /* queue_act.c */

/* Prints "tern queue SUB: REASON" on stderr, keeping the first reason for the audit record. */
void queue_refuse(const struct queue_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The exit status for a failed spool call's errno: 1 no such entry (ENOENT, or EBUSY: on hold
 * where the queue was meant), 65 unreadable data, 71 memory, 77 permission, 74 the rest. */
int queue_status(int e);

/* s, which came from outside, escaped for a terminal (cli_put_safe). */
void queue_put(FILE *out, const char *s);

/* A JSON string of len bytes of s: UTF-8 as it is, any other byte (NUL included) written as
 * the text \xNN, as the terminal output shows it. NULL when memory ran out. */
json_t *queue_json_text(const char *s, size_t len);

/* t as an RFC 3339 JSON string, or null when t is 0 (never, or now). */
json_t *queue_json_time(time_t t);

/* The reply worth showing for an entry: the last one of its first pending recipient that has
 * one, else the first recipient's that has one; "" when none. */
const char *queue_last_reply(const struct spool_state *st);

#endif

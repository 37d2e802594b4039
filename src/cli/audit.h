/* What the parts of `tern audit` share: the parsed command line, the files it reads (the log's
 * series in DATA_DIR/audit, or those named), and the reading and printing of records that
 * show and trace have in common. audit_cmd.c parses and runs verify and rotate;
 * audit_show.c runs show and trace; audit_fmt.c turns records and times into text. */
#ifndef TERN_CLI_AUDIT_H
#define TERN_CLI_AUDIT_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "audit/record.h"

struct acli {
    const char *sub; /* "verify", "show", "trace", "rotate" */
    const char *config;
    /* verify */
    const char *key, *head;
    bool no_head;
    /* show (and trace's MESSAGE-ID, kept in msgid) */
    const char *user, *ip, *session, *msgid, *event, *since, *until;
    bool json;
    int64_t since_us, until_us; /* INT64_MIN / INT64_MAX when not given */

    char **files; /* what to read: the series, or the FILES operands */
    size_t nfiles;
    bool series;            /* files came from audit_series (and are freed with it) */
    char dir[PATH_MAX + 8]; /* the log's folder when known (DATA_DIR/audit), else "" */
};

/* `tern audit show` and `tern audit trace`: an exit status, with the reason printed. */
int acli_show(struct acli *o);
int acli_trace(struct acli *o);

/* Parses T of --since (end false) or --until (end true) into microseconds since the Unix
 * epoch: RFC 3339 (2026-11-25T10:00:00Z, seconds and fraction optional, Z or +HH:MM), a date
 * (2026-11-25: its start for --since, its last microsecond for --until), or -N followed by
 * s, m, h, d or w, before now_us. 0, or -1 when it is none of those. */
int acli_parse_time(const char *s, bool end, int64_t now_us, int64_t *out);

/* The record's session as a string key (a string value as it is, NUL bytes included; an
 * integer in decimal) into buf, its length in *len; NULL when it has none. */
const char *acli_session_key(json_t *obj, char *buf, size_t buflen, size_t *len);

/* One record as a line of the table: TIME EVENT SESSION and the fields that matter for its
 * kind as key=value, every string made safe for a terminal. With detail, the record's other
 * fields (hashes, files, anything unknown) follow on lines of their own, indented. */
void acli_print_record(FILE *out, const struct audit_record *rec, bool detail);

/* The table's heading line. */
void acli_print_heading(FILE *out);

/* Does the Message-ID a match b, ignoring one pair of angle brackets and blanks around? */
bool acli_msgid_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif

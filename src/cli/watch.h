/* What the files of `tern watch` share: watch_cmd.c (arguments, the local socket and the
 * network path through libtern) and watch_show.c (how a terminal message is printed, like
 * write(1), with everything a terminal would obey made harmless). Internal to src/cli/. */
#ifndef TERN_CLI_WATCH_H
#define TERN_CLI_WATCH_H

#include <stdio.h>
#include <time.h>

#include "tern/client.h"

#define WATCH_SHOW_LINES 20   /* body lines shown */
#define WATCH_SHOW_COLS 200   /* columns of each shown line */
#define WATCH_SUBJECT_MAX 998 /* octets of the Subject: field looked at (RFC 5322's line) */

/* Prints m: a blank line, "Message from SENDER at TIME (id ID):", its Subject:, then the first
 * WATCH_SHOW_LINES lines of the body, each cut at WATCH_SHOW_COLS columns, what was left out,
 * and "EOF". Control characters, escape sequences, bytes that are not UTF-8 and NULs are
 * shown escaped (cli_put_safe_cols). The time is local (TZ). */
void watch_show(FILE *out, const struct tern_term_message *m);

#endif

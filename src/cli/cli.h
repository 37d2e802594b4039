/* The `tern` subcommands. Each takes the arguments from its own name on (argv[0] is "config",
 * "init", ...), prints what it did or why it could not, and returns an exit status from
 * <sysexits.h>: 0, EX_USAGE for bad arguments, EX_CONFIG for a bad configuration, ... */
#ifndef TERN_CLI_CLI_H
#define TERN_CLI_CLI_H

#include <stddef.h>
#include <stdio.h>

int cli_config(int argc, char **argv);  /* tern config check [FILE] */
int cli_init(int argc, char **argv);    /* tern init [DIR] [options] */
int cli_user(int argc, char **argv);    /* tern user add|passwd|del|lock|unlock|list ... */
int cli_queue(int argc, char **argv);   /* tern queue list [-c CONFIG] [--json] */
int cli_mailbox(int argc, char **argv); /* tern mailbox add|del|members|...|list|show|check */
int cli_audit(int argc, char **argv);   /* tern audit verify|show|trace|rotate ... */

/* Is s one of -h, --help? */
int cli_is_help(const char *s);

/* Prints len bytes of s, which came from outside, for a terminal (cli/term.c): C0 controls and
 * DEL as \xNN, C1 and bidirectional controls (as UTF-8 encodes them) as \uNNNN, a backslash
 * doubled; other bytes, UTF-8 included, as they are. NUL bytes are shown, not ends. */
void cli_put_safe(FILE *out, const char *s, size_t len);

#endif

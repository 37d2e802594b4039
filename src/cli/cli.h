/* The `tern` subcommands. Each takes the arguments from its own name on (argv[0] is "config",
 * "init", ...), prints what it did or why it could not, and returns an exit status from
 * <sysexits.h>: 0, EX_USAGE for bad arguments, EX_CONFIG for a bad configuration, ... */
#ifndef TERN_CLI_CLI_H
#define TERN_CLI_CLI_H

#include <stddef.h>

int cli_config(int argc, char **argv);  /* tern config check [FILE] */
int cli_init(int argc, char **argv);    /* tern init [DIR] [options] */
int cli_user(int argc, char **argv);    /* tern user add|passwd|del|lock|unlock|list ... */
int cli_queue(int argc, char **argv);   /* tern queue list [-c CONFIG] [--json] */
int cli_mailbox(int argc, char **argv); /* tern mailbox add|del|members|...|list|show|check */

/* Is s one of -h, --help? */
int cli_is_help(const char *s);

#endif

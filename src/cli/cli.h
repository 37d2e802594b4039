/* The `tern` subcommands. Each takes the arguments from its own name on (argv[0] is "config",
 * "init", ...), prints what it did or why it could not, and returns an exit status from
 * <sysexits.h>: 0, EX_USAGE for bad arguments, EX_CONFIG for a bad configuration, ... */
#ifndef TERN_CLI_CLI_H
#define TERN_CLI_CLI_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

int cli_config(int argc, char **argv);  /* tern config check [FILE] */
int cli_init(int argc, char **argv);    /* tern init [DIR] [options] */
int cli_user(int argc, char **argv);    /* tern user add|passwd|del|lock|unlock|list ... */
int cli_queue(int argc, char **argv);   /* tern queue list|show|flush|delete|hold|release */
int cli_mailbox(int argc, char **argv); /* tern mailbox add|del|members|...|list|show|check */
int cli_audit(int argc, char **argv);   /* tern audit verify|show|trace|rotate ... */
int cli_send(int argc, char **argv);    /* tern send --from A --to B [options] */
int cli_probe(int argc, char **argv);   /* tern probe HOST[:PORT] [--json] [options] */
int cli_smtp(int argc, char **argv);    /* tern smtp HOST[:PORT] [options]: a session */
int cli_watch(int argc, char **argv);   /* tern watch [USER] | --server HOST --user U */

/* Is s one of -h, --help? */
int cli_is_help(const char *s);

/* cli/front.c: the front door of a command with subcommands. */
struct conf;
/* Picks the row of table (n rows of size bytes, each beginning with its `const char *name`)
 * that argv[1] names; prints usage and gives NULL when there is none or argv[1] asks for help
 * (*status 0 then, EX_USAGE otherwise). */
const void *cli_subcommand(int argc, char **argv, const char *cmd, const char *usage,
                           const void *table, size_t n, size_t size, int *status);
/* getopt_long's ':' (option without its value) or '?' for option: prints why, EX_USAGE. */
int cli_option_error(const char *cmd, const char *sub, int ch, const char *option);
/* 0 when every option given is allowed, else prints why and gives EX_USAGE. */
int cli_options_allowed(const char *cmd, const char *sub, unsigned given, unsigned allowed);
/* Loads *path (the default one when NULL, written back), printing the loader's errors;
 * NULL with *status EX_CONFIG or EX_OSERR. */
struct conf *cli_load_conf(const char *cmd, const char *sub, const char **path, int *status);

/* Prints len bytes of s, which came from outside, for a terminal (cli/term.c): C0 controls and
 * DEL as \xNN, C1 and bidirectional controls (as UTF-8 encodes them) as \uNNNN, a backslash
 * doubled; other bytes, UTF-8 included, as they are. NUL bytes are shown, not ends. */
void cli_put_safe(FILE *out, const char *s, size_t len);

/* cli_put_safe for a line of at most maxcols columns, stricter for text that may be anything
 * (a terminal message): bytes that are not UTF-8 are shown as \xNN too, so that no terminal
 * can take one for a C1 control. An escape takes its columns; a character one. Returns the
 * bytes of s shown (len when all of it fitted). */
size_t cli_put_safe_cols(FILE *out, const char *s, size_t len, size_t maxcols);

/* t as RFC 3339 UTC ("2026-11-24T09:30:00Z"), or "@SECONDS" when it cannot be (cli/term.c). */
void cli_format_time(time_t t, char *out, size_t outlen);

#endif

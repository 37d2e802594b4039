/* The `tern` command: finds the subcommand in a table and hands it the rest of the arguments.
 * Everything a subcommand does lives in src/cli/; add one by adding a row here. */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "cli/cli.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command's name */
    const char *summary;
};

static const struct command commands[] = {
    {"config", cli_config, "check the configuration (tern config check [FILE])"},
    {"init", cli_init, "create a data folder: tern.conf, a first user, aliases, mailboxes"},
    {"user", cli_user, "add, remove, lock or list users; set passwords"},
    {"queue", cli_queue, "the outbound queue: list, show, flush, delete, hold, release"},
    {"mailbox", cli_mailbox, "shared mailboxes and quotas; list, show and check any mailbox"},
    {"audit", cli_audit, "verify the audit log; show its records, trace a message; rotate it"},
    {"send", cli_send, "build a message and send it to any SMTP server (TLS, AUTH)"},
    {"probe", cli_probe, "show what an SMTP server offers: greeting, EHLO, TLS, certificate"},
    {"smtp", cli_smtp, "talk SMTP to a server by hand, each reply explained"},
    {"watch", cli_watch, "a user's terminal: print the messages SEND, SOML and SAML deliver"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
    fprintf(out, "usage: tern COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`tern COMMAND --help` or `tern help COMMAND` describes one.\n");
}

static const struct command *find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EX_USAGE;
    }
    if (strcmp(argv[1], "help") == 0 || cli_is_help(argv[1])) {
        if (argc < 3) {
            usage(stdout);
            return 0;
        }
        const struct command *c = find(argv[2]);
        if (!c) {
            fprintf(stderr, "tern: no command '%s'; run tern --help for the list\n", argv[2]);
            return EX_USAGE;
        }
        char help[] = "--help";
        char *args[] = {argv[2], help, NULL};
        return c->run(2, args);
    }
    const struct command *c = find(argv[1]);
    if (!c) {
        fprintf(stderr, "tern: no command '%s'; run tern --help for the list\n", argv[1]);
        return EX_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}

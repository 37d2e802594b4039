/* What every `tern` command with subcommands does before its own work (tern user, mailbox,
 * audit): pick the subcommand from its table, answer --help, refuse options the subcommand does
 * not take, report getopt's complaints, and load the configuration, each with the same wording
 * everywhere ("tern CMD SUB: what is wrong; see tern CMD --help"). */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "conf/config.h"

#define FRONT_ERRBUF (256 * 1024)

const void *cli_subcommand(int argc, char **argv, const char *cmd, const char *usage,
                           const void *table, size_t n, size_t size, int *status)
{
    *status = EX_USAGE;
    if (argc < 2) {
        fputs(usage, stderr);
        return NULL;
    }
    if (cli_is_help(argv[1])) {
        fputs(usage, stdout);
        *status = 0;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const void *row = (const char *)table + i * size;
        if (strcmp(argv[1], *(const char *const *)row) == 0)
            return row;
    }
    fprintf(stderr, "tern %s: unknown subcommand '%s'; see tern %s --help\n", cmd, argv[1], cmd);
    return NULL;
}

int cli_option_error(const char *cmd, const char *sub, int ch, const char *option)
{
    if (ch == ':')
        fprintf(stderr, "tern %s %s: %s needs a value; see tern %s --help\n", cmd, sub, option,
                cmd);
    else
        fprintf(stderr, "tern %s %s: unknown option %s; see tern %s --help\n", cmd, sub, option,
                cmd);
    return EX_USAGE;
}

int cli_options_allowed(const char *cmd, const char *sub, unsigned given, unsigned allowed)
{
    if (!(given & ~allowed))
        return 0;
    fprintf(stderr, "tern %s %s: takes only %s; see tern %s --help\n", cmd, sub,
            allowed ? "the options its usage line shows" : "-c CONFIG", cmd);
    return EX_USAGE;
}

struct conf *cli_load_conf(const char *cmd, const char *sub, const char **path, int *status)
{
    if (!*path)
        *path = conf_default_path();
    char *err = malloc(FRONT_ERRBUF);
    if (!err) {
        fprintf(stderr, "tern %s %s: out of memory\n", cmd, sub);
        *status = EX_OSERR;
        return NULL;
    }
    struct conf *c = conf_load(*path, err, FRONT_ERRBUF);
    if (!c) {
        fputs(err, stderr);
        fprintf(stderr, "tern %s %s: %s does not load; fix the errors above first\n", cmd, sub,
                *path);
        *status = EX_CONFIG;
    }
    free(err);
    return c;
}

/* `tern config`: checks a configuration the way ternd would load it, so an admin finds every
 * mistake, each with its file and line, before a restart or SIGHUP does. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "conf/config.h"

#define ERRBUF_SIZE (256 * 1024)

static const char usage[] =
    "usage: tern config check [FILE]\n"
    "\n"
    "Reads FILE and the users and aliases files it names, exactly as ternd would, and\n"
    "checks everything: syntax, values, that every alias member is a local user, that\n"
    "there are no alias loops and that postmaster reaches someone in every domain.\n"
    "\n"
    "Prints 'FILE: ok (...)' and exits 0, or prints every error as FILE:LINE: what is\n"
    "wrong; what to do, and exits 78.\n"
    "\n"
    "FILE defaults to $TERN_CONF, else /etc/tern/tern.conf if it exists, else\n"
    "./var/tern.conf.\n";

int cli_is_help(const char *s)
{
    return strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0;
}

static int config_check(int argc, char **argv)
{
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return 0;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "tern config check: unknown option %s; see tern config --help\n",
                    argv[i]);
            return EX_USAGE;
        }
        if (file) {
            fprintf(stderr, "tern config check: one FILE only; see tern config --help\n");
            return EX_USAGE;
        }
        file = argv[i];
    }
    if (!file)
        file = conf_default_path();
    char *err = malloc(ERRBUF_SIZE);
    if (!err) {
        fprintf(stderr, "tern config check: out of memory\n");
        return EX_OSERR;
    }
    struct conf *c = conf_load(file, err, ERRBUF_SIZE);
    if (!c) {
        fputs(err, stderr);
        free(err);
        return EX_CONFIG;
    }
    size_t nshared = tables_nshared(c->tables);
    printf("%s: ok (%zu domains, %zu users, %zu aliases, %zu shared mailboxes, %zu listeners)\n",
           file, tables_ndomains(c->tables), tables_nusers(c->tables) - nshared,
           tables_naliases(c->tables), nshared, c->nlisteners);
    conf_unref(c);
    free(err);
    return 0;
}

/* A row of cli_subcommand's table: its name first. */
struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
};

int cli_config(int argc, char **argv)
{
    static const struct subcommand subcommands[] = {{"check", config_check}};
    int r;
    const struct subcommand *sc =
        cli_subcommand(argc, argv, "config", usage, subcommands,
                       sizeof(subcommands) / sizeof(subcommands[0]), sizeof(subcommands[0]), &r);
    return sc ? sc->run(argc - 1, argv + 1) : r;
}

/* Where the configuration is when nobody says: shared by ternd and every tern subcommand so
 * that both always look in the same place. And where its data_dir is, for a command that needs
 * only that (tern watch, run by users who may not read the rest of ternd's files). */
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf/config.h"
#include "util/err.h"

const char *conf_default_path(void)
{
    const char *env = getenv("TERN_CONF");
    if (env && *env)
        return env;
    if (access("/etc/tern/tern.conf", F_OK) == 0)
        return "/etc/tern/tern.conf";
    return "./var/tern.conf";
}

struct peek {
    char data_dir[PATH_MAX];
    bool too_long;
};

static int peek_handler(void *user, const char *section, const char *name, const char *value)
{
    struct peek *p = user;
    if (strcasecmp(section, "server") == 0 && strcasecmp(name, "data_dir") == 0)
        p->too_long |=
            snprintf(p->data_dir, sizeof p->data_dir, "%s", value) >= (int)sizeof p->data_dir;
    return 1; /* everything else is conf_load's to judge */
}

int conf_peek_data_dir(const char *file, char *out, size_t outlen, char *err, size_t errlen)
{
    struct peek p = {.data_dir = "."};
    FILE *f = fopen(file, "r");
    if (!f) {
        err_set(err, errlen, "cannot read %s: %s", file, strerror(errno));
        return -1;
    }
    int rc = ini_parse_file(f, peek_handler, &p);
    fclose(f);
    if (rc < 0 || p.too_long) {
        err_set(err, errlen, "cannot read data_dir from %s", file);
        return -1;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    int n = p.data_dir[0] == '/' ? snprintf(out, outlen, "%s", p.data_dir)
                                 : snprintf(out, outlen, "%s/%s", dir, p.data_dir);
    if (n < 0 || (size_t)n >= outlen) {
        err_set(err, errlen, "data_dir in %s is too long", file);
        return -1;
    }
    return 0;
}
